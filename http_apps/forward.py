"""Passing an HTTP request on to the cluster node that holds what it is for
(xmpp.ownership): the same method, path, Host and body, marked forwarded so
that node answers it whatever it finds.

Requests go over keep-alive connections kept per node (`ForwardPool`): a BOSH
client sends a request for every poll, and a new TCP connection for each one
cost the two nodes more than passing the request on itself. A request is not
sent twice: a BOSH request is not idempotent (its rid moves the session on), so
one is only tried again, on a new connection, when the kept one failed before
the whole request was written to it (the other node cannot have answered a
request it did not get whole).
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from xmpp.ownership import FORWARDED_HEADER

if TYPE_CHECKING:
    from http_apps.plain import PlainRequest

#: The WSGI environ key of the header.
FORWARDED_ENVIRON = "HTTP_" + FORWARDED_HEADER.upper().replace("-", "_")
#: Idle connections kept per node; more are closed once their request is answered.
IDLE_PER_NODE = 16
#: Seconds a kept connection may idle before it is closed rather than used: well
#: below the other node's keep-alive timeout (http_apps.server.IDLE_TIMEOUT), so
#: that node never closes one just as a request is sent on it.
MAX_IDLE = 60.0

#: (status, content type, body) of an answer.
Answered = tuple[int, str, bytes]


def was_forwarded(environ: dict) -> bool:
    return FORWARDED_ENVIRON in environ


class ForwardPool:
    """Keep-alive connections to the nodes requests are passed on to, by base URL.

    Each connection serves one request at a time: it is taken out of the pool
    for the request and put back once the answer is read whole. No lock is
    needed: taking and putting back never yield to another greenlet.
    """

    def __init__(self, *, idle_per_node: int = IDLE_PER_NODE, max_idle: float = MAX_IDLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_per_node = idle_per_node
        self.max_idle = max_idle
        self.clock = clock
        # base URL -> (connection, when it was put back), the newest last
        self.idle: dict[str, list[tuple[http.client.HTTPConnection, float]]] = {}
        self.swept = clock()

    def pass_on(self, url: str, request: PlainRequest, body: bytes,
                timeout: float) -> Answered:
        """The answer node `url` gives; OSError or http.client.HTTPException
        when it cannot be had (the node is gone)."""
        method, path, headers = forwarded_request(url, request)
        kept = self.take(url)
        if kept is not None and written_whole(kept, method, path, body, headers, timeout):
            return self.answer(url, kept)
        connection = new_connection(url, timeout)
        try:
            connection.request(method, path, body, headers)
        except BaseException:
            connection.close()
            raise
        return self.answer(url, connection)

    def take(self, url: str) -> http.client.HTTPConnection | None:
        """A kept connection to `url` still open, or None; the stale ones met are closed."""
        idle = self.idle.get(url)
        now = self.clock()
        while idle:
            connection, since = idle.pop()
            if now - since <= self.max_idle and still_open(connection):
                return connection
            connection.close()
        return None

    def answer(self, url: str, connection: http.client.HTTPConnection) -> Answered:
        """The answer read whole from `connection`, which is kept if it may serve again."""
        try:
            response = connection.getresponse()
            answered = (response.status, response.getheader("Content-Type", ""),
                        response.read())
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self.put_back(url, connection)
        return answered

    def put_back(self, url: str, connection: http.client.HTTPConnection) -> None:
        now = self.clock()
        if now - self.swept > self.max_idle:
            self.sweep(now)
        idle = self.idle.setdefault(url, [])
        if len(idle) >= self.idle_per_node:
            connection.close()
            return
        idle.append((connection, now))

    def sweep(self, now: float) -> None:
        """Close the connections idle too long, to any node: a node that restarted
        takes requests at a new URL, and nothing asks for the old one again."""
        self.swept = now
        for url, idle in list(self.idle.items()):
            fresh = []
            for connection, since in idle:
                if now - since <= self.max_idle:
                    fresh.append((connection, since))
                else:
                    connection.close()
            if fresh:
                self.idle[url] = fresh
            else:
                del self.idle[url]

    def close(self) -> None:
        """Close every kept connection."""
        idle, self.idle = self.idle, {}
        for kept in idle.values():
            for connection, _since in kept:
                connection.close()


def forwarded_request(url: str, request: PlainRequest) -> tuple[str, str, dict[str, str]]:
    """(method, path with query, header fields) of `request` passed on to `url`."""
    path = quote(request.script_name + request.path)
    if request.query:
        path += "?" + request.query
    headers = {FORWARDED_HEADER: "1",
               "Host": request.host if request.host is not None else urlsplit(url).netloc}
    if request.content_type:
        headers["Content-Type"] = request.content_type
    return request.method or "POST", path, headers


def new_connection(url: str, timeout: float) -> http.client.HTTPConnection:
    target = urlsplit(url)
    return http.client.HTTPConnection(target.hostname or "", target.port, timeout=timeout)


def written_whole(connection: http.client.HTTPConnection, method: str, path: str,
                  body: bytes, headers: dict[str, str], timeout: float) -> bool:
    """Write the request on kept `connection`; False when it broke before all of
    the request was written (it is closed then, and the request may go on a new one)."""
    try:
        connection.sock.settimeout(timeout)
        connection.request(method, path, body, headers)
    except (OSError, http.client.HTTPException):
        connection.close()
        return False
    except BaseException:
        connection.close()
        raise
    return True


def still_open(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle kept connection may carry a request: anything to read while
    idle means the other node closed it (or sent what nobody asked for)."""
    sock = connection.sock
    if sock is None:
        return False
    sock.settimeout(0.0)  # a look, not a wait (written_whole sets the request's timeout)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False
