"""The c2s machine over RFC 7395: a session driven by a wsproto client, in memory.

A server core on in-memory stores (no VireoServer, no database) supplies the
hosts, accounts and router; the socket is a recording fake.
"""

from __future__ import annotations

import base64
from xml.etree import ElementTree

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import TextMessage

from http_apps.websocket.frames import WebSocketConnection
from http_apps.websocket.framing import FRAMING
from http_apps.websocket.session import WebSocketC2SSession, WebSocketTransport
from tests.certs import make_self_signed
from tests.unit.core_fixtures import make_core
from xmpp import namespaces as ns
from xmpp.c2s import C2SServices
from xmpp.config import load_config
from xmpp.errors import StreamError

SERVED = "ws.example"
OTHER = "tcp-only.example"


class FakeSocket:
    """The SocketTransport a WebSocketTransport writes through, recording bytes."""

    peer = ("192.0.2.1", 40000)

    def __init__(self) -> None:
        self.data = b""
        self.closed = False
        self.timers: list[float] = []

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def call_later(self, seconds: float, _callback) -> None:
        self.timers.append(seconds)


class Client:
    """The client end: sends text messages, decodes what the server wrote."""

    def __init__(self, services: C2SServices) -> None:
        self.ws = Connection(ConnectionType.CLIENT)
        self.socket = FakeSocket()
        self.frames = WebSocketConnection(max_message_size=10000, max_buffer_size=20000)
        self.transport = WebSocketTransport(
            self.socket, self.frames, secure=True, close_timeout=5)  # type: ignore[arg-type]
        self.session = WebSocketC2SSession(services, self.transport,
                                           lambda domain: domain == SERVED)

    def send(self, text: str) -> None:
        for event in self.frames.receive_data(self.ws.send(TextMessage(text))):
            self.session.message_received(event.data)

    def received(self) -> list[str | int]:
        """Text messages (as text) and close frames (their code), since the last call."""
        self.ws.receive_data(self.socket.data)
        self.socket.data = b""
        return [event.data if isinstance(event, TextMessage) else event.code
                for event in self.ws.events()]

    def open(self, to: str = SERVED) -> list[str | int]:
        self.send(f"<open xmlns='{FRAMING}' to='{to}' version='1.0'/>")
        return self.received()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ws-session")
    cert, key = make_self_signed(directory, SERVED, [OTHER])
    config = directory / "vireo.cfg.lua"
    config.write_text(f"""
data_path = "{directory / 'data'}"
modules_enabled = {{ "roster", "saslauth" }}
ssl = {{ certificate = "{cert}", key = "{key}" }}
VirtualHost "{SERVED}"
VirtualHost "{OTHER}"
""")
    core = make_core(load_config(config))
    core.services.accounts.create(SERVED, "alice", "secret")
    return core.c2s


def parse(text: str) -> ElementTree.Element:
    return ElementTree.fromstring(text)


def error_condition(text: str) -> str:
    element = parse(text)
    assert element.tag == f"{{{ns.STREAMS}}}error"
    return element[0].tag.rpartition("}")[2]


def test_login_open_restart_bind(server):
    client = Client(server)
    opened, features = client.open()
    assert parse(opened).tag == f"{{{FRAMING}}}open"
    assert parse(opened).get("from") == SERVED and parse(opened).get("version") == "1.0"
    assert features.startswith(f"<stream:features xmlns:stream='{ns.STREAMS}'>")
    token = base64.b64encode(b"\0alice\0secret").decode()
    client.send(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{token}</auth>")
    assert client.received() == [f"<success xmlns='{ns.SASL}'/>"]
    assert client.session.message_size_limit == server.stanza_size_limit(None)
    _opened, features = client.open()
    assert parse(features).find(f"{{{ns.BIND}}}bind") is not None
    client.send(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{ns.BIND}'>"
                "<resource>r</resource></bind></iq>")
    [bound] = client.received()
    assert parse(bound).findtext(f".//{{{ns.BIND}}}jid") == f"alice@{SERVED}/r"
    client.send(f"<close xmlns='{FRAMING}'/>")
    assert client.received() == [f"<close xmlns='{FRAMING}'/>", 1000]
    assert client.socket.timers == [server.timeout, 5]


def test_before_authentication_messages_are_small(server):
    client = Client(server)
    client.open()
    assert client.session.message_size_limit == server.unauthenticated_stanza_size


def test_an_element_before_open_is_bad_format(server):
    client = Client(server)
    client.send("<message xmlns='jabber:client'/>")
    opened, error, close, code = client.received()
    assert parse(opened).tag == f"{{{FRAMING}}}open" and parse(opened).get("from") is None
    assert error_condition(error) == "bad-format"
    assert (close, code) == (f"<close xmlns='{FRAMING}'/>", 1000)
    assert client.session.closed


def test_a_host_without_websocket_is_unknown(server):
    client = Client(server)
    _opened, error, _close, _code = client.open(OTHER)
    assert error_condition(error) == "host-unknown"


def test_two_elements_in_one_message_are_bad_format(server):
    client = Client(server)
    client.open()
    client.send(f"<auth xmlns='{ns.SASL}'/><auth xmlns='{ns.SASL}'/>")
    error, _close, code = client.received()
    assert error_condition(error) == "bad-format" and code == 1000


def test_a_limit_crossed_sends_its_code_after_the_stream_error(server):
    client = Client(server)
    client.open()
    client.transport.close_code = 1009
    client.session.close(StreamError("policy-violation"))
    error, _close, code = client.received()
    assert error_condition(error) == "policy-violation" and code == 1009


def test_failing_the_connection_sends_no_xmpp_goodbye(server):
    client = Client(server)
    client.open()
    client.transport.fail(1003, "binary")
    assert client.received() == [1003]
    assert client.socket.closed
