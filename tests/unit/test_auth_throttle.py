"""Failed-login throttle (xmpp/auth_throttle.py), driven with a fake clock."""

from __future__ import annotations

import pytest

from xmpp.auth_throttle import FailureThrottle, failure_throttle, wait_text, whole_seconds
from xmpp.config import load_config
from xmpp.recent_events import MemoryRecentEvents

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
    events = MemoryRecentEvents()
    t = FailureThrottle(max_failures=2, window=60.0, delay=2.0, events=events)
    fail(t, ADDR, 2, now=0.0)
    t.record_failure(ADDR, 30.0)
    assert t.delay_for(ADDR, 30.0) == 4.0
    # At 61 only the failure at 30 remains: under the limit again.
    assert t.delay_for(ADDR, 61.0) == 0.0
    t.record_failure(ADDR, 62.0)
    assert t.delay_for(ADDR, 62.0) == 2.0
    assert t.delay_for(ADDR, 200.0) == 0.0
    assert len(events) == 0


def test_success_forgets_the_address():
    events = MemoryRecentEvents()
    t = FailureThrottle(max_failures=1, events=events)
    t.record_failure(ADDR, 0.0)
    assert t.delay_for(ADDR, 0.0) > 0
    t.record_success(ADDR, 1.0)
    assert t.delay_for(ADDR, 1.0) == 0.0
    assert len(events) == 0


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
    events = MemoryRecentEvents(max_tracked=3)
    t = FailureThrottle(max_failures=1, events=events)
    for i in range(4):
        t.record_failure(f"10.0.0.{i}", float(i))
    assert len(events) == 3
    assert t.delay_for("10.0.0.0", 4.0) == 0.0  # evicted
    assert t.delay_for("10.0.0.3", 4.0) > 0


def test_recent_failure_keeps_an_address_from_eviction():
    t = FailureThrottle(max_failures=1, events=MemoryRecentEvents(max_tracked=2))
    t.record_failure("10.0.0.1", 0.0)
    t.record_failure("10.0.0.2", 1.0)
    t.record_failure("10.0.0.1", 2.0)
    t.record_failure("10.0.0.3", 3.0)
    assert t.delay_for("10.0.0.1", 3.0) > 0
    assert t.delay_for("10.0.0.2", 3.0) == 0.0


def test_history_per_address_is_bounded():
    events = MemoryRecentEvents()
    t = FailureThrottle(max_failures=5, window=1e9, delay=2.0, max_delay=30.0, events=events)
    fail(t, ADDR, 10_000, now=0.0)
    assert t.delay_for(ADDR, 0.0) == 30.0
    assert len(events.times(ADDR, since=-1.0)) <= 5 + 4  # 2 * 2**4 reaches the cap


def test_zero_delay_never_waits():
    t = FailureThrottle(max_failures=1, delay=0.0, max_delay=30.0)
    fail(t, ADDR, 50, now=0.0)
    assert t.delay_for(ADDR, 0.0) == 0.0


def test_attempts_count_until_a_success_and_past_the_limit_are_refused():
    t = FailureThrottle(max_failures=2, window=600.0, delay=2.0, max_delay=30.0)
    assert [t.attempt(ADDR, 0.0) for _ in range(2)] == [0.0, 0.0]
    # Checked or refused, each attempt counts: the wait doubles from now.
    assert [t.attempt(ADDR, 1.0) for _ in range(3)] == [4.0, 8.0, 16.0]
    assert t.attempt(ADDR, 16.9) == 30.0  # refused: 0.1 s was still to wait
    assert t.attempt(ADDR, 46.9) == 0.0  # exactly when the wait is over: checked
    t.record_success(ADDR, 46.9)
    assert t.attempt(ADDR, 46.9) == 0.0


def test_attempts_in_parallel_gain_no_checks():
    """Streams that all begin at once past the limit: one is checked, not all."""
    t = FailureThrottle(max_failures=3, window=600.0, delay=2.0)
    fail(t, ADDR, 3, now=0.0)
    waits = [t.attempt(ADDR, 2.0) for _ in range(10)]
    assert waits[0] == 0.0 and all(wait > 0 for wait in waits[1:])


def seconds_for_guesses_before(guesses: int) -> float:
    """Vireo before answering throttled attempts: an attempt waited `delay_for`
    unanswered, was then checked and its failure recorded; the guesser sent
    the next one as soon as it had the answer."""
    t, now = FailureThrottle(), 0.0
    for _ in range(guesses):
        now += t.delay_for(ADDR, now)
        t.record_failure(ADDR, now)
    return now


def seconds_for_guesses_now(guesses: int, *, knows_the_wait: bool) -> tuple[float, int]:
    """Now, for a guesser that either knows to the instant when the next attempt
    is checked, or sends at once and waits what a refusal tells it; (time, refusals)."""
    t, now, checked, refused = FailureThrottle(), 0.0, 0, 0
    while checked < guesses:
        if knows_the_wait:
            now += t.delay_for(ADDR, now)
        wait = t.attempt(ADDR, now)
        if wait > 0:
            refused += 1
            now += whole_seconds(wait)
        else:
            checked += 1
    return now, refused


def test_a_thousand_guesses_take_at_least_as_long_as_before():
    before = seconds_for_guesses_before(1000)
    assert before == pytest.approx(9190.0)  # default limits: over 2.5 hours
    best, refusals = seconds_for_guesses_now(1000, knows_the_wait=True)
    assert best >= before and refusals == 0
    told, refusals = seconds_for_guesses_now(1000, knows_the_wait=False)
    assert told >= before and refusals > 0


def test_whole_seconds_round_up_and_the_text_says_the_wait():
    assert [whole_seconds(w) for w in (0.2, 1.0, 1.01, 29.5)] == [1, 1, 2, 30]
    assert wait_text("Too many failures", 3.2) == "Too many failures: wait 4 s before trying again"


def test_failure_throttle_reads_the_options(tmp_path):
    path = tmp_path / "vireo.cfg.lua"
    path.write_text("vireo_auth_failure_limit = 2\nvireo_auth_failure_window = 10\n"
                    "vireo_auth_failure_delay = 5\nvireo_auth_failure_max_delay = 1\n")
    t = failure_throttle(load_config(path), "c2s")
    assert (t.max_failures, t.window, t.delay) == (2, 10, 5)
    assert t.max_delay == 5  # below the delay: raised to it, with a warning


@pytest.mark.parametrize("kwargs", [
    {"max_failures": 0}, {"window": 0}, {"delay": -1}, {"delay": 5, "max_delay": 1},
])
def test_invalid_limits(kwargs):
    with pytest.raises(ValueError):
        FailureThrottle(**kwargs)
