"""XEP-0352 client state indication with mod_csi_simple: what waits while the
client is inactive, and the order it arrives in."""

from __future__ import annotations

import asyncio
import re
from xml.etree.ElementTree import Element

import pytest

from tests.integration.clients import close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server

USERS = {"alice": "secret-a", "bob": "secret-b"}
CHAT_STATES = "http://jabber.org/protocol/chatstates"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("csi"), modules=("csi_simple",),
                         extra="csi_queue_size = 4\n")
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


def composing(bob, to: str, n: int) -> None:
    message = bob.make_message(mto=to, mtype="chat")
    message["id"] = f"state-{n}"
    message.xml.append(Element(f"{{{CHAT_STATES}}}composing"))
    message.send()


def stanza_ids(data: bytes) -> list[str]:
    return [m.decode() for m in re.findall(rb"<(?:message|presence)[^>]* id=.([\w-]+)", data)]


def test_inactive_clients_get_unimportant_stanzas_later_and_in_order(server):
    alice = RawClient(server.c2s_port)
    alice.login(server.domain, server.cert, "alice", USERS["alice"], resource="phone")
    alice.send("<presence/>")
    alice.read_until(rb"<presence[^>]*>")
    full = f"alice@{server.domain}/phone"

    async def routed(bob) -> None:
        """Bob's earlier stanzas have reached Alice's session once the server answers him."""
        await bob.plugin["xep_0199"].ping(jid=server.domain, timeout=10)

    def inactive() -> None:
        """<inactive/>, taken once the server answers the ping after it."""
        alice.send("<inactive xmlns='urn:xmpp:csi:0'/><iq type='get' id='p'>"
                   "<ping xmlns='urn:xmpp:ping'/></iq>")
        alice.read_until(rb"id=.p.")

    async def scenario():
        bob = await login(server, "bob")
        inactive()
        composing(bob, full, 1)
        presence = bob.make_presence(pto=full, pstatus="directed")
        presence["id"] = "presence-1"
        presence.send()
        composing(bob, full, 2)
        await routed(bob)
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(alice.read_until, rb"<message", 0.5)
        message = bob.make_message(mto=full, mbody="wake up", mtype="chat")
        message["id"] = "body-1"
        message.send()
        data = await asyncio.to_thread(alice.read_until, rb"</body>")
        assert stanza_ids(data) == ["state-1", "presence-1", "state-2", "body-1"]
        # Held again until the client says it is active.
        composing(bob, full, 3)
        await routed(bob)
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(alice.read_until, rb"state-3", 0.5)
        alice.send("<active xmlns='urn:xmpp:csi:0'/>")
        await asyncio.to_thread(alice.read_until, rb"state-3")
        # A full queue (csi_queue_size = 4) is sent at once.
        inactive()
        for n in range(4, 8):
            composing(bob, full, n)
        data = await asyncio.to_thread(alice.read_until, rb"state-7")
        assert stanza_ids(data) == ["state-4", "state-5", "state-6", "state-7"]
        await close(bob)

    try:
        run(scenario())
    finally:
        alice.close()


def test_the_stream_feature_is_offered_after_authentication(server):
    raw = RawClient(server.c2s_port)
    try:
        before = raw.starttls(server.domain, server.cert)
        assert b"urn:xmpp:csi:0" not in before
        assert b"<success" in raw.auth_plain("alice", USERS["alice"])
        assert b"urn:xmpp:csi:0" in raw.open_stream(server.domain)
    finally:
        raw.close()
