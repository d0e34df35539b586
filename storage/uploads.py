"""Upload slots of XEP-0363 HTTP file sharing: the rows behind quotas, downloads and expiry.

Quotas are SQL sums over these rows: the bytes of every slot of a service
(global) and of one uploader's slots issued in the last 24 hours (daily). A
slot is charged when issued, whether or not its file ever arrives.

Race-free slot issuing: `issue` reads the sums, lets the caller decide
(`Policy.check_usage`), and inserts the row in one transaction that holds a
lock serialising every issuer of the same database: SQLite's write lock
(BEGIN IMMEDIATE, taken before the sums are read, so no other process or
connection can insert in between) or, on PostgreSQL, a transaction-scoped
advisory lock per service host (plain READ COMMITTED reads would let two
transactions see the same old sums). Other backends get a per-process lock
only. The decision is pure and quick, so the lock is held for three short
statements.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, case, delete, func, insert, select, text, update

from storage.db import Database
from storage.models import uploads

# Bound on bound parameters per DELETE (SQLite and drivers have limits).
DELETE_BATCH = 500


@dataclass(frozen=True)
class UploadRecord:
    """One slot as stored."""

    slot: str
    host: str
    uploader: str
    filename: str
    size: int
    content_type: str
    created: datetime
    completed: datetime | None
    path: str | None


@dataclass(frozen=True)
class UsageRow:
    """Usage of one uploader (or of a whole host when `uploader` is None)."""

    host: str
    uploader: str | None
    slots: int
    files: int
    bytes: int
    slots_24h: int
    bytes_24h: int


def _record(row) -> UploadRecord:
    return UploadRecord(row.slot, row.host, row.uploader, row.filename, int(row.size),
                        row.content_type, row.created, row.completed, row.path)


def _advisory_key(host: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock, stable across processes."""
    digest = hashlib.blake2b(f"vireo-uploads:{host}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class UploadStore:
    """Upload slots on one database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._process_lock = threading.Lock()

    # -- issuing -----------------------------------------------------------------

    @contextmanager
    def _locked(self, host: str) -> Iterator[Connection]:
        with self._process_lock, self._db.engine.connect() as connection:
            if self._db.backend == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            elif self._db.backend == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _advisory_key(host)})
            yield connection
            connection.commit()

    @staticmethod
    def _sum(connection: Connection, *where) -> int:
        total = connection.scalar(select(func.coalesce(func.sum(uploads.c.size), 0)).where(*where))
        return int(total or 0)

    def issue(self, record: UploadRecord, daily_since: datetime,
              decide: Callable[[int, int], None]) -> None:
        """Insert `record` unless `decide(global_bytes, daily_bytes)` raises.

        global_bytes is what the service's slots already hold, daily_bytes what
        the uploader's slots created at or after `daily_since` hold. Whatever
        `decide` raises propagates and nothing is stored.
        """
        with self._locked(record.host) as connection:
            global_bytes = self._sum(connection, uploads.c.host == record.host)
            daily_bytes = self._sum(connection, uploads.c.host == record.host,
                                    uploads.c.uploader == record.uploader,
                                    uploads.c.created >= daily_since)
            decide(global_bytes, daily_bytes)
            connection.execute(insert(uploads).values(
                slot=record.slot, host=record.host, uploader=record.uploader,
                filename=record.filename, size=record.size, content_type=record.content_type,
                created=record.created, completed=record.completed, path=record.path))

    # -- files ----------------------------------------------------------------------

    def get(self, host: str, slot: str) -> UploadRecord | None:
        """The slot `slot` of service `host`, or None."""
        with self._db.engine.connect() as connection:
            row = connection.execute(select(uploads).where(
                uploads.c.host == host, uploads.c.slot == slot)).first()
        return _record(row) if row is not None else None

    def complete(self, host: str, slot: str, when: datetime) -> bool:
        """Mark the slot's file as stored; False when it already was (or is gone)."""
        with self._db.transaction() as connection:
            result = connection.execute(update(uploads).where(
                uploads.c.host == host, uploads.c.slot == slot, uploads.c.completed.is_(None))
                .values(completed=when))
            return result.rowcount == 1

    def incomplete(self, host: str) -> list[UploadRecord]:
        """The slots of `host` whose file never completed."""
        with self._db.engine.connect() as connection:
            rows = connection.execute(select(uploads).where(
                uploads.c.host == host, uploads.c.completed.is_(None))).all()
        return [_record(row) for row in rows]

    def created_until(self, host: str, until: datetime, limit: int) -> list[UploadRecord]:
        """Up to `limit` slots of `host` created at or before `until`, oldest first."""
        with self._db.engine.connect() as connection:
            rows = connection.execute(
                select(uploads).where(uploads.c.host == host, uploads.c.created <= until)
                .order_by(uploads.c.created, uploads.c.id).limit(limit)).all()
        return [_record(row) for row in rows]

    def delete(self, host: str, slots: list[str]) -> int:
        """Remove these slots of `host`; the number removed."""
        removed = 0
        with self._db.transaction() as connection:
            for start in range(0, len(slots), DELETE_BATCH):
                result = connection.execute(delete(uploads).where(
                    uploads.c.host == host, uploads.c.slot.in_(slots[start:start + DELETE_BATCH])))
                removed += result.rowcount
        return removed

    # -- reporting ------------------------------------------------------------------

    def usage(self, since: datetime) -> list[UsageRow]:
        """Usage per (host, uploader), then per host (uploader None); `since` starts "24 h"."""
        recent = uploads.c.created >= since
        columns = (
            func.count(),
            func.count(uploads.c.completed),
            func.coalesce(func.sum(uploads.c.size), 0),
            func.coalesce(func.sum(case((recent, 1), else_=0)), 0),
            func.coalesce(func.sum(case((recent, uploads.c.size), else_=0)), 0),
        )
        with self._db.engine.connect() as connection:
            per_user = connection.execute(
                select(uploads.c.host, uploads.c.uploader, *columns)
                .group_by(uploads.c.host, uploads.c.uploader)
                .order_by(uploads.c.host, uploads.c.uploader)).all()
            per_host = connection.execute(
                select(uploads.c.host, *columns).group_by(uploads.c.host)
                .order_by(uploads.c.host)).all()
        rows = [UsageRow(r[0], r[1], *(int(v) for v in r[2:])) for r in per_user]
        rows += [UsageRow(r[0], None, *(int(v) for v in r[1:])) for r in per_host]
        return rows
