"""The account commands' statements over plain DB-API (sqlite3, psycopg), without SQLAlchemy.

Why: `app.py register` is scripted by operators, and importing SQLAlchemy,
Alembic and the server for one INSERT took most of a second. This path
writes the same rows as storage.accounts.AccountStore (a unit test compares)
and serves only a database whose schema is already current; for anything
else (no database yet, an older schema, MySQL, URL options) `connect`
answers None and the caller takes the SQLAlchemy path, which migrates.
`passwd` always takes the server's path: the host's modules hear of it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from storage.account_material import AccountExists, prep_username, scram_material, stored_username
from storage.dburl import DirectUrl, direct_url
from storage.schema_head import VERSION_QUERY, is_current

# The per-user tables an account's deletion empties (storage.models.PER_USER_TABLES;
# a unit test keeps the two lists equal). roster_groups goes by ON DELETE CASCADE.
PER_USER_TABLES = ("roster_items", "roster_pending", "roster_versions", "offline_messages",
                   "keyval", "archive")
_MATERIAL = ("salt", "iterations", "sha1_stored_key", "sha1_server_key",
             "sha256_stored_key", "sha256_server_key")
SQLITE_BUSY_TIMEOUT_S = 5.0  # as storage.db's busy_timeout


def _sqlite_timestamp(moment: datetime) -> str:
    """A UTC time as SQLAlchemy stores a DateTime on SQLite (naive, microseconds)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class AccountRows:
    """create / delete / exists, as AccountStore answers them."""

    def __init__(self, connection: Any, driver: ModuleType, placeholder: str,
                 timestamp: Callable[[datetime], Any]) -> None:
        self._connection = connection
        self._driver = driver  # the DB-API module, for its exception classes
        self._placeholder = placeholder
        self._timestamp = timestamp

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._connection.execute(sql.replace("?", self._placeholder), params)

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> int:
        """Run the statements in one transaction; the rowcount of the last."""
        cursor = None
        try:
            for sql, params in statements:
                cursor = self._run(sql, params)
            self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise
        return cursor.rowcount if cursor is not None else 0

    def exists(self, host: str, username: str) -> bool:
        user = stored_username(username)
        if user is None:
            return False
        return self._run("SELECT 1 FROM accounts WHERE host = ? AND username = ?",
                         (host, user)).fetchone() is not None

    def create(self, host: str, username: str, password: str) -> None:
        """Add an account; raise AccountExists if taken, InvalidJID for a bad username."""
        user = prep_username(username)
        material = scram_material(password)
        columns = ("host", "username", *_MATERIAL, "created_at")
        values = (host, user, *(material[name] for name in _MATERIAL),
                  self._timestamp(datetime.now(UTC)))
        try:
            self._write([(f"INSERT INTO accounts ({', '.join(columns)}) "
                          f"VALUES ({', '.join('?' * len(columns))})", values)])
        except self._driver.IntegrityError as exc:  # the unique (host, username) index
            raise AccountExists(f"{user}@{host}") from exc

    def delete(self, host: str, username: str) -> bool:
        """Remove the account and the user's per-user rows; whether an account existed."""
        user = stored_username(username)
        if user is None:
            return False
        where = " WHERE host = ? AND username = ?"
        return self._write([(f"DELETE FROM {table}{where}", (host, user))
                            for table in (*PER_USER_TABLES, "accounts")]) > 0

    def schema_is_current(self) -> bool:
        try:
            return is_current(self._run(VERSION_QUERY).fetchall())
        except self._driver.Error:  # no alembic_version table: never migrated
            return False
        finally:
            self._connection.rollback()

    def close(self) -> None:
        self._connection.close()


def _open_sqlite(url: DirectUrl) -> AccountRows | None:
    path = Path(url.database)
    if not path.is_file():
        return None  # created (and migrated) by the SQLAlchemy path
    # A write begins with BEGIN IMMEDIATE: the write lock up front, waited for.
    connection = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True,
                                 timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level="IMMEDIATE")
    # storage.db's pragmas; WAL is already set: it sticks to a migrated file.
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA synchronous=NORMAL")
    return AccountRows(connection, sqlite3, "?", _sqlite_timestamp)


def _open_postgresql(url: DirectUrl) -> AccountRows | None:
    import psycopg  # only now: it costs its import time to SQLite users otherwise

    try:
        connection = psycopg.connect(dbname=url.database, user=url.username,
                                     password=url.password, host=url.host, port=url.port,
                                     **dict(url.parameters))
    except psycopg.Error:
        return None  # the SQLAlchemy path reports it as the server would
    return AccountRows(connection, psycopg, "%s", lambda moment: moment)


def connect(database_url: str) -> AccountRows | None:
    """Account statements on the database, when DB-API alone can serve it: an
    SQLite file or a PostgreSQL database whose schema is current. None otherwise."""
    url = direct_url(database_url)
    if url is None:
        return None
    rows = _open_sqlite(url) if url.backend == "sqlite" else _open_postgresql(url)
    if rows is None:
        return None
    if not rows.schema_is_current():
        rows.close()
        return None
    return rows
