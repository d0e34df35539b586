"""The small modules of Debian's stock config, with slixmpp: server_contact_info,
motd, welcome, watchregistrations, groups, tombstones, turn_external, announce
and admin_adhoc (XEP-0133 over XEP-0050, shutdown with its delay and announcement)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from xml.etree.ElementTree import Element

import pytest
from slixmpp import JID

from storage.accounts import AccountStore
from tests.certs import make_self_signed
from tests.integration.clients import close, login, run, try_login
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server
from tests.integration.test_registration import raw_register
from xmpp import namespaces as ns

USERS = {"boss": "boss-pw", "ann": "ann-pw", "ben": "ben-pw"}
SECRET = "turn-secret"
MODULES = ("register", "admin_adhoc", "announce", "server_contact_info", "motd", "welcome",
           "watchregistrations", "groups", "tombstones", "turn_external")
PLUGINS = ("xep_0030", "xep_0050", "xep_0004", "xep_0128")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("operator")
    (directory / "groups.txt").write_text("[Team]\nann@localhost\nben@localhost=Ben\n")
    server = make_server(directory, modules=MODULES, extra=f"""
admins = {{ "boss@localhost" }}
allow_registration = true
contact_info = {{ abuse = {{ "mailto:abuse@localhost" }}, admin = {{ "xmpp:boss@localhost" }} }}
motd_text = [[
    Welcome back.
    Maintenance on Sunday.]]
groups_file = "groups.txt"
turn_external_secret = "{SECRET}"
turn_external_host = "turn.localhost"
""")
    server.create_users(USERS)
    server.start()
    yield server
    server.stop()


def test_contact_info_in_disco(server):
    async def scenario():
        ann = await login(server, "ann", plugins=PLUGINS)
        info = await ann["xep_0030"].get_info(jid="localhost")
        x = "{jabber:x:data}"
        form = info.xml.find(f"{{http://jabber.org/protocol/disco#info}}query/{x}x")
        values = {field.get("var"): [value.text for value in field.findall(f"{x}value")]
                  for field in form.findall(f"{x}field")}
        assert values["FORM_TYPE"] == ["http://jabber.org/network/serverinfo"]
        assert values["abuse-addresses"] == ["mailto:abuse@localhost"]
        assert values["admin-addresses"] == ["xmpp:boss@localhost"]
        await close(ann)

    run(scenario())


def test_motd_at_login_and_shared_group_in_roster(server):
    async def scenario():
        ann = await login(server, "ann")
        motd = await ann.next_message()
        assert (str(motd["from"]), motd["body"]) == ("localhost",
                                                   "Welcome back.\nMaintenance on Sunday.")
        roster = await ann.get_roster()
        ben = roster["roster"]["items"][JID("ben@localhost")]
        assert (ben["name"], ben["subscription"], ben["groups"]) == ("Ben", "both", ["Team"])
        assert JID("boss@localhost") not in roster["roster"]["items"]
        await close(ann)

    run(scenario())


def test_group_members_see_each_other_online(server):
    async def scenario():
        ben = await login(server, "ben")
        # ann is offline: ben's probe is answered so.
        offline = await ben.next_presence(lambda p: p["from"].bare == "ann@localhost")
        assert offline["type"] == "unavailable"
        ann = await login(server, "ann")
        seen_by_ann = await ann.next_presence(lambda p: p["from"].bare == "ben@localhost")
        seen_by_ben = await ben.next_presence(lambda p: p["from"].bare == "ann@localhost")
        assert seen_by_ann["type"] == seen_by_ben["type"] == "available"
        await close(ann)
        gone = await ben.next_presence(lambda p: p["from"].bare == "ann@localhost")
        assert gone["type"] == "unavailable"
        await close(ben)

    run(scenario())


def test_turn_credentials(server):
    async def scenario():
        ann = await login(server, "ann", presence=False)
        iq = ann.make_iq_get(ito="localhost")
        iq.append(Element("{urn:xmpp:extdisco:2}services"))
        reply = await iq.send()
        services = reply.xml.findall("{urn:xmpp:extdisco:2}services/"
                                     "{urn:xmpp:extdisco:2}service")
        kinds = {(s.get("type"), s.get("transport")) for s in services}
        assert kinds == {("stun", "udp"), ("turn", "udp")}
        turn = next(s for s in services if s.get("type") == "turn")
        assert (turn.get("host"), turn.get("port")) == ("turn.localhost", "3478")
        expected = base64.b64encode(hmac.digest(SECRET.encode(), turn.get("username").encode(),
                                                hashlib.sha1)).decode()
        assert turn.get("password") == expected
        assert int(turn.get("username")) > 0
        await close(ann)

    run(scenario())


async def submit(client, node: str, values: dict[str, object]) -> object:
    first = await client["xep_0050"].send_command(JID("localhost"), node)
    form = client["xep_0004"].make_form(ftype="submit")
    for var, value in values.items():
        form.add_field(var=var, value=value)
    return await client["xep_0050"].send_command(
        JID("localhost"), node, action="complete", payload=form,
        sessionid=first["command"]["sessionid"])


ADMIN = "http://jabber.org/protocol/admin#"


def test_admin_commands_and_announce(server):
    async def scenario():
        boss = await login(server, "boss", plugins=PLUGINS)
        ann = await login(server, "ann", plugins=PLUGINS)
        await ann.next_message()  # the motd
        added = await submit(boss, ADMIN + "add-user", {
            "accountjid": "carl@localhost", "password": "carl-pw",
            "password-verify": "carl-pw"})
        assert added["command"]["notes"] == [("info", "Account successfully created")]
        assert await try_login(server, "carl", "carl-pw") is not None
        changed = await submit(boss, ADMIN + "change-user-password", {
            "accountjid": "carl@localhost", "password": "carl-new"})
        assert changed["command"]["notes"][0][0] == "info"
        online = await submit(boss, ADMIN + "get-online-users-list", {"max_items": "all"})
        listed = online["command"]["form"].get_values()["onlineuserjids"]
        assert {"boss@localhost", "ann@localhost", "carl@localhost"} <= set(listed)
        deleted = await submit(boss, ADMIN + "delete-user", {"accountjids": ["carl@localhost"]})
        assert deleted["command"]["notes"][0][0] == "info"
        assert await try_login(server, "carl", "carl-new") is None
        with pytest.raises(Exception, match="forbidden"):
            await ann["xep_0050"].send_command(JID("localhost"), ADMIN + "add-user")
        boss.send_message(mto="localhost/announce/online", mbody="Restart at noon")
        headline = await ann.next_message()
        assert (headline["type"], headline["body"]) == ("headline", "Restart at noon")
        announced = await submit(boss, ADMIN + "announce", {
            "subject": "Hello", "announcement": "Second notice"})
        assert announced["command"]["notes"][0][1].startswith("Announcement sent to")
        second = await ann.next_message()
        assert (second["subject"], second["body"]) == ("Hello", "Second notice")
        await close(boss, ann)

    run(scenario())


def test_admin_shutdown_announces_to_every_host_then_waits_for_the_delay(tmp_path):
    server = two_host_server(tmp_path / "shutdown", modules=("admin_adhoc",),
                             extra='admins = { "boss@localhost" }')
    server.create_users({"boss": "boss-pw", "ann": "ann-pw"})
    server.start()
    cid = other_host_user(server)

    async def scenario() -> float:
        boss = await login(server, "boss", plugins=PLUGINS)
        ann = await login(server, "ann", plugins=PLUGINS)
        rejected = await submit(boss, ADMIN + "shutdown", {"delay": "soon"})
        assert rejected["command"]["notes"][0][0] == "error"
        asked = time.monotonic()
        accepted = await submit(boss, ADMIN + "shutdown", {
            "delay": "3", "announcement": "Back in five minutes"})
        assert accepted["command"]["notes"] == [("info", "Server is about to shut down")]
        notice = await ann.next_message()
        assert (notice["type"], notice["subject"], notice["body"]) == (
            "headline", "Server is shutting down", "Back in five minutes")
        other = await asyncio.to_thread(cid.read_stanza)
        assert (other.get("type"), other.findtext(f"{{{ns.CLIENT}}}body")) == (
            "headline", "Back in five minutes")
        assert server.process.poll() is None
        await close(boss, ann)
        return asked

    try:
        asked = run(scenario())
        server.process.wait(timeout=20)
        assert time.monotonic() - asked >= 3
    finally:
        cid.close()
        server.stop()


OTHER_HOST = "other.localhost"


def two_host_server(directory, **options):
    """A server with a second VirtualHost, its certificate naming both hosts."""
    server = make_server(directory, host_extra=f'VirtualHost "{OTHER_HOST}"', **options)
    make_self_signed(directory, server.domain, [OTHER_HOST])
    return server


def other_host_user(server) -> RawClient:
    """cid@other.localhost, available (a raw client reading stanzas)."""
    with server.database() as database:
        AccountStore(database).create(OTHER_HOST, "cid", "cid-pw")
    client = RawClient(server.c2s_port)
    client.login(OTHER_HOST, server.cert, "cid", "cid-pw")
    client.send("<presence/>")
    assert client.read_stanza().tag == f"{{{ns.CLIENT}}}presence"  # its echo
    return client


def test_registration_welcome_watchers_and_tombstone(server):
    async def scenario():
        boss = await login(server, "boss", plugins=PLUGINS)
        await boss.next_message()  # the motd
        reply = await asyncio.to_thread(raw_register, server, "newbie", "newbie-pw")
        assert reply.get("type") == "result"
        notice = await boss.next_message()
        assert notice["body"] == "User newbie just registered on localhost from 127.0.0.1"
        server.users["newbie"] = "newbie-pw"
        newbie = await login(server, "newbie")
        bodies = {(await newbie.next_message())["body"] for _ in range(2)}
        assert "Hello newbie, welcome to the localhost IM server!" in bodies
        await close(newbie)
        await submit(boss, ADMIN + "delete-user", {"accountjids": ["newbie@localhost"]})
        await close(boss)

    run(scenario())
    again = raw_register(server, "newbie", "other-pw")
    assert again.get("type") == "error"
    assert again.find("error/{urn:ietf:params:xml:ns:xmpp-stanzas}not-acceptable") is not None
