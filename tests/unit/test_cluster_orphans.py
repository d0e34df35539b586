"""The inbox of a dead node (issue 21): one survivor at a time drains it, in
stream order: the entries the dead node took and never acknowledged, then those
it never read; a drainer that dies leaves the rest, from its first
unacknowledged entry, to the next (Redis at $VIREO_TEST_REDIS_URL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit import redis_fixtures
from xmpp.cluster.node import GROUP, ClusterNode
from xmpp.cluster.options import ClusterOptions
from xmpp.cluster.wire import DELIVER, Envelope

redis_url = redis_fixtures.redis_url
redis_prefix = redis_fixtures.redis_prefix

TIMEOUT = 2.0
MESSAGES = 10


@pytest.fixture
def nodes(redis_url, redis_prefix) -> Iterator[dict[str, ClusterNode]]:
    """Nodes "dead" (its inbox holds MESSAGES entries from "sender", the first
    three taken by its consumer and never acknowledged; its heartbeat gone) and
    the survivors "sender", "one" and "two"."""
    made = {name: ClusterNode(ClusterOptions(redis_url, name, TIMEOUT, redis_prefix))
            for name in ("dead", "sender", "one", "two")}
    for node in made.values():
        node.join()
    for number in range(MESSAGES):  # an entry each
        made["sender"].send([("dead", Envelope(str(number), DELIVER, "olga@example.com/doomed",
                                               "sender", b"<message/>"))])
    dead = made["dead"]
    dead.redis.xreadgroup(GROUP, "dead", {dead.key("stream", "dead"): ">"}, count=3)
    dead.redis.delete(dead.key("node", "dead"))  # then it died
    yield made
    for node in made.values():
        node.redis.close()


def drain(node: ClusterNode, min_idle_ms: int = 0, *, takes: int = MESSAGES,
          after: bytes = b"0-0") -> tuple[list[str], list[bytes]]:
    """Up to `takes` takes of the dead inbox by `node` after entry `after`: the
    envelope ids in the order taken, and the entry ids, acknowledged."""
    envelopes, entries = [], []
    for _ in range(takes):
        taken = node.orphans("dead", min_idle_ms, after)
        if taken is None or taken == (after, []):
            break
        after, batch = taken
        envelopes += [envelope.id for _entry, found in batch for envelope in found or ()]
        entries += [entry for entry, _found in batch]
        node.ack("dead", [entry for entry, _found in batch])
    return envelopes, entries


def test_a_dead_inbox_is_taken_in_stream_order(nodes):
    assert nodes["one"].claim_reaping("dead")
    taken, _entries = drain(nodes["one"])
    assert taken == [str(number) for number in range(MESSAGES)]
    assert nodes["one"].orphans("dead", 0, b"0-0") == (b"0-0", [])  # all acknowledged


def test_one_survivor_at_a_time_drains_until_it_dies(nodes):
    one, two = nodes["one"], nodes["two"]
    assert one.claim_reaping("dead")
    assert not two.claim_reaping("dead")
    assert one.claim_reaping("dead")  # renewed while it drains
    first, _entries = drain(one, takes=1)
    after = one.orphans("dead", 0, b"0-0")  # taken, then "one" died too
    assert after is not None
    one.redis.delete(one.key("reaping", "dead"))  # its claim expired
    assert two.claim_reaping("dead")
    rest, _entries = drain(two)
    # What "one" took and never acknowledged comes again, in its place.
    assert first + rest == [str(number) for number in range(MESSAGES)]


def test_a_pending_entry_not_idle_yet_holds_back_the_later_ones(nodes):
    one = nodes["one"]
    assert one.claim_reaping("dead")
    # The dead node read three entries a moment ago: its consumer may be alive
    # still; neither they nor the unread ones behind them are taken yet.
    assert one.orphans("dead", int(TIMEOUT * 1000), b"0-0") is None
    taken, _entries = drain(one, 0)
    assert taken == [str(number) for number in range(MESSAGES)]


def test_a_pass_goes_on_after_what_its_drainer_handled(nodes):
    one = nodes["one"]
    first = one.orphans("dead", 0, b"0-0")  # handled, the ack waits for the writes
    assert first is not None
    # Young, but handled already: the next pass is not held back by them.
    assert one.orphans("dead", int(TIMEOUT * 1000), b"0-0") is None
    taken, _entries = drain(one, int(TIMEOUT * 1000), after=first[0])
    assert taken == [str(number) for number in range(len(first[1]), MESSAGES)]


def test_nobody_reaps_a_node_that_beats_again(nodes):
    assert nodes["one"].claim_reaping("dead")
    nodes["dead"].join()  # back: its claim is dropped, and its inbox its own
    assert not nodes["two"].claim_reaping("dead")
    assert not nodes["one"].claim_reaping("dead")


def envelope(number: int) -> Envelope:
    return Envelope(f"late-{number}", DELIVER, "olga@example.com/doomed", "sender",
                    b"<message/>")


def test_a_drained_inbox_closes_and_its_senders_learn_it_from_their_writes(nodes):
    one, sender = nodes["one"], nodes["sender"]
    assert one.claim_reaping("dead")
    _taken, entries = drain(one)
    assert one.fence_inbox("dead")
    # Written nowhere, not even to a new stream: handed back to be routed afresh.
    assert sender.send([("dead", envelope(0)), ("one", envelope(1)),
                        ("dead", envelope(2))]) == [("dead", [envelope(0), envelope(2)])]
    assert not sender.redis.exists(sender.key("stream", "dead"))
    assert one.orphans("dead", 0, entries[-1], fenced=True) == (entries[-1], [])
    assert one.fence_inbox("dead")  # closed already
    assert one.drop_fenced("dead")
    assert one.orphans("dead", 0, entries[-1], fenced=True) == (entries[-1], [])


def test_what_came_after_the_drainers_last_take_is_closed_in_with_the_inbox(nodes):
    one, sender = nodes["one"], nodes["sender"]
    _taken, entries = drain(one)
    assert sender.send([("dead", envelope(0))]) == []
    assert one.fence_inbox("dead")
    assert sender.send([("dead", envelope(1))]) == [("dead", [envelope(1)])]
    taken = one.orphans("dead", 0, entries[-1], fenced=True)
    assert taken is not None
    assert [found.id for _entry, batch in taken[1] for found in batch or ()] == ["late-0"]


def test_a_drainer_that_dies_after_the_close_leaves_the_rest_to_the_next(nodes):
    one, two, sender = nodes["one"], nodes["two"], nodes["sender"]
    assert one.claim_reaping("dead")
    _taken, entries = drain(one)
    for number in range(2):
        assert sender.send([("dead", envelope(number))]) == []
    assert one.fence_inbox("dead")
    taken = one.orphans("dead", 0, entries[-1], fenced=True)  # then "one" died too
    assert taken is not None
    one.redis.delete(one.key("reaping", "dead"))  # its claim expired
    nodes["dead"].beat()  # even should the node be back: its closed inbox is the reaper's
    assert not two.claim_reaping("dead")
    assert two.claim_reaping("dead", fenced=True)
    again = two.orphans("dead", 0, b"0-0", fenced=True)
    assert again is not None
    assert [found.id for _entry, batch in again[1] for found in batch or ()] == [
        "late-0", "late-1"]


def test_an_inbox_stays_open_while_its_node_beats_again(nodes):
    one = nodes["one"]
    drain(one)
    nodes["dead"].beat()
    assert not one.fence_inbox("dead")
    assert one.redis.exists(one.key("stream", "dead"))


def test_a_node_back_after_its_inbox_closed_reads_a_new_one(nodes):
    one, sender, dead = nodes["one"], nodes["sender"], nodes["dead"]
    drain(one)
    assert one.fence_inbox("dead")
    dead.join()
    assert sender.send([("dead", envelope(0))]) == []
    read = [found.id for _entry, batch in dead.receive(1) for found in batch or ()]
    assert read == ["late-0"]
