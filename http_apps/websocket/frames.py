"""WebSocket frames (RFC 6455 section 5) for the XMPP subprotocol, with Prosody's limits.

Sans-I/O: `receive_data(bytes)` gives the events those bytes complete (whole
text messages, the peer's close, or a failure carrying the close code to send
and, for limits, the stream error condition); replies owed to the peer (a pong,
our close frame) wait in `data_to_send()`. The frame codec is wsproto's
(python-hyper, maintained, sans-I/O like our other cores): masking, opcodes,
control frames, UTF-8 validation and close codes are its job; the limits and
RFC 7395's text-only rule are ours.

Limits, each with its answer:
- a message (all its frames) over `max_message_size` (c2s_stanza_size_limit):
  <policy-violation/>, close code 1009;
- more than `max_buffer_size` bytes held for an unfinished message
  (websocket_frame_buffer_limit): <resource-constraint/>, 1009;
- a message in more than `max_fragments` frames (websocket_frame_fragment_limit):
  <resource-constraint/>, 1008;
- a binary message: 1003 (RFC 7395 section 3.2); invalid UTF-8: 1007; any other
  framing error (unmasked frame, reserved opcode or bits, fragmented control
  frame, bad close code): 1002.
Sizes are counted as payload arrives, so no more than the limit is ever held.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason

NORMAL = CloseReason.NORMAL_CLOSURE  # 1000
PROTOCOL_ERROR = CloseReason.PROTOCOL_ERROR  # 1002
UNSUPPORTED_DATA = CloseReason.UNSUPPORTED_DATA  # 1003
POLICY_VIOLATION = CloseReason.POLICY_VIOLATION  # 1008
MESSAGE_TOO_BIG = CloseReason.MESSAGE_TOO_BIG  # 1009

#: Prosody's default websocket_frame_fragment_limit.
DEFAULT_FRAGMENT_LIMIT = 8


@dataclass(frozen=True, slots=True)
class Message:
    """A complete text message, as UTF-8 bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer sent a close frame; ours (echoing its code) is in `data_to_send()`."""

    code: int


@dataclass(frozen=True, slots=True)
class Failure:
    """The peer broke a rule: close with `code`; `condition` is the stream error owed
    first (a limit was crossed while the XMPP stream can still be closed), or None
    when the connection is failed without one (a WebSocket protocol error)."""

    code: int
    reason: str
    condition: str | None = None


Event = Message | PeerClosed | Failure


class WebSocketConnection:
    """The server side of one WebSocket connection, after the opening handshake."""

    def __init__(self, *, max_message_size: int, max_buffer_size: int,
                 max_fragments: int = DEFAULT_FRAGMENT_LIMIT) -> None:
        # max_message_size may be changed between calls (raised after authentication).
        self.max_message_size = max_message_size
        self.max_buffer_size = max_buffer_size
        self.max_fragments = max_fragments
        self._ws = Connection(ConnectionType.SERVER)
        self._pieces: list[bytes] = []
        self._size = 0
        self._frames = 0
        self._outgoing = bytearray()
        self._failed = False

    @property
    def closed(self) -> bool:
        """Whether a close frame went out (ours or our echo) or the connection failed."""
        return self._failed or self._ws.state in (ConnectionState.LOCAL_CLOSING,
                                                  ConnectionState.CLOSED)

    def receive_data(self, data: bytes) -> list[Event]:
        """The events completed by `data`; nothing more after a Failure or PeerClosed."""
        if self._failed or self._ws.state is ConnectionState.CLOSED:
            return []
        self._ws.receive_data(data)
        events: list[Event] = []
        for event in self._ws.events():
            if isinstance(event, TextMessage):
                result = self._text(event)
            elif isinstance(event, Ping):
                self._outgoing += self._ws.send(event.response())
                continue
            elif isinstance(event, BytesMessage):
                result = self._fail(UNSUPPORTED_DATA, "Only text frames are supported, "
                                                      "RFC 7395 3.2")
            elif isinstance(event, CloseConnection):
                result = self._closed(event)
            else:  # an unsolicited pong: a keepalive, nothing to do
                continue
            if result is not None:
                events.append(result)
                if isinstance(result, Failure | PeerClosed):
                    break
        return events

    def _text(self, event: TextMessage) -> Event | None:
        piece = event.data.encode()
        self._size += len(piece)
        if self._size > self.max_message_size:
            return self._fail(MESSAGE_TOO_BIG, "Stanza too large", "policy-violation")
        if event.frame_finished and not event.message_finished:
            self._frames += 1
            if self._frames >= self.max_fragments:
                return self._fail(POLICY_VIOLATION, "Too many fragments", "resource-constraint")
        if not event.message_finished:
            if self._size > self.max_buffer_size:
                return self._fail(MESSAGE_TOO_BIG, "Frame buffer exceeded",
                                  "resource-constraint")
            self._pieces.append(piece)
            return None
        if self._pieces:
            self._pieces.append(piece)
            piece = b"".join(self._pieces)
            self._pieces.clear()
        self._size = self._frames = 0
        return Message(piece)

    def _closed(self, event: CloseConnection) -> Event:
        if self._ws.state is ConnectionState.REMOTE_CLOSING:
            # The peer's close frame: echo its code (RFC 6455 5.5.1).
            self._outgoing += self._ws.send(event.response())
            return PeerClosed(int(event.code))
        if self._ws.state is ConnectionState.CLOSED:
            return PeerClosed(int(event.code))  # the answer to our own close frame
        # wsproto reports a framing error as a close event while the connection is open.
        return self._fail(event.code, event.reason or "Protocol error")

    def _fail(self, code: int, reason: str, condition: str | None = None) -> Failure:
        self._failed = True
        self._pieces.clear()
        return Failure(int(code), reason, condition)

    def send_message(self, text: bytes) -> bytes:
        """A text frame carrying `text` (UTF-8); nothing once closing."""
        if self._ws.state is not ConnectionState.OPEN:
            return b""
        return self._ws.send(TextMessage(text.decode()))

    def ping(self) -> bytes:
        """A ping frame (Prosody's keepalive on a silent connection)."""
        if self._ws.state is not ConnectionState.OPEN:
            return b""
        return self._ws.send(Ping())

    def close(self, code: int = NORMAL, reason: str = "") -> bytes:
        """Our close frame, once; nothing if one went out already."""
        if self._ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return b""
        return self._ws.send(CloseConnection(int(code), reason or None))

    def data_to_send(self) -> bytes:
        """Replies owed to the peer (pongs, the echo of its close frame), then cleared."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data
