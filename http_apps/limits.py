"""Request body size limits (RFC 9110 15.5.14, 413): Prosody's `http_max_content_size`.

A body whose Content-Length is over the limit is refused before any of it is
read; a body of unknown length (chunked) is cut off with 413 once past it. The
Flask apps apply this before each request (http_apps.flask_host), plain WSGI
routes (http_apps.plain) in front of their handlers; both then read the body as
werkzeug would.
"""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wsgi import get_content_length


class _CappedInput:
    """A request body without Content-Length that raises 413 past `limit` bytes.

    werkzeug stops such a stream at the limit without an error, which would hand
    routes a silently truncated body.
    """

    PIECE = 65536

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.seen = 0

    def _counted(self, data: bytes) -> bytes:
        self.seen += len(data)
        if self.seen > self.limit:
            raise RequestEntityTooLarge()
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self._counted(self.stream.read(size))
        pieces = []
        while piece := self._counted(self.stream.read(self.PIECE)):
            pieces.append(piece)
        return b"".join(pieces)

    def readline(self, size: int | None = -1) -> bytes:
        return self._counted(self.stream.readline(size))

    def __iter__(self):
        return iter(self.readline, b"")


def limit_body(environ: dict, limit: int) -> bool:
    """Hold the request body to `limit` bytes: RequestEntityTooLarge now when its
    Content-Length says more; for a body of unknown length, a `wsgi.input` raising
    it once past the limit (then True: readers must not apply a limit of their own).
    """
    length = get_content_length(environ)
    if length is not None:
        if length > limit:
            raise RequestEntityTooLarge()
        return False
    if environ.get("wsgi.input_terminated"):
        environ["wsgi.input"] = _CappedInput(environ["wsgi.input"], limit)
        return True
    return False


def read_body(environ: dict) -> bytes:
    """The whole request body, as werkzeug's `get_data()` reads it: Content-Length bytes,
    or all of a server-terminated input (chunked), or nothing. A body cut short
    is ClientDisconnected (400)."""
    length = get_content_length(environ)
    if length is not None:
        return read_length(environ["wsgi.input"], length)
    if environ.get("wsgi.input_terminated"):
        return environ["wsgi.input"].read()
    return b""


def read_length(stream: Any, length: int) -> bytes:
    """A body of `length` bytes from `stream`; ClientDisconnected (400) when cut short."""
    data = stream.read(length) if length else b""
    if len(data) < length:
        raise ClientDisconnected()
    return data
