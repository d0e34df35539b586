"""When something last happened, per key: failed logins, registrations from an
address. The limits that count them (xmpp.auth_throttle, mod_register's pacing)
keep the policy; this keeps the times.

Alone, a node keeps them in memory. In a cluster (issue 21) they are kept in
Redis, so a limit holds whichever node a client reaches: a guesser spreading
attempts over nodes, or a registration flood over workers, gains nothing.
Times are wall-clock seconds (`time.time()`), comparable across nodes.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from xmpp.cluster.options import cluster_options

if TYPE_CHECKING:
    from xmpp.config import Config, HostConfig

DEFAULT_MAX_TRACKED = 10000


class RecentEvents(Protocol):
    """Times of one kind of event, per key."""

    def add(self, key: str, now: float, *, keep: int, ttl: float) -> None:
        """Note an event at `now`: at most the `keep` latest are kept, and a key
        with none newer than `ttl` seconds may be forgotten."""

    def times(self, key: str, since: float) -> Sequence[float]:
        """The kept times of `key` after `since`, oldest first."""

    def forget(self, key: str) -> None:
        """Drop every time kept for `key`."""


class MemoryRecentEvents:
    """In this process; at most `max_tracked` keys, the least recently noted
    evicted first (a flood of addresses cannot grow it without bound)."""

    def __init__(self, max_tracked: int = DEFAULT_MAX_TRACKED) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self.max_tracked = max_tracked
        self._times: OrderedDict[str, deque[float]] = OrderedDict()  # least recent first

    def __len__(self) -> int:
        """Number of keys tracked."""
        return len(self._times)

    def add(self, key: str, now: float, *, keep: int, ttl: float) -> None:
        times = self._times.pop(key, None)
        if times is None or times.maxlen != keep:
            times = deque(times or (), maxlen=keep)
        times.append(now)
        self._times[key] = times
        while len(self._times) > self.max_tracked:
            self._times.popitem(last=False)

    def times(self, key: str, since: float) -> Sequence[float]:
        times = self._times.get(key)
        if times is None:
            return ()
        while times and times[0] <= since:
            times.popleft()
        if not times:
            del self._times[key]
        return times

    def forget(self, key: str) -> None:
        self._times.pop(key, None)


def recent_events(config: Config | HostConfig, name: str) -> RecentEvents:
    """Where the limit `name` keeps its times: in Redis when `config` makes this
    node a cluster member, else in memory."""
    return shared_recent_events(config, name) or MemoryRecentEvents()


def shared_recent_events(config: Config | HostConfig, name: str) -> RecentEvents | None:
    """The cluster's times of the limit `name` (in Redis), None when `config`
    does not make this node a cluster member."""
    root = getattr(config, "config", config)  # a HostConfig's global section
    options = cluster_options(root)
    if options is None:
        return None
    from xmpp.cluster.recent_events import RedisRecentEvents  # redis only for clusters
    return RedisRecentEvents(options.redis, f"{options.prefix}limits:{name}:",
                             fallback=MemoryRecentEvents())
