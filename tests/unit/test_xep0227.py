"""XEP-0227 export and import: a round trip keeps every kind it carries, and a
bad <user/> is an error for that user only."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement

from storage.db import Database
from storage.roster import RosterItem
from storage.stores import ArchiveRecord
from storage.userdata import ScramMaterial, UserData, read_user, write_user
from storage.xep0227 import read_server_data, server_data
from tests.unit import storage_fixtures
from xmpp.muc.roomconfig import RoomConfig
from xmpp.pubsub import DEFAULT_CONFIG
from xmpp.stanza import serialize

db_url = storage_fixtures.db_url
db = storage_fixtures.db

HOST = "example.com"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def everything() -> UserData:
    vcard = Element("{vcard-temp}vCard")
    SubElement(vcard, "{vcard-temp}FN").text = "Alice"
    note = Element("{urn:example}note")
    note.text = "hi"
    message = Element("{jabber:client}message", {"from": "bob@example.com/x",
                                                 "to": "alice@example.com"})
    SubElement(message, "{jabber:client}body").text = "archived"
    offline = Element("{jabber:client}message", {"to": "alice@example.com"})
    SubElement(offline, "{urn:xmpp:delay}delay", {"stamp": "2026-01-02T03:04:05Z"})
    return UserData(
        HOST, "alice", ScramMaterial(b"salt", 4096, b"1" * 20, b"2" * 20, b"3" * 32, b"4" * 32),
        roster=[RosterItem("bob@example.com", "Bob", "both", False, ["Friends"]),
                RosterItem("eve@example.org", None, "none", True, [])],
        pending_in={"mallory@example.net": None},
        offline=[(serialize(offline), WHEN)],
        keyval={"vcard": vcard, "blocklist": {"spam@example.org": True}},
        maps={"private": {"note:urn:example": note}},
        archives={"archive": [ArchiveRecord("k1", WHEN, "bob@example.com", message)]})


def test_round_trip(db: Database, tmp_path: Path) -> None:
    assert write_user(db, everything())
    document, left_out = server_data({HOST: [read_user(db, HOST, "alice")]})
    assert left_out == {}
    path = tmp_path / "export.xml"
    path.write_text(document)
    [(host, name, data)] = list(read_server_data(str(path)))
    assert (host, name) == (HOST, "alice")
    original = everything()
    assert data.material == original.material
    assert data.roster == original.roster
    assert list(data.pending_in) == ["mallory@example.net"]
    assert [stamp for _, stamp in data.offline] == [WHEN]
    assert data.keyval["vcard"].findtext("{vcard-temp}FN") == "Alice"
    assert data.keyval["blocklist"] == {"spam@example.org": True}
    assert data.maps["private"]["note:urn:example"].text == "hi"
    [record] = data.archives["archive"]
    assert (record.key, record.when, record.with_) == ("k1", WHEN, "bob@example.com")
    assert record.value.findtext("{jabber:client}body") == "archived"


def test_bad_users_fail_alone(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='example.com'>"
        "<user name='nokeys'/>"
        "<user name='badkeys'><scram-credentials xmlns='urn:xmpp:pie:0#scram' "
        "mechanism='SCRAM-SHA-1'><iter-count>4096</iter-count><salt>!!</salt>"
        "<server-key>AA==</server-key><stored-key>AA==</stored-key></scram-credentials></user>"
        "<user name='fine' password='pw'/>"
        "</host></server-data>")
    results = {name: data for _, name, data in read_server_data(str(path))}
    assert isinstance(results["nokeys"], ValueError)
    assert isinstance(results["badkeys"], ValueError)
    assert isinstance(results["fine"], UserData) and results["fine"].material is not None


def with_pep(data: UserData) -> UserData:
    item = Element("{http://jabber.org/protocol/pubsub}item", {"id": "current"})
    SubElement(item, "{urn:example:mood}mood").text = "happy"
    data.maps["pep"] = {"urn:example:mood": {
        "name": "urn:example:mood", "affiliations": {"bob@example.com": "publisher"},
        "config": {"access_model": "open", "max_items": 10, "persist_items": True,
                   "roster_groups_allowed": ["Friends"], "title": "Mood"},
        "subscribers": ["bob@example.com/phone"]}}
    data.archives["pep_urn:example:mood"] = [ArchiveRecord("current", WHEN, "", item)]
    return data


def room() -> UserData:
    message = Element("{jabber:client}message", {"type": "groupchat",
                                                 "from": f"tea@{MUC}/Al"})
    SubElement(message, "{jabber:client}body").text = "hello room"
    return UserData(MUC, "tea", keyval={"config": {
        "config": {"name": "Tea room", "members_only": True, "persistent": True,
                   "history_length": 40, "presence_broadcast": ["moderator"],
                   "archiving": True},
        "affiliations": {"alice@example.com": "owner", "bob@example.com": "member"},
        "subject": ["Tea time", "Al"], "salt": "s"}},
        archives={"muc_log": [ArchiveRecord("m1", WHEN, "alice@example.com/x", message)]})


MUC = "conference.example.com"


def test_pep_nodes_and_rooms_round_trip(db: Database, tmp_path: Path) -> None:
    assert write_user(db, with_pep(everything())) and write_user(db, room())
    document, left_out = server_data({HOST: [read_user(db, HOST, "alice")],
                                      MUC: [read_user(db, MUC, "tea")]})
    assert left_out == {}
    assert "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>" in document
    assert "<room xmlns='urn:xmpp:pie:0#muc' name='tea'>" in document
    path = tmp_path / "export.xml"
    path.write_text(document)
    read = {name: data for _, name, data in read_server_data(str(path))}
    alice = read["alice"]
    original = with_pep(everything())
    [node] = alice.maps["pep"].values()
    assert node["config"] == {**DEFAULT_CONFIG, **original.maps["pep"]["urn:example:mood"][
        "config"]}
    assert (node["affiliations"], node["subscribers"]) == (
        {"bob@example.com": "publisher"}, ["bob@example.com/phone"])
    [item] = alice.archives["pep_urn:example:mood"]
    assert (item.key, item.value.get("id"), item.value.findtext("{urn:example:mood}mood")) \
        == ("current", "current", "happy")
    tea = read["tea"].keyval["config"]
    assert tea["affiliations"] == room().keyval["config"]["affiliations"]
    assert tea["subject"] == ["Tea time", "Al"]
    config = RoomConfig.from_json(tea["config"])
    assert (config.name, config.members_only, config.persistent, config.history_length,
            config.presence_broadcast, config.archiving, config.public) == (
        "Tea room", True, True, 40, ("moderator",), True, False)
    [record] = read["tea"].archives["muc_log"]
    assert (record.key, record.when, record.with_) == ("m1", WHEN, "alice@example.com/x")
    assert record.value.findtext("{jabber:client}body") == "hello room"
