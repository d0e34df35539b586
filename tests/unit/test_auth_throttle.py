"""Failed-login throttle (xmpp/auth_throttle.py), driven with a fake clock."""

from __future__ import annotations

import gevent
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


class Clock:
    """Wall-clock seconds, moved by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_past_the_limit_attempts_are_refused_unchecked_until_the_wait_is_over():
    t, clock = FailureThrottle(max_failures=2, window=600.0, delay=2.0, max_delay=30.0), Clock()
    for _ in range(2):
        t.attempt(ADDR, clock).failed()
    clock.now = 1.0
    refused = t.attempt(ADDR, clock)
    assert refused.refused and refused.wait == 1.0  # 2 s from the latest failure
    refused.failed()  # no verdict for an attempt that was not checked
    assert t.delay_for(ADDR, 1.0) == 1.0
    clock.now = 2.0  # exactly when the wait is over: checked
    t.attempt(ADDR, clock).failed()
    assert t.attempt(ADDR, clock).wait == 4.0
    clock.now = 6.0
    t.attempt(ADDR, clock).succeeded()
    assert [t.attempt(ADDR, clock).refused for _ in range(2)] == [False, False]


def test_attempts_in_flight_are_no_failures_but_take_turns():
    """A burst of right passwords: never refused, at most the limit checked at once."""
    t, clock = FailureThrottle(max_failures=5), Clock()
    burst = [t.begin(ADDR, clock) for _ in range(20)]
    assert [a.refused for a in burst] == [False] * 20
    assert [a.waiting for a in burst] == [False] * 5 + [True] * 15
    assert t.delay_for(ADDR, 0.0) == 0.0
    for checked in range(20):
        burst[checked].succeeded()
        for waiting in burst[checked + 1:]:
            if waiting.turn is not None and waiting.turn.is_set():
                waiting.turn.clear()
                t.judge(waiting)
        assert sum(1 for a in burst[checked + 1:] if not a.waiting) == min(5, 19 - checked)
    assert not t._turns  # nothing kept once all are done


def test_a_failure_tells_the_next_which_is_judged_on_the_failures_so_far():
    t, clock = FailureThrottle(max_failures=2, delay=2.0), Clock()
    first, second, third = (t.begin(ADDR, clock) for _ in range(3))
    assert third.waiting and third.turn is not None and not third.turn.is_set()
    first.failed()  # one failure: one turn left, and second holds it
    assert third.turn.is_set()
    third.turn.clear()
    t.judge(third)
    assert third.waiting
    second.failed()  # the limit: the waiting one is refused with the wait
    assert third.turn.is_set()
    t.judge(third)
    assert third.refused and third.wait == 2.0 and not t._turns


def test_attempts_in_parallel_gain_no_checks():
    """Attempts that all begin at once past the limit: one is checked, not all."""
    t, clock = FailureThrottle(max_failures=3, window=600.0, delay=2.0), Clock()
    fail(t, ADDR, 3, now=0.0)
    clock.now = 2.0
    attempts = [t.begin(ADDR, clock) for _ in range(10)]
    assert not attempts[0].waiting and all(a.waiting for a in attempts[1:])
    attempts[0].failed()
    for waiting in attempts[1:]:
        t.judge(waiting)
    assert all(a.refused and a.wait == 4.0 for a in attempts[1:])


def test_a_success_lets_the_waiting_ones_proceed():
    t, clock = FailureThrottle(max_failures=3), Clock()
    fail(t, ADDR, 2, now=0.0)
    first, second = t.begin(ADDR, clock), t.begin(ADDR, clock)
    assert second.waiting
    first.succeeded()
    t.judge(second)
    assert not second.waiting and not second.refused and t.delay_for(ADDR, 0.0) == 0.0


def test_the_line_is_bounded_beyond_it_attempts_are_refused_with_the_delay():
    t, clock = FailureThrottle(max_failures=1, delay=3.0, max_waiting=2), Clock()
    attempts = [t.begin(ADDR, clock) for _ in range(4)]
    assert [(a.waiting, a.refused) for a in attempts] == \
        [(False, False), (True, False), (True, False), (False, True)]
    assert attempts[3].wait == 3.0


def test_an_abandoned_attempt_frees_its_turn_and_counts_nothing():
    t, clock = FailureThrottle(max_failures=1), Clock()
    first, second = t.begin(ADDR, clock), t.begin(ADDR, clock)
    first.abandoned()
    t.judge(second)
    assert not second.waiting and t.delay_for(ADDR, 0.0) == 0.0
    first.failed()  # a check that was under way still gives its verdict
    assert t.delay_for(ADDR, 0.0) == 2.0


def test_a_turn_held_past_the_window_lapses():
    t, clock = FailureThrottle(max_failures=1, window=60.0), Clock()
    t.begin(ADDR, clock)  # an exchange the client never finishes
    waiting = t.begin(ADDR, clock)
    clock.now = 59.0
    t.judge(waiting)
    assert waiting.waiting
    clock.now = 60.0
    t.judge(waiting)
    assert not waiting.waiting and not waiting.refused


def test_as_a_context_an_attempt_without_a_verdict_counts_as_failed():
    t, clock = FailureThrottle(max_failures=1), Clock()
    with t.attempt(ADDR, clock) as attempt:
        assert not attempt.refused
    assert t.delay_for(ADDR, 0.0) == 2.0
    with t.attempt("192.0.2.8", clock) as attempt:
        attempt.succeeded()
    assert not t._turns


def test_attempt_waits_for_its_turn_and_no_longer_than_max_delay():
    t, clock = FailureThrottle(max_failures=1, delay=0.05, max_delay=0.05), Clock()
    first = t.attempt(ADDR, clock)
    second = gevent.spawn(t.attempt, ADDR, clock)
    third = gevent.spawn(t.attempt, ADDR, clock)
    gevent.idle()
    assert not second.ready() and not third.ready()
    first.succeeded()
    assert not second.get(timeout=5).refused  # its turn came
    refused = third.get(timeout=5)  # second never ends: max_delay is the limit
    assert refused.refused and refused.wait == 0.05


def test_an_attempt_killed_while_waiting_leaves_the_line():
    t, clock = FailureThrottle(max_failures=1), Clock()
    first = t.attempt(ADDR, clock)
    killed = gevent.spawn(t.attempt, ADDR, clock)
    gevent.idle()
    killed.kill()
    first.succeeded()
    assert not t.begin(ADDR, clock).waiting


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
    t, clock, checked, refused = FailureThrottle(), Clock(), 0, 0
    while checked < guesses:
        if knows_the_wait:
            clock.now += t.delay_for(ADDR, clock.now)
        attempt = t.attempt(ADDR, clock)
        if attempt.refused:
            refused += 1
            clock.now += whole_seconds(attempt.wait)
        else:
            attempt.failed()
            checked += 1
    return clock.now, refused


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
    assert t.max_waiting == 100


def test_failure_throttle_reads_how_many_may_wait_for_a_turn(tmp_path):
    path = tmp_path / "vireo.cfg.lua"
    path.write_text("vireo_auth_failure_limit = 1\nvireo_auth_failure_max_waiting = 1\n")
    config = load_config(path)
    assert not [w for w in config.warnings if "vireo_auth_failure_max_waiting" in w]
    t, clock = failure_throttle(config, "c2s"), Clock()
    checked, waiting, refused = (t.begin("1.2.3.4", clock) for _ in range(3))
    assert not checked.waiting and waiting.waiting
    assert refused.refused and refused.wait == t.delay
    path.write_text("vireo_auth_failure_max_waiting = 0\n")
    assert failure_throttle(load_config(path), "c2s").max_waiting == 0
    path.write_text("vireo_auth_failure_max_waiting = -3\n")
    config = load_config(path)
    assert failure_throttle(config, "c2s").max_waiting == 0  # clamped, with a warning
    assert [w for w in config.warnings if "vireo_auth_failure_max_waiting" in w]


@pytest.mark.parametrize("kwargs", [
    {"max_failures": 0}, {"window": 0}, {"delay": -1}, {"delay": 5, "max_delay": 1},
])
def test_invalid_limits(kwargs):
    with pytest.raises(ValueError):
        FailureThrottle(**kwargs)
