"""RFC 6120 client streams: the C2SSession machine driven with bytes and a fake transport.

A server core on in-memory stores (no VireoServer, no database) supplies the
hosts, accounts and router; nothing here opens a socket.
"""

from __future__ import annotations

import base64
import itertools
from xml.etree.ElementTree import Element

import gevent
import pytest

from tests.certs import make_self_signed
from tests.unit.core_fixtures import make_core
from xmpp import namespaces as ns
from xmpp.c2s import C2SSession
from xmpp.config import load_config
from xmpp.stream import StanzaEvent, StreamEnd, StreamOpen, StreamParser

STRICT = "strict.example"   # c2s_require_encryption (the default)
LAX = "lax.example"         # encryption optional
PLAIN = "plain.example"     # encryption optional, PLAIN allowed in the clear
COMPONENT = "comp.example"
PASSWORD = "correct horse"

CLIENT = f"{{{ns.CLIENT}}}"
STREAM_ERROR = f"{{{ns.STREAMS}}}error"
FEATURES = f"{{{ns.STREAMS}}}features"
SASL = f"{{{ns.SASL}}}"
BIND = f"{{{ns.BIND}}}bind"

_addresses = (f"192.0.2.{i}" for i in itertools.count(1))


class Clock:
    """The server's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    """What a listener gives a session, recording writes; each has its own peer address."""

    def __init__(self, secure: bool = False, address: str | None = None) -> None:
        self.peer = (address or next(_addresses), 40000)
        self.secure = secure
        self.listener = "c2s"
        self.written: list[bytes] = []
        self.closed = False
        self.tls_started = False
        self.timers: list[tuple[float, object]] = []

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(data)

    def start_tls(self) -> None:
        self.tls_started = True

    def close(self) -> None:
        self.closed = True

    def call_later(self, seconds: float, callback) -> None:
        self.timers.append((seconds, callback))

    def run_timers(self) -> list[float]:
        timers, self.timers = self.timers, []
        for _seconds, callback in timers:
            callback()
        return [seconds for seconds, _callback in timers]


class Reader:
    """Parses what the server wrote, as a client would (new parser at each stream header)."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.offset = 0
        self.parser = StreamParser(default_ns=ns.CLIENT, max_stanza_size=10**7)
        self.headers: list[dict[str, str]] = []
        self.ended = False

    def elements(self) -> list[Element]:
        out: list[Element] = []
        for chunk in self.transport.written[self.offset:]:
            if chunk.startswith(b"<?xml"):
                self.parser.reset()
            for event in self.parser.feed(chunk):
                if isinstance(event, StreamOpen):
                    self.headers.append(event.attrs)
                elif isinstance(event, StanzaEvent):
                    out.append(event.element)
                elif isinstance(event, StreamEnd):
                    self.ended = True
        self.offset = len(self.transport.written)
        return out

    def one(self) -> Element:
        elements = self.elements()
        assert len(elements) == 1, [e.tag for e in elements]
        return elements[0]


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server(tmp_path_factory, clock):
    directory = tmp_path_factory.mktemp("c2s-session")
    cert, key = make_self_signed(directory, STRICT, [LAX, PLAIN])
    config = directory / "vireo.cfg.lua"
    config.write_text(f"""
data_path = "{directory / 'data'}"
modules_enabled = {{ "roster", "saslauth", "tls", "ping", "register" }}
ssl = {{ certificate = "{cert}", key = "{key}" }}
vireo_auth_failure_limit = 3
vireo_auth_failure_delay = 2

VirtualHost "{STRICT}"
allow_registration = true
VirtualHost "{LAX}"
c2s_require_encryption = false
allow_registration = true
VirtualHost "{PLAIN}"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
Component "{COMPONENT}"
component_secret = "secret"
""")
    core = make_core(load_config(config), clock)
    for host in (STRICT, LAX, PLAIN):
        for user in ("alice", "bob"):
            core.services.accounts.create(host, user, PASSWORD)
    return core


# -- helpers --------------------------------------------------------------------------

def header(to: str | None = STRICT, version: str | None = "1.0",
           xmlns: str = ns.CLIENT) -> bytes:
    attrs = f" to='{to}'" if to is not None else ""
    attrs += f" version='{version}'" if version is not None else ""
    return (f"<?xml version='1.0'?><stream:stream xmlns='{xmlns}'"
            f" xmlns:stream='{ns.STREAMS}'{attrs}>").encode()


def open_stream(server, to: str | None = STRICT, *, secure: bool = False,
                address: str | None = None, **header_args):
    transport = FakeTransport(secure=secure, address=address)
    session = C2SSession(server.c2s, transport)
    reader = Reader(transport)
    session.data_received(header(to, **header_args))
    return session, transport, reader


def stream_error(reader: Reader) -> str:
    """The condition of the stream error sent, checking that the stream then ended."""
    elements = reader.elements()
    assert elements and elements[-1].tag == STREAM_ERROR, [e.tag for e in elements]
    assert reader.ended
    conditions = [child.tag for child in elements[-1] if child.tag != f"{{{ns.STREAM_ERRORS}}}text"]
    assert len(conditions) == 1
    return conditions[0].rpartition("}")[2]


def plain_auth(user: str, password: str) -> bytes:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{token}</auth>".encode()


def features(reader: Reader) -> Element:
    element = reader.one()
    assert element.tag == FEATURES
    return element


def mechanisms(features_el: Element) -> list[str]:
    return [m.text for m in features_el.iterfind(f"{SASL}mechanisms/{SASL}mechanism")]


def authenticate(server, host: str = STRICT, user: str = "alice", **kwargs):
    session, transport, reader = open_stream(server, host, secure=True, **kwargs)
    reader.elements()
    session.data_received(plain_auth(user, PASSWORD))
    assert reader.one().tag == f"{SASL}success"
    session.data_received(header(host))
    assert reader.one().find(BIND) is not None
    return session, transport, reader


def bind(session, reader, resource: str | None = None, iq_id: str = "bind") -> Element:
    inner = f"<resource>{resource}</resource>" if resource is not None else ""
    session.data_received(
        f"<iq type='set' id='{iq_id}'><bind xmlns='{ns.BIND}'>{inner}</bind></iq>".encode())
    return reader.one()


def bound(server, host: str = STRICT, user: str = "alice", resource: str | None = "res"):
    session, transport, reader = authenticate(server, host, user)
    result = bind(session, reader, resource)
    assert result.get("type") == "result"
    return session, transport, reader


def stanza_error(stanza: Element) -> tuple[str, str]:
    error = stanza.find(f"{CLIENT}error")
    assert error is not None
    condition = next(c for c in error if c.tag.startswith(f"{{{ns.STANZA_ERRORS}}}"))
    return error.get("type"), condition.tag.rpartition("}")[2]


# -- stream header ---------------------------------------------------------------------

def test_header_is_answered_with_features(server):
    _session, transport, reader = open_stream(server)
    features(reader)
    (answer,) = reader.headers
    assert answer["from"] == STRICT
    assert answer["version"] == "1.0"
    assert len(answer["id"]) >= 16
    assert not transport.closed


@pytest.mark.parametrize(("to", "condition"), [
    (None, "improper-addressing"),
    ("", "improper-addressing"),
    ("nowhere.example", "host-unknown"),
    (COMPONENT, "host-unknown"),
])
def test_bad_to_is_a_stream_error_after_our_header(server, to, condition):
    session, transport, reader = open_stream(server, to)
    assert stream_error(reader) == condition
    assert reader.headers, "the header must come before the error"
    assert transport.closed and session.closed


def test_to_is_case_insensitive(server):
    _session, _transport, reader = open_stream(server, STRICT.upper())
    features(reader)
    assert reader.headers[0]["from"] == STRICT


def test_old_version_is_unsupported(server):
    _session, _transport, reader = open_stream(server, version="0.9")
    assert stream_error(reader) == "unsupported-version"


def test_wrong_stream_namespace_is_invalid_namespace(server):
    _session, _transport, reader = open_stream(server, xmlns="jabber:server")
    assert stream_error(reader) == "invalid-namespace"


def test_restart_for_another_host_is_host_unknown(server):
    session, _transport, reader = open_stream(server, STRICT, secure=True)
    reader.elements()
    session.data_received(plain_auth("alice", PASSWORD))
    reader.elements()
    session.data_received(header(LAX))
    assert stream_error(reader) == "host-unknown"


def test_client_closing_the_stream_is_answered_and_closed(server):
    session, transport, reader = open_stream(server)
    reader.elements()
    session.data_received(b"</stream:stream>")
    assert reader.elements() == []
    assert reader.ended and transport.closed and session.closed


# -- features -----------------------------------------------------------------------

def test_insecure_stream_with_encryption_required_offers_only_starttls(server):
    _session, _transport, reader = open_stream(server, STRICT)
    offered = features(reader)
    starttls = offered.find(f"{{{ns.TLS}}}starttls")
    assert starttls is not None
    assert starttls.find(f"{{{ns.TLS}}}required") is not None
    assert mechanisms(offered) == []
    assert offered.find(f"{{{ns.REGISTER_FEATURE}}}register") is None


def test_insecure_stream_with_encryption_optional_offers_scram_but_not_plain(server):
    _session, _transport, reader = open_stream(server, LAX)
    offered = features(reader)
    starttls = offered.find(f"{{{ns.TLS}}}starttls")
    assert starttls is not None and starttls.find(f"{{{ns.TLS}}}required") is None
    assert "PLAIN" not in mechanisms(offered)
    assert {"SCRAM-SHA-1", "SCRAM-SHA-256"} <= set(mechanisms(offered))


def test_insecure_plain_when_allowed(server):
    _session, _transport, reader = open_stream(server, PLAIN)
    assert "PLAIN" in mechanisms(features(reader))


@pytest.mark.parametrize("host", [STRICT, LAX])
def test_secure_stream_offers_every_mechanism_and_no_starttls(server, host):
    _session, _transport, reader = open_stream(server, host, secure=True)
    offered = features(reader)
    assert offered.find(f"{{{ns.TLS}}}starttls") is None
    assert {"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"} <= set(mechanisms(offered))


def test_features_after_authentication_are_bind_session_and_the_modules_own(server):
    _session, _transport, reader = authenticate(server)
    # authenticate() consumed the features; look at what it saw again on a restart.
    session, _transport, reader = open_stream(server, secure=True)
    reader.elements()
    session.data_received(plain_auth("bob", PASSWORD))
    reader.elements()
    session.data_received(header())
    offered = features(reader)
    # mod_roster's roster versioning and mod_presence's pre-approval, as Prosody 0.12.
    assert [child.tag for child in offered] == [
        BIND, f"{{{ns.SESSION}}}session", "{urn:xmpp:features:rosterver}ver",
        "{urn:xmpp:features:pre-approval}sub"]


REGISTER_FEATURE = f"{{{ns.REGISTER_FEATURE}}}register"


@pytest.mark.parametrize(("host", "secure", "offered"), [
    (STRICT, False, False), (STRICT, True, True), (LAX, False, True), (PLAIN, True, False),
])
def test_registration_feature_follows_encryption_policy(server, host, secure, offered):
    _session, _transport, reader = open_stream(server, host, secure=secure)
    assert (features(reader).find(REGISTER_FEATURE) is not None) == offered


def test_in_band_registration_then_login_on_the_same_stream(server):
    session, _transport, reader = open_stream(server, LAX)
    reader.elements()
    session.data_received(
        f"<iq type='set' id='reg'><query xmlns='{ns.REGISTER}'><username>newcomer</username>"
        f"<password>{PASSWORD}</password></query></iq>".encode())
    reply = reader.one()
    assert reply.get("type") == "result" and reply.get("id") == "reg"
    first = base64.b64encode(b"n,,n=newcomer,r=abcdefgh").decode()
    session.data_received(
        f"<auth xmlns='{ns.SASL}' mechanism='SCRAM-SHA-1'>{first}</auth>".encode())
    assert reader.one().tag == f"{SASL}challenge"
    assert server.services.accounts.exists(LAX, "newcomer")


def test_starttls_proceeds_and_resets_the_stream(server):
    session, transport, reader = open_stream(server, STRICT)
    reader.elements()
    session.data_received(f"<starttls xmlns='{ns.TLS}'/>".encode())
    assert reader.one().tag == f"{{{ns.TLS}}}proceed"
    assert transport.tls_started
    transport.secure = True  # what the listener does once the handshake is over
    session.data_received(header(STRICT))
    assert "PLAIN" in mechanisms(features(reader))


def test_starttls_on_a_secure_stream_fails_and_closes(server):
    session, transport, reader = open_stream(server, STRICT, secure=True)
    reader.elements()
    session.data_received(f"<starttls xmlns='{ns.TLS}'/>".encode())
    assert reader.one().tag == f"{{{ns.TLS}}}failure"
    assert reader.ended and transport.closed and not transport.tls_started


# -- SASL ------------------------------------------------------------------------------

def test_sasl_failure_then_retry_succeeds(server):
    session, _transport, reader = open_stream(server, secure=True)
    reader.elements()
    session.data_received(plain_auth("alice", "wrong"))
    failure = reader.one()
    assert failure.tag == f"{SASL}failure"
    assert failure.find(f"{SASL}not-authorized") is not None
    session.data_received(plain_auth("nobody", PASSWORD))
    assert reader.one().find(f"{SASL}not-authorized") is not None
    session.data_received(plain_auth("alice", PASSWORD))
    assert reader.one().tag == f"{SASL}success"
    assert session.username == "alice"


def test_scram_failure_then_plain_retry(server):
    session, _transport, reader = open_stream(server, secure=True)
    reader.elements()
    first = base64.b64encode(b"n,,n=alice,r=clientnonce").decode()
    session.data_received(
        f"<auth xmlns='{ns.SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>".encode())
    assert reader.one().tag == f"{SASL}challenge"
    bogus = base64.b64encode(b"c=biws,r=wrongnonce,p=AAAA").decode()
    session.data_received(f"<response xmlns='{ns.SASL}'>{bogus}</response>".encode())
    assert reader.one().tag == f"{SASL}failure"
    session.data_received(plain_auth("alice", PASSWORD))
    assert reader.one().tag == f"{SASL}success"


def test_abort_then_retry(server):
    session, _transport, reader = open_stream(server, secure=True)
    reader.elements()
    session.data_received(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'/>".encode())
    assert reader.one().tag == f"{SASL}challenge"
    session.data_received(f"<abort xmlns='{ns.SASL}'/>".encode())
    assert reader.one().find(f"{SASL}aborted") is not None
    session.data_received(plain_auth("alice", PASSWORD))
    assert reader.one().tag == f"{SASL}success"


def temporary_failure_text(reader: Reader) -> str:
    """The text of the one SASL temporary-auth-failure the server sent."""
    failure = reader.one()
    assert failure.tag == f"{SASL}failure"
    assert failure.find(f"{SASL}temporary-auth-failure") is not None
    return failure.findtext(f"{SASL}text") or ""


def test_a_throttled_attempt_is_answered_at_once_with_the_wait(server, clock):
    session, transport, reader = open_stream(server, secure=True, address="198.51.100.7")
    reader.elements()
    transport.timers.clear()  # the c2s_timeout check
    for _ in range(3):  # vireo_auth_failure_limit
        session.data_received(plain_auth("alice", "wrong"))
    assert len(reader.elements()) == 3
    # Past the limit the attempt is refused unchecked, the right password too:
    # 2 s from the latest failure.
    session.data_received(plain_auth("alice", PASSWORD))
    assert "wait 2 s" in temporary_failure_text(reader)
    assert session.username is None and transport.timers == [] and not transport.closed
    # Answers do not have to be awaited: each attempt is refused, unchecked.
    session.data_received(plain_auth("alice", "wrong") + plain_auth("alice", PASSWORD))
    first, second = reader.elements()
    assert "wait 2 s" in (first.findtext(f"{SASL}text") or "")
    assert "wait 2 s" in (second.findtext(f"{SASL}text") or "")
    assert session.username is None
    clock.now += 2  # as soon as the wait has passed, the right password is accepted
    session.data_received(plain_auth("alice", PASSWORD))
    assert reader.one().tag == f"{SASL}success"
    assert session.username == "alice"


def test_throttle_is_per_address_and_forgotten_after_a_while(server, clock):
    address = "198.51.100.8"
    for _ in range(3):
        session, _transport, reader = open_stream(server, secure=True, address=address)
        reader.elements()
        session.data_received(plain_auth("alice", "wrong"))
        assert reader.one().tag == f"{SASL}failure"
    # A new connection from the same address is refused too.
    session, _transport, reader = open_stream(server, secure=True, address=address)
    reader.elements()
    session.data_received(plain_auth("alice", PASSWORD))
    assert "wait" in temporary_failure_text(reader)
    # Another address is not.
    other, _other_transport, other_reader = open_stream(server, secure=True)
    other_reader.elements()
    other.data_received(plain_auth("alice", PASSWORD))
    assert other_reader.one().tag == f"{SASL}success"
    # Once the window has passed the address starts afresh.
    clock.now += 3600
    fresh, _transport, fresh_reader = open_stream(server, secure=True, address=address)
    fresh_reader.elements()
    fresh.data_received(plain_auth("alice", PASSWORD))
    assert fresh_reader.one().tag == f"{SASL}success"


def test_exchanges_in_parallel_take_turns_so_they_gain_nothing(server):
    """SCRAM's guess arrives in a later <response/>: exchanges from one address
    past the limit in flight wait for a turn, and once the limit has failed
    the waiting ones are refused unchecked."""
    address = "198.51.100.9"
    first = base64.b64encode(b"n,,n=alice,r=clientnonce").decode()
    scram_auth = f"<auth xmlns='{ns.SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>".encode()
    streams = [open_stream(server, secure=True, address=address) for _ in range(5)]
    for _session, _transport, reader in streams:
        reader.elements()
    for session, _transport, reader in streams[:3]:  # vireo_auth_failure_limit
        session.data_received(scram_auth)
        assert reader.one().tag == f"{SASL}challenge"
    waiting = [gevent.spawn(session.data_received, scram_auth) for session, _, _ in streams[3:]]
    gevent.idle()
    assert not any(greenlet.ready() for greenlet in waiting)
    for session, _transport, reader in streams[:3]:  # each a wrong final message
        session.data_received(f"<response xmlns='{ns.SASL}'>bm9wZQ==</response>".encode())
        assert reader.one().tag == f"{SASL}failure"
    gevent.joinall(waiting, timeout=5, raise_error=True)
    for _session, _transport, reader in streams[3:]:
        assert "wait 2 s" in temporary_failure_text(reader)


def test_auth_on_insecure_stream_with_encryption_required_is_encryption_required(server):
    session, transport, reader = open_stream(server, STRICT)
    reader.elements()
    session.data_received(plain_auth("alice", PASSWORD))
    failure = reader.one()
    assert failure.tag == f"{SASL}failure"
    assert failure.find(f"{SASL}encryption-required") is not None
    assert not transport.closed and session.username is None


def test_plain_in_the_clear_is_encryption_required_unless_allowed(server):
    session, _transport, reader = open_stream(server, LAX)
    reader.elements()
    session.data_received(plain_auth("alice", PASSWORD))
    assert reader.one().find(f"{SASL}encryption-required") is not None
    session, _transport, reader = open_stream(server, PLAIN)
    reader.elements()
    session.data_received(plain_auth("alice", PASSWORD))
    assert reader.one().tag == f"{SASL}success"


def test_auth_after_authentication_is_a_stream_error(server):
    session, _transport, reader = authenticate(server)
    session.data_received(plain_auth("alice", PASSWORD))
    assert stream_error(reader) == "policy-violation"


@pytest.mark.parametrize("stanza", [
    b"<message to='bob@strict.example'><body>hi</body></message>",
    b"<presence/>",
])
def test_stanzas_before_authentication_are_not_authorized(server, stanza):
    session, _transport, reader = open_stream(server, secure=True)
    reader.elements()
    session.data_received(stanza)
    assert stream_error(reader) == "not-authorized"


def test_iq_after_auth_before_bind_is_refused(server):
    session, _transport, reader = authenticate(server)
    session.data_received(b"<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = reader.one()
    assert reply.get("id") == "p"
    assert stanza_error(reply) == ("cancel", "not-allowed")


# -- binding ------------------------------------------------------------------------------

def test_bind_with_the_requested_resource(server):
    session, _transport, reader = authenticate(server, user="bob")
    result = bind(session, reader, "phone")
    assert result.get("type") == "result" and result.get("id") == "bind"
    assert result.findtext(f"{BIND}/{{{ns.BIND}}}jid") == f"bob@{STRICT}/phone"
    assert str(session.jid) == f"bob@{STRICT}/phone"
    assert server.router.resources(session.jid.bare)["phone"] is session
    session.close()


def test_bind_without_a_resource_generates_distinct_ones(server):
    jids = set()
    sessions = []
    for _ in range(2):
        session, _transport, reader = authenticate(server, LAX, "bob")
        text = bind(session, reader).findtext(f"{BIND}/{{{ns.BIND}}}jid")
        assert text.startswith(f"bob@{LAX}/") and len(text) > len(f"bob@{LAX}/")
        jids.add(text)
        sessions.append(session)
    assert len(jids) == 2
    for session in sessions:
        session.close()


def test_empty_resource_is_generated_too(server):
    session, _transport, reader = authenticate(server, LAX, "alice")
    text = bind(session, reader, "  ").findtext(f"{BIND}/{{{ns.BIND}}}jid")
    assert text.startswith(f"alice@{LAX}/") and not text.endswith("/")
    session.close()


def test_bind_conflict_replaces_the_older_session(server):
    first, first_transport, first_reader = bound(server, PLAIN, "alice", "same")
    second, _transport, _reader = bound(server, PLAIN, "alice", "same")
    assert stream_error(first_reader) == "conflict"
    assert first_transport.closed
    assert server.router.resources(second.jid.bare)["same"] is second
    # The old session's end must not unbind the new one.
    first.connection_lost()
    assert server.router.resources(second.jid.bare)["same"] is second
    second.close()
    assert "same" not in server.router.resources(second.jid.bare)


def test_second_bind_is_not_allowed(server):
    session, _transport, reader = bound(server, LAX, "alice", "once")
    reply = bind(session, reader, "twice", iq_id="again")
    assert reply.get("id") == "again"
    assert stanza_error(reply) == ("cancel", "not-allowed")
    assert str(session.jid).endswith("/once")
    session.close()


# -- stanzas after binding -----------------------------------------------------------------

def ping(session, reader, sender: str | None) -> Element:
    attr = f" from='{sender}'" if sender is not None else ""
    session.data_received(
        f"<iq type='get' id='ping'{attr} to='{session.host.name}'>"
        f"<ping xmlns='urn:xmpp:ping'/></iq>".encode())
    return reader.one()


@pytest.mark.parametrize("sender", [None, "alice@lax.example/from", "alice@lax.example",
                                    "ALICE@Lax.Example/from"])
def test_own_from_is_accepted(server, sender):
    session, _transport, reader = bound(server, LAX, "alice", "from")
    reply = ping(session, reader, sender)
    assert reply.get("type") == "result" and reply.get("to") == f"alice@{LAX}/from"
    session.close()


@pytest.mark.parametrize("sender", ["bob@lax.example/from", "bob@lax.example",
                                    "alice@lax.example/other", "lax.example", "not a jid@@"])
def test_spoofed_from_is_invalid_from(server, sender):
    session, transport, reader = bound(server, LAX, "alice", "spoof")
    session.data_received(
        f"<message from='{sender}' to='bob@{LAX}'><body>x</body></message>".encode())
    assert stream_error(reader) == "invalid-from"
    assert transport.closed
    assert "spoof" not in server.router.resources(session.jid.bare)


def test_unknown_top_level_element_is_unsupported_stanza_type(server):
    session, _transport, reader = bound(server, LAX, "alice", "odd")
    session.data_received(b"<thing xmlns='urn:example:unknown'/>")
    assert stream_error(reader) == "unsupported-stanza-type"


def test_stanzas_are_stamped_and_routed(server):
    alice, _transport, alice_reader = bound(server, LAX, "alice", "desk")
    bob, _transport, bob_reader = bound(server, LAX, "bob", "desk")
    alice.data_received(f"<message to='bob@{LAX}/desk' type='chat'><body>hi</body>"
                        "</message>".encode())
    received = bob_reader.one()
    assert received.get("from") == f"alice@{LAX}/desk"
    assert received.findtext(f"{CLIENT}body") == "hi"
    assert alice_reader.elements() == []
    alice.close()
    bob.close()


def test_connection_lost_unbinds(server):
    session, transport, _reader = bound(server, LAX, "bob", "gone")
    session.connection_lost()
    assert session.closed
    assert "gone" not in server.router.resources(session.jid.bare)
    assert not transport.closed or transport.written  # nothing written after the loss


def test_input_after_close_is_ignored(server):
    session, transport, reader = open_stream(server)
    reader.elements()
    session.close()
    count = len(transport.written)
    session.data_received(plain_auth("alice", PASSWORD))
    assert len(transport.written) == count


@pytest.mark.parametrize(("version", "ok"), [
    ("1.0", True), ("1", True), ("1.10", True), ("0.9", False), (None, False),
    ("2.0", True), ("x", False), ("1.x", False)])
def test_stream_version_is_compared_as_numbers(version, ok):
    from xmpp.xmlstream import supported_version

    assert supported_version(version) is ok
