"""BOSH sessions driving the real c2s machine and router, without sockets, on a fake clock.

Covers creation, SASL, xmpp:restart, bind, held requests answered by routed
stanzas, terminate and inactivity (unavailable presence), wait expiry, the
refusal conditions and shutdown.
"""

from __future__ import annotations

import base64
from xml.etree import ElementTree

import pytest

from http_apps.bosh.body import HTTPBIND, XBOSH
from http_apps.bosh.manager import Parked
from xmpp import namespaces as ns
from xmpp.config import load_config
from xmpp.errors import StreamError
from xmpp.server import VireoServer

DOMAIN = "example.com"
BODY = f"{{{HTTPBIND}}}body"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def make_server(tmp_path, clock, extra: str = "") -> VireoServer:
    config_path = tmp_path / "vireo.cfg.lua"
    config_path.write_text(f"""
data_path = "{tmp_path}"
modules_enabled = {{ "saslauth", "roster", "bosh" }}
bosh_max_inactivity = 30
bosh_max_wait = 60
{extra}
VirtualHost "{DOMAIN}"
VirtualHost "nobosh.example"
modules_disabled = {{ "bosh" }}
Component "comp.example"
""")
    server = VireoServer(load_config(config_path), clock=clock)
    server.db.migrate()
    for user in ("alice", "bob"):
        server.accounts.create(DOMAIN, user, "secret")
    return server


@pytest.fixture
def server(tmp_path, clock):
    server = make_server(tmp_path, clock)
    yield server
    server.db.close()


@pytest.fixture
def manager(server):
    return server.core.services.shared["bosh"]


def xml(data: bytes) -> ElementTree.Element:
    element = ElementTree.fromstring(data)
    assert element.tag == BODY
    return element


def local(element: ElementTree.Element) -> str:
    return element.tag.rpartition("}")[2]


class Client:
    """A BOSH client speaking to the manager directly."""

    def __init__(self, manager, rid: int = 1000, secure: bool = True) -> None:
        self.manager = manager
        self.rid = rid
        self.secure = secure
        self.sid: str | None = None

    def send(self, payload: str = "", rid: int | None = None, **attrs: str):
        """Post a body; returns the response bytes or the Parked request."""
        if rid is None:
            self.rid += 1
            rid = self.rid
        fields = {"rid": str(rid), **({"sid": self.sid} if self.sid else {}), **attrs}
        text = "".join(f" {key}='{value}'" for key, value in fields.items())
        data = (f"<body xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}'{text}>{payload}</body>")
        return self.manager.handle(data.encode(), secure=self.secure, peer="192.0.2.1")

    def answer(self, payload: str = "", **attrs: str) -> ElementTree.Element:
        """Post and expect an answer at once."""
        result = self.send(payload, **attrs)
        assert not isinstance(result, Parked), "request was held"
        return xml(result)

    def hold(self) -> Parked:
        """An empty request that is held (after collecting whatever is queued)."""
        for _ in range(5):
            result = self.send()
            if isinstance(result, Parked):
                return result
        raise AssertionError("output keeps coming")

    def create(self, to: str = DOMAIN, **attrs: str) -> ElementTree.Element:
        attrs = {"to": to, "wait": "60", "hold": "1", "xmpp:version": "1.0", **attrs}
        response = self.answer(**attrs)
        self.sid = response.get("sid")
        return response

    def login(self, user: str, resource: str) -> None:
        self.create()
        token = base64.b64encode(f"\0{user}\0secret".encode()).decode()
        success = self.answer(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{token}</auth>")
        assert [local(child) for child in success] == ["success"]
        features = self.answer(**{"xmpp:restart": "true"})
        # (then the features of the host's modules: rosterver, pre-approval)
        assert [local(child) for child in features[0]][:2] == ["bind", "session"]
        bound = self.answer(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{ns.BIND}'>"
                            f"<resource>{resource}</resource></bind></iq>")
        assert bound[0].get("type") == "result"


def test_creation_response_attributes_and_features(manager):
    client = Client(manager)
    response = client.create(wait="200")
    assert response.get("sid") and response.get("authid") == response.get("sid")
    assert (response.get("wait"), response.get("requests"), response.get("hold"),
            response.get("inactivity"), response.get("polling")) == ("60", "2", "1", "30", "5")
    assert (response.get("ver"), response.get("from"), response.get("secure")) == (
        "1.6", DOMAIN, "true")
    assert response.get(f"{{{XBOSH}}}version") == "1.0"
    features = response[0]
    assert features.tag == f"{{{ns.STREAMS}}}features"
    mechanisms = features.find(f"{{{ns.SASL}}}mechanisms")
    assert "PLAIN" in [m.text for m in mechanisms]
    assert features.find(f"{{{ns.TLS}}}starttls") is None


def test_client_hold_and_wait_are_capped_by_the_server(manager):
    response = Client(manager).create(wait="5", hold="3")
    assert (response.get("wait"), response.get("hold")) == ("5", "1")


def test_insecure_session_gets_no_sasl_mechanisms(manager):
    features = Client(manager, secure=False).create()[0]
    assert features.find(f"{{{ns.SASL}}}mechanisms") is None


def test_consider_bosh_secure(tmp_path, clock):
    server = make_server(tmp_path, clock, "consider_bosh_secure = true")
    features = Client(server.core.services.shared["bosh"], secure=False).create()[0]
    assert features.find(f"{{{ns.SASL}}}mechanisms") is not None
    server.db.close()


@pytest.mark.parametrize("attrs, condition", [
    ({"wait": "60"}, "improper-addressing"),
    ({"to": "unknown.example", "wait": "60"}, "improper-addressing"),
    ({"to": "nobosh.example", "wait": "60"}, "improper-addressing"),
    ({"to": "comp.example", "wait": "60"}, "improper-addressing"),
    ({"to": DOMAIN}, "bad-request"),
    ({"to": DOMAIN, "wait": "-1"}, "bad-request"),
    ({"to": DOMAIN, "wait": "1.5"}, "bad-request"),
    # Digits of other scripts (str.isdigit takes them, int() reads them): ASCII only.
    ({"to": DOMAIN, "wait": "\u0666\u0660"}, "bad-request"),
    ({"to": DOMAIN, "wait": "\u00b2"}, "bad-request"),
    ({"to": DOMAIN, "wait": "1" * 17}, "bad-request"),
    ({"to": DOMAIN, "wait": "60", "rid": "x"}, "bad-request"),
])
def test_creation_refusals(manager, attrs, condition):
    client = Client(manager)
    response = client.answer(**attrs) if "rid" not in attrs else xml(
        manager.handle(f"<body xmlns='{HTTPBIND}' rid='x' to='{DOMAIN}' wait='60'/>".encode(),
                       secure=True, peer="x"))
    assert (response.get("type"), response.get("condition")) == ("terminate", condition)
    assert not manager.streams


def test_unparsable_body_and_unknown_sid(manager):
    response = xml(manager.handle(b"<body", secure=True, peer="x"))
    assert response.get("condition") == "bad-request"
    client = Client(manager)
    client.sid = "no-such-sid"
    assert client.answer().get("condition") == "item-not-found"


def test_rid_outside_the_window_ends_the_session(manager):
    client = Client(manager)
    client.create()
    response = client.answer(rid=client.rid + 5)
    assert response.get("condition") == "item-not-found"
    assert not manager.streams


def test_held_request_answered_by_a_message_and_repeat_is_identical(manager):
    alice, bob = Client(manager), Client(manager, rid=5000)
    alice.login("alice", "web")
    bob.login("bob", "web")
    parked = alice.send()
    assert isinstance(parked, Parked)
    assert isinstance(bob.send(f"<message xmlns='jabber:client' to='alice@{DOMAIN}/web' "
                               "type='chat'><body>hi</body></message>"), Parked)
    response = manager.wait(parked)
    message = xml(response)[0]
    assert message.tag == "{jabber:client}message"
    assert message.get("from") == f"bob@{DOMAIN}/web"
    assert message.findtext("{jabber:client}body") == "hi"
    assert alice.send(rid=alice.rid) == response     # a repeated rid: the same bytes


def test_wait_expiry_answers_empty(manager, clock):
    client = Client(manager)
    client.create(wait="10")
    parked = client.send()
    clock.now += 10
    response = xml(manager.wait(parked))
    assert len(response) == 0 and response.get("type") is None


def test_stream_error_is_a_remote_stream_error(manager):
    client = Client(manager)
    client.create()
    parked = client.send()
    response = client.answer("<message xmlns='jabber:client' to='bob@example.com'/>")
    assert (response.get("type"), response.get("condition")) == ("terminate",
                                                                 "remote-stream-error")
    error = response.find(f"{{{ns.STREAMS}}}error")
    assert error[0].tag == f"{{{ns.STREAM_ERRORS}}}not-authorized"
    assert xml(manager.wait(parked)).get("condition") == "remote-stream-error"
    assert not manager.streams


def presence_of(body: ElementTree.Element) -> list[tuple[str | None, str | None]]:
    return [(child.get("from"), child.get("type")) for child in body
            if child.tag == "{jabber:client}presence"]


def test_terminate_and_inactivity_send_unavailable_presence(manager, clock):
    first, second, third = Client(manager), Client(manager, 2000), Client(manager, 3000)
    for client, resource in ((first, "one"), (second, "two"), (third, "three")):
        client.login("alice", resource)
    for client in (first, second, third):
        client.answer("<presence xmlns='jabber:client'/>")
    held = first.hold()
    ended = second.answer("<presence xmlns='jabber:client' type='unavailable'/>",
                          type="terminate")
    assert ended.get("type") == "terminate"
    assert (f"alice@{DOMAIN}/two", "unavailable") in presence_of(xml(manager.wait(held)))

    # third goes silent; first keeps polling
    clock.now += 29
    manager.sweep()
    assert third.sid in manager.streams
    clock.now += 1
    held = first.hold()
    manager.sweep()
    assert third.sid not in manager.streams
    assert (f"alice@{DOMAIN}/three", "unavailable") in presence_of(xml(manager.wait(held)))
    assert third.answer().get("condition") == "item-not-found"


def test_restart_before_authentication_offers_the_features_again(manager):
    client = Client(manager)
    client.create()
    features = client.answer(**{"xmpp:restart": "true"})[0]
    assert features.find(f"{{{ns.SASL}}}mechanisms") is not None


def test_shutdown_answers_held_requests(manager):
    client = Client(manager)
    client.login("alice", "web")
    parked = client.send()
    manager.close_all(StreamError("system-shutdown"))
    response = xml(manager.wait(parked))
    assert response.get("condition") == "remote-stream-error"
    error = response.find(f"{{{ns.STREAMS}}}error")
    assert error[0].tag == f"{{{ns.STREAM_ERRORS}}}system-shutdown"
