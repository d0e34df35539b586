"""SocketTransport timers: a callback in a greenlet of its own when due, none before."""

from __future__ import annotations

import gc
import socket

import gevent
import gevent.event

from xmpp.listeners import SocketTransport


def transport() -> SocketTransport:
    ours, _theirs = socket.socketpair()
    return SocketTransport(ours, ("127.0.0.1", 1), "c2s", secure=False)


def greenlets() -> int:
    return sum(isinstance(obj, gevent.Greenlet) for obj in gc.get_objects())


def test_a_pending_timer_holds_no_greenlet_and_fires_in_one():
    fired = gevent.event.Event()
    pending = transport()
    before = greenlets()
    for _ in range(50):
        pending.call_later(300, fired.set)
    assert greenlets() == before  # an idle session's deadline costs a watcher, not a greenlet

    def blocking_callback() -> None:
        gevent.sleep(0)  # a callback may block: it runs in a greenlet, not in the hub
        fired.set()

    due = transport()
    due.call_later(0.01, blocking_callback)
    assert fired.wait(timeout=5)


def test_closing_cancels_pending_timers():
    fired = gevent.event.Event()
    closing = transport()
    closing.call_later(0.05, fired.set)
    closing.close()
    assert not fired.wait(timeout=0.3)
