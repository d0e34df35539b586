"""XEP-0045 group chat (mod_muc) with slixmpp's xep_0045 plugin: several
clients in one room over real sockets."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError

from tests.integration.clients import close, run
from tests.integration.muc_fixtures import (
    MUC_HOST,
    form_value,
    instant_room,
    join,
    muc_login,
    muc_server,
    muc_user,
    next_matching,
    room_jid,
    status_codes,
)
from xmpp.muc.names import MUC


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = muc_server(tmp_path_factory.mktemp("muc"))
    server.start()
    yield server
    server.stop()


def groupchat_from(nick: str):
    return lambda message: message["type"] == "groupchat" and message["from"].resource == nick \
        and message["body"]


def test_create_lock_configure_and_chat(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        presence, _subject, _occupants, _history = await join(alice, "lounge", "Alice")
        assert {110, 201} <= status_codes(presence)
        assert presence["muc"]["affiliation"] == "owner"
        assert presence["muc"]["role"] == "moderator"
        # Locked until its owner configures it (muc_room_locking).
        with pytest.raises(PresenceError) as refused:
            await join(bob, "lounge", "Bob")
        assert refused.value.condition == "item-not-found"
        muc = alice.plugin["xep_0045"]
        form = await muc.get_room_config(room_jid("lounge"))
        assert "muc#roomconfig_persistentroom" in form.field
        await muc.set_room_config(room_jid("lounge"), form)
        presence, _subject, occupants, _history = await join(bob, "lounge", "Bob")
        assert presence["muc"]["role"] == "participant"
        assert {p["from"].resource for p in occupants} == {"Alice", "Bob"}
        bob.send_message(mto=room_jid("lounge"), mbody="hello room", mtype="groupchat")
        got = await next_matching(alice.all_messages, groupchat_from("Bob"))
        assert got["body"] == "hello room"
        assert got["occupant-id"]["id"]
        echo = await next_matching(bob.all_messages, groupchat_from("Bob"))
        assert echo["occupant-id"]["id"] == got["occupant-id"]["id"]
        await close(alice, bob)

    run(scenario())


def test_history_on_join_and_subject(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        await instant_room(alice, "history", "Alice")
        alice.plugin["xep_0045"].set_subject(room_jid("history"), "Today: history")
        await next_matching(alice.all_messages, lambda m: m["subject"] == "Today: history")
        for number in range(3):
            alice.send_message(mto=room_jid("history"), mbody=f"line {number}",
                               mtype="groupchat")
            await next_matching(alice.all_messages, groupchat_from("Alice"))
        bob = await muc_login(server, "bob")
        _presence, subject, _occupants, history = await join(bob, "history", "Bob",
                                                             maxstanzas=2)
        assert subject["subject"] == "Today: history"
        assert [m["body"] for m in history] == ["line 1", "line 2"]
        assert all(m["delay"]["stamp"] for m in history)
        carol = await muc_login(server, "carol")
        # A request for 10^9 stanzas gets what the room keeps, no more.
        _presence, _subject, _occupants, history = await join(carol, "history", "Carol",
                                                              maxstanzas=10 ** 9)
        assert [m["body"] for m in history] == ["line 0", "line 1", "line 2"]
        dave = await muc_login(server, "dave")
        _presence, _subject, _occupants, history = await join(dave, "history", "Dave",
                                                              maxchars=0)
        assert history == []
        await close(alice, bob, carol, dave)

    run(scenario())


def test_nick_change_conflicts_and_limits(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "nicks", "Alice")
        await join(bob, "nicks", "Bob")
        with pytest.raises(PresenceError) as refused:
            await join(alice, "nicks", "Bob")  # alice is in already: a nick change
        assert refused.value.condition == "conflict"
        carol = await muc_login(server, "carol")
        with pytest.raises(PresenceError) as refused:
            await join(carol, "nicks", "Bob")
        assert refused.value.condition == "conflict"
        with pytest.raises(PresenceError) as refused:
            await join(carol, "nicks", "C" * 24)  # muc_max_nick_length 23
        assert refused.value.condition == "not-acceptable"
        with pytest.raises(PresenceError) as refused:
            await join(carol, "nicks", "N" * 1000)
        assert refused.value.condition == "not-acceptable"
        # No JID resource is 10 KiB long: the router drops the presence (slixmpp
        # would not even send it), and the room is as it was.
        carol.send_raw(f"<presence to='nicks@{MUC_HOST}/{'N' * 10240}'>"
                       f"<x xmlns='{MUC}'/></presence>")
        assert await alice.plugin["xep_0045"].get_roles_list(room_jid("nicks"),
                                                             "participant") == ["Bob"]
        new_nick = await bob.plugin["xep_0045"].set_self_nick(room_jid("nicks"), "Robert",
                                                              timeout=10)
        assert new_nick == "Robert"
        gone = await next_matching(alice.all_presences, lambda p: p["from"].resource == "Bob"
                                   and p["type"] == "unavailable")
        assert 303 in status_codes(gone)
        assert gone["muc"]["item_nick"] == "Robert"
        bob.send_message(mto=room_jid("nicks"), mbody="renamed", mtype="groupchat")
        await next_matching(alice.all_messages, groupchat_from("Robert"))
        await close(alice, bob, carol)

    run(scenario())


def test_several_sessions_in_one_nick(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        phone = await muc_login(server, "bob", resource="phone")
        laptop = await muc_login(server, "bob", resource="laptop")
        await instant_room(alice, "multi", "Alice")
        await join(phone, "multi", "Bob")
        await join(laptop, "multi", "Bob")
        alice.send_message(mto=room_jid("multi"), mbody="to both", mtype="groupchat")
        for session in (phone, laptop):
            await next_matching(session.all_messages, groupchat_from("Alice"))
        laptop.plugin["xep_0045"].leave_muc(room_jid("multi"), "Bob")
        await next_matching(laptop.all_presences, lambda p: p["type"] == "unavailable"
                            and 110 in status_codes(p))
        alice.send_message(mto=room_jid("multi"), mbody="still here?", mtype="groupchat")
        got = await next_matching(phone.all_messages, groupchat_from("Alice"))
        assert got["body"] == "still here?"
        occupants = await alice.plugin["xep_0045"].get_roles_list(room_jid("multi"),
                                                                 "participant")
        assert occupants == ["Bob"]
        await close(alice, phone, laptop)

    run(scenario())


def test_kick_ban_and_affiliation_lists(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        carol = await muc_login(server, "carol")
        await instant_room(alice, "court", "Alice")
        await join(bob, "court", "Bob")
        await join(carol, "court", "Carol")
        muc = alice.plugin["xep_0045"]
        # A participant may not kick.
        with pytest.raises(IqError) as refused:
            await bob.plugin["xep_0045"].set_role(room_jid("court"), "Carol", "none")
        assert refused.value.condition == "forbidden"
        await muc.set_role(room_jid("court"), "Bob", "none", reason="Too loud")
        kicked = await next_matching(bob.all_presences, lambda p: p["type"] == "unavailable"
                                     and p["from"].resource == "Bob")
        assert {110, 307} <= status_codes(kicked)
        await muc.set_affiliation(room_jid("court"), "outcast", jid=carol.boundjid.bare,
                                  reason="Spam")
        banned = await next_matching(carol.all_presences, lambda p: p["type"] == "unavailable"
                                     and p["from"].resource == "Carol")
        assert 301 in status_codes(banned)
        with pytest.raises(PresenceError) as refused:
            await join(carol, "court", "Carol")
        assert refused.value.condition == "forbidden"
        await muc.set_affiliation(room_jid("court"), "member", jid=bob.boundjid.bare)
        assert await muc.get_affiliation_list(room_jid("court"), "outcast") \
            == [carol.boundjid.bare]
        assert await muc.get_affiliation_list(room_jid("court"), "member") \
            == [bob.boundjid.bare]
        assert await muc.get_affiliation_list(room_jid("court"), "owner") \
            == [alice.boundjid.bare]
        # The only owner cannot step down.
        with pytest.raises(IqError) as refused:
            await muc.set_affiliation(room_jid("court"), "member", jid=alice.boundjid.bare)
        assert refused.value.condition == "conflict"
        # Members may not see the lists of an open room.
        await join(bob, "court", "Bob")
        with pytest.raises(IqError) as refused:
            await bob.plugin["xep_0045"].get_affiliation_list(room_jid("court"), "outcast")
        assert refused.value.condition == "forbidden"
        await close(alice, bob, carol)

    run(scenario())


def test_moderated_room_voice_request(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "stage", "Alice", **{"muc#roomconfig_moderatedroom": True})
        presence, *_ = await join(bob, "stage", "Bob")
        assert presence["muc"]["role"] == "visitor"
        bob.send_message(mto=room_jid("stage"), mbody="may I?", mtype="groupchat")
        refused = await next_matching(bob.all_messages, lambda m: m["type"] == "error")
        assert refused["error"]["condition"] == "forbidden"
        bob.plugin["xep_0045"].request_voice(room_jid("stage"), "participant")
        request = await next_matching(alice.all_messages, lambda m: form_value(
            m, "FORM_TYPE") == "http://jabber.org/protocol/muc#request")
        assert form_value(request, "muc#roomnick") == "Bob"
        await alice.plugin["xep_0045"].set_role(room_jid("stage"), "Bob", "participant")
        voiced = await next_matching(bob.all_presences, lambda p: p["muc"]["role"] == "participant")
        assert 110 in status_codes(voiced)
        bob.send_message(mto=room_jid("stage"), mbody="thanks", mtype="groupchat")
        await next_matching(alice.all_messages, groupchat_from("Bob"))
        await close(alice, bob)

    run(scenario())


def test_password_and_members_only(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "secret", "Alice",
                           **{"muc#roomconfig_roomsecret": "s3cret"})
        with pytest.raises(PresenceError) as refused:
            await join(bob, "secret", "Bob")
        assert refused.value.condition == "not-authorized"
        await join(bob, "secret", "Bob", password="s3cret")
        await instant_room(alice, "club", "Alice", **{"muc#roomconfig_membersonly": True})
        with pytest.raises(PresenceError) as refused:
            await join(bob, "club", "Bob")
        assert refused.value.condition == "registration-required"
        # An admin's invitation makes the invitee a member (as Prosody).
        alice.plugin["xep_0045"].invite(room_jid("club"), bob.boundjid.bare, "join us")
        invite = await next_matching(bob.all_messages, lambda m: muc_user(m, "invite") is not None)
        assert muc_user(invite, "invite/reason").text == "join us"
        await join(bob, "club", "Bob")
        await close(alice, bob)

    run(scenario())


def test_direct_invitation_and_decline(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "party", "Alice")
        invited = asyncio.get_running_loop().create_future()
        bob.add_event_handler("groupchat_direct_invite", invited.set_result)
        alice.plugin["xep_0249"].send_invitation(bob.boundjid, room_jid("party"),
                                                 reason="come")
        message = await asyncio.wait_for(invited, 10)
        assert message["groupchat_invite"]["jid"] == room_jid("party")
        bob.plugin["xep_0045"].decline(room_jid("party"), alice.boundjid.bare, "busy")
        decline = await next_matching(alice.all_messages,
                                      lambda m: muc_user(m, "decline") is not None)
        assert muc_user(decline, "decline/reason").text == "busy"
        await close(alice, bob)

    run(scenario())


def test_self_ping_and_iqs_between_occupants(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "pings", "Alice")
        ping = alice.plugin["xep_0410"]
        joined = await ping.send_self_ping(JID(f"pings@{MUC_HOST}/Alice"), timeout=10)
        assert joined.name == "JOINED"
        gone = await bob.plugin["xep_0410"].send_self_ping(JID(f"pings@{MUC_HOST}/Bob"),
                                                           timeout=10)
        assert gone.name == "DISCONNECTED"
        # IQs between occupants are relayed under their occupant JIDs (XEP-0045 7.7).
        await join(bob, "pings", "Bob")
        version = await bob.plugin["xep_0092"].get_version(JID(f"pings@{MUC_HOST}/Alice"),
                                                           timeout=10)
        assert version["from"] == JID(f"pings@{MUC_HOST}/Alice")
        assert version["software_version"]["name"]
        await close(alice, bob)

    run(scenario())


def test_destroy_with_alternate_venue_leaves_a_tombstone(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "old", "Alice", **{"muc#roomconfig_persistentroom": True})
        await join(bob, "old", "Bob")
        await alice.plugin["xep_0045"].destroy(room_jid("old"), "moved",
                                               altroom=room_jid("new"))
        told = await next_matching(bob.all_presences, lambda p: p["type"] == "unavailable"
                                   and muc_user(p, "destroy") is not None)
        assert muc_user(told, "destroy").get("jid") == f"new@{MUC_HOST}"
        with pytest.raises(PresenceError) as refused:
            await join(bob, "old", "Bob")
        assert refused.value.condition == "gone"
        assert refused.value.text == "moved"
        await close(alice, bob)

    run(scenario())


def test_config_form_bad_values(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "forms", "Alice")
        muc = alice.plugin["xep_0045"]
        form = await muc.get_room_config(room_jid("forms"))
        form.add_field(var="x-unknown-field", ftype="text-single", value="ignored")
        form.field["muc#roomconfig_historylength"]["value"] = "lots"
        with pytest.raises(IqError) as refused:
            await muc.set_room_config(room_jid("forms"), form)
        assert refused.value.condition == "bad-request"
        form = await muc.get_room_config(room_jid("forms"))
        form.field["muc#roomconfig_whois"]["value"] = "everybody"
        with pytest.raises(IqError) as refused:
            await muc.set_room_config(room_jid("forms"), form)
        assert refused.value.condition == "bad-request"
        # Only owners see the form.
        await join(bob, "forms", "Bob")
        with pytest.raises(IqError) as refused:
            await bob.plugin["xep_0045"].get_room_config(room_jid("forms"))
        assert refused.value.condition == "forbidden"
        # A good form still works, and unknown fields are ignored as Prosody does.
        form = await muc.get_room_config(room_jid("forms"))
        form.add_field(var="x-unknown-field", ftype="text-single", value="ignored")
        form.field["muc#roomconfig_whois"]["value"] = "anyone"
        await muc.set_room_config(room_jid("forms"), form)
        changed = await next_matching(bob.all_messages, lambda m: 172 in status_codes(m))
        assert changed["from"] == room_jid("forms")
        await close(alice, bob)

    run(scenario())


def test_a_closed_connection_leaves_its_rooms(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "exits", "Alice")
        await join(bob, "exits", "Bob")
        await close(bob)
        left = await next_matching(alice.all_presences, lambda p: p["type"] == "unavailable"
                                   and p["from"].resource == "Bob")
        assert left["muc"]["role"] == "none"
        assert await alice.plugin["xep_0045"].get_roles_list(room_jid("exits"),
                                                             "participant") == []
        await close(alice)

    run(scenario())
