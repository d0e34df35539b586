"""Recent-event times (xmpp/recent_events.py): in memory alone, in Redis for a
cluster, so a failed-login throttle or registration pacing holds on every node."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from tests.unit import redis_fixtures
from xmpp.auth_throttle import FailureThrottle, failure_throttle
from xmpp.config import Config, load_config
from xmpp.recent_events import MemoryRecentEvents, recent_events

redis_url = redis_fixtures.redis_url
redis_prefix = redis_fixtures.redis_prefix


def test_memory_keeps_the_latest_and_drops_the_old():
    events = MemoryRecentEvents()
    for now in (1.0, 2.0, 3.0):
        events.add("a", now, keep=2, ttl=10)
    assert list(events.times("a", since=0.0)) == [2.0, 3.0]
    assert list(events.times("a", since=2.0)) == [3.0]
    assert list(events.times("a", since=3.0)) == []
    assert len(events) == 0  # nothing left to keep


def test_memory_rejects_a_zero_bound():
    with pytest.raises(ValueError):
        MemoryRecentEvents(max_tracked=0)


def test_alone_the_times_stay_in_memory(tmp_path):
    path = tmp_path / "vireo.cfg.lua"
    path.write_text("")
    assert isinstance(recent_events(load_config(path), "c2s"), MemoryRecentEvents)


@pytest.fixture
def cluster_config(tmp_path, redis_url, redis_prefix) -> Callable[[str], Config]:
    """Configs of nodes of one cluster (a key prefix of its own)."""

    def node(name: str) -> Config:
        path = tmp_path / f"{name}.cfg.lua"
        path.write_text(f'cluster = {{ redis = "{redis_url}", node = "{name}", '
                        f'prefix = "{redis_prefix}" }}\n')
        return load_config(path)

    return node


def test_failures_confirmed_on_one_node_slow_down_the_next_attempt_on_another(cluster_config):
    one = failure_throttle(cluster_config("n1"), "c2s")
    other = failure_throttle(cluster_config("n2"), "c2s")
    for _ in range(5):
        attempt = one.attempt("192.0.2.7", lambda: 100.0)
        assert not attempt.refused
        attempt.failed()
    assert other.attempt("192.0.2.7", lambda: 100.5).refused  # the sixth, on the other node
    assert not other.attempt("192.0.2.8", lambda: 100.5).refused  # another address is not
    one.attempt("192.0.2.7", lambda: 103.0).succeeded()
    assert other.delay_for("192.0.2.7", 103.0) == 0.0


def test_attempts_in_flight_stay_on_their_node(cluster_config):
    """A burst of logins from one address (a NAT) on one node takes turns
    there; another node checks that address's attempts all the same."""
    one = failure_throttle(cluster_config("n1"), "c2s")
    other = failure_throttle(cluster_config("n2"), "c2s")
    burst = [one.begin("192.0.2.7", lambda: 100.0) for _ in range(20)]
    assert sum(attempt.waiting for attempt in burst) == 15
    assert not other.begin("192.0.2.7", lambda: 100.0).waiting


def test_each_limit_counts_apart(cluster_config):
    logins = failure_throttle(cluster_config("n1"), "c2s")
    handshakes = failure_throttle(cluster_config("n2"), "component")
    for _ in range(6):
        logins.record_failure("192.0.2.7", 100.0)
    assert failure_throttle(cluster_config("n3"), "c2s").delay_for("192.0.2.7", 100.0) > 0
    assert handshakes.delay_for("192.0.2.7", 100.0) == 0.0


def test_times_expire_in_redis(cluster_config, redis_url):
    import redis

    events = recent_events(cluster_config("n1"), "register:example.test")
    events.add("192.0.2.7", 100.0, keep=1, ttl=1)
    events.add("192.0.2.7", 101.0, keep=1, ttl=1)
    assert list(events.times("192.0.2.7", since=0.0)) == [101.0]
    client = redis.Redis.from_url(redis_url)
    ttls = [client.ttl(key) for key in client.scan_iter(match=events.prefix + "*")]
    client.close()
    assert ttls == [1]


def test_an_unreachable_redis_counts_on_this_node_alone(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "vireo.cfg.lua"
    path.write_text(f'cluster = {{ redis = "redis://127.0.0.1:{port}/0", node = "n1" }}\n')
    config = load_config(path)
    signups = FailureThrottle(max_failures=1, events=recent_events(config, "register_web"))
    assert signups.delay_for("192.0.2.7", 100.0) == 0.0
    signups.record_failure("192.0.2.7", 100.0)
    assert signups.delay_for("192.0.2.7", 100.0) > 0
    logins = failure_throttle(config, "c2s")
    for _ in range(5):
        logins.attempt("192.0.2.8", lambda: 100.0).failed()
    assert logins.attempt("192.0.2.8", lambda: 100.0).refused
    logins.record_success("192.0.2.8", 100.0)
    assert logins.delay_for("192.0.2.8", 100.0) == 0.0
