"""Client-to-server XMPP with slixmpp as the real client (RFC 6120/6121)."""

from __future__ import annotations

import asyncio
import base64
import re
import time

import pytest

from storage.accounts import AccountStore
from tests.integration.clients import (
    attempt_login,
    close,
    local_port,
    login,
    run,
    stored_roster,
    subscription_with,
    tls_version,
)
from tests.integration.raw_client import RawClient, raw_iq, raw_login
from tests.integration.server_fixture import make_server
from xmpp import namespaces as ns

USERS = {f"user{i}": f"secret-{i}" for i in range(1, 15)}
# Rounds of an approval sent while the contact repeats its request so many times:
# on PostgreSQL, without the roster lock, most runs lost an approval in some round.
RACES = 8
REPEATED_REQUESTS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory, databases):
    server = make_server(tmp_path_factory.mktemp("c2s"), modules=("offline",),
                         database=databases.config())
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


# (mechanism, direct TLS): every SASL mechanism over STARTTLS, and direct TLS (XEP-0368).
TLS_LOGINS = [("PLAIN", False), ("SCRAM-SHA-1", False), ("SCRAM-SHA-256", False),
              ("PLAIN", True), ("SCRAM-SHA-256", True)]


def test_logins_over_tls_with_each_mechanism(server):
    """TLS under each client's stream, and the server lists each session as encrypted,
    on its listener, authenticated with the mechanism the client chose."""
    async def scenario():
        clients = [await login(server, "user1", mech=mech, direct_tls=direct,
                               resource=f"{mech}-{'direct' if direct else 'starttls'}")
                   for mech, direct in TLS_LOGINS]
        # One listing for all (each `app.py sessions` is a process start).
        listed = {entry["port"]: entry for entry in await asyncio.to_thread(server.sessions)
                  if entry["kind"] == "c2s"}
        for client, (mech, direct) in zip(clients, TLS_LOGINS, strict=True):
            assert tls_version(client) in {"TLSv1.2", "TLSv1.3"}, client.boundjid
            entry = listed[local_port(client)]
            assert (entry["id"], entry["secure"], entry["listener"], entry["auth"]) == \
                (str(client.boundjid), True, "c2s_direct_tls" if direct else "c2s", mech)
        await close(*clients)

    run(scenario())


def test_wrong_password_fails_with_not_authorized(server):
    async def scenario():
        client = await attempt_login(server, "user2", "wrong-password")
        assert client.started.result() is False
        assert client.sasl_failures == ["not-authorized"]
        await close(client)

    run(scenario())


def test_messages_to_full_and_bare_jids(server):
    async def scenario():
        alice = await login(server, "user3")
        bob = await login(server, "user4")
        alice.send_message(mto=str(bob.boundjid), mbody="to full", mtype="chat")
        received = await bob.next_message()
        assert received["body"] == "to full"
        assert received["from"] == alice.boundjid
        alice.send_message(mto=bob.boundjid.bare, mbody="to bare", mtype="chat")
        received = await bob.next_message()
        assert received["body"] == "to bare"
        bob.send_message(mto=alice.boundjid.bare, mbody="reply")
        assert (await alice.next_message())["body"] == "reply"
        await close(alice, bob)

    run(scenario())


def test_subscription_handshake_ends_in_both_with_presence(server):
    async def scenario():
        alice = await login(server, "user5")
        bob = await login(server, "user6")
        await alice.get_roster()
        await bob.get_roster()
        alice_bare, bob_bare = alice.boundjid.bare, bob.boundjid.bare
        alice.send_presence(pto=bob_bare, ptype="subscribe")
        request = await bob.next_presence(lambda p: p["type"] == "subscribe")
        assert request["from"].bare == alice_bare
        bob.send_presence(pto=alice_bare, ptype="subscribed")
        await alice.next_presence(lambda p: p["type"] == "subscribed")
        # Alice now sees Bob's presence.
        await alice.next_presence(lambda p: p["from"].bare == bob_bare and p["type"] == "available")
        bob.send_presence(pto=alice_bare, ptype="subscribe")
        await alice.next_presence(lambda p: p["type"] == "subscribe")
        alice.send_presence(pto=bob_bare, ptype="subscribed")
        await bob.next_presence(lambda p: p["type"] == "subscribed")
        await bob.next_presence(lambda p: p["from"].bare == alice_bare and p["type"] == "available")
        assert await subscription_with(alice, bob_bare, "both") == "both"
        assert await subscription_with(bob, alice_bare, "both") == "both"
        # Presence updates flow both ways now.
        bob.send_presence(pstatus="busy", pshow="dnd")
        update = await alice.next_presence(lambda p: p["show"] == "dnd")
        assert update["status"] == "busy"
        await close(alice, bob)

    run(scenario())


def test_an_approval_is_not_undone_by_requests_handled_meanwhile(server):
    """Each subscription stanza reads, changes and writes the stored state, and
    the user's own stanzas and those of the contact are handled side by side:
    the contact's repeated requests, each of which finds the request pending
    and leaves it so, must not write back the state they read over the user's
    approval that came in between (a lost update that left the user at `to`)."""
    async def scenario():
        alice = await login(server, "user13")
        bob = await login(server, "user14")
        for client in (alice, bob):
            client.roster.auto_authorize = None  # only the stanzas the test sends
            await client.get_roster()
        alice_bare, bob_bare = alice.boundjid.bare, bob.boundjid.bare
        alice.send_presence(pto=bob_bare, ptype="subscribe")
        await bob.next_presence(lambda p: p["type"] == "subscribe")
        bob.send_presence(pto=alice_bare, ptype="subscribed")
        await alice.next_presence(lambda p: p["type"] == "subscribed")
        for _ in range(RACES):  # alice: to, bob: from
            bob.send_presence(pto=alice_bare, ptype="subscribe")
            await alice.next_presence(lambda p: p["type"] == "subscribe")
            for _ in range(REPEATED_REQUESTS):
                bob.send_presence(pto=alice_bare, ptype="subscribe")
            alice.send_presence(pto=bob_bare, ptype="subscribed")
            # Each stream is handled in order: after these answers, all of it was.
            await bob.plugin["xep_0199"].ping(server.domain)
            await alice.plugin["xep_0199"].ping(server.domain)
            assert (await stored_roster(alice))[bob_bare]["subscription"] == "both"
            assert (await stored_roster(bob))[alice_bare]["subscription"] == "both"
            alice.send_presence(pto=bob_bare, ptype="unsubscribed")
            await bob.next_presence(lambda p: p["type"] == "unsubscribed")
        await close(alice, bob)

    run(scenario())


def test_offline_message_arrives_at_next_login(server):
    async def scenario():
        alice = await login(server, "user7")
        alice.send_message(mto=server.jid("user8"), mbody="while you were out", mtype="chat")
        await asyncio.sleep(0)  # the send is queued on the event loop
        ping = await alice.plugin["xep_0199"].ping(server.domain)
        assert ping is not None
        bob = await login(server, "user8")
        received = await bob.next_message()
        assert received["body"] == "while you were out"
        assert received["delay"]["stamp"] is not None
        await close(alice, bob)

    run(scenario())


def test_disco_ping_and_version(server):
    async def scenario():
        client = await login(server, "user9")
        info = await client.plugin["xep_0030"].get_info(jid=server.domain)
        features = info["disco_info"]["features"]
        assert "urn:xmpp:ping" in features
        assert "jabber:iq:version" in features
        identities = info["disco_info"]["identities"]
        assert any(cat == "server" and typ == "im" for cat, typ, _lang, _name in identities)
        await client.plugin["xep_0199"].ping(server.domain)
        version = await client.plugin["xep_0092"].get_version(server.domain)
        assert version["software_version"]["name"] == "Vireo"
        await close(client)

    run(scenario())


def test_account_disco_info_lists_the_disco_items_it_answers(server):
    async def scenario():
        client = await login(server, "user9")
        account = server.jid("user8")
        info = await client.plugin["xep_0030"].get_info(jid=account)
        assert {"http://jabber.org/protocol/disco#info",
                "http://jabber.org/protocol/disco#items"} <= set(info["disco_info"]["features"])
        assert ("account", "registered", None, None) in info["disco_info"]["identities"]
        items = await client.plugin["xep_0030"].get_items(jid=account)
        assert items["type"] == "result"
        await close(client)

    run(scenario())


def test_second_login_with_same_resource_kicks_the_first(server):
    async def scenario():
        first = await login(server, "user10", resource="same")
        second = await login(server, "user10", resource="same")
        await asyncio.wait_for(first.ended, 10)
        assert "conflict" in first.stream_errors
        await second.plugin["xep_0199"].ping(server.domain)
        await close(second)

    run(scenario())


def test_iq_nobody_handles_gets_service_unavailable(server):
    async def scenario():
        client = await login(server, "user11")
        iq = client.make_iq_get(queryxmlns="urn:example:nothing", ito=server.domain)
        from slixmpp.exceptions import IqError

        with pytest.raises(IqError) as raised:
            await iq.send(timeout=10)
        assert raised.value.condition == "service-unavailable"
        await close(client)

    run(scenario())


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
def test_a_burst_of_logins_from_one_address_is_not_refused(server, mech):
    """Twenty right passwords at once from 127.0.0.1, past vireo_auth_failure_limit
    (5): checks that wait on the database, and SCRAM exchanges that wait on the
    client, overlap; the attempts take turns and every login succeeds."""
    async def scenario():
        clients = await asyncio.gather(*(
            attempt_login(server, "user12", USERS["user12"], mech=mech, resource=f"burst-{i}")
            for i in range(20)))
        assert [client.sasl_failures for client in clients] == [[]] * 20
        assert all(client.started.result() for client in clients)
        await close(*clients)

    run(scenario())


def test_wrong_passwords_sent_at_once_are_checked_up_to_the_limit(server):
    """A guesser's twenty <auth/>s on twenty streams, sent without awaiting any
    answer: the first vireo_auth_failure_limit (5) are checked, the others wait
    their turn and are then refused unchecked, told the wait."""
    streams = [RawClient(server.c2s_port, source_address="127.0.0.9") for _ in range(20)]
    try:
        for raw in streams:
            raw.starttls(server.domain, server.cert)
        token = base64.b64encode(b"\0user11\0wrong").decode()
        for raw in streams:
            raw.send(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{token}</auth>")
        answers = [raw.read_until(rb"</failure>") for raw in streams]
    finally:
        for raw in streams:
            raw.close()
    checked = sum(b"<not-authorized/>" in answer for answer in answers)
    refused = [answer for answer in answers if b"<temporary-auth-failure/>" in answer]
    # 0.2 s after the fifth failure a sixth may be checked: a slow machine may get there.
    assert 5 <= checked <= 7 and len(refused) == 20 - checked
    assert all(re.search(rb"wait \d+ s", answer) for answer in refused)


def test_a_slow_password_hash_stalls_no_other_session(server):
    """A PLAIN login's PBKDF2 runs off the hub: with an iteration count that
    makes it take about a second, another session's ping is answered while
    that login is still being checked."""
    with server.database() as database:
        if not AccountStore(database).exists(server.domain, "slowhash"):
            AccountStore(database, iterations=4_000_000).create(server.domain, "slowhash", "pw")
    online, _features = raw_login(server, "user12")
    slow = RawClient(server.c2s_port)
    try:
        slow.starttls(server.domain, server.cert)
        slow.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                  "AHNsb3doYXNoAHB3</auth>")  # \0slowhash\0pw
        time.sleep(0.1)  # the server has the <auth/> and is hashing
        started = time.monotonic()
        raw_iq(online, "p1", "<ping xmlns='urn:xmpp:ping'/>")
        online.read_until(rb"id='p1'")
        ping_seconds = time.monotonic() - started
        answer = slow.read_until(rb"<success[^>]*>|</failure>", timeout=60)
        login_seconds = time.monotonic() - started
    finally:
        online.close()
        slow.close()
    assert b"<success" in answer
    assert ping_seconds < 0.5 < login_seconds, (ping_seconds, login_seconds)
