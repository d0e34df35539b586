"""The archive writer: a bounded queue, batches from a worker greenlet, retries."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import gevent
import pytest
from gevent.event import Event

from storage.stores import ArchiveEntry
from xmpp import archive_writer
from xmpp.archive_writer import ArchiveWriter

WHEN = datetime(2026, 12, 1, tzinfo=UTC)
log = logging.getLogger("test")


class FakeStore:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failures = 0  # the next calls that raise
        self.poison: set[str] = set()  # keys refused for ever

    def append_many(self, entries: list[ArchiveEntry], run_blocking=None) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("database unavailable")
        if any(entry.key in self.poison for entry in entries):
            raise ValueError("refused")
        self.batches.append([entry.key for entry in entries])

    @property
    def keys(self) -> list[str]:
        return [key for batch in self.batches for key in batch]


def entry(n: int, user: str = "alice") -> ArchiveEntry:
    return ArchiveEntry(user, {"n": n}, WHEN, "bob@example.org", key=f"k{n}")


def settle(writer: ArchiveWriter, rounds: int = 200) -> None:
    for _ in range(rounds):
        if not len(writer):
            return
        gevent.sleep(0.01)


def test_items_are_written_in_order_in_batches_by_the_worker() -> None:
    store = FakeStore()
    writer = ArchiveWriter(store, log, batch_size=4)
    for n in range(10):
        assert writer.offer(entry(n))
    assert store.batches == []  # nothing written in the offering greenlet
    settle(writer)
    assert store.keys == [f"k{n}" for n in range(10)]
    assert [len(batch) for batch in store.batches] == [4, 4, 2]
    writer.stop()


def test_a_full_queue_refuses_at_once() -> None:
    store = FakeStore()
    writer = ArchiveWriter(store, log, capacity=3)
    assert [writer.offer(entry(n)) for n in range(5)] == [True, True, True, False, False]
    assert writer.refused == 2
    writer.flush()
    assert store.keys == ["k0", "k1", "k2"]
    assert writer.offer(entry(9))
    writer.stop()
    assert store.keys[-1] == "k9"


def test_failures_are_retried_and_a_bad_item_is_dropped_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_writer, "FIRST_RETRY_DELAY", 0.001)
    store = FakeStore()
    store.failures = 2
    writer = ArchiveWriter(store, log)
    for n in range(3):
        writer.offer(entry(n))
    settle(writer)
    assert store.keys == ["k0", "k1", "k2"]
    store.poison = {"k4"}
    for n in range(3, 6):
        writer.offer(entry(n))
    settle(writer)
    assert store.keys == ["k0", "k1", "k2", "k3", "k5"]
    writer.stop()


def test_a_deleted_users_queued_items_are_forgotten() -> None:
    store = FakeStore()
    writer = ArchiveWriter(store, log)
    writer.offer(entry(1, "alice"))
    writer.offer(entry(2, "gone"))
    writer.discard("gone")
    writer.stop()
    assert store.keys == ["k1"]
    assert not writer.offer(entry(3)), "nothing is archived once stopped"


class SlowStore(FakeStore):
    """A database whose batches take a while, in a thread (as SQLite's do)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = Event()

    def append_many(self, entries: list[ArchiveEntry], run_blocking=None) -> None:
        keys = [entry.key for entry in entries]
        if set(keys) & set(self.keys):
            raise ValueError("UNIQUE constraint failed")
        self.writing.set()

        def commit() -> None:  # in the thread: committed even if its caller is killed
            time.sleep(0.05)
            self.batches.append(keys)
        gevent.get_hub().threadpool.apply(commit)


def test_stopping_while_a_batch_is_written_writes_everything_once() -> None:
    store = SlowStore()
    writer = ArchiveWriter(store, log, batch_size=4, gather_delay=0)
    for n in range(10):
        writer.offer(entry(n))
    assert store.writing.wait(5)
    writer.stop()  # at shutdown, with the worker inside its first batch
    assert store.keys == [f"k{n}" for n in range(10)]
