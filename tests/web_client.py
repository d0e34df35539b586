"""A small HTTP client for the web pages' tests: one keep-alive connection,
cookies kept by hand (so a test can also replay them), forms read from pages."""

from __future__ import annotations

import html
import http.client
import io
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

from tests.integration.server_fixture import ServerProcess, make_server

TIMEOUT = 10.0
#: The web pages' tests' accounts; boss is the admin.
USERS = {"boss": "boss-password", "ann": "ann-password"}


@contextmanager
def web_server(directory, modules: tuple[str, ...], extra: str = "",
               host_extra: str = "", database: str = "") -> Iterator[ServerProcess]:
    """A running server with http and https ports, `USERS` and boss@localhost as admin
    (`database`: config lines naming its database, as make_server's)."""
    server = make_server(directory, modules=modules, http=True, host_extra=host_extra,
                         database=database, extra='admins = { "boss@localhost" }\n' + extra)
    server.create_users(USERS)
    server.start()
    try:
        yield server
    finally:
        assert server.stop() == 0


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    text: str

    def field(self, name: str) -> str | None:
        """The value of the first input named `name` on the page."""
        found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', self.text)
        return html.unescape(found.group(1)) if found else None


class WebClient:
    def __init__(self, port: int, *, https: bool = False, host: str = "localhost",
                 source: str = "127.0.0.1") -> None:
        if https:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT,
                                                          context=context,
                                                          source_address=(source, 0))
        else:
            self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT,
                                                         source_address=(source, 0))
        self.host = host
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, fields: dict[str, str] | None = None,
                cookies: dict[str, str] | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Page:
        headers = {"Host": self.host, **(headers or {})}
        jar = self.cookies if cookies is None else cookies
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        if fields is not None:
            body = urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        for header in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or morsel["expires"].startswith("Thu, 01 Jan 1970"):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return Page(response.status, dict(response.headers.items()), text)

    def get(self, path: str) -> Page:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str], **kwargs) -> Page:
        return self.request("POST", path, fields, **kwargs)

    def post_many(self, path: str, fields: dict[str, str], count: int,
                  batch: int = 100) -> list[Page]:
        """`count` identical form POSTs, pipelined `batch` at a time on the
        keep-alive connection (a flood without a round trip per request)."""
        if self.connection.sock is None:
            self.connection.connect()
        sock = self.connection.sock
        body = urlencode(fields).encode()
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        request = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                   f"Content-Type: application/x-www-form-urlencoded\r\n"
                   f"Content-Length: {len(body)}\r\n"
                   + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode() + body
        reader = _SharedReader(socket.SocketIO(sock, "rb"))
        pages = []
        for start in range(0, count, batch):
            size = min(batch, count - start)
            sock.sendall(request * size)
            for _ in range(size):
                response = http.client.HTTPResponse(_Source(reader), method="POST")
                response.begin()
                text = response.read().decode("utf-8", "replace")
                pages.append(Page(response.status, dict(response.headers.items()), text))
        return pages

    def close(self) -> None:
        self.connection.close()


class _SharedReader(io.BufferedReader):
    """One buffer for all the responses of a pipeline: bytes read ahead stay for the
    next response (http.client closes each response's file when done)."""

    def close(self) -> None:
        pass


class _Source:
    """What http.client.HTTPResponse reads from: the shared buffer."""

    def __init__(self, reader: _SharedReader) -> None:
        self.reader = reader

    def makefile(self, *_args, **_kwargs) -> _SharedReader:
        return self.reader


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
