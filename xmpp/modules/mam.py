"""XEP-0313 Message Archive Management for users (Prosody's mod_mam).

Messages a user sends (`pre-message/*`) and receives (`message/bare|full`)
are archived under RFC 6121 delivery and XEP-0334 hints, and carry a
XEP-0359 <stanza-id/> by the user's bare JID; a client's own claim to such
an id is stripped. Writes go through a bounded queue and a worker greenlet
(xmpp.archive_writer), so routing never waits on the database. Queries,
preferences and metadata are answered from the archive store; items expire
after `archive_expires_after`.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement

import gevent

from storage.stores import ArchiveEntry, new_archive_key
from xmpp import dataforms
from xmpp import mam as core
from xmpp.archive_writer import ArchiveWriter
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import InvalidJID, bare_of, parse_jid
from xmpp.moduleapi import ModuleContext

DEFAULT_MAX_RESULTS = 50  # Prosody's max_archive_query_results
# About 570 bytes an item: a burst of 50,000 (two local users' copies of 25,000
# messages) holds some 28 MB while the database catches up.
DEFAULT_QUEUE = 50000
DEFAULT_QUERY_BURST = 30
DEFAULT_QUERY_RATE = 10.0  # queries a second, per session, past the burst
CLEANUP_INTERVAL = 86400  # Prosody 0.12 expires archives daily
FIRST_CLEANUP_DELAY = 60
PREFS_CACHE_SIZE = 10000
METADATA = f"{{{core.NS}}}metadata"


def setup(m: ModuleContext) -> None:
    Archive(m).hook()


@dataclass(slots=True)
class SessionState:
    """What mod_mam keeps on a client session: its query budget (a token
    bucket against floods) and whether it has queried the archive."""

    tokens: float
    updated: float
    requested: bool = False


class PrefsCache:
    """Users' archiving preferences, read once and kept (bounded, least recently
    used first out); `mam_smart_enable` archives only for users whose client
    has used MAM, which stores the defaults on first use as Prosody does."""

    def __init__(self, store: Any, default: str, smart_enable: bool) -> None:
        self._store = store
        self.default = default
        self.smart_enable = smart_enable
        # What users without stored preferences get, made once: asked per message.
        self._unset = core.ArchivePrefs("never" if smart_enable else default)
        self._cache: OrderedDict[str, core.ArchivePrefs | None] = OrderedDict()

    def get(self, user: str, explicit: bool = False) -> core.ArchivePrefs:
        """The user's preferences; `explicit` when a MAM client asks for them."""
        if user in self._cache:
            stored = self._cache[user]
            self._cache.move_to_end(user)
        else:
            stored = core.ArchivePrefs.from_json(self._store.get(user))
            self._remember(user, stored)
        if stored is not None:
            return stored
        if self.smart_enable and explicit:
            return self.set(user, core.ArchivePrefs(self.default))
        return self._unset

    def set(self, user: str, prefs: core.ArchivePrefs) -> core.ArchivePrefs:
        self._store.set(user, prefs.to_json())
        self._remember(user, prefs)
        return prefs

    def forget(self, user: str) -> None:
        self._cache.pop(user, None)

    def _remember(self, user: str, prefs: core.ArchivePrefs | None) -> None:
        self._cache[user] = prefs
        if len(self._cache) > PREFS_CACHE_SIZE:
            self._cache.popitem(last=False)


class Archive:
    """mod_mam on one host."""

    def __init__(self, m: ModuleContext) -> None:
        self.m = m
        config = m.config
        self.max_results = config.get_int("max_archive_query_results", DEFAULT_MAX_RESULTS,
                                          min=0)
        self.dont_archive = frozenset(
            str(name) for name in config.get_list("dont_archive_namespaces", [core.CHATSTATES]))
        store_name = config.get_str("archive_store", "archive") or "archive"
        self.store = m.open_store(store_name, "archive")
        self.expires_after = self._expiry(config.get("archive_expires_after", "1w"))
        # Counting a never-expiring archive may get slow; Prosody then leaves it out.
        self.include_total = config.get_bool("mam_include_total",
                                             self.expires_after is not None)
        try:
            default = core.policy_option(config.get("default_archive_policy", True))
        except ValueError as error:
            m.log.error("%s; archiving always", error)
            default = "always"
        self.prefs = PrefsCache(m.open_store(store_name + "_prefs", "keyval"), default,
                                config.get_bool("mam_smart_enable", False))
        self.writer = ArchiveWriter(self.store, m.log, capacity=config.get_int(
            "vireo_mam_queue_size", DEFAULT_QUEUE, min=1))
        self.query_burst = config.get_int("vireo_mam_query_burst", DEFAULT_QUERY_BURST, min=1)
        self.query_rate = config.get_number("vireo_mam_query_rate", DEFAULT_QUERY_RATE,
                                            min=0.01)
        self._last_copy: tuple[Element, Element] | None = None
        self.cleanup_interval = config.get_number("archive_cleanup_interval", CLEANUP_INTERVAL,
                                                  min=1)

    def _expiry(self, value: Any) -> float | None:
        try:
            return core.parse_period(value)
        except ValueError as error:
            self.m.log.error("archive_expires_after: %s; archives will not expire", error)
            return None

    def hook(self) -> None:
        m = self.m
        m.hook("pre-message/bare", self.outgoing, 0)
        m.hook("pre-message/full", self.outgoing, 0)
        m.hook("pre-message/bare", self.strip_own_ids, -1)
        m.hook("pre-message/full", self.strip_own_ids, -1)
        m.hook("message/bare", self.incoming, 0)
        m.hook("message/full", self.incoming, 0)
        m.hook("message/offline/handle", self.archived_counts_as_stored, -2)
        m.hook("message/offline/broadcast", self.skip_offline_for_mam_clients, 1)
        m.hook("account-disco-info", self.account_features)
        m.hook("user-deleted", self.user_deleted)
        m.hook("server-stopping", lambda event: self.writer.stop())
        if self.expires_after is not None:
            m.add_periodic(self.cleanup_interval, self.expire, first_delay=FIRST_CLEANUP_DELAY,
                           what="Removing expired archive items")
        m.hook_iq("get", core.QUERY, self.query_form, target="self")
        m.hook_iq("set", core.QUERY, self.query, target="self")
        m.hook_iq("get", core.PREFS, self.get_prefs, target="self")
        m.hook_iq("set", core.PREFS, self.set_prefs, target="self")
        m.hook_iq("get", METADATA, self.metadata, target="self")

    # -- archiving ------------------------------------------------------------------

    def outgoing(self, event: Any) -> None:
        """A message a local client sends: into the sender's archive."""
        stanza, jid = event.stanza, event.origin.jid
        own = jid.bare_text
        core.strip_stanza_ids(stanza, own)
        try:
            with_ = bare_of(stanza.get("to") or own)
        except InvalidJID:
            return  # the router refuses it
        self._archive(jid.local, own, stanza, with_)

    def strip_own_ids(self, event: Any) -> None:
        """After the other handlers (carbons) saw it: the sender's archive id is
        the sender's business, not the recipient's."""
        core.strip_stanza_ids(event.stanza, event.origin.jid.bare_text)

    def incoming(self, event: Any) -> None:
        """A message for a local user: into the recipient's archive."""
        stanza, to = event.stanza, event.to
        if to.resource is None and "/" in stanza.get("to", ""):
            return  # for a resource that has gone: handled already as message/full
        own = to.bare_text
        core.strip_stanza_ids(stanza, own)
        try:
            with_ = bare_of(stanza.get("from", ""))
        except InvalidJID:
            return
        if not self.m.sessions(parse_jid(own)) and not self.m.users.exists(to.local):
            return
        self._archive(to.local, own, stanza, with_)

    def _archive(self, user: str, own: str, stanza: Element, with_: str) -> None:
        should, _why = core.should_store(stanza)
        if not should:
            return
        stored = core.for_storage(stanza, self.dont_archive)
        if stored is None or not self._shall_store(user, with_):
            return
        if stored is stanza:
            # Handlers after this one add the id and may strip parts in place.
            stored = self._copy(stanza)
        entry = ArchiveEntry(user, stored, datetime.fromtimestamp(self.m.now(), UTC), with_,
                             new_archive_key())
        if self.writer.offer(entry):
            core.add_stanza_id(stanza, entry.key, own)

    def _copy(self, stanza: Element) -> Element:
        """A shallow copy of `stanza` to archive. A local message reaches its
        recipient's archive as it left its sender's (the sender's id stripped
        by then): both entries then share the sender's copy, which the writer
        serialises once."""
        last = self._last_copy
        if last is not None and last[0] is stanza and _same_content(stanza, last[1]):
            return last[1]
        stored = copy.copy(stanza)
        self._last_copy = (stanza, stored)
        return stored

    def _shall_store(self, user: str, with_: str) -> bool:
        rule = self.prefs.get(user).rule_for(with_)
        if rule == "roster":
            rosters = self.m.typed_store("rosters")
            return rosters.get_item(self.m.host.name, user, with_) is not None
        return rule == "always"

    def archived_counts_as_stored(self, event: Any) -> bool:
        """Without mod_offline, an archived message is not lost: no bounce."""
        return core.has_stanza_id(event.stanza, str(event.to.bare))

    def skip_offline_for_mam_clients(self, event: Any) -> bool:
        """A client that has queried the archive gets its history from there,
        not as a flood of offline messages (Prosody's rule)."""
        state = event.origin.module_data.get(self.m.name)
        return state is not None and state.requested

    # -- queries ----------------------------------------------------------------------

    def _session(self, origin: Any) -> SessionState:
        return self.m.session_data(origin, lambda: SessionState(self.query_burst, self.m.now()))

    def _spend_query(self, origin: Any) -> SessionState:
        state = self._session(origin)
        now = self.m.now()
        state.tokens = min(self.query_burst,
                           state.tokens + (now - state.updated) * self.query_rate)
        state.updated = now
        if state.tokens < 1:
            wait = (1 - state.tokens) / self.query_rate
            raise StanzaError("resource-constraint",
                              f"Too many archive queries: try again in {wait:.1f} s",
                              error_type="wait")
        state.tokens -= 1
        return state

    def query_form(self, request: IqRequest) -> Element:
        self.prefs.get(request.origin.jid.local, explicit=True)
        query = Element(core.QUERY)
        query.append(dataforms.render(core.QUERY_FORM))
        return query

    def query(self, request: IqRequest) -> Element:
        origin = request.origin
        user = origin.jid.local
        self._spend_query(origin).requested = True
        self.prefs.get(user, explicit=True)
        query = core.parse_query(request.payload, max_results=self.max_results)
        self.writer.flush()
        records, done = core.run_query(self.store, user, query,
                                       include_total=self.include_total)
        recipient = str(origin.jid)
        sender = request.stanza.get("to")
        for record in records:
            message = core.result_message(recipient, query.query_id, record.key, record.when,
                                          record.value)
            if sender:
                message.set("from", sender)
            origin.send(message)
        return done

    def metadata(self, request: IqRequest) -> Element:
        """XEP-0313 7.1: the first and last item of the archive."""
        self.writer.flush()
        user = request.origin.jid.local
        metadata = Element(METADATA)
        for name, reverse in (("start", False), ("end", True)):
            for record in self.store.find(user, limit=1, reverse=reverse):
                SubElement(metadata, f"{{{core.NS}}}{name}",
                           {"id": record.key, "timestamp": core.timestamp(record.when)})
        return metadata

    def get_prefs(self, request: IqRequest) -> Element:
        return self.prefs.get(request.origin.jid.local, explicit=True).to_xml()

    def set_prefs(self, request: IqRequest) -> Element:
        user = request.origin.jid.local
        prefs = core.prefs_from_xml(request.payload, self.prefs.get(user, explicit=True))
        return self.prefs.set(user, prefs).to_xml()

    def account_features(self, event: Any) -> None:
        for var in (core.NS, core.NS_EXTENDED, core.STANZA_ID_NS):
            SubElement(event.reply, "{http://jabber.org/protocol/disco#info}feature",
                       {"var": var})

    # -- lifecycle ------------------------------------------------------------------------

    def user_deleted(self, event: Any) -> None:
        self.writer.discard(event.username)
        self.prefs.forget(event.username)


    def expire(self) -> int:
        """Remove items older than archive_expires_after, user by user (each an
        index range), yielding between users so routing goes on."""
        assert self.expires_after is not None
        cutoff = datetime.fromtimestamp(self.m.now() - self.expires_after, UTC)
        removed = users = 0
        for user in self.m.users.list():
            count = self.store.delete(user, end=cutoff)
            if count:
                removed += count
                users += 1
            gevent.sleep(0)
        self.m.log.info("Deleted %d expired messages for %d users", removed, users)
        return removed


def _same_content(stanza: Element, copy_: Element) -> bool:
    """Whether a shallow copy still has the stanza's attributes, text and children."""
    # Elements compare by identity: the lists compare child by child in C.
    return (stanza.attrib == copy_.attrib and stanza.text == copy_.text
            and stanza[:] == copy_[:])
