"""Failed-attempt throttling per client address (a Vireo limit; Prosody has none).

Times are wall-clock seconds (a cluster compares them across nodes), read from
the caller's clock. A service asks `attempt` when a credential arrives (a SASL
<auth/>, a component handshake, an upload token) and ends what it gets with
its verdict: `succeeded` forgets the address, `failed` counts one failure.
Past `max_failures` within `window` each failure doubles the wait, up to
`max_delay`, counted from the latest one; an attempt made before the wait is
over is refused unchecked and the caller answers at once with the wait.

Attempts in flight are no failures (a burst of right passwords from one
address, a NAT or a load test, must not refuse itself), but they are no free
guesses either: at most `max_failures` minus the recent failures may be
checked at once (one past the limit), so attempts made in parallel, or sent
without waiting for answers, gain no guesses. Further ones wait their turn,
first come first served, up to `max_delay` seconds and at most `max_waiting`
of them per address (`vireo_auth_failure_max_waiting`); beyond that they are
refused with the wait `delay`.
A success lets the waiting ones proceed; a failure tells the next one,
which is then judged on the failures so far.

In a cluster the nodes also share the failures they have confirmed (`failed`,
in Redis): a guesser spreading attempts over nodes is slowed on all of them.
Attempts in flight stay this process's own: each node checks at most as many
at once as it would alone.

IPv6 clients are counted per /64, since one host usually holds a whole /64.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gevent.event import Event

from xmpp.recent_events import MemoryRecentEvents, RecentEvents, shared_recent_events

if TYPE_CHECKING:
    from xmpp.config import Config, HostConfig

Clock = Callable[[], float]

# Attempts from one address that may wait for a turn at once: a burst of
# logins from behind a NAT fits, a flood of connections is refused.
DEFAULT_MAX_WAITING = 100


class Attempt:
    """A credential from one address, from its arrival until its verdict.

    Either `refused` (unchecked: tell the client `wait`) or holding one of its
    address's turns until it ends: `succeeded`, `failed`, or `abandoned` when
    no credential was checked after all (the stream closed mid-exchange). As a
    context manager, an attempt left without a verdict counts as failed, as a
    form or a token that never reached the check does."""

    __slots__ = ("_open", "clock", "key", "refused", "throttle", "turn", "wait", "waiting")

    def __init__(self, throttle: FailureThrottle, key: str, clock: Clock) -> None:
        self.throttle = throttle
        self.key = key
        self.clock = clock
        self.refused = False
        self.wait = 0.0
        self.waiting = False  # for a turn; `turn` is set when it should be judged again
        self.turn: Event | None = None
        self._open = True  # no verdict yet

    def succeeded(self) -> None:
        """The credential was right: the address starts afresh."""
        if self._open:
            self._open = False
            self.throttle.record_success(self.key, self.clock())
            self.throttle.release(self)

    def failed(self) -> None:
        """The credential was wrong: one failure, and the turn goes to the next."""
        if self._open:
            self._open = False
            self.throttle.record_failure(self.key, self.clock())
            self.throttle.release(self)

    def abandoned(self) -> None:
        """Nothing was checked: the turn goes to the next, and nothing counts
        (a verdict that still comes does)."""
        self.throttle.release(self)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, *_exception: object) -> None:
        self.failed()


class _Turns:
    """The attempts from one address being checked (since when) and those waiting, in order."""

    __slots__ = ("checking", "waiting")

    def __init__(self) -> None:
        self.checking: dict[Attempt, float] = {}
        self.waiting: deque[Attempt] = deque()


class FailureThrottle:
    """Counts recent authentication failures per address, says how long to
    wait, and takes turns among the attempts in flight."""

    def __init__(self, max_failures: int = 5, window: float = 60.0, delay: float = 2.0,
                 max_delay: float = 30.0, events: RecentEvents | None = None,
                 shared: RecentEvents | None = None,
                 max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        if max_failures < 1 or window <= 0 or delay < 0 or max_delay < delay or max_waiting < 0:
            raise ValueError("invalid throttle limits")
        self.max_failures = max_failures
        self.window = window
        self.delay = delay
        self.max_delay = max_delay
        self.max_waiting = max_waiting
        # Enough timestamps to reach max_delay; older failures cannot raise the wait.
        steps = 0
        while 0 < delay * 2 ** steps < max_delay:
            steps += 1
        self._keep = max_failures + steps
        self._events = events if events is not None else MemoryRecentEvents()
        self._shared = shared
        # Only addresses with attempts in flight: as many as connections at most.
        self._turns: dict[str, _Turns] = {}

    def record_failure(self, address: str, now: float) -> None:
        """Count one failed attempt from `address`, here and on the other nodes."""
        key = _key(address)
        self._events.add(key, now, keep=self._keep, ttl=self.window + self.max_delay)
        if self._shared is not None:
            self._shared.add(key, now, keep=self._keep, ttl=self.window + self.max_delay)

    def record_success(self, address: str, now: float) -> None:
        """A success (a login, a handshake, a verified token) forgets the address."""
        key = _key(address)
        self._events.forget(key)
        if self._shared is not None:
            self._shared.forget(key)

    def attempt(self, address: str, clock: Clock) -> Attempt:
        """An attempt from `address` begins (its credential arrived): refused,
        or holding a turn to be checked. Waiting for a turn takes at most
        `max_delay` seconds; then it is refused."""
        attempt = self.begin(address, clock)
        deadline = time.monotonic() + self.max_delay
        try:
            while attempt.waiting:
                assert attempt.turn is not None
                attempt.turn.wait(max(0.0, deadline - time.monotonic()))
                attempt.turn.clear()
                self.judge(attempt)
                if attempt.waiting and time.monotonic() >= deadline:
                    self._refuse(attempt, self.delay)
        finally:
            if attempt.waiting:  # killed while waiting: it must not stay first in line
                self._refuse(attempt, self.delay)
        return attempt

    def begin(self, address: str, clock: Clock) -> Attempt:
        """`attempt` without the waiting: one still `waiting` is to be judged
        again when its `turn` is set."""
        attempt = Attempt(self, _key(address), clock)
        self.judge(attempt)
        return attempt

    def judge(self, attempt: Attempt) -> None:
        """Refuse `attempt` while its address must wait, else give it a turn
        when one is free and none waits before it, else let it wait for one."""
        key = attempt.key
        # The shared failures first: reading them may let other greenlets run,
        # and what follows must not (parallel attempts each see the others).
        shared = self._recent(self._shared, key, attempt.clock()) if self._shared else ()
        now = attempt.clock()
        local = self._recent(self._events, key, now)
        wait = max(self._wait(local, now), self._wait(shared, now))
        turns = self._turns.setdefault(key, _Turns())
        if wait > 0:
            self._refuse(attempt, wait)
        elif self._has_turn(attempt, turns, max(len(local), len(shared)), now):
            if attempt.waiting:
                turns.waiting.popleft()
                attempt.waiting = False
            turns.checking[attempt] = now
            self._wake(turns)  # a turn may be left for the next one too
        elif attempt.waiting:
            pass  # still not its turn
        elif len(turns.waiting) < self.max_waiting:
            attempt.waiting, attempt.turn = True, Event()
            turns.waiting.append(attempt)
        else:
            self._refuse(attempt, self.delay)

    def release(self, attempt: Attempt) -> None:
        """`attempt` is no longer being checked: its turn goes to the next one."""
        turns = self._turns.get(attempt.key)
        if turns is not None and turns.checking.pop(attempt, None) is not None:
            self._wake(turns)
            self._tidy(attempt.key, turns)

    def delay_for(self, address: str, now: float) -> float:
        """Seconds to wait before the next attempt from `address` may be checked.

        0 while fewer than `max_failures` failures fall within `window`;
        otherwise `delay` doubled for each failure beyond that (capped at
        `max_delay`), counted from the latest failure. In a cluster, the larger
        of this node's count and the failures confirmed on every node.
        """
        key = _key(address)
        local = self._wait(self._recent(self._events, key, now), now)
        if self._shared is None:
            return local
        return max(local, self._wait(self._recent(self._shared, key, now), now))

    def _has_turn(self, attempt: Attempt, turns: _Turns, failures: int, now: float) -> bool:
        if turns.waiting and turns.waiting[0] is not attempt:
            return False  # first come, first served
        # An exchange the client never finished (or a session that lost track
        # of its attempt) holds a turn for one window at most.
        for stale in [held for held, since in turns.checking.items() if since <= now - self.window]:
            del turns.checking[stale]
        return len(turns.checking) < self._turns_after(failures)

    def _turns_after(self, failures: int) -> float:
        """How many attempts may be checked at once after `failures` recent ones:
        those left before the limit, one past it (once its wait is over)."""
        if self.delay == 0:
            return math.inf  # failures never make anyone wait
        return max(self.max_failures - failures, 1)

    def _refuse(self, attempt: Attempt, wait: float) -> None:
        attempt.refused, attempt.wait, attempt._open = True, wait, False
        turns = self._turns.get(attempt.key)
        if turns is None:
            return
        if attempt.waiting:
            turns.waiting.remove(attempt)
            attempt.waiting = False
            self._wake(turns)  # judged now, the next one may be refused too
        self._tidy(attempt.key, turns)

    @staticmethod
    def _wake(turns: _Turns) -> None:
        if turns.waiting:
            first = turns.waiting[0].turn
            assert first is not None
            first.set()

    def _tidy(self, key: str, turns: _Turns) -> None:
        if not turns.checking and not turns.waiting:
            self._turns.pop(key, None)

    def _recent(self, events: RecentEvents, key: str, now: float) -> Sequence[float]:
        return events.times(key, now - self.window)

    def _wait(self, times: Sequence[float], now: float) -> float:
        excess = len(times) - self.max_failures
        if excess < 0:
            return 0.0
        wait = min(self.delay * 2 ** excess, self.max_delay)
        return max(0.0, times[-1] + wait - now)


def failure_throttle(config: Config | HostConfig, name: str) -> FailureThrottle:
    """A throttle with the `vireo_auth_failure_*` options of `config`; `name`
    tells its failures from other throttles' where a cluster shares them."""
    delay = config.get_number("vireo_auth_failure_delay", 2.0, min=0)
    return FailureThrottle(
        max_failures=config.get_int("vireo_auth_failure_limit", 5, min=1),
        window=config.get_number("vireo_auth_failure_window", 60.0, min=1),
        delay=delay,
        max_delay=config.get_number("vireo_auth_failure_max_delay", max(30.0, delay), min=delay),
        shared=shared_recent_events(config, name),
        # 0: an attempt finding no free turn is refused at once.
        max_waiting=config.get_int("vireo_auth_failure_max_waiting", DEFAULT_MAX_WAITING, min=0),
    )


def whole_seconds(wait: float) -> int:
    """A wait as told to a client: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))


def wait_text(reason: str, wait: float) -> str:
    """The text of an answer refusing an attempt for `wait` seconds."""
    return f"{reason}: wait {whole_seconds(wait)} s before trying again"


# Each login reads and writes its address's record several times; parsing the
# address each time was a measurable part of a FAST login.
@functools.lru_cache(maxsize=4096)
def _key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP (a unix socket, a test name): count as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
