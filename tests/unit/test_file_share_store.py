"""Upload slots in SQL: quotas as sums, completion, expiry queries, and no race past a quota."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from storage.db import Database
from storage.uploads import UploadRecord, UploadStore
from tests.unit import storage_fixtures

db_url = storage_fixtures.db_url
db = storage_fixtures.db

HOST = "upload.example.com"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Full(Exception):
    pass


def record(slot: str, uploader: str = "juliet@example.com", size: int = 100,
           created: datetime = T0, host: str = HOST) -> UploadRecord:
    return UploadRecord(slot=slot, host=host, uploader=uploader, filename=f"{slot}.txt",
                        size=size, content_type="text/plain", created=created,
                        completed=None, path=f"/data/{slot}.bin")


def no_limit(_global: int, _daily: int) -> None:
    return None


def test_issue_and_get(db: Database) -> None:
    store = UploadStore(db)
    store.issue(record("s1"), T0 - timedelta(days=1), no_limit)
    got = store.get(HOST, "s1")
    assert got == record("s1")
    assert store.get(HOST, "nope") is None
    assert store.get("other.example.com", "s1") is None


def test_decide_sees_global_and_daily_sums(db: Database) -> None:
    store = UploadStore(db)
    store.issue(record("old", size=1000, created=T0 - timedelta(hours=25)), T0, no_limit)
    store.issue(record("recent", size=200, created=T0 - timedelta(hours=1)), T0, no_limit)
    store.issue(record("theirs", uploader="romeo@example.com", size=30), T0, no_limit)
    store.issue(record("elsewhere", size=5, host="upload.other.example"), T0, no_limit)
    seen = []
    store.issue(record("new", size=1), T0 - timedelta(hours=24),
                lambda g, d: seen.append((g, d)))
    assert seen == [(1230, 200)]


def test_a_refusal_stores_nothing(db: Database) -> None:
    store = UploadStore(db)

    def refuse(_g: int, _d: int) -> None:
        raise Full()

    with pytest.raises(Full):
        store.issue(record("s1"), T0, refuse)
    assert store.get(HOST, "s1") is None


def test_complete_once(db: Database) -> None:
    store = UploadStore(db)
    store.issue(record("s1"), T0, no_limit)
    assert store.complete(HOST, "s1", T0 + timedelta(seconds=5))
    assert not store.complete(HOST, "s1", T0 + timedelta(seconds=6))
    assert store.get(HOST, "s1").completed == T0 + timedelta(seconds=5)
    assert not store.complete(HOST, "missing", T0)


def test_created_until_and_delete(db: Database) -> None:
    store = UploadStore(db)
    for i in range(5):
        store.issue(record(f"s{i}", created=T0 + timedelta(minutes=i)), T0, no_limit)
    old = store.created_until(HOST, T0 + timedelta(minutes=2), limit=10)
    assert [r.slot for r in old] == ["s0", "s1", "s2"]
    assert [r.slot for r in store.created_until(HOST, T0 + timedelta(minutes=2), 2)] == \
        ["s0", "s1"]
    assert store.delete(HOST, ["s0", "s1", "unknown"]) == 2
    assert store.get(HOST, "s0") is None and store.get(HOST, "s2") is not None


def test_usage_report(db: Database) -> None:
    store = UploadStore(db)
    store.issue(record("a1", size=100, created=T0 - timedelta(days=2)), T0, no_limit)
    store.issue(record("a2", size=50), T0, no_limit)
    store.complete(HOST, "a2", T0)
    store.issue(record("b1", uploader="romeo@example.com", size=7), T0, no_limit)
    rows = {(r.host, r.uploader): r for r in store.usage(since=T0 - timedelta(days=1))}
    juliet = rows[(HOST, "juliet@example.com")]
    assert (juliet.slots, juliet.files, juliet.bytes, juliet.slots_24h, juliet.bytes_24h) == \
        (2, 1, 150, 1, 50)
    total = rows[(HOST, None)]
    assert (total.slots, total.files, total.bytes, total.slots_24h, total.bytes_24h) == \
        (3, 1, 157, 2, 57)


def test_concurrent_issuers_cannot_exceed_a_quota(db_url: str) -> None:
    # Separate Database objects stand for separate server processes: only the
    # database's own lock keeps them apart.
    quota, size, workers, attempts = 1000, 100, 4, 6
    databases = [Database(db_url) for _ in range(workers)]
    databases[0].migrate()
    barrier = threading.Barrier(workers)
    granted: list[str] = []
    failures: list[BaseException] = []

    def decide(global_bytes: int, _daily: int) -> None:
        if global_bytes + size > quota:
            raise Full()

    def worker(n: int) -> None:
        store = UploadStore(databases[n])
        try:
            barrier.wait(timeout=10)
            for i in range(attempts):
                slot = f"w{n}-{i}"
                try:
                    store.issue(record(slot, size=size), T0, decide)
                except Full:
                    continue
                granted.append(slot)
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not failures
        assert len(granted) == quota // size
        rows = {(r.host, r.uploader): r for r in UploadStore(databases[0]).usage(T0)}
        assert rows[(HOST, None)].bytes == quota
    finally:
        for database in databases:
            database.close()
