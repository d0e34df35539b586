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
    # The loop timer's interval is out of reach: the test ticks by hand, so a
    # loaded machine cannot make the busy session miss an interval.
    quiet_streams = QuietStreams(3600)
    quiet, busy = FakeSession(), FakeSession()
    quiet_streams.touch(quiet)
    for _ in range(3):  # the busy one reads in every interval
        quiet_streams.touch(busy)
        quiet_streams._tick()
    assert quiet.released.is_set()
    assert not busy.released.is_set()
    quiet_streams._tick()  # an interval with no read from it
    assert busy.released.is_set()
    assert quiet_streams._timer is None  # nothing reads: the timer is gone


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
