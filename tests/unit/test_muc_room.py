"""The XEP-0045 room core and service without sockets: stanzas in, stanzas out."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from xml.etree.ElementTree import Element, SubElement

import pytest

from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.muc import names as n
from xmpp.muc.history import HistoryRequest, parse_request
from xmpp.muc.room import Outcome, Room, RoomPolicy
from xmpp.muc.roomconfig import RoomConfig, apply_form
from xmpp.muc.service import MucService, ServicePolicy, creation_policy

ROOM = "room@conference.localhost"
NOW = 1_700_000_000.0


class DictStore:
    def __init__(self) -> None:
        self.rooms: dict[str, dict] = {}

    def load(self, node: str):
        return self.rooms.get(node)

    def save(self, node: str, data: dict) -> None:
        self.rooms[node] = data

    def delete(self, node: str) -> None:
        self.rooms.pop(node, None)

    def nodes(self) -> list[str]:
        return list(self.rooms)


def ids():
    counter = itertools.count()
    return lambda: f"id{next(counter)}"


def make_room(**config) -> Room:
    room = Room(ROOM, RoomConfig(**config), RoomPolicy(max_occupants=50), new_id=ids(),
                affiliations={"owner@localhost": "owner"})
    return room


def presence(real: str, nick: str | None, kind: str | None = None, *, join: bool = True,
             history: dict[str, str] | None = None, password: str | None = None) -> Element:
    stanza = Element(n.PRESENCE, {"from": real, "to": f"{ROOM}/{nick}" if nick else ROOM})
    if kind:
        stanza.set("type", kind)
    if join:
        x = SubElement(stanza, n.X_MUC)
        if history is not None:
            SubElement(x, f"{{{n.MUC}}}history", history)
        if password is not None:
            SubElement(x, f"{{{n.MUC}}}password").text = password
    return stanza


def groupchat(real: str, body: str) -> Element:
    message = Element(n.MESSAGE, {"from": real, "to": ROOM, "type": "groupchat"})
    SubElement(message, n.BODY).text = body
    return message


def admin_set(real: str, **item: str) -> Element:
    iq = Element(n.IQ, {"from": real, "to": ROOM, "type": "set", "id": "a1"})
    SubElement(SubElement(iq, f"{{{n.MUC_ADMIN}}}query"), f"{{{n.MUC_ADMIN}}}item", item)
    return iq


def error_condition(stanza: Element) -> str | None:
    error = stanza.find("error")
    if error is None:
        return None
    return error[0].tag.rpartition("}")[2]


def to(outcome: Outcome, real: str) -> list[Element]:
    return [stanza for stanza in outcome.stanzas if stanza.get("to") == real]


def codes(stanza: Element) -> set[str]:
    return {status.get("code") for status in stanza.iter(f"{{{n.MUC_USER}}}status")}


def test_join_sends_occupants_self_presence_history_and_subject():
    room = make_room()
    room.handle(presence("owner@localhost/a", "Owner"), NOW)
    room.handle(groupchat("owner@localhost/a", "hi"), NOW)
    outcome = room.handle(presence("bob@localhost/b", "Bob"), NOW + 1)
    mine = to(outcome, "bob@localhost/b")
    assert [s.get("from") for s in mine] == [f"{ROOM}/Owner", f"{ROOM}/Bob", f"{ROOM}/Owner",
                                             ROOM]
    assert codes(mine[1]) == {n.SELF}
    assert mine[2].findtext(n.BODY) == "hi" and mine[2].find(n.DELAY) is not None
    assert mine[3].find(n.SUBJECT) is not None
    # The owner sees bob arrive, with his real JID (moderators see JIDs).
    [seen] = to(outcome, "owner@localhost/a")
    assert seen.find(f"{n.X_USER}/{{{n.MUC_USER}}}item").get("jid") == "bob@localhost/b"
    # ...and bob does not see the owner's JID in a semi-anonymous room.
    assert mine[0].find(f"{n.X_USER}/{{{n.MUC_USER}}}item").get("jid") is None


def test_history_request_limits():
    room = make_room()
    room.handle(presence("owner@localhost/a", "Owner"), NOW)
    for number in range(30):
        room.handle(groupchat("owner@localhost/a", f"m{number}"), NOW + number)
    # The room keeps 20 (history_length); 10^9 asked gets those 20.
    everything = parse_request(_x(maxstanzas=str(10 ** 9)), NOW)
    assert len(room.history.select(everything, 20)) == 20
    assert len(room.history.select(HistoryRequest(), 5)) == 5  # the default count
    assert room.history.select(parse_request(_x(maxchars="0"), NOW), 20) == []
    recent = room.history.select(parse_request(_x(seconds="3"), NOW + 30), 20)
    assert [e.stanza.findtext(n.BODY) for e in recent] == ["m27", "m28", "m29"]
    # Values that are no number are ignored, as Prosody does.
    assert parse_request(_x(maxstanzas="-1", maxchars="lots"), NOW) == HistoryRequest()


def _x(**history: str) -> Element:
    x = Element(n.X_MUC)
    SubElement(x, f"{{{n.MUC}}}history", history)
    return x


def test_nick_conflict_and_length():
    room = make_room()
    room.handle(presence("owner@localhost/a", "Owner"), NOW)
    outcome = room.handle(presence("eve@localhost/e", "Owner"), NOW)
    assert error_condition(outcome.stanzas[0]) == "conflict"
    outcome = room.handle(presence("eve@localhost/e", "E" * 24), NOW)
    assert error_condition(outcome.stanzas[0]) == "not-acceptable"
    # The same user's second session shares the nick.
    outcome = room.handle(presence("owner@localhost/b", "Owner"), NOW)
    assert error_condition(outcome.stanzas[0]) is None
    assert set(room.occupants["Owner"].sessions) == {"owner@localhost/a", "owner@localhost/b"}


def test_kick_needs_a_moderator_and_bans_stick():
    room = make_room()
    room.handle(presence("owner@localhost/a", "Owner"), NOW)
    room.handle(presence("bob@localhost/b", "Bob"), NOW)
    room.handle(presence("eve@localhost/e", "Eve"), NOW)
    outcome = room.handle(admin_set("bob@localhost/b", nick="Eve", role="none"), NOW)
    assert error_condition(outcome.stanzas[0]) == "forbidden"
    outcome = room.handle(admin_set("owner@localhost/a", jid="eve@localhost",
                                    affiliation="outcast"), NOW)
    [told] = to(outcome, "eve@localhost/e")
    assert codes(told) == {n.BANNED, n.SELF} and told.get("type") == "unavailable"
    assert outcome.save and "Eve" not in room.occupants
    outcome = room.handle(presence("eve@localhost/e", "Eve"), NOW)
    assert error_condition(outcome.stanzas[0]) == "forbidden"
    # An owner cannot be kicked, and the last owner cannot leave ownership.
    room.affiliations["bob@localhost"] = "admin"
    room.occupants["Bob"].role = "moderator"
    outcome = room.handle(admin_set("bob@localhost/b", nick="Owner", role="none"), NOW)
    assert error_condition(outcome.stanzas[0]) == "not-allowed"
    outcome = room.handle(admin_set("owner@localhost/a", jid="owner@localhost",
                                    affiliation="member"), NOW)
    assert error_condition(outcome.stanzas[0]) == "conflict"


def test_config_form_wrong_types_change_nothing():
    config = RoomConfig()
    with pytest.raises(StanzaError) as error:
        apply_form(config, {"muc#roomconfig_persistentroom": ["yes please"]},
                   archiving_offered=False, max_history=100)
    assert error.value.condition == "bad-request"
    with pytest.raises(StanzaError):
        apply_form(config, {"muc#roomconfig_presencebroadcast": ["moderator", "king"]},
                   archiving_offered=False, max_history=100)
    with pytest.raises(StanzaError):
        apply_form(config, {"muc#roomconfig_historylength": ["9" * 40]},
                   archiving_offered=False, max_history=100)
    new, changed = apply_form(config, {"muc#roomconfig_historylength": ["1000000000"],
                                       "x-unknown": ["whatever"],
                                       "muc#roomconfig_whois": ["anyone"]},
                              archiving_offered=False, max_history=100)
    assert new.history_length == 100 and new.whois == "anyone"
    assert changed == {"history_length", "whois"}


def test_ten_thousand_joins_are_bounded():
    room = make_room()
    refused = 0
    for number in range(10_000):
        outcome = room.handle(presence(f"user{number}@localhost/r", f"u{number}"), NOW)
        refused += error_condition(outcome.stanzas[-1]) == "service-unavailable"
    assert len(room.occupants) == 50
    assert refused == 10_000 - 50
    # An owner still gets in.
    outcome = room.handle(presence("owner@localhost/a", "Owner"), NOW)
    assert "Owner" in room.occupants


def test_presence_flood_is_refused_with_the_wait():
    room = make_room()
    room.handle(presence("owner@localhost/a", "Owner"), NOW)
    refused = []
    for number in range(2_000):
        outcome = room.handle(presence("bob@localhost/b", f"bob{number}"), NOW)
        if error_condition(outcome.stanzas[0]) == "policy-violation":
            refused.append(outcome.stanzas[0])
    # A burst of 10 presence changes, then none until tokens come back (1 a second).
    assert len(refused) == 2_000 - 10
    assert refused[0].find("error").get("type") == "wait"
    assert [o.nick for o in room.occupants.values()] == ["Owner", "bob9"]
    outcome = room.handle(presence("bob@localhost/b", "later"), NOW + 1.5)
    assert "later" in room.occupants
    # Other sessions have buckets of their own.
    outcome = room.handle(groupchat("owner@localhost/a", "unaffected"), NOW)
    assert to(outcome, "bob@localhost/b")[0].findtext(n.BODY) == "unaffected"


def test_error_from_an_occupant_removes_it():
    room = make_room()
    room.handle(presence("owner@localhost/a", "Owner"), NOW)
    room.handle(presence("bob@localhost/b", "Bob"), NOW)
    bounce = Element(n.MESSAGE, {"from": "bob@localhost/b", "to": f"{ROOM}/Owner",
                                 "type": "error"})
    SubElement(SubElement(bounce, f"{{{ns.CLIENT}}}error", {"type": "cancel"}),
               f"{{{ns.STANZA_ERRORS}}}service-unavailable")
    outcome = room.handle(bounce, NOW)
    assert "Bob" not in room.occupants
    assert n.SHUTDOWN_ERROR in codes(to(outcome, "owner@localhost/a")[0])


def test_service_creation_policy_locking_and_tombstones():
    store = DictStore()
    service = MucService("conference.localhost", policy=ServicePolicy(
        restrict_creation="local", admins=frozenset({"admin@localhost"})),
        room_policy=RoomPolicy(), defaults=RoomConfig(persistent=True), store=store,
        new_id=ids())
    outsider = Element(n.PRESENCE, {"from": "eve@elsewhere/e", "to": f"{ROOM}/Eve"})
    SubElement(outsider, n.X_MUC)
    _room, outcome = service.handle(outsider, NOW)
    assert error_condition(outcome.stanzas[0]) == "not-allowed"
    room, outcome = service.handle(presence("owner@localhost/a", "Owner"), NOW)
    assert room is not None and room.locked and n.CREATED in codes(outcome.stanzas[0])
    # Locked: only the owner is in until the form is submitted.
    _room, outcome = service.handle(presence("bob@localhost/b", "Bob"), NOW)
    assert error_condition(outcome.stanzas[0]) == "item-not-found"
    submit = Element(n.IQ, {"from": "owner@localhost/a", "to": ROOM, "type": "set", "id": "c"})
    SubElement(SubElement(submit, f"{{{n.MUC_OWNER}}}query"), f"{{{ns.DATA_FORMS}}}x",
               {"type": "submit"})
    room, outcome = service.handle(submit, NOW)
    assert outcome.stanzas[0].get("type") == "result" and "room" in store.rooms
    destroy = Element(n.IQ, {"from": "owner@localhost/a", "to": ROOM, "type": "set", "id": "d"})
    SubElement(SubElement(destroy, f"{{{n.MUC_OWNER}}}query"), f"{{{n.MUC_OWNER}}}destroy",
               {"jid": "new@conference.localhost"})
    service.handle(destroy, NOW)
    _room, outcome = service.handle(presence("bob@localhost/b", "Bob"), NOW + 10)
    error = outcome.stanzas[0].find("error")
    assert error_condition(outcome.stanzas[0]) == "gone"
    assert error.findtext(f"{{{ns.STANZA_ERRORS}}}gone") == "xmpp:new@conference.localhost?join"
    # A service admin may bring it back at once.
    room, outcome = service.handle(presence("admin@localhost/x", "Admin"), NOW + 20)
    assert room is not None and n.CREATED in codes(outcome.stanzas[-2])


def test_rooms_come_back_from_storage_without_occupants():
    store = DictStore()
    room = make_room(persistent=True)
    room.handle(presence("owner@localhost/a", "Owner"), NOW)
    room.affiliations["bob@localhost"] = "member"
    store.save("room", room.to_json())
    service = MucService("conference.localhost", policy=ServicePolicy(),
                         room_policy=RoomPolicy(), defaults=RoomConfig(), store=store,
                         new_id=ids())
    back, outcome = service.handle(presence("bob@localhost/b", "Bob"), NOW)
    assert back is not None and back.affiliation("bob@localhost") == "member"
    mine = to(outcome, "bob@localhost/b")
    assert n.CREATED not in codes(mine[0]) and list(back.occupants) == ["Bob"]


class YieldingStore(DictStore):
    """Storage whose answer comes after other stanzas were handled, as a database
    read lets other greenlets run: `meanwhile` runs during the next load."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: list[Callable[[], object]] = []

    def load(self, node: str):
        data = super().load(node)  # as read before the others ran
        while self.meanwhile:
            self.meanwhile.pop(0)()
        return data


def test_a_room_brought_back_while_storage_answered_another_stanza_is_the_one_kept():
    """Two stanzas for a stored room at once (a reaped occupant's unavailable, a
    join): the room the join brought back meanwhile keeps its occupant."""
    store = YieldingStore()
    stored = make_room(persistent=True)
    store.save("room", stored.to_json())
    service = MucService("conference.localhost", policy=ServicePolicy(),
                         room_policy=RoomPolicy(), defaults=RoomConfig(), store=store,
                         new_id=ids())
    store.meanwhile.append(lambda: service.handle(presence("vic@localhost/v", "Vic"), NOW))
    service.handle(presence("uma@localhost/u", "Uma", "unavailable", join=False), NOW)
    _room, outcome = service.handle(presence("tina@localhost/t", "Tina"), NOW)
    assert list(service.rooms["room"].occupants) == ["Vic", "Tina"]
    assert [s.get("from") for s in to(outcome, "vic@localhost/v")] == [f"{ROOM}/Tina"]


def test_a_room_created_while_storage_answered_another_join_is_joined_not_made_again():
    store = YieldingStore()
    service = MucService("conference.localhost", policy=ServicePolicy(locking=False),
                         room_policy=RoomPolicy(), defaults=RoomConfig(), store=store,
                         new_id=ids())
    store.meanwhile.append(lambda: service.handle(presence("owner@localhost/a", "Owner"), NOW))
    room, outcome = service.handle(presence("bob@localhost/b", "Bob"), NOW)
    assert room is service.rooms["room"] and list(room.occupants) == ["Owner", "Bob"]
    assert room.affiliation("bob@localhost") == "none"
    own = to(outcome, "bob@localhost/b")[-2]
    assert n.SELF in codes(own) and n.CREATED not in codes(own)


def test_restrict_room_creation_values():
    assert creation_policy(True) == "admin"
    assert creation_policy(False) is False
    assert creation_policy("local") == "local"
    with pytest.raises(ValueError):
        creation_policy("everyone")


def test_iqs_between_occupants_are_relayed_and_answered_back():
    room = make_room()
    room.handle(presence("owner@localhost/a", "Owner"), NOW)
    room.handle(presence("bob@localhost/b", "Bob"), NOW)
    query = Element(n.IQ, {"from": "bob@localhost/b", "to": f"{ROOM}/Owner", "type": "get",
                           "id": "v1"})
    SubElement(query, "{jabber:iq:version}query")
    [relayed] = room.handle(query, NOW).stanzas
    assert relayed.get("from") == f"{ROOM}/Bob" and relayed.get("to") == "owner@localhost/a"
    assert relayed.get("id") != "v1"
    answer = Element(n.IQ, {"from": "owner@localhost/a", "to": f"{ROOM}/Bob",
                            "type": "result", "id": relayed.get("id")})
    [back] = room.handle(answer, NOW).stanzas
    assert (back.get("from"), back.get("to"), back.get("id")) == (
        f"{ROOM}/Owner", "bob@localhost/b", "v1")
    # A forged id goes nowhere.
    answer.set("id", "Zm9yZ2Vk")
    assert room.handle(answer, NOW).stanzas == []
    # vCards are asked of the account (as Prosody does).
    vcard = Element(n.IQ, {"from": "bob@localhost/b", "to": f"{ROOM}/Owner", "type": "get",
                           "id": "v2"})
    SubElement(vcard, "{vcard-temp}vCard")
    [relayed] = room.handle(vcard, NOW).stanzas
    assert relayed.get("to") == "owner@localhost"
    answer = Element(n.IQ, {"from": "owner@localhost", "to": f"{ROOM}/Bob",
                            "type": "result", "id": relayed.get("id")})
    [back] = room.handle(answer, NOW).stanzas
    assert back.get("id") == "v2" and back.get("from") == f"{ROOM}/Owner"


def test_becoming_members_only_removes_non_members():
    room = make_room()
    room.handle(presence("owner@localhost/a", "Owner"), NOW)
    room.handle(presence("bob@localhost/b", "Bob"), NOW)
    room.handle(presence("carol@localhost/c", "Carol"), NOW)
    room.affiliations["carol@localhost"] = "member"
    submit = Element(n.IQ, {"from": "owner@localhost/a", "to": ROOM, "type": "set", "id": "c"})
    form = SubElement(SubElement(submit, f"{{{n.MUC_OWNER}}}query"), f"{{{ns.DATA_FORMS}}}x",
                      {"type": "submit"})
    for var, value in (("FORM_TYPE", n.MUC_ROOMCONFIG), ("muc#roomconfig_membersonly", "1")):
        SubElement(SubElement(form, f"{{{ns.DATA_FORMS}}}field", {"var": var}),
                   f"{{{ns.DATA_FORMS}}}value").text = value
    outcome = room.handle(submit, NOW)
    assert list(room.occupants) == ["Owner", "Carol"]
    gone = [s for s in to(outcome, "bob@localhost/b") if s.get("type") == "unavailable"]
    assert codes(gone[0]) == {n.NOW_MEMBERS_ONLY, n.SELF}
    assert n.CONFIG_CHANGED in codes(to(outcome, "carol@localhost/c")[0])


def test_logged_rooms_archive_messages_and_presences_with_stanza_ids():
    room = Room(ROOM, RoomConfig(), RoomPolicy(archive=True, log_presences=True), new_id=ids())
    outcome = room.handle(presence("owner@localhost/a", "Owner"), NOW)
    assert n.LOGGING_ON in codes(to(outcome, "owner@localhost/a")[0])
    assert [item.stanza.tag for item in outcome.archive] == [n.PRESENCE]
    outcome = room.handle(groupchat("owner@localhost/a", "kept"), NOW)
    [item] = outcome.archive
    [echo] = outcome.stanzas
    assert echo.find(f"{{{n.STANZA_ID}}}stanza-id").get("id") == item.key
    assert item.with_ == f"{ROOM}/Owner"
    # Chat states are broadcast but neither kept nor archived.
    state = Element(n.MESSAGE, {"from": "owner@localhost/a", "to": ROOM, "type": "groupchat"})
    SubElement(state, "{http://jabber.org/protocol/chatstates}composing")
    outcome = room.handle(state, NOW)
    assert outcome.archive == [] and len(outcome.stanzas) == 1
    assert len(room.history.entries) == 1
    room.config.archiving = False
    outcome = room.handle(groupchat("owner@localhost/a", "not kept"), NOW)
    assert outcome.archive == []


def test_a_room_never_configured_is_destroyed_after_the_lock_timeout():
    service = MucService("conference.localhost", policy=ServicePolicy(lock_timeout=300),
                         room_policy=RoomPolicy(), defaults=RoomConfig(), store=DictStore(),
                         new_id=ids())
    service.handle(presence("owner@localhost/a", "Owner"), NOW)
    service.handle(presence("owner@localhost/b", "Owner"), NOW + 10)  # still locked: fine
    room, outcome = service.handle(presence("bob@localhost/b", "Bob"), NOW + 301)
    # The owner's sessions are told the room is gone; bob creates a new one.
    told = [s for s in outcome.stanzas if s.get("to", "").startswith("owner@")]
    assert {s.get("type") for s in told} == {"unavailable"}
    assert room is not None and room.affiliation("bob@localhost") == "owner"
