"""mod_muc_mam: the archive of a room (XEP-0313 at the room's JID), XEP-0425
moderation of archived messages, and join history from the archive after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from tests.integration.clients import close, run
from tests.integration.muc_fixtures import (
    instant_room,
    join,
    muc_login,
    muc_server,
    next_matching,
    room_jid,
)

SID = "{urn:xmpp:sid:0}stanza-id"
RETRACTED = "{urn:xmpp:message-retract:1}retracted"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = muc_server(tmp_path_factory.mktemp("muc_mam"), modules='"muc_mam"')
    server.start()
    yield server
    assert server.stop() == 0


async def room_log(client, room: str, **options) -> list:
    """Every archived message of `room`, paging with slixmpp's iterator."""
    return [result["mam_result"]["forwarded"]["stanza"]
            async for result in client.plugin["xep_0313"].iterate(jid=room_jid(room),
                                                                   **options)]


def stanza_id(message) -> str | None:
    for element in message.xml.findall(SID):
        if element.get("by") == str(room_jid(message["from"].user)):
            return element.get("id")
    return None


def test_room_archive_and_moderation(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "logged", "Alice")
        await join(bob, "logged", "Bob")
        ids = []
        for body in ("one", "two", "three"):
            bob.send_message(mto=room_jid("logged"), mbody=body, mtype="groupchat")
            got = await next_matching(alice.all_messages, lambda m, body=body: m["body"] == body)
            ids.append(stanza_id(got))
        assert all(ids)
        # Someone outside an open room may read its log (as Prosody).
        carol = await muc_login(server, "carol")
        log = await room_log(carol, "logged")
        assert [m["body"] for m in log] == ["one", "two", "three"]
        assert [m["from"].resource for m in log] == ["Bob"] * 3
        paged = await room_log(carol, "logged", rsm={"max": 2})
        assert [m["body"] for m in paged] == ["one", "two", "three"]
        # A participant may not moderate; a moderator may.
        with pytest.raises(IqError) as refused:
            await bob.plugin["xep_0425"].moderate(room_jid("logged"), ids[1], "no")
        assert refused.value.condition == "forbidden"
        moderated = asyncio.get_running_loop().create_future()
        bob.add_event_handler("moderated_message", moderated.set_result)
        await alice.plugin["xep_0425"].moderate(room_jid("logged"), ids[1], "Spam")
        retraction = await asyncio.wait_for(moderated, 10)
        assert retraction["retract"]["id"] == ids[1]
        log = await room_log(carol, "logged")
        assert [m["body"] for m in log[:3]] == ["one", "", "three"]
        assert log[1].xml.find(RETRACTED) is not None
        with pytest.raises(IqError) as refused:
            await alice.plugin["xep_0425"].moderate(room_jid("logged"), "no-such-id")
        assert refused.value.condition == "item-not-found"
        # Newcomers' history has the tombstone instead (slixmpp lists only bodies).
        dave = await muc_login(server, "dave")
        _presence, _subject, _occupants, history = await join(dave, "logged", "Dave")
        assert [m["body"] for m in history] == ["one", "three"]
        await close(alice, bob, carol, dave)

    run(scenario())


def test_members_only_log_is_for_members(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "private", "Alice", **{"muc#roomconfig_membersonly": True})
        alice.send_message(mto=room_jid("private"), mbody="secret", mtype="groupchat")
        await next_matching(alice.all_messages, lambda m: m["body"] == "secret")
        with pytest.raises(IqError) as refused:
            await bob.plugin["xep_0313"].retrieve(jid=room_jid("private"), timeout=10)
        assert refused.value.condition == "forbidden"
        assert [m["body"] for m in await room_log(alice, "private")] == ["secret"]
        await close(alice, bob)

    run(scenario())


def test_history_comes_back_from_the_archive_after_restart(tmp_path: Path):
    server = muc_server(tmp_path / "server", modules='"muc_mam"')
    server.start()
    try:
        async def before():
            alice = await muc_login(server, "alice")
            await instant_room(alice, "lasting", "Alice",
                               **{"muc#roomconfig_persistentroom": True})
            for body in ("before", "the restart"):
                alice.send_message(mto=room_jid("lasting"), mbody=body, mtype="groupchat")
                await next_matching(alice.all_messages, lambda m, body=body: m["body"] == body)
            await close(alice)

        run(before())
        assert server.stop() == 0
        server.start()

        async def after():
            bob = await muc_login(server, "bob")
            _presence, _subject, _occupants, history = await join(bob, "lasting", "Bob")
            assert [m["body"] for m in history] == ["before", "the restart"]
            await close(bob)

        run(after())
    finally:
        server.stop()
