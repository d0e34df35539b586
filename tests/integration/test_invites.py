"""Invitations (mod_invites, mod_invites_adhoc, mod_invites_register): invites made
by `app.py invite generate` and by ad-hoc commands, spent by in-band registration
after XEP-0401 pre-authentication; a contact invite makes the two mutual contacts."""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element, tostring

import pytest
from slixmpp import JID

from tests.integration.clients import close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server
from tests.integration.test_registration import read_iq, register_iq

USERS = {"boss": "boss-pw", "ann": "ann-pw", "cy": "cy-pw"}
INVITE_MODULES = ("register", "invites", "invites_adhoc", "invites_register")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("invites"), modules=INVITE_MODULES,
                         extra='admins = { "boss@localhost" }')
    server.create_users(USERS)
    server.start()
    yield server
    server.stop()


def token_of(uri: str) -> str:
    return re.search(r"preauth=([^;\s]+)", uri).group(1)


def register_with(server, token: str | None, user: str, password: str):
    """One stream: STARTTLS, the features, preauth (if a token), registration."""
    raw = RawClient(server.c2s_port)
    try:
        features = raw.starttls(server.domain, server.cert)
        preauth = None
        if token is not None:
            raw.send(f"<iq type='set' id='pa'><preauth xmlns='urn:xmpp:pars:0' "
                     f"token='{token}'/></iq>")
            preauth = read_iq(raw)
        raw.send(register_iq(user, password))
        return features, preauth, read_iq(raw)
    finally:
        raw.close()


def error_of(iq) -> str | None:
    if iq.get("type") != "error":
        return None
    return next(child.tag.split("}")[1] for child in iq.find("error")
                if not child.tag.endswith("}text"))


def test_generated_invite_registers_once(server):
    made = server.admin("invite", "generate", "localhost")
    assert made.returncode == 0, made.stderr
    uri = made.stdout.strip()
    assert uri.startswith("xmpp:localhost?register;preauth=")
    features, _, refused = register_with(server, None, "nobody", "pw")
    assert b"urn:xmpp:invite" in features and b"iq-register" in features
    assert error_of(refused) == "not-acceptable"
    _, bad, _ = register_with(server, "not-a-token", "nobody", "pw")
    assert error_of(bad) == "forbidden"
    _, preauth, done = register_with(server, token_of(uri), "newbie", "newbie-pw")
    assert (preauth.get("type"), done.get("type")) == ("result", "result")
    _, spent, _ = register_with(server, token_of(uri), "second", "pw")
    assert error_of(spent) == "forbidden"
    server.users["newbie"] = "newbie-pw"

    async def newbie_logs_in():
        await close(await login(server, "newbie", presence=False))

    run(newbie_logs_in())


def test_reset_invite_sets_a_new_password(server):
    server.create_users({"forgetful": "old-pw"})
    made = server.admin("invite", "generate", "localhost", "--reset", "forgetful")
    _, _, done = register_with(server, token_of(made.stdout), "forgetful", "new-pw")
    assert done.get("type") == "result", tostring(done)
    server.users["forgetful"] = "new-pw"

    async def logs_in_with_new_password():
        await close(await login(server, "forgetful", presence=False))

    run(logs_in_with_new_password())


def test_invite_with_a_role_makes_an_account_holding_it(server):
    """prosodyctl mod_invites generate HOST --admin (0.12): the account made with
    the invite is an admin, one made with another role or none is not."""
    refused = server.admin("invite", "generate", "localhost", "--reset", "ann", "--admin")
    assert refused.returncode == 2
    assert "--role/--admin and --reset are mutually exclusive" in refused.stderr
    for user, options in (("chief", ["--admin"]), ("member", ["--role", "prosody:member"]),
                          ("plain", [])):
        made = server.admin("invite", "generate", "localhost", *options)
        assert made.returncode == 0, made.stderr
        _, _, done = register_with(server, token_of(made.stdout), user, f"{user}-pw")
        assert done.get("type") == "result", tostring(done)
        server.users[user] = f"{user}-pw"

    async def commands_offered(user: str) -> list[str]:
        client = await login(server, user, plugins=("xep_0030", "xep_0050", "xep_0004"),
                             presence=False)
        items = await client["xep_0030"].get_items(jid="localhost", node=COMMANDS)
        await close(client)
        return sorted(item[1] for item in items["disco_items"]["items"])

    async def scenario():
        assert await commands_offered("chief") == await commands_offered("boss") == [
            "urn:xmpp:invite#create-account", "urn:xmpp:invite#invite"]
        for user in ("member", "plain"):
            assert await commands_offered(user) == ["urn:xmpp:invite#invite"]

    run(scenario())


COMMANDS = "http://jabber.org/protocol/commands"


async def command(client, node: str):
    iq = await client["xep_0050"].send_command(JID("localhost"), node)
    return iq["command"]["form"].get_values()


def test_adhoc_invites(server):
    plugins = ("xep_0030", "xep_0050", "xep_0004")

    async def scenario():
        boss = await login(server, "boss", plugins=plugins)
        ann = await login(server, "ann", plugins=plugins)
        items = await ann["xep_0030"].get_items(jid="localhost",
                                                node="http://jabber.org/protocol/commands")
        assert [item[1] for item in items["disco_items"]["items"]] == [
            "urn:xmpp:invite#invite"]
        ann_invite = await command(ann, "urn:xmpp:invite#invite")
        assert ann_invite["uri"].startswith("xmpp:ann@localhost?roster;preauth=")
        assert "ibr=y" not in ann_invite["uri"]  # allow_user_invites is false
        account = await command(boss, "urn:xmpp:invite#create-account")
        assert account["uri"].startswith("xmpp:localhost?register;preauth=")
        contact = await command(boss, "urn:xmpp:invite#invite")
        assert contact["uri"].endswith(";ibr=y")
        _, _, done = register_with(server, token_of(contact["uri"]), "friend", "friend-pw")
        assert done.get("type") == "result"
        server.users["friend"] = "friend-pw"
        friend = await login(server, "friend")
        roster = await friend.get_roster()
        item = roster["roster"]["items"][JID("boss@localhost")]
        assert item["subscription"] == "both"
        boss_roster = await boss.get_roster()
        assert boss_roster["roster"]["items"][JID("friend@localhost")]["subscription"] == "both"
        await close(boss, ann, friend)

    run(scenario())


def test_preapproved_subscription_with_a_contact_invite(server):
    """XEP-0379: cy subscribes to ann with ann's invite token and is approved at
    once; ann asks back."""
    plugins = ("xep_0030", "xep_0050", "xep_0004")

    async def scenario():
        ann = await login(server, "ann", plugins=plugins)
        cy = await login(server, "cy")
        cy.auto_authorize = None  # cy leaves ann's request back unanswered
        await cy.get_roster()
        token = token_of((await command(ann, "urn:xmpp:invite#invite"))["uri"])
        request = cy.make_presence(pto="ann@localhost", ptype="subscribe")
        request.append(Element("{urn:xmpp:pars:0}preauth", {"token": token}))
        request.send()
        await cy.next_presence(lambda p: p["type"] == "subscribed")
        await cy.next_presence(lambda p: p["type"] == "subscribe"
                               and p["from"].bare == "ann@localhost")
        roster = await ann.get_roster()
        assert roster["roster"]["items"][JID("cy@localhost")]["subscription"] == "from"
        await close(ann, cy)

    run(scenario())
