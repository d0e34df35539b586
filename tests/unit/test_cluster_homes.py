"""Where entities that live on one node (MUC rooms) live: the claim in Redis
follows the claiming node's heartbeat, and each node's memory of homes
(xmpp.cluster.homes) asks Redis again only once a home's inbox is closed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.unit import redis_fixtures
from xmpp.cluster.homes import Homes
from xmpp.cluster.node import ClusterNode
from xmpp.cluster.options import ClusterOptions
from xmpp.cluster.wire import SessionEntry
from xmpp.jid import parse_jid

redis_url = redis_fixtures.redis_url
redis_prefix = redis_fixtures.redis_prefix
ROOM = parse_jid("room@conference.example.com")


@pytest.fixture
def nodes(redis_url, redis_prefix):
    made = {name: ClusterNode(ClusterOptions(redis_url, name, 1.0, redis_prefix))
            for name in ("a", "b")}
    for node in made.values():
        node.join()
    yield made
    for node in made.values():
        node.redis.close()


def test_the_first_claim_wins_while_its_node_beats(nodes):
    a, b = nodes["a"], nodes["b"]
    assert a.claim_home(str(ROOM)) == "a"
    assert b.claim_home(str(ROOM)) == "a"
    a.redis.delete(a.key("node", "a"))  # a's heartbeat expired
    assert b.claim_home(str(ROOM)) == "b"
    assert a.claim_home(str(ROOM)) == "b"


def test_a_reaped_node_frees_only_the_claims_still_its_own(nodes):
    a, b = nodes["a"], nodes["b"]
    other = "other@conference.example.com"
    a.claim_home(str(ROOM))
    a.claim_home(other)
    a.redis.delete(a.key("node", "a"))
    assert b.claim_home(other) == "b"
    assert b.forget_node("a", while_dead=True)
    assert not b.redis.exists(b.key("home", str(ROOM)))
    assert b.redis.get(b.key("home", other)) == b"b"


class Recorder:
    def __init__(self, node: ClusterNode) -> None:
        self.forwarded: list[tuple[str, str]] = []
        self.fired: list[tuple[str, str]] = []
        self.handing_on: str | None = None  # the dead node whose inbox is handed on
        self.homes = Homes(node,
                           lambda home, stanza, to: self.forwarded.append((home, str(to))),
                           lambda host, event, jid: self.fired.append((event, str(jid))),
                           lambda dead: dead == self.handing_on)

    def route(self, to: str) -> bool:
        return self.homes.route(SimpleNamespace(to=parse_jid(to), stanza=None))


def test_stanzas_go_to_the_rooms_node_and_the_service_stays_local(nodes):
    a, b = Recorder(nodes["a"]), Recorder(nodes["b"])
    assert a.route(f"{ROOM}/nick") is False  # a claims it: mod_muc serves it here
    assert a.fired == [("entity-claimed", str(ROOM))]
    assert b.route(str(ROOM)) is True
    assert b.forwarded == [("a", str(ROOM))]
    assert b.route("conference.example.com") is False
    assert b.fired == []


def test_a_dead_home_is_claimed_once_its_inbox_is_closed(nodes):
    a, b = Recorder(nodes["a"]), Recorder(nodes["b"])
    a.route(str(ROOM))
    assert b.route(str(ROOM)) is True
    nodes["a"].redis.delete(nodes["a"].key("node", "a"))
    # Remembered while a's inbox is open: what b sends waits there behind
    # the older stanzas for the room, for a's drainer to route afresh.
    b.route(str(ROOM))
    assert b.forwarded == [("a", str(ROOM))] * 2
    b.homes.forget("a")  # a write found its inbox closed
    assert b.route(str(ROOM)) is False
    assert b.fired == [("entity-claimed", str(ROOM))]
    # a, back after a lapse, finds the room gone and lets its copy go.
    nodes["a"].beat()
    a.homes.verify()
    assert a.fired[-1] == ("entity-released", str(ROOM))
    assert a.route(str(ROOM)) is True and a.forwarded == [("b", str(ROOM))]


def test_two_claims_of_a_dead_home_at_once_tell_the_module_once(nodes, monkeypatch):
    """Two stanzas for a room whose home died, routed at once (each waits for
    Redis): the claim answered second must not tell mod_muc again, which would
    drop the room the first one brought back and the occupants it took since."""
    b = Recorder(nodes["b"])
    claim = nodes["b"].claim_home

    def answered_after_another_claim(entity: str) -> str:
        monkeypatch.setattr(nodes["b"], "claim_home", claim)
        home = claim(entity)
        assert b.route(str(ROOM)) is False  # the other stanza, answered first
        return home

    monkeypatch.setattr(nodes["b"], "claim_home", answered_after_another_claim)
    assert b.route(f"{ROOM}/nick") is False
    assert b.fired == [("entity-claimed", str(ROOM))]


def test_an_ended_room_frees_its_claim_for_whoever_routes_there_next(nodes):
    a, b = Recorder(nodes["a"]), Recorder(nodes["b"])
    a.route(str(ROOM))
    b.homes.ended(ROOM)  # not b's: nothing changes
    assert nodes["a"].claim_home(str(ROOM)) == "a"
    a.homes.ended(ROOM)
    assert not nodes["a"].redis.sismember(nodes["a"].key("homes", "a"), str(ROOM))
    assert b.route(str(ROOM)) is False  # the next node to route there claims it
    assert b.fired == [("entity-claimed", str(ROOM))]


def test_a_reaper_leaves_alone_a_node_that_beats_again(nodes):
    """A node cut off long enough to be reaped, back before the reaper got to
    its entries: what it wrote again stays (and so do its claims, and its
    place in the set of nodes)."""
    a, b = nodes["a"], nodes["b"]
    alice = parse_jid("alice@example.com/phone")
    a.put_session(alice, SessionEntry("a", "s1", 1.0))
    a.claim_home(str(ROOM))
    a.redis.delete(a.key("node", "a"))  # silent: b may reap it
    a.beat()  # back
    assert b.remove_sessions_of("a", while_dead=True) is None
    assert not b.forget_node("a", while_dead=True)
    assert [jid for jid, _ in b.sessions_of("a")] == [alice]
    assert b.claim_home(str(ROOM)) == "a"
    assert b.is_known("a")
    a.redis.delete(a.key("node", "a"))  # silent again
    removed = b.remove_sessions_of("a", while_dead=True)
    assert [(jid, entry.sid) for jid, entry in removed or ()] == [(alice, "s1")]
    assert b.forget_node("a", while_dead=True)
    assert not list(b.sessions_of("a"))
    assert not b.is_known("a")
    a.join()
    assert b.is_known("a")


def test_a_reaper_removes_every_entry_of_the_dead_node_and_no_other(nodes):
    a, b = nodes["a"], nodes["b"]
    phone, laptop = parse_jid("alice@example.com/phone"), parse_jid("alice@example.com/laptop")
    bob = parse_jid("bob@example.com/desk")
    a.put_session(phone, SessionEntry("a", "s1", 1.0))
    a.put_session(bob, SessionEntry("a", "s2", 1.0))
    b.put_session(laptop, SessionEntry("b", "s3", 1.0))
    a.redis.delete(a.key("node", "a"))
    removed = b.remove_sessions_of("a", while_dead=True)
    assert sorted((str(jid), entry.sid) for jid, entry in removed or ()) == [
        (str(phone), "s1"), (str(bob), "s2")]
    assert [str(jid) for jid, _entry in b.sessions_for(phone.bare)] == [str(laptop)]
    assert not list(b.sessions_of("a"))
    assert [str(jid) for jid, _entry in b.sessions_of("b")] == [str(laptop)]


def test_the_drainer_of_a_dead_home_claims_its_rooms(nodes):
    """To the greenlet handing on a's inbox, a's rooms live nowhere yet: what
    it routes afresh for them brings them back here, not to a's inbox. The
    node's other greenlets go on sending there, behind what the drainer has
    yet to take, until the inbox is closed; then the room is here."""
    a, b = Recorder(nodes["a"]), Recorder(nodes["b"])
    a.route(str(ROOM))
    assert b.route(str(ROOM)) is True
    nodes["a"].redis.delete(nodes["a"].key("node", "a"))
    b.handing_on = "a"
    assert b.route(str(ROOM)) is False
    assert b.route(f"{ROOM}/nick") is False
    assert b.fired == [("entity-claimed", str(ROOM))]
    b.handing_on = None  # another greenlet (a client's)
    assert b.route(str(ROOM)) is True
    assert b.forwarded == [("a", str(ROOM))] * 2
    b.homes.forget("a")  # closed
    assert b.route(str(ROOM)) is False
    assert b.fired == [("entity-claimed", str(ROOM))]  # once: the room is kept
