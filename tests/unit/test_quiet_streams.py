"""QuietStreams: a stream that stops reading gives back its parser; a busy one keeps it."""

from __future__ import annotations

import gevent
import gevent.event

from xmpp.listeners import QuietStreams

INTERVAL = 0.2


class FakeSession:
    def __init__(self) -> None:
        self.released = gevent.event.Event()

    def release_idle_memory(self) -> None:
        self.released.set()


def test_a_quiet_session_is_released_and_a_busy_one_is_not() -> None:
    quiet_streams = QuietStreams(INTERVAL)
    quiet, busy = FakeSession(), FakeSession()
    quiet_streams.touch(quiet)
    for _ in range(30):  # reads ten times an interval, for three intervals
        quiet_streams.touch(busy)
        gevent.sleep(INTERVAL / 10)
    assert quiet.released.wait(timeout=5)
    assert not busy.released.is_set()
    assert busy.released.wait(timeout=5)  # once it stops reading


def test_the_timer_stops_when_nothing_reads() -> None:
    quiet_streams = QuietStreams(INTERVAL)
    session = FakeSession()
    quiet_streams.touch(session)
    assert session.released.wait(timeout=5)
    for _ in range(50):  # bounded: the next tick finds both generations empty
        if quiet_streams._timer is None:
            break
        gevent.sleep(INTERVAL)
    assert quiet_streams._timer is None


def test_ended_connections_release_the_heap_once_per_interval() -> None:
    released = gevent.event.Event()
    calls: list[None] = []

    def release_heap() -> None:
        calls.append(None)
        released.set()

    quiet_streams = QuietStreams(INTERVAL, release_heap)
    for _ in range(3):  # a burst of closes
        quiet_streams.connection_ended()
    assert released.wait(timeout=5)
    for _ in range(50):  # bounded: nothing more ended, so the timer stops
        if quiet_streams._timer is None:
            break
        gevent.sleep(INTERVAL)
    assert quiet_streams._timer is None
    assert len(calls) == 1


def test_reading_alone_does_not_release_the_heap() -> None:
    calls: list[None] = []
    quiet_streams = QuietStreams(INTERVAL, lambda: calls.append(None))
    session = FakeSession()
    quiet_streams.touch(session)
    assert session.released.wait(timeout=5)
    assert not calls
