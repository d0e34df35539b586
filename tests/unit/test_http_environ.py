"""The request head as VireoHandler reads it gives pywsgi's own answer: the same environ,
framing and keep-alive decision, and the same refusals (its parsing is done in fewer
steps for speed, issue 20)."""

from __future__ import annotations

import io

import gevent
import pytest
from gevent.pywsgi import Input, WSGIHandler

from http_apps.server import HttpServer, VireoHandler
from http_apps.upgrade import EARLY_DATA, SOCKET

PEER = ("127.0.0.1", 40000)
SERVER = HttpServer(PEER, lambda environ, start_response: [], service="http")
#: Keys only VireoHandler adds, and the input stream (compared by what it reads).
OWN_KEYS = {SOCKET, EARLY_DATA, "wsgi.file_wrapper", "wsgi.input"}


class _Socket:
    def settimeout(self, _timeout: float) -> None:
        pass

    def setsockopt(self, *_args: object) -> None:
        pass


def _read(handler_class: type, head: bytes) -> tuple:
    handler = handler_class(_Socket(), PEER, SERVER, io.BufferedReader(io.BytesIO(head)))
    handler._head_deadline = gevent.Timeout(SERVER.head_timeout)  # set by handle()
    handler.requestline = handler.read_requestline()
    handler.read_request(handler.requestline)
    environ = handler.get_environ()
    stream = environ["wsgi.input"]
    reads = ((stream.content_length, stream.chunked_input, stream.socket is not None)
             if isinstance(stream, Input) else type(stream).__name__)
    fields = {key: value for key, value in environ.items() if key not in OWN_KEYS}
    return (fields, reads, handler.command, handler.path, handler.request_version,
            handler.content_length, handler.close_connection)


HEADS = [
    b"GET /a%20b/%C3%A9?x=1&y=%2F HTTP/1.1\r\nHost: example.com\r\nX-Twice: 1\r\n"
    b"x-twice: 2\r\nCookie: a=1\r\nCookie: b=2\r\nX_Under: dropped\r\n"
    b"Content-Type: text/plain\r\nAccept:  */*  \r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"PUT /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/0.9\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\nOrigin: https://web.example\r\n\r\n",
]


@pytest.mark.parametrize("head", HEADS)
def test_a_head_reads_as_pywsgi_reads_it(head):
    assert _read(VireoHandler, head) == _read(WSGIHandler, head)


@pytest.mark.parametrize("head", [
    b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET / HTTP/0.8\r\n\r\n",
    b"POST /\r\n",
    b"GET / HTTP/1.1 extra\r\n\r\n",
    b"GET\r\n",
])
def test_a_head_pywsgi_refuses_is_refused(head):
    with pytest.raises(ValueError):
        _read(WSGIHandler, head)
    with pytest.raises(ValueError):
        _read(VireoHandler, head)
