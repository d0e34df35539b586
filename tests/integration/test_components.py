"""Components: slixmpp's ComponentXMPP as a real XEP-0114 external component, and an
internal component (a Prosody module loaded on its own host)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import pytest
from slixmpp import ComponentXMPP
from slixmpp.exceptions import IqError

from tests.integration.clients import TIMEOUT, close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import serving
from xmpp.component import handshake_digest

USERS = {f"user{i}": f"secret-{i}" for i in range(1, 8)}
SECRETS = {
    "echo.localhost": "echo-secret",
    "kicknew.localhost": "kicknew-secret",
    "kickold.localhost": "kickold-secret",
    "gateway.example.net": "gateway-secret",
    "throttled.localhost": "throttled-secret",
}

COMPONENTS = """
disco_items = { { "gateway.example.net", "Legacy gateway" } }

Component "echo.localhost"
    component_secret = "echo-secret"
    name = "Echo service"

Component "kicknew.localhost"
    component_secret = "kicknew-secret"

Component "kickold.localhost"
    component_secret = "kickold-secret"
    component_conflict_resolve = "kick_old"

Component "gateway.example.net"
    component_secret = "gateway-secret"

Component "throttled.localhost"
    component_secret = "throttled-secret"

Component "svc.localhost" "version"
    modules_enabled = { "ping", "disco" }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("components"), USERS, host_extra=COMPONENTS) as server:
        yield server




class TestComponent(ComponentXMPP):
    """A ComponentXMPP that records what it receives in queues tests can await."""

    __test__ = False

    def __init__(self, domain: str, secret: str) -> None:
        super().__init__(domain, secret)
        self.messages: asyncio.Queue = asyncio.Queue()
        self.presences: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_event_loop()
        self.started = loop.create_future()
        self.ended = loop.create_future()
        self.stream_errors: list[str] = []
        self.add_event_handler("session_start", lambda _e: _settle(self.started, True))
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("stream_error",
                               lambda error: self.stream_errors.append(error["condition"]))
        self.add_event_handler("disconnected", self._disconnected)

    def _disconnected(self, _event: object) -> None:
        _settle(self.started, False)
        _settle(self.ended, True)

    async def next_message(self, timeout: float = TIMEOUT):
        return await asyncio.wait_for(self.messages.get(), timeout)


def _settle(future: asyncio.Future, value: bool) -> None:
    if not future.done():
        future.set_result(value)


async def try_connect(server, domain: str, secret: str | None = None) -> TestComponent:
    """Connect a component; `started` tells whether the handshake was accepted."""
    component = TestComponent(domain, SECRETS[domain] if secret is None else secret)
    component.enable_direct_tls = False
    component.connect("127.0.0.1", server.ports["component"])
    await asyncio.wait_for(asyncio.shield(component.started), TIMEOUT)
    return component


async def connect(server, domain: str) -> TestComponent:
    component = await try_connect(server, domain)
    assert component.started.result(), f"component {domain} was not accepted"
    return component


async def disconnect(*components: TestComponent) -> None:
    for component in components:
        if not component.ended.done():
            component.disconnect()
    for component in components:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(component.ended, TIMEOUT)


# -- external components -------------------------------------------------------------

def test_component_receives_a_users_message_and_answers(server):
    async def scenario():
        component = await connect(server, "echo.localhost")
        component.add_event_handler("message", lambda msg: component.send_message(
            mto=msg["from"], mfrom="bot@echo.localhost", mbody="echo: " + msg["body"],
            mtype="chat"))
        alice = await login(server, "user1")
        for to in ("echo.localhost", "bot@echo.localhost", "bot@echo.localhost/r"):
            alice.send_message(mto=to, mbody=f"hello {to}", mtype="chat")
            received = await component.next_message()
            assert str(received["to"]) == to
            assert received["from"] == alice.boundjid
            answer = await alice.next_message()
            assert answer["body"] == f"echo: hello {to}"
            assert str(answer["from"]) == "bot@echo.localhost"
        await close(alice)
        await disconnect(component)

    run(scenario())


def test_component_sends_presence_and_messages_as_any_jid_on_its_domain(server):
    async def scenario():
        bob = await login(server, "user2")
        component = await connect(server, "echo.localhost")
        component.send_presence(pto=bob.boundjid.bare, pfrom="anyone@echo.localhost/desk",
                                pstatus="here")
        presence = await bob.next_presence(lambda p: p["from"].bare == "anyone@echo.localhost")
        assert str(presence["from"]) == "anyone@echo.localhost/desk"
        assert presence["status"] == "here"
        component.send_message(mto=str(bob.boundjid), mfrom="news@echo.localhost",
                               mbody="extra", mtype="headline")
        message = await bob.next_message()
        assert (str(message["from"]), message["body"]) == ("news@echo.localhost", "extra")
        # A stanza without 'from' comes from the component's domain.
        component.send_message(mto=str(bob.boundjid), mbody="plain")
        message = await bob.next_message()
        assert (str(message["from"]), message["body"]) == ("echo.localhost", "plain")
        await close(bob)
        await disconnect(component)

    run(scenario())


def test_sessions_lists_the_component_by_domain(server):
    async def scenario():
        component = await connect(server, "echo.localhost")
        port = component.transport.get_extra_info("sockname")[1]
        listed = [entry for entry in await asyncio.to_thread(server.sessions)
                  if entry["port"] == port]
        assert listed == [{"kind": "component", "id": "echo.localhost", "address": "127.0.0.1",
                           "port": port, "secure": False, "listener": "component"}]
        await disconnect(component)

    run(scenario())


def test_wrong_secret_is_not_authorized(server):
    async def scenario():
        component = await try_connect(server, "echo.localhost", secret="wrong")
        assert component.started.result() is False
        assert component.stream_errors == ["not-authorized"]
        await disconnect(component)

    run(scenario())


def raw_handshake(server, domain: str, secret: str) -> bytes:
    """A raw component connection from 127.0.0.9 and its handshake: the server's answer."""
    raw = RawClient(server.ports["component"], source_address="127.0.0.9")
    try:
        raw.send("<stream:stream xmlns='jabber:component:accept' "
                 f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>")
        header = raw.read_until(rb"<stream:stream[^>]*>")
        stream_id = re.search(rb" id=['\"]([^'\"]+)", header)
        assert stream_id is not None, header
        raw.send(f"<handshake>{handshake_digest(stream_id.group(1).decode(), secret)}"
                 "</handshake>")
        return raw.read_until(rb"<handshake[^>]*/>|</stream:stream>")
    finally:
        raw.close()


def test_wrong_secrets_are_throttled_and_told_the_wait(server):
    """vireo_auth_failure_limit (5) wrong secrets from one address; then even the
    right one is refused at once with the wait (0.2 s doubled, told as 1 s);
    once it has passed the right secret is accepted."""
    domain = "throttled.localhost"
    for _ in range(5):
        assert b"<not-authorized" in raw_handshake(server, domain, "wrong")
    started = time.monotonic()
    refused = raw_handshake(server, domain, SECRETS[domain])
    assert time.monotonic() - started < 1.0
    assert b"<policy-violation" in refused and b"wait 1 s" in refused
    time.sleep(1.0)  # the wait the server told
    assert b"<handshake" in raw_handshake(server, domain, SECRETS[domain])


def test_second_connection_is_refused_with_conflict(server):
    async def scenario():
        first = await connect(server, "kicknew.localhost")
        second = await try_connect(server, "kicknew.localhost")
        assert second.started.result() is False
        assert second.stream_errors == ["conflict"]
        # The first connection keeps serving the domain.
        alice = await login(server, "user3")
        alice.send_message(mto="kicknew.localhost", mbody="still there?")
        assert (await first.next_message())["body"] == "still there?"
        assert not first.ended.done()
        await close(alice)
        await disconnect(first, second)

    run(scenario())


def test_kick_old_replaces_the_first_connection_with_conflict(server):
    async def scenario():
        first = await connect(server, "kickold.localhost")
        second = await connect(server, "kickold.localhost")
        await asyncio.wait_for(first.ended, TIMEOUT)
        assert first.stream_errors == ["conflict"]
        alice = await login(server, "user4")
        alice.send_message(mto="kickold.localhost", mbody="who is there?")
        assert (await second.next_message())["body"] == "who is there?"
        await close(alice)
        await disconnect(second)

    run(scenario())


def test_stanzas_to_a_disconnected_component_get_remote_server_timeout(server):
    async def scenario():
        alice = await login(server, "user5")
        with pytest.raises(IqError) as raised:
            await alice.plugin["xep_0199"].ping("gateway.example.net", timeout=TIMEOUT)
        assert (raised.value.etype, raised.value.condition) == ("wait", "remote-server-timeout")
        alice.send_message(mto="someone@gateway.example.net", mbody="anyone?", mtype="chat")
        bounce = await alice.next_message()
        assert bounce["type"] == "error"
        assert (bounce["error"]["type"], bounce["error"]["condition"]) == \
            ("wait", "remote-server-timeout")
        await close(alice)

    run(scenario())


def test_disco_items_of_the_parent_host_list_the_components(server):
    async def scenario():
        alice = await login(server, "user6")
        items = await alice.plugin["xep_0030"].get_items(jid=server.domain)
        listed = {jid: name for jid, _node, name in items["disco_items"]["items"]}
        assert listed == {
            "echo.localhost": "Echo service",
            "kicknew.localhost": None,
            "kickold.localhost": None,
            "svc.localhost": None,
            "gateway.example.net": "Legacy gateway",
            "throttled.localhost": None,
        }
        await close(alice)

    run(scenario())


# -- an internal component --------------------------------------------------------------

def test_internal_component_answers_with_its_own_modules_only(server):
    async def scenario():
        alice = await login(server, "user7")
        version = await alice.plugin["xep_0092"].get_version("svc.localhost")
        assert version["software_version"]["name"] == "Vireo"
        await alice.plugin["xep_0199"].ping("svc.localhost")
        info = await alice.plugin["xep_0030"].get_info(jid="svc.localhost")
        features = set(info["disco_info"]["features"])
        assert {"jabber:iq:version", "urn:xmpp:ping"} <= features
        # Global modules (time, uptime) are not loaded onto components.
        assert "urn:xmpp:time" not in features
        with pytest.raises(IqError) as raised:
            await alice.plugin["xep_0030"].get_info(jid="svc.localhost", node="x",
                                                    timeout=TIMEOUT)
        assert raised.value.condition == "item-not-found"
        uptime_iq = alice.make_iq_get(queryxmlns="jabber:iq:last", ito="svc.localhost")
        with pytest.raises(IqError) as raised:
            await uptime_iq.send(timeout=TIMEOUT)
        assert raised.value.condition == "service-unavailable"
        # Stanzas to JIDs on the component reach it too: nothing there answers this one.
        iq = alice.make_iq_get(queryxmlns="jabber:iq:version", ito="room@svc.localhost/nick")
        with pytest.raises(IqError) as raised:
            await iq.send(timeout=TIMEOUT)
        assert raised.value.condition == "service-unavailable"
        await close(alice)

    run(scenario())
