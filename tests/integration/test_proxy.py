"""PROXY protocol ports behind a real haproxy (v1 `send-proxy`, v2 `send-proxy-v2`), and `sessions`.

Clients reach haproxy from 127.0.0.5, a loopback address distinct from
haproxy's own (127.0.0.1), so the session listing proves which address the
server took: the one haproxy saw and sent, not the socket's.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import stat
import struct
import subprocess
import time
from http.client import HTTPResponse
from pathlib import Path

import gevent
import gevent.socket
import pytest

from http_apps.proxied import ProxyHttpServer
from tests.integration.clients import TestClient, close, local_port, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import free_port, make_server, stop_process, wait_for_port
from xmpp import namespaces as ns
from xmpp.netmatch import AddressMatcher
from xmpp.proxy_listener import ProxyGate
from xmpp.proxy_protocol import V2_SIGNATURE
from xmpp.stream import StanzaEvent, StreamOpen, StreamParser

CLIENT_ADDRESS = "127.0.0.5"  # the client end: what haproxy sees and reports
TRUSTED_RANGE_ADDRESS = "127.0.0.2"  # inside the trusted CIDR, not an exact entry
UNTRUSTED_ADDRESS = "127.0.0.9"
USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret",
         "dave": "dave-secret"}
HEADER_TIMEOUT = 1.0
REMOTE, REMOTE_ADDRESS = "remote.example", "127.0.0.6"  # a federated server, direct
HAPROXY_SOURCE = "127.0.0.2"  # where haproxy's s2s backend connects from (trusted range)


@pytest.fixture(scope="module")
def server(tmp_path_factory, dns):
    ports = {name: free_port() for name in ("proxy_c2s", "proxy_tls", "proxy_s2s",
                                            "proxy_unmapped", "proxy_http", "proxy_https",
                                            "http", "https")}
    # http_file_share stands for any module serving HTTP: with it the http ports open.
    server = make_server(tmp_path_factory.mktemp("proxy"), modules=("net_proxy", "http_file_share"),
                         s2s=True, extra=f"""
unbound = {{ forward = "{dns.forward}" }}
proxy_port_mappings = {{
    [{ports['proxy_c2s']}] = "c2s",
    [{ports['proxy_tls']}] = "c2s_direct_tls",
    [{ports['proxy_s2s']}] = "s2s",
    [{ports['proxy_http']}] = "http",
    [{ports['proxy_https']}] = "https",
}}
proxy_ports = {{ {ports['proxy_c2s']}, {ports['proxy_tls']}, {ports['proxy_s2s']},
                 {ports['proxy_unmapped']}, {ports['proxy_http']}, {ports['proxy_https']} }}
proxy_trusted_proxies = {{ "127.0.0.1", "127.0.0.2/31", "::1" }}
vireo_proxy_header_timeout = {HEADER_TIMEOUT}
http_ports = {{ {ports['http']} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ {ports['https']} }}
""")
    server.ports.update(ports)
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


HAPROXY_CONFIG = """
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
{sections}
"""

SECTION = """
frontend f_{name}
    bind 127.0.0.1:{front}
    default_backend b_{name}
backend b_{name}
    server vireo 127.0.0.1:{back} {option}
"""


@pytest.fixture(scope="module")
def haproxy(server, tmp_path_factory):
    """haproxy in the foreground (TCP mode) in front of each PROXY port, with v1 or v2 headers."""
    if shutil.which("haproxy") is None:  # only the tests through haproxy need it
        pytest.skip("haproxy is not installed (make system-deps)")
    routes = {"v1": (server.ports["proxy_c2s"], "send-proxy"),
              "v2": (server.ports["proxy_c2s"], "send-proxy-v2"),
              "v2_tls": (server.ports["proxy_tls"], "send-proxy-v2"),
              "s2s_v2": (server.ports["proxy_s2s"], f"send-proxy-v2 source {HAPROXY_SOURCE}"),
              "http_v1": (server.ports["proxy_http"], "send-proxy"),
              "https_v2": (server.ports["proxy_https"], "send-proxy-v2")}
    fronts = {name: free_port() for name in routes}
    path = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
    path.write_text(HAPROXY_CONFIG.format(sections="".join(
        SECTION.format(name=name, front=fronts[name], back=back, option=option)
        for name, (back, option) in routes.items())))
    process = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        for port in fronts.values():
            wait_for_port(port, process)
        yield fronts
    finally:
        stop_process(process)




class SourceBoundLoop:
    """The running event loop, with connections made from a chosen local address.

    slixmpp has no source-address option; it opens its socket through
    `self.loop.create_connection`, so the client gets this wrapper as its loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, source: str) -> None:
        self._loop = loop
        self._source = source

    def __getattr__(self, name: str):
        return getattr(self._loop, name)

    def create_connection(self, *args, **kwargs):
        return self._loop.create_connection(*args, local_addr=(self._source, 0), **kwargs)


async def login_through(server, user: str, port: int, *, direct_tls: bool = False,
                        resource: str = "proxied") -> TestClient:
    """A slixmpp login from CLIENT_ADDRESS to a haproxy frontend."""
    client = TestClient(f"{user}@{server.domain}/{resource}", server.users[user],
                        cert=server.cert, mech="PLAIN")
    client.loop = SourceBoundLoop(asyncio.get_running_loop(), CLIENT_ADDRESS)
    client.enable_direct_tls = direct_tls
    client.enable_starttls = not direct_tls
    client.connect(host="127.0.0.1", port=port)
    assert await asyncio.wait_for(client.started, 10), f"login of {user} failed"
    return client


async def listing(server) -> list[dict]:
    """`app.py sessions --json`."""
    return await asyncio.to_thread(server.sessions)


async def sessions(server) -> dict[str, dict]:
    """The c2s sessions of `app.py sessions --json`, keyed by JID."""
    return {entry["id"]: entry for entry in await listing(server) if entry["kind"] == "c2s"}


async def ping_self(client: TestClient) -> None:
    """A round trip through the server: the session still works."""
    await client.plugin["xep_0199"].ping(jid=client.boundjid.host, timeout=10)


@pytest.mark.parametrize("frontend", ["v1", "v2"])
def test_login_through_haproxy_shows_the_address_haproxy_saw(server, haproxy, frontend):
    async def scenario():
        client = await login_through(server, "alice", haproxy[frontend], resource=frontend)
        entry = (await sessions(server))[str(client.boundjid)]
        assert (entry["address"], entry["port"]) == (CLIENT_ADDRESS, local_port(client))
        assert entry["secure"] is True and entry["listener"] == "proxy:c2s"
        await ping_self(client)
        await close(client)

    run(scenario())


def test_header_then_direct_tls_through_haproxy(server, haproxy):
    async def scenario():
        client = await login_through(server, "bob", haproxy["v2_tls"], direct_tls=True)
        entry = (await sessions(server))[str(client.boundjid)]
        assert (entry["address"], entry["port"]) == (CLIENT_ADDRESS, local_port(client))
        assert entry["secure"] is True and entry["listener"] == "proxy:c2s_direct_tls"
        await close(client)

    run(scenario())


def test_sessions_table_lists_direct_and_proxied_clients(server, haproxy):
    async def scenario():
        direct = await login(server, "carol", resource="direct")
        proxied = await login_through(server, "dave", haproxy["v1"])
        result = await asyncio.to_thread(server.admin, "sessions")
        assert result.returncode == 0, result.stderr
        rows = {line.split()[1]: line.split() for line in result.stdout.splitlines()[1:-1]}
        assert rows[str(direct.boundjid)][2:] == ["127.0.0.1", str(local_port(direct)), "yes",
                                                  "c2s", "PLAIN"]
        assert rows[str(proxied.boundjid)][2:] == [CLIENT_ADDRESS, str(local_port(proxied)),
                                                   "yes", "proxy:c2s", "PLAIN"]
        await close(direct, proxied)

    run(scenario())


def test_logs_see_the_proxied_address(server, haproxy):
    async def scenario():
        client = await login_through(server, "alice", haproxy["v2"], resource="logged")
        await close(client)

    run(scenario())
    assert log_lines(server, f"Authenticated alice@{server.domain} from {CLIENT_ADDRESS}")


@pytest.fixture(scope="module")
def remote(tmp_path_factory, dns, server, haproxy):
    """A server federating with the PROXY server, which DNS publishes at haproxy's s2s frontend."""
    remote = make_server(tmp_path_factory.mktemp("remote"), domain=REMOTE, address=REMOTE_ADDRESS,
                         s2s=True, extra=f'unbound = {{ forward = "{dns.forward}" }}')
    dns.add_srv(server.domain, f"xmpp.{server.domain}", haproxy["s2s_v2"])
    dns.add_address(f"xmpp.{server.domain}", "127.0.0.1")
    dns.add_srv(REMOTE, f"xmpp.{REMOTE}", remote.ports["s2s"])
    dns.add_address(f"xmpp.{REMOTE}", REMOTE_ADDRESS)
    remote.create_users({"rita": "rita-secret"})
    remote.start()
    yield remote
    assert remote.stop() == 0


def test_s2s_through_haproxy_shows_the_remote_servers_address(server, remote):
    """remote.example reaches us through haproxy (STARTTLS and dialback on the proxied
    stream); the incoming link carries the address haproxy saw, not haproxy's own."""
    async def scenario():
        alice = await login(server, "alice", resource="federated")
        rita = await login(remote, "rita")
        rita.send_message(mto=str(alice.boundjid), mbody="through haproxy", mtype="chat")
        received = await alice.next_message(20)
        assert (received["from"], received["body"]) == (rita.boundjid, "through haproxy")
        alice.send_message(mto=str(rita.boundjid), mbody="and back", mtype="chat")
        assert (await rita.next_message(20))["body"] == "and back"
        incoming = [entry for entry in await listing(server)
                    if entry["kind"] == "s2sin" and entry["id"] == REMOTE]
        assert any(f"{REMOTE}->{server.domain}" in entry["domains"] for entry in incoming)
        for entry in incoming:
            assert (entry["address"], entry["listener"]) == ("127.0.0.1", "proxy:s2s")
            assert entry["secure"] is True
        await close(alice, rita)

    run(scenario())


def test_raw_header_then_s2s_stream_header_gets_an_s2s_stream(server):
    raw = RawClient(server.ports["proxy_s2s"])
    try:
        # The header and the stream's first bytes in one segment: the service gets both.
        raw.send(b"PROXY TCP4 192.0.2.77 127.0.0.1 41000 5269\r\n"
                 b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                 b"xmlns:stream='http://etherx.jabber.org/streams' "
                 b"xmlns:db='jabber:server:dialback' to='localhost' from='raw.example' "
                 b"version='1.0'>")
        events = StreamParser(default_ns=ns.SERVER).feed(raw.read_until(rb"</stream:features>"))
        header = next(event.attrs for event in events if isinstance(event, StreamOpen))
        assert (header["xmlns"], header["from"], header["to"]) == \
            (ns.SERVER, server.domain, "raw.example")
        features = [event.element for event in events if isinstance(event, StanzaEvent)]
        assert [child.tag for child in features[0]] == \
            [f"{{{ns.TLS}}}starttls", "{urn:xmpp:features:dialback}dialback"]
        entry = next(entry for entry in run(listing(server)) if entry["id"] == "raw.example")
        assert entry == {**entry, "kind": "s2sin", "address": "192.0.2.77", "port": 41000,
                         "secure": False, "listener": "proxy:s2s"}
    finally:
        raw.close()


class ProxiedGuesser:
    """A raw client on the c2s PROXY port claiming `address`, failing SASL PLAIN logins."""

    def __init__(self, server, address: str) -> None:
        self.raw = RawClient(server.ports["proxy_c2s"])
        self.raw.send(f"PROXY TCP4 {address} 127.0.0.1 40000 5222\r\n")
        self.raw.starttls(server.domain, server.cert)

    def fail(self) -> bytes:
        """The server's answer to one wrong password."""
        return self.raw.auth_plain("alice", "wrong-password")


def test_failed_login_throttle_counts_the_proxied_address(server):
    """Both guessers reach the server from 127.0.0.1; only the one claiming
    192.0.2.50 is throttled (the fixture allows 5 failures)."""
    throttled, fresh = ProxiedGuesser(server, "192.0.2.50"), ProxiedGuesser(server, "192.0.2.51")
    try:
        for _ in range(5):
            assert b"<not-authorized/>" in throttled.fail()
        assert b"<not-authorized/>" in fresh.fail()
        assert b"<temporary-auth-failure/>" in throttled.fail()
    finally:
        throttled.raw.close()
        fresh.raw.close()


def test_raw_headers_from_a_trusted_range_and_v2_local(server):
    v2_local = V2_SIGNATURE + bytes([0x20, 0x00, 0, 0])
    ranged = RawClient(server.ports["proxy_c2s"], source_address=TRUSTED_RANGE_ADDRESS)
    local = RawClient(server.ports["proxy_c2s"])
    try:
        ranged.send(b"PROXY TCP6 2001:db8::7 ::1 40123 5222\r\n")
        ranged.login(server.domain, server.cert, "bob", USERS["bob"], resource="ranged")
        local.send(v2_local)
        local.login(server.domain, server.cert, "carol", USERS["carol"], resource="local")
        listing = run(sessions(server))
        ranged_entry = listing[f"bob@{server.domain}/ranged"]
        assert (ranged_entry["address"], ranged_entry["port"]) == ("2001:db8::7", 40123)
        local_entry = listing[f"carol@{server.domain}/local"]
        assert (local_entry["address"], local_entry["port"]) == \
            ("127.0.0.1", local.sock.getsockname()[1])
    finally:
        ranged.close()
        local.close()


def closed_without_a_word(client: RawClient, timeout: float = 5.0) -> bool:
    try:
        return client.read_to_close(timeout) == b""
    finally:
        client.close()


V1_HEADER = b"PROXY TCP4 192.0.2.66 127.0.0.1 40000 5222\r\n"
STREAM_OPEN = ("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
               "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")


def hostile(server, data: bytes, *, port: str = "proxy_c2s", source: str | None = None,
            half_close: bool = False) -> RawClient:
    client = RawClient(server.ports[port], source_address=source)
    if data:
        client.send(data)
    if half_close:
        client.sock.shutdown(socket.SHUT_WR)
    return client


def test_hostile_connections_are_dropped_while_a_proxied_client_keeps_working(server, haproxy):
    async def scenario():
        client = await login_through(server, "alice", haproxy["v2"], resource="steady")
        attempts = {
            "untrusted": hostile(server, V1_HEADER + STREAM_OPEN.encode(),
                                 source=UNTRUSTED_ADDRESS),
            "unmapped": hostile(server, V1_HEADER + STREAM_OPEN.encode(),
                                port="proxy_unmapped"),
            "garbage": hostile(server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
            "no header": hostile(server, STREAM_OPEN.encode()),
            "truncated": hostile(server, b"PROXY TCP4 192.0.2.66 127.0", half_close=True),
            "oversized v1": hostile(server, b"PROXY UNKNOWN " + b"x" * 200),
            "oversized v2": hostile(server, V2_SIGNATURE + bytes([0x21, 0x11])
                                    + struct.pack("!H", 0xFFFF) + bytes(1000)),
            "slow": hostile(server, b"PROXY TCP4 192.0.2.66"),
        }
        for name, raw in attempts.items():
            dropped = await asyncio.to_thread(closed_without_a_word, raw, HEADER_TIMEOUT + 5)
            assert dropped, name
            await ping_self(client)
        listing = await sessions(server)
        assert str(client.boundjid) in listing
        assert not any(entry["address"] == "192.0.2.66" for entry in listing.values())
        await close(client)

    run(scenario())


def get(port: int, path: str, *, cafile: Path | None = None) -> int:
    """A GET from CLIENT_ADDRESS through haproxy; TLS when `cafile` is given. Returns the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(CLIENT_ADDRESS, 0)) as raw:
        sock = raw
        if cafile is not None:
            sock = ssl.create_default_context(cafile=str(cafile)).wrap_socket(
                raw, server_hostname="localhost")
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                     .encode())
        response = HTTPResponse(sock, method="GET")
        response.begin()
        response.read()
        return response.status


@pytest.mark.parametrize("frontend, tls", [("http_v1", False), ("https_v2", True)])
def test_http_through_haproxy_sees_the_client_address(server, haproxy, frontend, tls):
    path = f"/file_share/{frontend}-probe/none.txt"
    status = get(haproxy[frontend], path, cafile=server.cert if tls else None)
    assert status == 404
    access = log_lines(server, path)
    assert all(f"{CLIENT_ADDRESS} - - [" in line for line in access), access


def log_lines(server, text: str, timeout: float = 5.0) -> list[str]:
    """The server log's lines holding `text`, once there are some (the access log is
    written after the response has gone out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in server.log_path.read_text().splitlines() if text in line]
        if lines:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged within {timeout}s")


def test_proxied_http_request_has_the_proxied_remote_addr():
    """In process: the WSGI environ of a request on a PROXY http port."""
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']}".encode()]

    gate = ProxyGate(0, AddressMatcher(["127.0.0.1"]), HEADER_TIMEOUT)
    http = ProxyHttpServer(("127.0.0.1", 0), application, gate, service="proxy:http")
    http.start()

    def client() -> bytes:
        with gevent.socket.create_connection(("127.0.0.1", http.port), timeout=10) as sock:
            sock.sendall(V1_HEADER + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            return data

    try:
        assert gevent.spawn(client).get(timeout=10).endswith(b"\r\n\r\n192.0.2.66 40000")
    finally:
        http.stop(timeout=1)


def test_admin_socket_is_private(server):
    path = Path(server.directory / "data" / "vireo.sock")
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_sessions_without_a_running_server_fails_cleanly(tmp_path):
    idle = make_server(tmp_path / "idle")
    result = idle.admin("sessions")
    assert result.returncode == 1
    assert "is the server running?" in result.stderr
