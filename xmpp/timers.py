"""Timers for modules (Prosody's module:add_timer), on gevent.

A pending timer is a bare event-loop watcher, not a greenlet: a server may hold
one per hibernating session. When it fires, its callback runs in a greenlet of
its own (it may do I/O); an exception there is logged and costs that callback only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

log = logging.getLogger(__name__)


class Timer:
    """A pending callback; `cancel()` before it runs and it never will."""

    __slots__ = ("_watcher",)  # one per hibernating session: no instance dict

    def __init__(self, seconds: float, callback: Callable[[], object]) -> None:
        self._watcher = gevent.get_hub().loop.timer(seconds)
        self._watcher.start(gevent.spawn, self._run, callback)

    @staticmethod
    def _run(callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception:
            log.exception("Timer callback %r failed", callback)

    def cancel(self) -> None:
        self._watcher.close()


def start_timer(seconds: float, callback: Callable[[], object]) -> Timer:
    return Timer(seconds, callback)
