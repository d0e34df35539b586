"""XmppListener: an idle connection waits in a read watcher, not in a greenlet,
and still reads, closes and counts against max_connections like a busy one."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import gevent.event
import gevent.socket
import greenlet

from xmpp.listeners import READERS, SocketTransport, XmppListener, bind_socket

WAIT = 5.0


class EchoSession:
    """Answers each read with its bytes upper-cased; `bye` closes from our side."""

    def __init__(self, transport: SocketTransport) -> None:
        self.transport = transport
        self.lost = gevent.event.Event()

    def data_received(self, data: bytes) -> None:
        if data == b"bye":
            self.transport.close()
            return
        self.transport.write(data.upper())

    def connection_lost(self) -> None:
        self.lost.set()

    def release_idle_memory(self) -> None:
        pass


def greenlets() -> int:
    return sum(isinstance(obj, greenlet.greenlet) and not obj.dead for obj in gc.get_objects())


@contextmanager
def listening(max_connections: int = 1000) -> Iterator[tuple[XmppListener, list[EchoSession]]]:
    sessions: list[EchoSession] = []

    def make_session(transport: SocketTransport) -> EchoSession:
        sessions.append(EchoSession(transport))
        return sessions[-1]

    sock = bind_socket("127.0.0.1", 0)
    assert sock is not None
    listener = XmppListener("c2s", sock, make_session, max_connections=max_connections)
    listener.start()
    try:
        yield listener, sessions
    finally:
        listener.stop(timeout=WAIT)


def client(listener: XmppListener) -> gevent.socket.socket:
    return gevent.socket.create_connection(listener.address, timeout=WAIT)


def exchange(sock: gevent.socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return sock.recv(100)


def test_idle_connections_hold_no_greenlet_and_read_on():
    with listening() as (listener, sessions):
        before = greenlets()
        clients = [client(listener) for _ in range(READERS.keep + 20)]
        for sock in clients:
            assert exchange(sock, b"hello") == b"HELLO"
        gevent.sleep(0)  # the answered readers finish
        # At most the process's few idle readers, whatever the number of connections.
        assert greenlets() - before <= READERS.keep < len(clients)
        assert len(listener.sessions) == READERS.keep + 20
        for sock in clients:  # each idle connection reads again
            assert exchange(sock, b"again") == b"AGAIN"
        clients[0].sendall(b"bye")  # closed by our side
        assert clients[0].recv(100) == b""
        assert sessions[0].lost.wait(WAIT)
        clients[1].close()  # closed by the peer while idle
        assert sessions[1].lost.wait(WAIT)
        assert len(listener.sessions) == READERS.keep + 18
        for sock in clients[2:]:
            sock.close()


def test_stopping_ends_idle_connections():
    with listening() as (listener, sessions):
        sock = client(listener)
        assert exchange(sock, b"hi") == b"HI"
        listener.stop(timeout=0.1)
        assert sessions[0].lost.is_set()
        assert not listener.sessions
        assert sock.recv(100) == b""
        sock.close()


def test_at_most_max_connections_idle_or_not():
    with listening(max_connections=2) as (listener, sessions):
        first, second = client(listener), client(listener)
        assert exchange(first, b"a") == b"A"
        assert exchange(second, b"b") == b"B"
        third = client(listener)  # in the backlog, not accepted
        third.sendall(b"c")
        third.settimeout(0.3)
        try:
            answered: Any = third.recv(100)
        except TimeoutError:
            answered = None
        assert answered is None
        assert len(sessions) == 2
        first.close()  # room for one more: the third is served
        third.settimeout(WAIT)
        assert third.recv(100) == b"C"
        second.close()
        third.close()


def test_connections_and_flushes_run_in_kept_greenlets(monkeypatch):
    """Once some greenlets are kept, an accepted connection and a write from another
    greenlet (its flush) make no greenlet: one costs ten times a switch to a kept one."""
    with listening() as (listener, sessions):
        warm = [client(listener) for _ in range(4)]
        for sock in warm:
            assert exchange(sock, b"warm") == b"WARM"
        made = []
        for name in ("spawn", "spawn_raw"):
            original = getattr(gevent, name)

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                made.append(args[0])
                return _original(*args, **kwargs)

            monkeypatch.setattr(gevent, name, counted)
        for _ in range(20):
            sock = client(listener)
            assert exchange(sock, b"hi") == b"HI"
            transport = sessions[-1].transport
            transport.write(b"pushed")  # from this greenlet, not the connection's reader
            assert transport.flusher is not None
            transport.flusher.join(WAIT)
            assert sock.recv(100) == b"pushed"
            sock.close()
            assert sessions[-1].lost.wait(WAIT)
        assert made == []
        for sock in warm:
            sock.close()


def test_a_job_started_from_the_hub_runs_at_once():
    """A read watcher's wake (the hub) goes straight into a kept greenlet, not
    through another pass of the loop's callbacks; elsewhere the hub switches."""
    ran: list[str] = []
    done = gevent.event.Event()
    READERS.run(ran.append, "warm")  # a greenlet is kept once its first job ends
    gevent.sleep(0)
    assert ran == ["warm"] and READERS.idle

    def in_hub() -> None:
        READERS.run(ran.append, "from the hub")
        ran.append("after run")
        done.set()

    gevent.get_hub().loop.run_callback(in_hub)
    assert done.wait(WAIT)
    assert ran == ["warm", "from the hub", "after run"]
    READERS.run(ran.append, "from a greenlet")
    assert ran[-1] == "after run"  # this greenlet goes on until it yields
    gevent.sleep(0)
    assert ran[-1] == "from a greenlet"
