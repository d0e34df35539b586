"""One account's data as a whole, moved in or out in one transaction.

What imports (Prosody's data files, XEP-0227) build and what export reads:
the account's SCRAM material, roster, offline messages and the module stores
(keyval, map, archive) by name. `write_user` stores it all or nothing, and
never over an account or data that exists already, so running an import
twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, exists, insert, select

from storage.db import Database
from storage.models import (
    SUBSCRIPTIONS,
    accounts,
    archive,
    keyval,
    offline_messages,
    roster_groups,
    roster_items,
    roster_pending,
    roster_versions,
)
from storage.roster import RosterItem
from storage.stores import KEYVAL_KEY, ArchiveRecord, decode, encode


@dataclass
class ScramMaterial:
    """An account's credentials: SHA-1 always, SHA-256 when known."""

    salt: bytes
    iterations: int
    sha1_stored_key: bytes
    sha1_server_key: bytes
    sha256_stored_key: bytes | None = None
    sha256_server_key: bytes | None = None


@dataclass
class UserData:
    """Everything of one user of one host. `material` is None for data that
    belongs to no account (a MUC room's, a host's own under username "")."""

    host: str
    username: str
    material: ScramMaterial | None = None
    roster: list[RosterItem] = field(default_factory=list)
    pending_in: dict[str, str | None] = field(default_factory=dict)
    roster_version: int | None = None
    offline: list[tuple[str, datetime]] = field(default_factory=list)
    keyval: dict[str, Any] = field(default_factory=dict)
    maps: dict[str, dict[str, Any]] = field(default_factory=dict)
    archives: dict[str, list[ArchiveRecord]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """What there is, by kind, for reports."""
        counts = {"roster items": len(self.roster), "offline messages": len(self.offline)}
        for name in self.keyval:
            counts[name] = 1
        for name, values in self.maps.items():
            counts[name] = len(values)
        for name, records in self.archives.items():
            counts[name] = len(records)
        return {kind: count for kind, count in counts.items() if count}


def present(db: Database, host: str, username: str) -> bool:
    """Whether the account, or any module data of (host, username), exists already."""
    with db.engine.connect() as connection:
        return _present(connection, host, username)


def _present(connection: Connection, host: str, username: str) -> bool:
    return any(connection.scalar(select(exists().where(table.c.host == host,
                                                       table.c.username == username)))
               for table in (accounts, keyval, archive, roster_items))


def _insert_rows(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if rows:  # an empty parameter list would run the INSERT once, with none
        connection.execute(insert(table), rows)


def write_user(db: Database, data: UserData) -> bool:
    """Store all of `data` in one transaction; False (nothing written) when the
    account or data of that user is there already."""
    for item in data.roster:
        if item.subscription not in SUBSCRIPTIONS:
            raise ValueError(f"roster item {item.jid}: bad subscription {item.subscription!r}")
    host, user = data.host, data.username
    owner = {"host": host, "username": user}
    with db.transaction() as connection:
        if _present(connection, host, user):
            return False
        if data.material is not None:
            connection.execute(insert(accounts).values(**owner, **vars(data.material)))
        if data.roster:
            # Bulk statements: an account may bring thousands of contacts.
            ids = dict(connection.execute(
                insert(roster_items).returning(roster_items.c.contact, roster_items.c.id),
                [{**owner, "contact": item.jid, "name": item.name,
                  "subscription": item.subscription, "ask": item.ask}
                 for item in data.roster]).tuples().all())
            _insert_rows(connection, roster_groups,
                         [{"item_id": ids[item.jid], "name": name}
                          for item in data.roster for name in sorted(set(item.groups))])
        _insert_rows(connection, roster_pending,
                     [{**owner, "contact": contact, "stanza": stanza}
                      for contact, stanza in data.pending_in.items()])
        if data.roster_version:
            connection.execute(insert(roster_versions).values(**owner,
                                                              version=data.roster_version))
        _insert_rows(connection, offline_messages,
                     [{**owner, "stanza": xml, "stamp": stamp} for xml, stamp in data.offline])
        values = {(name, KEYVAL_KEY): value for name, value in data.keyval.items()}
        values.update({(name, key): value for name, keys in data.maps.items()
                       for key, value in keys.items()})
        _insert_rows(connection, keyval,
                     [{**owner, "store": name, "key": key, "type": kind, "value": text}
                      for (name, key), value in values.items()
                      for kind, text in (encode(value),)])
        _insert_rows(connection, archive,
                     [{**owner, "store": name, "key": record.key, "when": record.when,
                       "with": record.with_, "type": kind, "value": text}
                      for name, records in data.archives.items() for record in records
                      for kind, text in (encode(record.value),)])
    return True


def _roster(connection: Connection, host: str, username: str) -> list[RosterItem]:
    """The roster's items in the order they were added, each with its groups
    (one row per group)."""
    items: dict[int, RosterItem] = {}
    for item_id, contact, name, subscription, ask, group in connection.execute(select(
            roster_items.c.id, roster_items.c.contact, roster_items.c.name,
            roster_items.c.subscription, roster_items.c.ask, roster_groups.c.name)
            .outerjoin(roster_groups, roster_groups.c.item_id == roster_items.c.id)
            .where(roster_items.c.host == host, roster_items.c.username == username)
            .order_by(roster_items.c.id, roster_groups.c.name)):
        item = items.get(item_id)
        if item is None:
            item = items[item_id] = RosterItem(contact, name, subscription, ask)
        if group is not None:
            item.groups.append(group)
    return list(items.values())


def read_user(db: Database, host: str, username: str) -> UserData:
    """Everything stored for (host, username), for export."""
    data = UserData(host, username)
    with db.engine.connect() as connection:
        account = connection.execute(select(accounts).where(
            accounts.c.host == host, accounts.c.username == username)).first()
        if account is not None:
            data.material = ScramMaterial(
                account.salt, account.iterations, account.sha1_stored_key,
                account.sha1_server_key, account.sha256_stored_key, account.sha256_server_key)
        data.roster = _roster(connection, host, username)
        data.pending_in = {contact: stanza for contact, stanza in connection.execute(select(
            roster_pending.c.contact, roster_pending.c.stanza).where(
            roster_pending.c.host == host, roster_pending.c.username == username))}
        data.roster_version = connection.scalar(select(roster_versions.c.version).where(
            roster_versions.c.host == host, roster_versions.c.username == username))
        data.offline = list(connection.execute(select(
            offline_messages.c.stanza, offline_messages.c.stamp).where(
            offline_messages.c.host == host, offline_messages.c.username == username)
            .order_by(offline_messages.c.id)).tuples())
        for name, key, kind, text in connection.execute(select(
                keyval.c.store, keyval.c.key, keyval.c.type, keyval.c.value).where(
                keyval.c.host == host, keyval.c.username == username)):
            if key == KEYVAL_KEY:
                data.keyval[name] = decode(kind, text)
            else:
                data.maps.setdefault(name, {})[key] = decode(kind, text)
        for name, key, when, with_, kind, text in connection.execute(select(
                archive.c.store, archive.c.key, archive.c.when, archive.c["with"],
                archive.c.type, archive.c.value).where(
                archive.c.host == host, archive.c.username == username)
                .order_by(archive.c.id)):
            data.archives.setdefault(name, []).append(
                ArchiveRecord(key, when, with_, decode(kind, text)))
    return data


def owners(db: Database, host: str) -> list[str]:
    """Every username of a host with an account or module data, sorted."""
    with db.engine.connect() as connection:
        names: set[str] = set()
        for table in (accounts, keyval, archive):
            names.update(connection.scalars(select(table.c.username).distinct()
                                            .where(table.c.host == host)))
        return sorted(names)
