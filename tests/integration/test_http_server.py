"""The HTTP and HTTPS listeners on real loopback sockets: SNI, limits, bad clients."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from http.client import HTTPResponse

import pytest

from tests.certs import make_self_signed
from tests.http_fixtures import connect, http_request, http_server_process
from tests.integration.server_fixture import free_port

HOSTS = ("example.com", "jabber.example")
CONFIG = """
statistics = "internal"
http_max_content_size = 1048576
http_ports = { 0 }
http_interfaces = { "127.0.0.1", "::1" }
https_ports = { 0 }
https_interfaces = { "127.0.0.1" }
VirtualHost "example.com"
VirtualHost "jabber.example"
"""
HEAD_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    return {host: make_self_signed(directory / "certs", host) for host in HOSTS}


@pytest.fixture(scope="module")
def server(certs):
    directory = next(iter(certs.values()))[0].parents[1]
    with http_server_process(directory, CONFIG, {"head_timeout": HEAD_TIMEOUT,
                                                         "idle_timeout": IDLE_TIMEOUT}) as running:
        yield running


def get_json(sock, path="/probe", host="example.com", **kwargs):
    response = http_request(sock, "GET", path, host, **kwargs)
    assert response.status == 200, response.read()
    return json.loads(response.read())


def tls_client(port, server_hostname, cafile=None):
    if cafile is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=str(cafile))
    return context.wrap_socket(connect(port), server_hostname=server_hostname)


def der(cert_path):
    return ssl.PEM_cert_to_DER_cert(cert_path.read_text())


def test_http_over_ipv4_and_ipv6(server):
    with connect(server.ports["http"][0]) as sock:
        seen = get_json(sock)
    assert seen["remote_addr"] == "127.0.0.1"
    assert seen["secure"] is False
    assert seen["host"] == "example.com"
    with connect(server.ports["http"][1], source="::1", address="::1") as sock:
        assert get_json(sock, host="jabber.example")["remote_addr"] == "::1"


def test_keep_alive_serves_several_requests(server):
    with connect(server.http_port) as sock:
        for host in (*HOSTS, *HOSTS):
            assert get_json(sock, host=host)["host"] == host


def test_https_serves_each_host_its_certificate_by_sni(server, certs):
    for host, (cert, _key) in certs.items():
        with tls_client(server.https_port, host, cafile=cert) as sock:
            assert sock.getpeercert(binary_form=True) == der(cert)
            seen = get_json(sock, host=host)
        assert seen["secure"] is True
        assert seen["host"] == host


def test_https_without_sni_gets_a_default_certificate(server, certs):
    with tls_client(server.https_port, None) as sock:
        assert sock.getpeercert(binary_form=True) in {der(c) for c, _ in certs.values()}
        assert get_json(sock)["secure"] is True


def test_no_host_header_is_400(server):
    with connect(server.http_port) as sock:
        sock.sendall(b"GET /probe HTTP/1.0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")


def test_unknown_host_is_404(server):
    with connect(server.http_port) as sock:
        response = http_request(sock, "GET", "/probe", "other.example")
        assert response.status == 404
        assert b"Unknown host" in response.read()


def test_oversized_headers_are_431(server):
    with connect(server.http_port) as sock:
        response = http_request(sock, "GET", "/probe", headers={"X-Big": "a" * 11000})
        assert response.status == 431
        assert response.getheader("Content-Type").startswith("text/html")
    # Many small headers add up the same way.
    with connect(server.http_port) as sock:
        headers = {f"X-H{i}": "b" * 100 for i in range(99)}
        assert http_request(sock, "GET", "/probe", headers=headers).status == 431


def test_overlong_request_line_is_414(server):
    with connect(server.http_port) as sock:
        assert http_request(sock, "GET", "/probe/" + "a" * 9000).status == 414


def test_oversized_body_is_413_without_reading_it(server):
    with connect(server.http_port) as sock:
        sock.sendall(b"POST /probe/upload HTTP/1.1\r\nHost: example.com\r\n"
                     b"Content-Length: 10485761\r\n\r\n")
        response = read_response(sock)
        assert response.status == 413
        assert response.getheader("Connection") == "close"


def read_response(sock):
    response = HTTPResponse(sock, method="POST")
    response.begin()
    return response


def test_body_within_limit_is_read(server):
    with connect(server.http_port) as sock:
        response = http_request(sock, "POST", "/probe/upload", body=b"x" * 100000)
        assert json.loads(response.read()) == {"size": 100000}


def chunked(size, piece=65536):
    body = b"".join(b"%x\r\n%s\r\n" % (n, b"x" * n)
                    for n in [piece] * (size // piece) + [size % piece] if n)
    return (b"POST /probe/upload HTTP/1.1\r\nHost: example.com\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")


def test_chunked_body_within_limit_is_read(server):
    with connect(server.http_port) as sock:
        sock.sendall(chunked(300000))
        response = read_response(sock)
        assert json.loads(response.read()) == {"size": 300000}


def test_chunked_body_over_limit_is_413_not_truncated(server):
    with connect(server.http_port) as sock:
        sock.sendall(chunked(1048577))
        assert read_response(sock).status == 413


def test_broken_requests_leave_the_server_serving(server):
    for garbage in (b"\x00\x01\x02 nonsense\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                    b"POST /probe/upload HTTP/1.1\r\nHost: example.com\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"):
        with connect(server.http_port) as sock:
            sock.sendall(garbage)
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    with connect(server.https_port) as sock:  # plain text to the TLS port
        sock.sendall(b"GET /probe HTTP/1.1\r\nHost: example.com\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            assert not sock.recv(100).startswith(b"HTTP/")
    with connect(server.http_port) as sock:
        assert get_json(sock)["host"] == "example.com"
    with tls_client(server.https_port, "example.com") as sock:
        assert get_json(sock)["secure"] is True


@pytest.mark.parametrize(("framing", "status"), [
    (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
    (b"Content-Length: 1_0\r\n", 400),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 400),
    (b"Transfer-Encoding: gzip\r\n", 501),
])
def test_ambiguous_body_framing_is_refused_and_closed(server, framing, status):
    # What follows would be a second request if the body were framed another way.
    smuggled = b"GET /probe/hello HTTP/1.1\r\nHost: example.com\r\n\r\n"
    with connect(server.http_port) as sock:
        sock.sendall(b"POST /probe/upload HTTP/1.1\r\nHost: example.com\r\n" + framing
                     + b"\r\n" + b"0\r\n\r\n" + smuggled)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert answer.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close" in answer


def test_slow_client_is_timed_out(server):
    with connect(server.http_port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /probe HTTP/1.1\r\nHost: example.com\r\n")
        answer = sock.recv(100)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert HEAD_TIMEOUT * 0.8 < waited < HEAD_TIMEOUT + 5


def test_idle_connection_is_closed(server):
    with connect(server.http_port) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""
    assert IDLE_TIMEOUT * 0.8 < time.monotonic() - started < IDLE_TIMEOUT + 5


def test_idle_keep_alive_connection_waits_the_idle_timeout_not_the_head_deadline(server):
    with connect(server.http_port) as sock:
        for _ in range(2):
            assert get_json(sock)["host"] == "example.com"
        started = time.monotonic()
        assert sock.recv(100) == b""
        waited = time.monotonic() - started
    # Longer than the head deadline: an idle keep-alive client is not a slow one.
    assert HEAD_TIMEOUT + 0.5 < waited < IDLE_TIMEOUT + 5


def test_metrics_on_the_listener(server):
    with connect(server.http_port) as sock:
        # A request counted first: alone (or first in its xdist worker) the
        # scrape would otherwise find no request to report yet.
        http_request(sock, "GET", "/metrics", "anything.example").read()
        response = http_request(sock, "GET", "/metrics", "anything.example")
        text = response.read().decode()
    assert response.status == 200
    assert 'vireo_connections{listener="http"}' in text
    assert "vireo_http_requests_total" in text
    with connect(server.http_port, source="127.0.0.2") as sock:
        assert http_request(sock, "GET", "/metrics").status == 403


def test_missing_certificate_closes_only_https(tmp_path):
    https_port = free_port()
    text = CONFIG.replace("https_ports = { 0 }", f"https_ports = {{ {https_port} }}")
    with http_server_process(tmp_path, text) as running:
        assert running.ports["https"] == []
        with connect(running.http_port) as sock:
            assert get_json(sock)["host"] == "example.com"
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", https_port), 2):
            pass
        assert ("Error binding encrypted port for https: No certificate present in SSL/TLS "
                f"configuration for https port {https_port}") in running.log()


def test_https_ssl_serves_one_certificate_for_every_name(tmp_path, certs):
    cert, key = make_self_signed(tmp_path / "manual", "manual.example")
    # https_ssl is a global option: it must come before the first host section.
    text = f'https_ssl = {{ certificate = "{cert}"; key = "{key}" }}\n' + CONFIG
    (tmp_path / "certs").mkdir()
    for host_cert, host_key in certs.values():
        (tmp_path / "certs" / host_cert.name).write_bytes(host_cert.read_bytes())
        (tmp_path / "certs" / host_key.name).write_bytes(host_key.read_bytes())
    with http_server_process(tmp_path, text) as running:
        for host in HOSTS:
            with tls_client(running.https_port, host) as sock:
                assert sock.getpeercert(binary_form=True) == der(cert)


def test_requests_are_logged_at_debug_only(server):
    # As Prosody: no info line per request (the test server logs at info).
    with connect(server.http_port) as sock:
        assert http_request(sock, "GET", "/probe/hello").status == 200
    with connect(server.http_port) as sock:
        get_json(sock)  # a later request: the first one's log line would be written by now
    assert "GET /probe/hello HTTP/1.1" not in server.log()
