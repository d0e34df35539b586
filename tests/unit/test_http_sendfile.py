"""The HTTP server's wsgi.file_wrapper: sendfile(2) on plain TCP, reads over TLS, ranges kept."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import gevent
import gevent.socket
import gevent.ssl
import pytest

from http_apps.server import HttpServer
from tests.certs import make_self_signed

SIZE = 3 * 1024 * 1024 + 11
FIRST, LENGTH = 1000, 2 * 1024 * 1024 + 7


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(SIZE)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.sendfile

    def counting(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        calls.append(count)
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", counting)
    return calls


def range_app(path: Path):
    """A 206 answer of LENGTH bytes from FIRST, through the server's file wrapper."""
    def app(environ, start_response):
        handle = open(path, "rb")  # noqa: SIM115 - closed by the server through the wrapper
        handle.seek(FIRST)
        start_response("206 Partial Content", [("Content-Length", str(LENGTH))])
        return environ["wsgi.file_wrapper"](handle, 64 * 1024)
    return app


def fetch(port: int, context: ssl.SSLContext | None = None) -> bytes:
    sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=10)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(b"GET /f HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        received = bytearray()
        while chunk := sock.recv(256 * 1024):
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206 ")
    assert f"Content-Length: {LENGTH}".encode() in head
    return body


def test_plain_tcp_sends_the_range_with_sendfile(data_file, sendfile_calls):
    path, data = data_file
    server = HttpServer(("127.0.0.1", 0), range_app(path), service="http")
    server.start()
    try:
        body = gevent.spawn(fetch, server.port).get(timeout=30)
    finally:
        server.stop()
    assert body == data[FIRST:FIRST + LENGTH]
    assert sendfile_calls and sendfile_calls[0] == LENGTH


def test_tls_reads_the_range_without_sendfile(tmp_path, data_file, sendfile_calls):
    path, data = data_file
    cert, key = make_self_signed(tmp_path / "certs", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = HttpServer(("127.0.0.1", 0), range_app(path), service="https", ssl_context=context)
    server.start()
    client = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # cooperative, as the server
    client.load_verify_locations(cert)
    try:
        body = gevent.spawn(fetch, server.port, client).get(timeout=30)
    finally:
        server.stop()
    assert body == data[FIRST:FIRST + LENGTH]
    assert sendfile_calls == []
