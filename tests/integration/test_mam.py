"""XEP-0280 carbons and XEP-0313 MAM with slixmpp's xep_0280/xep_0313 plugins,
on SQLite and on PostgreSQL ($VIREO_TEST_POSTGRES_URL)."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from tests.integration.clients import TIMEOUT, close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server
from tests.unit import storage_fixtures

db_url = storage_fixtures.db_url

PLUGINS = ("xep_0030", "xep_0059", "xep_0280", "xep_0313")
USERS = {"alice": "pw-alice", "bob": "pw-bob", "carol": "pw-carol"}
SID = "{urn:xmpp:sid:0}stanza-id"


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VIREO_DATABASE_URL", db_url)
    server = make_server(tmp_path / "server", modules=("carbons", "mam"))
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


async def mam_login(server, user: str, resource: str):
    client = await login(server, user, resource=resource, plugins=PLUGINS)
    await client.plugin["xep_0280"].enable(timeout=TIMEOUT)
    return client


async def next_chat(client, body: str):
    """The next plain chat message with `body` (carbons and results are other events)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = await client.messages.get()
            if message["body"] == body:
                return message


def stanza_id(message, by: str) -> str | None:
    for element in message.xml.findall(SID):
        if element.get("by") == by:
            return element.get("id")
    return None


async def history(client, **options) -> list[str]:
    """Every body in the archive, paging with slixmpp's iterator."""
    return [result["mam_result"]["forwarded"]["stanza"]["body"]
            async for result in client.plugin["xep_0313"].iterate(**options)]


def test_carbons_and_archive_seen_from_every_resource(server) -> None:
    alice, bob = server.jid("alice"), server.jid("bob")

    async def scenario() -> None:
        a1 = await mam_login(server, "alice", "one")
        a2 = await mam_login(server, "alice", "two")
        b1 = await mam_login(server, "bob", "desk")
        sent_bodies, received_bodies = [], []
        for i in range(12):
            body = f"to bob {i}"
            a1.send_message(mto=bob, mbody=body, mtype="chat")
            got = await next_chat(b1, body)
            assert stanza_id(got, bob) is not None, "the recipient's archive id"
            assert stanza_id(got, alice) is None, "the sender's id never leaves the server"
            carbon = await asyncio.wait_for(a2.carbons_sent.get(), TIMEOUT)
            copy = carbon["carbon_sent"]
            assert copy["body"] == body and copy["to"].bare == bob
            assert copy.xml.find(SID) is not None and copy.xml.find(SID).get("by") == alice
            sent_bodies.append(body)
            reply = f"to alice/one {i}"
            b1.send_message(mto=f"{alice}/one", mbody=reply, mtype="chat")
            await next_chat(a1, reply)
            carbon = await asyncio.wait_for(a2.carbons_received.get(), TIMEOUT)
            assert carbon["carbon_received"]["body"] == reply
            received_bodies.append(reply)
        # No copy to the resource a message is addressed to, nor a private one.
        assert a1.carbons_received.empty()
        private = b1.make_message(mto=f"{alice}/one", mbody="private", mtype="chat")
        private.xml.append(private.xml.makeelement("{urn:xmpp:carbons:2}private", {}))
        private.send()
        await next_chat(a1, "private")
        assert a2.carbons_received.empty()

        a3 = await login(server, "alice", resource="three", plugins=PLUGINS)
        conversation = [body for pair in zip(sent_bodies, received_bodies, strict=True)
                        for body in pair] + ["private"]
        assert await history(a3, rsm={"max": 5}) == conversation
        assert await history(a3, rsm={"max": 7}, reverse=True) == conversation[::-1]
        assert await history(a3, with_jid=bob, rsm={"max": 4}) == conversation
        assert await history(a3, with_jid=server.jid("carol")) == []
        late = datetime.now(UTC) + timedelta(hours=1)
        assert await history(a3, start=late) == []
        assert await history(a3, end=late, rsm={"max": 50}) == conversation
        # Bob's archive has the same conversation; nobody else's.
        assert await history(b1, rsm={"max": 50}) == conversation
        await close(a1, a2, a3, b1)

    run(scenario())


def test_offline_message_is_archived_and_stored(server) -> None:
    async def scenario() -> None:
        bob = await mam_login(server, "bob", "desk")
        bob.send_message(mto=server.jid("carol"), mbody="while you were out", mtype="chat")
        # To a resource that is not there: treated as to the bare JID, archived once.
        bob.send_message(mto=server.jid("carol") + "/gone", mbody="to a resource", mtype="chat")
        carol = await login(server, "carol", resource="later", plugins=PLUGINS)
        offline = await next_chat(carol, "while you were out")
        assert offline.xml.find("{urn:xmpp:delay}delay") is not None
        assert stanza_id(offline, server.jid("carol")) is not None
        await next_chat(carol, "to a resource")
        assert await history(carol) == ["while you were out", "to a resource"]
        assert await history(bob) == ["while you were out", "to a resource"]
        await close(bob, carol)

    run(scenario())


def test_queries_refused_when_malformed(server) -> None:
    async def scenario() -> None:
        alice = await mam_login(server, "alice", "one")
        mam = alice.plugin["xep_0313"]
        with pytest.raises(IqError) as error:
            await mam.retrieve(rsm={"after": "no-such-id"}, timeout=TIMEOUT)
        assert error.value.condition == "item-not-found"
        await close(alice)

    run(scenario())


def mam_query(client, inner: str = "", queryid: str = "q"):
    """An archive query with raw XML inside <query/>; the IQ, sent."""
    iq = client.make_iq_set()
    iq.append(ET.fromstring(f"<query xmlns='urn:xmpp:mam:2' queryid='{queryid}'>{inner}</query>"))
    return iq.send(timeout=TIMEOUT)


def form(**fields: str | list[str]) -> str:
    xml = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
           "<value>urn:xmpp:mam:2</value></field>")
    for name, values in fields.items():
        values = values if isinstance(values, list) else [values]
        xml += f"<field var='{name}'>" + "".join(f"<value>{v}</value>" for v in values)
        xml += "</field>"
    return xml + "</x>"


def raw_login(server, user: str) -> RawClient:
    client = RawClient(server.c2s_port)
    client.login(server.domain, server.cert, user, server.users[user])
    client.send("<presence/>")
    return client


def raw_round_trip(sender: RawClient, recipient: RawClient, to: str) -> float:
    """Seconds for a chat message from `sender` to reach `recipient`."""
    started = time.monotonic()
    sender.send(f"<message to='{to}' type='chat'><body>still here</body></message>")
    recipient.read_until(rb"still here")
    return time.monotonic() - started


async def refused(request) -> str:
    with pytest.raises(IqError) as error:
        await request
    return error.value.condition


def test_bad_queries_are_bounded_and_others_unaffected(server) -> None:
    bob_jid = server.jid("bob")

    async def scenario() -> None:
        alice = await mam_login(server, "alice", "one")
        for i in range(60):
            alice.send_message(mto=bob_jid, mbody=f"m{i}", mtype="chat")
        huge = "<set xmlns='http://jabber.org/protocol/rsm'><max>1000000000</max></set>"
        page = await mam_query(alice, huge)
        fin = page.xml.find("{urn:xmpp:mam:2}fin")
        rsm = "{http://jabber.org/protocol/rsm}"
        assert fin.get("complete") is None and fin.findtext(f"{rsm}set/{rsm}count") == "60"
        assert await refused(mam_query(alice, form(ids=["x"] * 10000))) == "bad-request"
        assert await refused(mam_query(alice, form(start="yesterday"))) == "bad-request"
        assert await refused(mam_query(alice, form(end="2026-13-45T00:00:00Z"))) == \
            "bad-request"
        assert await refused(mam_query(alice, form(**{"with": "a" * 3000 + "@x"}))) == \
            "bad-request"
        assert await refused(mam_query(alice, form(**{"with": "a" * 3000}))) == "bad-request"
        for bad in ("-1", "ten", "1e3"):
            assert await refused(mam_query(
                alice, f"<set xmlns='http://jabber.org/protocol/rsm'><max>{bad}</max></set>")) \
                == "bad-request"
        assert await refused(mam_query(alice, form(**{"after-id": "nope"}))) == "item-not-found"

        # A flood of queries: each is answered, most refused at once, and
        # messages between other users keep flowing meanwhile (timed with bare
        # sockets in a thread, apart from the client library busy with the flood).
        bob = await asyncio.to_thread(raw_login, server, "bob")
        carol = await asyncio.to_thread(raw_login, server, "carol")
        flood = [asyncio.ensure_future(mam_query(alice, queryid=f"f{i}")) for i in range(1000)]
        await asyncio.sleep(0.1)  # the flood is on its way
        latency = await asyncio.to_thread(raw_round_trip, bob, carol, server.jid("carol"))
        answers = await asyncio.gather(*flood, return_exceptions=True)
        conditions = [a.condition if isinstance(a, IqError) else "ok" for a in answers]
        assert conditions.count("ok") >= 10
        assert conditions.count("resource-constraint") >= 500
        assert set(conditions) <= {"ok", "resource-constraint"}
        assert latency < 2.0, f"bob's message took {latency:.1f} s during the flood"
        bob.close()
        carol.close()
        await close(alice)

    run(scenario(), timeout=120)


def test_preferences_decide_what_is_archived(server) -> None:
    bob_jid, carol_jid = server.jid("bob"), server.jid("carol")

    async def scenario() -> None:
        alice = await mam_login(server, "alice", "one")
        mam = alice.plugin["xep_0313"]
        iq = alice.make_iq_set()
        iq.append(ET.fromstring(
            "<prefs xmlns='urn:xmpp:mam:2' default='never'><always>"
            f"<jid>{bob_jid}</jid></always><never/></prefs>"))
        answer = await iq.send(timeout=TIMEOUT)
        prefs = answer.xml.find("{urn:xmpp:mam:2}prefs")
        assert prefs.get("default") == "never"
        assert prefs.findtext("{urn:xmpp:mam:2}always/{urn:xmpp:mam:2}jid") == bob_jid
        alice.send_message(mto=bob_jid, mbody="kept", mtype="chat")
        alice.send_message(mto=carol_jid, mbody="not kept", mtype="chat")
        hinted = alice.make_message(mto=bob_jid, mbody="hinted away", mtype="chat")
        hinted.xml.append(ET.Element("{urn:xmpp:hints}no-store"))
        hinted.send()
        assert await history(alice) == ["kept"]
        fields = await mam.get_fields(timeout=TIMEOUT)
        offered = {field["var"] for field in fields["fields"]}
        assert {"with", "start", "end", "before-id", "after-id", "ids"} <= offered
        disco = alice.plugin["xep_0030"]
        account = await disco.get_info(jid=server.jid("alice"), timeout=TIMEOUT)
        assert {"urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0"} <= \
            set(account["disco_info"]["features"])
        host = await disco.get_info(jid=server.domain, timeout=TIMEOUT)
        assert "urn:xmpp:carbons:2" in host["disco_info"]["features"]
        await close(alice)

    run(scenario())


def test_expired_messages_are_removed(tmp_path: Path) -> None:
    server = make_server(tmp_path / "server", modules=("mam",),
                         host_extra="archive_expires_after = 1\narchive_cleanup_interval = 1\n")
    server.create_users(USERS)
    server.start()

    async def scenario() -> None:
        alice = await login(server, "alice", resource="one", plugins=PLUGINS)
        alice.send_message(mto=server.jid("bob"), mbody="soon gone", mtype="chat")
        assert await history(alice) == ["soon gone"]
        deadline = asyncio.get_running_loop().time() + 15
        while await history(alice):
            assert asyncio.get_running_loop().time() < deadline, "never expired"
            await asyncio.sleep(0.5)
        await close(alice)

    try:
        run(scenario())
    finally:
        assert server.stop() == 0
    # Alice's copy and Bob's.
    assert "Deleted 2 expired messages for 2 users" in server.log_path.read_text()
