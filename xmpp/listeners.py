"""The socket ring: gevent StreamServers that accept XMPP connections and pump bytes.

A connection greenlet is a short loop, `recv -> session.data_received`;
writes are queued on the transport and flushed by one short-lived greenlet
per burst, so a router delivering from another session's greenlet never
blocks on, or interleaves with, this socket.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import gevent
from gevent.pool import Pool
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


class SocketTransport:
    """A session's view of its socket: queued writes, STARTTLS, close."""

    # One per connection, kept by a hibernated session too: no instance dict.
    __slots__ = (
        "_bindings",
        "closing",
        "flusher",
        "listener",
        "outbox",
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
        self.flusher: gevent.Greenlet | None = None
        # Writes made by the connection's own reader (answers to what it just
        # read) are sent by it once the chunk is handled: no greenlet, one syscall.
        self.reader: Any = None
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
            self.flusher = gevent.spawn(self._flush)

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
        if sock is not None:
            if not self.peer_closed:
                # Wakes whoever still reads or writes it; after the peer's FIN a
                # plain close() sends ours, one syscall fewer per login.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class XmppListener:
    """One port of one service (c2s, c2s_direct_tls, component, ...).

    `listener` is a bound socket or an (address, port) pair.
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
        self.sessions: dict[SocketTransport, Any] = {}
        self.server = StreamServer(listener, self._handle, spawn=Pool(max_connections))

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def start(self) -> None:
        self.server.start()
        log.info("Listening for %s on [%s]:%d", self.service, *self.server.address[:2])

    def stop(self, timeout: float = 5.0) -> None:
        self.server.stop(timeout=timeout)

    def _handle(self, sock: Any, address: tuple[str, int]) -> None:
        self.serve(sock, (address[0], address[1]))

    def serve(self, sock: Any, peer: tuple[str, int], initial: bytes = b"") -> None:
        """Run one connection to its end; also the entry for PROXY-protocol handoffs."""
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
        try:
            run_connection(transport, session, lambda: self._upgrade(transport, session),
                           initial=initial)
        finally:
            self.sessions.pop(transport, None)

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


def run_connection(transport: SocketTransport, session: Any, upgrade: Callable[[], bool], *,
                   initial: bytes = b"", after_read: Callable[[], None] | None = None) -> None:
    """The one connection loop, for accepted and dialled sockets alike:
    `recv -> session.data_received -> send the answers`, with STARTTLS through
    `upgrade()` (False ends the connection), until either side closes."""
    transport.reader = gevent.getcurrent()
    try:
        if initial and not _feed(transport, session, initial, upgrade, after_read):
            return
        while not transport.closing and transport.sock is not None:
            try:
                data = transport.sock.recv(READ_SIZE)
            except (OSError, ssl.SSLError):
                return
            if not data:
                transport.peer_closed = True
                return
            if not _feed(transport, session, data, upgrade, after_read):
                return
            if transport.read_throttle is not None:
                pause = transport.read_throttle(len(data))
                if pause > 0:
                    gevent.sleep(pause)
    finally:
        session.connection_lost()
        transport.close()
        transport.reader = None  # a session may outlive its connection (XEP-0198)
        QUIET.connection_ended()
        # gevent closes the socket when the handler returns: let the
        # last words (a stream error, the closing tag) go out first.
        if transport.flusher is not None:
            transport.flusher.join(timeout=FLUSH_ON_CLOSE_TIMEOUT)


def _feed(transport: SocketTransport, session: Any, data: bytes, upgrade: Callable[[], bool],
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
    if not upgrade():
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
