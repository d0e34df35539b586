"""XEP-0045 the rooms of one MUC service (Prosody's mod_muc without its I/O):
finding rooms in memory or storage, who may create them, locked new rooms,
temporary rooms that end when empty, and tombstones of destroyed ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from xml.etree.ElementTree import Element

from xmpp.errors import StanzaError
from xmpp.jid import InvalidJID, parse_jid
from xmpp.muc import names as n
from xmpp.muc.room import Destruction, Outcome, Room, RoomPolicy, error_reply
from xmpp.muc.roomconfig import RoomConfig
from xmpp.namespaces import STANZA_ERRORS

CREATION_POLICIES = (False, "admin", "local")


class RoomStore(Protocol):
    """Where persistent rooms and tombstones live (by room node)."""

    def load(self, node: str) -> dict[str, Any] | None: ...
    def save(self, node: str, data: dict[str, Any]) -> None: ...
    def delete(self, node: str) -> None: ...
    def nodes(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    """Prosody's service-wide options."""

    restrict_creation: str | bool = False  # restrict_room_creation: False, "admin", "local"
    admins: frozenset[str] = frozenset()
    locking: bool = True  # muc_room_locking
    lock_timeout: float = 300.0  # muc_room_lock_timeout
    tombstones: bool = True  # muc_tombstones
    tombstone_expiry: float = 86400 * 31  # muc_tombstone_expiry


def creation_policy(value: Any) -> str | bool:
    """restrict_room_creation as Prosody reads it: true means "admin"."""
    if value is True:
        return "admin"
    if value in CREATION_POLICIES or value is None:
        return value or False
    raise ValueError(f"restrict_room_creation must be true, false, \"admin\" or \"local\", "
                     f"not {value!r}")


class MucService:
    """The rooms of one MUC host."""

    def __init__(self, host: str, *, policy: ServicePolicy, room_policy: RoomPolicy,
                 defaults: RoomConfig, store: RoomStore, new_id: Callable[[], str]) -> None:
        self.host = host
        self.policy = policy
        self.room_policy = room_policy
        self.defaults = defaults
        self.store = store
        self.new_id = new_id
        self.rooms: dict[str, Room] = {}
        self.lock_deadlines: dict[str, float] = {}
        # Called with each room made from storage or anew (muc_mam fills its history).
        self.on_room_loaded: Callable[[Room], None] | None = None

    def update_room_policy(self, **changes: Any) -> None:
        """Change what every room follows (muc_mam switches archiving on)."""
        self.room_policy = replace(self.room_policy, **changes)
        for room in self.rooms.values():
            room.policy = self.room_policy

    def is_admin(self, jid: str) -> bool:
        return _bare(jid) in self.policy.admins

    # -- rooms ---------------------------------------------------------------------------

    def room(self, node: str) -> Room | None:
        """The live room, or a persistent one brought back from storage."""
        room = self.rooms.get(node)
        if room is not None:
            return room
        data = self.store.load(node)
        return self._bring_back(node, None if data is None or "destroyed" in data else data)

    def _bring_back(self, node: str, data: dict[str, Any] | None) -> Room | None:
        """The room in memory once storage answered `data` (None: no room stored).
        Other stanzas ran while it answered (a database read yields to other
        greenlets): a room one of them brought back or created meanwhile is the
        room, and one made from `data` now would replace it, dropping the
        occupants who joined it."""
        live = self.rooms.get(node)
        if live is not None or data is None:
            return live
        room = Room.from_json(f"{node}@{self.host}", data, self.room_policy, self.new_id)
        self._loaded(node, room)
        return room

    def forget(self, node: str) -> None:
        """Drop what memory holds of a room, occupants included: another node
        of a cluster held it meanwhile, so storage has the room as it is now."""
        room = self.rooms.get(node)
        if room is not None:
            self._drop(node, room)

    def _loaded(self, node: str, room: Room) -> None:
        self.rooms[node] = room
        if self.on_room_loaded is not None:
            self.on_room_loaded(room)

    def public_rooms(self) -> list[Room]:
        """Rooms listed in the service's disco#items: public and unlocked."""
        nodes = set(self.rooms) | set(self.store.nodes())
        rooms = [self.room(node) for node in sorted(nodes)]
        return [room for room in rooms
                if room is not None and room.config.public and not room.locked]

    # -- stanzas -------------------------------------------------------------------------

    def handle(self, stanza: Element, now: float) -> tuple[Room | None, Outcome]:
        """A stanza addressed to a room or an occupant; the room (None once
        there is none) and what to do."""
        node = parse_jid(stanza.get("to", "")).local or ""
        outcome = Outcome()
        room = self.rooms.get(node)
        if room is not None and self._lock_expired(node, room, now):
            # Never configured in time: Prosody destroys it.
            room.destroy(Destruction(None, None, None), outcome)
            self._drop(node, room)
            room = None
        try:
            if room is None:
                room = self._restore(node, stanza, now)
            if room is None:
                room = self._create(node, stanza, now, outcome)
            else:
                room.handle(stanza, now, outcome)
        except StanzaError as error:
            self._refuse(stanza, error, outcome)
            return None, outcome
        if room is None:
            if stanza.tag != n.PRESENCE:  # leaving a room that is gone: nothing to say
                self._refuse(stanza, StanzaError("item-not-found", "No such room"), outcome)
            return None, outcome
        self._settle(node, room, outcome, now)
        return room, outcome

    def _lock_expired(self, node: str, room: Room, now: float) -> bool:
        deadline = self.lock_deadlines.get(node)
        if deadline is None:
            return False
        if not room.locked:
            del self.lock_deadlines[node]
            return False
        return now > deadline

    def _restore(self, node: str, stanza: Element, now: float) -> Room | None:
        """The stored room (or the one another stanza brought back or created
        while storage answered), or None; a tombstone answers `gone` until it
        expires (or a service admin joins, as in Prosody)."""
        data = self.store.load(node)
        tombstone = data.get("destroyed") if data is not None else None
        if tombstone is not None:
            admin_join = stanza.tag == n.PRESENCE and stanza.get("type") is None \
                and self.is_admin(stanza.get("from", ""))
            if now < tombstone.get("until", 0) and not admin_join:
                raise Gone(tombstone.get("reason"), tombstone.get("alternate"))
            self.store.delete(node)
            data = None
        return self._bring_back(node, data)

    def _create(self, node: str, stanza: Element, now: float, outcome: Outcome) -> Room | None:
        """A presence joining a room that does not exist creates it (XEP-0045 10.1)."""
        to = parse_jid(stanza.get("to", ""))
        if stanza.tag != n.PRESENCE or stanza.get("type") is not None or to.resource is None:
            return None
        self._check_creation(stanza)
        room = Room(f"{node}@{self.host}", replace(self.defaults), self.room_policy,
                    new_id=self.new_id,
                    affiliations={_bare(stanza.get("from", "")): "owner"},
                    locked=self.policy.locking)
        room.join(stanza, to.resource, now, outcome, created=True)
        self._loaded(node, room)
        if room.locked:
            self.lock_deadlines[node] = now + self.policy.lock_timeout
        return room

    def _check_creation(self, stanza: Element) -> None:
        restrict = self.policy.restrict_creation
        sender = stanza.get("from", "")
        if not restrict or self.is_admin(sender):
            return
        if restrict == "local" and _domain(sender) == self.host.partition(".")[2]:
            return
        raise StanzaError("not-allowed", "Room creation is restricted")

    def _settle(self, node: str, room: Room, outcome: Outcome, now: float) -> None:
        """Keep, store or drop the room after a stanza."""
        if outcome.destroyed is not None:
            self._drop(node, room)
            if room.config.persistent and self.policy.tombstones:
                self.store.save(node, {"destroyed": {
                    "reason": outcome.destroyed.reason, "alternate": outcome.destroyed.alternate,
                    "until": now + self.policy.tombstone_expiry}})
            elif room.config.persistent:
                self.store.delete(node)
        elif room.empty and not room.config.persistent:
            self._drop(node, room)
            if outcome.save:  # it was persistent until this stanza
                self.store.delete(node)
        elif outcome.save:
            if room.config.persistent:
                self.store.save(node, room.to_json())
            else:
                self.store.delete(node)

    def _drop(self, node: str, room: Room) -> None:
        if self.rooms.get(node) is room:
            del self.rooms[node]
        self.lock_deadlines.pop(node, None)

    def _refuse(self, stanza: Element, error: StanzaError, outcome: Outcome) -> None:
        if stanza.get("type") in ("error", "result", "unavailable"):
            return
        reply = error_reply(stanza, error, self.host)
        if isinstance(error, Gone) and error.alternate:
            # XEP-0045 10.9: <gone/> holds the URI of the room to go to instead.
            gone = reply.find(f"error/{{{STANZA_ERRORS}}}gone")
            if gone is not None:
                gone.text = f"xmpp:{error.alternate}?join"
        outcome.stanzas.append(reply)


class Gone(StanzaError):
    """Joining a room that was destroyed (its tombstone is still there)."""

    def __init__(self, reason: str | None, alternate: str | None) -> None:
        super().__init__("gone", reason or "This room has been destroyed")
        self.alternate = alternate


def _bare(jid: str) -> str:
    try:
        return str(parse_jid(jid).bare)
    except InvalidJID:
        return ""


def _domain(jid: str) -> str:
    try:
        return parse_jid(jid).domain
    except InvalidJID:
        return ""
