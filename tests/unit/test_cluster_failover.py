"""Order across a node's death (issue 21): stanzas of one sender for one
recipient reach the recipient's remaining session in the order sent, whether
they waited in the dead node's inbox or came after the reaper's notice. Two
members on stand-in servers (a real router and mod_message, no sockets) with
real Redis (at $VIREO_TEST_REDIS_URL): "b" reaps "c"."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from xml.etree.ElementTree import Element, SubElement

import gevent
import gevent.event
import gevent.socket
import pytest
import redis.connection

from tests.unit import redis_fixtures
from tests.unit.core_fixtures import MemoryRosters, make_core
from tests.unit.test_router import FakeSession
from xmpp import namespaces as ns
from xmpp.cluster.node import ClusterNode
from xmpp.cluster.wire import SessionEntry
from xmpp.config import Config, HostConfig
from xmpp.jid import parse_jid
from xmpp.modules.cluster import Cluster
from xmpp.shared_session_data import SharedSessionData

redis_url = redis_fixtures.redis_url
redis_prefix = redis_fixtures.redis_prefix

HOST = "example.com"
TIMEOUT = 3.0
DOOMED = parse_jid(f"gina@{HOST}/doomed")  # bound on "c", which dies
LAPTOP = parse_jid(f"gina@{HOST}/laptop")  # bound on "b", the reaper
SENDER = HANK = f"hank@{HOST}/desk"  # on "a"
IVY = f"ivy@{HOST}/desk"  # on "b"
INTERLEAVED = 6  # the drainer's takes during which "a" goes on sending
STEADY_MAX = 20000  # messages of a steady flow at most
STEADY_PAUSE = 0.0005  # seconds between two of them


def member(node: ClusterNode) -> Cluster:
    """`node` as a member on a server of its own: mod_message on HOST."""
    config = Config(Path("/nonexistent/vireo.cfg.lua"),
                    {"modules_disabled": ["presence", "offline", "s2s"]})
    config.hosts[HOST] = HostConfig(config, HOST, "VirtualHost", None, {})
    config._loading = False
    router = make_core(config).router
    rosters = MemoryRosters()
    context = SimpleNamespace(
        name="cluster", log=logging.getLogger(f"test-cluster-{node.name}"),
        service=lambda name: router, shared_session_data=SharedSessionData(),
        add_timer=lambda delay, job: None, one_node_hosts=set(), hosts=dict,
        fire=lambda event, **fields: None, now=lambda: 0.0, route=router.route,
        sessions=router.resources, typed_store=lambda name: rosters)
    made = Cluster(context, node, queue_limit=1000)  # type: ignore[arg-type]
    made.watch()
    return made


@pytest.fixture
def nodes(redis_url, redis_prefix) -> Iterator[dict[str, ClusterNode]]:
    yield from redis_fixtures.joined_nodes(redis_url, redis_prefix, TIMEOUT)


@pytest.fixture
def cooperative_nodes(redis_url, redis_prefix, monkeypatch) -> Iterator[dict[str, ClusterNode]]:
    """As `nodes`, their Redis calls on gevent's sockets (as a server's, whose
    socket module gevent patched), so that greenlets run while one waits."""
    monkeypatch.setattr(redis.connection, "socket", gevent.socket)
    yield from redis_fixtures.joined_nodes(redis_url, redis_prefix, TIMEOUT)


def chat(number: int, sender: str = SENDER, prefix: str = "") -> Element:
    stanza = Element(f"{{{ns.CLIENT}}}message", {"to": str(DOOMED), "from": sender,
                                                 "type": "chat", "id": f"m{number}"})
    SubElement(stanza, f"{{{ns.CLIENT}}}body").text = f"{prefix}{number}"
    return stanza


def in_a_greenlet(job: Callable[[], Any]) -> None:
    """`job` as another greenlet of the process runs it (a consumer, a client's
    reader), not as the drainer: to that one alone the dead node's sessions
    are gone."""
    gevent.spawn(job).get(timeout=10)


def consume(cluster: Cluster) -> None:
    """One read of the member's inbox, handled as its consumer does."""
    entries = cluster.node.receive(1)
    cluster.handle_all(cluster.node.name, entries, orphaned=False)


@pytest.mark.parametrize(("sender_node", "laptop_node"), [("a", "b"), ("b", "a")],
                         ids=["sender-on-a-peer", "sender-on-the-drainers-node"])
def test_a_senders_stanzas_keep_their_order_across_the_recipients_node_death(
        nodes, caplog, sender_node, laptop_node):
    """Hank writes to gina's session on "c"; "c" dies with some in its inbox;
    he goes on writing while "b" drains that inbox, and after: gina's other
    session gets them all in the order sent. Hank is on a peer, or on "b"
    itself (whose other greenlets go on writing to the inbox it drains)."""
    caplog.set_level(logging.INFO)
    nodes["c"].put_session(DOOMED, SessionEntry("c", "doomed-sid", 0.0, 0, True))
    nodes[laptop_node].put_session(LAPTOP, SessionEntry(laptop_node, "laptop-sid", 0.0, 0,
                                                        True))
    members = {name: member(nodes[name]) for name in ("a", "b")}
    sender, reaper, holder = members[sender_node], members["b"], members[laptop_node]
    laptop = FakeSession(str(LAPTOP))
    holder.router.bind(laptop, LAPTOP)
    for each in members.values():
        each.resync()
    sent = 0

    def send(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            sender.router.route(chat(sent))
            sent += 1
        sender.outbox.wait_empty(5)

    send(5)
    nodes["c"].redis.delete(nodes["c"].key("node", "c"))  # "c" died
    take = reaper.node.orphans
    takes = 0

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        """Before each take, what "b" queued is written, Hank's node reads its
        inbox and he sends one more, and the consumer of gina's other node
        delivers what came for her."""
        nonlocal takes
        takes += 1
        if takes <= INTERLEAVED:
            in_a_greenlet(lambda: reaper.outbox.wait_empty(5))
            in_a_greenlet(lambda: consume(sender))
            in_a_greenlet(lambda: send(1))
            in_a_greenlet(lambda: consume(holder))
        return take(*args, **kwargs)

    reaper.node.orphans = meanwhile  # type: ignore[method-assign]
    reaper.reap("c")
    in_a_greenlet(lambda: send(1))  # from a peer, before it reads of the death
    for _ in range(2):
        in_a_greenlet(lambda: consume(sender))
        in_a_greenlet(lambda: send(1))
        in_a_greenlet(lambda: consume(holder))
    bodies = [stanza.findtext(f"{{{ns.CLIENT}}}body") for stanza in laptop.received
              if stanza.tag == f"{{{ns.CLIENT}}}message"]
    # At least once: a stanza may come twice, never after a later one.
    firsts = list(dict.fromkeys(bodies))
    assert firsts == [str(number) for number in range(sent)]
    assert sender.router.resources(DOOMED.bare).get("doomed") is None
    assert not nodes["a"].redis.exists(nodes["a"].key("stream", "c"))
    if sender is not reaper:
        assert "the inbox of c is closed" in caplog.text  # that one met it closed


def test_the_inbox_closes_in_bounded_time_under_a_steady_flow(cooperative_nodes):
    """Hank (on "a") and Ivy (on "b") write to gina's session on "c" without
    pause while "b" reaps "c", so that each time the drainer waits for what it
    handed on (to gina's laptop, on "a") to be written, one of Hank's reaches
    the inbox meanwhile; yet the inbox closes, gina's session on "c" is
    announced gone within a bound (three heartbeat timeouts), and her laptop
    gets every message, in the order each sent them."""
    nodes = cooperative_nodes
    nodes["c"].put_session(DOOMED, SessionEntry("c", "doomed-sid", 0.0, 0, True))
    nodes["a"].put_session(LAPTOP, SessionEntry("a", "laptop-sid", 0.0, 0, True))
    sender, reaper = member(nodes["a"]), member(nodes["b"])
    laptop = FakeSession(str(LAPTOP))
    sender.router.bind(laptop, LAPTOP)
    for each in (sender, reaper):
        each.resync()
    consumers = [gevent.spawn(each.consume) for each in (sender, reaper)]
    sent = {HANK: 0, IVY: 0}
    stop = gevent.event.Event()

    def send(who: str) -> None:
        if sent[who] < STEADY_MAX:
            (sender if who == HANK else reaper).router.route(chat(sent[who], who, who[0]))
            sent[who] += 1

    def flow() -> None:
        """Up to STEADY_MAX messages from each, a pause of STEADY_PAUSE after
        each pair."""
        while not stop.is_set() and min(sent.values()) < STEADY_MAX:
            send(HANK)
            send(IVY)
            gevent.sleep(STEADY_PAUSE)

    wait_written = reaper.outbox.wait_written

    def written_meanwhile(*args: Any, **kwargs: Any) -> bool:
        """One of Hank's reaches Redis while the drainer waits."""
        def one_more() -> None:
            send(HANK)
            sender.outbox.wait_written(5)
        in_a_greenlet(one_more)
        return wait_written(*args, **kwargs)

    reaper.outbox.wait_written = written_meanwhile  # type: ignore[method-assign]
    flowing = gevent.spawn(flow)
    gevent.sleep(0.2)  # the flow is on when "c" dies
    nodes["c"].redis.delete(nodes["c"].key("node", "c"))
    reaping = gevent.spawn(reaper.reap, "c")
    deadline = time.monotonic() + 3 * TIMEOUT
    try:
        while not told_gone(laptop) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert told_gone(laptop), "the dead node's session was never announced gone"
        reaping.get(timeout=1)
        assert not nodes["a"].redis.exists(nodes["a"].key("stream", "c"))
        gevent.sleep(0.2)  # the flow goes on after the death was announced
        stop.set()
        flowing.get(timeout=5)
        deadline = time.monotonic() + 10
        while len(set(bodies_of(laptop))) < sum(sent.values()) and time.monotonic() < deadline:
            gevent.sleep(0.05)
    finally:
        stop.set()
        gevent.killall([flowing, reaping, *consumers], timeout=5)
    # At least once: a message may come twice, never after a later one of its sender.
    firsts = list(dict.fromkeys(bodies_of(laptop)))
    for who, count in sent.items():
        assert [body for body in firsts if body and body[0] == who[0]] == [
            f"{who[0]}{number}" for number in range(count)]
    assert sender.router.resources(DOOMED.bare).get("doomed") is None


def bodies_of(session: FakeSession) -> list[str | None]:
    return [stanza.findtext(f"{{{ns.CLIENT}}}body") for stanza in session.received
            if stanza.tag == f"{{{ns.CLIENT}}}message"]


def told_gone(session: FakeSession) -> bool:
    return any(stanza.get("type") == "unavailable" and stanza.get("from") == str(DOOMED)
               for stanza in session.received)
