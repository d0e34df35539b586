"""vCards with slixmpp: XEP-0054 vcard-temp (mod_vcard), and mod_vcard_legacy's
mapping onto PEP both ways (XEP-0292 vCard4, XEP-0084 avatars, XEP-0153
hashes in presence); mod_vcard4's IQ."""

from __future__ import annotations

import hashlib

import pytest
from slixmpp.exceptions import IqError

from storage.db import Database, database_url
from storage.stores import StoreFactory
from tests.integration.clients import close, login, run
from tests.integration.server_fixture import make_server
from tests.integration.test_presence import is_from, seed_mutual
from xmpp.config import load_config
from xmpp.stream import parse_stanza

PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0163", "xep_0054", "xep_0084",
           "xep_0153", "xep_0292")
USERS = {name: f"pw-{name}" for name in (
    "card_a", "card_b", "pep_a", "pep_b", "old_a", "old_b")}
PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
V4 = "urn:ietf:params:xml:ns:vcard-4.0"
VCARD4_NODE = "urn:xmpp:vcard4"  # XEP-0292's node (slixmpp defaults to the namespace)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("vcard"),
                         modules=("pep", "vcard_legacy", "vcard4"))
    server.create_users(USERS)
    seed_mutual(server, [("card_a", "card_b"), ("pep_a", "pep_b"), ("old_a", "old_b")])
    # What mod_vcard stored before mod_vcard_legacy was loaded.
    database = Database(database_url(load_config(server.config_path)))
    try:
        StoreFactory(database).open(server.domain, "vcard").set("old_a", parse_stanza(
            "<vCard xmlns='vcard-temp'><FN>Old Timer</FN></vCard>"))
    finally:
        database.close()
    server.start()
    yield server
    assert server.stop() == 0


def test_a_vcard_temp_with_photo_becomes_vcard4_an_avatar_and_a_presence_hash(server):
    async def scenario():
        alice = await login(server, "card_a", plugins=PLUGINS)
        bob = await login(server, "card_b", plugins=PLUGINS)
        alice_jid = server.jid("card_a")
        vcard = alice["xep_0054"].make_vcard()
        vcard["FN"] = "Alice Liddell"
        vcard["NICKNAME"] = "alice"
        await alice["xep_0054"].publish_vcard(vcard)
        # xep_0153 puts the photo in her vCard and sends presence again.
        await alice["xep_0153"].set_avatar(avatar=PICTURE, mtype="image/png")
        digest = hashlib.sha1(PICTURE).hexdigest()
        seen = await bob.next_presence(lambda p: is_from(alice_jid, "available")(p) and
                                       p["vcard_temp_update"]["photo"] == digest)
        assert seen["vcard_temp_update"]["photo"] == digest

        card = (await bob["xep_0054"].get_vcard(alice_jid))["vcard_temp"]
        assert card["FN"] == "Alice Liddell" and card["PHOTO"]["BINVAL"] == PICTURE
        vcard4 = await bob["xep_0060"].get_item(alice_jid, VCARD4_NODE, "current")
        assert vcard4.xml.findtext(f".//{{{V4}}}fn/{{{V4}}}text") == "Alice Liddell"
        avatar = await bob["xep_0084"].retrieve_avatar(alice_jid, digest)
        assert avatar["pubsub"]["items"]["item"]["avatar_data"]["value"] == PICTURE
        # mod_vcard4's IQ answers from the same node.
        iq = bob.make_iq_get(ito=alice_jid)
        iq.xml.append(parse_stanza(f"<vcard xmlns='{V4}'/>"))
        answer = await iq.send(timeout=10)
        assert answer.xml.findtext(f".//{{{V4}}}nickname/{{{V4}}}text") == "alice"
        await close(alice, bob)

    run(scenario())


def test_vcard4_and_avatar_published_over_pep_answer_vcard_temp(server):
    async def scenario():
        alice = await login(server, "pep_a", plugins=PLUGINS)
        bob = await login(server, "pep_b", plugins=PLUGINS)
        await alice["xep_0292"].publish_vcard(full_name="Pep Person", nickname="pp",
                                              email="pp@example.com", node=VCARD4_NODE)
        digest = hashlib.sha1(PICTURE).hexdigest()
        await alice["xep_0084"].publish_avatar(PICTURE)
        await alice["xep_0084"].publish_avatar_metadata(
            [{"id": digest, "type": "image/png", "bytes": len(PICTURE)}])
        card = (await bob["xep_0054"].get_vcard(server.jid("pep_a")))["vcard_temp"]
        assert card["FN"] == "Pep Person" and card["NICKNAME"] == ["pp"]
        assert card["PHOTO"]["TYPE"] == "image/png" and card["PHOTO"]["BINVAL"] == PICTURE
        # A vCard with a broken photo is refused, and changes nothing.
        broken = alice["xep_0054"].make_vcard()
        broken["FN"] = "Broken"
        broken.xml.append(parse_stanza(
            "<PHOTO xmlns='vcard-temp'><BINVAL>not base64!</BINVAL></PHOTO>"))
        with pytest.raises(IqError) as refused:
            await alice["xep_0054"].publish_vcard(broken)
        assert refused.value.condition == "bad-request"
        card = (await bob["xep_0054"].get_vcard(server.jid("pep_a")))["vcard_temp"]
        assert card["FN"] == "Pep Person"
        await close(alice, bob)

    run(scenario())


def test_a_vcard_mod_vcard_kept_moves_to_pep_at_login(server):
    async def scenario():
        old = await login(server, "old_a", plugins=PLUGINS)
        bob = await login(server, "old_b", plugins=PLUGINS)
        card = (await bob["xep_0054"].get_vcard(server.jid("old_a")))["vcard_temp"]
        assert card["FN"] == "Old Timer"
        vcard4 = await bob["xep_0060"].get_item(server.jid("old_a"), VCARD4_NODE, "current")
        assert vcard4.xml.findtext(f".//{{{V4}}}fn/{{{V4}}}text") == "Old Timer"
        await close(old, bob)

    run(scenario())


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("vcard_plain"), modules=("vcard",))
    server.create_users({"plain_a": "pw-a", "plain_b": "pw-b"})
    server.start()
    yield server
    assert server.stop() == 0


def test_mod_vcard_keeps_vcard_temp_for_its_owner_to_change(plain_server):
    server = plain_server

    async def scenario():
        alice = await login(server, "plain_a", plugins=PLUGINS)
        bob = await login(server, "plain_b", plugins=PLUGINS)
        with pytest.raises(IqError) as missing:
            await bob["xep_0054"].get_vcard(server.jid("plain_a"))
        assert missing.value.condition == "item-not-found"
        vcard = alice["xep_0054"].make_vcard()
        vcard["FN"] = "Plain Alice"
        await alice["xep_0054"].publish_vcard(vcard)
        card = (await bob["xep_0054"].get_vcard(server.jid("plain_a")))["vcard_temp"]
        assert card["FN"] == "Plain Alice"
        with pytest.raises(IqError) as forbidden:
            await bob["xep_0054"].publish_vcard(vcard, jid=server.jid("plain_a"))
        assert forbidden.value.condition == "forbidden"
        await close(alice, bob)

    run(scenario())
