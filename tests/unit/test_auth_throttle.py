"""Failed-login throttle (xmpp/auth_throttle.py), driven with a fake clock."""

from __future__ import annotations

import pytest

from xmpp.auth_throttle import FailureThrottle

ADDR = "192.0.2.7"


def fail(throttle: FailureThrottle, address: str, times: int, now: float) -> None:
    for _ in range(times):
        throttle.record_failure(address, now)


def test_no_delay_under_the_limit():
    t = FailureThrottle(max_failures=5)
    fail(t, ADDR, 4, now=100.0)
    assert t.delay_for(ADDR, 100.0) == 0.0


def test_delay_doubles_past_the_limit_and_is_capped():
    t = FailureThrottle(max_failures=3, window=600.0, delay=2.0, max_delay=30.0)
    waits = []
    for _ in range(9):
        t.record_failure(ADDR, 100.0)
        waits.append(t.delay_for(ADDR, 100.0))
    assert waits == [0.0, 0.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_delay_counts_from_the_latest_failure():
    t = FailureThrottle(max_failures=2, delay=2.0)
    fail(t, ADDR, 3, now=100.0)  # 4 s after the third failure
    assert t.delay_for(ADDR, 101.0) == 3.0
    assert t.delay_for(ADDR, 104.0) == 0.0
    assert t.delay_for(ADDR, 110.0) == 0.0


def test_failures_age_out_of_the_window():
    t = FailureThrottle(max_failures=2, window=60.0, delay=2.0)
    fail(t, ADDR, 2, now=0.0)
    t.record_failure(ADDR, 30.0)
    assert t.delay_for(ADDR, 30.0) == 4.0
    # At 61 only the failure at 30 remains: under the limit again.
    assert t.delay_for(ADDR, 61.0) == 0.0
    t.record_failure(ADDR, 62.0)
    assert t.delay_for(ADDR, 62.0) == 2.0
    assert t.delay_for(ADDR, 200.0) == 0.0
    assert len(t) == 0


def test_success_forgets_the_address():
    t = FailureThrottle(max_failures=1)
    t.record_failure(ADDR, 0.0)
    assert t.delay_for(ADDR, 0.0) > 0
    t.record_success(ADDR, 1.0)
    assert t.delay_for(ADDR, 1.0) == 0.0
    assert len(t) == 0


def test_addresses_are_independent():
    t = FailureThrottle(max_failures=1)
    t.record_failure(ADDR, 0.0)
    assert t.delay_for("192.0.2.8", 0.0) == 0.0


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4():
    t = FailureThrottle(max_failures=2)
    t.record_failure("2001:db8:1:2::1", 0.0)
    t.record_failure("2001:db8:1:2:ffff::9", 0.0)
    assert t.delay_for("2001:db8:1:2::42", 0.0) == 2.0
    assert t.delay_for("2001:db8:1:3::1", 0.0) == 0.0
    t.record_failure("::ffff:192.0.2.9", 0.0)
    t.record_failure("192.0.2.9", 0.0)
    assert t.delay_for("192.0.2.9", 0.0) == 2.0


def test_memory_is_bounded_oldest_evicted():
    t = FailureThrottle(max_failures=1, max_tracked=3)
    for i in range(4):
        t.record_failure(f"10.0.0.{i}", float(i))
    assert len(t) == 3
    assert t.delay_for("10.0.0.0", 4.0) == 0.0  # evicted
    assert t.delay_for("10.0.0.3", 4.0) > 0


def test_recent_failure_keeps_an_address_from_eviction():
    t = FailureThrottle(max_failures=1, max_tracked=2)
    t.record_failure("10.0.0.1", 0.0)
    t.record_failure("10.0.0.2", 1.0)
    t.record_failure("10.0.0.1", 2.0)
    t.record_failure("10.0.0.3", 3.0)
    assert t.delay_for("10.0.0.1", 3.0) > 0
    assert t.delay_for("10.0.0.2", 3.0) == 0.0


def test_history_per_address_is_bounded():
    t = FailureThrottle(max_failures=5, window=1e9, delay=2.0, max_delay=30.0)
    fail(t, ADDR, 10_000, now=0.0)
    assert t.delay_for(ADDR, 0.0) == 30.0
    assert len(t._failures[ADDR]) <= 5 + 4  # 2 * 2**4 reaches the cap


def test_zero_delay_never_waits():
    t = FailureThrottle(max_failures=1, delay=0.0, max_delay=30.0)
    fail(t, ADDR, 50, now=0.0)
    assert t.delay_for(ADDR, 0.0) == 0.0


@pytest.mark.parametrize("kwargs", [
    {"max_failures": 0}, {"window": 0}, {"delay": -1}, {"delay": 5, "max_delay": 1},
    {"max_tracked": 0},
])
def test_invalid_limits(kwargs):
    with pytest.raises(ValueError):
        FailureThrottle(**kwargs)
