"""RFC 6120 section 10 / RFC 6121 section 8 delivery rules: the Router with fake sessions."""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element, SubElement

import pytest

from tests.unit.core_fixtures import make_core
from xmpp import namespaces as ns
from xmpp.config import Config, HostConfig
from xmpp.core import ServerCore
from xmpp.errors import StanzaError, StreamError
from xmpp.hosts import hook_iq
from xmpp.jid import parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.presence import PresenceState, available_sessions
from xmpp.router import Router

HOST = "example.org"
COMPONENT = "muc.example.org"
C = f"{{{ns.CLIENT}}}"
PING = "{urn:xmpp:ping}ping"


class FakeSession:
    """A bound client session: what it was sent, and how it was closed."""

    kind = "c2s"

    def __init__(self, jid: str, priority: int = 0, available: bool = True) -> None:
        self.jid = parse_jid(jid)
        # What mod_presence would have recorded from the session's presence.
        self.module_data = {"presence": PresenceState(priority, available)}
        self.received: list[Element] = []
        self.closed_with: list[StreamError | None] = []

    def send(self, stanza: Element) -> None:
        self.received.append(stanza)

    def close(self, error: StreamError | None = None) -> None:
        self.closed_with.append(error)


class Origin(FakeSession):
    """The sender of the stanzas under test."""

    def __init__(self) -> None:
        super().__init__(f"sender@{HOST}/here")


@pytest.fixture
def core() -> ServerCore:
    """The router with mod_message on HOST (bare-JID delivery), and nothing else."""
    config = Config(Path("/nonexistent/vireo.cfg.lua"),
                    {"modules_disabled": ["presence", "offline", "s2s"]})
    config.hosts[HOST] = HostConfig(config, HOST, "VirtualHost", None, {})
    config.hosts[COMPONENT] = HostConfig(config, COMPONENT, "Component", "unknown_module", {})
    config._loading = False
    return make_core(config)


@pytest.fixture
def router(core) -> Router:
    return core.router


@pytest.fixture
def origin() -> Origin:
    return Origin()


def bound(router: Router, jid: str, priority: int = 0, available: bool = True) -> FakeSession:
    session = FakeSession(jid, priority, available)
    router.bind(session, session.jid)
    return session


def message(to: str, kind: str | None = "chat", body: str = "hello",
            sender: str = f"sender@{HOST}/here") -> Element:
    stanza = Element(C + "message", {"to": to, "from": sender, "id": "m1"})
    if kind:
        stanza.set("type", kind)
    SubElement(stanza, C + "body").text = body
    return stanza


def iq(to: str, kind: str = "get", payload: str | None = PING,
       sender: str = f"sender@{HOST}/here") -> Element:
    stanza = Element(C + "iq", {"to": to, "from": sender, "type": kind, "id": "q1"})
    if payload:
        SubElement(stanza, payload)
    return stanza


def presence(to: str, kind: str | None = None, sender: str = f"sender@{HOST}/here") -> Element:
    stanza = Element(C + "presence", {"to": to, "from": sender})
    if kind:
        stanza.set("type", kind)
    return stanza


def error_of(stanza: Element) -> tuple[str, str]:
    assert stanza.get("type") == "error"
    error = next(child for child in stanza if child.tag.rpartition("}")[2] == "error")
    condition = next(c for c in error if c.tag.startswith(f"{{{ns.STANZA_ERRORS}}}"))
    return error.get("type"), condition.tag.rpartition("}")[2]


def the_error(origin: FakeSession) -> tuple[str, str]:
    (reply,) = origin.received
    return error_of(reply)


# -- sessions ---------------------------------------------------------------------------

def test_bind_replaces_and_kicks_the_older_session(router):
    first = bound(router, f"user@{HOST}/phone")
    second = bound(router, f"user@{HOST}/phone")
    assert [e.condition for e in first.closed_with] == ["conflict"]
    assert second.closed_with == []
    assert router.resources(parse_jid(f"user@{HOST}"))["phone"] is second
    # The replaced session's own unbind must leave the new one in place.
    router.unbind(first)
    assert router.resources(parse_jid(f"user@{HOST}"))["phone"] is second
    router.unbind(second)
    assert parse_jid(f"user@{HOST}") not in router.sessions


def test_available_resources_skip_unavailable_ones(core, router):
    on = bound(router, f"user@{HOST}/on")
    bound(router, f"user@{HOST}/off", available=False)
    m = ModuleContext("presence", router.hosts[HOST], core.services)
    assert available_sessions(m, parse_jid(f"user@{HOST}")) == [on]


# -- full JIDs ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [message, iq, presence])
def test_full_jid_stanzas_go_to_that_resource_only(router, origin, make):
    target = bound(router, f"user@{HOST}/phone")
    other = bound(router, f"user@{HOST}/laptop")
    stanza = make(f"user@{HOST}/phone")
    router.route(stanza, origin)
    assert target.received == [stanza]
    assert other.received == [] and origin.received == []


def test_chat_to_a_missing_resource_is_treated_as_bare(router, origin):
    other = bound(router, f"user@{HOST}/laptop")
    stanza = message(f"user@{HOST}/gone")
    router.route(stanza, origin)
    assert other.received == [stanza] and origin.received == []


def test_groupchat_to_a_missing_resource_bounces(router, origin):
    bound(router, f"user@{HOST}/laptop")
    router.route(message(f"user@{HOST}/gone", "groupchat"), origin)
    assert the_error(origin) == ("cancel", "service-unavailable")


def test_iq_to_a_missing_resource_is_service_unavailable(router, origin):
    bound(router, f"user@{HOST}/laptop")
    router.route(iq(f"user@{HOST}/gone"), origin)
    (reply,) = origin.received
    assert error_of(reply) == ("cancel", "service-unavailable")
    assert reply.get("id") == "q1" and reply.get("from") == f"user@{HOST}/gone"


@pytest.mark.parametrize("to", [f"user@{HOST}/elsewhere", f"user@{HOST}"])
def test_a_missing_session_may_be_bound_by_a_session_missing_handler(core, router, origin, to):
    """What a cluster node does when another node holds the session."""
    found: list[FakeSession] = []

    def look_up(event) -> None:
        assert event.to == parse_jid(to)
        found.append(bound(router, f"user@{HOST}/elsewhere"))

    core.router.hosts[HOST].events.hook("session-missing", look_up)
    stanza = message(to)
    router.route(stanza, origin)
    assert [session.received for session in found] == [[stanza]]
    assert origin.received == []
    router.route(message(to), origin)  # found now: no second look
    assert len(found) == 1


def test_presence_to_a_missing_full_jid_may_find_it_through_session_missing(core, router,
                                                                           origin):
    """A resource bound on another cluster node a moment ago (a MUC occupant,
    a directed presence's recipient) gets presence too."""
    found: list[FakeSession] = []
    core.router.hosts[HOST].events.hook(
        "session-missing", lambda event: found.append(bound(router, str(event.to))))
    stanza = presence(f"user@{HOST}/elsewhere")
    router.route(stanza, origin)
    assert [session.received for session in found] == [[stanza]]


def test_presence_to_a_missing_resource_is_dropped(router, origin):
    router.route(presence(f"user@{HOST}/gone"), origin)
    assert origin.received == []


def test_presence_to_a_full_jid_goes_through_the_hook_first(router, origin):
    target = bound(router, f"user@{HOST}/phone")
    seen = []
    router.hosts[HOST].events.hook("presence/full", lambda e: seen.append(e.to) or True)
    router.route(presence(f"user@{HOST}/phone", "subscribe"), origin)
    assert seen == [parse_jid(f"user@{HOST}/phone")]
    assert target.received == []


# -- bare JIDs --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["chat", "normal", None])
def test_bare_message_goes_to_the_highest_priority(router, origin, kind):
    low = bound(router, f"user@{HOST}/low", priority=1)
    high = bound(router, f"user@{HOST}/high", priority=5)
    router.route(message(f"user@{HOST}", kind), origin)
    assert len(high.received) == 1 and low.received == []


def test_bare_message_goes_to_every_resource_sharing_the_top_priority(router, origin):
    one = bound(router, f"user@{HOST}/one", priority=3)
    two = bound(router, f"user@{HOST}/two", priority=3)
    bound(router, f"user@{HOST}/low", priority=0)
    router.route(message(f"user@{HOST}"), origin)
    assert len(one.received) == 1 and len(two.received) == 1


def test_headline_to_bare_goes_to_all_non_negative_resources(router, origin):
    low = bound(router, f"user@{HOST}/low", priority=0)
    high = bound(router, f"user@{HOST}/high", priority=5)
    negative = bound(router, f"user@{HOST}/neg", priority=-1)
    router.route(message(f"user@{HOST}", "headline"), origin)
    assert len(low.received) == 1 and len(high.received) == 1
    assert negative.received == []


def test_negative_priority_and_unavailable_resources_get_no_bare_messages(router, origin):
    negative = bound(router, f"user@{HOST}/neg", priority=-1)
    hidden = bound(router, f"user@{HOST}/hidden", priority=10, available=False)
    stored = []
    router.hosts[HOST].events.hook("message/offline/handle",
                                   lambda e: stored.append((e.stanza, e.to)) or True)
    stanza = message(f"user@{HOST}")
    router.route(stanza, origin)
    assert negative.received == [] and hidden.received == []
    assert stored == [(stanza, parse_jid(f"user@{HOST}"))]
    assert origin.received == []


@pytest.mark.parametrize("kind", ["chat", "normal"])
def test_bare_message_without_offline_storage_is_service_unavailable(router, origin, kind):
    router.route(message(f"nobody@{HOST}", kind), origin)
    (reply,) = origin.received
    assert error_of(reply) == ("cancel", "service-unavailable")
    assert reply.get("to") == f"sender@{HOST}/here" and reply.get("from") == f"nobody@{HOST}"
    # The body travels back with the error (RFC 6120 8.3.1).
    assert reply.findtext(C + "body") == "hello"


@pytest.mark.parametrize("kind", ["headline", "error"])
def test_headline_and_error_to_an_offline_user_are_dropped_silently(router, origin, kind):
    stored = []
    router.hosts[HOST].events.hook("message/offline/handle",
                                   lambda e: stored.append(e) or True)
    router.route(message(f"nobody@{HOST}", kind), origin)
    assert origin.received == [] and stored == []


def test_groupchat_to_a_bare_jid_is_service_unavailable(router, origin):
    online = bound(router, f"user@{HOST}/phone")
    router.route(message(f"user@{HOST}", "groupchat"), origin)
    assert online.received == []
    assert the_error(origin) == ("cancel", "service-unavailable")


def test_message_bare_hook_can_take_over(router, origin):
    online = bound(router, f"user@{HOST}/phone")
    router.hosts[HOST].events.hook("message/bare", lambda e: True)
    router.route(message(f"user@{HOST}"), origin)
    assert online.received == [] and origin.received == []


def test_presence_to_a_bare_jid_fires_the_hook(router, origin):
    seen = []
    router.hosts[HOST].events.hook("presence/bare", lambda e: seen.append(str(e.to)))
    router.route(presence(f"user@{HOST}", "probe"), origin)
    assert seen == [f"user@{HOST}"] and origin.received == []


def test_iq_to_a_users_bare_jid_uses_user_handlers(router, origin):
    hook_iq(router.hosts[HOST], "get", PING, lambda request: None, target="bare")
    router.route(iq(f"user@{HOST}"), origin)
    (reply,) = origin.received
    assert reply.get("type") == "result" and reply.get("from") == f"user@{HOST}"


def test_iq_to_own_bare_jid_prefers_self_handlers(router):
    me = bound(router, f"me@{HOST}/desk")
    calls = []
    hook_iq(router.hosts[HOST], "get", PING, lambda r: calls.append("self"), target="self")
    hook_iq(router.hosts[HOST], "get", PING, lambda r: calls.append("user"), target="bare")
    router.route(iq(f"me@{HOST}", sender=f"me@{HOST}/desk"), me)
    router.route(iq(f"other@{HOST}", sender=f"me@{HOST}/desk"), me)
    assert calls == ["self", "user"]


def test_iq_to_bare_jid_without_handler_is_service_unavailable(router, origin):
    router.route(iq(f"user@{HOST}"), origin)
    assert the_error(origin) == ("cancel", "service-unavailable")


# -- the host itself ---------------------------------------------------------------------------

def test_iq_handler_answers(router, origin):
    def handler(request):
        answer = Element("{urn:example}answer")
        answer.text = request.payload.tag
        return answer

    hook_iq(router.hosts[HOST], "get", "{urn:example}question", handler)
    router.route(iq(HOST, payload="{urn:example}question"), origin)
    (reply,) = origin.received
    assert reply.get("type") == "result" and reply.get("id") == "q1"
    assert reply.get("to") == f"sender@{HOST}/here" and reply.get("from") == HOST
    assert reply.findtext("{urn:example}answer") == "{urn:example}question"


def test_iq_handler_that_answered_itself_gets_no_second_reply(router, origin):
    hook_iq(router.hosts[HOST], "set", PING, lambda request: True)
    router.route(iq(HOST, "set"), origin)
    assert origin.received == []


def test_iq_handler_error_becomes_the_reply(router, origin):
    def handler(request):
        raise StanzaError("forbidden", "no")

    hook_iq(router.hosts[HOST], "get", PING, handler)
    router.route(iq(HOST), origin)
    assert the_error(origin) == ("auth", "forbidden")


def test_unhandled_iq_is_service_unavailable(router, origin):
    router.route(iq(HOST, payload="{urn:example}nothing"), origin)
    assert the_error(origin) == ("cancel", "service-unavailable")


@pytest.mark.parametrize("build", [
    lambda: iq(HOST, payload=None),
    lambda: iq(HOST, kind="fetch"),
    lambda: _with_second_child(iq(HOST)),
])
def test_malformed_iqs_are_bad_requests(router, origin, build):
    router.route(build(), origin)
    assert the_error(origin) == ("modify", "bad-request")


def _with_second_child(stanza: Element) -> Element:
    SubElement(stanza, "{urn:example}extra")
    return stanza


@pytest.mark.parametrize("kind", ["result", "error"])
def test_iq_responses_to_the_host_are_events_not_errors(router, origin, kind):
    seen = []
    router.hosts[HOST].events.hook(f"iq-{kind}/host/q1",
                                   lambda e: seen.append(e.stanza.get("id")))
    router.route(iq(HOST, kind, payload=None), origin)
    assert seen == ["q1"] and origin.received == []


def test_message_to_the_host_without_a_handler_bounces(router, origin):
    router.route(message(HOST), origin)
    assert the_error(origin) == ("cancel", "service-unavailable")


def test_presence_to_the_host_fires_its_hook(router, origin):
    seen = []
    router.hosts[HOST].events.hook("presence/host", lambda e: seen.append(e.stanza))
    router.route(presence(HOST), origin)
    assert len(seen) == 1 and origin.received == []


# -- components, remote domains and bad addresses ---------------------------------------------

def test_component_handler_takes_every_stanza_for_its_domain(router, origin):
    taken = []
    router.hosts[COMPONENT].component_handler = lambda stanza, o: taken.append(stanza.get("to"))
    for to in (COMPONENT, f"room@{COMPONENT}", f"room@{COMPONENT}/nick"):
        router.route(message(to, "groupchat"), origin)
    assert taken == [COMPONENT, f"room@{COMPONENT}", f"room@{COMPONENT}/nick"]
    assert origin.received == []


def test_remote_domain_without_s2s_is_service_unavailable(router, origin):
    router.route(message("someone@elsewhere.example"), origin)
    assert the_error(origin) == ("cancel", "service-unavailable")


def test_remote_domain_goes_to_the_s2s_link(router, origin):
    sent = []
    router.hosts[HOST].events.hook("route/remote",
                                   lambda e: sent.append(e.stanza.get("to")) or True)
    router.route(message("someone@elsewhere.example/x"), origin)
    assert sent == ["someone@elsewhere.example/x"] and origin.received == []


def test_malformed_to_is_jid_malformed(router, origin):
    router.route(message("bad@@example.org"), origin)
    assert the_error(origin) == ("modify", "jid-malformed")


# -- bounces ---------------------------------------------------------------------------------

@pytest.mark.parametrize("stanza", [
    message(f"nobody@{HOST}", "error"),
    iq(f"user@{HOST}/gone", "error", payload=None),
    iq(f"user@{HOST}/gone", "result", payload=None),
    message("x@elsewhere.example", "error"),
    presence("x@elsewhere.example"),
    presence("x@elsewhere.example", "unavailable"),
    presence("x@elsewhere.example", "subscribed"),
], ids=["message-error", "iq-error", "iq-result", "remote-error", "remote-presence",
        "remote-unavailable", "remote-subscribed"])
def test_errors_results_and_plain_presence_are_never_bounced(router, origin, stanza):
    router.route(stanza, origin)
    assert origin.received == []


@pytest.mark.parametrize("kind", ["subscribe", "probe"])
def test_subscription_requests_to_unreachable_domains_bounce(router, origin, kind):
    router.route(presence("x@elsewhere.example", kind), origin)
    assert the_error(origin) == ("cancel", "service-unavailable")


def test_bounce_without_origin_is_routed_to_the_sender(router):
    sender = bound(router, f"sender@{HOST}/here")
    router.route(message(f"nobody@{HOST}"))
    (reply,) = sender.received
    assert error_of(reply) == ("cancel", "service-unavailable")


def test_bounce_of_a_bounce_stops(router):
    # An error routed from inside to an unreachable sender must not loop.
    router.route(message(f"nobody@{HOST}", sender="ghost@elsewhere.example"))


def test_reply_without_origin_is_routed(router):
    target = bound(router, f"user@{HOST}/phone")
    router.reply(None, message(f"user@{HOST}/phone"))
    assert len(target.received) == 1


def test_presence_to_a_bare_jid_with_no_session_here_looks_further_first(core, router, origin):
    """A subscription request reaches a user whose only session is on another node."""
    asked: list[object] = []
    seen: list[list[str]] = []
    events = core.router.hosts[HOST].events
    events.hook("session-missing", lambda event: asked.append(event.to)
                or bound(router, f"user@{HOST}/elsewhere"))
    events.hook("presence/bare", lambda event: seen.append(sorted(router.resources(event.to))))
    router.route(presence(f"user@{HOST}", "subscribe"), origin)
    assert asked == [parse_jid(f"user@{HOST}")]
    assert seen == [["elsewhere"]]
