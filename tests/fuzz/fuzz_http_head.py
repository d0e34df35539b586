"""Fuzz target: the HTTP request head (http_apps/server.py on gevent's pywsgi), then the
trusted-proxy headers (http_apps/proxies.py), as a client's first bytes reach them.

Documented refusal: ValueError, which pywsgi's read_request documents for an
invalid request and which VireoHandler answers with 400, 431 or 501 (BadHead and
HeadTooLarge are ValueErrors). pywsgi itself turns any exception there into a
400, which would hide a bug: this target calls the steps directly.
"""

from __future__ import annotations

import io

import atheris

from tests.fuzz.harness import INSTRUMENTED, run

with atheris.instrument_imports(include=[*INSTRUMENTED, "gevent.pywsgi"]):
    import gevent
    from gevent.pywsgi import MAX_REQUEST_LINE

    from http_apps.proxies import TrustedProxies
    from http_apps.server import HttpServer, VireoHandler

REFUSALS = (ValueError,)
PEER = ("127.0.0.1", 40000)  # a trusted proxy, so its X-Forwarded-* are parsed


class _Socket:
    """What VireoHandler asks of a socket before it reads the head."""

    def settimeout(self, _timeout: float) -> None:
        pass

    def setsockopt(self, *_args: object) -> None:
        pass


def _environ_of(environ: dict, _start_response: object) -> dict:
    return environ


_SERVER = HttpServer(PEER, _environ_of, service="http")
_APP = TrustedProxies(_environ_of)


def read_head(data: bytes) -> dict | None:
    """The WSGI environ of the request head at the start of `data`, as VireoHandler reads
    it; None when there is no request line or it is too long (414). Raises ValueError."""
    handler = VireoHandler(_Socket(), PEER, _SERVER, io.BufferedReader(io.BytesIO(data)))
    handler._head_deadline = gevent.Timeout(_SERVER.head_timeout)  # set by handle()
    requestline = handler.read_requestline()
    if not requestline or len(requestline) >= MAX_REQUEST_LINE:
        return None
    handler.requestline = requestline
    assert handler.read_request(requestline) is True
    return _APP(handler.get_environ(), None)


def one_input(data: bytes) -> None:
    environ = read_head(data)
    assert environ is None or environ["REMOTE_ADDR"]


if __name__ == "__main__":
    run(one_input, REFUSALS, name="http_head", dictionary="http.dict")
