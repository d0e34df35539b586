"""Failed-login throttling per client address (a Vireo limit; Prosody has none).

Pure: every call takes `now` (seconds, any monotonic origin). The c2s
listener asks `delay_for` before it evaluates an authentication attempt and
waits that long; each failed attempt past `max_failures` within `window`
doubles the wait, up to `max_delay`. A success forgets the address.

IPv6 clients are counted per /64, since one host usually holds a whole /64.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque


class FailureThrottle:
    """Counts recent authentication failures per address and says how long to wait."""

    def __init__(self, max_failures: int = 5, window: float = 60.0, delay: float = 2.0,
                 max_delay: float = 30.0, max_tracked: int = 10000) -> None:
        if max_failures < 1 or window <= 0 or delay < 0 or max_delay < delay or max_tracked < 1:
            raise ValueError("invalid throttle limits")
        self.max_failures = max_failures
        self.window = window
        self.delay = delay
        self.max_delay = max_delay
        self.max_tracked = max_tracked
        # Enough timestamps to reach max_delay; older failures cannot raise the wait.
        steps = 0
        while 0 < delay * 2 ** steps < max_delay:
            steps += 1
        self._keep = max_failures + steps
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # least recent first

    def record_failure(self, address: str, now: float) -> None:
        """Count one failed attempt from `address`."""
        key = _key(address)
        times = self._failures.pop(key, None)
        if times is None:
            times = deque(maxlen=self._keep)
        times.append(now)
        self._failures[key] = times
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)

    def record_success(self, address: str, now: float) -> None:
        """A successful login clears the address's record."""
        self._failures.pop(_key(address), None)

    def delay_for(self, address: str, now: float) -> float:
        """Seconds to wait before evaluating the next attempt from `address`.

        0 while fewer than `max_failures` failures fall within `window`;
        otherwise `delay` doubled for each failure beyond that (capped at
        `max_delay`), counted from the latest failure.
        """
        key = _key(address)
        times = self._failures.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        excess = len(times) - self.max_failures
        if excess < 0:
            return 0.0
        wait = min(self.delay * 2 ** excess, self.max_delay)
        return max(0.0, times[-1] + wait - now)

    def __len__(self) -> int:
        """Number of addresses tracked."""
        return len(self._failures)


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
