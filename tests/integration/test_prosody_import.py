"""Moving from Prosody: a real Prosody 0.12 data store (accounts made by prosodyctl,
rosters, vCards, private XML, block lists and offline messages made by slixmpp
clients against a running Prosody), imported with `app.py import-prosody`; the
same users then log into Vireo with their old passwords."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from slixmpp import JID
from slixmpp.xmlstream import ET

from storage.db import Database, database_url
from storage.stores import StoreFactory
from tests.integration.clients import close, login, run, try_login
from tests.integration.prosody_fixture import PROSODY, _encode, make_prosody
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server
from xmpp.config import load_config

pytestmark = pytest.mark.skipif(PROSODY is None, reason="prosody is not installed "
                                "(apt-get install prosody)")

DOMAIN = "old.example"
HASHED = {"alice": "alice-pw", "bob": "bob-pw", "dave": "dave-pw"}
PLAIN = {"carol": "carol-pw"}
PLUGINS = ("xep_0030", "xep_0054", "xep_0049", "xep_0191")


async def fill_prosody(prosody) -> None:
    alice = await login(prosody, "alice", plugins=PLUGINS)
    bob = await login(prosody, "bob", plugins=PLUGINS)
    await alice.get_roster()
    await bob.get_roster()
    await alice.update_roster(f"bob@{DOMAIN}", name="Bob", groups=["Friends"])
    for asker, answerer in ((alice, bob), (bob, alice)):
        asker.send_presence(pto=answerer.boundjid.bare, ptype="subscribe")
        await answerer.next_presence(lambda p: p["type"] == "subscribe")
        answerer.send_presence(pto=asker.boundjid.bare, ptype="subscribed")
        await asker.next_presence(lambda p, who=answerer.boundjid.bare:
                                  p["from"].bare == who and p["type"] == "available")
    vcard = alice["xep_0054"].stanza.VCardTemp()
    vcard["FN"] = "Alice Liddell"
    await alice["xep_0054"].publish_vcard(vcard)
    note = ET.Element("{urn:example:notes}notes")
    note.text = "remember the tea"
    await alice["xep_0049"].store(note)
    await alice["xep_0191"].block([f"spam@{DOMAIN}"])
    bob.send_message(f"carol@{DOMAIN}", "while you were away")
    # A round trip after the message, so Prosody has stored it before we stop.
    await bob["xep_0030"].get_info(DOMAIN)
    await close(alice, bob)


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """Prosody's data, made by Prosody, and a Vireo server on the same domain."""
    base = tmp_path_factory.mktemp("prosody-import")
    prosody = make_prosody(base / "prosody", domain=DOMAIN, address="127.0.0.21",
                           dns_forward="127.0.0.1@9",
                           authentication="internal_hashed",
                           modules=("vcard", "private", "blocklist", "offline"))
    for user, password in HASHED.items():
        subprocess.run(["prosodyctl", "--config", str(prosody.config_path), "register",
                        user, DOMAIN, password], check=True, capture_output=True, timeout=60)
    prosody.users.update(HASHED)
    prosody.create_users(PLAIN)  # internal_plain files, as older Prosody data has
    prosody.start()
    try:
        run(fill_prosody(prosody))
    finally:
        prosody.stop()
    vireo = make_server(base / "vireo", domain=DOMAIN, address="127.0.0.22")
    vireo.users.update(HASHED | PLAIN)
    data_path = prosody.directory / "data"
    first = vireo.admin("import-prosody", str(data_path))
    vireo.start()
    yield vireo, data_path, first
    vireo.stop()


def test_import_report(moved):
    _vireo, _data_path, first = moved
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Imported 4, already present 0, failed 0" in first.stdout
    assert "imported alice@old.example: 1 blocklist, 1 private, 1 roster items, 1 vcard" \
        in first.stdout
    assert "imported carol@old.example: 1 offline messages" in first.stdout
    assert "3 account(s) have SCRAM-SHA-1 material only" in first.stdout


def test_second_run_changes_nothing(moved):
    vireo, data_path, _first = moved
    again = vireo.admin("import-prosody", str(data_path))
    assert again.returncode == 0, again.stderr
    assert "Imported 0, already present 4, failed 0" in again.stdout


def test_old_passwords_log_in_and_data_is_there(moved):
    vireo, _data_path, _first = moved

    async def scenario() -> None:
        # SCRAM-SHA-1 with the material Prosody made, and the client's own choice.
        bob = await try_login(vireo, "bob", HASHED["bob"], mech="SCRAM-SHA-1")
        assert bob is not None
        assert await try_login(vireo, "bob", "wrong", mech="SCRAM-SHA-1") is None
        default = await try_login(vireo, "bob", HASHED["bob"], mech=None)
        assert default is not None
        alice = await login(vireo, "alice", mech="PLAIN")
        roster = await alice.get_roster()
        item = roster["roster"]["items"][JID(f"bob@{DOMAIN}")]
        assert (item["name"], item["subscription"], item["groups"]) == ("Bob", "both",
                                                                       ["Friends"])
        carol = await login(vireo, "carol", presence=False)
        carol.send_presence()
        message = await carol.next_message()
        assert message["body"] == "while you were away"
        assert message["delay"]["stamp"] is not None
        await close(bob, default, alice, carol)

    run(scenario())
    stores = StoreFactory(Database(database_url(load_config(vireo.config_path))))
    vcard = stores.open(DOMAIN, "vcard").get("alice")
    assert vcard.findtext("{vcard-temp}FN") == "Alice Liddell"
    private = stores.open(DOMAIN, "private", "map").get("alice", "notes:urn:example:notes")
    assert private.text == "remember the tea"
    assert stores.open(DOMAIN, "blocklist").get("alice") == {f"spam@{DOMAIN}": True}


def mechanisms(vireo) -> list[str]:
    client = RawClient(vireo.c2s_port, address=vireo.address)
    try:
        features = client.starttls(DOMAIN, vireo.cert).decode()
    finally:
        client.close()
    return re.findall(r"<mechanism>([^<]+)</mechanism>", features)


def test_sha256_offered_once_every_account_has_it(moved):
    vireo, _data_path, _first = moved
    assert not {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"} & set(mechanisms(vireo))
    check = vireo.admin("check")
    assert "account(s) have SCRAM-SHA-1 material only" in check.stdout

    async def plain_logins() -> None:
        for user in HASHED:
            client = await login(vireo, user, mech="PLAIN", presence=False)
            await close(client)

    run(plain_logins())
    # Channel binding puts the -PLUS twins first where the connection has TLS.
    plain_scram = [m for m in mechanisms(vireo) if m.startswith("SCRAM") and "-PLUS" not in m]
    assert plain_scram == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    assert "SCRAM-SHA-1 material only" not in vireo.admin("check").stdout

    async def sha256_login() -> None:
        client = await try_login(vireo, "dave", HASHED["dave"], mech="SCRAM-SHA-256")
        assert client is not None
        await close(client)

    run(sha256_login())


def write_account(data_path: Path, user: str, body: str) -> Path:
    path = data_path / _encode(DOMAIN) / "accounts" / f"{_encode(user)}.dat"
    path.write_text(body)
    return path


def test_export_to_xep0227_and_import_elsewhere(moved, tmp_path):
    vireo, _data_path, _first = moved
    exported = tmp_path / "server.xml"
    result = vireo.admin("export", str(exported))
    assert result.returncode == 0, result.stderr
    assert "Exported 4 account(s)" in result.stderr
    text = exported.read_text()
    assert "urn:xmpp:pie:0#scram" in text and "Alice Liddell" in text
    other = make_server(tmp_path / "other", domain=DOMAIN, address="127.0.0.23")
    other.users.update(HASHED | PLAIN)
    imported = other.admin("import-xep0227", str(exported))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "Imported 4, already present 0, failed 0" in imported.stdout
    assert "Imported 0, already present 4" in other.admin("import-xep0227",
                                                          str(exported)).stdout
    other.start()
    try:
        async def scenario() -> None:
            bob = await try_login(other, "bob", HASHED["bob"], mech="SCRAM-SHA-1")
            assert bob is not None
            alice = await login(other, "alice", mech="PLAIN")
            roster = await alice.get_roster()
            assert roster["roster"]["items"][JID(f"bob@{DOMAIN}")]["groups"] == ["Friends"]
            await close(bob, alice)

        run(scenario())
    finally:
        other.stop()
    stores = StoreFactory(Database(database_url(load_config(other.config_path))))
    assert stores.open(DOMAIN, "vcard").get("alice").findtext("{vcard-temp}FN") \
        == "Alice Liddell"
    assert stores.open(DOMAIN, "blocklist").get("alice") == {f"spam@{DOMAIN}": True}
