"""s2s stream machines without sockets: domain checks, dialback, piggybacking, queues, timeouts."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from types import SimpleNamespace
from xml.etree.ElementTree import Element

import pytest

from xmpp import namespaces as ns
from xmpp.config import load_config
from xmpp.dialback import DialbackKeys
from xmpp.listeners import SocketTransport
from xmpp.s2s import DB_RESULT, DB_VERIFY, S2SIncoming, S2SOutgoing
from xmpp.s2s_manager import S2SManager
from xmpp.s2s_tls import PeerCertificate
from xmpp.stream import StanzaEvent, StreamOpen, StreamParser

LOCAL, OTHER_LOCAL = "b.example", "c.example"
REMOTE, OTHER_REMOTE = "a.example", "z.example"
STREAM_NS = (f"xmlns='{ns.SERVER}' xmlns:stream='{ns.STREAMS}' "
             f"xmlns:db='{ns.DIALBACK}'")


class FakeTransport:
    def __init__(self, secure: bool = False) -> None:
        self.peer = ("192.0.2.1", 40000)
        self.listener = "s2s"
        self.secure = secure
        self.data = b""
        self.closed = False
        self.tls_requested = False
        self.timers: list = []

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.data += data

    def start_tls(self) -> None:
        self.tls_requested = True

    def close(self) -> None:
        self.closed = True

    def call_later(self, seconds, callback) -> None:
        self.timers.append((seconds, callback))

    def events(self):
        """Everything written so far, parsed as the peer would."""
        parser = StreamParser(default_ns=ns.SERVER, max_stanza_size=1 << 20)
        return parser.feed(self.data)

    def elements(self) -> list[Element]:
        return [e.element for e in self.events() if isinstance(e, StanzaEvent)]

    def stream_error(self) -> str | None:
        for element in self.elements():
            if element.tag == f"{{{ns.STREAMS}}}error":
                return element[0].tag.rpartition("}")[2]
        return None


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env(tmp_path):
    return make_env(tmp_path, "s2s_require_encryption = false")


def make_env(tmp_path, options: str = ""):
    """A manager over a config with `options` (Lua) and fake router, clock, DNS and TLS."""
    config_path = tmp_path / "vireo.cfg.lua"
    config_path.write_text(f"""
dialback_secret = "unit-test-secret"
s2s_timeout = 30
s2s_idle_timeout = 100
{options}
VirtualHost "{LOCAL}"
VirtualHost "{OTHER_LOCAL}"
VirtualHost "closed.example"
    modules_disabled = {{ "s2s" }}
""")
    config = load_config(config_path)
    routed: list[tuple[Element, object]] = []
    router = SimpleNamespace(
        hosts={name: object() for name in (LOCAL, OTHER_LOCAL, "closed.example")},
        route=lambda stanza, origin=None: routed.append((stanza, origin)),
        bounce=lambda stanza, origin, error: routed.append((error.to_reply(stanza), origin)))
    clock = Clock()
    manager = S2SManager(config, router, clock, resolver=SimpleNamespace(), tls=SimpleNamespace(
        server_context=lambda host: None, client_context=lambda host: None))
    verifies: list[tuple] = []
    manager.request_verify = lambda session, local, remote, key: verifies.append(
        (session, local, remote, key))
    return SimpleNamespace(manager=manager, routed=routed, verifies=verifies, clock=clock,
                           config=config)


def incoming(env, *, to=LOCAL, sender=REMOTE, secure=False) -> tuple[S2SIncoming, FakeTransport]:
    transport = FakeTransport(secure=secure)
    session = S2SIncoming(env.manager, transport, env.clock())
    attrs = (f" to='{to}'" if to else "") + (f" from='{sender}'" if sender else "")
    session.data_received(f"<stream:stream {STREAM_NS}{attrs} version='1.0'>".encode())
    return session, transport


def dialback_in(env, session, sender=REMOTE, to=LOCAL, valid=True):
    session.data_received(f"<db:result from='{sender}' to='{to}'>k3y</db:result>".encode())
    assert env.verifies[-1][1:] == (to, sender, "k3y")
    session.dialback_verified(sender, to, valid)


# -- incoming: stream header ---------------------------------------------------------

def test_header_answers_with_id_and_offers_dialback(env):
    session, transport = incoming(env)
    opened = transport.events()[0]
    assert isinstance(opened, StreamOpen)
    assert opened.attrs["from"] == LOCAL and opened.attrs["to"] == REMOTE
    assert opened.attrs["id"] == session.stream_id and opened.attrs["xmlns:db"] == ns.DIALBACK
    features = transport.elements()[0]
    assert [child.tag for child in features] == ["{urn:xmpp:features:dialback}dialback"]
    assert not transport.closed


def test_stream_to_a_domain_we_do_not_serve_is_host_unknown(env):
    _session, transport = incoming(env, to="elsewhere.example")
    assert isinstance(transport.events()[0], StreamOpen)  # header first, then the error
    assert transport.stream_error() == "host-unknown"
    assert transport.closed


def test_stream_to_a_host_without_s2s_is_policy_violation(env):
    _session, transport = incoming(env, to="closed.example")
    assert transport.stream_error() == "policy-violation"


def test_stream_from_a_domain_we_serve_is_refused(env):
    _session, transport = incoming(env, sender=OTHER_LOCAL)
    assert transport.stream_error() == "undefined-condition"


def test_malformed_stream_address_is_improper_addressing(env):
    _session, transport = incoming(env, sender="user@a.example")
    assert transport.stream_error() == "improper-addressing"


# -- incoming: stanzas and the domains they may use ---------------------------------

def test_stanza_before_authentication_is_not_authorized(env):
    session, transport = incoming(env)
    session.data_received(f"<message from='u@{REMOTE}' to='v@{LOCAL}'/>".encode())
    assert transport.stream_error() == "not-authorized"
    assert env.routed == []


def test_verified_domain_may_send_and_stanzas_become_jabber_client(env):
    session, transport = incoming(env)
    dialback_in(env, session)
    result = transport.elements()[-1]
    assert result.tag == DB_RESULT and result.get("type") == "valid"
    assert (result.get("from"), result.get("to")) == (LOCAL, REMOTE)
    session.data_received(
        f"<message from='u@{REMOTE}/r' to='v@{LOCAL}' type='chat'><body>hi</body></message>"
        .encode())
    stanza, origin = env.routed[-1]
    assert origin is session
    assert stanza.tag == f"{{{ns.CLIENT}}}message"
    assert stanza.findtext(f"{{{ns.CLIENT}}}body") == "hi"
    assert not transport.closed


def test_s2s_stanzas_are_counted_for_metrics(env):
    from xmpp.metrics import STANZAS_IN, STANZAS_OUT

    tag = f"{{{ns.CLIENT}}}message"
    before = STANZAS_IN[tag], STANZAS_OUT[tag]
    session, _transport = incoming(env)
    dialback_in(env, session)
    session.data_received(
        f"<message from='u@{REMOTE}/r' to='v@{LOCAL}'><body>hi</body></message>".encode())
    link, _ = outgoing(env)
    link.send_stanza(LOCAL, message(f"u@{LOCAL}", f"v@{REMOTE}", "m"), env.clock())
    assert (STANZAS_IN[tag], STANZAS_OUT[tag]) == (before[0] + 1, before[1] + 1)


def test_stanza_from_an_unverified_domain_is_invalid_from(env):
    session, transport = incoming(env)
    dialback_in(env, session)
    session.data_received(f"<message from='u@{OTHER_REMOTE}' to='v@{LOCAL}'/>".encode())
    assert transport.stream_error() == "invalid-from"
    assert env.routed == []


def test_stanza_to_a_domain_we_do_not_serve_is_host_unknown(env):
    session, transport = incoming(env)
    dialback_in(env, session)
    session.data_received(f"<message from='u@{REMOTE}' to='v@elsewhere.example'/>".encode())
    assert transport.stream_error() == "host-unknown"


def test_stanza_without_addresses_is_improper_addressing(env):
    session, transport = incoming(env)
    dialback_in(env, session)
    session.data_received(f"<message to='v@{LOCAL}'/>".encode())
    assert transport.stream_error() == "improper-addressing"


def test_refused_key_authenticates_nothing(env):
    session, transport = incoming(env)
    dialback_in(env, session, valid=False)
    assert transport.elements()[-1].get("type") == "invalid"
    session.data_received(f"<message from='u@{REMOTE}' to='v@{LOCAL}'/>".encode())
    assert transport.stream_error() == "not-authorized"


def test_piggybacked_domains_are_verified_separately(env):
    session, transport = incoming(env)
    dialback_in(env, session)
    dialback_in(env, session, sender=OTHER_REMOTE, to=OTHER_LOCAL)
    session.data_received(f"<iq type='get' id='1' from='{OTHER_REMOTE}' to='{OTHER_LOCAL}'>"
                          f"<ping xmlns='urn:xmpp:ping'/></iq>".encode())
    assert env.routed[-1][0].get("from") == OTHER_REMOTE
    assert not transport.closed
    assert session.describe()["domains"] == [f"{REMOTE}->{LOCAL}", f"{OTHER_REMOTE}->{OTHER_LOCAL}"]


def test_dialback_for_a_domain_we_do_not_serve_is_host_unknown(env):
    session, transport = incoming(env)
    session.data_received(f"<db:result from='{REMOTE}' to='nope.example'>k</db:result>".encode())
    assert transport.stream_error() == "host-unknown"
    assert env.verifies == []


def test_dialback_without_encryption_when_required(env):
    env.manager.require_encryption = True
    session, transport = incoming(env)
    session.data_received(f"<db:result from='{REMOTE}' to='{LOCAL}'>k</db:result>".encode())
    assert transport.stream_error() == "policy-violation"


def test_stanza_size_limit_is_small_before_authentication(env):
    session, transport = incoming(env)
    session.data_received(b"<db:result from='a.example' to='b.example'>"
                          + b"x" * (env.manager.unauthed_stanza_size + 10))
    assert transport.stream_error() == "policy-violation"


# -- incoming: we are the authoritative server --------------------------------------

def test_verify_request_answers_valid_for_our_own_key(env):
    session, transport = incoming(env)
    key = DialbackKeys("unit-test-secret").key(REMOTE, LOCAL, "sid-1")
    session.data_received(
        f"<db:verify from='{REMOTE}' to='{LOCAL}' id='sid-1'>{key}</db:verify>".encode())
    answer = transport.elements()[-1]
    assert answer.tag == DB_VERIFY and answer.get("type") == "valid"
    assert (answer.get("from"), answer.get("to"), answer.get("id")) == (LOCAL, REMOTE, "sid-1")


def test_forged_key_is_answered_invalid(env):
    session, transport = incoming(env)
    forged = DialbackKeys("someone-else").key(REMOTE, LOCAL, "sid-1")
    session.data_received(
        f"<db:verify from='{REMOTE}' to='{LOCAL}' id='sid-1'>{forged}</db:verify>".encode())
    assert transport.elements()[-1].get("type") == "invalid"
    assert not transport.closed


# -- outgoing ------------------------------------------------------------------------------

def message(sender: str, to: str, body: str) -> Element:
    stanza = Element(f"{{{ns.CLIENT}}}message", {"from": sender, "to": to, "type": "chat"})
    body_el = Element(f"{{{ns.CLIENT}}}body")
    body_el.text = body
    stanza.append(body_el)
    return stanza


def outgoing(env) -> tuple[S2SOutgoing, FakeTransport]:
    session = S2SOutgoing(env.manager, REMOTE, LOCAL, env.clock())
    transport = FakeTransport()
    session.connection_made(transport)
    return session, transport


def open_remote(session, stream_id="remote-sid"):
    session.data_received(f"<stream:stream {STREAM_NS} from='{REMOTE}' to='{LOCAL}' "
                          f"id='{stream_id}' version='1.0'>".encode())
    session.data_received(b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                          b"</stream:features>")


def test_outgoing_queues_until_dialback_then_sends_in_order(env):
    session, transport = outgoing(env)
    for n in range(3):
        session.send_stanza(LOCAL, message(f"u@{LOCAL}", f"v@{REMOTE}", f"m{n}"), env.clock())
    open_remote(session)
    key = DialbackKeys("unit-test-secret").key(REMOTE, LOCAL, "remote-sid")
    db = transport.elements()[-1]
    assert db.tag == DB_RESULT and db.text == key
    assert [e.tag for e in transport.elements()] == [DB_RESULT]
    session.data_received(f"<db:result from='{REMOTE}' to='{LOCAL}' type='valid'/>".encode())
    bodies = [e.findtext(f"{{{ns.SERVER}}}body") for e in transport.elements()[1:]]
    assert bodies == ["m0", "m1", "m2"]
    session.send_stanza(LOCAL, message(f"u@{LOCAL}", f"v@{REMOTE}", "m3"), env.clock())
    assert transport.elements()[-1].findtext(f"{{{ns.SERVER}}}body") == "m3"


def test_outgoing_piggybacks_a_second_local_domain(env):
    session, transport = outgoing(env)
    session.send_stanza(LOCAL, message(f"u@{LOCAL}", f"v@{REMOTE}", "from b"), env.clock())
    open_remote(session)
    session.data_received(f"<db:result from='{REMOTE}' to='{LOCAL}' type='valid'/>".encode())
    session.send_stanza(OTHER_LOCAL, message(f"w@{OTHER_LOCAL}", f"v@{REMOTE}", "from c"),
                        env.clock())
    db = transport.elements()[-1]
    assert db.tag == DB_RESULT and db.get("from") == OTHER_LOCAL
    assert db.text == DialbackKeys("unit-test-secret").key(REMOTE, OTHER_LOCAL, "remote-sid")
    session.data_received(f"<db:result from='{REMOTE}' to='{OTHER_LOCAL}' type='valid'/>"
                          .encode())
    assert transport.elements()[-1].findtext(f"{{{ns.SERVER}}}body") == "from c"
    assert len(session.describe()["domains"]) == 2


def test_established_fires_once_per_link_with_our_domain(env):
    fired = []
    env.manager.fire = lambda name, local=None, **fields: fired.append(
        (name, local, fields["session"]))
    inbound, _ = incoming(env)
    dialback_in(env, inbound)
    dialback_in(env, inbound, to=OTHER_LOCAL)
    outbound, _ = outgoing(env)
    open_remote(outbound)
    for local in (LOCAL, OTHER_LOCAL):
        outbound.send_stanza(local, message(f"u@{local}", f"v@{REMOTE}", "hi"), env.clock())
        outbound.data_received(f"<db:result from='{REMOTE}' to='{local}' type='valid'/>"
                               .encode())
    assert fired == [("s2sin-established", LOCAL, inbound),
                     ("s2sout-established", LOCAL, outbound)]


def test_outgoing_sends_verify_requests_before_authenticating(env):
    session, transport = outgoing(env)
    session.send_verify(LOCAL, "their-sid", "k3y")
    assert transport.elements() == []
    open_remote(session)
    verify = transport.elements()[-1]
    assert verify.tag == DB_VERIFY and verify.text == "k3y"
    assert (verify.get("from"), verify.get("to"), verify.get("id")) == (LOCAL, REMOTE, "their-sid")


# -- dialback in a cluster: the verify goes over the one link, on another node ------------

class FakeOwnership:
    """One kind of claim as a cluster answers it: `held` names what other nodes hold."""

    def __init__(self, held: dict[str, str] | None = None) -> None:
        self.held = held or {}
        self.claimed: list[str] = []
        self.released: list[str] = []
        self.forwarded: list[tuple[str, Element]] = []

    def claim(self, name: str, *, replace: bool = False) -> str | None:
        self.claimed.append(name)
        return self.held.get(name)

    def release(self, name: str) -> None:
        self.released.append(name)

    def forward(self, name: str, stanza: Element, origin: object) -> str | None:
        self.forwarded.append((name, stanza))
        return self.held.get(name)


def clustered(env, links: FakeOwnership) -> FakeOwnership:
    """The manager's own request_verify, with a cluster's claims; the verifications' claims."""
    del env.manager.request_verify
    env.manager.links, env.manager.verifications = links, FakeOwnership()
    return env.manager.verifications


def waiting_incoming(env) -> tuple[S2SIncoming, FakeTransport]:
    session, transport = incoming(env)
    session.data_received(f"<db:result from='{REMOTE}' to='{LOCAL}'>k3y</db:result>".encode())
    return session, transport


def test_a_verify_goes_to_the_node_holding_the_link_and_its_answer_comes_back(env):
    links = FakeOwnership({REMOTE: "node-2"})
    verifications = clustered(env, links)
    session, transport = waiting_incoming(env)
    assert env.manager.outgoing == {}, "no link of our own"
    [(name, request)] = links.forwarded
    assert name == REMOTE and request.tag == DB_VERIFY and request.text == "k3y"
    assert (request.get("from"), request.get("to"), request.get("id")) == \
        (LOCAL, REMOTE, session.stream_id)
    waiting = f"{REMOTE} {LOCAL} {session.stream_id}"
    assert verifications.claimed == [waiting]
    answer = Element(DB_VERIFY, {"from": REMOTE, "to": LOCAL, "id": session.stream_id,
                                 "type": "valid"})
    assert env.manager.peer_answered(answer)
    result = transport.elements()[-1]
    assert result.tag == DB_RESULT and result.get("type") == "valid"
    assert verifications.released == [waiting]
    assert not env.manager.peer_answered(answer), "answered once"


def test_the_node_holding_the_link_sends_a_peers_verify_and_forwards_the_answer(env):
    verifications = clustered(env, FakeOwnership())
    link, transport = outgoing(env)
    open_remote(link)
    env.manager.outgoing[REMOTE] = SimpleNamespace(session=link, wake=threading.Event())
    request = Element(DB_VERIFY, {"from": LOCAL, "to": REMOTE, "id": "their-sid"})
    request.text = "k3y"
    assert env.manager.verify_for_peer(request)
    sent = transport.elements()[-1]
    assert sent.tag == DB_VERIFY and sent.text == "k3y" and sent.get("id") == "their-sid"
    link.data_received(f"<db:verify from='{REMOTE}' to='{LOCAL}' id='their-sid' "
                       "type='invalid'/>".encode())
    [(name, answer)] = verifications.forwarded
    assert name == f"{REMOTE} {LOCAL} their-sid"
    assert (answer.get("from"), answer.get("to"), answer.get("id"), answer.get("type")) == \
        (REMOTE, LOCAL, "their-sid", "invalid")


def test_a_node_holding_the_link_verifies_over_it_itself(env):
    links = FakeOwnership()
    verifications = clustered(env, links)
    link, transport = outgoing(env)
    open_remote(link)
    env.manager.outgoing[REMOTE] = SimpleNamespace(session=link, wake=threading.Event())
    waiting_incoming(env)
    assert transport.elements()[-1].tag == DB_VERIFY
    assert links.forwarded == [] and verifications.claimed == []


def verify_answer(session: S2SIncoming, kind: str) -> Element:
    return Element(DB_VERIFY, {"from": REMOTE, "to": LOCAL, "id": session.stream_id,
                               "type": kind})


def test_a_verify_asked_of_a_node_that_dies_is_asked_again_of_the_links_new_holder(env):
    links = FakeOwnership({REMOTE: "node-2"})
    verifications = clustered(env, links)
    session, transport = waiting_incoming(env)
    waiting = f"{REMOTE} {LOCAL} {session.stream_id}"
    env.manager.holder_gone("node-3")
    assert len(links.forwarded) == 1, "asked of node-2, which lives"
    links.held[REMOTE] = "node-3"  # node-2's claim lapsed with it; node-3 took the link
    env.manager.holder_gone("node-2")
    [_first, (name, request)] = links.forwarded
    assert name == REMOTE and request.text == "k3y" and request.get("id") == session.stream_id
    assert verifications.claimed == [waiting, waiting]
    assert env.manager.peer_answered(verify_answer(session, "valid"))  # node-3's answer
    result = transport.elements()[-1]
    assert result.tag == DB_RESULT and result.get("type") == "valid"
    env.manager.holder_gone("node-3")
    assert len(links.forwarded) == 2, "answered: nothing to ask again"


def test_a_verify_asked_of_a_node_that_dies_goes_over_the_link_this_node_takes(env):
    links = FakeOwnership({REMOTE: "node-2"})
    verifications = clustered(env, links)
    session, transport = waiting_incoming(env)
    waiting = f"{REMOTE} {LOCAL} {session.stream_id}"
    # node-2 dies; this node links to the remote domain now.
    link, link_transport = outgoing(env)
    open_remote(link)
    env.manager.outgoing[REMOTE] = SimpleNamespace(session=link, wake=threading.Event())
    env.manager.holder_gone("node-2")
    assert len(links.forwarded) == 1
    assert verifications.released == [waiting], "no claim kept for an answer from elsewhere"
    sent = link_transport.elements()[-1]
    assert sent.tag == DB_VERIFY and sent.text == "k3y" and sent.get("id") == session.stream_id
    link.data_received(f"<db:verify from='{REMOTE}' to='{LOCAL}' id='{session.stream_id}' "
                       "type='valid'/>".encode())
    result = transport.elements()[-1]
    assert result.tag == DB_RESULT and result.get("type") == "valid"
    assert session.authenticated


def test_refused_dialback_bounces_messages_and_drops_presence(env):
    session, _transport = outgoing(env)
    session.send_stanza(LOCAL, message(f"u@{LOCAL}/r", f"v@{REMOTE}", "m"), env.clock())
    session.send_stanza(LOCAL, Element(f"{{{ns.CLIENT}}}presence",
                                       {"from": f"u@{LOCAL}/r", "to": f"v@{REMOTE}"}),
                        env.clock())
    open_remote(session)
    session.data_received(f"<db:result from='{REMOTE}' to='{LOCAL}' type='invalid'/>".encode())
    assert len(env.routed) == 1
    error, _origin = env.routed[0]
    assert error.get("type") == "error" and error.get("to") == f"u@{LOCAL}/r"
    assert error.find(f"error/{{{ns.STANZA_ERRORS}}}remote-server-timeout") is not None


def test_setup_timeout_bounces_with_remote_server_timeout(env):
    session = S2SOutgoing(env.manager, REMOTE, LOCAL, env.clock())
    session.send_stanza(LOCAL, message(f"u@{LOCAL}/r", f"v@{REMOTE}", "m"), env.clock())
    assert session.next_deadline() == env.clock() + 30
    env.clock.t += 29
    session.expire(env.clock())
    assert env.routed == [] and not session.closed
    env.clock.t += 1
    session.expire(env.clock())
    assert session.closed
    error = env.routed[0][0]
    assert error.find(f"error/{{{ns.STANZA_ERRORS}}}remote-server-timeout") is not None


def test_connect_failure_bounces_with_remote_server_not_found(env):
    session = S2SOutgoing(env.manager, REMOTE, LOCAL, env.clock())
    session.send_stanza(LOCAL, Element(f"{{{ns.CLIENT}}}iq", {
        "from": f"u@{LOCAL}/r", "to": REMOTE, "type": "get", "id": "q1"}), env.clock())
    session.connect_failed("the domain does not resolve")
    error = env.routed[0][0]
    assert error.tag == f"{{{ns.CLIENT}}}iq" and error.get("id") == "q1"
    assert error.find(f"error/{{{ns.STANZA_ERRORS}}}remote-server-not-found") is not None


def test_idle_link_closes(env):
    session, transport = outgoing(env)
    session.send_stanza(LOCAL, message(f"u@{LOCAL}", f"v@{REMOTE}", "m"), env.clock())
    open_remote(session)
    session.data_received(f"<db:result from='{REMOTE}' to='{LOCAL}' type='valid'/>".encode())
    assert session.next_deadline() == env.clock() + 100
    env.clock.t += 100
    session.expire(env.clock())
    assert session.closed and transport.closed


# -- certificates: SASL EXTERNAL and secure-auth policy ---------------------------

VALID_FOR_REMOTE = PeerCertificate(present=True, chain_valid=True, names=(REMOTE,))
SELF_SIGNED = PeerCertificate(present=True, names=(REMOTE,), error="X509 error 18")


def secure_incoming(env, cert: PeerCertificate):
    env.manager.peer_certificate = lambda transport: cert
    return incoming(env, secure=True)


def test_external_offered_and_accepted_when_the_certificate_validates(env):
    session, transport = secure_incoming(env, VALID_FOR_REMOTE)
    mechanisms = transport.elements()[0].find(f"{{{ns.SASL}}}mechanisms")
    assert [m.text for m in mechanisms] == ["EXTERNAL"]
    authzid = base64.b64encode(REMOTE.encode()).decode()
    session.data_received(f"<auth xmlns='{ns.SASL}' mechanism='EXTERNAL'>{authzid}</auth>"
                          .encode())
    assert transport.elements()[-1].tag == f"{{{ns.SASL}}}success"
    transport.data = b""
    session.data_received(f"<stream:stream {STREAM_NS} to='{LOCAL}' from='{REMOTE}' "
                          "version='1.0'>".encode())
    assert transport.elements()[0].find(f"{{{ns.SASL}}}mechanisms") is None
    session.data_received(f"<message from='u@{REMOTE}' to='v@{LOCAL}'/>".encode())
    assert env.routed and session.describe()["auth"] == "EXTERNAL"


def test_external_not_offered_for_an_untrusted_certificate(env):
    session, transport = secure_incoming(env, SELF_SIGNED)
    assert transport.elements()[0].find(f"{{{ns.SASL}}}mechanisms") is None
    session.data_received(f"<auth xmlns='{ns.SASL}' mechanism='EXTERNAL'>=</auth>".encode())
    failure = transport.elements()[-1]
    assert failure.tag == f"{{{ns.SASL}}}failure"
    assert failure[0].tag == f"{{{ns.SASL}}}invalid-mechanism"
    assert not session.authenticated


def test_external_for_another_identity_is_invalid_authzid(env):
    session, transport = secure_incoming(env, VALID_FOR_REMOTE)
    other = base64.b64encode(OTHER_REMOTE.encode()).decode()
    session.data_received(f"<auth xmlns='{ns.SASL}' mechanism='EXTERNAL'>{other}</auth>"
                          .encode())
    assert transport.elements()[-1][0].tag == f"{{{ns.SASL}}}invalid-authzid"
    assert not session.authenticated


def test_secure_domain_with_an_untrusted_certificate_is_refused(env):
    env.manager.secure_domains = {REMOTE}
    assert env.manager.must_secure(REMOTE) and not env.manager.must_secure(OTHER_REMOTE)
    _session, transport = secure_incoming(env, SELF_SIGNED)
    assert transport.stream_error() == "not-authorized"


def test_secure_auth_except_insecure_domains(env):
    env.manager.secure_auth = True
    env.manager.insecure_domains = {OTHER_REMOTE}
    assert env.manager.must_secure(REMOTE) and not env.manager.must_secure(OTHER_REMOTE)
    session, transport = secure_incoming(env, SELF_SIGNED)
    assert transport.stream_error() == "not-authorized"
    env.manager.peer_certificate = lambda transport: VALID_FOR_REMOTE
    session, transport = incoming(env, secure=True)
    dialback_in(env, session)
    assert session.authenticated


# -- policy options as Prosody names them (read from the config) --------------------

TLS_CAPABLE = SimpleNamespace(server_context=lambda host: object(),
                              client_context=lambda host: None)


def policy_env(tmp_path, options: str, cert: PeerCertificate = SELF_SIGNED):
    env = make_env(tmp_path, options)
    env.manager.tls = TLS_CAPABLE
    env.manager.peer_certificate = lambda transport: cert
    return env


def starttls_offer(transport) -> Element | None:
    return transport.elements()[0].find(f"{{{ns.TLS}}}starttls")


def plain_dialback(env, sender=REMOTE) -> tuple[str | None, bool]:
    """A dialback attempt from `sender` on an unencrypted stream: (stream error, verify asked)."""
    session, transport = incoming(env, sender=sender)
    asked = len(env.verifies)
    session.data_received(f"<db:result from='{sender}' to='{LOCAL}'>k</db:result>".encode())
    return transport.stream_error(), len(env.verifies) > asked


def tls_dialback(env, sender=REMOTE) -> tuple[str | None, bool]:
    """The same over an encrypted stream (with the env's certificate)."""
    session, transport = incoming(env, sender=sender, secure=True)
    asked = len(env.verifies)
    if not transport.closed:
        session.data_received(f"<db:result from='{sender}' to='{LOCAL}'>k</db:result>".encode())
    return transport.stream_error(), len(env.verifies) > asked


def outgoing_features(env, features: bytes, *, secure=False
                      ) -> tuple[S2SOutgoing, FakeTransport]:
    """An outgoing link with a stanza waiting, up to the peer's `features`."""
    session = S2SOutgoing(env.manager, REMOTE, LOCAL, env.clock())
    transport = FakeTransport(secure=secure)
    session.connection_made(transport)
    session.send_stanza(LOCAL, message(f"u@{LOCAL}", f"v@{REMOTE}", "m"), env.clock())
    session.data_received(f"<stream:stream {STREAM_NS} from='{REMOTE}' to='{LOCAL}' "
                          "id='sid' version='1.0'>".encode())
    if not transport.closed:
        session.data_received(b"<stream:features>" + features + b"</stream:features>")
    return session, transport


DIALBACK_ONLY = b"<dialback xmlns='urn:xmpp:features:dialback'/>"
STARTTLS_OFFER = f"<starttls xmlns='{ns.TLS}'/>".encode() + DIALBACK_ONLY


def sent_dialback(transport) -> bool:
    return any(element.tag == DB_RESULT for element in transport.elements())


def test_require_encryption_is_the_default(tmp_path):
    env = policy_env(tmp_path, "")
    assert env.manager.require_encryption
    _session, transport = incoming(env)
    assert starttls_offer(transport).find(f"{{{ns.TLS}}}required") is not None
    assert plain_dialback(env) == ("policy-violation", False)
    assert plain_dialback(env, OTHER_REMOTE) == ("policy-violation", False)
    # Outgoing: a peer that offers no STARTTLS gets no dialback key and no stanza.
    _session, transport = outgoing_features(env, DIALBACK_ONLY)
    assert transport.stream_error() == "policy-violation"
    assert not sent_dialback(transport)
    # With encryption, a self-signed certificate is fine: dialback authenticates.
    assert tls_dialback(env) == (None, True)


def test_starttls_is_used_whenever_the_peer_offers_it(tmp_path):
    env = policy_env(tmp_path, "s2s_require_encryption = false")
    session, transport = outgoing_features(env, STARTTLS_OFFER)
    assert [element.tag for element in transport.elements()] == [f"{{{ns.TLS}}}starttls"]
    session.data_received(f"<proceed xmlns='{ns.TLS}'/>".encode())
    assert transport.tls_requested and not sent_dialback(transport)


def test_without_require_encryption_a_plain_stream_may_authenticate(tmp_path):
    env = policy_env(tmp_path, "s2s_require_encryption = false")
    _session, transport = incoming(env)
    offer = starttls_offer(transport)
    assert offer is not None and offer.find(f"{{{ns.TLS}}}required") is None
    assert plain_dialback(env) == (None, True)
    _session, transport = outgoing_features(env, DIALBACK_ONLY)
    assert transport.stream_error() is None and sent_dialback(transport)


def test_secure_auth_demands_valid_certificates_except_insecure_domains(tmp_path):
    env = policy_env(tmp_path, f"""s2s_secure_auth = true
s2s_require_encryption = false
s2s_insecure_domains = {{ "{OTHER_REMOTE}" }}""")
    # mod_tls marks STARTTLS required under s2s_secure_auth.
    _session, transport = incoming(env)
    assert starttls_offer(transport).find(f"{{{ns.TLS}}}required") is not None
    # A certificate is required of everyone else, so encryption is too...
    assert plain_dialback(env) == ("policy-violation", False)
    assert tls_dialback(env) == ("not-authorized", False)
    # ...but an insecure domain may use dialback, even unencrypted (as in Prosody's mod_s2s).
    assert plain_dialback(env, OTHER_REMOTE) == (None, True)
    assert tls_dialback(env, OTHER_REMOTE) == (None, True)
    # Outgoing: the remote server's certificate must validate too.
    _session, transport = outgoing_features(env, DIALBACK_ONLY, secure=True)
    assert transport.stream_error() == "not-authorized" and not sent_dialback(transport)
    env.manager.peer_certificate = lambda transport: VALID_FOR_REMOTE
    assert tls_dialback(env) == (None, True)
    _session, transport = outgoing_features(env, DIALBACK_ONLY, secure=True)
    assert transport.stream_error() is None and sent_dialback(transport)


def test_secure_domains_demand_valid_certificates_of_those_domains_only(tmp_path):
    env = policy_env(tmp_path, f"""s2s_require_encryption = false
s2s_secure_domains = {{ "{REMOTE}" }}""")
    _session, transport = incoming(env)
    assert starttls_offer(transport).find(f"{{{ns.TLS}}}required") is None
    assert plain_dialback(env) == ("policy-violation", False)
    assert tls_dialback(env) == ("not-authorized", False)
    assert plain_dialback(env, OTHER_REMOTE) == (None, True)
    assert tls_dialback(env, OTHER_REMOTE) == (None, True)
    _session, transport = outgoing_features(env, DIALBACK_ONLY, secure=True)
    assert transport.stream_error() == "not-authorized"
    env.manager.peer_certificate = lambda transport: VALID_FOR_REMOTE
    _session, transport = incoming(env, secure=True)
    assert transport.elements()[0].find(f"{{{ns.SASL}}}mechanisms") is not None
    assert tls_dialback(env) == (None, True)


# -- the s2s listener's setup timeout ------------------------------------------------

def test_a_peer_that_never_authenticates_is_dropped_after_s2s_timeout(env):
    transport = FakeTransport()
    session = env.manager.make_incoming(transport)
    session.data_received(f"<stream:stream {STREAM_NS} to='{LOCAL}' from='{REMOTE}' "
                          "version='1.0'>".encode())
    [(seconds, expire)] = transport.timers
    assert seconds == 30  # s2s_timeout
    expire()
    assert transport.stream_error() == "connection-timeout" and transport.closed


def test_the_setup_timeout_spares_an_authenticated_stream(env):
    transport = FakeTransport()
    session = env.manager.make_incoming(transport)
    session.data_received(f"<stream:stream {STREAM_NS} to='{LOCAL}' from='{REMOTE}' "
                          "version='1.0'>".encode())
    dialback_in(env, session)
    [(_seconds, expire)] = transport.timers
    expire()
    assert transport.stream_error() is None and not transport.closed


# -- hostile input ------------------------------------------------------------------

def test_plaintext_pipelined_after_starttls_is_discarded(tmp_path):
    """Whatever follows <starttls/> in the same read was sent before TLS: none of
    it may act on the stream (the STARTTLS command injection)."""
    env = policy_env(tmp_path, "s2s_require_encryption = false")
    session, transport = incoming(env)
    session.data_received(f"<starttls xmlns='{ns.TLS}'/><db:result from='{REMOTE}' "
                          f"to='{LOCAL}'>k</db:result>".encode())
    assert transport.tls_requested and env.verifies == []
    assert transport.elements()[-1].tag == f"{{{ns.TLS}}}proceed"


def test_plaintext_pipelined_after_proceed_is_discarded(tmp_path):
    env = policy_env(tmp_path, "s2s_require_encryption = false")
    session, transport = outgoing_features(env, STARTTLS_OFFER)
    session.data_received(f"<proceed xmlns='{ns.TLS}'/><stream:features>".encode()
                          + DIALBACK_ONLY + b"</stream:features>")
    assert transport.tls_requested and not sent_dialback(transport)


def test_a_stalled_outgoing_tls_handshake_gives_up_after_s2s_timeout(env):
    """A remote that says <proceed/> and never answers the ClientHello: the
    link's own timers cannot reach the handshake, so it carries the timeout."""
    env.manager.timeout = 0.2
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    env.manager.tls = SimpleNamespace(client_context=lambda host: client)
    ours, theirs = socket.socketpair()
    # Bounds the test even without the timeout: the peer hangs up after 10 s.
    hang_up = threading.Timer(10, theirs.shutdown, (socket.SHUT_RDWR,))
    hang_up.start()
    try:
        transport = SocketTransport(ours, ("192.0.2.1", 5269), "outgoing", False)
        session = S2SOutgoing(env.manager, REMOTE, LOCAL, env.clock())
        started = time.monotonic()
        assert not env.manager._start_tls(transport, session)
        assert time.monotonic() - started < 5 and not transport.secure
    finally:
        hang_up.cancel()
        ours.close()
        theirs.close()


def test_stanza_size_limit_after_authentication(tmp_path):
    assert make_env(tmp_path).manager.stanza_size_limit == 512 * 1024  # Prosody's default
    env = make_env(tmp_path, "s2s_require_encryption = false\ns2s_stanza_size_limit = 20000")
    session, transport = incoming(env)
    dialback_in(env, session)
    body = "x" * 15000  # over the unauthenticated limit, under s2s_stanza_size_limit
    session.data_received(f"<message from='u@{REMOTE}' to='v@{LOCAL}'><body>{body}</body>"
                          "</message>".encode())
    assert env.routed[-1][0].findtext(f"{{{ns.CLIENT}}}body") == body
    session.data_received(f"<message from='u@{REMOTE}' to='v@{LOCAL}'><body>{body * 2}"
                          "</body></message>".encode())
    assert transport.stream_error() == "policy-violation"
