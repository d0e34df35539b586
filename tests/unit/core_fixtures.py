"""A ServerCore on in-memory stores: hosts, modules and router with no database.

The stores keep Prosody's semantics where the core relies on them (nodeprepped
usernames, SCRAM material only, a pending-in list per user) and nothing more.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from storage.accounts import AccountExists
from storage.roster import ContactRecord, RosterItem
from xmpp.config import Config, load_config
from xmpp.core import ServerCore
from xmpp.jid import InvalidJID, nodeprep
from xmpp.scram import SCRAM_HASHES, ScramCredentials, derive, password_matches

ITERATIONS = 4096


class MemoryAccounts:
    """storage.accounts.AccountStore's interface, in a dict (fast PBKDF2 for tests)."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[str, str], dict[str, ScramCredentials]] = {}

    @staticmethod
    def _key(host: str, username: str) -> tuple[str, str] | None:
        try:
            return host, nodeprep(username)
        except InvalidJID:
            return None

    def create(self, host: str, username: str, password: str) -> None:
        key = self._key(host, username)
        if key is None:
            raise InvalidJID(username)
        if key in self.accounts:
            raise AccountExists(f"{key[1]}@{host}")
        self._set(key, password)

    def _set(self, key: tuple[str, str], password: str) -> None:
        salt = os.urandom(16)
        self.accounts[key] = {name: derive(password, name, salt, ITERATIONS)
                              for name in ("sha1", "sha256")}

    def exists(self, host: str, username: str) -> bool:
        return self._key(host, username) in self.accounts

    def delete(self, host: str, username: str) -> bool:
        return self.accounts.pop(self._key(host, username), None) is not None

    def set_password(self, host: str, username: str, password: str) -> bool:
        key = self._key(host, username)
        if key not in self.accounts:
            return False
        self._set(key, password)
        return True

    def users(self, host: str) -> list[str]:
        return sorted(user for h, user in self.accounts if h == host)

    def scram_credentials(self, host: str, username: str,
                          mechanism: str) -> ScramCredentials | None:
        hash_name = SCRAM_HASHES.get(mechanism.removesuffix("-PLUS"))
        if hash_name is None:
            raise ValueError(mechanism)
        material = self.accounts.get(self._key(host, username))
        return None if material is None else material[hash_name]

    def scram_mechanisms(self, host: str) -> frozenset[str]:
        return frozenset(SCRAM_HASHES)

    def check_password(self, host: str, username: str, password: str) -> bool:
        creds = self.scram_credentials(host, username, "SCRAM-SHA-256")
        return creds is not None and password_matches(password, "sha256", creds)


class MemoryRosters:
    """storage.roster.RosterStore's interface, in dicts."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, RosterItem]] = {}
        self.pending: dict[tuple[str, str], dict[str, str | None]] = {}
        self.versions: dict[tuple[str, str], int] = {}

    def get_roster(self, host: str, username: str) -> dict[str, RosterItem]:
        return dict(self.items.get((host, username), {}))

    def get_item(self, host: str, username: str, contact: str) -> RosterItem | None:
        return self.items.get((host, username), {}).get(contact)

    def put_item(self, host: str, username: str, item: RosterItem) -> None:
        with self.contact_for_update(host, username, item.jid) as record:
            record.item = item

    def remove_item(self, host: str, username: str, contact: str) -> bool:
        with self.contact_for_update(host, username, contact) as record:
            found = record.item is not None
            record.item = None
        return found

    @contextlib.contextmanager
    def contact_for_update(self, host: str, username: str,
                           contact: str) -> Iterator[ContactRecord]:
        items = self.items.setdefault((host, username), {})
        pending = self.pending.setdefault((host, username), {})
        stored = items.get(contact)
        record = ContactRecord(stored and replace(stored, groups=list(stored.groups)),
                               contact in pending)
        yield record
        if record.item != stored:
            if record.item is None:
                del items[contact]
            else:
                items[contact] = record.item
            self._bump(host, username)
        if record.pending_in and contact not in pending:
            pending[contact] = record.request
        elif not record.pending_in:
            pending.pop(contact, None)
        record.version = self.version(host, username)

    def _bump(self, host: str, username: str) -> None:
        self.versions[host, username] = self.versions.get((host, username), 0) + 1

    def version(self, host: str, username: str) -> int:
        return self.versions.get((host, username), 0)

    def pending_in(self, host: str, username: str) -> dict[str, str | None]:
        return dict(self.pending.get((host, username), {}))

    def set_pending_in(self, host: str, username: str, contact: str,
                       stanza: str | None) -> None:
        self.pending.setdefault((host, username), {})[contact] = stanza

    def clear_pending_in(self, host: str, username: str, contact: str) -> bool:
        return self.pending.get((host, username), {}).pop(contact, None) is not None


class MemoryOffline:
    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], list[tuple[str, datetime]]] = {}

    def store(self, host: str, username: str, stanza_xml: str, stamp: datetime) -> bool:
        self.messages.setdefault((host, username), []).append((stanza_xml, stamp))
        return True

    def pop_all(self, host: str, username: str) -> list[tuple[str, datetime]]:
        return self.messages.pop((host, username), [])


class NoStores:
    """Module stores are SQL-backed; a unit test of the core has none to give."""

    def open(self, host: str, name: str, kind: str = "keyval") -> Any:
        raise RuntimeError(f"no {kind} store {name!r} in a core without storage")


def make_core(config: Config, clock: Callable[[], float] | None = None) -> ServerCore:
    """The server core of `config` on in-memory stores."""
    kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return ServerCore(config, accounts=MemoryAccounts(), stores=NoStores(),
                      typed_stores={"rosters": MemoryRosters(), "offline": MemoryOffline(),
                                    "uploads": None}, **kwargs)


def core_with_modules(directory: Any, host: str, modules: tuple[str, ...],
                      users: dict[str, str]) -> ServerCore:
    """The core of a one-host config (encryption optional) loading `modules`,
    with `users` (name -> password) created."""
    path = directory / "vireo.cfg.lua"
    enabled = ", ".join(f'"{name}"' for name in modules)
    path.write_text(f"modules_enabled = {{ {enabled} }}\nc2s_require_encryption = false\n"
                    f'VirtualHost "{host}"\n')
    core = make_core(load_config(path))
    for user, password in users.items():
        core.services.accounts.create(host, user, password)
    return core
