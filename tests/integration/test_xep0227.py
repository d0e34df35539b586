"""XEP-0227 round trip on a running server: a PEP node and a MUC room made by
slixmpp clients are exported (`app.py export`), the database is wiped, and
after `app.py import-xep0227` the same clients are served the same items, room
configuration and affiliations."""

from __future__ import annotations

import shutil

from slixmpp import JID

from tests.integration.clients import close, login, run
from tests.integration.muc_fixtures import MUC_HOST, MUC_PLUGINS, instant_room, join, room_jid
from tests.integration.server_fixture import make_server
from tests.integration.test_pep import options, payload

PLUGINS = (*MUC_PLUGINS, "xep_0060")
MOOD = "urn:example:mood"
USERS = {"alice": "alice-pw", "bob": "bob-pw"}


async def fill(server) -> None:
    alice = await login(server, "alice", plugins=PLUGINS)
    await alice["xep_0060"].publish(None, MOOD, id="current",
                                    payload=payload(f"{{{MOOD}}}mood", "happy"),
                                    options=options(alice, **{"pubsub#access_model": "open"}))
    await instant_room(alice, "tea", "Al", **{
        "muc#roomconfig_roomname": "Tea room", "muc#roomconfig_persistentroom": True,
        "muc#roomconfig_membersonly": True})
    await alice["xep_0045"].set_affiliation(room_jid("tea"), "member",
                                            jid=JID(server.jid("bob")))
    await close(alice)


async def served_again(server) -> None:
    bob = await login(server, "bob", plugins=PLUGINS)
    items = await bob["xep_0060"].get_items(JID(server.jid("alice")), MOOD)
    assert [mood.text for mood in items.xml.iter(f"{{{MOOD}}}mood")] == ["happy"]
    info = await bob["xep_0030"].get_info(room_jid("tea"))
    assert ("conference", "text", None, "Tea room") in info["disco_info"]["identities"]
    assert {"muc_membersonly", "muc_persistent"} <= set(info["disco_info"]["features"])
    await join(bob, "tea", "Bob")  # members only: bob is still a member
    alice = await login(server, "alice", plugins=PLUGINS)
    members = await alice["xep_0045"].get_affiliation_list(room_jid("tea"), "member")
    assert [str(jid) for jid in members] == [server.jid("bob")]
    await close(bob, alice)


def test_pep_nodes_and_rooms_come_back_after_export_wipe_and_import(tmp_path):
    server = make_server(tmp_path / "server", modules=("pep",),
                         host_extra=f'Component "{MUC_HOST}" "muc"\n')
    server.create_users(USERS)
    server.start()
    try:
        run(fill(server))
    finally:
        assert server.stop() == 0
    exported = tmp_path / "export.xml"
    result = server.admin("export", str(exported))
    assert result.returncode == 0, result.stderr
    assert "Exported 2 account(s), 1 room(s)" in result.stderr
    assert "left out" not in result.stderr
    shutil.rmtree(server.directory / "data")  # the database (SQLite in data_path) and all
    imported = server.admin("import-xep0227", str(exported))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "Imported 3, already present 0, failed 0" in imported.stdout
    server.start()
    try:
        run(served_again(server))
    finally:
        server.stop()
