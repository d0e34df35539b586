"""The live WebSocket sessions of one server and the socket loop each one runs.

`WebSocketService.serve(sock, ...)` runs one connection after its 101, in the
greenlet of its HTTP request: read, feed the frame layer (frames.py), hand each
message to the c2s session (session.py), send what they answer. A connection
silent for `keepalive` seconds gets a ping frame, as Prosody sends one on its
read timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent

from http_apps.websocket.frames import (
    DEFAULT_FRAGMENT_LIMIT,
    Failure,
    Message,
    PeerClosed,
    WebSocketConnection,
)
from http_apps.websocket.session import WebSocketC2SSession, WebSocketTransport
from xmpp.errors import StreamError
from xmpp.listeners import FLUSH_ON_CLOSE_TIMEOUT, READ_SIZE, SocketTransport

if TYPE_CHECKING:
    from xmpp.c2s import C2SServices

log = logging.getLogger(__name__)

#: Prosody's network_settings.read_timeout: a silent connection is pinged after it.
DEFAULT_KEEPALIVE = 840
#: Prosody's c2s_close_timeout: how long our <close/> waits for the client's close.
DEFAULT_CLOSE_TIMEOUT = 5
DEFAULT_PAGE_TEXT = ("It works! Now point your WebSocket client to this URL to connect "
                     "to Vireo.")


@dataclass(frozen=True)
class WebSocketOptions:
    """mod_websocket's options (global section, as in Prosody), with Prosody's defaults."""

    stanza_size_limit: int
    frame_buffer_limit: int
    frame_fragment_limit: int = DEFAULT_FRAGMENT_LIMIT
    consider_secure: bool = False
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    keepalive: float = DEFAULT_KEEPALIVE
    page_text: str = DEFAULT_PAGE_TEXT

    @classmethod
    def from_config(cls, config: Any, stanza_size_limit: int) -> WebSocketOptions:
        """Read the options once; `stanza_size_limit` is the global c2s_stanza_size_limit."""
        network = config.get("network_settings", None)
        keepalive = network.get("read_timeout") if isinstance(network, dict) else None
        if not isinstance(keepalive, int | float) or isinstance(keepalive, bool) \
                or keepalive < 1:
            keepalive = DEFAULT_KEEPALIVE
        return cls(
            stanza_size_limit=stanza_size_limit,
            frame_buffer_limit=config.get_int("websocket_frame_buffer_limit",
                                              2 * stanza_size_limit, min=1024),
            frame_fragment_limit=config.get_int("websocket_frame_fragment_limit",
                                                DEFAULT_FRAGMENT_LIMIT, min=1),
            consider_secure=bool(config.get_bool("consider_websocket_secure", False)),
            close_timeout=config.get_number("c2s_close_timeout", DEFAULT_CLOSE_TIMEOUT, min=0),
            keepalive=keepalive,
            page_text=str(config.get("websocket_get_response_text", DEFAULT_PAGE_TEXT)),
        )


class WebSocketService:
    """Every WebSocket session of one server, whichever host and path it came in on."""

    def __init__(self, c2s: C2SServices, options: WebSocketOptions,
                 serves: Callable[[str], bool]) -> None:
        """`serves(domain)` says whether WebSocket sessions may be opened to that host."""
        self.c2s = c2s
        self.options = options
        self.serves = serves
        self.sessions: set[WebSocketC2SSession] = set()

    def serve(self, sock: Any, *, peer: tuple[str, int], secure: bool) -> None:
        """Run one upgraded connection to its end; the caller closes the socket after."""
        options = self.options
        socket = SocketTransport(sock, peer, "websocket", secure)
        socket.reader = gevent.getcurrent()
        frames = WebSocketConnection(max_message_size=self.c2s.unauthenticated_stanza_size,
                                     max_buffer_size=options.frame_buffer_limit,
                                     max_fragments=options.frame_fragment_limit)
        transport = WebSocketTransport(socket, frames, secure=secure or options.consider_secure,
                                       close_timeout=options.close_timeout)
        session = WebSocketC2SSession(self.c2s, transport, self.serves)
        self.sessions.add(session)
        log.info("New WebSocket connection from %s (%s)", peer[0],
                 "secure" if transport.secure else "insecure")
        try:
            self._pump(sock, socket, frames, transport, session)
        finally:
            self.sessions.discard(session)
            session.connection_lost()
            socket.close()
            if socket.flusher is not None:
                socket.flusher.join(timeout=FLUSH_ON_CLOSE_TIMEOUT)

    def _pump(self, sock: Any, socket: SocketTransport, frames: WebSocketConnection,
              transport: WebSocketTransport, session: WebSocketC2SSession) -> None:
        sock.settimeout(self.options.keepalive)
        while socket.sock is not None:
            try:
                data = sock.recv(READ_SIZE)
            except TimeoutError:
                socket.write(frames.ping())
                socket.flush_now()
                continue
            except OSError:
                return
            if not data:
                return
            for event in frames.receive_data(data):
                if isinstance(event, Message):
                    session.message_received(event.data)
                elif isinstance(event, Failure):
                    log.debug("WebSocket from %s failed: %s", socket.peer[0], event.reason)
                    if event.condition is None:
                        transport.fail(event.code, event.reason)
                    else:
                        transport.close_code = event.code
                        session.close(StreamError(event.condition, event.reason))
                    return
                elif isinstance(event, PeerClosed):
                    # The client's close frame: the answer to ours, or it leaves without
                    # <close/>, which ends the session as a dropped connection would.
                    socket.write(frames.data_to_send())
                    return
            frames.max_message_size = session.message_size_limit
            pending = frames.data_to_send()
            if pending:
                socket.write(pending)
            socket.flush_now()

    def close_all(self, error: StreamError | None = None) -> None:
        """Close every session (server shutdown): the stream error, <close/>, close frame."""
        for session in list(self.sessions):
            session.close(error)
