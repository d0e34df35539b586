"""Roster storage (RFC 6121): items, groups, pending inbound requests, versions (XEP-0237)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from storage.db import Database
from storage.models import (
    SUBSCRIPTIONS,
    Base,
    RosterEntry,
    RosterGroup,
    RosterPending,
    RosterVersion,
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


def _to_item(entry: RosterEntry) -> RosterItem:
    return RosterItem(entry.contact, entry.name, entry.subscription, entry.ask,
                      [group.name for group in entry.groups], entry.approved)


def _upsert(session: Session, model: type[Base], keys: dict[str, Any],
            values: dict[str, Any], update: dict[str, Any] | None = None) -> None:
    """Insert keys + values, or apply `update` (default: values) to the row with those keys.

    One statement, so two writers cannot both find no row and both insert.
    `keys` must be the columns of a unique index.
    """
    dialect = session.get_bind().dialect.name
    update = values if update is None else update
    # The dialect in use only: each package loads all its drivers' dialects.
    if dialect == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        statement = mysql_insert(model).values({**keys, **values}) \
            .on_duplicate_key_update(update)
    else:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = insert(model).values({**keys, **values}).on_conflict_do_update(
            index_elements=list(keys), set_=update)
    session.execute(statement)


_VERSION = select(RosterVersion.version).where(
    RosterVersion.host == bindparam("host"), RosterVersion.username == bindparam("username"))
# Every initial presence reads the roster and the pending requests: prebuilt
# statements run on a pooled DB-API connection (Database.fetch_rows), each
# item with its groups in one row per group, ordered as the unique index reads.
_ROSTER_ROWS = select(
    RosterEntry.contact, RosterEntry.name, RosterEntry.subscription, RosterEntry.ask,
    RosterEntry.approved, RosterGroup.name,
).outerjoin(RosterGroup, RosterGroup.item_id == RosterEntry.id).where(
    RosterEntry.host == bindparam("host"), RosterEntry.username == bindparam("username"),
).order_by(RosterEntry.contact, RosterGroup.name)
_PENDING_ROWS = select(RosterPending.contact, RosterPending.stanza).where(
    RosterPending.host == bindparam("host"), RosterPending.username == bindparam("username"))


def _lock_roster(session: Session, host: str, username: str) -> None:
    """Hold the user's roster until the transaction ends: its version row, written
    unchanged (made at 0 for a roster never changed). A second writer's statement
    waits for the first to commit (a row lock; SQLite's write lock) and then reads
    what the first wrote."""
    _upsert(session, RosterVersion, {"host": host, "username": username},
            {"version": 0}, {"version": RosterVersion.version})


def _bump_version(session: Session, host: str, username: str) -> None:
    _upsert(session, RosterVersion, {"host": host, "username": username},
            {"version": 1}, {"version": RosterVersion.version + 1})


def _copied(item: RosterItem | None) -> RosterItem | None:
    return None if item is None else replace(item, groups=list(item.groups))


def _write_entry(session: Session, host: str, user: str, contact: str,
                 entry: RosterEntry | None, item: RosterItem | None) -> None:
    """Make the stored entry (None: none yet) what `item` says (None: no entry)."""
    if item is None:
        if entry is not None:
            session.delete(entry)
        return
    if item.subscription not in SUBSCRIPTIONS:
        raise ValueError(f"bad subscription state {item.subscription!r}")
    if entry is None:
        entry = RosterEntry(host=host, username=user, contact=contact)
        session.add(entry)
    entry.name = item.name
    entry.subscription = item.subscription
    entry.ask = item.ask
    entry.approved = item.approved
    wanted = set(item.groups)
    kept = [group for group in entry.groups if group.name in wanted]
    have = {group.name for group in kept}
    entry.groups = kept + [RosterGroup(name=name) for name in sorted(wanted - have)]


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
        with self._db.session() as session:
            entry = self._entry(session, host, nodeprep(username), contact)
            return _to_item(entry) if entry is not None else None

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
        with self._db.session() as session:
            _lock_roster(session, host, user)
            entry = self._entry(session, host, user, contact)
            stored = _to_item(entry) if entry is not None else None
            pending = session.scalar(select(RosterPending.id).where(
                RosterPending.host == host, RosterPending.username == user,
                RosterPending.contact == contact)) is not None
            record = ContactRecord(_copied(stored), pending)
            yield record
            if record.item != stored:
                _write_entry(session, host, user, contact, entry, record.item)
                _bump_version(session, host, user)
            if record.pending_in and not pending:
                _upsert(session, RosterPending, {"host": host, "username": user,
                                                 "contact": contact}, {"stanza": record.request})
            elif pending and not record.pending_in:
                session.execute(delete(RosterPending).where(
                    RosterPending.host == host, RosterPending.username == user,
                    RosterPending.contact == contact))
            record.version = session.scalar(_VERSION, {"host": host, "username": user}) or 0

    def pending_in(self, host: str, username: str) -> dict[str, str | None]:
        """Inbound subscription requests awaiting an answer: contact -> subscribe stanza XML."""
        return dict(self._db.fetch_rows(_PENDING_ROWS,
                                        {"host": host, "username": nodeprep(username)}))

    def set_pending_in(self, host: str, username: str, contact: str,
                       stanza_xml: str | None) -> None:
        """Record (or replace) an inbound subscription request."""
        keys = {"host": host, "username": nodeprep(username), "contact": contact}
        with self._db.session() as session:
            _upsert(session, RosterPending, keys, {"stanza": stanza_xml})

    def clear_pending_in(self, host: str, username: str, contact: str) -> bool:
        """Drop an inbound subscription request; False when there was none."""
        with self._db.session() as session:
            return session.execute(delete(RosterPending).where(
                RosterPending.host == host, RosterPending.username == nodeprep(username),
                RosterPending.contact == contact)).rowcount > 0

    def version(self, host: str, username: str) -> int:
        """The roster version: 0 for a roster never changed, then +1 per item change.

        Pending inbound requests are not roster items and leave it alone.
        """
        # A prebuilt statement on a pooled DB-API connection (Database.fetch_rows): every
        # roster get and PEP publish reads it, and SQLAlchemy's per-execution machinery
        # was most of a roster get (0.47 ms of handling, 0.10-0.20 with this).
        rows = self._db.fetch_rows(_VERSION, {"host": host, "username": nodeprep(username)})
        return (rows[0][0] if rows else None) or 0

    @staticmethod
    def _entry(session: Session, host: str, user: str, contact: str) -> RosterEntry | None:
        return session.scalar(select(RosterEntry).where(
            RosterEntry.host == host, RosterEntry.username == user,
            RosterEntry.contact == contact))
