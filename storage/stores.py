"""Module stores with Prosody's shapes (module:open_store): keyval, map and archive.

- keyval: one value per user (`get(user)`, `set(user, value)`), e.g. a vCard;
- map: values per user and key (`get(user, key)`, `set(user, key, value)`),
  e.g. private XML by namespace;
- archive: timestamped items per user, found by time, by the JID they were
  exchanged with and by key, paged by key (`append`, `find`, `delete`), e.g.
  message archives.

A value is JSON-compatible data or one XML element. `user` is a username,
or None for data of the host itself. Every row has plain host, username and
store columns, so operators can report on them with SQL.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from xml.etree.ElementTree import Element, fromstring

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import archive, keyval
from xmpp import namespaces as ns
from xmpp.stanza import serialize, serialized_element

KINDS = ("keyval", "map", "archive")
KEYVAL_KEY = ""


def encode(value: Any) -> tuple[str, str]:
    """(type, text) of a value to store."""
    if isinstance(value, Element):
        return "xml", serialize(value)
    return "json", json.dumps(value, separators=(",", ":"))


def decode(kind: str, text: str) -> Any:
    return _stored_element(text) if kind == "xml" else json.loads(text)


def _stored_element(text: str) -> Element:
    """An element `encode` wrote. The text is the server's own serialisation,
    well-formed and without DTD, so the C parser reads it (several times
    faster than the stream parser, which a MAM page of 50 items notices);
    the wrapper supplies the content namespace the serialiser leaves out."""
    return fromstring(f"<stored xmlns='{ns.CLIENT}'>{text}</stored>")[0]


def _as_sent(kind: str, text: str) -> Any:
    if kind == "xml":
        element = serialized_element(text)
        if element is not None:
            return element
    return decode(kind, text)


class StoreFactory:
    """Opens the stores modules ask for, all on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def open(self, host: str, name: str, kind: str = "keyval") -> Any:
        if kind == "keyval":
            return KeyValStore(self.db, host, name)
        if kind == "map":
            return MapStore(self.db, host, name)
        if kind == "archive":
            return ArchiveStore(self.db, host, name)
        raise ValueError(f"unknown store kind {kind!r}; one of {KINDS}")


# A map's reads, built once: they run on every login of some modules (FAST),
# and a prebuilt statement on a pooled connection skips the per-call statement
# construction and SQLAlchemy's per-execution machinery.
_MAP_ROWS = select(keyval.c.key, keyval.c.type, keyval.c.value).where(
    keyval.c.host == bindparam("host"), keyval.c.username == bindparam("username"),
    keyval.c.store == bindparam("store"))
_MAP_ROW = _MAP_ROWS.where(keyval.c.key == bindparam("key"))
_MAP_DELETE = delete(keyval).where(
    keyval.c.host == bindparam("host"), keyval.c.username == bindparam("username"),
    keyval.c.store == bindparam("store"), keyval.c.key == bindparam("key"))


class _Store:
    def __init__(self, db: Database, host: str, name: str) -> None:
        self.db = db
        self.host = host
        self.name = name

    def _where(self, table: Any, user: str | None) -> tuple[Any, ...]:
        return (table.c.host == self.host, table.c.username == (user or ""),
                table.c.store == self.name)

    def _users(self, table: Table) -> list[str]:
        """Every user with rows of this store in `table`."""
        with self.db.engine.connect() as connection:
            return list(connection.scalars(select(table.c.username).distinct().where(
                table.c.host == self.host, table.c.store == self.name)))


class MapStore(_Store):
    """Values per user and key."""

    def get(self, user: str | None, key: str) -> Any:
        """The value, or None."""
        rows = self._read(_MAP_ROW, user, key=key)
        return decode(*rows[0][1:]) if rows else None

    def get_all(self, user: str | None) -> dict[str, Any]:
        return {key: decode(kind, text) for key, kind, text in self._read(_MAP_ROWS, user)}

    def set(self, user: str | None, key: str, value: Any) -> None:
        """Store `value` under `key`; None removes it."""
        self.set_keys(user, {key: value})

    def set_keys(self, user: str | None, values: dict[str, Any]) -> None:
        """Several keys in one transaction (None values remove their key)."""
        if not values:
            return
        where = self._params(user)
        rows = [{**where, "key": key, "type": kind, "value": text}
                for key, value in values.items() if value is not None
                for kind, text in (encode(value),)]
        with self.db.engine.begin() as connection:
            connection.execute(_MAP_DELETE, [{**where, "key": key} for key in values])
            if rows:
                connection.execute(insert(keyval), rows)

    def add(self, user: str | None, key: str, value: Any) -> bool:
        """Store `value` under `key` unless a value is there already: whether it
        was stored. The unique index decides, so of several processes racing to
        add the same key exactly one wins (e.g. a secret made on first use)."""
        kind, text = encode(value)
        try:
            with self.db.engine.begin() as connection:
                connection.execute(insert(keyval),
                                   [{**self._params(user), "key": key, "type": kind,
                                     "value": text}])
        except IntegrityError:
            return False
        return True

    def _read(self, statement: Any, user: str | None, **params: str) -> list[Any]:
        return self.db.fetch_rows(statement, {**self._params(user), **params})

    def _params(self, user: str | None) -> dict[str, str]:
        """The bound parameters of the prebuilt statements for `user`'s rows."""
        return {"host": self.host, "username": user or "", "store": self.name}

    def users(self) -> list[str]:
        """Every user with data in this store."""
        return self._users(keyval)


class KeyValStore(MapStore):
    """One value per user."""

    def get(self, user: str | None, key: str = KEYVAL_KEY) -> Any:  # type: ignore[override]
        return super().get(user, key)

    def set(self, user: str | None, value: Any, key: str = KEYVAL_KEY) -> None:  # type: ignore[override]
        super().set(user, key, value)


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    key: str
    when: datetime
    with_: str
    value: Any


@dataclass(slots=True)
class ArchiveEntry:
    """An item to append (ArchiveStore.append_many)."""

    user: str | None
    value: Any
    when: datetime
    with_: str = ""
    key: str = field(default_factory=lambda: new_archive_key())


class _KeyMaker:
    """Item keys: 16 URL-safe characters, the time in milliseconds (6 bytes)
    then 6 random bytes. Keys of one moment share their first characters, so
    a batch of appends lands on a few pages of the key index rather than one
    page per row. Randomness is read from the OS and encoded a few kilobytes
    at a time (6 bytes are 8 characters), not per message."""

    def __init__(self) -> None:
        self._millisecond = -1
        self._prefix = ""
        self._random = ""
        self._used = 0

    def __call__(self) -> str:
        millisecond = int(time.time() * 1000)
        if millisecond != self._millisecond:
            self._millisecond = millisecond
            self._prefix = base64.urlsafe_b64encode(millisecond.to_bytes(6, "big")).decode()
        used = self._used
        if used == len(self._random):
            self._random = base64.urlsafe_b64encode(secrets.token_bytes(6 * 1024)).decode()
            used = 0
        self._used = used + 8
        return self._prefix + self._random[used:used + 8]


new_archive_key = _KeyMaker()


# Items are kept and paged in (when, id) order; the indexes end with both.
_ORDER = (archive.c.when, archive.c.id)
# The item an RSM cursor names, in a subquery of the statement paging from it.
_KEYED = archive.alias("keyed")

Keys = str | Sequence[str] | None

# ArchiveStore.replace's statements, built once (a PEP publish runs them).
_DELETE_KEYS = delete(archive).where(
    archive.c.host == bindparam("host"), archive.c.username == bindparam("username"),
    archive.c.store == bindparam("store"),
    archive.c.key.in_(bindparam("keys", expanding=True)))
_INSERT = insert(archive)


class ArchiveStore(_Store):
    """Timestamped items per user, in time order (append order within a timestamp)."""


    def append(self, user: str | None, value: Any, when: datetime, with_: str = "",
               key: str | None = None) -> str:
        """Add an item; returns its key (random unless given)."""
        entry = ArchiveEntry(user, value, when, with_, key or new_archive_key())
        self.append_many([entry])
        return entry.key

    def append_many(self, entries: Iterable[ArchiveEntry],
                    run_blocking: Callable[..., Any] | None = None) -> None:
        """Add items in one transaction, in the order given.

        SQLite works in this process and waits on the disk, holding the OS
        thread; given `run_blocking` (e.g. a thread pool's `apply`), the
        statement and the commit run through it on the bare DB-API connection,
        which releases the GIL, while everything that touches SQLAlchemy's
        pool and caches stays in the calling thread.
        """
        if run_blocking is None or self.db.backend != "sqlite":
            rows = self._rows(entries)
            if not rows:
                return
            with self.db.engine.connect() as connection:
                # One executemany: a statement per row would cost ten times
                # the routing of a message.
                connection.execute(_INSERT, _as_params(rows))
                connection.commit()
            return
        params = self._sqlite_params(entries)
        if not params:
            return
        statement = _sqlite_insert(self.db.engine.dialect)
        with self.db.bulk_writer() as dbapi_connection:
            run_blocking(_insert_rows_and_commit,
                         (dbapi_connection, statement, len(_COLUMNS), params))

    def replace(self, user: str | None, value: Any, when: datetime, key: str,
                drop: Iterable[str] = ()) -> None:
        """Put an item under `key` in place of the one so keyed (if any) and
        remove those keyed in `drop`: one transaction on a plain connection
        (e.g. a PEP publish, which replaces a node's item and evicts the oldest)."""
        rows = self._rows([ArchiveEntry(user, value, when, key=key)])
        with self.db.engine.connect() as connection:
            connection.execute(_DELETE_KEYS, {"host": self.host, "username": user or "",
                                              "store": self.name, "keys": [key, *drop]})
            connection.execute(_INSERT, _as_params(rows))
            connection.commit()

    def _rows(self, entries: Iterable[ArchiveEntry]) -> list[tuple[Any, ...]]:
        """Rows in _COLUMNS order, each distinct value serialised once."""
        encoded: dict[int, tuple[str, str]] = {}
        return [(self.host, entry.user or "", self.name, entry.key, entry.when, entry.with_,
                 *_encode_once(entry.value, encoded)) for entry in entries]

    def _sqlite_params(self, entries: Iterable[ArchiveEntry]) -> list[Any]:
        """_rows' values in one flat list, as sqlite3 binds them (`when` as the
        text SQLAlchemy would store), without _rows' tuple per row."""
        encoded: dict[int, tuple[str, str]] = {}
        host, store = self.host, self.name
        params: list[Any] = []
        for entry in entries:
            params += (host, entry.user or "", store, entry.key,
                       _sqlite_datetime(entry.when), entry.with_,
                       *_encode_once(entry.value, encoded))
        return params

    def find(self, user: str | None, *, start: datetime | None = None,
             end: datetime | None = None, with_: str | None = None,
             after: Keys = None, before: Keys = None,
             ids: Iterable[str] | None = None, limit: int | None = None,
             reverse: bool = False, as_sent: bool = False,
             connection: Connection | None = None) -> list[ArchiveRecord]:
        """Items in order (newest first with `reverse`), filtered by time
        (inclusive), by `with_`, by `ids`, and strictly after every item keyed in
        `after` and before every one in `before` (a key or several); at most
        `limit`. An unknown `after`/`before` key raises KeyError.

        With `as_sent`, stanzas come as SerializedElements, for a caller that
        only sends them on unchanged (a MAM page): no parse, no serialisation.
        `connection` is one from `reading()`, shared with other reads."""
        load = _as_sent if as_sent else decode
        with self._reading(connection) as reader:
            query = select(archive.c.key, archive.c.when, archive.c["with"],
                           archive.c.type, archive.c.value).where(
                *self._filters(user, start, end, with_, after, before, ids))
            query = query.order_by(*(column.desc() for column in _ORDER) if reverse else _ORDER)
            if limit is not None:
                query = query.limit(limit)
            records = [ArchiveRecord(key, when, with_value, load(kind, text))
                       for key, when, with_value, kind, text in reader.execute(query)]
            if not records:
                self._check_keys(reader, user, after, before)
            return records

    def count(self, user: str | None, connection: Connection | None = None,
              **filters: Any) -> int:
        """How many items `find` would give without a limit."""
        with self._reading(connection) as reader:
            total = reader.scalar(select(func.count()).select_from(archive).where(
                *self._filters(user, **filters))) or 0
            if not total:
                self._check_keys(reader, user, filters.get("after"), filters.get("before"))
            return total

    def reading(self) -> AbstractContextManager[Connection]:
        """A connection for several reads (a page's items, then their count),
        taken from the pool once. On a database
        server it runs no transaction, which would cost two more round trips
        (BEGIN, and ROLLBACK when it goes back) on top of the pool's ping."""
        connection = self.db.engine.connect()
        if self.db.backend != "sqlite":
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    def _reading(self, connection: Connection | None) -> AbstractContextManager[Connection]:
        return nullcontext(connection) if connection is not None else self.reading()

    def users(self) -> list[str]:
        """Every user with items in this archive."""
        return self._users(archive)

    def delete(self, user: str | None, *, end: datetime | None = None,
               with_: str | None = None, ids: Iterable[str] | None = None) -> int:
        """Remove items (all of the user's, or those up to `end`, `with_`, `ids`)."""
        with self.db.transaction() as connection:
            return connection.execute(delete(archive).where(*self._filters(
                user, None, end, with_, None, None, ids))).rowcount

    def _filters(self, user: str | None, start: datetime | None = None,
                 end: datetime | None = None, with_: str | None = None,
                 after: Keys = None, before: Keys = None,
                 ids: Iterable[str] | None = None) -> list[Any]:
        where = list(self._where(archive, user))
        if start is not None:
            where.append(archive.c.when >= start)
        if end is not None:
            where.append(archive.c.when <= end)
        if with_ is not None:
            where.append(archive.c["with"] == with_)
        if ids is not None:
            where.append(archive.c.key.in_(list(ids)))
        item = tuple_(*_ORDER)
        for key in _keys(after):
            where.append(item > self._position(user, key))
        for key in _keys(before):
            where.append(item < self._position(user, key))
        return where

    def _position(self, user: str | None, key: str) -> Any:
        """The (when, id) of the item keyed `key`, as a subquery of the statement
        that pages from it: the database seeks the key and then the page in one
        round trip. For an unknown key it is NULL and the statement finds
        nothing; _check_keys then tells why."""
        return select(_KEYED.c.when, _KEYED.c.id).where(
            *self._where(_KEYED, user), _KEYED.c.key == key).scalar_subquery()

    def _check_keys(self, reader: Connection, user: str | None, after: Keys,
                    before: Keys) -> None:
        """KeyError for the first of the cursor keys that no item of `user` has
        (asked only when a statement paging from them found nothing)."""
        keys = [*_keys(after), *_keys(before)]
        if not keys:
            return
        known = set(reader.scalars(select(archive.c.key).where(
            *self._where(archive, user), archive.c.key.in_(keys))))
        for key in keys:
            if key not in known:
                raise KeyError(key)


_COLUMNS = ("host", "username", "store", "key", "when", "with", "type", "value")


def _as_params(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows as Core's executemany parameters."""
    return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]


def _encode_once(value: Any, encoded: dict[int, tuple[str, str]]) -> tuple[str, str]:
    """encode(value), once per object in a batch: a message kept in both its
    sender's and its recipient's archive is one element, serialised once."""
    pair = encoded.get(id(value))
    if pair is None:
        pair = encoded[id(value)] = encode(value)
    return pair


@lru_cache(maxsize=4)
def _sqlite_insert(dialect: Any) -> str:
    """The one-row INSERT of archive items for `dialect`, parameters in
    _COLUMNS order: compiled once, not per batch."""
    compiled = _INSERT.compile(dialect=dialect, column_keys=list(_COLUMNS))
    assert tuple(compiled.positiontup or ()) == _COLUMNS, compiled.positiontup
    return compiled.string


class _SqliteTimes:
    """What SQLAlchemy binds for a UTCDateTime on SQLite: naive UTC as
    'YYYY-MM-DD HH:MM:SS.ffffff' (its DATETIME's storage format). The dialect's
    processors take ~7 us a value; here the text up to the second is made once
    a second (a batch's times are in order) and the microseconds appended."""

    def __init__(self) -> None:
        # One tuple, replaced whole: a thread reading it sees a matching pair.
        self._last: tuple[tuple[int, ...], str] = ((), "")

    def __call__(self, value: datetime) -> str:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        utc = value.astimezone(UTC)
        second = (utc.second, utc.minute, utc.hour, utc.day, utc.month, utc.year)
        last_second, prefix = self._last
        if second != last_second:
            prefix = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} " \
                     f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}."
            self._last = (second, prefix)
        return f"{prefix}{utc.microsecond:06d}"


_sqlite_datetime = _SqliteTimes()


# SQLite's bound on the parameters of one statement (3.32 and later).
_SQLITE_MAX_VARIABLES = 32766


def _insert_rows_and_commit(dbapi_connection: Any, insert_one: str, width: int,
                            params: list[Any]) -> None:
    """Rows of `width` values in as few multi-row INSERTs as SQLite takes.

    Not executemany: sqlite3 releases and takes back the GIL around every row,
    and with routing busy in the main thread each take waits out a switch
    interval (5 ms), so a batch of a few hundred rows took seconds of wall time;
    one statement is one release."""
    head, _, values = insert_one.partition(" VALUES ")
    step = _SQLITE_MAX_VARIABLES // width * width
    try:
        for begin in range(0, len(params), step):
            chunk = params[begin:begin + step]
            dbapi_connection.execute(f"{head} VALUES {', '.join([values] * (len(chunk) // width))}",
                                     chunk)
        dbapi_connection.commit()
    except BaseException:
        dbapi_connection.rollback()
        raise


def _keys(keys: Keys) -> Sequence[str]:
    if keys is None:
        return ()
    return (keys,) if isinstance(keys, str) else keys
