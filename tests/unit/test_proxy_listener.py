"""Tests for the PROXY ports (xmpp/proxy_listener.py) and the admin listing (xmpp/admin.py),
driven through fake sockets."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace

import gevent.event
import pytest

from xmpp import admin
from xmpp.config import Config, load_config
from xmpp.netmatch import AddressMatcher
from xmpp.proxy_listener import (
    ProxyGate,
    ProxyListener,
    configured_ports,
    port_mappings,
    proxy_ports,
    read_proxy_header,
    trusted_proxies,
)
from xmpp.proxy_protocol import V2_SIGNATURE, ProxyHeaderError

STREAM = b"<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client'>"
V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 5222\r\n"
V2_INET = (V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 12)
           + bytes([192, 0, 2, 8, 198, 51, 100, 1]) + struct.pack("!HH", 40001, 5222))
V2_LOCAL = V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
SOCKET_PEER = ("127.0.0.1", 55555)


class FakeSocket:
    """A socket holding `data`; records each recv size; optionally stalls when drained."""

    def __init__(self, data: bytes = b"", *, chunk: int | None = None, stall: bool = False):
        self.data = data
        self.chunk = chunk
        self.stall = stall
        self.reads: list[int] = []
        self.closed = False

    def recv(self, size: int) -> bytes:
        self.reads.append(size)
        if not self.data and self.stall:
            gevent.event.Event().wait()  # a peer that never sends again
        take = min(size, self.chunk or size)
        out, self.data = self.data[:take], self.data[take:]
        return out

    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def config(tmp_path: Path, text: str, *, net_proxy: bool = True) -> Config:
    path = tmp_path / "vireo.cfg.lua"
    path.write_text(('modules_enabled = { "net_proxy" }\n' if net_proxy else "") + text)
    return load_config(path)


# -- options --------------------------------------------------------------------------------


def test_mappings_and_default_ports_are_the_mapped_ones(tmp_path):
    cfg = config(tmp_path, 'proxy_port_mappings = { [15222] = "c2s", [15280] = "http" }\n')
    assert port_mappings(cfg) == {15222: "c2s", 15280: "http"}
    assert proxy_ports(cfg, port_mappings(cfg)) == [15222, 15280]


def test_explicit_ports_may_include_unmapped_ones(tmp_path):
    cfg = config(tmp_path, 'proxy_port_mappings = { [15222] = "c2s" }\n'
                           'proxy_ports = { 15222, 15223 }\n')
    assert [(p.port, p.service) for p in configured_ports(cfg)] == [(15222, "c2s"), (15223, None)]


def test_bad_mapping_entries_are_warned_about_and_skipped(tmp_path):
    cfg = config(tmp_path, 'proxy_port_mappings = { [15222] = "c2s", [70000] = "s2s", '
                           'nope = "http", [15269] = 5 }\n')
    assert port_mappings(cfg) == {15222: "c2s"}
    assert sum("proxy_port_mappings" in w for w in cfg.warnings) == 3


def test_no_proxy_options_means_no_ports(tmp_path):
    assert configured_ports(config(tmp_path, "")) == []


def test_no_ports_without_mod_net_proxy_as_prosody(tmp_path):
    cfg = config(tmp_path, 'proxy_port_mappings = { [15222] = "c2s" }\n', net_proxy=False)
    assert configured_ports(cfg) == []


def test_trusted_proxies_default_to_loopback(tmp_path):
    trusted = trusted_proxies(config(tmp_path, ""))
    assert "127.0.0.1" in trusted and "::1" in trusted
    assert "127.0.0.9" not in trusted and "192.0.2.1" not in trusted


def test_trusted_proxies_exact_and_cidr(tmp_path):
    trusted = trusted_proxies(config(tmp_path, 'proxy_trusted_proxies = '
                                               '{ "192.0.2.1", "10.1.0.0/16" }\n'))
    assert "192.0.2.1" in trusted and "10.1.200.3" in trusted
    assert "192.0.2.2" not in trusted and "127.0.0.1" not in trusted


def test_empty_trusted_proxies_trust_everyone_as_prosody(tmp_path):
    assert trusted_proxies(config(tmp_path, "proxy_trusted_proxies = {}\n")) is None


def test_header_timeout_option(tmp_path):
    cfg = config(tmp_path, 'proxy_port_mappings = { [15222] = "c2s" }\n'
                           "vireo_proxy_header_timeout = 2.5\n")
    assert configured_ports(cfg)[0].gate.header_timeout == 2.5
    assert not cfg.warnings


# -- reading the header -----------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 1, 3])
@pytest.mark.parametrize("header", [V1, V2_INET], ids=["v1", "v2"])
def test_header_is_read_without_touching_the_service_bytes(header, chunk):
    sock = FakeSocket(header + STREAM, chunk=chunk)
    _, initial = read_proxy_header(sock, timeout=5)
    assert initial == b""
    assert sock.data == STREAM


def test_slow_header_times_out():
    sock = FakeSocket(b"PROXY TCP4 192.0", stall=True)
    with pytest.raises(ProxyHeaderError, match="within"):
        read_proxy_header(sock, timeout=0.05)


def gate(trusted=("127.0.0.1",)) -> ProxyGate:
    return ProxyGate(15222, AddressMatcher(trusted) if trusted is not None else None, 5.0)


@pytest.mark.parametrize("data, peer", [
    (V1, ("192.0.2.7", 40000)),
    (V2_INET, ("192.0.2.8", 40001)),
    (V2_LOCAL, SOCKET_PEER),
    (b"PROXY UNKNOWN\r\n", SOCKET_PEER),
], ids=["v1", "v2", "v2 local", "v1 unknown"])
def test_admitted_peer_is_the_proxied_one_or_the_socket_one(data, peer):
    sock = FakeSocket(data + STREAM)
    admitted = gate().admit(sock, SOCKET_PEER)
    assert admitted is not None and admitted.peer == peer
    assert not sock.closed and sock.data == STREAM


def test_untrusted_peer_is_closed_before_any_read():
    sock = FakeSocket(V1 + STREAM)
    assert gate().admit(sock, ("127.0.0.9", 1234)) is None
    assert sock.closed and sock.reads == []


def test_empty_trust_list_admits_anyone():
    assert gate(trusted=None).admit(FakeSocket(V1), ("203.0.113.5", 1)) is not None


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    STREAM,
    b"PROXY TCP4 192.0.2.1",  # truncated: the peer closes
    b"PROXY UNKNOWN " + b"x" * 120,  # a v1 line longer than 107 bytes
    V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 0xFFFF),  # oversized v2
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
], ids=["http", "xmpp", "truncated", "long v1", "oversized v2", "tls"])
def test_bad_headers_are_dropped(data):
    sock = FakeSocket(data)
    assert gate().admit(sock, SOCKET_PEER) is None
    assert sock.closed


# -- handing off -------------------------------------------------------------------------------


def proxy_listener(service, make_session):
    listener = ProxyListener(("127.0.0.1", 0), gate(), service, make_session)
    served = []
    listener.serve = lambda sock, peer, initial=b"": served.append((peer, initial))
    return listener, served


def test_mapped_port_serves_with_the_proxied_peer():
    listener, served = proxy_listener("c2s", lambda transport: None)
    assert listener.service == "proxy:c2s"
    listener._handle(FakeSocket(V1 + STREAM), SOCKET_PEER)
    assert served == [(("192.0.2.7", 40000), b"")]


def test_unmapped_port_drops_after_the_header():
    listener, served = proxy_listener(None, None)
    sock = FakeSocket(V1 + STREAM)
    listener._handle(sock, SOCKET_PEER)
    assert served == [] and sock.closed and sock.data == STREAM


# -- the admin listing -------------------------------------------------------------------------


class Described:
    def __init__(self, name: str) -> None:
        self.name = name

    def describe(self) -> dict:
        return {"kind": "c2s", "id": self.name, "address": "192.0.2.7", "port": 1,
                "secure": True, "listener": "proxy:c2s"}


def fake_server(listener_sessions, routed):
    listeners = [SimpleNamespace(sessions={object(): s for s in group})
                 for group in listener_sessions]
    # No global module answers admin/<command> here.
    core = SimpleNamespace(global_host=SimpleNamespace(fire=lambda name, **fields: None))
    return SimpleNamespace(listeners=listeners, router=SimpleNamespace(sessions=routed),
                           core=core, request_shutdown=lambda reason=None: None)


def test_listing_covers_listeners_and_routed_sessions_once():
    a, b, bosh = Described("a@x/1"), Described("b@x/1"), Described("c@x/bosh")
    server = fake_server([[a], [b]], {"b@x": {"1": b}, "c@x": {"bosh": bosh}})
    assert [entry["id"] for entry in admin.describe_sessions(server)] == ["a@x/1", "b@x/1",
                                                                         "c@x/bosh"]


def test_listing_includes_outgoing_s2s_links():
    server = fake_server([[Described("a@x/1")]], {})
    server.s2s = SimpleNamespace(outgoing_sessions=lambda: [Described("remote.example")])
    assert [entry["id"] for entry in admin.describe_sessions(server)] == ["a@x/1",
                                                                         "remote.example"]


def test_session_without_describe_is_listed_from_its_transport():
    session = SimpleNamespace(kind="component", secure=False, transport=SimpleNamespace(
        peer=("127.0.0.1", 5347), listener="component"))
    assert admin.describe(session) == {"kind": "component", "id": None, "address": "127.0.0.1",
                                       "port": 5347, "secure": False, "listener": "component"}


def test_answer_sessions_and_errors():
    socket = admin.AdminSocket.__new__(admin.AdminSocket)
    socket.server = fake_server([[Described("a@x/1")]], {})
    reply = socket.answer(json.dumps({"command": "sessions"}).encode())
    assert reply["ok"] and reply["sessions"][0]["id"] == "a@x/1"
    assert socket.answer(b'{"command": "shutdown"}') == {
        "ok": False, "error": "unknown command 'shutdown'"}
    assert not socket.answer(b"[1, 2]")["ok"]
    assert not socket.answer(b"not json")["ok"]
    assert socket.answer(b'{"command": ["sessions"]}') == {
        "ok": False, "error": "unknown command ['sessions']"}


def test_only_root_and_the_server_user_may_administer():
    import os

    assert admin.may_administer(0) and admin.may_administer(os.geteuid())
    assert not admin.may_administer(os.geteuid() + 4242)


def test_table_format():
    table = admin.format_sessions([
        {"kind": "c2s", "id": "alice@example.org/phone", "address": "2001:db8::7",
         "port": 40000, "secure": True, "listener": "proxy:c2s", "client": "Conversations"},
        {"kind": "c2s", "id": None, "address": "127.0.0.1", "port": 5, "secure": False,
         "listener": "c2s"},
        {"kind": "s2sout", "id": "remote.example", "address": "192.0.2.1", "port": 5269,
         "secure": True, "listener": None, "auth": "dialback"},
    ]).splitlines()
    assert table[0].split() == ["KIND", "JID/DOMAIN", "ADDRESS", "PORT", "SECURE", "LISTENER",
                                "AUTH", "CLIENT"]
    assert table[1].split() == ["c2s", "alice@example.org/phone", "2001:db8::7", "40000", "yes",
                                "proxy:c2s", "-", "Conversations"]
    assert table[2].split() == ["c2s", "-", "127.0.0.1", "5", "no", "c2s", "-", "-"]
    assert table[3].split() == ["s2sout", "remote.example", "192.0.2.1", "5269", "yes", "-",
                                "dialback", "-"]
    assert table[-1] == "3 session(s)"


def test_table_format_names_the_node_of_other_nodes_sessions():
    table = admin.format_sessions([
        {"kind": "c2s", "id": "alice@example.org/phone", "address": "127.0.0.1", "port": 1,
         "secure": True, "listener": "c2s"},
        {"kind": "c2s_remote", "id": "bob@example.org/desk", "node": "n2", "address": None,
         "port": None, "secure": None, "listener": None},
    ]).splitlines()
    assert table[0].split()[-1] == "NODE"
    assert table[1].split()[-1] == "-"
    assert table[2].split() == ["c2s_remote", "bob@example.org/desk", "-", "-", "no", "-", "-",
                                "-", "n2"]


def test_socket_path_is_under_data_path(tmp_path):
    assert admin.socket_path(config(tmp_path, 'data_path = "state"\n')) == \
        tmp_path / "state" / "vireo.sock"
    assert admin.socket_path(config(tmp_path, 'admin_socket = "/run/vireo/admin.sock"\n')) == \
        Path("/run/vireo/admin.sock")
