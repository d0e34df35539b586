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

from sqlalchemy import exists, insert, select

from storage.db import Database
from storage.models import (
    SUBSCRIPTIONS,
    Account,
    ArchiveItem,
    KeyValItem,
    OfflineMessage,
    RosterEntry,
    RosterGroup,
    RosterPending,
    RosterVersion,
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
    with db.session() as session:
        return _present(session, host, username)


def _present(session: Any, host: str, username: str) -> bool:
    return any(session.scalar(select(exists().where(model.host == host,
                                                    model.username == username)))
               for model in (Account, KeyValItem, ArchiveItem, RosterEntry))


def write_user(db: Database, data: UserData) -> bool:
    """Store all of `data` in one transaction; False (nothing written) when the
    account or data of that user is there already."""
    for item in data.roster:
        if item.subscription not in SUBSCRIPTIONS:
            raise ValueError(f"roster item {item.jid}: bad subscription {item.subscription!r}")
    host, user = data.host, data.username
    with db.session() as session:
        if _present(session, host, user):
            return False
        if data.material is not None:
            session.add(Account(host=host, username=user, **vars(data.material)))
        if data.roster:
            # Bulk statements: an account may bring thousands of contacts.
            ids = dict(session.execute(
                insert(RosterEntry).returning(RosterEntry.contact, RosterEntry.id),
                [{"host": host, "username": user, "contact": item.jid, "name": item.name,
                  "subscription": item.subscription, "ask": item.ask}
                 for item in data.roster]).tuples().all())
            groups = [{"item_id": ids[item.jid], "name": name}
                      for item in data.roster for name in sorted(set(item.groups))]
            if groups:
                session.execute(insert(RosterGroup), groups)
        session.add_all(RosterPending(host=host, username=user, contact=contact, stanza=stanza)
                        for contact, stanza in data.pending_in.items())
        if data.roster_version:
            session.add(RosterVersion(host=host, username=user, version=data.roster_version))
        session.add_all(OfflineMessage(host=host, username=user, stanza=xml, stamp=stamp)
                        for xml, stamp in data.offline)
        values = {(name, KEYVAL_KEY): value for name, value in data.keyval.items()}
        values.update({(name, key): value for name, keys in data.maps.items()
                       for key, value in keys.items()})
        for (name, key), value in values.items():
            kind, text = encode(value)
            session.add(KeyValItem(host=host, username=user, store=name, key=key,
                                   type=kind, value=text))
        for name, records in data.archives.items():
            for record in records:
                kind, text = encode(record.value)
                session.add(ArchiveItem(host=host, username=user, store=name, key=record.key,
                                        when=record.when, with_=record.with_, type=kind,
                                        value=text))
    return True


def read_user(db: Database, host: str, username: str) -> UserData:
    """Everything stored for (host, username), for export."""
    data = UserData(host, username)
    with db.session() as session:
        account = session.scalar(select(Account).where(Account.host == host,
                                                       Account.username == username))
        if account is not None:
            data.material = ScramMaterial(
                account.salt, account.iterations, account.sha1_stored_key,
                account.sha1_server_key, account.sha256_stored_key, account.sha256_server_key)
        for entry in session.scalars(select(RosterEntry).where(
                RosterEntry.host == host, RosterEntry.username == username)
                .order_by(RosterEntry.id)):
            data.roster.append(RosterItem(entry.contact, entry.name, entry.subscription,
                                          entry.ask, [group.name for group in entry.groups]))
        data.pending_in = {contact: stanza for contact, stanza in session.execute(select(
            RosterPending.contact, RosterPending.stanza).where(
            RosterPending.host == host, RosterPending.username == username))}
        data.roster_version = session.scalar(select(RosterVersion.version).where(
            RosterVersion.host == host, RosterVersion.username == username))
        data.offline = list(session.execute(select(
            OfflineMessage.stanza, OfflineMessage.stamp).where(
            OfflineMessage.host == host, OfflineMessage.username == username)
            .order_by(OfflineMessage.id)).tuples())
        for name, key, kind, text in session.execute(select(
                KeyValItem.store, KeyValItem.key, KeyValItem.type, KeyValItem.value).where(
                KeyValItem.host == host, KeyValItem.username == username)):
            if key == KEYVAL_KEY:
                data.keyval[name] = decode(kind, text)
            else:
                data.maps.setdefault(name, {})[key] = decode(kind, text)
        for name, key, when, with_, kind, text in session.execute(select(
                ArchiveItem.store, ArchiveItem.key, ArchiveItem.when, ArchiveItem.with_,
                ArchiveItem.type, ArchiveItem.value).where(
                ArchiveItem.host == host, ArchiveItem.username == username)
                .order_by(ArchiveItem.id)):
            data.archives.setdefault(name, []).append(
                ArchiveRecord(key, when, with_, decode(kind, text)))
    return data


def owners(db: Database, host: str) -> list[str]:
    """Every username of a host with an account or module data, sorted."""
    with db.session() as session:
        names: set[str] = set()
        for model in (Account, KeyValItem, ArchiveItem):
            names.update(session.scalars(select(model.username).distinct()
                                         .where(model.host == host)))
        return sorted(names)
