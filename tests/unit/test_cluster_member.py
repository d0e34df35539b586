"""One node's part in a cluster (issue 21), its `Cluster` on a stand-in server
(a real router, no sockets) with real Redis (at $VIREO_TEST_REDIS_URL): its
heartbeat's lapses, what it learns from a reaper, what it drains, and how its
stream consumer recovers after a read that went wrong."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

import xmpp.modules.cluster as cluster_module
from tests.unit import redis_fixtures
from xmpp.cluster.node import GROUP, ClusterNode
from xmpp.cluster.options import ClusterOptions
from xmpp.cluster.wire import DRAINED, STALE, UNBIND, Envelope, SessionEntry
from xmpp.jid import parse_jid
from xmpp.modules.cluster import Cluster
from xmpp.router import Router
from xmpp.shared_session_data import SharedSessionData

redis_url = redis_fixtures.redis_url
redis_prefix = redis_fixtures.redis_prefix

TIMEOUT = 3.0
GINA = parse_jid("gina@example.com/phone")


class Outbox:
    """What the member sends, by node, instead of writing it to Redis."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Envelope]] = []
        self.shut: set[str] = set()
        self.limit = 1000

    def put(self, node: str, envelope: Envelope) -> None:
        self.sent.append((node, envelope))

    def wait_empty(self, timeout: float) -> None:
        pass

    def wait_written(self, timeout: float, node: str | None = None) -> bool:
        return True

    def wait_sent(self, node: str, timeout: float) -> None:
        pass

    def take(self, node: str) -> list[Envelope]:
        return []  # all written at once


class Clock:
    """time.monotonic for the cluster module, moved on by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Stop(BaseException):
    """Ends the consumer's endless loop (which goes on after any Exception)."""


@pytest.fixture
def nodes(redis_url, redis_prefix) -> Iterator[dict[str, ClusterNode]]:
    """Nodes "a", "b" and "c", beating."""
    yield from redis_fixtures.joined_nodes(redis_url, redis_prefix, TIMEOUT)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    made = Clock()
    monkeypatch.setattr(cluster_module, "time", made)
    return made


@pytest.fixture
def member(nodes, clock) -> Cluster:
    """Node "b" as a member, its peers known."""
    router = Router()
    fired: list[tuple[str, dict[str, Any]]] = []
    context = SimpleNamespace(
        name="cluster", log=logging.getLogger("test-cluster"),
        service=lambda name: router, shared_session_data=SharedSessionData(),
        add_timer=lambda delay, job: None, one_node_hosts=set(), hosts=dict,
        fire=lambda event, **fields: fired.append((event, fields)), fired=fired)
    made = Cluster(context, nodes["b"], queue_limit=1000)  # type: ignore[arg-type]
    made.outbox = Outbox()  # type: ignore[assignment]
    made.watch()
    assert made.peers == ["a", "c"]
    return made


def sent_to(member: Cluster) -> set[str]:
    return {node for node, _envelope in member.outbox.sent}  # type: ignore[attr-defined]


def test_a_reapers_unbind_makes_its_node_no_peer_until_it_beats_again(nodes, member):
    """Node "c" was silent for a moment that "b" missed between two watches,
    and "a" reaped it: what "b" sends "c" now would be drained by "a" (and
    news of sessions dropped), so "b" counts "c" out until it beats again."""
    nodes["c"].put_session(GINA, SessionEntry("c", "old-sid", 0.0))
    member.resync()
    assert member.router.resources(GINA.bare)["phone"].node == "c"
    member.handle(Envelope("1", UNBIND, str(GINA), "a", b"old-sid"), orphaned=False)
    assert member.router.resources(GINA.bare) == {}
    assert member.peers == ["a"]
    member.broadcast(STALE, parse_jid("example.com"), b"{}")
    assert sent_to(member) == {"a"}
    member.watch()  # "c" beats again (it rejoins: its news comes from the registry)
    assert member.peers == ["a", "c"]


def test_a_peer_gone_is_told_to_what_waits_for_its_answers(nodes, member):
    """A <db:verify/> asked of a node that died is asked again (xmpp.s2s_manager)."""
    member.watch()
    assert member.m.fired == []
    nodes["c"].redis.delete(nodes["c"].key("node", "c"))  # "c" stopped beating
    member.watch()
    assert member.peers == ["a"]
    assert ("ownership-holder-gone", {"node": "c"}) in member.m.fired


def test_a_nodes_own_unbind_leaves_it_a_peer(nodes, member):
    nodes["c"].put_session(GINA, SessionEntry("c", "sid", 0.0))
    member.resync()
    member.handle(Envelope("1", UNBIND, str(GINA), "c", b"sid"), orphaned=False)
    assert member.router.resources(GINA.bare) == {}
    assert member.peers == ["a", "c"]


def stale(sender: ClusterNode, to: str, count: int) -> list[str]:
    """`count` STALE envelopes from `sender` in `to`'s inbox, an entry each; their ids."""
    ids = [f"{sender.name}-{number}" for number in range(count)]
    for envelope_id in ids:
        sender.send([(to, Envelope(envelope_id, STALE, "example.com", sender.name,
                                   b'{"module": "pep", "key": "x"}'))])
    return ids


def test_a_drainer_takes_nothing_from_a_node_beating_again(nodes, member):
    """"b" reaps "c", which beats again before the drain: what "a" sent "c"
    is left for "c" to read (taken, it was dropped: news of sessions)."""
    ids = stale(nodes["a"], "c", 6)
    nodes["c"].redis.delete(nodes["c"].key("node", "c"))
    assert nodes["b"].claim_reaping("c")
    nodes["c"].beat()  # back before the drain began
    member.drain("c")
    read = [envelope.id for _entry, envelopes in nodes["c"].receive(1)
            for envelope in envelopes or ()]
    assert read == ids


def kinds_sent(member: Cluster) -> list[tuple[str, str]]:
    return [(node, envelope.kind) for node, envelope in member.outbox.sent]  # type: ignore[attr-defined]


def test_a_dead_nodes_sessions_leave_the_registry_before_drained_goes_out(nodes, member):
    """Peers count "c"'s sessions gone on `DRAINED`: by then the registry has
    dropped them, so "c", should it come back from a freeze now, knows they
    were reaped (and its clients hear which rooms they left)."""
    nodes["c"].put_session(GINA, SessionEntry("c", "sid", 0.0))
    member.resync()
    registered: list[list[Any]] = []
    put = member.outbox.put

    def noting_the_registry(node: str, envelope: Envelope) -> None:
        if envelope.kind == DRAINED:
            registered.append(list(nodes["a"].sessions_of("c")))
        put(node, envelope)

    member.outbox.put = noting_the_registry  # type: ignore[method-assign]
    nodes["c"].redis.delete(nodes["c"].key("node", "c"))
    member.reap("c")
    assert registered == [[]]
    assert kinds_sent(member) == [("a", DRAINED), ("a", UNBIND)]
    assert member.router.resources(GINA.bare) == {}


def test_a_restart_reaps_its_previous_run_without_drained(nodes, member):
    """"b" restarts under its own name and reaps its previous run: its peers
    hear that run's sessions end (UNBIND, by session id), never DRAINED, which
    would make them drop every session of "b", the new run's too, once those
    are bound by the time it arrives (a bench's workers, restarted at once,
    lost every message between them that way)."""
    nodes["b"].put_session(GINA, SessionEntry("b", "old-sid", 0.0))
    member.reap("b")
    assert kinds_sent(member) == [("a", UNBIND), ("c", UNBIND)]
    assert list(nodes["a"].sessions_of("b")) == []


def test_a_node_back_after_its_inbox_closed_keeps_its_sessions(nodes, member):
    """"c" beats again between the close of its inbox and the reaper's
    removal of its sessions: they stay registered and bound, and nobody is
    told "c" was drained."""
    nodes["c"].put_session(GINA, SessionEntry("c", "sid", 0.0))
    member.resync()
    fence = member.node.fence_inbox

    def fence_then_back(node: str) -> bool:
        closed = fence(node)
        nodes["c"].beat()
        return closed

    member.node.fence_inbox = fence_then_back  # type: ignore[method-assign]
    nodes["c"].redis.delete(nodes["c"].key("node", "c"))
    member.reap("c")
    assert member.outbox.sent == []  # type: ignore[attr-defined]
    assert member.router.resources(GINA.bare)["phone"].node == "c"
    assert [jid for jid, _entry in nodes["a"].sessions_of("c")] == [GINA]
    assert member.peers == ["a", "c"]


@pytest.mark.parametrize("back", [True, False], ids=["node-back", "node-silent"])
def test_a_hold_that_expires_leaves_the_nodes_sessions_bound(nodes, member, back):
    """What met "c"'s closed inbox here outgrew the hold before any DRAINED:
    it is routed afresh now, to "c"'s new inbox if "c" is back, else as the
    drainer would; "c"'s sessions stay bound until the registry drops them."""
    nodes["c"].put_session(GINA, SessionEntry("c", "sid", 0.0))
    member.resync()
    member.outbox.limit = 1  # type: ignore[attr-defined]
    if not back:
        nodes["c"].redis.delete(nodes["c"].key("node", "c"))
    held = [Envelope(f"e{number}", STALE, "example.com", "b", b"{}") for number in range(2)]
    member.inbox_closed("c", held[:1])
    member.inbox_closed("c", held[1:])  # over the limit: routed afresh at once
    timer = member.holds["c"].timer
    assert timer is not None
    timer.join(5)
    assert member.router.resources(GINA.bare)["phone"].node == "c"
    assert "c" not in member.released and "c" not in member.outbox.shut
    assert member.outbox.sent == ([("c", envelope) for envelope in held]  # type: ignore[attr-defined]
                                  if back else [])


def test_a_node_reaped_whole_is_reaped_no_more(nodes, member, caplog):
    """Once "c"'s inbox is closed and its sessions are gone it leaves the set
    of nodes: a reap of it started from an older listing says nothing, and
    no watch reaps it again, until it joins again."""
    caplog.set_level(logging.INFO)
    nodes["c"].redis.delete(nodes["c"].key("node", "c"))
    member.reap("c")
    assert kinds_sent(member) == [("a", DRAINED)]
    assert "Cluster: the inbox of c is closed" in caplog.messages
    assert nodes["a"].nodes() == (["a", "b"], [])
    member.outbox.sent.clear()  # type: ignore[attr-defined]
    caplog.clear()
    member.reap("c")
    member.watch()
    assert member.reapers == {}
    assert member.outbox.sent == []  # type: ignore[attr-defined]
    assert caplog.messages == []
    nodes["c"].join()
    assert nodes["a"].nodes() == (["a", "b", "c"], [])


def beats(member: Cluster, clock: Clock) -> Callable[[], None]:
    """A beat of the member a third of the timeout after the previous one."""
    def beat() -> None:
        clock.now += TIMEOUT / 3
        member.beat()
    return beat


def counting_rejoins(member: Cluster, monkeypatch) -> list[int]:
    rejoins: list[int] = []
    rejoin = member.rejoin

    def counted() -> None:
        rejoins.append(1)
        rejoin()

    monkeypatch.setattr(member, "rejoin", counted)
    return rejoins


def test_a_beat_that_hung_through_a_lapse_rejoins_once(nodes, member, clock, monkeypatch):
    """The beat's SET waits out a network cut longer than the timeout, the
    heartbeat expires meanwhile, then it goes through: one rejoin, not a
    second one at the next beat for the time that beat took."""
    rejoins = counting_rejoins(member, monkeypatch)
    beat = beats(member, clock)
    beat()
    assert rejoins == []
    node = nodes["b"]
    real_beat = node.beat

    def hung() -> bool:
        clock.now += 10.0
        node.redis.delete(node.key("node", "b"))  # expired while it hung
        return real_beat()

    monkeypatch.setattr(node, "beat", hung)
    beat()
    assert len(rejoins) == 1
    monkeypatch.setattr(node, "beat", real_beat)
    beat()
    beat()
    assert len(rejoins) == 1


def test_a_beat_whose_answer_was_lost_is_made_up_for_once(nodes, member, clock, monkeypatch):
    """The SET went through but its answer was lost, after the heartbeat had
    expired: the next beat, finding the key, rejoins for the time since the
    last answered beat; the one after it does not."""
    rejoins = counting_rejoins(member, monkeypatch)
    beat = beats(member, clock)
    node = nodes["b"]
    real_beat = node.beat

    def answer_lost() -> bool:
        clock.now += TIMEOUT
        node.redis.delete(node.key("node", "b"))
        real_beat()
        raise cluster_module.RedisError("Timeout reading from socket")

    monkeypatch.setattr(node, "beat", answer_lost)
    with pytest.raises(cluster_module.RedisError):
        beat()
    monkeypatch.setattr(node, "beat", real_beat)
    beat()
    assert len(rejoins) == 1
    beat()
    assert len(rejoins) == 1


def consuming(member: Cluster, receive: Callable[..., Any], reads: int) -> list[str]:
    """The envelope ids the member's consumer handles, reading through
    `receive`, until it handled some or read `reads` times."""
    handled: list[str] = []
    count = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        if count > reads:
            raise Stop
        return receive(*args, **kwargs)

    def handle_all(node: str, entries: list, *, orphaned: bool) -> None:
        handled.extend(envelope.id for _entry, envelopes in entries
                       for envelope in envelopes or ())
        if handled:
            raise Stop

    member.node.receive = counted  # type: ignore[method-assign]
    member.handle_all = handle_all  # type: ignore[method-assign]
    with pytest.raises(Stop):
        member.consume()
    return handled


def test_a_read_answered_late_and_empty_is_followed_by_the_pending_entries(
        nodes, member, clock):
    """Entries given to "b" by a read whose answer was lost, then an empty
    answer, late (a read sent again after a timeout): they are read again
    from "b"'s pending entries, not skipped."""
    ids = stale(nodes["a"], "b", 3)
    node = nodes["b"]
    real_receive = node.receive
    answers = iter(["lost"])

    def receive(block_ms: int, *, pending: bool = False, ack: Any = ()) -> Any:
        if next(answers, None) == "lost":
            node.redis.xreadgroup(GROUP, "b", {node.key("stream", "b"): ">"})
            clock.now += TIMEOUT
            return []
        return real_receive(1, pending=pending, ack=ack)

    assert consuming(member, receive, reads=4) == ids


def test_the_clusters_redis_client_tries_no_command_again(redis_url, redis_prefix):
    """Even when the URL asks to retry on timeouts: a stream read sent again
    would hide that the first one's entries may be lost."""
    separator = "&" if "?" in redis_url else "?"
    node = ClusterNode(ClusterOptions(f"{redis_url}{separator}retry_on_timeout=true", "d",
                                      TIMEOUT, redis_prefix))
    connection = node.redis.connection_pool.get_connection()
    try:
        assert connection.retry.get_retries() == 0
    finally:
        node.redis.connection_pool.release(connection)
        node.redis.close()


def test_a_consumer_whose_inbox_is_gone_warns_once_until_it_reads_again(
        nodes, member, caplog, monkeypatch):
    """A reaper closed "b"'s inbox while "b" was cut off: every read fails
    with NOGROUP until "b" rejoins, which is one warning, not one a second."""
    monkeypatch.setattr(cluster_module, "RETRY_DELAY", 0)
    caplog.set_level(logging.DEBUG, logger="test-cluster")
    node = nodes["b"]
    node.redis.delete(node.key("stream", "b"))
    real_receive = node.receive
    failed = 0

    def receive(block_ms: int, *, pending: bool = False, ack: Any = ()) -> Any:
        nonlocal failed
        try:
            return real_receive(1, pending=pending, ack=ack)
        except cluster_module.RedisError:
            failed += 1
            if failed == 5:
                node.join()  # the rejoin at the next beat makes the inbox again
                stale(nodes["a"], "b", 1)
            raise

    assert consuming(member, receive, reads=10) == ["a-0"]
    assert failed == 5
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "NOGROUP" in warnings[0] and "rejoins" in warnings[0]
    assert "works again after 5 failed attempt(s)" in caplog.text
