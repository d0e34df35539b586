"""XMPP over WebSocket (RFC 7395): the c2s session machine running on a WebSocket connection.

A WebSocket client is a c2s client like any other: the same SASL, binding,
roster, presence and routing. Only the carriage differs: the session is
unframed (xmpp.c2s.C2SSession.framed is False: no <stream:stream> tags and no
STARTTLS), each text message carries one element (framing.py), and each write
of the session machine, always one whole element, leaves as one text message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from http_apps.websocket.frames import NORMAL, WebSocketConnection
from http_apps.websocket.framing import (
    CLOSE,
    CLOSE_TAG,
    OPEN,
    declare_stream_prefix,
    open_attrs,
    open_element,
    parse_message,
)
from xmpp.c2s import C2SSession
from xmpp.errors import StreamError

if TYPE_CHECKING:
    from xmpp.c2s import C2SServices
    from xmpp.listeners import SocketTransport


class WebSocketTransport:
    """The c2s session's view of its WebSocket connection (xmpp.c2s.Transport).

    Frames go out through a SocketTransport (queued writes, one send per read
    handled). `close()` is the end of the XMPP stream: <close/>, then our close
    frame with `close_code`; the peer's close frame is awaited for `close_timeout`
    seconds before the socket closes anyway.
    """

    listener = "websocket"

    def __init__(self, socket: SocketTransport, frames: WebSocketConnection, *,
                 secure: bool, close_timeout: float) -> None:
        self.socket = socket
        self.frames = frames
        self.peer = socket.peer
        self.secure = secure
        self.close_timeout = close_timeout
        self.close_code = NORMAL

    def write(self, data: bytes) -> None:
        frame = self.frames.send_message(declare_stream_prefix(data))
        if frame:
            self.socket.write(frame)

    def start_tls(self) -> None:
        """Never asked: unframed sessions offer no STARTTLS (TLS is the https port's)."""

    def close(self) -> None:
        self.write(CLOSE)
        self.socket.write(self.frames.close(self.close_code))
        self.socket.call_later(self.close_timeout, self.socket.close)

    def fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket connection (RFC 6455 7.1.7): our close frame, no XMPP goodbye."""
        frame = self.frames.close(code, reason)
        if frame:
            self.socket.write(frame)
        self.socket.close()

    def call_later(self, seconds: float, callback: Callable[[], Any]) -> None:
        self.socket.call_later(seconds, callback)


class WebSocketC2SSession(C2SSession):
    """A c2s session carried by WebSocket: `message_received` takes each text message."""

    framed = False
    transport: WebSocketTransport

    def __init__(self, services: C2SServices, transport: WebSocketTransport,
                 serves: Callable[[str], bool]) -> None:
        """`serves(domain)` says whether that host has mod_websocket loaded."""
        super().__init__(services, transport)
        self.serves = serves

    @property
    def message_size_limit(self) -> int:
        """The largest message taken now: small until authenticated, as on TCP."""
        if not self.authenticated:
            return self.services.unauthenticated_stanza_size
        return self.services.stanza_size_limit(self.host)

    def message_received(self, data: bytes) -> None:
        """One text message: <open/> (or a restart), <close/>, or an element of the stream."""
        if self.closed:
            return
        try:
            element = parse_message(data, self.message_size_limit)
            if element is None:
                return  # whitespace: a keepalive
            if element.tag == OPEN:
                self.stream_opened(open_attrs(element))
            elif element.tag == CLOSE_TAG:
                self.close()  # answered with our <close/> (RFC 7395 3.6)
            elif not self.header_sent:
                raise StreamError("bad-format", "The stream begins with <open/>")
            else:
                self.handle_element(element)
        except StreamError as error:
            self.close(error)

    def stream_opened(self, attrs: dict[str, str]) -> None:
        to = attrs.get("to", "").strip().lower()
        host = self.services.hosts.get(to)
        if self.host is None and host is not None and not host.is_component \
                and not self.serves(to):
            self._send_header(None)
            raise StreamError("host-unknown", "No WebSocket service for " + to)
        super().stream_opened(attrs)

    def _send_header(self, host: str | None) -> None:
        self.header_sent = True
        self.transport.write(open_element(from_=host, stream_id=self.stream_id))
