"""XEP-0114 component streams: the session machine driven with bytes and a fake transport."""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

import pytest

from tests.unit.core_fixtures import make_core
from xmpp import namespaces as ns
from xmpp.admin import describe
from xmpp.auth_throttle import FailureThrottle
from xmpp.component import (
    ComponentSession,
    handshake_digest,
    listen_interfaces,
    stanza_size_limit,
    to_client_namespace,
)
from xmpp.config import Config, HostConfig
from xmpp.hosts import hook_iq
from xmpp.jid import parse_jid
from xmpp.stream import StanzaEvent, StreamEnd, StreamOpen, StreamParser

COMPONENT = "comp.example"
SECRET = "s3cret"
USER = "alice@example/phone"
STREAM_ERROR = f"{{{ns.STREAMS}}}error"
ACCEPT = f"{{{ns.COMPONENT}}}"
CLIENT = f"{{{ns.CLIENT}}}"


class Clock:
    """The server's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    def __init__(self, secure: bool = False) -> None:
        self.peer = ("127.0.0.1", 40000)
        self.secure = secure
        self.listener = "component"
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(data)

    def start_tls(self) -> None:
        raise AssertionError("components never start TLS")

    def close(self) -> None:
        self.closed = True

    def call_later(self, seconds: float, callback: object) -> None:
        raise AssertionError("no timers expected")


class Reader:
    """Parses what the server wrote, as the component would."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.offset = 0
        self.parser = StreamParser(default_ns=ns.COMPONENT, max_stanza_size=10**7)
        self.header: dict[str, str] | None = None
        self.ended = False

    def elements(self) -> list[Element]:
        data = b"".join(self.transport.written[self.offset:])
        self.offset = len(self.transport.written)
        out = []
        for event in self.parser.feed(data):
            if isinstance(event, StreamOpen):
                self.header = event.attrs
            elif isinstance(event, StanzaEvent):
                out.append(event.element)
            elif isinstance(event, StreamEnd):
                self.ended = True
        return out


class FakeUserSession:
    """A bound, available client session on the VirtualHost."""

    kind = "c2s"

    def __init__(self, jid: str) -> None:
        self.jid = parse_jid(jid)
        self.priority = 0
        self.available = True
        self.received: list[Element] = []

    def send(self, stanza: Element) -> None:
        self.received.append(stanza)

    def close(self, error=None) -> None:
        raise AssertionError("user session closed")


def make_server(global_options: dict | None = None, component_options: dict | None = None):
    config = Config(Path("/nonexistent/vireo.cfg.lua"), dict(global_options or {}))
    config.hosts["example"] = HostConfig(
        config, "example", "VirtualHost", None,
        {"modules_disabled": ["presence", "offline"]})
    options = {"component_secret": SECRET, **(component_options or {})}
    config.hosts[COMPONENT] = HostConfig(config, COMPONENT, "Component", None, options)
    config.hosts["nosecret.example"] = HostConfig(config, "nosecret.example", "Component",
                                                  None, {})
    config.hosts["internal.example"] = HostConfig(config, "internal.example", "Component",
                                                  "version", {"modules_enabled": ["ping"]})
    config._loading = False
    server = make_core(config, Clock())
    # The listener's throttle rides along for the tests' sessions: two failures, then 2 s.
    server.now = server.clock
    server.throttle = FailureThrottle(max_failures=2, delay=2.0)
    user = FakeUserSession(USER)
    server.router.bind(user, user.jid)
    server.user = user
    return server


@pytest.fixture
def server():
    return make_server()


def header(to: str | None = COMPONENT, xmlns: str = ns.COMPONENT) -> bytes:
    to_attr = f" to='{to}'" if to is not None else ""
    return (f"<?xml version='1.0'?><stream:stream xmlns='{xmlns}'"
            f" xmlns:stream='{ns.STREAMS}'{to_attr}>").encode()


def open_stream(server, to: str | None = COMPONENT, **kwargs):
    transport = FakeTransport(**kwargs)
    session = ComponentSession(server.router, transport, throttle=server.throttle,
                               clock=server.clock)
    reader = Reader(transport)
    session.data_received(header(to))
    return session, transport, reader


def connect(server):
    """A session that has completed the handshake."""
    session, transport, reader = open_stream(server)
    assert reader.elements() == []
    digest = handshake_digest(reader.header["id"], SECRET)
    session.data_received(f"<handshake>{digest}</handshake>".encode())
    assert [e.tag for e in reader.elements()] == [ACCEPT + "handshake"]
    return session, transport, reader


def stream_error(reader: Reader) -> str:
    """The condition of the stream error the server sent, checking it closed after."""
    elements = reader.elements()
    assert elements and elements[-1].tag == STREAM_ERROR
    assert reader.ended
    return elements[-1][0].tag.rpartition("}")[2]


def find_error(stanza: Element) -> Element:
    """The <error/> child: unqualified when built in memory, qualified when parsed."""
    errors = [child for child in stanza if child.tag.rpartition("}")[2] == "error"]
    assert len(errors) == 1
    return errors[0]


def error_condition(stanza: Element) -> tuple[str, str]:
    error = find_error(stanza)
    condition = next(child for child in error if child.tag.startswith(f"{{{ns.STANZA_ERRORS}}}"))
    return error.get("type"), condition.tag.rpartition("}")[2]


# -- handshake --------------------------------------------------------------------

def test_handshake_digest_is_hex_sha1_of_id_and_secret():
    # SHA-1 of the ASCII bytes "3BF96D75secret", as `sha1sum` prints it.
    assert handshake_digest("3BF96D75", "secret") == "20631b4b87b2d6381daeb556438f05036e09ad66"


def test_header_answers_with_an_id_and_the_component_domain(server):
    _session, _transport, reader = open_stream(server)
    reader.elements()
    assert reader.header["from"] == COMPONENT
    assert len(reader.header["id"]) >= 16
    assert reader.header["xmlns"] == ns.COMPONENT
    assert "version" not in reader.header


def test_handshake_accepted_case_insensitively(server):
    session, transport, reader = open_stream(server)
    reader.elements()
    digest = handshake_digest(reader.header["id"], SECRET).upper()
    session.data_received(f"<handshake>{digest}</handshake>".encode())
    assert [e.tag for e in reader.elements()] == [ACCEPT + "handshake"]
    assert session.authenticated and str(session.jid) == COMPONENT
    assert not transport.closed


def test_wrong_handshake_is_not_authorized(server):
    session, transport, reader = open_stream(server)
    reader.elements()
    session.data_received(f"<handshake>{handshake_digest('other', SECRET)}</handshake>".encode())
    assert stream_error(reader) == "not-authorized"
    assert transport.closed and not session.authenticated


def test_handshake_with_children_is_not_authorized(server):
    session, _transport, reader = open_stream(server)
    reader.elements()
    session.data_received(b"<handshake><x/></handshake>")
    assert stream_error(reader) == "not-authorized"


def wrong_handshake(server) -> str:
    """The stream error condition answering a handshake with a wrong secret."""
    session, _transport, reader = open_stream(server)
    reader.elements()
    session.data_received(f"<handshake>{handshake_digest('other', SECRET)}</handshake>".encode())
    return stream_error(reader)


def test_repeated_wrong_secrets_are_refused_unchecked_with_the_wait(server):
    assert [wrong_handshake(server) for _ in range(2)] == ["not-authorized"] * 2
    # Past the limit even the right secret is refused at once, unchecked.
    session, transport, reader = open_stream(server)
    reader.elements()
    session.data_received(f"<handshake>{handshake_digest(reader.header['id'], SECRET)}"
                          "</handshake>".encode())
    error = reader.elements()[-1]
    assert error.tag == STREAM_ERROR and error[0].tag == f"{{{ns.STREAM_ERRORS}}}policy-violation"
    assert "wait 2 s" in (error.findtext(f"{{{ns.STREAM_ERRORS}}}text") or "")
    assert transport.closed and not session.authenticated
    server.now.now += 2  # as soon as the wait has passed the right secret is accepted
    connect(server)
    # ...and the success forgets the address's failures.
    assert wrong_handshake(server) == "not-authorized"


def test_component_without_secret_is_not_authorized(server):
    session, _transport, reader = open_stream(server, to="nosecret.example")
    reader.elements()
    session.data_received(f"<handshake>{handshake_digest(reader.header['id'], '')}"
                          "</handshake>".encode())
    assert stream_error(reader) == "not-authorized"


@pytest.mark.parametrize("to", ["unknown.example", "example", "internal.example"])
def test_unknown_or_non_external_host_is_host_unknown(server, to):
    _session, transport, reader = open_stream(server, to=to)
    assert stream_error(reader) == "host-unknown"
    assert reader.header is not None and transport.closed


def test_missing_to_is_improper_addressing(server):
    _session, _transport, reader = open_stream(server, to=None)
    assert stream_error(reader) == "improper-addressing"


def test_client_namespace_stream_is_invalid_namespace(server):
    transport = FakeTransport()
    session = ComponentSession(server.router, transport, throttle=server.throttle,
                               clock=server.clock)
    reader = Reader(transport)
    session.data_received(header(xmlns=ns.CLIENT))
    assert stream_error(reader) == "invalid-namespace"


def test_stanza_before_handshake_is_not_authorized(server):
    session, _transport, reader = open_stream(server)
    reader.elements()
    session.data_received(f"<message to='{USER}'><body>hi</body></message>".encode())
    assert stream_error(reader) == "not-authorized"
    assert server.user.received == []


def test_second_handshake_and_unknown_elements_are_unsupported(server):
    session, _transport, reader = connect(server)
    session.data_received(b"<handshake>00</handshake>")
    assert stream_error(reader) == "unsupported-stanza-type"
    other, _transport, reader = connect(make_server())
    other.data_received(b"<foo/>")
    assert stream_error(reader) == "unsupported-stanza-type"


# -- conflicts -------------------------------------------------------------------

def test_second_connection_is_refused_by_default(server):
    _first, first_transport, first_reader = connect(server)
    second, _transport, reader = open_stream(server)
    reader.elements()
    second.data_received(f"<handshake>{handshake_digest(reader.header['id'], SECRET)}"
                         "</handshake>".encode())
    assert stream_error(reader) == "conflict"
    assert not first_transport.closed and first_reader.elements() == []
    # The first one still receives what is sent to the domain.
    server.router.route(Element(CLIENT + "message", {"from": USER, "to": COMPONENT}), None)
    assert [e.tag for e in first_reader.elements()] == [ACCEPT + "message"]


def test_kick_old_replaces_the_first_connection():
    server = make_server(component_options={"component_conflict_resolve": "kick_old"})
    _first, first_transport, first_reader = connect(server)
    _second, second_transport, second_reader = connect(server)
    assert stream_error(first_reader) == "conflict"
    assert first_transport.closed and not second_transport.closed
    server.router.route(Element(CLIENT + "message", {"from": USER, "to": COMPONENT}), None)
    assert [e.tag for e in second_reader.elements()] == [ACCEPT + "message"]


def test_unknown_conflict_policy_falls_back_to_kick_new():
    server = make_server(component_options={"component_conflict_resolve": "kick_both"})
    connect(server)
    second, _transport, reader = open_stream(server)
    reader.elements()
    second.data_received(f"<handshake>{handshake_digest(reader.header['id'], SECRET)}"
                         "</handshake>".encode())
    assert stream_error(reader) == "conflict"


def test_disconnect_frees_the_domain_for_a_new_connection(server):
    first, _transport, _reader = connect(server)
    first.connection_lost()
    _second, transport, _reader = connect(server)
    assert not transport.closed


def test_admin_listing_names_the_component_once_authenticated(server):
    session, _transport, reader = open_stream(server)
    reader.elements()
    assert describe(session)["id"] is None
    digest = handshake_digest(reader.header["id"], SECRET)
    session.data_received(f"<handshake>{digest}</handshake>".encode())
    assert describe(session) == {"kind": "component", "id": COMPONENT, "address": "127.0.0.1",
                                 "port": 40000, "secure": False, "listener": "component"}


# -- stanzas from the component ------------------------------------------------------

def test_message_from_any_jid_on_the_domain_reaches_the_user(server):
    session, _transport, _reader = connect(server)
    session.data_received(
        f"<message from='Bot@{COMPONENT}/x' to='{USER}' type='chat'><body>hi</body>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/></message>".encode())
    [message] = server.user.received
    assert message.tag == CLIENT + "message"
    assert message.get("from") == f"bot@{COMPONENT}/x"
    assert message.findtext(CLIENT + "body") == "hi"
    assert message.find("{http://jabber.org/protocol/chatstates}active") is not None


def test_stanza_in_jabber_client_namespace_is_accepted(server):
    session, _transport, _reader = connect(server)
    session.data_received(f"<message xmlns='jabber:client' to='{USER}'><body>x</body>"
                          "</message>".encode())
    [message] = server.user.received
    assert message.get("from") == COMPONENT


def test_stanza_without_from_gets_the_component_domain(server):
    session, _transport, _reader = connect(server)
    session.data_received(f"<presence to='{USER}'/>".encode())
    [presence] = server.user.received
    assert presence.tag == CLIENT + "presence"
    assert presence.get("from") == COMPONENT


@pytest.mark.parametrize("sender", ["alice@example", "sub.comp.example", "x@other.example/r",
                                    "a@b@c"])
def test_from_outside_the_domain_is_invalid_from(server, sender):
    session, transport, reader = connect(server)
    session.data_received(f"<message from='{sender}' to='{USER}'/>".encode())
    assert stream_error(reader) == "invalid-from"
    assert server.user.received == [] and transport.closed


def test_from_check_can_be_turned_off():
    server = make_server(component_options={"validate_from_addresses": False})
    session, _transport, _reader = connect(server)
    session.data_received(f"<message from='someone@other.example' to='{USER}'/>".encode())
    [message] = server.user.received
    assert message.get("from") == "someone@other.example"


def test_stanza_without_to_gets_bad_request(server):
    session, transport, reader = connect(server)
    session.data_received(f"<iq type='get' id='q1' from='bot@{COMPONENT}'>"
                          f"<query xmlns='{ns.VERSION}'/></iq>".encode())
    [reply] = reader.elements()
    assert reply.tag == ACCEPT + "iq" and reply.get("type") == "error"
    assert reply.get("id") == "q1" and reply.get("to") == f"bot@{COMPONENT}"
    assert error_condition(reply) == ("modify", "bad-request")
    assert not transport.closed
    # An error is never answered with an error.
    session.data_received(b"<message type='error'/>")
    assert reader.elements() == []


def test_iq_to_a_local_host_is_answered_on_the_component_stream(server):
    session, _transport, reader = connect(server)
    session.data_received(f"<iq type='get' id='v' to='internal.example'>"
                          f"<query xmlns='{ns.VERSION}'/></iq>".encode())
    [reply] = reader.elements()
    assert reply.get("type") == "result" and reply.get("to") == COMPONENT
    assert reply.find(f"{{{ns.VERSION}}}query/{{{ns.VERSION}}}name").text == "Vireo"


def test_stream_is_not_subject_to_require_encryption():
    server = make_server({"require_encryption": True, "c2s_require_encryption": True})
    session, transport, _reader = connect(server)
    assert not transport.secure and session.authenticated
    session.data_received(f"<message to='{USER}'/>".encode())
    assert len(server.user.received) == 1


def test_stanza_size_limit_is_policy_violation():
    transport = FakeTransport()
    server = make_server()
    session = ComponentSession(server.router, transport, throttle=server.throttle,
                               max_stanza_size=10000, clock=server.clock)
    reader = Reader(transport)
    session.data_received(header())
    reader.elements()
    session.data_received(b"<message><body>" + b"x" * 10001 + b"</body></message>")
    assert stream_error(reader) == "policy-violation"


def test_stanza_size_limit_options():
    def limit(options):
        return stanza_size_limit(make_server(options).config)

    assert limit({}) == 512 * 1024
    assert limit({"s2s_stanza_size_limit": 20000}) == 20000
    assert limit({"s2s_stanza_size_limit": 20000, "component_stanza_size_limit": 30000}) == 30000
    assert limit({"component_stanza_size_limit": 5}) == 10000


def test_listen_interfaces_default_to_loopback():
    def interfaces(options):
        return listen_interfaces(make_server(options).config)

    assert interfaces({"interfaces": ["*"]}) == ["127.0.0.1", "::1"]
    assert interfaces({"local_interfaces": ["127.0.0.2"]}) == ["127.0.0.2"]
    assert interfaces({"component_interface": "10.0.0.1"}) == ["10.0.0.1"]
    assert interfaces({"component_interfaces": ["*"], "component_interface": "x"}) == ["*"]


# -- stanzas to the component ----------------------------------------------------------

def test_stanzas_to_the_domain_and_its_jids_reach_the_component(server):
    _session, _transport, reader = connect(server)
    for to in (COMPONENT, f"bot@{COMPONENT}", f"bot@{COMPONENT}/res"):
        message = Element(CLIENT + "message", {"from": USER, "to": to})
        body = Element(CLIENT + "body")
        body.text = "hello"
        message.append(body)
        server.router.route(message, server.user)
    received = reader.elements()
    assert [(e.tag, e.get("to")) for e in received] == [
        (ACCEPT + "message", COMPONENT), (ACCEPT + "message", f"bot@{COMPONENT}"),
        (ACCEPT + "message", f"bot@{COMPONENT}/res")]
    assert all(e.findtext(ACCEPT + "body") == "hello" for e in received)


def test_stanzas_to_a_disconnected_component_get_remote_server_timeout(server):
    session, _transport, _reader = connect(server)
    session.close()
    iq = Element(CLIENT + "iq", {"from": USER, "to": f"x@{COMPONENT}", "type": "get",
                                 "id": "1"})
    iq.append(Element(f"{{{ns.PING}}}ping"))
    server.router.route(iq, server.user)
    [reply] = server.user.received
    assert reply.get("type") == "error" and reply.get("id") == "1"
    assert error_condition(reply) == ("wait", "remote-server-timeout")
    error = find_error(reply)
    assert error.get("by") == COMPONENT
    assert error.find("{xmpp:prosody.im/protocol/component}not-connected") is not None
    server.user.received.clear()
    server.router.route(Element(CLIENT + "message", {"from": USER, "to": COMPONENT,
                                                     "type": "error"}), server.user)
    assert server.user.received == []


def test_disconnected_component_with_a_name_answers_disco_info():
    server = make_server(component_options={"name": "Gateway"})
    iq = Element(CLIENT + "iq", {"from": USER, "to": COMPONENT, "type": "get", "id": "d"})
    iq.append(Element(f"{{{ns.DISCO_INFO}}}query"))
    server.router.route(iq, server.user)
    [reply] = server.user.received
    assert reply.get("type") == "result"
    identity = reply.find(f"{{{ns.DISCO_INFO}}}query/{{{ns.DISCO_INFO}}}identity")
    assert identity.attrib == {"category": "component", "type": "generic", "name": "Gateway"}


def test_full_jid_iq_on_an_internal_component_reaches_its_user_handlers(server):
    host = server.router.hosts["internal.example"]
    seen = []
    hook_iq(host, "get", "{urn:example}q", lambda request: seen.append(request) or None,
            target="bare")
    iq = Element(CLIENT + "iq", {"from": USER, "to": "room@internal.example/nick",
                                 "type": "get", "id": "f"})
    iq.append(Element("{urn:example}q"))
    server.router.route(iq, server.user)
    assert len(seen) == 1 and server.user.received[0].get("type") == "result"


# -- helpers ------------------------------------------------------------------------------

def test_to_client_namespace_renames_only_the_stream_namespace():
    stanza = Element(ACCEPT + "message")
    stanza.append(Element(ACCEPT + "body"))
    stanza.append(Element("{urn:example}x"))
    to_client_namespace(stanza)
    assert [e.tag for e in stanza.iter()] == [CLIENT + "message", CLIENT + "body",
                                             "{urn:example}x"]
