"""Behaviour on the wire that Vireo shares with Prosody 0.12, checked against both:
roster versioning and pushes, presence echoes, subscription acknowledgements,
XEP-0012 last activity. Where Vireo follows the RFC instead, test_presence.py
has the test and README.md the difference."""

from __future__ import annotations

import pytest

from tests.integration.clients import close, login, run
from tests.integration.prosody_fixture import PROSODY, make_prosody
from tests.integration.raw_client import (
    LAST,
    ROSTER,
    last_activity,
    presences_until,
    pushed_items,
    raw_iq,
    raw_login,
    raw_online,
    roster_query,
)
from tests.integration.server_fixture import make_server

pytestmark = pytest.mark.skipif(PROSODY is None, reason="prosody is not installed "
                                "(CI installs it: make deps)")

USERS = {name: f"pw-{name}" for name in ("ver", "echo", "last", "ack_a", "ack_b")}
MODULES = ("lastactivity",)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("parity")
    vireo = make_server(base / "vireo", modules=MODULES)
    # c2s only: Prosody never resolves a name here, so its DNS goes nowhere.
    prosody = make_prosody(base / "prosody", domain="localhost", address="127.0.0.1",
                           dns_forward="127.0.0.1@9", modules=MODULES)
    for server in (vireo, prosody):
        server.create_users(USERS)
        server.start()
    yield {"vireo": vireo, "prosody": prosody}
    prosody.stop()
    assert vireo.stop() == 0


@pytest.fixture(params=["vireo", "prosody"])
def server(request, servers):
    return servers[request.param]


def jid(server, user: str) -> str:
    return f"{user}@{server.domain}"


def set_item(raw, iq_id: str, contact: str) -> tuple:
    """Add `contact` to the roster: (the answer, the push that follows it)."""
    raw_iq(raw, iq_id, f"<query xmlns='jabber:iq:roster'><item jid='{contact}'/></query>",
           "set")
    return raw.read_stanza(), raw.read_stanza()


def test_roster_versioning_and_the_result_before_the_push(server):
    """RFC 6121 2.6 with Prosody's order: a roster set is answered, then pushed,
    and a client whose cached version is current gets an empty result."""
    raw, features = raw_login(server, "ver")
    try:
        assert b"urn:xmpp:features:rosterver" in features
        raw_iq(raw, "r1", roster_query(""))
        assert raw.read_stanza().find(ROSTER + "query").get("ver")
        # (Prosody gives a roster never changed the version its first change gets.)
        set_item(raw, "s1", jid(server, "first"))
        raw_iq(raw, "r2", roster_query(""))
        version = raw.read_stanza().find(ROSTER + "query").get("ver")

        raw_iq(raw, "r3", roster_query(version))
        current = raw.read_stanza()
        assert current.get("id") == "r3" and current.get("type") == "result"
        assert len(current) == 0

        contact = jid(server, "second")
        answer, push = set_item(raw, "s2", contact)
        assert (answer.get("id"), answer.get("type")) == ("s2", "result")
        assert push.get("type") == "set"
        new_version = push.find(ROSTER + "query").get("ver")
        assert new_version and new_version != version
        assert pushed_items(push) == [(contact, {"jid": contact, "subscription": "none"})]

        raw_iq(raw, "r4", roster_query(version))
        stale = raw.read_stanza()
        assert stale.find(ROSTER + "query").get("ver") == new_version
        assert sorted(item for item, _ in pushed_items(stale)) == [jid(server, "first"), contact]
        raw_iq(raw, "r5", roster_query(new_version))
        assert len(raw.read_stanza()) == 0
    finally:
        raw.close()


def test_unavailable_presence_is_echoed_to_its_sender(server):
    async def scenario():
        client = await login(server, "echo")
        await client.next_presence(lambda p: p["from"] == client.boundjid)
        client.send_presence(ptype="unavailable", pstatus="Goodbye")
        echo = await client.next_presence(lambda p: p["type"] == "unavailable")
        assert echo["from"] == client.boundjid and echo["status"] == "Goodbye"
        await close(client)

    run(scenario())


def test_subscription_request_is_acknowledged_and_stays_pending(server):
    """As Prosody: an 'unavailable' from the contact acknowledges the request,
    which reaches the contact when it comes online."""
    asker = raw_online(server, "ack_a")
    try:
        asker.send(f"<presence to='{jid(server, 'ack_b')}' type='subscribe'/>")
        assert presences_until(asker, jid(server, "ack_b"), "unavailable") == [
            (jid(server, "ack_b"), "unavailable")]
    finally:
        asker.close()
    contact = raw_online(server, "ack_b")
    try:
        assert presences_until(contact, jid(server, "ack_a"), "subscribe") == [
            (jid(server, "ack_a"), "subscribe")]
    finally:
        contact.close()


def test_last_activity_of_the_user_itself(server):
    """Prosody's lastactivity.scs: the unavailable presence is echoed, and its
    time and status are the user's last activity."""
    raw, _ = raw_login(server, "last")
    try:
        raw.send("<presence><status>Hello</status></presence>")
        raw.send("<presence type='unavailable'><status>Goodbye</status></presence>")
        assert presences_until(raw, jid(server, "last"), "unavailable")[-1] == (
            jid(server, "last") + "/raw", "unavailable")
        answer = last_activity(raw)
        assert answer.get("type") == "result"
        query = answer.find(LAST)
        assert int(query.get("seconds")) >= 0 and query.text == "Goodbye"
    finally:
        raw.close()
