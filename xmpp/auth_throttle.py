"""Failed-attempt throttling per client address (a Vireo limit; Prosody has none).

Every call takes `now` (wall-clock seconds: a cluster compares them across
nodes). A service asks `attempt` when a credential arrives (a SASL <auth/>, a
component handshake, an upload token): while the address must wait the
credential is refused unchecked and the caller answers at once with the wait;
otherwise it is checked. Either way the attempt counts as a failure until
`record_success` forgets the address, so attempts made in parallel, or without
waiting for answers, gain no guesses. Past `max_failures` within `window` each
failure doubles the wait, up to `max_delay`, counted from the latest one.

In a cluster the nodes also share the failures they have confirmed (`failed`,
in Redis): a guesser spreading attempts over nodes is slowed on all of them.
Attempts still in flight stay this process's own: shared, a burst of logins
from one address (a NAT, a load test) would see each other's pending
attempts through the network round trips and be refused.

IPv6 clients are counted per /64, since one host usually holds a whole /64.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from typing import TYPE_CHECKING

from xmpp.recent_events import MemoryRecentEvents, RecentEvents, shared_recent_events

if TYPE_CHECKING:
    from xmpp.config import Config, HostConfig


class FailureThrottle:
    """Counts recent authentication failures per address and says how long to wait."""

    def __init__(self, max_failures: int = 5, window: float = 60.0, delay: float = 2.0,
                 max_delay: float = 30.0, events: RecentEvents | None = None,
                 shared: RecentEvents | None = None) -> None:
        if max_failures < 1 or window <= 0 or delay < 0 or max_delay < delay:
            raise ValueError("invalid throttle limits")
        self.max_failures = max_failures
        self.window = window
        self.delay = delay
        self.max_delay = max_delay
        # Enough timestamps to reach max_delay; older failures cannot raise the wait.
        steps = 0
        while 0 < delay * 2 ** steps < max_delay:
            steps += 1
        self._keep = max_failures + steps
        self._events = events if events is not None else MemoryRecentEvents()
        self._shared = shared

    def record_failure(self, address: str, now: float) -> None:
        """Count one failed attempt from `address`."""
        self._events.add(_key(address), now, keep=self._keep, ttl=self.window + self.max_delay)

    def record_success(self, address: str, now: float) -> None:
        """A success (a login, a handshake, a verified token) forgets the address."""
        key = _key(address)
        self._events.forget(key)
        if self._shared is not None:
            self._shared.forget(key)

    def failed(self, address: str, now: float) -> None:
        """The credential of an attempt from `address` was wrong: the attempt
        counted here already; the other nodes of a cluster count it too."""
        if self._shared is not None:
            self._shared.add(_key(address), now, keep=self._keep,
                             ttl=self.window + self.max_delay)

    def attempt(self, address: str, now: float) -> float:
        """An attempt from `address` begins: 0.0 when it may be checked now, else
        the seconds to wait before one may be (this refused attempt included).

        The attempt is counted as a failure in both cases.
        """
        # The shared failures first: reading them may let other greenlets run,
        # and what follows must not (parallel attempts each see the others).
        elsewhere = self._delay(self._shared, address, now) if self._shared is not None else 0.0
        waited = max(elsewhere, self._delay(self._events, address, now))
        self.record_failure(address, now)
        return max(elsewhere, self._delay(self._events, address, now)) if waited > 0 else 0.0

    def delay_for(self, address: str, now: float) -> float:
        """Seconds to wait before the next attempt from `address` may be checked.

        0 while fewer than `max_failures` failures fall within `window`;
        otherwise `delay` doubled for each failure beyond that (capped at
        `max_delay`), counted from the latest failure. In a cluster, the larger
        of this node's count and the failures confirmed on every node.
        """
        local = self._delay(self._events, address, now)
        if self._shared is None:
            return local
        return max(local, self._delay(self._shared, address, now))

    def _delay(self, events: RecentEvents, address: str, now: float) -> float:
        times = events.times(_key(address), now - self.window)
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
