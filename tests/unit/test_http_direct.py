"""A plain route's BodyHandler (http_apps.plain) is served by the HTTP server without a
WSGI environ; over a socket its answers are those the same app gives through WSGI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.client import HTTPResponse
from pathlib import Path

import gevent.socket
import pytest
from gevent.pywsgi import WSGIHandler

from http_apps import build_wsgi_app
from http_apps import server as server_module
from http_apps.plain import BodyHandler, PlainRequest
from http_apps.provider import HttpProvider
from http_apps.server import COALESCE_SIZE, HttpServer
from tests.http_fixtures import HostClient, write_config
from xmpp.metrics import HTTP_RESPONSES

BASE = 'VirtualHost "example.com"\nVirtualHost "other.example"\n'


def echo(request: PlainRequest, body: bytes) -> tuple:
    """What the handler saw; a body "boom" is a bug in it (a 500 page)."""
    if body == b"boom":
        raise RuntimeError("secret internal detail")
    seen = repr((request.method, request.script_name, request.path, request.query,
                 request.host, request.content_type, request.content_length,
                 request.origin, request.remote_addr, request.peer, request.secure,
                 request.forwarded, body)).encode()
    return "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(seen))),
                      ("Access-Control-Allow-Origin", "https://own.example")], [seen]


def provider(**options) -> HttpProvider:
    return HttpProvider("app", "example.com", None, max_body_size=16,
                        wsgi_handlers={"POST": BodyHandler(echo)}, **options)


CONFIGS = [
    BASE,
    'access_control_allow_origins = { "https://web.example" }\n' + BASE,
    "http_cors_override = { app = { enabled = false } }\n" + BASE,
]
HEADERS = [
    {},
    {"Origin": "https://web.example"},
    {"Origin": "https://evil.example", "Content-Type": "text/xml"},
    {"X-Forwarded-For": "192.0.2.7, 198.51.100.2", "X-Forwarded-Proto": "https"},
    {"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "http", "X-Vireo-Forwarded": "1"},
]
REQUESTS = [
    (path, host, headers, body)
    for path in ("/app", "/app/", "/app?q=%2F", "/ap%70", "/app/more")
    for host in ("example.com", "EXAMPLE.com:5280", "other.example", "unknown.example")
    for headers in HEADERS
    for body in (b"x" * 12, b"x" * 30, b"boom")
]


def by_socket(port: int, path: str, host: str, headers: dict, body: bytes) -> tuple:
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=10)
    with sock:
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{fields}"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        response = HTTPResponse(sock, method="POST")
        response.begin()
        return (f"{response.status} {response.reason}", _fields(response.getheaders()),
                response.read())


def by_wsgi(client: HostClient, path: str, host: str, headers: dict, body: bytes) -> tuple:
    reply = client.open(path, method="POST", data=body,
                        headers={"Host": host, **headers})
    return reply.status, _fields(reply.headers.items()), reply.data


def _fields(pairs) -> list:
    # Fields the server adds: Date, and Connection closing after a 413.
    return sorted((name, value) for name, value in pairs if name not in ("Date", "Connection"))


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("global_", [False, True])
def test_answers_without_wsgi_are_those_through_wsgi(tmp_path: Path, config: str,
                                                      global_: bool) -> None:
    app = build_wsgi_app(write_config(tmp_path, config), [provider(global_=global_)])
    served_directly = []
    find = app.direct_route

    def recording_find(request: PlainRequest):
        route = find(request)
        if route is not None:
            served_directly.append(request.path)
        return route

    app.direct_route = recording_find
    client = HostClient(app)
    server = HttpServer(("127.0.0.1", 0), app, service="http")
    server.start()
    try:
        for path, host, headers, body in REQUESTS:
            counts = dict(HTTP_RESPONSES)
            direct = by_socket(server.port, path, host, headers, body)
            counted = {code: n - counts.get(code, 0) for code, n in HTTP_RESPONSES.items()
                       if n != counts.get(code, 0)}
            through_wsgi = by_wsgi(client, path, host, headers, body)
            assert direct == through_wsgi, (path, host, headers, body)
            assert counted == {direct[0].split()[0]: 1}
    finally:
        server.stop(timeout=1)
    # The handler's own path is served without WSGI (the rest falls back to it).
    assert {"/app", "/app/"} <= set(served_directly)


def parts(request: PlainRequest, body: bytes) -> tuple:
    """An answer in parts of a known number and no Content-Length, as a held BOSH
    request's; a body "big" asks for one over the size sent with the head."""
    if body == b"big":
        return "200 OK", [("Content-Type", "text/xml")], [b"x" * (COALESCE_SIZE + 1)]
    return "200 OK", [("Content-Type", "text/xml")], [b"<a", b"", b"/>" + body]


@contextmanager
def parts_server(tmp_path: Path) -> Iterator[Callable[..., HTTPResponse]]:
    """A server answering POST /app with `parts`, and `ask(body, version)`, which
    posts on one kept-alive connection and returns the answer, its head read."""
    app = build_wsgi_app(write_config(tmp_path, BASE), [HttpProvider(
        "app", "example.com", None, max_body_size=16,
        wsgi_handlers={"POST": BodyHandler(parts)})])
    server = HttpServer(("127.0.0.1", 0), app, service="http")
    server.start()
    sock = gevent.socket.create_connection(("127.0.0.1", server.port), timeout=10)

    def ask(body: bytes, version: str = "HTTP/1.1") -> HTTPResponse:
        sock.sendall(f"POST /app {version}\r\nHost: example.com\r\nConnection: keep-alive"
                     f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        response = HTTPResponse(sock, method="POST")
        response.begin()
        return response

    try:
        yield ask
    finally:
        sock.close()
        server.stop(timeout=1)


def test_a_small_answer_in_parts_leaves_whole_without_pywsgi_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with parts_server(tmp_path) as ask:
        big = ask(b"big")  # pywsgi's own path: head, then the body
        assert (big.status, big.getheader("Content-Length")) == (200, str(COALESCE_SIZE + 1))
        assert big.read() == b"x" * (COALESCE_SIZE + 1)
        monkeypatch.setattr(WSGIHandler, "_write_with_headers", None)  # not called again
        for body, version in ((b"1", "HTTP/1.1"), (b"22", "HTTP/1.0"), (b"", "HTTP/1.1")):
            response = ask(body, version)
            assert response.status == 200
            assert response.getheader("Content-Length") == str(4 + len(body))
            assert response.getheader("Date")
            if version == "HTTP/1.0":
                assert response.getheader("Connection") == "keep-alive"
            assert response.read() == b"<a/>" + body


def test_a_repeated_answer_head_is_checked_and_encoded_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with parts_server(tmp_path) as ask:
        assert ask(b"1").read() == b"<a/>1"

        def encoded_again(*_args):
            raise AssertionError("the same head encoded again")

        monkeypatch.setattr(server_module, "_encoded_headers", encoded_again)
        for body, version in ((b"22", "HTTP/1.1"), (b"333", "HTTP/1.0")):
            response = ask(body, version)
            assert response.status == 200
            assert response.getheader("Content-Type") == "text/xml"
            assert response.getheader("Content-Length") == str(4 + len(body))
            assert response.getheader("Date")
            assert response.getheader("Connection") == (
                "keep-alive" if version == "HTTP/1.0" else None)
            assert response.read() == b"<a/>" + body
