"""The socket ring: gevent StreamServers that accept XMPP connections and pump bytes.

A connection's reader is a short loop, `recv -> session.data_received`, run
by a greenlet while there are bytes to read; in between, the connection
waits in a read watcher, not in a greenlet of its own. Writes are queued on
the transport and flushed by one job per burst in a greenlet of their own, so
a router delivering from another session's greenlet never blocks on, or
interleaves with, this socket. Reads, accepted connections and flushes all run
in the few greenlets the process keeps between jobs (READERS).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import gevent.event
from gevent.server import StreamServer

from xmpp.channel_binding import tls_channel_bindings
from xmpp.heap import release_free_heap

log = logging.getLogger(__name__)

READ_SIZE = 65536
DEFAULT_MAX_CONNECTIONS = 10000
FLUSH_ON_CLOSE_TIMEOUT = 5.0
# Prosody's network_settings.ssl_handshake_timeout. A session's own timers
# cannot end a handshake: the socket it would close is not the TLS one yet.
TLS_HANDSHAKE_TIMEOUT = 60.0
LISTEN_BACKLOG = 128  # Prosody's default
# A stream that read nothing for between one and two of these is quiet (QuietStreams).
QUIET_INTERVAL = 1.0


class QuietStreams:
    """Lets streams that have gone quiet release what only a busy one needs (the
    parser: XmlStreamSession.release_idle_memory), and the process the heap
    pages that ended connections freed (`release_heap`, once per interval).

    Two generations of the sessions that read something: each tick, those that
    read in the previous interval and not since are quiet. One loop timer for
    the process, work in proportion to the busy sessions; rebuilding a parser
    costs several stanzas' worth of CPU, so a chatty stream keeps its own.
    """

    def __init__(self, interval: float = QUIET_INTERVAL,
                 release_heap: Callable[[], None] = release_free_heap) -> None:
        self._interval = interval
        self._release_heap = release_heap
        self._recent: set[Any] = set()
        self._earlier: set[Any] = set()
        self._ended = False  # a connection ended since the last tick
        self._timer: Any = None

    def touch(self, session: Any) -> None:
        self._recent.add(session)
        self._start()

    def connection_ended(self) -> None:
        # Once per interval, not per connection: a burst of closes trims once.
        self._ended = True
        self._start()

    def _start(self) -> None:
        if self._timer is None:
            self._timer = gevent.get_hub().loop.timer(self._interval, self._interval)
            self._timer.start(self._tick)

    def _tick(self) -> None:
        # Runs in the hub: only drops references and calls C, never switches.
        for session in self._earlier - self._recent:
            session.release_idle_memory()
        self._earlier, self._recent = self._recent, set()
        if self._ended:
            self._ended = False
            self._release_heap()
        elif not self._earlier:
            self._timer.close()
            self._timer = None


QUIET = QuietStreams()


class _Flush:
    """A flush of a transport's queued writes in a kept greenlet (_Readers), due,
    under way or over; `join` waits for its end as Greenlet.join would."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: gevent.event.Event | None = None  # made for the first who waits

    def run(self, transport: SocketTransport) -> None:
        try:
            transport._flush()
        finally:
            done, self.done = self.done, _FLUSHED
            if done is not None:
                done.set()

    def join(self, timeout: float | None = None) -> None:
        if self.done is None:
            self.done = gevent.event.Event()
        self.done.wait(timeout)


_FLUSHED = gevent.event.Event()
_FLUSHED.set()


class SocketTransport:
    """A session's view of its socket: queued writes, STARTTLS, close."""

    # One per connection, kept by a hibernated session too: no instance dict.
    __slots__ = (
        "_bindings",
        "closing",
        "flusher",
        "listener",
        "outbox",
        "parked",
        "peer",
        "peer_closed",
        "read_throttle",
        "reader",
        "secure",
        "sending",
        "sock",
        "timers",
        "tls_requested",
    )

    def __init__(self, sock: Any, peer: tuple[str, int], listener: str, secure: bool) -> None:
        self.sock = sock
        self.peer = peer
        self.listener = listener
        self.secure = secure
        self.outbox: list[bytes] = []
        self.flusher: _Flush | None = None
        # Writes made by the connection's own reader (answers to what it just
        # read) are sent by it once the chunk is handled: no greenlet, one syscall.
        self.reader: Any = None
        # Between reads: the connection waiting for bytes (run_connection).
        self.parked: _Connection | None = None
        self.sending = False
        self.tls_requested = False
        self.closing = False
        self.peer_closed = False  # the peer's FIN came in: close() alone answers it
        self.timers: list[Any] = []
        # Set by a module (mod_limits): given the bytes just read, how long the
        # reader pauses before reading more (0: at once). The peer is slowed by
        # TCP itself, not dropped; other connections are unaffected.
        self.read_throttle: Callable[[int], float] | None = None
        self._bindings: tuple[Any, Mapping[str, bytes]] | None = None

    @property
    def channel_bindings(self) -> Mapping[str, bytes]:
        """The TLS channel bindings of this connection, by type ({} in the clear);
        read once per TLS socket (STARTTLS replaces the socket)."""
        if not self.secure or self.sock is None:
            return {}
        if self._bindings is None or self._bindings[0] is not self.sock:
            self._bindings = (self.sock, tls_channel_bindings(self.sock))
        return self._bindings[1]

    def write(self, data: bytes) -> None:
        if self.sock is None:
            return
        self.outbox.append(data)
        if self.flusher is None and not self.sending and gevent.getcurrent() is not self.reader:
            self.flusher = flush = _Flush()
            READERS.run(flush.run, self)

    def _flush(self) -> None:
        if self.sending:
            # Whoever is sending picks up what was queued meanwhile, and shuts
            # the socket down afterwards if a close came in.
            return
        self.sending = True
        try:
            while self.outbox and self.sock is not None:
                data = b"".join(self.outbox)
                self.outbox.clear()
                # One send() takes all of a small write; gevent's sendall() would
                # first ask the kernel for the buffer size, a syscall per write.
                sent = self.sock.send(data)
                if sent < len(data):
                    self.sock.sendall(memoryview(data)[sent:])
        except OSError:
            self.outbox.clear()
            self.closing = True
        finally:
            self.sending = False
            self.flusher = None
        if self.closing:
            self._shutdown()

    def drained(self, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) until all written so far is in the
        kernel's hands; whether it is. A process killed after that loses none of it."""
        flusher = self.flusher
        if flusher is not None:
            flusher.join(timeout)
        return not self.outbox and not self.sending

    def flush_now(self) -> None:
        """Write everything queued before the reader goes on (STARTTLS)."""
        if self.flusher is not None:
            self.flusher.join()
        if self.outbox:
            self._flush()

    def start_tls(self) -> None:
        self.tls_requested = True

    def close(self) -> None:
        self.closing = True
        if self.flusher is None:
            self._flush()

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None:
        # A loop timer that spawns the callback's greenlet when it fires: an idle
        # session holds a 0.2 KiB watcher instead of a 1 KiB unstarted greenlet.
        timer = gevent.get_hub().loop.timer(seconds)
        timer.start(gevent.spawn, callback)
        self.timers.append(timer)

    def _shutdown(self) -> None:
        sock, self.sock = self.sock, None
        for timer in self.timers:
            timer.close()
        self.timers.clear()
        if self.parked is not None:
            self.parked.wake()  # its watcher goes before the socket: it ends the connection
        if sock is not None:
            if not self.peer_closed:
                # Wakes whoever still reads or writes it; after the peer's FIN a
                # plain close() sends ours, one syscall fewer per login.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class _Acceptor(StreamServer):
    """gevent's StreamServer, for connections that outlive their handler's
    greenlet: the handler sets the connection up and returns once it has
    nothing to read, and the connection closes its socket itself."""

    def __init__(self, listener: Any, handle: Callable[..., None],
                 spawn: Callable[..., None], full: Callable[[], bool]) -> None:
        super().__init__(listener, handle, spawn=spawn)
        self.full = full  # as gevent's own pools do: consulted before each accept

    def do_close(self, *args: Any) -> None:
        """Not closed when the handler returns (see the class)."""


class XmppListener:
    """One port of one service (c2s, c2s_direct_tls, component, ...).

    `listener` is a bound socket or an (address, port) pair. At most
    `max_connections` connections are open (or being set up) at once; beyond
    that the port stops accepting until one ends.
    """

    def __init__(self, service: str, listener: Any,
                 make_session: Callable[[SocketTransport], Any], *,
                 tls_context: Callable[[], ssl.SSLContext | None] | None = None,
                 starttls_context: Callable[[Any], ssl.SSLContext | None] | None = None,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT) -> None:
        self.service = service
        self.make_session = make_session
        self.tls_context = tls_context
        self.starttls_context = starttls_context
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self.sessions: dict[SocketTransport, Any] = {}
        self._handlers = 0  # accepted connections still being set up
        self._paused = False  # stopped accepting: full
        self._drained = gevent.event.Event()
        self.server = _Acceptor(listener, self._accepted, self._spawn, self._full)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def start(self) -> None:
        self.server.start()
        log.info("Listening for %s on [%s]:%d", self.service, *self.server.address[:2])

    def stop(self, timeout: float = 5.0) -> None:
        """Close the port, then give the open connections `timeout` seconds to
        end; the rest are ended: closed while waiting for bytes, killed while
        their reader runs."""
        self.server.stop()
        if not self._wait_drained(timeout):
            readers = [transport.reader for transport in self.sessions
                       if transport.reader is not None]
            for transport in list(self.sessions):
                if transport.parked is not None:
                    transport.close()
            gevent.killall(readers, block=False)
            self._wait_drained(1.0)

    def _wait_drained(self, timeout: float) -> bool:
        if self.sessions:
            self._drained.clear()
            self._drained.wait(timeout)
        return not self.sessions

    def _full(self) -> bool:
        self._paused = self._handlers + len(self.sessions) >= self.max_connections
        return self._paused

    def _spawn(self, function: Callable[..., None], *args: Any) -> None:
        self._handlers += 1  # counted at once: the accept loop asks _full before it runs
        # A kept greenlet (see _Readers): nothing joins or links to it.
        READERS.run(function, *args)

    def _accepted(self, sock: Any, address: tuple[Any, ...]) -> None:
        try:
            self._handle(sock, address)
        except BaseException:
            sock.close()  # no-op once the connection took it over (it closed it)
            raise
        finally:
            self._handlers -= 1
            self._room()

    def _room(self) -> None:
        if self._paused and not self._full() and self.server.started:
            self.server.start_accepting()

    def _handle(self, sock: Any, address: tuple[Any, ...]) -> None:
        self.serve(sock, (address[0], address[1]))

    def serve(self, sock: Any, peer: tuple[str, int], initial: bytes = b"") -> None:
        """Set one connection up and run it (see run_connection); also the
        entry for PROXY-protocol handoffs."""
        secure = False
        if self.tls_context is not None:
            context = self.tls_context()
            if context is None:
                sock.close()
                return
            try:
                sock = self._handshake(sock, context)
            except (OSError, ssl.SSLError) as error:
                log.debug("TLS handshake with %s failed: %s", peer[0], error)
                sock.close()
                return
            secure = True
        transport = SocketTransport(sock, peer, self.service, secure)
        session = self.make_session(transport)
        self.sessions[transport] = session
        run_connection(transport, session, self._upgrade, initial=initial, ended=self._ended)

    def _ended(self, transport: SocketTransport) -> None:
        self.sessions.pop(transport, None)
        if not self.sessions:
            self._drained.set()
        self._room()

    def _upgrade(self, transport: SocketTransport, session: Any) -> bool:
        context = self.starttls_context(session) if self.starttls_context else None
        if context is None or transport.sock is None:
            return False
        try:
            transport.sock = self._handshake(transport.sock, context)
        except (OSError, ssl.SSLError) as error:
            log.debug("STARTTLS with %s failed: %s", transport.peer[0], error)
            return False
        transport.secure = True
        return True

    def _handshake(self, sock: Any, context: ssl.SSLContext) -> Any:
        """`sock` in TLS as the server, within `handshake_timeout` (a peer that
        stalls the handshake would otherwise hold the connection forever)."""
        sock.settimeout(self.handshake_timeout)
        tls = context.wrap_socket(sock, server_side=True)
        tls.settimeout(None)
        return tls


Upgrade = Callable[[SocketTransport, Any], bool]


def run_connection(transport: SocketTransport, session: Any, upgrade: Upgrade, *,
                   initial: bytes = b"", after_read: Callable[[], None] | None = None,
                   ended: Callable[[SocketTransport], None] | None = None) -> None:
    """The one connection loop, for accepted and dialled sockets alike:
    `recv -> session.data_received -> send the answers`, with STARTTLS through
    `upgrade(transport, session)` (False ends the connection), until either
    side closes; then `ended(transport)`.

    It returns once it has handled what the socket had: the connection then
    waits in a read watcher, which continues it in a reader greenlet when bytes
    come. A greenlet parked in every idle connection (its saved stack, links
    and waiter) was a quarter of an idle session's memory."""
    _Connection(transport, session, upgrade, after_read, ended).run(initial)


class _Readers:
    """The greenlets that run woken connections (_Connection.wake), accepted
    ones and flushes of queued writes, kept between jobs: a new greenlet per
    job cost some 11 us of CPU (created, switched to, torn down, and its
    frame stack mapped and unmapped), a third of a c2s message; switching to
    a waiting one costs a tenth of that. One that blocks (a database call, a
    full socket) just leaves the next job to another. Beyond `keep` idle
    ones, a greenlet ends when its job is done: enough for bursts of logins
    (50 at once in the bench's idle scenario; with 16, most of their wakes
    made a new greenlet), some 3 KiB each while idle."""

    def __init__(self, keep: int = 128) -> None:
        self.keep = keep
        self.idle: list[Any] = []

    def run(self, function: Callable[..., None], *args: Any) -> None:
        """Run `function(*args)` in an idle greenlet, or a new one. From the hub (a
        read watcher's or the accept loop's callback) the idle one is switched to
        at once, as gevent's own waiters are; from any other greenlet the hub makes
        the switch (this one carries on meanwhile). At once saves a pass through
        the loop's callbacks, some 0.6-1 us of the 1.2-2.4 a job costs."""
        if not self.idle:
            gevent.spawn_raw(self._serve, function, args)
            return
        hub = gevent.get_hub()
        if gevent.getcurrent() is hub:
            self.idle.pop().switch(function, args)
        else:
            hub.loop.run_callback(self.idle.pop().switch, function, args)

    def _serve(self, function: Callable[..., None], args: tuple[Any, ...]) -> None:
        hub = gevent.get_hub()
        while True:
            function(*args)
            if len(self.idle) >= self.keep:
                return
            self.idle.append(gevent.getcurrent())
            function, args = hub.switch()  # run() hands over the next job


READERS = _Readers()


class _Connection:
    """What continues a connection when bytes come (run_connection)."""

    __slots__ = ("after_read", "ended", "session", "transport", "upgrade", "watcher")

    def __init__(self, transport: SocketTransport, session: Any, upgrade: Upgrade,
                 after_read: Callable[[], None] | None,
                 ended: Callable[[SocketTransport], None] | None) -> None:
        self.transport = transport
        self.session = session
        self.upgrade = upgrade
        self.after_read = after_read
        self.ended = ended
        self.watcher: Any = None

    def run(self, initial: bytes = b"", readable: bool = False) -> None:
        """Read while there is something to read (`readable`: the socket said
        so), then park. Parking after each read rather than trying another
        costs less than the failed recv it saves, and bytes already waiting
        wake it at once."""
        transport, session = self.transport, self.session
        transport.reader = gevent.getcurrent()
        parked = False
        try:
            if initial and not _feed(transport, session, initial, self.upgrade, self.after_read):
                return
            while not transport.closing and transport.sock is not None:
                sock = transport.sock
                if not readable and not _tls_pending(sock):
                    parked = True
                    self._park(sock)
                    return
                readable = False
                try:
                    # Returns at once, or waits here for the rest of a TLS record.
                    data = sock.recv(READ_SIZE)
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    transport.peer_closed = True
                    return
                if not _feed(transport, session, data, self.upgrade, self.after_read):
                    return
                if transport.read_throttle is not None:
                    pause = transport.read_throttle(len(data))
                    if pause > 0:
                        gevent.sleep(pause)
        finally:
            if parked:
                transport.reader = None
            else:
                self._end()

    def _park(self, sock: Any) -> None:
        watcher = self.watcher
        if watcher is None or watcher.fd != sock.fileno():
            if watcher is not None:
                watcher.close()
            # Kept from one park to the next: started and stopped, not remade.
            watcher = self.watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
        watcher.start(self.wake)
        self.transport.parked = self

    def wake(self) -> None:
        """Bytes came, or the transport closes: carry on in a reader greenlet."""
        if self.transport.parked is not self:
            return
        self.watcher.stop()  # before the socket can close (SocketTransport._shutdown)
        self.transport.parked = None
        READERS.run(self.run, b"", True)

    def _end(self) -> None:
        transport = self.transport
        if self.watcher is not None:
            self.watcher.close()
            self.watcher = None
        self.session.connection_lost()
        transport.close()
        transport.reader = None  # a session may outlive its connection (XEP-0198)
        QUIET.connection_ended()
        # Let the last words (a stream error, the closing tag) go out before
        # the connection counts as ended.
        if transport.flusher is not None:
            transport.flusher.join(timeout=FLUSH_ON_CLOSE_TIMEOUT)
        if self.ended is not None:
            self.ended(transport)


def _tls_pending(sock: Any) -> bool:
    """Whether TLS holds bytes it already took from the kernel (no read event
    would come for them)."""
    # Looked up on the class: on a plain gevent socket the instance lookup
    # fails through its __getattr__ and an AttributeError, about 1 us per read.
    pending = getattr(type(sock), "pending", None)
    return pending is not None and pending(sock) > 0


def _feed(transport: SocketTransport, session: Any, data: bytes, upgrade: Upgrade,
          after_read: Callable[[], None] | None) -> bool:
    """Hand `data` to the session and send its answers; False ends the connection."""
    session.data_received(data)
    QUIET.touch(session)
    if after_read is not None:
        after_read()
    if transport.outbox and transport.flusher is None:
        transport._flush()
    if not transport.tls_requested:
        return True
    transport.tls_requested = False
    transport.flush_now()
    if not upgrade(transport, session):
        return False
    # What the session wrote once encrypted (an initiator's new stream header).
    if transport.outbox and transport.flusher is None:
        transport._flush()
    return True


def dial(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to (address, port) within `timeout`; OSError when it fails."""
    sock = socket.create_connection((address, port), timeout=timeout)
    sock.settimeout(None)
    return sock


def start_tls_client(transport: SocketTransport, context: ssl.SSLContext,
                     server_hostname: str, timeout: float) -> bool:
    """Upgrade a dialled connection to TLS as the client, within `timeout`."""
    if transport.sock is None:
        return False
    try:
        # The session's own timers cannot reach a handshake in progress.
        transport.sock.settimeout(timeout)
        transport.sock = context.wrap_socket(transport.sock, server_hostname=server_hostname)
        transport.sock.settimeout(None)
    except (OSError, ssl.SSLError, ValueError) as error:
        log.info("TLS with %s failed: %s", server_hostname, error)
        return False
    transport.secure = True
    return True


# Set in each process of `app.py run --workers N` (share_ports): they bind the same ports.
_share_ports = False


def share_ports() -> None:
    """Let the sibling worker processes bind the same ports (SO_REUSEPORT): the
    kernel spreads new connections among them."""
    global _share_ports
    _share_ports = True


def bind_socket(interface: str, port: int) -> socket.socket | None:
    """A listening socket; IPv6 ones are v6-only so `*` and `::` can share a port."""
    host = "0.0.0.0" if interface == "*" else interface
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if _share_ports:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        # A host without IPv6 still serves the IPv4 defaults ("::", and "::1" for loopback).
        if family == socket.AF_INET6 and interface in ("::", "::1"):
            log.warning("Not listening on [%s]:%d: %s", interface, port, error)
            return None
        raise
    sock.setblocking(False)
    return sock
