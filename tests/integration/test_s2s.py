"""Federation between two Vireo servers (RFC 6120 s2s, XEP-0220 dialback), slixmpp users on each.

a.example (and its second host second.a.example) runs on 127.0.0.2,
b.example on 127.0.0.3; a DNS server started by the test answers their SRV
and A records and both servers ask it through `unbound.forward`. Each server
has its own self-signed certificate, so links are encrypted with STARTTLS and
authenticated with dialback; `test_sasl_external_when_certificates_validate`
runs a pair that trusts each other's certificates.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import replace
from xml.etree import ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from tests.certs import make_self_signed
from tests.integration.clients import close, login, subscription_with
from tests.integration.clients import run as run_scenario
from tests.integration.fake_dns import FakeDns
from tests.integration.server_fixture import make_server
from xmpp import namespaces as ns
from xmpp.component import handshake_digest
from xmpp.stream import StanzaEvent, StreamOpen, StreamParser

A, SECOND_A, B = "a.example", "second.a.example", "b.example"
COMPONENT, SECRET = "comp.b.example", "component-secret"
UPLOAD = "upload.b.example"
USERS = {name: f"pw-{name}" for name in ("alice", "bob", "carol", "dave", "erin", "frank")}
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
TIMEOUT = 20.0


def run(coro):
    return run_scenario(coro, timeout=90)


def federated(directory, dns: FakeDns, domain: str, address: str, *, extra: str = "",
              host_extra: str = ""):
    """A server with federation on, published in the test DNS under its domain."""
    server = make_server(directory, domain=domain, address=address, s2s=True,
                         extra=f'unbound = {{ forward = "{dns.forward}" }}\n{extra}',
                         host_extra=host_extra)
    dns.add_srv(domain, f"xmpp.{domain}", server.ports["s2s"])
    dns.add_address(f"xmpp.{domain}", address)
    return server


def closed_port(address: str) -> int:
    """A port on `address` where nothing listens (connections are refused)."""
    with socket.create_server((address, 0)) as probe:
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, dns):
    base = tmp_path_factory.mktemp("s2s")
    second_cert, second_key = make_self_signed(base / "a", SECOND_A)
    a = federated(base / "a", dns, A, "127.0.0.2", extra="s2s_timeout = 5", host_extra=f"""
VirtualHost "{SECOND_A}"
    ssl = {{ certificate = "{second_cert}", key = "{second_key}" }}
""")
    dns.add_srv(SECOND_A, f"xmpp.{A}", a.ports["s2s"])
    b = federated(base / "b", dns, B, "127.0.0.3", host_extra=f"""
Component "{COMPONENT}"
    component_secret = "{SECRET}"
Component "{UPLOAD}" "http_file_share"
    http_file_share_base_url = "https://files.{B}/upload"
""")
    dns.add_srv(COMPONENT, f"xmpp.{B}", b.ports["s2s"])
    # The upload component's first SRV target refuses connections: the next one is tried.
    dns.add_srv(UPLOAD, f"dead.{B}", closed_port("127.0.0.3"), priority=0)
    dns.add_address(f"dead.{B}", "127.0.0.3")
    dns.add_srv(UPLOAD, f"xmpp.{B}", b.ports["s2s"], priority=10)
    # A host whose SRV target accepts TCP connections but never speaks XMPP.
    silent = socket.create_server(("127.0.0.4", 0))
    dns.add_srv("silent.example", "silent.example", silent.getsockname()[1])
    dns.add_address("silent.example", "127.0.0.4")
    a.create_users(USERS)
    b.create_users(USERS)
    second = replace(a, domain=SECOND_A, cert=second_cert, key=second_key, users={})
    second.create_users(USERS)
    a.start()
    b.start()
    yield a, b, second
    silent.close()
    assert a.stop() == 0
    assert b.stop() == 0


def error_condition(stanza) -> str:
    error = stanza.xml.find(f"{{{ns.CLIENT}}}error")
    assert error is not None, stanza
    return next(child.tag.rpartition("}")[2] for child in error
                if child.tag.startswith(f"{{{STANZA_ERRORS}}}") and not child.tag.endswith("text"))


def test_messages_flow_both_ways(servers):
    a, b, _second = servers

    async def scenario():
        alice = await login(a, "alice")
        bob = await login(b, "bob")
        alice.send_message(mto=f"bob@{B}", mbody="hello from a", mtype="chat")
        received = await bob.next_message(TIMEOUT)
        assert received["body"] == "hello from a"
        assert received["from"] == alice.boundjid
        bob.send_message(mto=str(alice.boundjid), mbody="hello from b", mtype="chat")
        received = await alice.next_message(TIMEOUT)
        assert received["body"] == "hello from b"
        assert received["from"] == bob.boundjid
        # Several in a row arrive in order.
        for n in range(20):
            alice.send_message(mto=str(bob.boundjid), mbody=f"n{n}", mtype="chat")
        bodies = [(await bob.next_message(TIMEOUT))["body"] for _ in range(20)]
        assert bodies == [f"n{n}" for n in range(20)]
        await close(alice, bob)

    run(scenario())
    # The admin listing: each link's direction, remote domain, encryption and authentication.
    links = [s for s in a.sessions() if s["kind"] in ("s2sin", "s2sout")]
    outgoing = next(s for s in links if s["kind"] == "s2sout" and s["id"] == B)
    assert outgoing["direction"] == "outgoing" and outgoing["remote_domain"] == B
    assert outgoing["secure"] is True and outgoing["auth"] == "dialback"
    assert outgoing["address"] == "127.0.0.3" and f"{A}->{B}" in outgoing["domains"]
    incoming = next(s for s in links if s["kind"] == "s2sin" and s["id"] == B)
    assert incoming["direction"] == "incoming" and incoming["remote_domain"] == B
    assert incoming["secure"] is True and incoming["auth"] == "dialback"
    assert f"{B}->{A}" in incoming["domains"]
    table = a.admin("sessions")
    assert table.returncode == 0, table.stderr
    assert any(line.split()[:2] == ["s2sout", B] for line in table.stdout.splitlines())


def test_subscriptions_across_servers_reach_both_and_presence_flows(servers):
    a, b, _second = servers

    async def scenario():
        carol = await login(a, "carol")
        dave = await login(b, "dave")
        await carol.get_roster()
        await dave.get_roster()
        carol_bare, dave_bare = carol.boundjid.bare, dave.boundjid.bare
        carol.send_presence(pto=dave_bare, ptype="subscribe")
        request = await dave.next_presence(lambda p: p["type"] == "subscribe", TIMEOUT)
        assert request["from"].bare == carol_bare
        dave.send_presence(pto=carol_bare, ptype="subscribed")
        await carol.next_presence(lambda p: p["type"] == "subscribed", TIMEOUT)
        await carol.next_presence(
            lambda p: p["from"].bare == dave_bare and p["type"] == "available", TIMEOUT)
        dave.send_presence(pto=carol_bare, ptype="subscribe")
        await carol.next_presence(lambda p: p["type"] == "subscribe", TIMEOUT)
        carol.send_presence(pto=dave_bare, ptype="subscribed")
        await dave.next_presence(lambda p: p["type"] == "subscribed", TIMEOUT)
        await dave.next_presence(
            lambda p: p["from"].bare == carol_bare and p["type"] == "available", TIMEOUT)
        assert await subscription_with(carol, dave_bare, "both") == "both"
        assert await subscription_with(dave, carol_bare, "both") == "both"
        dave.send_presence(pstatus="busy", pshow="dnd")
        update = await carol.next_presence(lambda p: p["show"] == "dnd", TIMEOUT)
        assert update["status"] == "busy"
        # A new session of Dave's probes Carol's server and learns she is online.
        await close(dave)
        dave = await login(b, "dave", resource="again")
        seen = await dave.next_presence(
            lambda p: p["from"].bare == carol_bare and p["type"] == "available", TIMEOUT)
        assert seen["from"] == carol.boundjid
        await close(carol, dave)

    run(scenario())


def test_disco_info_and_ping_of_the_remote_server(servers):
    a, _b, _second = servers

    async def scenario():
        alice = await login(a, "alice", resource="disco")
        info = await alice.plugin["xep_0030"].get_info(jid=B, timeout=TIMEOUT)
        assert info["from"] == B
        features = info["disco_info"]["features"]
        assert "urn:xmpp:ping" in features
        identities = info["disco_info"]["identities"]
        assert any(cat == "server" and typ == "im" for cat, typ, _lang, _name in identities)
        await alice.plugin["xep_0199"].ping(B, timeout=TIMEOUT)
        version = await alice.plugin["xep_0092"].get_version(B, timeout=TIMEOUT)
        assert version["software_version"]["name"] == "Vireo"
        await close(alice)

    run(scenario())


def test_second_local_domain_piggybacks_on_the_same_link(servers):
    a, b, second = servers

    async def scenario():
        erin = await login(second, "erin")
        bob = await login(b, "bob", resource="piggy")
        erin.send_message(mto=str(bob.boundjid), mbody="from the second host", mtype="chat")
        received = await bob.next_message(TIMEOUT)
        assert received["from"] == erin.boundjid
        bob.send_message(mto=str(erin.boundjid), mbody="back to the second host")
        assert (await erin.next_message(TIMEOUT))["body"] == "back to the second host"
        await close(erin, bob)

    # Something from a.example itself first, so the link to b.example exists.
    run(_ping(a, "frank", B))
    run(scenario())
    outgoing = [s for s in a.sessions() if s["kind"] == "s2sout" and s["id"] == B]
    assert len(outgoing) == 1
    assert set(outgoing[0]["domains"]) >= {f"{A}->{B}", f"{SECOND_A}->{B}"}


async def _ping(server, user, target):
    client = await login(server, user, resource="pinger")
    await client.plugin["xep_0199"].ping(target, timeout=TIMEOUT)
    await close(client)


def test_idle_link_closes_and_reopens_on_demand(servers, dns, tmp_path):
    """e.example closes its link to a.example after 1 s without traffic (its own
    server, so the shared pair's links stay up for the other tests)."""
    a, _b, _second = servers
    e = federated(tmp_path / "e", dns, "e.example", "127.0.0.7", extra="s2s_idle_timeout = 1")
    e.create_users({"eve": "pw-eve"})
    e.start()
    idle_line = f"Closing idle s2s link to {A}"
    try:
        async def scenario():
            alice = await login(a, "alice", resource="idle")
            eve = await login(e, "eve")
            eve.send_message(mto=str(alice.boundjid), mbody="before", mtype="chat")
            assert (await alice.next_message(TIMEOUT))["body"] == "before"
            for _ in range(100):
                await asyncio.sleep(0.1)
                if idle_line in e.log_path.read_text():
                    break
            else:
                raise AssertionError("the idle link was not closed")
            assert not [s for s in e.sessions() if s["kind"] == "s2sout"]
            eve.send_message(mto=str(alice.boundjid), mbody="after", mtype="chat")
            assert (await alice.next_message(TIMEOUT))["body"] == "after"
            await close(alice, eve)

        run(scenario())
    finally:
        assert e.stop() == 0


def test_without_federation_remote_stanzas_bounce(tmp_path):
    server = make_server(tmp_path / "alone", domain="alone.example")
    server.create_users({"ivan": "pw-ivan"})
    server.start()
    try:
        async def scenario():
            ivan = await login(server, "ivan")
            ivan.send_message(mto=f"bob@{B}", mbody="out there?", mtype="chat")
            bounced = await ivan.next_message(TIMEOUT)
            assert error_condition(bounced) == "service-unavailable"
            await close(ivan)

        run(scenario())
    finally:
        assert server.stop() == 0


def test_remote_user_reaches_an_external_component(servers):
    """A stanza from a.example to b.example's external component goes over
    s2s and the router to the component, and the component's answer back."""
    a, b, _second = servers
    component = RawStream("127.0.0.1", b.ports["component"], ns.COMPONENT)
    try:
        component.open(None, COMPONENT)
        component.send(f"<handshake>{handshake_digest(_header_id(component), SECRET)}"
                       "</handshake>")
        assert component.read_element().tag == f"{{{ns.COMPONENT}}}handshake"

        async def scenario():
            alice = await login(a, "alice", resource="comp")
            alice.send_message(mto=f"bot@{COMPONENT}", mbody="ping the bot", mtype="chat")
            received = await asyncio.to_thread(component.read_element)
            assert received.tag == f"{{{ns.COMPONENT}}}message"
            assert received.get("from") == str(alice.boundjid)
            assert received.findtext(f"{{{ns.COMPONENT}}}body") == "ping the bot"
            component.send(f"<message from='bot@{COMPONENT}' to='{alice.boundjid}' "
                           "type='chat'><body>pong from the bot</body></message>")
            answer = await alice.next_message(TIMEOUT)
            assert answer["body"] == "pong from the bot"
            assert answer["from"] == f"bot@{COMPONENT}"
            await close(alice)

        run(scenario())
    finally:
        component.close()


def test_remote_user_reaches_an_internal_component_past_a_dead_srv_target(servers):
    """upload.b.example (http_file_share) answers disco and slot requests from
    a.example; its first SRV target refuses connections, so the second is used."""
    a, _b, _second = servers

    async def scenario():
        alice = await login(a, "alice", resource="upload")
        info = await alice.plugin["xep_0030"].get_info(jid=UPLOAD, timeout=TIMEOUT)
        assert info["from"] == UPLOAD
        assert "urn:xmpp:http:upload:0" in info["disco_info"]["features"]
        assert ("store", "file") in [(c, t) for c, t, _l, _n in info["disco_info"]["identities"]]
        # Uploads are for b.example's own users: the refusal comes back over s2s too.
        iq = alice.make_iq_get(ito=UPLOAD)
        iq.append(ET.fromstring("<request xmlns='urn:xmpp:http:upload:0' filename='a.txt' "
                                "size='10'/>"))
        reply = await _send_for_error(iq)
        assert error_condition(reply) == "forbidden"
        await close(alice)

    run(scenario())
    assert f"s2s to {UPLOAD}: [127.0.0.3]:" in a.log_path.read_text()  # the dead target


async def _send_for_error(iq):
    """Send `iq` and return the error reply slixmpp raises as IqError."""
    try:
        await iq.send(timeout=TIMEOUT)
    except IqError as error:
        return error.iq
    raise AssertionError("the request succeeded")


def _header_id(stream: RawStream) -> str:
    """Read until the peer's stream header has given its id."""
    for _ in range(100):
        if stream.stream_id:
            return stream.stream_id
        stream.pending += stream.parser.feed(stream.sock.recv(65536))
        for event in stream.pending:
            if isinstance(event, StreamOpen):
                stream.stream_id = event.attrs.get("id", "")
    raise AssertionError("no stream header")


def test_unresolvable_domain_bounces_with_remote_server_not_found(servers):
    a, _b, _second = servers

    async def scenario():
        alice = await login(a, "alice", resource="lost")
        alice.send_message(mto="someone@nowhere.example", mbody="anyone?", mtype="chat")
        bounced = await alice.next_message(TIMEOUT)
        assert bounced["type"] == "error" and bounced["from"] == "someone@nowhere.example"
        assert error_condition(bounced) == "remote-server-not-found"
        await close(alice)

    run(scenario())


def test_silent_peers_time_out_after_s2s_timeout(servers):
    """s2s_timeout (5 s on a.example) both ways: a server that takes the TCP
    connection but never speaks gets our stanza bounced with remote-server-timeout,
    and a peer that connects to our s2s port and never authenticates is dropped."""
    a, _b, _second = servers
    mute = RawStream("127.0.0.2", a.ports["s2s"])
    connected = time.monotonic()
    # Another asks for TLS and then never starts the handshake.
    stalled = RawStream("127.0.0.2", a.ports["s2s"])
    try:
        stalled.open("stalled.example", A)
        stalled.read_element()
        stalled.send(f"<starttls xmlns='{ns.TLS}'/>")
        assert stalled.read_element().tag == f"{{{ns.TLS}}}proceed"
        async def scenario():
            alice = await login(a, "alice", resource="waiting")
            started = time.monotonic()
            alice.send_message(mto="someone@silent.example", mbody="hello?", mtype="chat")
            bounced = await alice.next_message(TIMEOUT)
            assert error_condition(bounced) == "remote-server-timeout"
            assert 4 <= time.monotonic() - started < 15
            await close(alice)

        run(scenario())
        error = mute.read_element()
        assert 4 <= time.monotonic() - connected < 15
        assert error.tag == f"{{{ns.STREAMS}}}error"
        assert error[0].tag == "{urn:ietf:params:xml:ns:xmpp-streams}connection-timeout"
        assert mute.read_until_closed()
        assert stalled.read_until_closed()
        assert time.monotonic() - connected < 15
    finally:
        mute.close()
        stalled.close()


def test_forged_dialback_key_is_refused(servers):
    """Someone claiming to be a.example with a made-up key: b.example asks
    a.example, which denies the key, so the stream stays unauthenticated."""
    _a, b, _second = servers
    peer = RawStream("127.0.0.3", b.ports["s2s"])
    try:
        peer.open(A, B)
        features = peer.read_element()
        assert features.find(f"{{{ns.TLS}}}starttls") is not None
        peer.send(f"<starttls xmlns='{ns.TLS}'/>")
        assert peer.read_element().tag == f"{{{ns.TLS}}}proceed"
        peer.start_tls()
        peer.open(A, B)
        peer.read_element()
        peer.send(f"<db:result from='{A}' to='{B}'>{'ab' * 32}</db:result>")
        answer = peer.read_element()
        assert answer.tag == f"{{{ns.DIALBACK}}}result"
        assert answer.get("type") == "invalid"
        peer.send(f"<message from='mallory@{A}' to='bob@{B}'><body>forged</body></message>")
        error = peer.read_element()
        assert error.tag == f"{{{ns.STREAMS}}}error"
        assert error[0].tag == "{urn:ietf:params:xml:ns:xmpp-streams}not-authorized"
    finally:
        peer.close()


def test_sasl_external_when_certificates_validate(tmp_path, dns):
    """Two servers that trust each other's certificates authenticate with SASL EXTERNAL."""
    bundle = tmp_path / "trusted.pem"
    trust = f's2s_ssl = {{ cafile = "{bundle}" }}\ns2s_secure_auth = true'
    c = federated(tmp_path / "c", dns, "c.example", "127.0.0.5", extra=trust)
    d = federated(tmp_path / "d", dns, "d.example", "127.0.0.6", extra=trust)
    # Each server's own self-signed certificate is its own CA: trust both.
    bundle.write_text(c.cert.read_text() + d.cert.read_text())
    for server in (c, d):
        server.create_users({"gina": "pw-gina"})
    c.start()
    d.start()
    try:
        async def scenario():
            gina_c = await login(c, "gina")
            gina_d = await login(d, "gina")
            gina_c.send_message(mto="gina@d.example", mbody="certified", mtype="chat")
            assert (await gina_d.next_message(TIMEOUT))["body"] == "certified"
            gina_d.send_message(mto="gina@c.example", mbody="likewise", mtype="chat")
            assert (await gina_c.next_message(TIMEOUT))["body"] == "likewise"
            await close(gina_c, gina_d)

        run(scenario())
        for server, remote in ((c, "d.example"), (d, "c.example")):
            links = [s for s in server.sessions() if s["id"] == remote]
            assert {s["kind"] for s in links} == {"s2sin", "s2sout"}
            assert all(s["auth"] == "EXTERNAL" and s["secure"] for s in links), links
    finally:
        assert c.stop() == 0
        assert d.stop() == 0


class RawStream:
    """A hand-driven stream: a server-to-server one for what a real server
    would never send, or an external component's (XEP-0114)."""

    def __init__(self, address: str, port: int, default_ns: str = ns.SERVER) -> None:
        self.sock = socket.create_connection((address, port), timeout=TIMEOUT)
        self.default_ns = default_ns
        self.parser = StreamParser(default_ns=default_ns, max_stanza_size=1 << 20)
        self.pending: list = []
        self.stream_id = ""

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def open(self, sender: str | None, to: str) -> None:
        self.parser.reset()
        sender_attr = f" from='{sender}'" if sender else ""
        self.send(f"<?xml version='1.0'?><stream:stream xmlns='{self.default_ns}' "
                  f"xmlns:stream='{ns.STREAMS}' xmlns:db='{ns.DIALBACK}'"
                  f"{sender_attr} to='{to}' version='1.0'>")

    def start_tls(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname=B)
        self.parser.reset()

    def read_element(self):
        for _ in range(100):
            while self.pending:
                event = self.pending.pop(0)
                if isinstance(event, StanzaEvent):
                    return event.element
                if isinstance(event, StreamOpen):
                    self.stream_id = event.attrs.get("id", "")
            data = self.sock.recv(65536)
            assert data, "stream closed"
            self.pending += self.parser.feed(data)
        raise AssertionError("no element")

    def read_until_closed(self, limit: int = 100) -> bool:
        """Whether the peer closes the connection within `limit` reads."""
        return any(not self.sock.recv(65536) for _ in range(limit))

    def close(self) -> None:
        self.sock.close()
