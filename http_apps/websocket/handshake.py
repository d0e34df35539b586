"""The opening handshake of RFC 6455 (section 4.2) for the `xmpp` subprotocol (RFC 7395 3.1).

Sans-I/O: `accept_headers(environ)` checks a WSGI request that asks for the
upgrade and gives the headers of the 101 answer, or raises `HandshakeError`
with the status to answer instead. As Prosody, a client that does not offer the
`xmpp` subprotocol gets 501.
"""

from __future__ import annotations

import base64
import binascii
import re

from wsproto.utilities import generate_accept_token

SUBPROTOCOL = "xmpp"
VERSION = "13"

_TOKEN_SEPARATORS = re.compile(r"[ \t]*,[ \t]*")


class HandshakeError(Exception):
    """A handshake refused with HTTP `status` (and extra response `headers`)."""

    def __init__(self, status: int, message: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def wants_upgrade(environ: dict) -> bool:
    """Whether this is a WebSocket handshake at all (Prosody: a GET with a key); anything
    else gets the endpoint's page."""
    return environ.get("REQUEST_METHOD") == "GET" and "HTTP_SEC_WEBSOCKET_KEY" in environ


def _tokens(value: str | None) -> set[str]:
    return {token.lower() for token in _TOKEN_SEPARATORS.split((value or "").strip()) if token}


def accept_headers(environ: dict) -> list[tuple[str, str]]:
    """The headers of the 101 answer to this handshake; HandshakeError when refused."""
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip() != VERSION:
        # RFC 6455 4.2.2: 426 with the versions we speak.
        raise HandshakeError(426, "Unsupported WebSocket version",
                             (("Sec-WebSocket-Version", VERSION),))
    if environ.get("SERVER_PROTOCOL", "") in ("HTTP/0.9", "HTTP/1.0"):
        raise HandshakeError(400, "WebSocket needs HTTP/1.1")
    if "websocket" not in _tokens(environ.get("HTTP_UPGRADE")) \
            or "upgrade" not in _tokens(environ.get("HTTP_CONNECTION")):
        raise HandshakeError(400, "Not a WebSocket upgrade request")
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid_key = False
    if not valid_key:
        raise HandshakeError(400, "Invalid Sec-WebSocket-Key")
    if SUBPROTOCOL not in _tokens(environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL")):
        raise HandshakeError(501, "This endpoint speaks the 'xmpp' WebSocket subprotocol only")
    return [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode()),
        ("Sec-WebSocket-Protocol", SUBPROTOCOL),
    ]
