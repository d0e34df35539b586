"""XEP-0402 bookmarks with XEP-0048 compatibility (Prosody's mod_bookmarks).

The bookmarks are the items of the account's PEP node urn:xmpp:bookmarks:1
(one per room, its id the room's JID). The two XEP-0048 views follow them
(`urn:xmpp:bookmarks:1#compat`): a private XML get of <storage
xmlns='storage:bookmarks'/> is built from them and a set rewrites them; a
publish to the PEP node storage:bookmarks rewrites them too, and that node,
once a client uses it, is republished whenever they change.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.disco import add_account_feature
from xmpp.modules.pep import Pep, pep_of
from xmpp.modules.private import QUERY, storage_key
from xmpp.stanza import serialize

BOOKMARKS = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
STORAGE = f"{{{LEGACY}}}storage"
# XEP-0402 section 3: what clients publish bookmarks with.
BOOKMARKS_OPTIONS = {"persist_items": True, "max_items": "max",
                     "send_last_published_item": "never", "access_model": "whitelist"}
LEGACY_OPTIONS = {"persist_items": True, "access_model": "whitelist"}
TRUE = ("1", "true")


def setup(m: ModuleContext) -> None:
    bookmarks = Bookmarks(m, pep_of(m))
    add_account_feature(m, f"{BOOKMARKS}#compat")
    add_account_feature(m, f"{BOOKMARKS}#compat-pep")
    # Above mod_private, which keeps every other private XML element.
    m.hook_iq("get", QUERY, bookmarks.private_get, target="self", priority=1)
    m.hook_iq("set", QUERY, bookmarks.private_set, target="self", priority=1)
    m.hook(f"item-published/{LEGACY}", bookmarks.legacy_published)
    for kind in ("published", "retracted"):
        m.hook(f"item-{kind}/{BOOKMARKS}", bookmarks.bookmarks_changed)


def conferences(storage: Element) -> dict[str, Element]:
    """XEP-0048 <storage/> -> XEP-0402 <conference/> payloads by room JID."""
    found: dict[str, Element] = {}
    for legacy in storage.findall(f"{{{LEGACY}}}conference"):
        try:
            room = str(parse_jid(legacy.get("jid", "")))
        except InvalidJID as error:
            raise StanzaError("jid-malformed", "A bookmark's room JID is malformed") from error
        conference = Element(f"{{{BOOKMARKS}}}conference")
        if legacy.get("name"):
            conference.set("name", legacy.get("name", ""))
        if legacy.get("autojoin") in TRUE:
            conference.set("autojoin", "true")
        for child in ("nick", "password"):
            text = legacy.findtext(f"{{{LEGACY}}}{child}")
            if text:
                SubElement(conference, f"{{{BOOKMARKS}}}{child}").text = text
        found[room] = conference
    return found


def legacy_storage(items: list[Element]) -> Element:
    """XEP-0402 items (<item id=room><conference/></item>) -> XEP-0048 <storage/>."""
    storage = Element(STORAGE)
    for item in items:
        conference = item.find(f"{{{BOOKMARKS}}}conference")
        if conference is None:
            continue
        legacy = SubElement(storage, f"{{{LEGACY}}}conference", {"jid": item.get("id", "")})
        if conference.get("name"):
            legacy.set("name", conference.get("name", ""))
        legacy.set("autojoin", "true" if conference.get("autojoin") in TRUE else "false")
        for child in ("nick", "password"):
            text = conference.findtext(f"{{{BOOKMARKS}}}{child}")
            if text:
                SubElement(legacy, f"{{{LEGACY}}}{child}").text = text
    return storage


class Bookmarks:
    def __init__(self, m: ModuleContext, pep: Pep) -> None:
        self.m = m
        self.pep = pep
        self.private = m.open_store("private", "map")
        # Accounts whose views this module is rewriting itself (no echo back).
        self.syncing: set[str] = set()

    def _is_bookmarks(self, request: IqRequest) -> bool:
        payload = request.payload
        return len(payload) == 1 and payload[0].tag == STORAGE

    def private_get(self, request: IqRequest) -> Element | bool:
        if not self._is_bookmarks(request):
            return False
        username = request.origin.username
        self._migrate(username)
        query = Element(QUERY)
        query.append(legacy_storage(self.pep.items(username, BOOKMARKS)))
        return query

    def private_set(self, request: IqRequest) -> Element | bool:
        if not self._is_bookmarks(request):
            return False
        username = request.origin.username
        self._rewrite(username, request.payload[0], legacy_pep=True)
        return Element(QUERY)

    def _migrate(self, username: str) -> None:
        """Bookmarks mod_private kept before this module was loaded move to PEP."""
        key = storage_key(Element(STORAGE))
        stored = self.private.get(username, key)
        if stored is not None:
            if not self.pep.items(username, BOOKMARKS):
                self._rewrite(username, stored, legacy_pep=False)
            self.private.set(username, key, None)

    def _rewrite(self, username: str, storage: Element, *, legacy_pep: bool) -> None:
        """Make the XEP-0402 items what `storage` lists (and the legacy PEP node)."""
        wanted = conferences(storage)
        current = {item.get("id", ""): item for item in self.pep.items(username, BOOKMARKS)}
        self.syncing.add(username)
        try:
            for room, conference in wanted.items():
                item = current.get(room)
                if item is None or not len(item) or serialize(item[0]) != serialize(conference):
                    self.pep.publish(username, BOOKMARKS, room, conference, BOOKMARKS_OPTIONS)
            for room in current.keys() - wanted.keys():
                self.pep.retract(username, BOOKMARKS, room)
            if legacy_pep:
                self._publish_legacy(username)
        finally:
            self.syncing.discard(username)

    def _publish_legacy(self, username: str) -> None:
        self.pep.publish(username, LEGACY, "current",
                         legacy_storage(self.pep.items(username, BOOKMARKS)), LEGACY_OPTIONS)

    def legacy_published(self, event: Any) -> None:
        """A client published XEP-0048 bookmarks to PEP."""
        if event.username in self.syncing or event.item is None:
            return
        storage = event.item.find(STORAGE)
        if storage is not None:
            self._rewrite(event.username, storage, legacy_pep=False)

    def bookmarks_changed(self, event: Any) -> None:
        """XEP-0402 items changed: the legacy PEP node, if used, follows."""
        username = event.username
        if username in self.syncing or not self.pep.items(username, LEGACY):
            return
        self.syncing.add(username)
        try:
            self._publish_legacy(username)
        finally:
            self.syncing.discard(username)
