"""XEP-0191 blocking command (Prosody's mod_blocklist).

The list is the keyval store "blocklist" (`{jid: true}`, as Prosody keeps
it), cached for `blocklist_cache_size` accounts. Stanzas from a blocked JID
(full, bare or domain) to the account are stopped on `route/local`: IQ
requests and chat/normal messages get <service-unavailable/>
(`bounce_blocked_messages`), the rest is dropped. What the account's clients
send to a blocked JID is stopped on the `pre-*` events: presence silently,
messages and IQ requests with <not-acceptable/> and <blocked
xmlns='urn:xmpp:blocking:errors'/>; what the server sends in its name
(presence broadcasts, PEP notifications) is dropped on `route/local` and
`route/remote`.
"""

from __future__ import annotations

import secrets
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.lru import LRUCache
from xmpp.moduleapi import ModuleContext
from xmpp.modules.presence import available_sessions

NS = "urn:xmpp:blocking"
ERRORS = "urn:xmpp:blocking:errors"
BLOCKLIST = f"{{{NS}}}blocklist"
BLOCK = f"{{{NS}}}block"
UNBLOCK = f"{{{NS}}}unblock"
ITEM = f"{{{NS}}}item"
MESSAGE = f"{{{ns.CLIENT}}}message"
PRESENCE = f"{{{ns.CLIENT}}}presence"
IQ = f"{{{ns.CLIENT}}}iq"
DEFAULT_MAX_ITEMS = 1000


def setup(m: ModuleContext) -> None:
    blocklist = Blocklist(m)
    # Every host's lists, for stanzas between accounts of different hosts.
    m.shared("blocklists", dict)[m.host.name] = blocklist
    m.add_feature(NS)
    m.hook_iq("get", BLOCKLIST, blocklist.get, target="self")
    m.hook_iq("set", BLOCK, lambda request: blocklist.edit(request, True), target="self")
    m.hook_iq("set", UNBLOCK, lambda request: blocklist.edit(request, False), target="self")
    m.hook("route/local", blocklist.inbound, 100)
    m.hook("route/remote", blocklist.outbound_routed, 100)
    for stanza in ("message", "presence", "iq"):
        for kind in ("bare", "full", "host"):
            m.hook(f"pre-{stanza}/{kind}", blocklist.outbound, 100)
    m.hook("user-deleted", lambda event: blocklist.lists.pop(event.username))


class Blocklist:
    def __init__(self, m: ModuleContext) -> None:
        self.m = m
        self.store = m.open_store("blocklist", "keyval")
        self.lists: LRUCache[str, frozenset[str]] = LRUCache(
            m.config.get_int("blocklist_cache_size", 64, min=1))
        # XEP-0191 3.3: a blocked sender's message SHOULD get an error (Prosody
        # 0.12.5+ drops it unless this is set).
        self.bounce_messages = m.config.get_bool("bounce_blocked_messages", True)
        self.max_items = m.config.get_int("blocklist_max_items", DEFAULT_MAX_ITEMS, min=1)

    def blocked(self, username: str) -> frozenset[str]:
        return self.lists.get_or_make(
            username, lambda: frozenset(self.store.get(username) or {}))

    def _save(self, username: str, jids: frozenset[str]) -> None:
        self.store.set(username, {jid: True for jid in sorted(jids)} or None)
        self.lists.set(username, jids)

    def is_blocked(self, username: str, sender: JID) -> bool:
        jids = self.blocked(username)
        return bool(jids) and (str(sender) in jids or str(sender.bare) in jids
                               or sender.domain in jids)

    # -- the list -------------------------------------------------------------------

    def get(self, request: IqRequest) -> Element:
        session = request.origin
        session.module_data["blocklist"] = True  # it asked: it gets pushes
        reply = Element(BLOCKLIST)
        for jid in sorted(self.blocked(session.username)):
            SubElement(reply, ITEM, {"jid": jid})
        return reply

    def edit(self, request: IqRequest, block: bool) -> None:
        session = request.origin
        items = request.payload.findall(ITEM)
        if block and not items:
            raise StanzaError("bad-request", "Block at least one JID")
        try:
            jids = {str(parse_jid(item.get("jid", ""))) for item in items}
        except InvalidJID as error:
            raise StanzaError("jid-malformed") from error
        current = self.blocked(session.username)
        if block:
            updated = current | jids
            if len(updated) > self.max_items:
                raise StanzaError("resource-constraint",
                                  f"At most {self.max_items} blocked JIDs")
        else:
            updated = current - jids if jids else frozenset()
        if block:
            # Before the list holds them, or the goodbye itself would be stopped.
            self._leave(session.jid, jids - current)
        self._save(session.username, updated)
        self._push(session.jid, request.payload)

    def _leave(self, user: JID, newly_blocked: set[str]) -> None:
        """Contacts just blocked see the account go offline (XEP-0191 3.3)."""
        roster = self.m.typed_store("rosters").get_roster(user.domain, user.local)
        for jid in newly_blocked:
            item = roster.get(jid)
            if item is None or item.subscription not in ("from", "both"):
                continue
            for session in available_sessions(self.m, user.bare):
                self.m.route(Element(PRESENCE, {"type": "unavailable",
                                                "from": str(session.jid), "to": jid}))

    def _push(self, user: JID, change: Element) -> None:
        for session in list(self.m.sessions(user.bare).values()):
            if session.module_data.get("blocklist"):
                iq = Element(IQ, {"type": "set", "id": "block" + secrets.token_hex(4),
                                  "to": str(session.jid)})
                iq.append(change)
                session.send(iq)

    # -- enforcement -------------------------------------------------------------------

    def blocks(self, sender: JID, target: JID) -> bool:
        """Whether `sender`, an account of some local host, blocked `target`."""
        if sender.local is None or sender.bare == target.bare:
            return False
        lists = self.m.shared("blocklists", dict).get(sender.domain)
        return lists is not None and lists.is_blocked(sender.local, target)

    def inbound(self, event: Any) -> bool:
        to: JID = event.to
        stanza = event.stanza
        try:
            sender = parse_jid(stanza.get("from", ""))
        except InvalidJID:
            return False
        if self.blocks(sender, to):
            return True
        if to.local is None or sender.bare == to.bare or not self.is_blocked(to.local, sender):
            return False
        kind = stanza.get("type")
        if (stanza.tag == IQ and kind in ("get", "set")) or (
                self.bounce_messages and stanza.tag == MESSAGE
                and kind in (None, "normal", "chat")):
            self.m.bounce(stanza, event.origin, StanzaError("service-unavailable"))
        return True

    def outbound_routed(self, event: Any) -> bool:
        try:
            sender = parse_jid(event.stanza.get("from", ""))
            target = parse_jid(event.stanza.get("to", ""))
        except InvalidJID:
            return False
        return self.blocks(sender, target)

    def outbound(self, event: Any) -> bool:
        stanza = event.stanza
        to = stanza.get("to")
        if not to:
            return False
        try:
            target = parse_jid(to)
        except InvalidJID:
            return False
        user: JID = event.origin.jid
        if target.bare == user.bare or not self.is_blocked(user.local or "", target):
            return False
        kind = stanza.get("type")
        if stanza.tag != PRESENCE and kind not in ("error", "result"):
            self.m.bounce(stanza, event.origin, StanzaError(
                "not-acceptable", "You have blocked this JID",
                extra=Element(f"{{{ERRORS}}}blocked")))
        return True
