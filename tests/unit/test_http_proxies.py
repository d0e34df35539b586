"""trusted_proxies: X-Forwarded-For and X-Forwarded-Proto believed from trusted peers only."""

from __future__ import annotations

import pytest

from http_apps.proxies import forwarded_client
from tests.http_fixtures import http_client, probe
from xmpp.netmatch import AddressMatcher

LOOPBACK = AddressMatcher(["127.0.0.1", "::1"])


@pytest.mark.parametrize(("peer", "header", "client"), [
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", "198.51.100.1, 203.0.113.7, 127.0.0.1", "203.0.113.7"),
    ("127.0.0.1", "127.0.0.1, ::1", "127.0.0.1"),
    ("::1", "2001:db8::5", "2001:db8::5"),
    ("::1", "[2001:db8::5]:4711", "2001:db8::5"),
    ("127.0.0.1", "203.0.113.7:4711", "203.0.113.7"),
    ("127.0.0.1", "203.0.113.7, unknown", "203.0.113.7"),
    ("127.0.0.1", "", "127.0.0.1"),
])
def test_forwarded_client(peer, header, client):
    assert forwarded_client(peer, header, LOOPBACK) == client


def test_cidr_proxies_are_skipped():
    trusted = AddressMatcher(["127.0.0.1", "10.0.0.0/8", "2001:db8:1::/48"])
    assert forwarded_client("10.1.2.3", "192.0.2.9, 10.9.9.9, 2001:db8:1::7", trusted) == (
        "192.0.2.9")


def whoami(tmp_path, config, peer, headers):
    c = http_client(tmp_path, config + 'VirtualHost "example.com"\n', [probe()])
    return c.get("/probe", headers=headers, environ_base={"REMOTE_ADDR": peer}).get_json()


def test_trusted_peer_ipv4(tmp_path):
    seen = whoami(tmp_path, "", "127.0.0.1",
                  {"X-Forwarded-For": "192.0.2.1, 198.51.100.2", "X-Forwarded-Proto": "https"})
    assert seen["remote_addr"] == "198.51.100.2"
    assert seen["secure"] is True


def test_trusted_peer_ipv6(tmp_path):
    seen = whoami(tmp_path, "", "::1", {"X-Forwarded-For": "2001:db8::1"})
    assert seen["remote_addr"] == "2001:db8::1"
    assert seen["secure"] is False


def test_trusted_cidr_peer(tmp_path):
    seen = whoami(tmp_path, 'trusted_proxies = { "192.168.10.0/24" }\n', "192.168.10.20",
                  {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    assert seen == {**seen, "remote_addr": "203.0.113.9", "secure": True}


def test_spoofed_headers_from_an_untrusted_peer_are_ignored(tmp_path):
    seen = whoami(tmp_path, "", "203.0.113.50",
                  {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"})
    assert seen["remote_addr"] == "203.0.113.50"
    assert seen["secure"] is False


def test_loopback_not_trusted_when_list_replaced(tmp_path):
    seen = whoami(tmp_path, 'trusted_proxies = { "10.0.0.1" }\n', "127.0.0.1",
                  {"X-Forwarded-For": "203.0.113.9"})
    assert seen["remote_addr"] == "127.0.0.1"


def test_forwarded_proto_http_keeps_insecure(tmp_path):
    seen = whoami(tmp_path, "", "127.0.0.1", {"X-Forwarded-Proto": "http"})
    assert seen["secure"] is False
