"""XEP-0313 archives of MUC rooms (Prosody 0.12's mod_muc_mam), with XEP-0425
moderation (urn:xmpp:message-moderate:1) of archived messages.

Load it in the MUC component's modules_enabled. Rooms whose messages are
logged (muc_log_all_rooms, else the room's "Enable archiving?" switch,
muc_log_by_default) put a XEP-0359 stanza-id on each message and keep it in
the `muc_log` archive, through a bounded queue off the routing path. A room
restored after a restart takes its join history from there. Queries are
answered to anyone but outcasts, and, in members-only rooms, to members only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement

import gevent

from storage.stores import ArchiveEntry
from xmpp import dataforms
from xmpp import mam as core
from xmpp.archive_writer import ArchiveWriter
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.muc import service_key
from xmpp.muc import names as n
from xmpp.muc.history import HistoryEntry
from xmpp.muc.room import ArchiveItem, Outcome, Room

MODERATE_NS = "urn:xmpp:message-moderate:1"
RETRACT_NS = "urn:xmpp:message-retract:1"
MODERATE = f"{{{MODERATE_NS}}}moderate"
DEFAULT_MAX_RESULTS = 50  # Prosody's max_archive_query_results
CLEANUP_INTERVAL = 4 * 3600  # Prosody 0.12's muc_log_cleanup_interval
FIRST_CLEANUP_DELAY = 60


class RoomArchive:
    """mod_muc_mam on one MUC host."""

    def __init__(self, m: ModuleContext, service: Any) -> None:
        self.m = m
        self.service = service
        config = m.config
        self.store = m.open_store("muc_log", "archive")
        self.writer = ArchiveWriter(self.store, m.log)
        self.max_results = config.get_int("max_archive_query_results", DEFAULT_MAX_RESULTS,
                                          min=0)
        self.include_total = config.get_bool("muc_log_include_total", True)
        try:
            self.expires_after = core.parse_period(config.get("muc_log_expires_after", "1w"))
        except ValueError as error:
            m.log.error("muc_log_expires_after: %s; room logs will not expire", error)
            self.expires_after = None
        self.cleanup_interval = config.get_number("muc_log_cleanup_interval", CLEANUP_INTERVAL,
                                                  min=1)
        service.update_room_policy(
            archive=True, log_all_rooms=config.get_bool("muc_log_all_rooms", False),
            log_by_default=config.get_bool("muc_log_by_default", True),
            log_presences=config.get_bool("muc_log_presences", False))
        service.on_room_loaded = self.fill_history

    def hook(self) -> None:
        m = self.m
        m.hook("muc-archive", self.archive)
        m.hook_iq("get", core.QUERY, self.query_form, target="bare")
        m.hook_iq("set", core.QUERY, self.query, target="bare")
        m.hook_iq("set", MODERATE, self.moderate, target="bare")
        m.hook("server-stopping", lambda event: self.writer.stop())
        if self.expires_after is not None:
            m.add_periodic(self.cleanup_interval, self.expire, first_delay=FIRST_CLEANUP_DELAY,
                           what="Removing expired room logs")

    # -- writing ---------------------------------------------------------------------------

    def archive(self, event: Any) -> None:
        self.append(event.room, event.items)

    def append(self, room: Room, items: list[ArchiveItem]) -> None:
        """Queue a room's items for its log (refused at once when the queue is full)."""
        node = parse_jid(room.jid).local
        for item in items:
            self.writer.offer(ArchiveEntry(node, item.stanza, _datetime(item.when), item.with_,
                                           item.key))

    def fill_history(self, room: Room) -> None:
        """A room brought back from storage gets its last messages from the log."""
        if not room.archiving or not room.history_length:
            return
        node = parse_jid(room.jid).local
        records = self.store.find(node, limit=room.history_length, reverse=True)
        for record in reversed(records):
            if record.value.tag != n.MESSAGE:
                continue  # a logged presence
            room.history.add(HistoryEntry.of(with_delay(record.value, record.when, room.jid),
                                             record.when.timestamp(), record.key))

    # -- queries -----------------------------------------------------------------------------

    def _room(self, request: IqRequest) -> tuple[Room, str]:
        room = self.service.room(parse_jid(request.stanza.get("to", "")).local)
        if room is None:
            raise StanzaError("item-not-found", "No such room")
        return room, parse_jid(room.jid).local or ""

    def _may_read(self, room: Room, requester: str) -> None:
        affiliation = room.affiliation(str(parse_jid(requester).bare))
        if affiliation == "outcast" or (room.config.members_only and affiliation == "none"):
            raise StanzaError("forbidden", "You may not read this room's archive")

    def query_form(self, request: IqRequest) -> Element:
        query = Element(core.QUERY)
        query.append(dataforms.render(core.QUERY_FORM))
        return query

    def query(self, request: IqRequest) -> bool:
        room, node = self._room(request)
        requester = request.stanza.get("from", "")
        self._may_read(room, requester)
        query = core.parse_query(request.payload, max_results=self.max_results)
        self.writer.flush()
        records, done = core.run_query(self.store, node, query,
                                       include_total=self.include_total)
        for record in records:
            message = core.result_message(requester, query.query_id, record.key, record.when,
                                          record.value)
            message.set("from", room.jid)
            self.m.route(message)
        # The result after the messages, through the same route (XEP-0313 4.2).
        answer = Element(request.stanza.tag, {"type": "result", "to": requester,
                                              "from": room.jid})
        if request.stanza.get("id") is not None:
            answer.set("id", request.stanza.get("id", ""))
        answer.append(done)
        self.m.route(answer)
        return True

    # -- XEP-0425 moderation ----------------------------------------------------------------

    def moderate(self, request: IqRequest) -> None:
        """A moderator retracts a message: its archived copy becomes a tombstone,
        the room's history forgets it, and everyone is told."""
        room, node = self._room(request)
        moderator = room.by_session.get(request.stanza.get("from", ""))
        if moderator is None or moderator.role != "moderator":
            raise StanzaError("forbidden", "Only moderators may retract messages")
        stanza_id = request.payload.get("id")
        if not stanza_id:
            raise StanzaError("bad-request", "Which message? (the 'id' attribute)")
        if request.payload.find(f"{{{RETRACT_NS}}}retract") is None:
            raise StanzaError("feature-not-implemented", "Only retraction is supported")
        self.writer.flush()
        found = self.store.find(node, ids=[stanza_id], limit=1)
        if not found:
            raise StanzaError("item-not-found", "No such message in the archive")
        original = found[0]
        reason = request.payload.findtext(f"{{{MODERATE_NS}}}reason")
        now = self.m.now()
        moderated = Element(f"{{{MODERATE_NS}}}moderated", {"by": moderator.jid})
        if room.policy.occupant_id:
            SubElement(moderated, f"{{{n.OCCUPANT_ID}}}occupant-id",
                       {"id": room.occupant_id(moderator.bare)})
        tombstone = Element(n.MESSAGE, {"from": original.value.get("from", room.jid),
                                        "type": "groupchat"})
        retracted = SubElement(tombstone, f"{{{RETRACT_NS}}}retracted",
                               {"stamp": core.timestamp(_datetime(now))})
        retracted.append(moderated)
        _add_reason(retracted, reason)
        self.store.delete(node, ids=[stanza_id])
        self.store.append(node, tombstone, original.when, original.with_, key=stanza_id)
        room.history.replace(stanza_id, with_delay(tombstone, original.when, room.jid))
        announcement = Element(n.MESSAGE, {"type": "groupchat", "id": self.service.new_id()})
        retract = SubElement(announcement, f"{{{RETRACT_NS}}}retract", {"id": stanza_id})
        retract.append(moderated)
        _add_reason(retract, reason)
        outcome = Outcome()
        room.broadcast_message(announcement, None, now, outcome, historic=True)
        for stanza in outcome.stanzas:
            self.m.route(stanza)
        self.append(room, outcome.archive)

    # -- expiry -------------------------------------------------------------------------------


    def expire(self) -> int:
        """Remove what is older than muc_log_expires_after, room by room."""
        assert self.expires_after is not None
        cutoff = _datetime(self.m.now() - self.expires_after)
        removed = 0
        for node in self.store.users():
            removed += self.store.delete(node, end=cutoff)
            gevent.sleep(0)
        self.m.log.info("Deleted %d expired room messages", removed)
        return removed


def with_delay(message: Element, when: datetime, room: str) -> Element:
    """A copy of a logged message as join history has it: with the room's <delay/>."""
    entry = Element(message.tag, message.attrib)
    entry.extend(message)
    SubElement(entry, n.DELAY, {"stamp": core.timestamp(when), "from": room})
    return entry


def _add_reason(parent: Element, reason: str | None) -> None:
    if reason:
        SubElement(parent, f"{{{RETRACT_NS}}}reason").text = reason


def _datetime(when: float) -> datetime:
    return datetime.fromtimestamp(when, UTC)


def setup(m: ModuleContext) -> None:
    service = m.shared(service_key(m.host.name), lambda: None)
    if service is None:
        m.log.error("mod_muc_mam works on a MUC component: "
                    "Component \"conference.example.com\" \"muc\"")
        return
    RoomArchive(m, service).hook()
