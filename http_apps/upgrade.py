"""HTTP/1.1 Upgrade (RFC 9110 7.8): answer 101 and hand the connection to another protocol.

A route answering 101 calls `start_response` as for any answer (the middlewares
add their headers, CORS included) and returns `SwitchedProtocols`: when the
server iterates that body, the 101 head goes out and the new protocol runs on
the connection's socket until it is over; then the server closes the connection.
Works under our pywsgi server (http_apps.server) and gunicorn's gevent worker,
each of which puts the connection's socket in the environ. Elsewhere (Flask's
test client) there is no socket: `connection_socket` is None.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

#: The environ key of the connection's socket, set by http_apps.server.
SOCKET = "vireo.socket"
#: The environ key of a callable saying whether bytes past the request head are in already.
EARLY_DATA = "vireo.early_data"
_GUNICORN_SOCKET = "gunicorn.socket"


def connection_socket(environ: dict) -> Any:
    """The socket under this request, or None when the server does not give it."""
    return environ.get(SOCKET) or environ.get(_GUNICORN_SOCKET)


def early_data(environ: dict) -> bool:
    """Whether the client sent more than its request before any answer (it must wait
    for the 101). Only our pywsgi server can tell; under gunicorn this says False."""
    check = environ.get(EARLY_DATA)
    return bool(check and check())


class SwitchedProtocols:
    """The body of a 101 answer: iterating it sends the head, then runs `run()`."""

    def __init__(self, write: Callable[[bytes], Any], run: Callable[[], None]) -> None:
        """`write` is what `start_response` returned; `run` serves the connection."""
        self.write = write
        self.run = run

    def __iter__(self) -> Iterator[bytes]:
        owner = getattr(self.write, "__self__", None)
        # Only a process gunicorn serves has loaded gunicorn (2.4 MiB of imports the
        # others need not pay for).
        gunicorn_wsgi = sys.modules.get("gunicorn.http.wsgi")
        if gunicorn_wsgi is not None and isinstance(owner, gunicorn_wsgi.Response):
            # COMPAT: gunicorn 23 would frame a 101 as chunked (it exempts only 204 and
            # 304) and wait for another request on the connection afterwards.
            owner.chunked = False
            owner.force_close()
        self.write(b"")  # the head, now: the new protocol speaks first or next
        self.run()
        return iter(())
