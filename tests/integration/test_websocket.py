"""RFC 7395 XMPP over WebSocket against a server process: aiohttp's client and raw sockets.

Logins with SASL PLAIN and SCRAM over ws:// (behind a trusted proxy saying https)
and wss://, chats with slixmpp users on TCP, and hostile input that must get its
RFC's answer while other sessions carry on.
"""

from __future__ import annotations

import re

import aiohttp
import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import CloseConnection, TextMessage

from tests.integration.bosh_client import request
from tests.integration.clients import close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server
from tests.integration.websocket_client import FRAMING, WsClient, local
from xmpp import namespaces as ns

USERS = {name: f"pw-{name}" for name in ("web", "tcp", "web2", "tcp2")}
PROXIED = {"X-Forwarded-Proto": "https"}  # from loopback, a trusted proxy by default
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("websocket"), modules=("websocket",),
                         http=True, extra="network_settings = { read_timeout = 1 }\n")
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


# -- logging in and chatting ----------------------------------------------------------

@pytest.mark.parametrize("https, mech", [(True, "PLAIN"), (True, "SCRAM-SHA-256"),
                                         (False, "SCRAM-SHA-1")])
def test_login_and_chat_with_a_tcp_user(server, https, mech):
    async def scenario():
        web = await WsClient.connect(server, https=https, headers=None if https else PROXIED)
        tcp = await login(server, "tcp")
        try:
            assert await web.login("web", USERS["web"], mech=mech) == f"web@{server.domain}/ws"
            await web.send(f"<message xmlns='jabber:client' to='tcp@{server.domain}' "
                           "type='chat'><body>from the web</body></message>")
            assert (await tcp.next_message())["body"] == "from the web"
            tcp.send_message(mto=f"web@{server.domain}/ws", mbody="from tcp", mtype="chat")
            message = await web.until(lambda e: local(e) == "message")
            assert message.findtext(f"{{{ns.CLIENT}}}body") == "from tcp"
            await web.send(f"<close xmlns='{FRAMING}'/>")
            assert (await web.recv()).tag == f"{{{FRAMING}}}close"
            closing = await web.receive()
            assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1000)
        finally:
            await web.close()
            await close(tcp)

    run(scenario())


def test_plain_ws_from_an_untrusted_client_gets_no_mechanisms(server):
    async def scenario():
        web = await WsClient.connect(server)
        try:
            features = await web.open()
            assert features.find(f"{{{ns.SASL}}}mechanisms") is None
        finally:
            await web.close()

    run(scenario())


def test_messages_carry_exactly_the_namespace_declarations_needed(server):
    """RFC 7395 3.3.3: each message a document of its own; nothing declared twice."""
    async def scenario():
        web = await WsClient.connect(server, https=True)
        tcp = await login(server, "tcp2")
        try:
            await web.login("web2", USERS["web2"])
            tcp.send_message(mto=f"web2@{server.domain}/ws", mbody="hi", mtype="chat")
            await web.until(lambda e: local(e) == "message")
        finally:
            await web.close()
            await close(tcp)
        return web.raw

    raw = run(scenario())
    opened, features, success, _opened, _features, bound, *rest = raw
    assert re.fullmatch(f"<open xmlns='{FRAMING}' id='[0-9a-f]+' from='localhost' "
                        "version='1.0' xml:lang='en'/>", opened)
    assert features.startswith(f"<stream:features xmlns:stream='{ns.STREAMS}'>"
                               f"<mechanisms xmlns='{ns.SASL}'><mechanism>")
    assert features.count("xmlns") == 2
    assert success == f"<success xmlns='{ns.SASL}'/>"
    assert bound.startswith("<iq xmlns='jabber:client' ") and bound.count("xmlns") == 2
    message = next(text for text in rest if text.startswith("<message"))
    assert message.startswith("<message xmlns='jabber:client' ")
    assert message.count("xmlns") == 1 and "<body>hi</body>" in message


def test_the_endpoint_page_and_cors_on_the_upgrade(server):
    for path in ("/xmpp-websocket", "/xmpp-websocket/"):
        response = request(server.ports["http"], "GET", path)
        assert response.status == 200 and b"WebSocket" in response.data
        assert b"not considered secure" in response.data
    raw = handshake(server, extra="Origin: http://elsewhere.example\r\n")
    head = raw.read_until(rb"\r\n\r\n").decode("latin-1")
    assert head.startswith("HTTP/1.1 101 ")
    assert "Sec-WebSocket-Protocol: xmpp" in head
    assert "Access-Control-Allow-Origin: http://elsewhere.example" in head
    raw.close()


def test_silent_connections_are_pinged(server):
    async def scenario():
        web = await WsClient.connect(server)
        try:
            assert (await web.receive()).type == aiohttp.WSMsgType.PING
        finally:
            await web.close()

    run(scenario())


# -- hostile input --------------------------------------------------------------------

def handshake(server, protocol: str = "xmpp", extra: str = "",
              early: bytes = b"") -> RawClient:
    raw = RawClient(server.ports["http"])
    raw.send(f"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
             f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n"
             f"{extra}\r\n".encode() + early)
    return raw


class RawWs:
    """A raw connection after the 101: frames built by wsproto, or by hand."""

    def __init__(self, server) -> None:
        self.raw = handshake(server)
        assert self.raw.read_until(rb"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
        self.ws = Connection(ConnectionType.CLIENT)

    def send(self, text: str, fin: bool = True) -> None:
        self.raw.send(self.ws.send(TextMessage(text, message_finished=fin)))

    def events_to_close(self) -> list[str | int]:
        """Text messages, then the close frame's code, until the server closes."""
        self.ws.receive_data(self.raw.read_to_close())
        events = [event.data if isinstance(event, TextMessage) else event.code
                  for event in self.ws.events() if isinstance(event, TextMessage | CloseConnection)]
        self.raw.close()
        return events


def stream_error(text: str) -> str:
    match = re.fullmatch(f"<stream:error xmlns:stream='{ns.STREAMS}'><([a-z-]+) "
                         f"xmlns='{ns.STREAM_ERRORS}'/>.*</stream:error>", text)
    assert match, text
    return match.group(1)


def open_message(server) -> str:
    return f"<open xmlns='{FRAMING}' to='{server.domain}' version='1.0'/>"


def bystander_still_chats(server) -> None:
    async def scenario():
        web = await WsClient.connect(server, https=True)
        tcp = await login(server, "tcp")
        try:
            await web.login("web", USERS["web"], resource="bystander")
            tcp.send_message(mto=f"web@{server.domain}/bystander", mbody="still here")
            await web.until(lambda e: local(e) == "message")
        finally:
            await web.close()
            await close(tcp)

    run(scenario())


@pytest.mark.parametrize("messages, condition, code", [
    ((("<message>" + "x" * 20000 + "</message>", True),), "policy-violation", 1009),
    ((("<me", False),) * 8 + (("/>", True),), "resource-constraint", 1008),
    ((("<message/><message/>", True),), "bad-format", 1000),
    ((("<message", True),), "not-well-formed", 1000),
])
def test_limits_and_framing_errors_end_with_a_stream_error(server, messages, condition, code):
    client = RawWs(server)
    client.send(open_message(server))
    for text, fin in messages:
        client.send(text, fin)
    *_opening, error, close_tag, close_code = client.events_to_close()
    assert stream_error(error) == condition
    assert (close_tag, close_code) == (f"<close xmlns='{FRAMING}'/>", code)
    bystander_still_chats(server)


@pytest.mark.parametrize("frame, code", [
    (b"\x82\x84\x00\x00\x00\x00<a/>", 1003),          # binary
    (b"\x81\x04<a/>", 1002),                          # unmasked
    (b"\x81\x82\x00\x00\x00\x00\xc3\x28", 1007),      # invalid UTF-8
])
def test_websocket_protocol_errors_close_with_their_code(server, frame, code):
    client = RawWs(server)
    client.raw.send(frame)
    assert client.events_to_close() == [code]
    bystander_still_chats(server)


def test_a_frame_before_the_handshake_completes_is_refused(server):
    early = Connection(ConnectionType.CLIENT).send(TextMessage(open_message(server)))
    raw = handshake(server, early=early)
    assert raw.read_to_close().startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("protocol", ["chat", "xmpp-framing"])
def test_a_subprotocol_other_than_xmpp_is_refused(server, protocol):
    raw = handshake(server, protocol=protocol)
    assert raw.read_to_close().startswith(b"HTTP/1.1 501 ")


def test_the_clients_close_frame_is_answered(server):
    client = RawWs(server)
    client.send(open_message(server))
    client.raw.send(client.ws.send(CloseConnection(1000)))
    events = client.events_to_close()
    assert events[-1] == 1000 and f"<close xmlns='{FRAMING}'/>" not in events


def test_shutdown_sends_system_shutdown(tmp_path):
    server = make_server(tmp_path, modules=("websocket",), http=True)
    server.start()
    client = RawWs(server)
    client.send(open_message(server))
    client.raw.read_until(rb"<stream:features[^>]*>")
    server.stop()
    *_rest, error, close_tag, code = client.events_to_close()
    assert stream_error(error) == "system-shutdown" and code == 1000
    assert close_tag == f"<close xmlns='{FRAMING}'/>"
