"""The cluster's pure parts: its option, registry entries, stream envelopes, the
de-duplication window (issue 21); and a batch Redis lost staying an error."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gevent
import pytest
import redis

import xmpp.cluster.node as node_module
from xmpp.cluster.node import ClusterNode, Outbox
from xmpp.cluster.options import DEFAULT_NODE_TIMEOUT, ClusterOptions, cluster_options
from xmpp.cluster.wire import (
    DELIVER,
    SESSION,
    DedupWindow,
    Envelope,
    SessionEntry,
    entry_fields,
    envelopes_of,
)
from xmpp.config import Config, ConfigError, load_config
from xmpp.modules import global_modules
from xmpp.workers import check_workers


def config_with(tmp_path: Path, line: str) -> Config:
    path = tmp_path / "vireo.cfg.lua"
    path.write_text(f'{line}\nVirtualHost "example.com"\n')
    return load_config(path)


def test_no_cluster_option_means_a_single_node(tmp_path):
    config = config_with(tmp_path, "")
    assert cluster_options(config) is None
    assert "cluster" not in global_modules(config)


def test_cluster_option_is_read_and_loads_the_module(tmp_path):
    config = config_with(tmp_path, 'cluster = { redis = "redis://127.0.0.1:6379/0", '
                                   'node = "n1", node_timeout = 3, prefix = "t:", '
                                   'queue_limit = 500 }')
    assert cluster_options(config) == ClusterOptions("redis://127.0.0.1:6379/0", "n1", 3.0, "t:",
                                                     queue_limit=500)
    assert global_modules(config)[-1] == "cluster"
    assert not config.warnings  # a known option
    defaults = cluster_options(config_with(tmp_path, 'cluster = { redis = "redis://r", '
                                                     'node = "a" }'))
    assert defaults is not None and defaults.node_timeout == DEFAULT_NODE_TIMEOUT


@pytest.mark.parametrize("value, problem", [
    ('"redis://r"', "expected a table"),
    ('{ node = "a" }', "'redis'"),
    ('{ redis = "http://r", node = "a" }', "'redis'"),
    ('{ redis = "redis://r" }', "'node'"),
    ('{ redis = "redis://r", node = "a b" }', "'node'"),
    ('{ redis = "redis://r", node = "a", node_timeout = 0 }', "'node_timeout'"),
    ('{ redis = "redis://r", node = "a", node_timeout = "5" }', "'node_timeout'"),
    ('{ redis = "redis://r", node = "a", queue_limit = 0 }', "'queue_limit'"),
    ('{ redis = "redis://r", node = "a", queue_limit = 2.5 }', "'queue_limit'"),
    ('{ redis = "redis://r", node = "a", nodes = 3 }', "unknown field(s) nodes"),
    ('{ redis = "redis://r", node = "a", address = "*" }', "'address'"),
])
def test_bad_cluster_option_is_refused_clearly(tmp_path, value, problem):
    with pytest.raises(ConfigError) as raised:
        cluster_options(config_with(tmp_path, f"cluster = {value}"))
    assert "option 'cluster'" in raised.value.message and problem in raised.value.message


def test_session_entry_round_trips():
    entry = SessionEntry("n1", "abc", 12.5, -3, True, "<presence/>",
                         {"carbons": True, "pep": ["urn:xmpp:avatar:metadata"]},
                         ["room@conference.example.com/nick"])
    assert SessionEntry.decode(entry.encode()) == entry
    assert SessionEntry.decode(entry.encode().encode()) == entry
    assert json.loads(entry.encode())["node"] == "n1"


@pytest.mark.parametrize("raw", [b"", b"\xff", b"[]", b"{}", b'{"node": "n", "sid": 1}',
                                 b'{"node": "n", "sid": "s", "since": "x"}',
                                 b'{"node": "n", "sid": "s", "since": 1, "priority": 1.5}',
                                 b'{"node": "n", "sid": "s", "since": 1, "module_data": []}',
                                 b'{"node": "n", "sid": "s", "since": 1, "directed": "r@c"}',
                                 b'{"node": "n", "sid": "s", "since": 1, "directed": [1]}'])
def test_malformed_session_entry_is_a_value_error(raw):
    with pytest.raises(ValueError):
        SessionEntry.decode(raw)


def test_the_later_login_replaces_the_earlier():
    early, late = SessionEntry("n2", "x", 10.0), SessionEntry("n1", "y", 11.0)
    assert late.replaces(early) and not early.replaces(late)
    # Same instant: the node name decides, the same way on every node.
    tie_a, tie_b = SessionEntry("a", "x", 10.0), SessionEntry("b", "y", 10.0)
    assert tie_b.replaces(tie_a) and not tie_a.replaces(tie_b)
    assert not early.replaces(early)


def test_envelopes_round_trip_through_one_stream_entry():
    envelopes = [Envelope("n1.ab.7", DELIVER, "bob@example.com/phone", "n1",
                          "<message><body>é \"x\"</body></message>".encode()),
                 Envelope("n1.ab.8", SESSION, "bob@example.com/phone", "n1")]
    as_read = {key.encode(): value for key, value in entry_fields(envelopes).items()}
    assert envelopes_of(as_read) == envelopes
    assert envelopes_of(entry_fields(envelopes)) == envelopes


@pytest.mark.parametrize("fields", [
    {}, {b"batch": b"not json"}, {b"batch": b"{}"},
    {b"batch": b'[["1", "teleport", "a@b", "n", ""]]'},
    {b"batch": b'[["1", "deliver", "a@b", "n"]]'},
    {b"batch": b'[["1", "deliver", "a@b", "n", 5]]'}])
def test_malformed_entry_is_a_value_error(fields):
    with pytest.raises(ValueError):
        envelopes_of(fields)


def test_dedup_window_acts_once_per_id_within_its_size():
    window = DedupWindow(size=3)
    assert [window.first_time(i) for i in ("a", "b", "a", "c")] == [True, True, False, True]
    assert window.first_time("d")  # "a" falls out of the window
    assert len(window) == 3
    assert window.first_time("a")
    assert not window.first_time("d")


def test_workers_need_the_cluster_option(tmp_path):
    with pytest.raises(ConfigError) as raised:
        check_workers(config_with(tmp_path, ""), 2)
    assert "--workers needs the 'cluster' option" in raised.value.message
    clustered = config_with(tmp_path, 'cluster = { redis = "redis://r", node = "w" }')
    check_workers(clustered, 2)
    with pytest.raises(ConfigError):
        check_workers(clustered, -1)


class BrokenConnection:
    """The outbox's connection to Redis when it breaks mid-write: an error, the
    commands gone with it."""

    def pack_commands(self, commands: list[tuple]) -> list[bytes]:
        return [b"packed"]

    def send_packed_command(self, packed: list[bytes], check_health: bool = True) -> None:
        raise redis.ConnectionError("Connection closed by server.")


def test_a_batch_redis_did_not_take_is_an_error_for_the_outbox_to_retry():
    node = ClusterNode(ClusterOptions("redis://127.0.0.1:1/5", "n1"))
    node._writes.connection = BrokenConnection()
    envelope = Envelope("n1.ab.1", DELIVER, "bob@example.com/phone", "n1", b"<message/>")
    # A silent return would make the outbox drop the batch.
    with pytest.raises(redis.ConnectionError):
        node.send([("n2", envelope)])


def test_a_full_outbox_refuses_new_envelopes_and_keeps_those_it_holds(monkeypatch):
    """While Redis is unreachable the outbox holds `limit` envelopes; the next
    ones are refused at once (the cluster bounces their stanzas), and what it
    held goes out, in order, once Redis takes it."""
    node = ClusterNode(ClusterOptions("redis://127.0.0.1:1/5", "n1"))
    written: list[str] = []
    reachable = False

    def send(batch) -> list:
        if not reachable:
            raise redis.ConnectionError("unreachable")
        written.extend(envelope.id for _node, envelope in batch)
        return []

    monkeypatch.setattr(node, "send", send)
    refused: list[str] = []
    outbox = Outbox(node, logging.getLogger("test"),
                    lambda _node, envelope: refused.append(envelope.id),
                    lambda _node, envelopes: None, limit=2, retry_delay=0.01)
    for number in range(4):
        outbox.put("n2", Envelope(f"e{number}", DELIVER, "bob@example.com/phone", "n1"))
    gevent.sleep(0.05)  # a few failed tries
    assert refused == ["e2", "e3"] and not written
    reachable = True
    assert outbox.flusher is not None
    outbox.flusher.join(timeout=5)
    assert written == ["e0", "e1"] and refused == ["e2", "e3"]


def recording_outbox(monkeypatch, closed_nodes: frozenset[str] = frozenset(),
                     closed=lambda _node, _envelopes: None, *, round_trip: float = 0.0
                     ) -> tuple[Outbox, list[list[str]]]:
    """An outbox whose writes are recorded, batch by batch, instead of reaching
    Redis, each after `round_trip` seconds; the inboxes of `closed_nodes` are
    closed."""
    node = ClusterNode(ClusterOptions("redis://127.0.0.1:1/5", "n1"))
    written: list[list[str]] = []

    def send(batch) -> list:
        gevent.sleep(round_trip)
        written.append([envelope.id for to, envelope in batch if to not in closed_nodes])
        refused = [envelope for to, envelope in batch if to in closed_nodes]
        return [(sorted(closed_nodes)[0], refused)] if refused else []

    monkeypatch.setattr(node, "send", send)
    outbox = Outbox(node, logging.getLogger("test"), lambda _node, _envelope: None, closed,
                    limit=1000)
    return outbox, written


def envelope_for(name: str, jid: str = "bob@example.com/phone") -> Envelope:
    return Envelope(name, DELIVER, jid, "n1", b"<message/>")


def test_what_met_a_closed_inbox_is_handed_back_before_the_next_batch(monkeypatch):
    handed: list[tuple[str, list[str]]] = []

    def closed(node: str, envelopes: list[Envelope]) -> None:
        handed.append((node, [envelope.id for envelope in envelopes]))
        outbox.put("n2", envelope_for("again-" + envelopes[0].id))  # routed afresh

    outbox, written = recording_outbox(monkeypatch, frozenset({"dead"}), closed)
    outbox.put("dead", envelope_for("e0"))
    outbox.put("n2", envelope_for("e1"))
    outbox.wait_empty(5)
    assert handed == [("dead", ["e0"])]
    assert written == [["e1"], ["again-e0"]]


def test_waiting_for_what_is_queued_now_ends_under_a_steady_flow(monkeypatch):
    # More comes meanwhile than a write takes: the outbox never empties.
    outbox, written = recording_outbox(monkeypatch, round_trip=0.005)

    def steady() -> None:
        for number in range(2000):
            outbox.put("n3", envelope_for(f"flow-{number}"))
            gevent.sleep(0.001)

    flow = gevent.spawn(steady)
    gevent.sleep(0.01)
    outbox.put("n2", envelope_for("mine"))
    try:
        assert outbox.wait_written(5, "n2")
        assert any("mine" in batch for batch in written)
        assert outbox.queue or outbox.sending
    finally:
        flow.kill()


def test_what_is_queued_for_a_shut_inbox_is_handed_back_unwritten_in_order(monkeypatch):
    handed: list[tuple[str, list[str]]] = []
    outbox, written = recording_outbox(
        monkeypatch, closed=lambda node, envelopes: handed.append(
            (node, [envelope.id for envelope in envelopes])))
    outbox.shut.add("dead")
    for number, node in enumerate(("dead", "n2", "dead")):
        outbox.put(node, envelope_for(f"e{number}"))
    outbox.wait_empty(5)
    assert handed == [("dead", ["e0", "e2"])]
    assert written == [["e1"]]
    outbox.queue = [("dead", envelope_for("e3")), ("n2", envelope_for("e4")),
                    ("dead", envelope_for("e5"))]
    assert [found.id for found in outbox.take("dead")] == ["e3", "e5"]
    assert [envelope.id for _node, envelope in outbox.queue] == ["e4"]


def test_a_write_waits_for_nothing_once_the_loop_is_idle(monkeypatch):
    """Nothing else to run: the batch goes at once, not after the gather delay
    (a fixed delay left the process idle, then woke it for the write)."""
    monkeypatch.setattr(node_module, "GATHER_DELAY", 5.0)
    outbox, written = recording_outbox(monkeypatch)
    outbox.put("n2", envelope_for("alone"))
    assert outbox.wait_written(1.0)
    assert written == [["alone"]]


def test_a_busy_loop_holds_a_write_back_for_the_gather_delay_at_most(monkeypatch):
    monkeypatch.setattr(node_module, "GATHER_DELAY", 0.05)
    outbox, written = recording_outbox(monkeypatch)

    def busy() -> None:  # the loop is never idle
        while True:
            gevent.sleep(0)

    spinner = gevent.spawn(busy)
    try:
        outbox.put("n2", envelope_for("meanwhile"))
        assert outbox.wait_written(1.0)
        assert written == [["meanwhile"]]
    finally:
        spinner.kill()
