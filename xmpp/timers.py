"""Timers for modules (Prosody's module:add_timer), on gevent.

A timer runs its callback once in its own greenlet; an exception in it is
logged and costs that callback only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

log = logging.getLogger(__name__)


class Timer:
    """A pending callback; `cancel()` before it runs and it never will."""

    def __init__(self, seconds: float, callback: Callable[[], object]) -> None:
        self._greenlet = gevent.spawn_later(seconds, self._run, callback)

    @staticmethod
    def _run(callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception:
            log.exception("Timer callback %r failed", callback)

    def cancel(self) -> None:
        self._greenlet.kill(block=False)


def start_timer(seconds: float, callback: Callable[[], object]) -> Timer:
    return Timer(seconds, callback)
