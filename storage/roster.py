"""Roster storage (RFC 6121): items, groups, pending inbound requests, versions (XEP-0237)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update

from storage.db import Database
from storage.models import (
    SUBSCRIPTIONS,
    roster_groups,
    roster_items,
    roster_pending,
    roster_versions,
)
from xmpp.jid import nodeprep


@dataclass
class RosterItem:
    """A contact as the roster module sees it."""

    jid: str                      # bare JID of the contact
    name: str | None = None
    subscription: str = "none"    # none | to | from | both
    ask: bool = False             # pending outbound subscription ("Pending Out")
    groups: list[str] = field(default_factory=list)
    approved: bool = False        # subscription pre-approved (RFC 6121 3.4)


@dataclass
class ContactRecord:
    """One contact as a roster stores it, to change in RosterStore.contact_for_update."""

    item: RosterItem | None       # None: the contact is not in the roster
    pending_in: bool              # a subscription request from the contact awaits an answer
    request: str | None = None    # the request's stanza XML, kept when one is recorded
    version: int = 0              # the roster version once the change is written


@dataclass
class _StoredEntry:
    """A roster item as stored, with the id of its row (its groups' key)."""

    id: int
    item: RosterItem


def _upsert(connection: Connection, table: Table, keys: dict[str, Any],
            values: dict[str, Any], on_conflict: dict[str, Any] | None = None) -> None:
    """Insert keys + values, or apply `on_conflict` (default: values) to the row with those keys.

    One statement, so two writers cannot both find no row and both insert.
    `keys` must be the columns of a unique index.
    """
    dialect = connection.dialect.name
    changes = values if on_conflict is None else on_conflict
    # The dialect in use only: each package loads all its drivers' dialects.
    if dialect == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        statement = mysql_insert(table).values({**keys, **values}) \
            .on_duplicate_key_update(changes)
    else:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(table).values({**keys, **values}).on_conflict_do_update(
            index_elements=list(keys), set_=changes)
    connection.execute(statement)


_VERSION = select(roster_versions.c.version).where(
    roster_versions.c.host == bindparam("host"),
    roster_versions.c.username == bindparam("username"))
# Every initial presence reads the roster and the pending requests: prebuilt
# statements run on a pooled DB-API connection (Database.fetch_rows), each
# item with its groups in one row per group, ordered as the unique index reads.
_ROSTER_ROWS = select(
    roster_items.c.contact, roster_items.c.name, roster_items.c.subscription,
    roster_items.c.ask, roster_items.c.approved, roster_groups.c.name,
).outerjoin(roster_groups, roster_groups.c.item_id == roster_items.c.id).where(
    roster_items.c.host == bindparam("host"), roster_items.c.username == bindparam("username"),
).order_by(roster_items.c.contact, roster_groups.c.name)
_PENDING_ROWS = select(roster_pending.c.contact, roster_pending.c.stanza).where(
    roster_pending.c.host == bindparam("host"),
    roster_pending.c.username == bindparam("username"))


def _lock_roster(connection: Connection, host: str, username: str) -> None:
    """Hold the user's roster until the transaction ends: its version row, written
    unchanged (made at 0 for a roster never changed). A second writer's statement
    waits for the first to commit (a row lock; SQLite's write lock) and then reads
    what the first wrote."""
    _upsert(connection, roster_versions, {"host": host, "username": username},
            {"version": 0}, {"version": roster_versions.c.version})


def _bump_version(connection: Connection, host: str, username: str) -> None:
    _upsert(connection, roster_versions, {"host": host, "username": username},
            {"version": 1}, {"version": roster_versions.c.version + 1})


def _copied(item: RosterItem | None) -> RosterItem | None:
    return None if item is None else replace(item, groups=list(item.groups))


def _read_entry(connection: Connection, host: str, user: str,
                contact: str) -> _StoredEntry | None:
    row = connection.execute(select(
        roster_items.c.id, roster_items.c.contact, roster_items.c.name,
        roster_items.c.subscription, roster_items.c.ask, roster_items.c.approved).where(
        roster_items.c.host == host, roster_items.c.username == user,
        roster_items.c.contact == contact)).first()
    if row is None:
        return None
    groups = connection.scalars(select(roster_groups.c.name).where(
        roster_groups.c.item_id == row.id).order_by(roster_groups.c.name))
    return _StoredEntry(row.id, RosterItem(row.contact, row.name, row.subscription, row.ask,
                                           list(groups), row.approved))


def _write_entry(connection: Connection, host: str, user: str, contact: str,
                 entry: _StoredEntry | None, item: RosterItem | None) -> None:
    """Make the stored entry (None: none yet) what `item` says (None: no entry)."""
    if item is None:
        if entry is not None:
            connection.execute(delete(roster_groups).where(roster_groups.c.item_id == entry.id))
            connection.execute(delete(roster_items).where(roster_items.c.id == entry.id))
        return
    if item.subscription not in SUBSCRIPTIONS:
        raise ValueError(f"bad subscription state {item.subscription!r}")
    values = {"name": item.name, "subscription": item.subscription, "ask": item.ask,
              "approved": item.approved}
    if entry is None:
        item_id = connection.execute(insert(roster_items).values(
            host=host, username=user, contact=contact, **values)).inserted_primary_key[0]
        have: set[str] = set()
    else:
        item_id = entry.id
        connection.execute(update(roster_items).where(roster_items.c.id == item_id)
                           .values(**values))
        have = set(entry.item.groups)
    wanted = set(item.groups)
    if have - wanted:
        connection.execute(delete(roster_groups).where(
            roster_groups.c.item_id == item_id, roster_groups.c.name.in_(have - wanted)))
    if wanted - have:
        connection.execute(insert(roster_groups), [{"item_id": item_id, "name": name}
                                                   for name in sorted(wanted - have)])


class RosterStore:
    """Rosters of local users, keyed by host and (nodeprepped) username.

    Contacts are bare JIDs as the caller normalised them (parse_jid).
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def get_roster(self, host: str, username: str) -> dict[str, RosterItem]:
        """Every item of the roster, by contact JID."""
        items: dict[str, RosterItem] = {}
        for contact, name, subscription, ask, approved, group in self._db.fetch_rows(
                _ROSTER_ROWS, {"host": host, "username": nodeprep(username)}):
            item = items.get(contact)
            if item is None:
                # Raw rows: a Boolean column comes back as 0/1 from SQLite and MySQL.
                item = items[contact] = RosterItem(contact, name, subscription, bool(ask), [],
                                                   bool(approved))
            if group is not None:
                item.groups.append(group)
        return items

    def get_item(self, host: str, username: str, contact: str) -> RosterItem | None:
        """One item, or None when the contact is not in the roster."""
        with self._db.engine.connect() as connection:
            entry = _read_entry(connection, host, nodeprep(username), contact)
        return entry.item if entry is not None else None

    def put_item(self, host: str, username: str, item: RosterItem) -> None:
        """Insert or replace an item with its groups; a change bumps the roster version."""
        with self.contact_for_update(host, username, item.jid) as record:
            record.item = item

    def remove_item(self, host: str, username: str, contact: str) -> bool:
        """Remove an item; False when it was not there (the version is then unchanged)."""
        with self.contact_for_update(host, username, contact) as record:
            found = record.item is not None
            record.item = None
        return found

    @contextmanager
    def contact_for_update(self, host: str, username: str,
                           contact: str) -> Iterator[ContactRecord]:
        """The contact's record, to change in the block; written when it ends, in
        one transaction that holds the user's roster from before the read: a
        concurrent change of the roster (a stanza another greenlet or node
        handles) waits and then starts from this one's result, where two
        separate reads and writes would have the later undo the earlier.
        A changed item bumps the version; `record.version` is then the version
        this change made (the current one when the item did not change), for
        the roster push. No network I/O in the block (see storage.db)."""
        user = nodeprep(username)
        with self._db.transaction() as connection:
            _lock_roster(connection, host, user)
            entry = _read_entry(connection, host, user, contact)
            stored = entry.item if entry is not None else None
            pending = connection.scalar(select(roster_pending.c.id).where(
                roster_pending.c.host == host, roster_pending.c.username == user,
                roster_pending.c.contact == contact)) is not None
            record = ContactRecord(_copied(stored), pending)
            yield record
            if record.item != stored:
                _write_entry(connection, host, user, contact, entry, record.item)
                _bump_version(connection, host, user)
            if record.pending_in and not pending:
                _upsert(connection, roster_pending, {"host": host, "username": user,
                                                     "contact": contact},
                        {"stanza": record.request})
            elif pending and not record.pending_in:
                connection.execute(delete(roster_pending).where(
                    roster_pending.c.host == host, roster_pending.c.username == user,
                    roster_pending.c.contact == contact))
            record.version = connection.scalar(_VERSION, {"host": host, "username": user}) or 0

    def pending_in(self, host: str, username: str) -> dict[str, str | None]:
        """Inbound subscription requests awaiting an answer: contact -> subscribe stanza XML."""
        return dict(self._db.fetch_rows(_PENDING_ROWS,
                                        {"host": host, "username": nodeprep(username)}))

    def set_pending_in(self, host: str, username: str, contact: str,
                       stanza_xml: str | None) -> None:
        """Record (or replace) an inbound subscription request."""
        keys = {"host": host, "username": nodeprep(username), "contact": contact}
        with self._db.transaction() as connection:
            _upsert(connection, roster_pending, keys, {"stanza": stanza_xml})

    def clear_pending_in(self, host: str, username: str, contact: str) -> bool:
        """Drop an inbound subscription request; False when there was none."""
        with self._db.transaction() as connection:
            return connection.execute(delete(roster_pending).where(
                roster_pending.c.host == host, roster_pending.c.username == nodeprep(username),
                roster_pending.c.contact == contact)).rowcount > 0

    def version(self, host: str, username: str) -> int:
        """The roster version: 0 for a roster never changed, then +1 per item change.

        Pending inbound requests are not roster items and leave it alone.
        """
        # A prebuilt statement on a pooled DB-API connection (Database.fetch_rows): every
        # roster get and PEP publish reads it, and SQLAlchemy's per-execution machinery
        # was most of a roster get (0.47 ms of handling, 0.10-0.20 with this).
        rows = self._db.fetch_rows(_VERSION, {"host": host, "username": nodeprep(username)})
        return (rows[0][0] if rows else None) or 0
