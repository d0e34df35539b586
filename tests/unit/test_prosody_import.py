"""import-prosody on hand-made Prosody data files: good ones, and bad input
(hostile, truncated, huge, badly named) costing only the account it belongs to."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Table, func, select

from storage import models
from storage.accounts import AccountStore
from storage.db import Database
from storage.lua_data import encode_name
from storage.prosody_import import MAX_ROSTER_ITEMS, ProsodyImporter
from storage.roster import RosterStore
from storage.stores import StoreFactory
from tests.unit import storage_fixtures
from xmpp.modules.adhoc import ADMIN_ROLE, ROLES_STORE
from xmpp.muc.room import Room, RoomPolicy
from xmpp.scram import derive

db_url = storage_fixtures.db_url
db = storage_fixtures.db

HOST = "old.example"
SALT = "9c7aab45-3b4b-43ef-a979-49e0269f190d"


def hashed_account(password: str) -> str:
    creds = derive(password, "sha1", SALT.encode(), 4096)
    return (f'return {{ ["iteration_count"] = 4096; ["salt"] = "{SALT}";\n'
            f'["stored_key"] = "{creds.stored_key.hex()}";\n'
            f'["server_key"] = "{creds.server_key.hex()}"; }};\n')


def put(data: Path, store: str, user: str, body: str | bytes, ext: str = "dat") -> Path:
    path = data / encode_name(HOST) / store / f"{encode_name(user)}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    return path


def run_import(db: Database, data: Path):
    return ProsodyImporter(db, {HOST: True}).run(data)


def count(db: Database, table: Table, username: str) -> int:
    with db.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(table).where(
            table.c.username == username))


def test_hashed_and_plain_accounts(db: Database, tmp_path: Path) -> None:
    put(tmp_path, "accounts", "alice", hashed_account("secret"))
    put(tmp_path, "accounts", "carol", 'return { ["password"] = "plain-pw" };')
    put(tmp_path, "roster", "alice", 'return { [false] = { version = 7, pending = '
        '{ ["eve@x.example"] = true } }, ["bob@old.example"] = { subscription = "to", '
        'ask = "subscribe", name = "Bob", groups = { A = true, B = true } } };')
    report = run_import(db, tmp_path)
    assert (len(report.imported), report.failed) == (2, [])
    accounts = AccountStore(db)
    assert accounts.scram_credentials(HOST, "alice", "SCRAM-SHA-256") is None
    assert accounts.scram_credentials(HOST, "alice", "SCRAM-SHA-1").salt == SALT.encode()
    assert accounts.check_password(HOST, "carol", "plain-pw")
    assert accounts.lacking_sha256(HOST) == 1
    rosters = RosterStore(db)
    item = rosters.get_item(HOST, "alice", "bob@old.example")
    assert (item.subscription, item.ask, item.name, item.groups) == ("to", True, "Bob",
                                                                     ["A", "B"])
    assert rosters.pending_in(HOST, "alice") == {"eve@x.example": None}
    assert rosters.version(HOST, "alice") == 7


def test_plain_login_upgrades_to_sha256(db: Database, tmp_path: Path) -> None:
    put(tmp_path, "accounts", "alice", hashed_account("secret"))
    run_import(db, tmp_path)
    accounts = AccountStore(db)
    assert accounts.scram_mechanisms(HOST) == {"SCRAM-SHA-1"}
    assert not accounts.check_password(HOST, "alice", "wrong")
    assert accounts.lacking_sha256(HOST) == 1
    assert accounts.check_password(HOST, "alice", "secret")
    assert accounts.lacking_sha256(HOST) == 0
    assert accounts.scram_mechanisms(HOST) == {"SCRAM-SHA-1", "SCRAM-SHA-256"}
    sha256 = accounts.scram_credentials(HOST, "alice", "SCRAM-SHA-256")
    assert sha256.stored_key == derive("secret", "sha256", SALT.encode(), 4096).stored_key


HOSTILE = {
    "endless": "while true do end",
    "truncated": 'return { ["password"] = "abc',
    "escape": 'return os.execute("touch /tmp/pwned")',
    "memory": 'local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(64) .. i end return t',
    "not a table": 'return "just a string"',
    "function": "return { password = function () end }",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_bad_file_costs_its_account_only(db: Database, tmp_path: Path, body: str) -> None:
    put(tmp_path, "accounts", "good", hashed_account("pw"))
    put(tmp_path, "accounts", "bad", hashed_account("pw"))
    put(tmp_path, "roster", "bad", 'return { ["x@y.example"] = { subscription = "both" } };')
    path = put(tmp_path, "vcard", "bad", body)
    report = run_import(db, tmp_path)
    assert [owner for owner, _ in report.imported] == [f"good@{HOST}"]
    [(owner, message)] = report.failed
    assert owner == f"bad@{HOST}" and str(path) in message
    assert count(db, models.accounts, "bad") == count(db, models.roster_items, "bad") == 0
    assert not Path("/tmp/pwned").exists()


def test_huge_roster_is_refused_whole(db: Database, tmp_path: Path) -> None:
    put(tmp_path, "accounts", "bot", hashed_account("pw"))
    entries = "".join(f'["c{i}@x.example"] = {{ subscription = "both" }};\n'
                      for i in range(100_000))
    path = put(tmp_path, "roster", "bot", f"return {{\n{entries}}};\n")
    report = run_import(db, tmp_path)
    [(owner, message)] = report.failed
    assert owner == f"bot@{HOST}"
    assert str(path) in message and f"more than the {MAX_ROSTER_ITEMS}" in message
    assert count(db, models.accounts, "bot") == count(db, models.roster_items, "bot") == 0


def test_non_utf8_names(db: Database, tmp_path: Path) -> None:
    path = put(tmp_path, "accounts", "x", hashed_account("pw"))
    bad = path.with_name("%ff%fe.dat")
    path.rename(bad)
    put(tmp_path, "accounts", "dan", b'return { ["password"] = "\xff\xfe" };')
    report = run_import(db, tmp_path)
    failed = dict(report.failed)
    assert "not UTF-8" in failed[f"%ff%fe@{HOST}"] and str(bad) in failed[f"%ff%fe@{HOST}"]
    assert "password is not UTF-8" in failed[f"dan@{HOST}"]
    assert count(db, models.accounts, "dan") == 0


def test_stores_and_unplaced_kinds(db: Database, tmp_path: Path) -> None:
    put(tmp_path, "accounts", "alice", hashed_account("pw"))
    put(tmp_path, "vcard", "alice", 'return { name = "vCard", attr = { xmlns = "vcard-temp" },'
        ' { name = "FN", attr = {}, "Alice" } };')
    put(tmp_path, "pep_urn%3axmpp%3aavatar%3adata", "alice",
        'item({ name = "item", attr = { id = "a1", xmlns = "http://jabber.org/protocol/pubsub" },'
        ' key = "a1", when = 1700000000, with = "" });', ext="list")
    put(tmp_path, "roles", "alice", 'return { ["prosody:admin"] = true };')
    put(tmp_path, "smacks_h", "alice", "return { h = 1 };")
    report = run_import(db, tmp_path)
    assert report.imported == [(f"alice@{HOST}", {"vcard": 1, "roles": 1,
                                                  "pep_urn:xmpp:avatar:data": 1})]
    assert report.skipped == [(HOST, "1 file(s) of smacks_h (dat), which Vireo does not "
                                     "place yet")]
    assert count(db, models.keyval, "alice") == 2
    # Prosody 0.12's roles, where is_admin (xmpp/modules/adhoc.py) reads them.
    assert StoreFactory(db).open(HOST, ROLES_STORE).get("alice") == {ADMIN_ROLE: True}
    again = run_import(db, tmp_path)
    assert (again.imported, again.present) == ([], [f"alice@{HOST}"])


def test_muc_rooms_on_a_component(db: Database, tmp_path: Path) -> None:
    muc = "conference.old.example"
    rooms = tmp_path / encode_name(muc)
    (rooms / "config").mkdir(parents=True)
    (rooms / "config" / "tea.dat").write_text(
        'return { jid = "tea@conference.old.example", _data = { subject = "Tea",'
        ' subject_from = "tea@conference.old.example/Al", name = "Tea room",'
        ' persistent = true, members_only = true, hidden = true,'
        ' presence_broadcast = { moderator = true, participant = true } },'
        ' _affiliations = { ["alice@old.example"] = "owner" } };')
    (rooms / "persistent.dat").write_text('return { ["tea@conference.old.example"] = true };')
    (rooms / "muc_log").mkdir()
    (rooms / "muc_log" / "tea.list").write_text(
        'item({ name = "message",'
        ' attr = { type = "groupchat", from = "tea@conference.old.example/a" },'
        ' { name = "body", attr = {}, "hello" }, key = "m1", when = 1700000000.5,'
        ' with = "message<groupchat" });\n')
    report = ProsodyImporter(db, {muc: False}).run(tmp_path)
    assert report.failed == []
    assert sorted(owner for owner, _ in report.imported) == [muc, f"tea@{muc}"]
    stores = StoreFactory(db)
    room = Room.from_json(f"tea@{muc}", stores.open(muc, "config").get("tea"), RoomPolicy(),
                          new_id=lambda: "id")
    assert room.affiliations == {"alice@old.example": "owner"}
    assert room.subject == ("Tea", "Al")
    assert (room.config.name, room.config.persistent, room.config.members_only,
            room.config.public, room.config.presence_broadcast) == (
        "Tea room", True, True, False, ("participant", "moderator"))
    # Listed by node, as Vireo's rooms are (Prosody lists them by JID).
    assert stores.open(muc, "persistent", "map").get_all(None) == {"tea": True}
    [record] = stores.open(muc, "muc_log", "archive").find("tea")
    assert (record.key, record.with_) == ("m1", "message<groupchat")
    assert record.value.findtext("{jabber:client}body") == "hello"
