"""module:open_store's three shapes on SQL: keyval, map and archive (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from xml.etree.ElementTree import Element, SubElement

import pytest

from storage.accounts import AccountStore
from storage.db import SQLITE_BULK_CACHE_KIB, SQLITE_BULK_CHECKPOINT_PAGES
from storage.stores import ArchiveEntry, StoreFactory
from tests.unit import storage_fixtures

db_url = storage_fixtures.db_url
db = storage_fixtures.db

HOST = "example.org"
T0 = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def stores(db):
    db.migrate()
    return StoreFactory(db)


def test_keyval_keeps_one_value_per_user(stores):
    store = stores.open(HOST, "vcard", "keyval")
    assert store.get("alice") is None
    store.set("alice", {"fn": "Alice", "n": [1, 2]})
    store.set("bob", {"fn": "Bob"})
    assert store.get("alice") == {"fn": "Alice", "n": [1, 2]}
    store.set("alice", None)
    assert store.get("alice") is None and store.get("bob") == {"fn": "Bob"}


def test_stores_are_separate_by_host_and_name(stores):
    stores.open(HOST, "one", "keyval").set("alice", 1)
    assert stores.open(HOST, "two", "keyval").get("alice") is None
    assert stores.open("other.org", "one", "keyval").get("alice") is None


def test_map_keeps_xml_and_json_per_key(stores):
    store = stores.open(HOST, "private", "map")
    element = Element("{jabber:iq:private}query")
    SubElement(element, "{storage:bookmarks}storage").text = "x"
    store.set_keys("alice", {"storage:bookmarks": element, "count": 3})
    got = store.get("alice", "storage:bookmarks")
    assert got.tag == "{jabber:iq:private}query"
    assert got.findtext("{storage:bookmarks}storage") == "x"
    assert store.get("alice", "count") == 3
    assert set(store.get_all("alice")) == {"storage:bookmarks", "count"}
    store.set("alice", "count", None)
    assert store.get("alice", "count") is None
    assert store.users() == ["alice"]


def test_host_data_has_no_user(stores):
    store = stores.open(HOST, "settings", "keyval")
    store.set(None, {"motd": "hi"})
    assert store.get(None) == {"motd": "hi"} and store.get("alice") is None


def _fill(archive, n=10):
    keys = []
    for i in range(n):
        body = Element("{jabber:client}message")
        SubElement(body, "{jabber:client}body").text = f"m{i}"
        keys.append(archive.append("alice", body, T0 + timedelta(minutes=i),
                                   with_="bob@example.org" if i % 2 else "carol@example.org"))
    return keys


def test_archive_pages_forward_and_backward_by_key(stores):
    archive = stores.open(HOST, "archive", "archive")
    keys = _fill(archive)
    first = archive.find("alice", limit=3)
    assert [r.key for r in first] == keys[:3]
    assert first[0].value.findtext("{jabber:client}body") == "m0"
    following = archive.find("alice", after=keys[2], limit=3)
    assert [r.key for r in following] == keys[3:6]
    last = archive.find("alice", reverse=True, limit=2)
    assert [r.key for r in last] == [keys[9], keys[8]]
    assert [r.key for r in archive.find("alice", before=keys[2])] == keys[:2]
    assert archive.count("alice") == 10


def test_archive_filters_by_time_with_and_ids(stores):
    archive = stores.open(HOST, "archive", "archive")
    keys = _fill(archive)
    window = archive.find("alice", start=T0 + timedelta(minutes=2),
                          end=T0 + timedelta(minutes=4))
    assert [r.key for r in window] == keys[2:5]
    with_bob = archive.find("alice", with_="bob@example.org")
    assert [r.key for r in with_bob] == keys[1::2]
    assert archive.count("alice", with_="bob@example.org") == 5
    assert [r.key for r in archive.find("alice", ids=[keys[7], keys[0]])] == [keys[0], keys[7]]
    with pytest.raises(KeyError):
        archive.find("alice", after="no-such-key")


def test_archive_tells_an_unknown_cursor_key_from_an_empty_page(stores):
    """The cursor key is sought inside the page's statement; a page that is
    empty because nothing follows a known key is no error, and another user's
    key is unknown to this one."""
    archive = stores.open(HOST, "archive", "archive")
    keys = _fill(archive)
    bobs = archive.append("bob", "b", T0)
    assert archive.find("alice", after=keys[9]) == []
    assert archive.count("alice", after=keys[9]) == 0
    assert archive.find("alice", with_="bob@example.org", after=keys[2], before=keys[3]) == []
    with pytest.raises(KeyError):
        archive.find("alice", after=keys[9], before=bobs)
    with pytest.raises(KeyError):
        archive.count("alice", after=bobs)


def test_archive_delete_and_account_deletion(stores, db):
    archive = stores.open(HOST, "archive", "archive")
    _fill(archive)
    assert archive.delete("alice", end=T0 + timedelta(minutes=4)) == 5
    assert archive.count("alice") == 5
    accounts = AccountStore(db, iterations=4096)
    accounts.create(HOST, "alice", "pw")
    stores.open(HOST, "vcard", "keyval").set("alice", {"fn": "A"})
    accounts.delete(HOST, "alice")
    assert archive.count("alice") == 0
    assert stores.open(HOST, "vcard", "keyval").get("alice") is None


def test_archive_replace_puts_an_item_in_place_and_drops_others(stores):
    archive = stores.open(HOST, "pep_n", "archive")
    other = stores.open(HOST, "pep_n", "archive")
    for key in ("a", "b", "c"):
        archive.append("alice", {"v": key}, T0, key=key)
    other.append("bob", {"v": "a"}, T0, key="a")
    archive.replace("alice", {"v": "new"}, T0 + timedelta(minutes=1), "b", drop=["a"])
    assert [(r.key, r.value) for r in archive.find("alice")] == [
        ("c", {"v": "c"}), ("b", {"v": "new"})]
    archive.replace("alice", {"v": "d"}, T0 + timedelta(minutes=2), "d")
    assert [r.key for r in archive.find("alice")] == ["c", "b", "d"]
    assert [r.key for r in other.find("bob")] == ["a"]


def test_unknown_store_kind_is_refused(stores):
    with pytest.raises(ValueError):
        stores.open(HOST, "x", "table")


def test_archive_orders_by_time_then_append_and_bounds_by_several_keys(stores):
    archive = stores.open(HOST, "archive", "archive")
    late = ArchiveEntry("alice", "late", T0 + timedelta(hours=1), key="late")
    same = [ArchiveEntry("alice", f"s{i}", T0, key=f"s{i}") for i in range(4)]
    archive.append_many([late, *same])
    assert [r.key for r in archive.find("alice")] == ["s0", "s1", "s2", "s3", "late"]
    assert [r.key for r in archive.find("alice", after=("s0", "s1"), before="late")] == \
        ["s2", "s3"]
    assert [r.key for r in archive.find("alice", before="s3", reverse=True, limit=2)] == \
        ["s2", "s1"]
    assert archive.count("alice", after="s1") == 3
    assert archive.find("alice", ids=["late"])[0].value == "late"
    with pytest.raises(KeyError):
        archive.count("alice", before="nope")


def test_archive_lists_its_users(stores):
    archive = stores.open(HOST, "muc_log", "archive")
    for room in ("lounge", "attic", "lounge"):
        archive.append(room, {"body": room}, T0)
    stores.open(HOST, "other", "archive").append("cellar", {"body": "x"}, T0)
    assert sorted(archive.users()) == ["attic", "lounge"]


def test_archive_batch_from_a_thread_is_found_by_time_as_single_appends(stores):
    """The archive writer's path (statement run elsewhere, many rows in one
    INSERT) stores times as Core does: an item at a whole second is found by
    a range starting at that second, and a batch larger than one statement's
    parameters keeps its order."""
    archive = stores.open(HOST, "archive", "archive")
    calls = []

    def run_blocking(fn, args):
        calls.append(fn)
        return fn(*args)

    entries = [ArchiveEntry("alice", f"v{i}", T0 + timedelta(microseconds=i % 2))
               for i in range(5000)]
    archive.append_many(entries, run_blocking=run_blocking)
    assert calls or archive.db.backend != "sqlite"
    assert archive.count("alice", start=T0, end=T0) == 2500
    assert [r.key for r in archive.find("alice", start=T0, limit=3)] == \
        [entries[0].key, entries[2].key, entries[4].key]
    keys = [entry.key for entry in entries]
    assert len(set(keys)) == len(keys)


def test_archive_batches_from_a_thread_share_a_kept_connection_with_a_large_cache(stores):
    """SQLite: every batch goes through the one connection Database.bulk_writer
    keeps, whose cache holds the index pages batches write (not whichever the
    pool hands out); its times, given in any zone, are stored as Core stores them."""
    archive = stores.open(HOST, "archive", "archive")
    connections = []

    def run_blocking(fn, args):
        connections.append(args[0])
        return fn(*args)

    east = timezone(timedelta(hours=2))
    whens = [datetime(2026, 12, 1, 2, 0, 0, micro, tzinfo=east) for micro in (0, 5)]
    for n, when in enumerate(whens):
        archive.append_many([ArchiveEntry("alice", f"v{n}", when)], run_blocking=run_blocking)
    archive.append("alice", "core", T0)
    assert [(r.value, r.when) for r in archive.find("alice")] == \
        [("v0", T0), ("core", T0), ("v1", T0 + timedelta(microseconds=5))]
    if archive.db.backend == "sqlite":
        assert len(set(map(id, connections))) == 1
        pragma = connections[0].execute
        assert pragma("PRAGMA cache_size").fetchone()[0] == -SQLITE_BULK_CACHE_KIB
        assert pragma("PRAGMA wal_autocheckpoint").fetchone()[0] == \
            SQLITE_BULK_CHECKPOINT_PAGES
    else:
        assert not connections, "a database server is waited on by the greenlet"


def test_sqlite_batches_bind_times_as_sqlalchemy_does():
    """The writer's own formatting of `when` gives SQLAlchemy's text on SQLite,
    in any zone, at a whole second, across seconds and years; naive refused."""
    from sqlalchemy.dialects import sqlite

    from storage.models import UTCDateTime
    from storage.stores import _sqlite_datetime

    dialect = sqlite.dialect()
    core = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    east = timezone(timedelta(hours=5, minutes=30))
    values = [T0, T0 + timedelta(microseconds=7), T0 + timedelta(seconds=1),
              datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
              datetime(2027, 1, 1, 5, 29, 59, 1, tzinfo=east),
              datetime(999, 3, 4, 5, 6, 7, 8, tzinfo=UTC), T0]
    assert [_sqlite_datetime(value) for value in values] == [core(value) for value in values]
    with pytest.raises(ValueError):
        _sqlite_datetime(datetime(2026, 12, 1))


def test_archive_batch_serialises_a_shared_element_once(stores, monkeypatch):
    """A local message is kept in its sender's and its recipient's archive as
    one element: the batch serialises it once and stores it twice."""
    from storage import stores as module

    calls = []
    real = module.encode
    monkeypatch.setattr(module, "encode", lambda value: calls.append(value) or real(value))
    archive = stores.open(HOST, "archive", "archive")
    message = Element("{jabber:client}message", {"to": "bob@example.org"})
    SubElement(message, "{jabber:client}body").text = "hi"
    archive.append_many([ArchiveEntry("alice", message, T0, "bob@example.org"),
                         ArchiveEntry("bob", message, T0, "alice@example.org")])
    assert len(calls) == 1
    assert [r.value.findtext("{jabber:client}body") for r in archive.find("bob")] == ["hi"]
    assert archive.find("alice")[0].with_ == "bob@example.org"


def test_a_mam_page_reads_on_one_connection_without_a_transaction(stores, db):
    """A page's items and count share one pool checkout; on a database server
    no BEGIN or ROLLBACK goes with them (round trips a page does not need).
    Its stanzas come as written, for forwarding."""
    from sqlalchemy import event

    from xmpp import mam
    from xmpp.stanza import SerializedElement, serialize

    archive = stores.open(HOST, "archive", "archive")
    keys = _fill(archive)
    checkouts, in_transaction = [], []
    event.listen(db.engine.pool, "checkout", lambda *_: checkouts.append(1))
    event.listen(db.engine, "before_cursor_execute", lambda connection, *_: in_transaction.append(
        not getattr(connection.connection.dbapi_connection, "autocommit", False)))
    query = mam.ArchiveQuery(after=(keys[1],), limit=3)
    records, done = mam.run_query(archive, "alice", query, include_total=True)
    assert [record.key for record in records] == keys[2:5]
    assert done.find("{http://jabber.org/protocol/rsm}set/{http://jabber.org/protocol/rsm}count")\
        .text == "10"
    assert len(checkouts) == 1
    assert len(in_transaction) == 2  # the items (seeking the after-id key), the count
    if db.backend != "sqlite":  # SQLite's reads begin no transaction anyway
        assert not any(in_transaction)
    assert type(records[0].value) is SerializedElement
    assert "<body>m2</body>" in serialize(records[0].value)


def test_a_page_by_with_seeks_the_jids_items_in_an_index(stores, db):
    """A page by `with` and its count read the (with, when, id) index from the
    JID's first item on, rather than filtering the user's whole archive."""
    from sqlalchemy import event

    archive = stores.open(HOST, "archive", "archive")
    _fill(archive)
    statements = []

    def record(_connection, _cursor, statement, parameters, *_):
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    archive.find("alice", with_="bob@example.org", limit=3)
    archive.count("alice", with_="bob@example.org")
    event.remove(db.engine, "before_cursor_execute", record)
    with db.engine.connect() as connection:
        if db.backend == "postgresql":
            # A table this small is read whole unless the planner is told not to;
            # what is checked is that the index serves these statements at all.
            connection.exec_driver_sql("SET enable_seqscan = off")
        plans = [" ".join(str(row[-1]) for row in connection.exec_driver_sql(
            f"EXPLAIN {'QUERY PLAN ' if db.backend == 'sqlite' else ''}{statement}", parameters))
            for statement, parameters in statements]
    assert len(plans) == 2
    if db.backend == "sqlite":
        assert all("ix_archive_host_username_store_with_when_id (host=? AND username=? AND "
                   "store=? AND with=?)" in plan for plan in plans), plans
    else:
        assert all("ix_archive_host_username_store_with_when_id" in plan for plan in plans), plans
