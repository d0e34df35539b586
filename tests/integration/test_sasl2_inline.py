"""Bind 2's inline features (XEP-0386) and stream management inside SASL2
(XEP-0198 section 5, XEP-0388), with carbons, smacks and CSI loaded, spoken
by a raw SASL2 client: one `<authenticate/>` logs in, binds, enables carbons
and stream management and says the client is inactive; a later one resumes.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.integration.clients import close, login, run
from tests.integration.server_fixture import serving
from tests.integration.test_sasl2 import authenticate, connected, tls_client, user_agent

USERS = {"alice": "pw-alice", "bob": "pw-bob"}
MODULES = ("sasl2", "sasl2_bind2", "carbons", "smacks", "csi_simple")
SM = "urn:xmpp:sm:3"
INLINE_BIND = (f"<bind xmlns='urn:xmpp:bind:0'><tag>phone</tag>"
               "<enable xmlns='urn:xmpp:carbons:2'/>"
               f"<enable xmlns='{SM}' resume='true'/>"
               "<inactive xmlns='urn:xmpp:csi:0'/></bind>")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("sasl2-inline"), USERS, modules=MODULES) as server:
        yield server


def plain(user: str) -> bytes:
    return f"\0{user}\0{USERS[user]}".encode()


def test_inline_features_are_advertised_where_their_modules_are_loaded(server):
    with connected(server) as client:
        features = client.features
    inline = re.search(rb"<bind xmlns=.urn:xmpp:bind:0.><inline>(.*?)</inline>", features, re.S)
    assert inline, features
    assert set(re.findall(rb"var=.([^'\"]+)", inline.group(1))) == {
        b"urn:xmpp:carbons:2", SM.encode(), b"urn:xmpp:csi:0"}
    # Resumption inside <authenticate/>: SASL2's own <inline/>.
    assert re.search(rb"</bind><sm xmlns=.urn:xmpp:sm:3./></inline></authentication>", features,
                     re.S), features


def test_one_authenticate_binds_enables_and_a_later_one_resumes(server):
    phone = tls_client(server)
    agent = user_agent("alice-phone")

    async def routed(bob) -> None:
        """Bob's earlier stanzas have reached Alice's session once the server answers him."""
        await bob.plugin["xep_0199"].ping(jid=server.domain, timeout=10)

    async def scenario():
        answer = authenticate(phone, "PLAIN", plain("alice"), agent + INLINE_BIND)
        assert b"<success" in answer, answer
        full = re.search(rb"<authorization-identifier>([^<]+)<", answer).group(1).decode()
        assert full.startswith(f"alice@{server.domain}/phone~")
        enabled = re.search(rb"<bound xmlns=.urn:xmpp:bind:0.><enabled xmlns=.urn:xmpp:sm:3. "
                            rb"[^>]*id=.([^'\"]+)", answer)
        assert enabled and b"resume='true'" in answer, answer
        previd = enabled.group(1).decode()
        desk = await login(server, "alice", resource="desk")
        bob = await login(server, "bob")
        try:
            # CSI: inactive from the start, so a directed presence waits...
            presence = bob.make_presence(pto=full, pstatus="directed")
            presence["id"] = "presence-1"
            presence.send()
            await routed(bob)
            with pytest.raises(TimeoutError):
                await asyncio.to_thread(phone.read_until, rb"<presence", 0.5)
            # ...until something important comes: carbons, enabled inline, is one.
            desk.send_message(mto=f"bob@{server.domain}", mbody="from the desk", mtype="chat")
            data = await asyncio.to_thread(phone.read_until, rb"</message>")
            assert data.index(b"presence-1") < data.index(b"<sent xmlns='urn:xmpp:carbons:2'")
            # Stream management: the network goes; what Bob sends meanwhile is kept.
            phone.sock.close()
            bob.send_message(mto=full, mbody="during the cut", mtype="chat")
            await routed(bob)
            again = tls_client(server)
            try:
                answer = await asyncio.to_thread(
                    authenticate, again, "PLAIN", plain("alice"),
                    agent + f"<resume xmlns='{SM}' previd='{previd}' h='0'/>" + INLINE_BIND)
                assert re.search(rf"<resumed xmlns=.{SM}. h=.\d+. previd=.{previd}.".encode(),
                                 answer), answer
                # Resumed, not bound again: the same full JID, no <bound/>.
                assert f"<authorization-identifier>{full}<".encode() in answer, answer
                assert b"<bound" not in answer
                if b"during the cut" not in answer:
                    answer += await asyncio.to_thread(again.read_until, rb"during the cut")
                assert answer.index(b"</success>") < answer.index(b"during the cut")
            finally:
                again.close()
        finally:
            await close(desk, bob)

    try:
        run(scenario())
    finally:
        phone.close()


def test_a_failed_inline_resume_still_binds(server):
    client = tls_client(server)
    try:
        answer = authenticate(client, "PLAIN", plain("bob"), user_agent("bob-raw")
                              + f"<resume xmlns='{SM}' previd='forged' h='0'/>"
                              + "<bind xmlns='urn:xmpp:bind:0'><tag>raw</tag></bind>")
        assert re.search(rf"<failed xmlns=.{SM}.><item-not-found ".encode(), answer), answer
        assert b"<bound xmlns='urn:xmpp:bind:0'" in answer, answer
        assert f"<authorization-identifier>bob@{server.domain}/raw~".encode() in answer
    finally:
        client.close()
