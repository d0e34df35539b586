"""XEP-0357 push (mod_cloud_notify) with an app server of our own: an external
component (XEP-0114, slixmpp) recording the pubsub publishes it gets."""

from __future__ import annotations

import asyncio
import re
import time
from xml.etree.ElementTree import Element

import pytest
from slixmpp import ComponentXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.clients import TIMEOUT, close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server

USERS = {"alice": "secret-a", "bob": "secret-b", "carol": "secret-c"}
PUBSUB = "http://jabber.org/protocol/pubsub"
PUSH = "urn:xmpp:push:0"
DATA = "jabber:x:data"
APP = "push.localhost"
SM = "urn:xmpp:sm:3"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(
        tmp_path_factory.mktemp("cloud-notify"), modules=("smacks", "cloud_notify"),
        extra="push_notification_with_sender = true\npush_max_errors = 2\n",
        host_extra=f'Component "{APP}"\n    component_secret = "app-secret"\n')
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


class AppServer(ComponentXMPP):
    """Records each publish; answers with an error while `failing`."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__(APP, "app-secret")
        self.publishes: asyncio.Queue = asyncio.Queue()
        self.failing = False
        self.started = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", lambda _: self.started.set_result(True))
        self.register_handler(Callback("publish", MatchXPath(
            f"{{{self.default_ns}}}iq/{{{PUBSUB}}}pubsub"), self._publish))

    def _publish(self, iq) -> None:
        self.publishes.put_nowait(iq.xml)
        reply = iq.reply(clear=True)
        if self.failing:
            reply["type"] = "error"
            reply["error"]["condition"] = "item-not-found"
            reply["error"]["type"] = "cancel"
        reply.send()

    async def stop(self) -> None:
        self.disconnect()
        await asyncio.wait_for(self.disconnected, TIMEOUT)

    async def next_publish(self, timeout: float = TIMEOUT) -> Element:
        return await asyncio.wait_for(self.publishes.get(), timeout)


async def app_server(server) -> AppServer:
    app = AppServer()
    app.connect("127.0.0.1", server.ports["component"])
    await asyncio.wait_for(app.started, TIMEOUT)
    return app


def fields(publish: Element) -> dict[str, str]:
    form = publish.find(f".//{{{PUSH}}}notification/{{{DATA}}}x")
    return {f.get("var"): f.findtext(f"{{{DATA}}}value") for f in form}


def registered(server, user: str, *, stream_management: bool) -> RawClient:
    """A session of `user` that enabled pushes to the app server (node "device-1")."""
    raw = RawClient(server.c2s_port)
    raw.login(server.domain, server.cert, user, USERS[user], resource="phone")
    raw.send("<presence/>")
    raw.read_until(rb"<presence[^>]*>")
    raw.send(f"<iq type='get' id='d' to='{user}@{server.domain}'>"
             "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    assert PUSH.encode() in raw.read_until(rb"id=.d.*?</iq>")
    if stream_management:
        raw.send(f"<enable xmlns='{SM}' resume='true'/>")
        raw.read_until(rb"<enabled[^>]*>")
    raw.send(f"<iq type='set' id='push'><enable xmlns='{PUSH}' jid='{APP}' node='device-1'>"
             f"<x xmlns='{DATA}' type='submit'><field var='FORM_TYPE'><value>"
             f"{PUBSUB}#publish-options</value></field><field var='secret'><value>s3cr3t"
             "</value></field></x></enable></iq>")
    answer = raw.read_until(rb"id=.push.[^>]*>")
    assert b"result" in answer, answer
    if stream_management:
        raw.send(f"<a xmlns='{SM}' h='1'/>")  # the result: nothing left unacknowledged
    return raw


def test_a_hibernating_session_gets_a_push_per_burst(server):
    async def scenario():
        app = await app_server(server)
        alice = registered(server, "alice", stream_management=True)
        alice.close()  # the network goes; the session hibernates
        bob = await login(server, "bob")
        bob.send_message(mto=f"alice@{server.domain}", mbody="secret text", mtype="chat")
        publish = await app.next_publish()
        assert publish.get("type") == "set" and publish.get("from") == server.domain
        assert publish.find(f".//{{{PUBSUB}}}publish").get("node") == "device-1"
        assert fields(publish) == {
            "FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1",
            "last-message-sender": f"bob@{server.domain}/test",
            "last-message-body": "New Message!"}  # not the text: with_body is off
        options = publish.find(f".//{{{PUBSUB}}}publish-options/{{{DATA}}}x")
        assert options is not None and "s3cr3t" in "".join(options.itertext())
        await close(bob)
        await app.stop()

    run(scenario())


def test_offline_messages_are_pushed_and_failing_app_servers_are_dropped(server):
    async def scenario():
        app = await app_server(server)
        carol = registered(server, "carol", stream_management=False)
        carol.send("</stream:stream>")
        carol.read_to_close()
        carol.close()
        bob = await login(server, "bob", resource="offline")
        app.failing = True
        for n in range(2):  # push_max_errors = 2
            bob.send_message(mto=f"carol@{server.domain}", mbody=f"m{n}", mtype="chat")
            assert fields(await app.next_publish())["message-count"] == "1"
        await asyncio.to_thread(wait_for_log, server, "Disabling push notifications")
        bob.send_message(mto=f"carol@{server.domain}", mbody="after", mtype="chat")
        with pytest.raises(TimeoutError):
            await app.next_publish(timeout=1.0)
        await close(bob)
        await app.stop()

    run(scenario())


def test_enable_without_a_jid_is_a_bad_request(server):
    raw = RawClient(server.c2s_port)
    try:
        raw.login(server.domain, server.cert, "bob", USERS["bob"], resource="bad")
        raw.send(f"<iq type='set' id='e'><enable xmlns='{PUSH}' node='n'/></iq>")
        answer = raw.read_until(rb"</iq>")
        assert re.search(rb"type=.error.", answer) and b"<bad-request" in answer
    finally:
        raw.close()


def wait_for_log(server, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log_path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.05)
