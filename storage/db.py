"""Database connection and schema migration for Prosody's `storage`/`sql` options.

Gevent: the server is one gevent process, so a database call that blocks the
OS thread stalls every connection.
- PostgreSQL goes through psycopg 3, which cooperates with gevent by itself
  since 3.1.14 (no psycogreen): when `select` is monkey-patched it waits on
  the socket with the patched `poll`/`select` instead of its C wait loop.
  It decides this when `psycopg` is first imported, so monkey-patching must
  happen before that import (app.py patches first thing); `Database` logs a
  warning when it finds the wrong order. Verified here: four concurrent
  `pg_sleep(0.5)` in four greenlets take 0.5 s, not 2 s.
- The connection pool's wait for a free connection uses `threading`
  primitives, which monkey-patching makes greenlet-aware.
- SQLite calls are short local C calls and do not yield. Hence the rule for
  callers: do no network I/O inside `Database.transaction()`; a greenlet that
  yields while holding SQLite's write lock makes the next writer wait out
  `busy_timeout` with the hub blocked.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from storage.dburl import database_url  # noqa: F401 - the URL helper callers know from here
from storage.schema_head import VERSION_QUERY, is_current

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
# The connection that appends archive batches (Database.bulk_writer). A batch
# touches, per user in it, the last page of each of the archive's three
# indexes; with SQLite's default 2 MiB cache those pages were read back from
# the OS for each batch. And a page is checkpointed into the database once per
# checkpoint however many commits changed it, so checkpointing every 10,000
# WAL pages (~40 MiB) rather than 1000 writes each hot page back 10 times less
# often. Measured on 2 rows a message, 100 users, 4000-row batches: 26 -> 12
# CPU-us a row. Neither changes durability: commits are as synced as before.
SQLITE_BULK_CACHE_KIB = 16384
SQLITE_BULK_CHECKPOINT_PAGES = 10000
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Serialises concurrent `migrate()` calls from several processes on PostgreSQL.
_PG_MIGRATION_LOCK = 0x5649_5245_4F00  # "VIREO\0"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # First, so that switching to WAL waits for another process's lock.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers (web workers, CLI) run while the server writes.
        # The mode sticks to the file; switching needs the file to itself and
        # fails at once, busy_timeout or not, while another connection holds
        # a lock: most likely one that has just switched it. Otherwise the
        # next connection tries again.
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                log.debug("journal_mode left to another connection: %s", exc)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _warn_if_psycopg_blocks() -> None:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("select"):
        return
    from psycopg import waiting

    if waiting.wait is getattr(waiting, "wait_c", None):
        log.warning("psycopg was imported before gevent monkey-patching: "
                    "PostgreSQL calls will block every connection")


class Database:
    """An engine with transactions and migrations for one database URL."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.backend == "sqlite":
            # One file shared by pooled connections handed between greenlets.
            kwargs["connect_args"] = {"check_same_thread": False}
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            # A server restart must not leave dead connections in the pool.
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except ModuleNotFoundError as exc:
            raise RuntimeError(f"the {parsed.drivername} database driver is not installed "
                               f"({exc.name}); install it with pip") from exc
        if self.backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif parsed.drivername == "postgresql+psycopg":
            _warn_if_psycopg_blocks()
        self._compiled: dict[Any, Any] = {}  # fetch_rows' statements, as this dialect says them
        # SQLite's calls run in this thread and never yield, so fetch_rows' reads can
        # share one connection, kept checked out: no pool checkout and reset per read
        # (a third of a read). Other drivers wait on a socket, so each read takes its own.
        self._reader: Any = None
        self._bulk: Any = None
        self._bulk_lock = threading.Lock()  # greenlet-aware once gevent has patched

    def fetch_rows(self, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a SELECT of plain columns (no type conversion), run straight
        on a pooled DBAPI connection: for the hot reads (a FAST login's token)
        that SQLAlchemy's per-execution machinery would cost three times over."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = statement.compile(dialect=self.engine.dialect)
        bound = ([params[name] for name in compiled.positiontup] if compiled.positional
                 else params)
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        try:
            if self.backend == "sqlite":
                if self._reader is None:
                    self._reader = self.engine.raw_connection()
                return _rows(self._reader, compiled.string, bound)
            connection = self.engine.raw_connection()
            try:
                return _rows(connection, compiled.string, bound)
            finally:
                connection.close()  # back to the pool, rolled back
        except dbapi_error as error:
            # As from any other query: a storage failure (counted, answered with
            # its stanza condition), not a bug of ours.
            raise DBAPIError.instance(compiled.string, bound, error, dbapi_error) from error

    @contextmanager
    def bulk_writer(self) -> Iterator[Any]:
        """SQLite's DB-API connection for bulk appends, one user at a time (its
        transactions must not interleave). Kept checked out with a larger cache,
        so the pages that each batch writes stay in it from batch to batch,
        rather than taken from the pool, whose other connections would each
        read them again."""
        with self._bulk_lock:
            if self._bulk is None:
                self._bulk = self.engine.raw_connection()
                cursor = self._bulk.dbapi_connection.cursor()
                try:
                    cursor.execute(f"PRAGMA cache_size=-{SQLITE_BULK_CACHE_KIB}")
                    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_BULK_CHECKPOINT_PAGES}")
                finally:
                    cursor.close()
            yield self._bulk.dbapi_connection

    def transaction(self) -> AbstractContextManager[Connection]:
        """A connection in a transaction that commits when the block ends and
        rolls back on error."""
        return self.engine.begin()

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (a no-op when it is current).

        Safe on every start, also from several processes at once: the whole
        upgrade runs in one transaction that holds a lock (SQLite's write
        lock, a PostgreSQL advisory lock), so the second process waits and
        then finds the schema current.
        """
        with self.engine.connect() as connection:
            if self._schema_is_current(connection):
                return  # the usual start: no Alembic imports, no lock
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with self.engine.connect() as connection:
            if self.backend == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            elif self.backend == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _PG_MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()

    def migrate_in_child(self) -> None:
        """migrate(), with Alembic run in a child process when there is work for
        it (storage.migrate), so that its imports stay out of this one."""
        with self.engine.connect() as connection:
            if self._schema_is_current(connection):
                return
        if self.engine.url.database in (None, "", ":memory:"):
            self.migrate()  # a private in-memory database: no other process can reach it
            return
        from storage.migrate import URL_ENV

        env = {**os.environ, URL_ENV: self.engine.url.render_as_string(hide_password=False)}
        result = subprocess.run([sys.executable, "-m", "storage.migrate"], env=env,
                                cwd=MIGRATIONS_DIR.parent, capture_output=True, text=True,
                                check=False)
        for line in result.stderr.splitlines():
            (log.info if result.returncode == 0 else log.error)("%s", line)
        if result.returncode != 0:
            raise RuntimeError(f"the schema migration failed (exit {result.returncode}); "
                               "the lines above say why")

    @staticmethod
    def _schema_is_current(connection: Connection) -> bool:
        try:
            return is_current(connection.exec_driver_sql(VERSION_QUERY).fetchall())
        except SQLAlchemyError:  # no alembic_version table: never migrated
            return False
        finally:
            connection.rollback()

    def close(self) -> None:
        """Close every pooled connection."""
        for kept in ("_reader", "_bulk"):
            connection = getattr(self, kept)
            if connection is not None:
                connection.close()
                setattr(self, kept, None)
        self.engine.dispose()


def _rows(connection: Any, sql: str, bound: Any) -> list[tuple[Any, ...]]:
    cursor = connection.cursor()
    try:
        cursor.execute(sql, bound)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


class _UpgradesOnly(logging.Filter):
    """alembic names its dialect at info on every start and admin command;
    keep only the lines about upgrades it actually runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


logging.getLogger("alembic.runtime.migration").addFilter(_UpgradesOnly())


def is_storage_error(error: BaseException) -> bool:
    """Whether `error` is a failure of the database rather than of our own code."""
    return isinstance(error, SQLAlchemyError)


_SQLITE_FULL = 13
_PG_INSUFFICIENT_RESOURCES = "53"  # SQLSTATE class: disk full, out of memory, too many connections


def storage_error_condition(error: BaseException) -> str:
    """The stanza error for a failed storage call: resource-constraint when the
    database is out of room (disk full), internal-server-error otherwise."""
    cause = getattr(error, "orig", None)
    if isinstance(cause, sqlite3.Error) and \
            (getattr(cause, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_FULL:
        return "resource-constraint"
    if str(getattr(cause, "sqlstate", "") or "").startswith(_PG_INSUFFICIENT_RESOURCES):
        return "resource-constraint"
    return "internal-server-error"
