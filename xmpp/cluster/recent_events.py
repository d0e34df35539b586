"""Recent-event times of a limit shared by a cluster's nodes, in Redis.

Keys (under the cluster prefix): `limits:NAME:KEY`, a list of times, oldest
first, trimmed to the latest `keep` and expiring `ttl` seconds after the last.

Redis is asked on each event and each check: a login or a registration, never
a routed stanza. While Redis cannot be reached this node counts on its own in
memory (logged once per outage) rather than refusing logins or letting every
attempt through.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence

import redis

from xmpp.recent_events import MemoryRecentEvents

SOCKET_TIMEOUT = 1.0  # seconds; a login waits no longer on an unreachable Redis

log = logging.getLogger(__name__)


@functools.cache
def _client(url: str) -> redis.Redis:
    """One connection pool per URL for every limit of the process."""
    return redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT,
                                socket_connect_timeout=SOCKET_TIMEOUT)


class RedisRecentEvents:
    """Times kept in Redis under `prefix`, with `fallback` used during an outage."""

    def __init__(self, url: str, prefix: str, *, fallback: MemoryRecentEvents) -> None:
        self.redis = _client(url)
        self.prefix = prefix
        self.fallback = fallback
        self._failing = False

    def add(self, key: str, now: float, *, keep: int, ttl: float) -> None:
        name = self.prefix + key
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.rpush(name, repr(now)).ltrim(name, -keep, -1)
            pipe.expire(name, max(1, math.ceil(ttl)))
            pipe.execute()
            self._recovered()
        except redis.RedisError as error:
            self._failed(error)
            self.fallback.add(key, now, keep=keep, ttl=ttl)

    def times(self, key: str, since: float) -> Sequence[float]:
        try:
            raw = self.redis.lrange(self.prefix + key, 0, -1)
            self._recovered()
        except redis.RedisError as error:
            self._failed(error)
            return self.fallback.times(key, since)
        times = []
        for value in raw:
            try:
                time = float(value)
            except ValueError:
                continue  # not ours: ignore rather than fail a login
            if time > since:
                times.append(time)
        return times

    def forget(self, key: str) -> None:
        self.fallback.forget(key)
        try:
            self.redis.delete(self.prefix + key)
            self._recovered()
        except redis.RedisError as error:
            self._failed(error)

    def _failed(self, error: redis.RedisError) -> None:
        if not self._failing:
            log.warning("Limits shared in Redis unreachable (%s); counting on this node alone",
                        error)
            self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            log.info("Limits shared in Redis reachable again")
            self._failing = False
