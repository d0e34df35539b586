"""mod_limits: a client over its c2s budget is paused, not dropped; other
connections and `unlimited_jids` are unaffected. The same for server links we
dial (`s2sout`) and links a remote server opens (`s2sin`), with
`unlimited_jids` naming a remote domain."""

from __future__ import annotations

import re
import socket
import time

import pytest

from tests.integration.raw_client import RawClient, raw_login
from tests.integration.server_fixture import make_server
from xmpp.listeners import READ_SIZE

RATE = 10_000  # "10kb/s": Prosody's kb is 1000 bytes
PAYLOAD = 40_000  # four seconds' worth, one of them covered by the burst
PING = "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("limits"), extra="""
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "limits" }
limits = { c2s = { rate = "10kb/s", burst = "1s" } }
unlimited_jids = { "fast@localhost" }
""")
    server.create_users({"slow": "slow-pw", "fast": "fast-pw", "other": "other-pw"})
    server.start()
    yield server
    server.stop()


def logged_in(server, user: str) -> RawClient:
    client = RawClient(server.c2s_port)
    client.login("localhost", server.cert, user, server.users[user])
    return client


def ping_after_flood(client: RawClient, tag: str) -> float:
    """Seconds from sending PAYLOAD bytes (whitespace between stanzas) until
    the server answers a ping sent after them."""
    started = time.monotonic()
    client.send(b" " * PAYLOAD + PING.format(id=tag).encode())
    client.read_until(f"id=['\"]{tag}['\"]".encode(), timeout=20)
    return time.monotonic() - started


def ping(client: RawClient, tag: str) -> float:
    started = time.monotonic()
    client.send(PING.format(id=tag))
    client.read_until(f"id=['\"]{tag}['\"]".encode())
    return time.monotonic() - started


def test_over_budget_reader_is_paused_not_dropped(server):
    slow, fast, other = (logged_in(server, user) for user in ("slow", "fast", "other"))
    try:
        # Another connection is served while the slow one waits.
        slow.send(b" " * PAYLOAD)
        assert ping(other, "o1") < 1.0
        slow.send(PING.format(id="s1"))
        slow.read_until(b"id=['\"]s1['\"]", timeout=20)
        assert ping_after_flood(slow, "s2") >= (PAYLOAD - RATE) / RATE * 0.8
        assert ping_after_flood(fast, "f1") < 1.0
    finally:
        for client in (slow, fast, other):
            client.close()


SLOW_PEER, FAST_PEER = "slow.example", "fast.example"
# In the clear one read may take READ_SIZE bytes, the end of the stream with
# them; past that, it is read after the pause for at least 3 * RATE bytes.
S2S_PAYLOAD = READ_SIZE + 3 * RATE


@pytest.fixture
def federating(tmp_path, dns):
    """A server whose dialled and incoming links are limited, and a listening
    socket the test answers on for each peer domain (dns sends the server there)."""
    server = make_server(tmp_path / "s2sout", s2s=True, modules=("limits",), extra=f"""
unbound = {{ forward = "{dns.forward}" }}
s2s_require_encryption = false
limits = {{
    s2sout = {{ rate = "10kb/s", burst = "1s" }},
    s2sin = {{ rate = "10kb/s", burst = "1s" }},
}}
unlimited_jids = {{ "{FAST_PEER}" }}
""")
    peers = {}
    for domain in (SLOW_PEER, FAST_PEER):
        peers[domain] = socket.create_server(("127.0.0.1", 0))
        peers[domain].settimeout(20)
        dns.add_srv(domain, f"xmpp.{domain}", peers[domain].getsockname()[1])
        dns.add_address(f"xmpp.{domain}", "127.0.0.1")
    server.create_users({"alice": "alice-pw"})
    server.start()
    yield server, peers
    for listener in peers.values():
        listener.close()
    server.stop()


def peer_header(domain: str) -> str:
    return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            f"xmlns:stream='http://etherx.jabber.org/streams' "
            f"xmlns:db='jabber:server:dialback' from='{domain}' to='localhost' "
            f"id='peer-{domain}' version='1.0'>")


def accepted_with_dialback(listener: socket.socket, domain: str) -> RawClient:
    """Accept a link the server dials to `domain`; offer it dialback (no TLS)."""
    peer = RawClient.accepted(listener.accept()[0])
    peer.read_until(rb"<stream:stream[^>]*>")
    peer.send(peer_header(domain) + "<stream:features>"
              "<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
    return peer


def dialled_and_authenticated(listener: socket.socket, domain: str) -> RawClient:
    """Accept the server's link to `domain` and say yes to its dialback key."""
    peer = accepted_with_dialback(listener, domain)
    peer.read_until(rb"</db:result>")
    peer.send(f"<db:result from='{domain}' to='localhost' type='valid'/>")
    peer.read_until(b"</message>")  # the stanza that made the server dial
    return peer


def close_after_flood(peer: RawClient) -> float:
    """Seconds from sending S2S_PAYLOAD bytes and the stream's end until the server closes."""
    started = time.monotonic()
    peer.send(b" " * S2S_PAYLOAD + b"</stream:stream>")
    peer.read_to_close(timeout=20)
    return time.monotonic() - started


def test_dialled_links_are_limited_unless_the_domain_is_unlimited(federating):
    server, peers = federating
    alice, _ = raw_login(server, "alice")
    try:
        for domain in (SLOW_PEER, FAST_PEER):
            alice.send(f"<message to='bob@{domain}' type='chat'><body>hi</body></message>")
        slow = dialled_and_authenticated(peers[SLOW_PEER], SLOW_PEER)
        fast = dialled_and_authenticated(peers[FAST_PEER], FAST_PEER)
        assert close_after_flood(fast) < 1.0
        assert close_after_flood(slow) >= (S2S_PAYLOAD - READ_SIZE - RATE) / RATE * 0.8
    finally:
        alice.close()



def incoming_and_authenticated(server, listener: socket.socket, domain: str) -> RawClient:
    """Open a link to the server as `domain` and authenticate it with dialback:
    the server asks `domain`'s authoritative server (the test, on `listener`)
    to verify the key, and the test says yes."""
    peer = RawClient(server.ports["s2s"])
    peer.send(peer_header(domain))
    peer.read_until(rb"</stream:features>")
    peer.send(f"<db:result from='{domain}' to='localhost'>{'ab' * 32}</db:result>")
    authority = accepted_with_dialback(listener, domain)
    verify = authority.read_until(rb"</db:verify>")
    stream_id = re.search(rb"<db:verify[^>]*\sid=['\"]([^'\"]+)", verify).group(1).decode()
    authority.send(f"<db:verify from='{domain}' to='localhost' id='{stream_id}' "
                   f"type='valid'/>")
    peer.read_until(rb"<db:result[^>]*type=['\"]valid['\"]")
    authority.close()
    return peer


def test_incoming_links_are_limited_unless_the_domain_is_unlimited(federating):
    server, peers = federating
    slow = incoming_and_authenticated(server, peers[SLOW_PEER], SLOW_PEER)
    fast = incoming_and_authenticated(server, peers[FAST_PEER], FAST_PEER)
    assert close_after_flood(fast) < 1.0
    assert close_after_flood(slow) >= (S2S_PAYLOAD - READ_SIZE - RATE) / RATE * 0.8
