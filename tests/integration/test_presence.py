"""RFC 6121 presence, rosters and message delivery rules, with slixmpp as the client."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest

from storage.db import Database, database_url
from storage.roster import RosterItem, RosterStore
from tests.integration.clients import close, fetched_roster, login, run
from tests.integration.raw_client import (
    LAST,
    RawClient,
    last_activity,
    next_push,
    presences_until,
    pushed_items,
    raw_iq,
    raw_login,
    raw_online,
    roster_query,
)
from tests.integration.server_fixture import make_server
from xmpp.config import load_config

USERS = {name: f"pw-{name}" for name in (
    "gone_a", "gone_b", "dir_a", "dir_b", "probe_a", "probe_b", "rost", "rost_c",
    "prio_a", "prio_b", "neg_a", "neg_b", "multi", "once_a", "once_b",
    "stale_a", "stale_b", "deny_a", "deny_b", "asker", "ver",
    "echo", "rm_a", "rm_b", "pre_a", "pre_b", "ack_a", "ack_b", "mut_a", "mut_b",
    "last_a", "last_b", "last_c")}

# Mutual subscriptions seeded before the server starts: (user, contact).
BOTH = [("gone_a", "gone_b"), ("probe_a", "probe_b"), ("once_a", "once_b"), ("rm_a", "rm_b"),
        ("last_a", "last_b")]
# One-way subscriptions seeded likewise: (subscriber, contact).
TO = [("mut_a", "mut_b")]




@contextlib.contextmanager
def rosters(server):
    """The server's roster store, opened from its config (the server may be running)."""
    database = Database(database_url(load_config(server.config_path)))
    try:
        database.migrate()
        yield RosterStore(database)
    finally:
        database.close()


def seed_mutual(server, pairs) -> None:
    with rosters(server) as store:
        for one, other in pairs:
            store.put_item(server.domain, one, RosterItem(server.jid(other), subscription="both"))
            store.put_item(server.domain, other, RosterItem(server.jid(one), subscription="both"))


def seed_one_way(server, pairs) -> None:
    with rosters(server) as store:
        for subscriber, contact in pairs:
            store.put_item(server.domain, subscriber,
                           RosterItem(server.jid(contact), subscription="to"))
            store.put_item(server.domain, contact,
                           RosterItem(server.jid(subscriber), subscription="from"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("presence"), modules=("lastactivity",))
    server.create_users(USERS)
    seed_mutual(server, BOTH)
    seed_one_way(server, TO)
    server.start()
    yield server
    assert server.stop() == 0


DELAY = "{urn:xmpp:delay}delay"


def assert_replayed(presence, server, before: datetime) -> None:
    """A presence the server kept and sent again carries when it was sent (XEP-0203)."""
    assert presence["delay"]["from"] == server.domain
    assert presence["delay"]["stamp"] <= before


# slixmpp reports an available presence's <show/> as its type.
AVAILABLE = ("available", "away", "chat", "dnd", "xa")


def is_from(jid: str, kind: str):
    kinds = AVAILABLE if kind == "available" else (kind,)
    return lambda p: p["from"].bare == jid and p["type"] in kinds


def test_unavailable_reaches_contacts_when_a_client_just_drops(server):
    async def scenario():
        alice = await login(server, "gone_a")
        raw = RawClient(server.c2s_port)
        await asyncio.to_thread(raw.login, server.domain, server.cert, "gone_b", "pw-gone_b",
                                "dropped")
        raw.send("<presence/>")
        seen = await alice.next_presence(is_from(server.jid("gone_b"), "available"))
        assert seen["from"].resource == "dropped"
        raw.close()  # no unavailable presence, no </stream:stream>
        gone = await alice.next_presence(is_from(server.jid("gone_b"), "unavailable"))
        assert gone["from"].resource == "dropped"
        await close(alice)

    run(scenario())


def test_directed_presence_to_a_non_contact_and_unavailable_at_logout(server):
    async def scenario():
        alice = await login(server, "dir_a", presence=False)
        bob = await login(server, "dir_b")
        alice.send_presence(pto=str(bob.boundjid), pstatus="just for you")
        directed = await bob.next_presence(is_from(server.jid("dir_a"), "available"))
        assert directed["status"] == "just for you"
        # Alice never sent unavailable herself: the server does it for her.
        await close(alice)
        gone = await bob.next_presence(is_from(server.jid("dir_a"), "unavailable"))
        assert gone["from"] == alice.boundjid
        await close(bob)

    run(scenario())


def test_a_contact_given_directed_presence_gets_one_unavailable(server):
    async def scenario():
        bob = await login(server, "once_b")
        alice = await login(server, "once_a", resource="first")
        await bob.next_presence(lambda p: p["from"] == alice.boundjid)
        alice.send_presence(pto=str(bob.boundjid), pstatus="just for you")
        await bob.next_presence(lambda p: p["status"] == "just for you")
        await close(alice)
        again = await login(server, "once_a", resource="again")
        seen = []
        await bob.next_presence(lambda p: seen.append(p) or p["from"] == again.boundjid)
        gone = [p for p in seen if p["type"] == "unavailable"]
        assert [str(p["from"]) for p in gone] == [str(alice.boundjid)]
        await close(again, bob)

    run(scenario())


def test_probe_on_login_shows_contacts_already_online(server):
    async def scenario():
        bob = await login(server, "probe_b", presence=False)
        bob.send_presence(pstatus="been here a while", pshow="away")
        await bob.plugin["xep_0199"].ping(server.domain)  # the presence is processed
        alice_logged_in = datetime.now(UTC)
        alice = await login(server, "probe_a")
        seen = await alice.next_presence(is_from(server.jid("probe_b"), "available"))
        assert seen["from"] == bob.boundjid
        assert seen["status"] == "been here a while"
        assert seen["show"] == "away"
        assert_replayed(seen, server, before=alice_logged_in)
        await close(alice, bob)

    run(scenario())


def test_a_new_resource_sees_the_users_other_resources(server):
    async def scenario():
        first = await login(server, "multi", resource="first", presence=False)
        first.send_presence(pstatus="on the desk")
        live = await first.next_presence(lambda p: p["from"] == first.boundjid)
        assert live.xml.find(DELAY) is None
        second_logged_in = datetime.now(UTC)
        second = await login(server, "multi", resource="second")
        seen = await second.next_presence(lambda p: p["from"] == first.boundjid)
        assert seen["status"] == "on the desk"
        assert_replayed(seen, server, before=second_logged_in)
        await first.next_presence(lambda p: p["from"] == second.boundjid)
        await close(first, second)

    run(scenario())


def test_probe_of_a_contact_without_subscription_cancels_it(server):
    # stale_a believes she is subscribed to stale_b, who knows nothing of it.
    with rosters(server) as store:
        store.put_item(server.domain, "stale_a",
                       RosterItem(server.jid("stale_b"), subscription="to"))

    async def scenario():
        alice = await login(server, "stale_a", presence=False)
        await alice.get_roster()
        alice.send_presence()
        answer = await alice.next_presence(is_from(server.jid("stale_b"), "unsubscribed"))
        assert answer["from"] == server.jid("stale_b")
        roster = await fetched_roster(alice)
        assert roster[server.jid("stale_b")]["subscription"] == "none"
        await close(alice)

    run(scenario())


def test_subscription_request_to_a_missing_account_is_acknowledged(server):
    """As Prosody 0.12's mod_presence: an 'unavailable' from the contact's bare
    JID acknowledges the request, and nothing is stored for the missing account."""
    nobody = f"nobody@{server.domain}"

    async def scenario():
        asker = await login(server, "asker")
        asker.send_presence(pto=nobody, ptype="subscribe")
        answer = await asker.next_presence(is_from(nobody, "unavailable"))
        assert answer["to"] == server.jid("asker")
        await close(asker)

    run(scenario())
    with rosters(server) as store:
        assert store.pending_in(server.domain, "nobody") == {}


def test_roster_set_and_remove_are_pushed_to_every_resource(server):
    async def scenario():
        phone = await login(server, "rost", resource="phone")
        laptop = await login(server, "rost", resource="laptop")
        pushes: asyncio.Queue = asyncio.Queue()
        laptop.add_event_handler(
            "roster_update", lambda iq: iq["type"] == "set" and pushes.put_nowait(iq))
        await phone.get_roster()
        await laptop.get_roster()
        contact = server.jid("rost_c")

        await phone.update_roster(contact, name="Carol", groups=["Friends", "Work"])
        push = await asyncio.wait_for(pushes.get(), 10)
        item = push["roster"]["items"][contact]
        assert item["name"] == "Carol"
        assert sorted(item["groups"]) == ["Friends", "Work"]
        assert item["subscription"] == "none"
        stored = (await fetched_roster(phone))[contact]
        assert stored["name"] == "Carol" and sorted(stored["groups"]) == ["Friends", "Work"]

        await phone.del_roster_item(contact)
        push = await asyncio.wait_for(pushes.get(), 10)
        assert push["roster"]["items"][contact]["subscription"] == "remove"
        assert contact not in await fetched_roster(laptop)
        await close(phone, laptop)

    run(scenario())


def test_removing_a_contact_with_a_pending_request_denies_it(server):
    async def scenario():
        alice = await login(server, "deny_a", presence=False)
        alice.roster.auto_authorize = None  # alice neither accepts nor refuses by herself
        alice.send_presence()
        await alice.get_roster()
        bob = await login(server, "deny_b")
        await bob.get_roster()
        bob.send_presence(pto=server.jid("deny_a"), ptype="subscribe")
        await alice.next_presence(is_from(server.jid("deny_b"), "subscribe"))
        await alice.update_roster(server.jid("deny_b"), name="Bob")
        await alice.del_roster_item(server.jid("deny_b"))
        await bob.next_presence(is_from(server.jid("deny_a"), "unsubscribed"))
        item = (await fetched_roster(bob))[server.jid("deny_a")]
        assert item["subscription"] == "none" and not item["pending_out"]
        await close(alice, bob)

    run(scenario())


def test_bare_jid_message_goes_to_the_highest_priority_resource(server):
    async def scenario():
        alice = await login(server, "prio_a")
        high = await login(server, "prio_b", resource="high", presence=False)
        low = await login(server, "prio_b", resource="low", presence=False)
        high.send_presence(ppriority=5)
        await high.next_presence(lambda p: p["from"] == high.boundjid)
        low.send_presence(ppriority=1)
        await high.next_presence(lambda p: p["from"] == low.boundjid)
        alice.send_message(mto=server.jid("prio_b"), mbody="for the top", mtype="chat")
        assert (await high.next_message())["body"] == "for the top"
        # The first thing the low resource gets is a later message sent to it directly.
        alice.send_message(mto=str(low.boundjid), mbody="direct", mtype="chat")
        assert (await low.next_message())["body"] == "direct"
        await close(alice, high, low)

    run(scenario())


def test_negative_priority_resource_gets_no_bare_jid_messages(server):
    async def scenario():
        alice = await login(server, "neg_a")
        shy = await login(server, "neg_b", resource="shy", presence=False)
        shy.send_presence(ppriority=-1)
        await shy.plugin["xep_0199"].ping(server.domain)
        alice.send_message(mto=server.jid("neg_b"), mbody="to the bare JID", mtype="chat")
        alice.send_message(mto=str(shy.boundjid), mbody="to the full JID", mtype="chat")
        assert (await shy.next_message())["body"] == "to the full JID"
        # The bare-JID message waited offline for a resource that takes them.
        later = await login(server, "neg_b", resource="later")
        assert (await later.next_message())["body"] == "to the bare JID"
        await close(alice, shy, later)

    run(scenario())


def test_pending_subscription_survives_a_restart(tmp_path):
    server = make_server(tmp_path)
    server.create_users({"asker": "pw-asker", "asked": "pw-asked"})
    server.start()
    try:
        async def ask():
            asker = await login(server, "asker")
            await asker.get_roster()
            asker.send_presence(pto=server.jid("asked"), ptype="subscribe")
            # The request is stored once the asker's roster shows it pending.
            roster = await fetched_roster(asker)
            assert roster[server.jid("asked")]["pending_out"]
            await close(asker)

        run(ask())
        assert server.stop() == 0
        server.start()

        async def answer():
            asked = await login(server, "asked", presence=False)
            asked.roster.auto_authorize = None  # let the test see the request unanswered
            asked.send_presence()
            request = await asked.next_presence(lambda p: p["type"] == "subscribe")
            assert request["from"] == server.jid("asker")
            asker = await login(server, "asker")
            item = (await fetched_roster(asker))[server.jid("asked")]
            assert item["pending_out"] and item["subscription"] == "none"
            await close(asked, asker)

        run(answer())
    finally:
        server.stop()


@pytest.fixture(scope="module")
def no_offline(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("no-offline"),
                         host_extra='modules_disabled = { "offline" }')
    server.create_users({"sender": "pw-sender", "away": "pw-away"})
    server.start()
    yield server
    assert server.stop() == 0


def test_message_to_offline_user_without_offline_module_bounces(no_offline):
    async def scenario():
        sender = await login(no_offline, "sender")
        errors: asyncio.Queue = asyncio.Queue()
        sender.add_event_handler("message_error", errors.put_nowait)
        sender.send_message(mto=no_offline.jid("away"), mbody="anyone?", mtype="chat")
        error = await asyncio.wait_for(errors.get(), 10)
        assert error["from"] == no_offline.jid("away")
        assert error["error"]["condition"] == "service-unavailable"
        assert error["error"]["type"] == "cancel"
        await close(sender)

    run(scenario())


def test_a_removed_contact_sees_the_user_go_offline(server):
    bob, _ = raw_login(server, "rm_b")
    alice, _ = raw_login(server, "rm_a", "desk")
    try:
        # Alice online first (her own presence echoed back), so Bob's probe finds
        # her available rather than racing her initial presence.
        alice.send("<presence/>")
        presences_until(alice, server.jid("rm_a"), "available")
        bob.send("<presence/>")
        assert presences_until(bob, server.jid("rm_a"), "available") == [
            (server.jid("rm_a") + "/desk", "available")]
        raw_iq(alice, "rm", "<query xmlns='jabber:iq:roster'>"
               f"<item jid='{server.jid('rm_b')}' subscription='remove'/></query>", "set")
        assert presences_until(bob, server.jid("rm_a"), "unsubscribe") == [
            (server.jid("rm_a"), "unsubscribed"),
            (server.jid("rm_a") + "/desk", "unavailable"),
            (server.jid("rm_a"), "unsubscribe")]
    finally:
        bob.close()
        alice.close()


def test_subscription_pre_approval(server):
    """RFC 6121 3.4 (Prosody's presence_preapproval.scs, with the RFC's roster
    item states): Alice approves Bob before he asks; his request is approved at once."""
    alice_jid, bob_jid = server.jid("pre_a"), server.jid("pre_b")
    alice, features = raw_login(server, "pre_a")
    bob = None
    try:
        assert b"urn:xmpp:features:pre-approval" in features
        raw_iq(alice, "roster", roster_query())
        alice.send("<presence/>")
        alice.send(f"<presence to='{bob_jid}' type='subscribed'/>")
        assert pushed_items(next_push(alice)) == [
            (bob_jid, {"jid": bob_jid, "subscription": "none", "approved": "true"})]

        bob = raw_online(server, "pre_b")
        bob.send(f"<presence to='{alice_jid}' type='subscribe'/>")
        assert pushed_items(next_push(bob)) == [
            (alice_jid, {"jid": alice_jid, "subscription": "none", "ask": "subscribe"})]
        assert presences_until(bob, alice_jid, "available") == [
            (alice_jid, "subscribed"), (alice_jid + "/raw", "available")]
        assert pushed_items(next_push(alice)) == [
            (bob_jid, {"jid": bob_jid, "subscription": "from"})]
    finally:
        alice.close()
        if bob is not None:
            bob.close()


def test_approving_makes_the_subscription_mutual_and_probes_the_contact(server):
    """Alice already sees Bob; when she approves his request, her server probes
    him, so she has his presence at once (as Prosody does)."""
    alice_jid, bob_jid = server.jid("mut_a"), server.jid("mut_b")
    bob = raw_online(server, "mut_b")
    alice = raw_online(server, "mut_a")
    try:
        assert presences_until(alice, bob_jid, "available") == [(bob_jid + "/raw", "available")]
        bob.send(f"<presence to='{alice_jid}' type='subscribe'/>")
        assert presences_until(alice, bob_jid, "subscribe") == [(bob_jid, "subscribe")]
        alice.send(f"<presence to='{bob_jid}' type='subscribed'/>")
        assert presences_until(alice, bob_jid, "available") == [(bob_jid + "/raw", "available")]
        assert presences_until(bob, alice_jid, "available")[-2:] == [
            (alice_jid, "subscribed"), (alice_jid + "/raw", "available")]
    finally:
        alice.close()
        bob.close()


def test_last_activity_for_contacts_only_and_zero_while_online(server):
    bob_jid = server.jid("last_b")
    alice = raw_online(server, "last_a")
    stranger, _ = raw_login(server, "last_c", "elsewhere")
    bob = raw_online(server, "last_b")
    try:
        presences_until(alice, bob_jid, "available")
        online = last_activity(alice, bob_jid).find(LAST)
        assert (online.get("seconds"), online.text) == ("0", None)
        bob.send("<presence type='unavailable'><status>Gone fishing</status></presence>")
        presences_until(alice, bob_jid, "unavailable")
        offline = last_activity(alice, bob_jid).find(LAST)
        assert int(offline.get("seconds")) >= 0 and offline.text == "Gone fishing"
        refused = last_activity(stranger, bob_jid)
        assert refused.get("type") == "error"
        assert refused.find("{jabber:client}error/"
                            "{urn:ietf:params:xml:ns:xmpp-stanzas}forbidden") is not None
        # A connection that just drops counts too, without a status.
        bob.send("<presence/>")
        presences_until(alice, bob_jid, "available")
        bob.close()
        presences_until(alice, bob_jid, "unavailable")
        dropped = last_activity(alice, bob_jid).find(LAST)
        assert int(dropped.get("seconds")) >= 0 and dropped.text is None
    finally:
        for raw in (alice, stranger, bob):
            raw.close()
