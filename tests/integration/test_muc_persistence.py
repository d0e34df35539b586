"""mod_muc's rooms across a restart, on SQLite and on PostgreSQL
($VIREO_TEST_POSTGRES_URL), and who may create rooms (restrict_room_creation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from slixmpp.exceptions import PresenceError

from tests.integration.clients import close, run
from tests.integration.muc_fixtures import (
    MUC_HOST,
    instant_room,
    join,
    muc_login,
    muc_server,
    room_jid,
    status_codes,
)
from tests.unit import storage_fixtures

db_url = storage_fixtures.db_url


def test_rooms_and_affiliations_survive_a_restart(db_url: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VIREO_DATABASE_URL", db_url)
    server = muc_server(tmp_path / "server")
    server.start()
    try:
        async def before():
            alice = await muc_login(server, "alice")
            await instant_room(alice, "kept", "Alice", **{
                "muc#roomconfig_persistentroom": True, "muc#roomconfig_publicroom": True,
                "muc#roomconfig_roomname": "Kept room"})
            muc = alice.plugin["xep_0045"]
            await muc.set_affiliation(room_jid("kept"), "member", jid="bob@localhost")
            await muc.set_affiliation(room_jid("kept"), "outcast", jid="carol@localhost")
            muc.set_subject(room_jid("kept"), "Still here")
            await instant_room(alice, "fleeting", "Alice")  # temporary: gone with us
            await close(alice)

        run(before())
        assert server.stop() == 0
        server.start()

        async def after():
            bob = await muc_login(server, "bob")
            presence, subject, occupants, _history = await join(bob, "kept", "Bob")
            # Rejoining a restored room: no "created", no lock, the old subject.
            assert status_codes(presence) == {110}
            assert presence["muc"]["affiliation"] == "member"
            assert subject["subject"] == "Still here"
            assert [p["from"].resource for p in occupants] == ["Bob"]
            carol = await muc_login(server, "carol")
            with pytest.raises(PresenceError) as refused:
                await join(carol, "kept", "Carol")
            assert refused.value.condition == "forbidden"
            items = await bob.plugin["xep_0030"].get_items(jid=MUC_HOST, timeout=10)
            assert [(str(jid), name) for jid, _node, name in items["disco_items"]["items"]] \
                == [(f"kept@{MUC_HOST}", "Kept room")]
            # The temporary room is no more: joining creates it anew.
            presence, *_ = await join(carol, "fleeting", "Carol")
            assert 201 in status_codes(presence)
            await close(bob, carol)

        run(after())
    finally:
        assert server.stop() == 0


def test_restrict_room_creation_to_admins(tmp_path: Path):
    server = muc_server(tmp_path / "server", 'restrict_room_creation = true')
    server.start()
    try:
        async def scenario():
            alice = await muc_login(server, "alice")
            with pytest.raises(PresenceError) as refused:
                await join(alice, "mine", "Alice")
            assert refused.value.condition == "not-allowed"
            admin = await muc_login(server, "admin")
            await instant_room(admin, "mine", "Admin")
            presence, *_ = await join(alice, "mine", "Alice")
            assert presence["muc"]["role"] == "participant"
            await close(alice, admin)

        run(scenario())
    finally:
        server.stop()
