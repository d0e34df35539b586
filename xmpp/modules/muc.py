"""XEP-0045 Multi-User Chat as an internal component (Prosody 0.12's mod_muc).

Load it as `Component "conference.example.com" "muc"`. Stanzas for a room or
an occupant reach the service through the host's `route/local` event; what
is addressed to the service itself (disco, ping) goes on to the host's IQ
events, and so do IQs to a room that the room core does not answer (MAM,
moderation), for mod_muc_mam. Persistent rooms (configuration, affiliations,
subject) and tombstones live in the `config` keyval store and the
`persistent` map, as Prosody names them; occupants live in memory only. In a
cluster, each room lives on one node at a time (xmpp.cluster.homes).
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement

from storage.stores import new_archive_key
from xmpp import namespaces as ns
from xmpp.hosts import IqAnswer, iq_event
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.muc import names as n
from xmpp.muc.room import UNBOUNDED_HISTORY, RoomPolicy
from xmpp.muc.roomconfig import defaults_from_options
from xmpp.muc.service import MucService, ServicePolicy, creation_policy
from xmpp.stanza import make_iq_result

#: Prosody 13's muc_max_nick_length default (Prosody 0.12 has no limit).
DEFAULT_MAX_NICK_LENGTH = 23
#: Occupants per room: Prosody has no limit; this one bounds a flood of joins.
DEFAULT_MAX_OCCUPANTS = 1000
# IQs to a room's bare JID that the room core answers itself.
ROOM_IQS = frozenset({f"{{{n.MUC_ADMIN}}}query", f"{{{n.MUC_OWNER}}}query",
                      f"{{{ns.DISCO_INFO}}}query", f"{{{ns.DISCO_ITEMS}}}query"})
ITEMS = f"{{{ns.DISCO_ITEMS}}}query"


def service_key(host: str) -> str:
    """Where the host's MucService is shared with mod_muc_mam."""
    return f"muc/{host}"


class RoomStorage:
    """Persistent rooms by node: their data in `config`, their names in `persistent`."""

    def __init__(self, m: ModuleContext) -> None:
        self.config = m.open_store("config", "keyval")
        self.persistent = m.open_store("persistent", "map")

    def load(self, node: str) -> dict[str, Any] | None:
        return self.config.get(node)

    def save(self, node: str, data: dict[str, Any]) -> None:
        self.config.set(node, data)
        self.persistent.set(None, node, True)

    def delete(self, node: str) -> None:
        self.config.set(node, None)
        self.persistent.set(None, node, None)

    def nodes(self) -> list[str]:
        return list(self.persistent.get_all(None))


def read_policies(m: ModuleContext) -> tuple[ServicePolicy, RoomPolicy]:
    config = m.config
    try:
        restrict = creation_policy(config.get("restrict_room_creation", False))
    except ValueError as error:
        m.log.error("%s; room creation is restricted to admins", error)
        restrict = "admin"
    admins = set()
    for jid in config.get_list("admins", []):
        try:
            admins.add(str(parse_jid(str(jid)).bare))
        except InvalidJID:
            m.log.warning("admins: %r is no JID", jid)
    owners = frozenset(admins) if config.get_bool("component_admins_as_room_owners", True) \
        else frozenset()
    max_history = config.get_int("max_history_messages", None, min=0)
    service = ServicePolicy(
        restrict_creation=restrict, admins=frozenset(admins),
        locking=config.get_bool("muc_room_locking", True),
        lock_timeout=config.get_number("muc_room_lock_timeout", 300, min=1),
        tombstones=config.get_bool("muc_tombstones", True),
        tombstone_expiry=config.get_number("muc_tombstone_expiry", 86400 * 31, min=0))
    room = RoomPolicy(
        max_nick_length=config.get_int("muc_max_nick_length", DEFAULT_MAX_NICK_LENGTH, min=1,
                                       max=1023),
        max_occupants=config.get_int("muc_max_occupants", DEFAULT_MAX_OCCUPANTS, min=1),
        max_history=UNBOUNDED_HISTORY if max_history is None else max_history,
        owners=owners, occupant_id=config.get_bool("muc_occupant_id", True),
        presence_burst=config.get_int("vireo_muc_presence_burst", 10, min=1),
        presence_rate=config.get_number("vireo_muc_presence_rate", 1.0, min=0.001))
    return service, room


def setup(m: ModuleContext) -> None:
    if not m.host.is_component:
        m.log.error("mod_muc works as a component: Component \"conference.%s\" \"muc\"",
                    m.host.name)
        return
    service_policy, room_policy = read_policies(m)
    service = MucService(m.host.name, policy=service_policy, room_policy=room_policy,
                         defaults=defaults_from_options(m.config), store=RoomStorage(m),
                         new_id=new_archive_key)
    m.shared(service_key(m.host.name), lambda: service)

    m.depends("disco")
    m.add_identity("conference", "text", m.config.get_str("name", "Prosody Chatrooms"))
    m.add_feature(n.MUC)

    def to_room(event: Any) -> bool:
        to = event.to
        stanza = event.stanza
        if to.local is None:
            return False  # the service itself: disco and the like
        if stanza.tag == n.IQ and to.resource is None and len(stanza) == 1 \
                and stanza[0].tag not in ROOM_IQS and stanza.get("type") in ("get", "set") \
                and service.room(to.local) is not None:
            return False  # an IQ another module answers for the room (MAM)
        room, outcome = service.handle(stanza, m.now())
        for answer in outcome.stanzas:
            m.route(answer)
        if outcome.archive:
            m.fire("muc-archive", room=room, items=outcome.archive)
        if to.local not in service.rooms:
            m.fire("entity-ended", jid=to.bare)  # no room (any more): a cluster forgets where
        return True

    m.hook("route/local", to_room)
    # In a cluster each room lives on one node (mod_cluster passes its stanzas
    # there); a room that came or went is read afresh from storage when next used.
    # `entity-ended` above lets the cluster free the room's claim.
    m.keep_entities_on_one_node()
    for moved in ("entity-claimed", "entity-released"):
        m.hook(moved, lambda event: service.forget(event.jid.local or ""))
    m.hook("directed-presence-ended", lambda event: occupancy_ended(event.session, event.to))
    m.hook(iq_event("get", "host", ITEMS), lambda event: room_list(service, event.stanza),
           priority=10)


def occupancy_ended(session: Any, occupant: JID) -> None:
    """The session was taken out of the room as occupant `occupant` without
    its client being told (a cluster node reaped it while it was cut off, and
    it is back): it hears so as a room says it of an occupant removed for a
    technical problem (XEP-0045 15.6: self-presence, 110 and 333), so that it
    joins again. The room may live on another node, so the affiliation is
    not known here; the one the room gives on joining again counts."""
    if occupant.local is None or occupant.resource is None:
        return
    notice = Element(n.PRESENCE, {"from": str(occupant), "to": str(session.jid),
                                  "type": "unavailable"})
    x = SubElement(notice, n.X_USER)
    SubElement(x, f"{{{n.MUC_USER}}}item", {"affiliation": "none", "role": "none"})
    for code in (n.SELF, n.SHUTDOWN_ERROR):
        SubElement(x, f"{{{n.MUC_USER}}}status", {"code": code})
    session.send(notice)


def room_list(service: MucService, stanza: Element) -> IqAnswer | None:
    """The service's disco#items: its public rooms (XEP-0045 6.3)."""
    if stanza[0].get("node"):
        return None
    query = Element(ITEMS)
    for room in service.public_rooms():
        item = SubElement(query, f"{{{ns.DISCO_ITEMS}}}item", {"jid": room.jid})
        if room.config.name:
            item.set("name", room.config.name)
    return IqAnswer(make_iq_result(stanza, query))

