"""Namespaces on the wire, per stream kind: what a raw peer receives declares
no default namespace that is already in scope, and parses into the namespaces
the stream kind calls for (RFC 6120 4.8, XEP-0114, XEP-0220, XEP-0206).

Prosody 0.12 writes stanzas unqualified inside a stream (they take the
stream's content namespace) and qualifies them inside a BOSH <body/>; so does
Vireo.
"""

from __future__ import annotations

import base64
import re
import socket

import pytest

from tests.integration.bosh_client import BoshClient, local
from tests.integration.raw_client import RawClient, redundant_xmlns
from tests.integration.server_fixture import make_server
from xmpp import namespaces as ns
from xmpp.component import handshake_digest
from xmpp.stream import StanzaEvent, StreamParser

DOMAIN = "localhost"
COMPONENT, SECRET = "comp.localhost", "comp-secret"
REMOTE = "raw.example"
USERS = {"alice": "pw-alice", "bob": "pw-bob"}
DISCO_INFO = f"<query xmlns='{ns.DISCO_INFO}'/>"
EXTENSION = "<x xmlns='urn:example:x'><y/></x>"


@pytest.fixture(scope="module")
def server(tmp_path_factory, dns):
    server = make_server(
        tmp_path_factory.mktemp("wire"), s2s=True, http=True, modules=("bosh",),
        extra=f'unbound = {{ forward = "{dns.forward}" }}\ns2s_require_encryption = false\n',
        host_extra=f'Component "{COMPONENT}"\n    component_secret = "{SECRET}"\n')
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


def stanzas(data: bytes, default_ns: str) -> list:
    """The top-level elements of one stream's bytes (from its header on)."""
    parser = StreamParser(default_ns=default_ns, max_stanza_size=1 << 20)
    return [event.element for event in parser.feed(data) if isinstance(event, StanzaEvent)]


def after_last_header(transcript: list[bytes]) -> bytes:
    data = b"".join(transcript)
    return data[data.rfind(b"<?xml"):]


def logged_in(server, user: str) -> RawClient:
    client = RawClient(server.c2s_port)
    client.login(server.domain, server.cert, user, USERS[user])
    return client


def test_c2s_stream(server):
    client = logged_in(server, "alice")
    try:
        client.send(f"<iq type='get' id='i1' to='{DOMAIN}'>{DISCO_INFO}</iq>")
        client.read_until(rb"</iq>")
        client.send(f"<iq type='get' id='i2' to='{DOMAIN}'><nope xmlns='urn:nope'/></iq>")
        client.read_until(rb"</iq>")
        client.send(f"<message to='alice@{DOMAIN}/raw' id='m1'><body>me</body>{EXTENSION}"
                    "<x xmlns='jabber:client'/></message>")
        client.read_until(rb"</message>")
        client.send("</stream:stream>")
        client.read_to_close()
    finally:
        client.close()
    data = b"".join(client.transcript)
    assert redundant_xmlns(data) == []
    received = stanzas(after_last_header(client.transcript), ns.CLIENT)
    assert [element.tag for element in received] == [f"{{{ns.STREAMS}}}features"] + [
        f"{{{ns.CLIENT}}}{name}" for name in ("iq", "iq", "iq", "message")]
    info, error, message = received[2], received[3], received[4]
    assert info[0].tag == f"{{{ns.DISCO_INFO}}}query"
    assert error.find(f"{{{ns.CLIENT}}}error/{{{ns.STANZA_ERRORS}}}service-unavailable") \
        is not None
    assert [child.tag for child in message] == [
        f"{{{ns.CLIENT}}}body", "{urn:example:x}x", f"{{{ns.CLIENT}}}x"]
    assert message[1][0].tag == "{urn:example:x}y"


def test_component_stream(server):
    """The handshake answer is a bare <handshake/> (in jabber:component:accept by
    inheritance), and stanzas for the component are unqualified too."""
    component = RawClient(server.ports["component"])
    user = logged_in(server, "bob")
    try:
        component.send(f"<stream:stream xmlns='{ns.COMPONENT}' xmlns:stream='{ns.STREAMS}' "
                       f"to='{COMPONENT}'>")
        header = component.read_until(rb"<stream:stream[^>]*>")
        stream_id = re.search(rb" id='([^']+)'", header).group(1).decode()
        component.send(f"<handshake>{handshake_digest(stream_id, SECRET)}</handshake>")
        component.read_until(rb"<handshake[^>]*/>|</handshake>")
        user.send(f"<message to='someone@{COMPONENT}' id='m1'><body>hi</body>{EXTENSION}"
                  "</message>")
        component.read_until(rb"</message>")
        component.send(f"<iq type='get' id='c1' from='{COMPONENT}' to='{DOMAIN}'>"
                       f"{DISCO_INFO}</iq>")
        component.read_until(rb"</iq>")
        component.send("</stream:stream>")
        component.read_to_close()
    finally:
        component.close()
        user.close()
    data = b"".join(component.transcript)
    assert redundant_xmlns(data) == []
    received = stanzas(data, ns.COMPONENT)
    assert [element.tag for element in received] == [
        f"{{{ns.COMPONENT}}}{name}" for name in ("handshake", "message", "iq")]
    assert [child.tag for child in received[1]] == [f"{{{ns.COMPONENT}}}body",
                                                    "{urn:example:x}x"]
    assert received[2][0].tag == f"{{{ns.DISCO_INFO}}}query"


def test_s2s_streams(server, dns):
    """A raw server at raw.example: Vireo's outgoing stream (dialback, then a
    routed stanza) and its incoming one (features, the dialback verify answer)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    dns.add_srv(REMOTE, f"xmpp.{REMOTE}", listener.getsockname()[1])
    dns.add_address(f"xmpp.{REMOTE}", "127.0.0.1")
    user = logged_in(server, "alice")
    incoming = RawClient(server.ports["s2s"])
    outgoing = None
    try:
        user.send(f"<message to='someone@{REMOTE}' id='s1'><body>hi</body>{EXTENSION}"
                  "</message>")
        outgoing = RawClient.accepted(listener.accept()[0])
        outgoing.read_until(rb"<stream:stream[^>]*>")
        outgoing.send(f"<?xml version='1.0'?><stream:stream xmlns='{ns.SERVER}' "
                      f"xmlns:stream='{ns.STREAMS}' xmlns:db='{ns.DIALBACK}' id='raw-1' "
                      f"from='{REMOTE}' to='{DOMAIN}' version='1.0'><stream:features>"
                      "<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>")
        key = re.search(rb"<db:result[^>]*>([^<]+)</db:result>",
                        outgoing.read_until(rb"</db:result>")).group(1).decode()
        # As the receiving server, ask Vireo (the authoritative one) about the key.
        incoming.send(f"<?xml version='1.0'?><stream:stream xmlns='{ns.SERVER}' "
                      f"xmlns:stream='{ns.STREAMS}' xmlns:db='{ns.DIALBACK}' "
                      f"from='{REMOTE}' to='{DOMAIN}' version='1.0'>")
        incoming.read_until(rb"</stream:features>")
        incoming.send(f"<db:verify from='{REMOTE}' to='{DOMAIN}' id='raw-1'>{key}</db:verify>")
        incoming.read_until(rb"<db:verify[^>]*(/>|</db:verify>)")
        outgoing.send(f"<db:result from='{REMOTE}' to='{DOMAIN}' type='valid'/>")
        outgoing.read_until(rb"</message>")
    finally:
        for client in (user, incoming, outgoing):
            if client is not None:
                client.close()
        listener.close()
    for stream in (incoming, outgoing):
        assert redundant_xmlns(b"".join(stream.transcript)) == []
    verify = stanzas(b"".join(incoming.transcript), ns.SERVER)[-1]
    assert verify.tag == f"{{{ns.DIALBACK}}}verify" and verify.get("type") == "valid"
    result, message = stanzas(b"".join(outgoing.transcript), ns.SERVER)
    assert result.tag == f"{{{ns.DIALBACK}}}result"
    assert message.tag == f"{{{ns.SERVER}}}message"
    assert [child.tag for child in message] == [f"{{{ns.SERVER}}}body", "{urn:example:x}x"]


def test_bosh_bodies(server):
    """Inside a <body/> stanzas carry xmlns='jabber:client' (the body's own default
    namespace is BOSH's) and nothing below them repeats it."""
    client = BoshClient(server.ports["https"], DOMAIN, https=True)
    responses = [client.post(to=DOMAIN, wait="60", hold="1", ver="1.6",
                             **{"xmpp:version": "1.0"})]
    client.sid = responses[0].body.get("sid")
    token = base64.b64encode(b"\0bob\0" + USERS["bob"].encode()).decode()
    responses.append(client.post(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{token}</auth>"))
    responses.append(client.post(**{"xmpp:restart": "true"}))
    for payload in (f"<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='{ns.BIND}'/></iq>",
                    f"<iq xmlns='jabber:client' type='get' id='i1' to='{DOMAIN}'>"
                    f"{DISCO_INFO}</iq>"):
        responses.append(client.post(payload))
    client.post(type="terminate")
    for response in responses:
        assert redundant_xmlns(response.data) == []
    children = [child for response in responses for child in response.body]
    assert [child.tag for child in children] == [
        f"{{{ns.STREAMS}}}features", f"{{{ns.SASL}}}success", f"{{{ns.STREAMS}}}features",
        f"{{{ns.CLIENT}}}iq", f"{{{ns.CLIENT}}}iq"]
    assert [local(child) for child in children[2]] == ["bind", "session"]
    assert children[4][0].tag == f"{{{ns.DISCO_INFO}}}query"
