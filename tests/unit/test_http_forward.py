"""ForwardPool (http_apps.forward) passes requests on over kept connections, and
never sends one twice: against a small HTTP/1.1 server that counts what it gets."""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from http_apps.forward import ForwardPool
from http_apps.plain import PlainRequest

TIMEOUT = 5.0


class Node(ThreadingHTTPServer):
    """Answers each POST with what it got; `after` says what it does next:
    "keep" the connection, "close" it once answered (still saying keep-alive),
    or "drop" it without answering."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.after = "keep"
        self.connections = 0
        self.requests: list[tuple[str, str | None, str | None, bytes]] = []
        self.closed = threading.Semaphore(0)  # released as each connection ends

    def shutdown_request(self, request: object) -> None:
        super().shutdown_request(request)
        self.closed.release()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Node

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, self.headers["Host"],
                                     self.headers["X-Vireo-Forwarded"], body))
        if self.server.after == "drop":
            self.close_connection = True
            return
        answer = b"<body>" + body + b"</body>"
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.close_connection = self.server.after == "close"

    def log_message(self, *_args: object) -> None:
        pass


@contextlib.contextmanager
def running_node() -> Iterator[Node]:
    server = Node()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def node() -> Iterator[Node]:
    with running_node() as server:
        yield server


def request(body: bytes) -> tuple[PlainRequest, bytes]:
    return PlainRequest(method="POST", script_name="/http-bind", path="", query="",
                        host="example.com", content_type="text/xml",
                        content_length=len(body), origin=None, remote_addr="192.0.2.1",
                        peer="192.0.2.1", secure=False, forwarded=False), body


def test_requests_to_one_node_go_over_one_kept_connection(node):
    pool = ForwardPool()
    for n in range(5):
        answer = pool.pass_on(node.url, *request(b"r%d" % n), TIMEOUT)
        assert answer == (200, "text/xml", b"<body>r%d</body>" % n)
    assert node.connections == 1
    assert node.requests[0] == ("/http-bind", "example.com", "1", b"r0")
    pool.close()


def test_a_connection_the_node_closed_while_idle_is_not_used(node):
    pool = ForwardPool()
    node.after = "close"
    pool.pass_on(node.url, *request(b"first"), TIMEOUT)
    assert node.closed.acquire(timeout=TIMEOUT)
    node.after = "keep"
    assert pool.pass_on(node.url, *request(b"second"), TIMEOUT)[2] == b"<body>second</body>"
    assert [body for *_, body in node.requests] == [b"first", b"second"]
    assert node.connections == 2


def test_a_request_the_node_got_is_not_sent_again_when_its_answer_is_lost(node):
    pool = ForwardPool()
    pool.pass_on(node.url, *request(b"first"), TIMEOUT)
    node.after = "drop"
    with pytest.raises((OSError, http.client.HTTPException)):
        pool.pass_on(node.url, *request(b"not idempotent"), TIMEOUT)
    assert [body for *_, body in node.requests] == [b"first", b"not idempotent"]
    assert pool.idle.get(node.url) == []


def test_a_connection_idle_too_long_is_closed_rather_than_used(node):
    now = [0.0]
    pool = ForwardPool(max_idle=10.0, clock=lambda: now[0])
    pool.pass_on(node.url, *request(b"first"), TIMEOUT)
    now[0] = 11.0
    pool.pass_on(node.url, *request(b"second"), TIMEOUT)
    assert node.connections == 2
    assert node.closed.acquire(timeout=TIMEOUT)  # the old one, closed by the pool
    pool.close()


def test_connections_beyond_the_idle_bound_are_closed_once_answered(node):
    pool = ForwardPool(idle_per_node=2)
    taken = [pool.take(node.url) for _ in range(3)]
    assert taken == [None, None, None]
    connections = [http.client.HTTPConnection("127.0.0.1", node.server_address[1])
                   for _ in range(3)]
    for connection in connections:
        connection.connect()
        pool.put_back(node.url, connection)
    assert [kept for kept, _since in pool.idle[node.url]] == connections[:2]
    assert connections[2].sock is None
    pool.close()


def test_connections_to_a_node_nobody_asks_for_again_are_closed_in_time(node):
    """A node that restarted takes requests at a new URL: what was kept for
    the old one is closed once idle too long, as requests go to the new one."""
    now = [0.0]
    pool = ForwardPool(max_idle=10.0, clock=lambda: now[0])
    pool.pass_on(node.url, *request(b"first"), TIMEOUT)
    with running_node() as other:
        now[0] = 11.0
        pool.pass_on(other.url, *request(b"elsewhere"), TIMEOUT)
        assert node.url not in pool.idle
        assert node.closed.acquire(timeout=TIMEOUT)
        pool.close()
