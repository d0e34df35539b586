"""XEP-0191 blocking with slixmpp (xep_0191): the list, pushes, and what a
block stops in both directions."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp.exceptions import IqError

from tests.integration.clients import close, login, run
from tests.integration.server_fixture import make_server
from tests.integration.test_pep import MOOD, interested_login, payload, published_text
from tests.integration.test_presence import is_from, seed_mutual

PLUGINS = ("xep_0030", "xep_0092", "xep_0191", "xep_0004", "xep_0060", "xep_0115",
           "xep_0163")
USERS = {name: f"pw-{name}" for name in ("list_a", "block_a", "block_b", "pep_a", "pep_b")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("blocklist"), modules=("blocklist", "pep"))
    server.create_users(USERS)
    seed_mutual(server, [("block_a", "block_b"), ("pep_a", "pep_b")])
    server.start()
    yield server
    assert server.stop() == 0


def test_block_unblock_and_pushes_to_resources_that_asked(server):
    async def scenario():
        phone = await login(server, "list_a", plugins=PLUGINS, resource="phone")
        laptop = await login(server, "list_a", plugins=PLUGINS, resource="laptop")
        pushes: asyncio.Queue = asyncio.Queue()
        laptop.add_event_handler("blocked", pushes.put_nowait)
        laptop.add_event_handler("unblocked", pushes.put_nowait)
        assert await laptop["xep_0191"].get_blocked_jids() == set()
        await phone["xep_0191"].block(["spam@example.net", "example.com", "x@y/z"])
        push = await asyncio.wait_for(pushes.get(), 10)
        assert {item["jid"] for item in push["block"]} == {
            "spam@example.net", "example.com", "x@y/z"}
        await phone["xep_0191"].unblock(["example.com"])
        push = await asyncio.wait_for(pushes.get(), 10)
        assert [str(item["jid"]) for item in push["unblock"]] == ["example.com"]
        assert {str(j) for j in await phone["xep_0191"].get_blocked_jids()} == {
            "spam@example.net", "x@y/z"}
        unblock_all = phone.make_iq_set()  # slixmpp's unblock([]) sends no <unblock/>
        unblock_all.enable("unblock")
        await unblock_all.send(timeout=10)
        push = await asyncio.wait_for(pushes.get(), 10)
        assert len(push["unblock"]) == 0
        assert await laptop["xep_0191"].get_blocked_jids() == set()
        with pytest.raises(IqError) as malformed:
            await phone["xep_0191"].block(["@bad"])
        assert malformed.value.condition == "jid-malformed"
        await close(phone, laptop)

    run(scenario())


def test_a_block_stops_stanzas_both_ways_and_says_goodbye(server):
    async def scenario():
        alice = await login(server, "block_a", plugins=PLUGINS)
        bob = await login(server, "block_b", plugins=PLUGINS)
        alice_jid, bob_jid = server.jid("block_a"), server.jid("block_b")
        await bob.next_presence(is_from(alice_jid, "available"))
        await alice["xep_0191"].block([bob_jid])
        await bob.next_presence(is_from(alice_jid, "unavailable"))

        # Bob's chat message and IQ request get service-unavailable.
        bob.send_message(mto=alice_jid, mbody="hello?")
        error = await bob.next_message()
        assert error["type"] == "error" and error["error"]["condition"] == "service-unavailable"
        with pytest.raises(IqError) as iq_refused:
            await bob["xep_0092"].get_version(alice.boundjid.full)
        assert iq_refused.value.condition == "service-unavailable"
        # Alice's own attempts are refused with <blocked/>.
        alice.send_message(mto=bob_jid, mbody="psst")
        error = await alice.next_message()
        assert error["error"]["condition"] == "not-acceptable"
        assert error.xml.find(".//{urn:xmpp:blocking:errors}blocked") is not None
        # Her presence broadcast does not reach him while he is blocked.
        alice.send_presence(pstatus="while-blocked")
        await alice["xep_0191"].unblock([bob_jid])
        alice.send_presence(pstatus="after-unblock")
        seen = await bob.next_presence(is_from(alice_jid, "available"))
        assert seen["status"] == "after-unblock"
        await close(alice, bob)

    run(scenario())


def test_a_blocked_contact_gets_no_pep_notifications(server):
    async def scenario():
        alice = await login(server, "pep_a", plugins=PLUGINS)
        await alice["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood",
                                                                    "before"))
        # The last item arrives once the server knows what bob wants.
        bob, events = await interested_login(server, "pep_b", MOOD)
        assert published_text(await asyncio.wait_for(events.get(), 10)) == "before"
        await alice["xep_0191"].block([server.jid("pep_b")])
        await alice["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood",
                                                                    "while-blocked"))
        await alice["xep_0191"].unblock([server.jid("pep_b")])
        await alice["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood",
                                                                    "after"))
        assert published_text(await asyncio.wait_for(events.get(), 10)) == "after"
        await close(alice, bob)

    run(scenario())
