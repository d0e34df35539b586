"""mod_limits: a client over its c2s budget is paused, not dropped; other
connections and `unlimited_jids` are unaffected."""

from __future__ import annotations

import time

import pytest

from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server

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
