"""Accounts kept as SCRAM material (RFC 5802, RFC 7677), like Prosody's internal_hashed."""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Delete, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from storage.account_material import AccountExists, prep_username, scram_material, stored_username
from storage.db import Database
from storage.models import PER_USER_TABLES, accounts
from xmpp.scram import DEFAULT_ITERATIONS, SCRAM_HASHES, ScramCredentials, derive, password_matches

# Accounts whose last verified PLAIN password is remembered (about 200 bytes
# each): enough that a busy server's regular users never pay PBKDF2 twice.
PASSWORD_CACHE_SIZE = 65536
# How long a host's "which SCRAM hashes can every account answer" stays cached:
# an import by another process shows within this many seconds.
SCRAM_POLICY_TTL = 30.0


_BY_ACCOUNT = (accounts.c.host == bindparam("host"),
               accounts.c.username == bindparam("username"))
_EXISTS_QUERY = select(accounts.c.id).where(*_BY_ACCOUNT)
_SCRAM_QUERIES = {
    hash_name: select(accounts.c.salt, accounts.c.iterations,
                      accounts.c[f"{hash_name}_stored_key"],
                      accounts.c[f"{hash_name}_server_key"]).where(*_BY_ACCOUNT)
    for hash_name in SCRAM_HASHES.values()
}
_LACKING_SHA256 = (accounts.c.host == bindparam("host"), accounts.c.sha256_stored_key.is_(None))


def _call(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return function(*args)


def _delete_user_rows(table: Table, host: str, username: str) -> Delete:
    return delete(table).where(table.c.host == host, table.c.username == username)


def _exists(connection: Connection, host: str, username: str) -> bool:
    return connection.execute(_EXISTS_QUERY,
                              {"host": host, "username": username}).first() is not None


class _VerifiedPasswords:
    """Which password last verified for an account, without keeping the password.

    Why: SASL PLAIN sends the clear password, and checking it against SCRAM
    material costs a PBKDF2 of `iterations` rounds, CPU time during which the
    single gevent hub serves nobody. Clients that reconnect often (BOSH and
    mobile clients) would pay it on every login. So after a successful check
    we remember an HMAC of the password under a random key that lives only in
    this process (a cache dump reveals nothing reusable elsewhere), together
    with the stored key it matched. A later login with the same password and
    an unchanged stored key is then accepted without PBKDF2; a password
    change, here or by another process, changes the stored key and so voids
    the entry.
    """

    def __init__(self, size: int) -> None:
        self._key = os.urandom(32)
        self._size = size
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def _mac(self, password: str) -> bytes:
        return hmac.digest(self._key, password.encode("utf-8"), "sha256")

    def matches(self, account: tuple[str, str], password: str, stored_key: bytes) -> bool:
        with self._lock:
            entry = self._entries.get(account)
            if entry is None:
                return False
            self._entries.move_to_end(account)
        mac, verified_key = entry
        return (hmac.compare_digest(verified_key, stored_key)
                and hmac.compare_digest(mac, self._mac(password)))

    def remember(self, account: tuple[str, str], password: str, stored_key: bytes) -> None:
        with self._lock:
            self._entries[account] = (self._mac(password), stored_key)
            self._entries.move_to_end(account)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def forget(self, account: tuple[str, str]) -> None:
        with self._lock:
            self._entries.pop(account, None)


class AccountStore:
    """Create, check and remove accounts of the virtual hosts.

    Usernames are stored nodeprepped; a lookup with a username no account
    can have (not a valid localpart) finds nothing.
    """

    def __init__(self, db: Database, iterations: int = DEFAULT_ITERATIONS,
                 run_blocking: Callable[..., Any] | None = None) -> None:
        """`run_blocking(function, args)` runs the PBKDF2 of a password (a few ms
        of CPU, more with a large iteration count) off the calling thread: the
        server passes its hub's thread pool, so logins and registrations never
        stall the sessions it serves (hashlib releases the GIL meanwhile)."""
        self._db = db
        self._iterations = iterations
        self._run = run_blocking or _call
        self._verified = _VerifiedPasswords(PASSWORD_CACHE_SIZE)
        # host -> (valid until, mechanisms): see scram_mechanisms.
        self._scram_policy: dict[str, tuple[float, frozenset[str]]] = {}

    def _material(self, password: str) -> dict[str, bytes | int]:
        return self._run(scram_material, (password, self._iterations))

    def create(self, host: str, username: str, password: str) -> None:
        """Add an account; raise AccountExists if taken, InvalidJID for a bad username."""
        user = prep_username(username)
        try:
            with self._db.transaction() as connection:
                if _exists(connection, host, user):
                    raise AccountExists(f"{user}@{host}")  # before hashing: a taken name is cheap
                material = self._material(password)
                connection.execute(insert(accounts).values(host=host, username=user, **material))
        except IntegrityError as exc:  # created concurrently by another process
            raise AccountExists(f"{user}@{host}") from exc
        self._verified.remember((host, user), password, material["sha256_stored_key"])

    def set_password(self, host: str, username: str, password: str) -> bool:
        """Replace the password; False when there is no such account."""
        user = stored_username(username)
        if user is None:
            return False
        material = self._material(password)
        with self._db.transaction() as connection:
            changed = connection.execute(update(accounts).where(
                accounts.c.host == host, accounts.c.username == user).values(**material)).rowcount
        if not changed:
            return False
        self._verified.remember((host, user), password, material["sha256_stored_key"])
        self._scram_policy.pop(host, None)
        return True

    def delete(self, host: str, username: str) -> bool:
        """Remove the account and the user's roster, subscriptions and offline messages.

        Returns whether an account existed; the user's other rows go in any case.
        """
        user = stored_username(username)
        if user is None:
            return False
        with self._db.transaction() as connection:
            for table in PER_USER_TABLES:
                connection.execute(_delete_user_rows(table, host, user))
            removed = connection.execute(_delete_user_rows(accounts, host, user)).rowcount
        self._verified.forget((host, user))
        self._scram_policy.pop(host, None)
        return removed > 0

    def exists(self, host: str, username: str) -> bool:
        """Whether the account exists."""
        user = stored_username(username)
        if user is None:
            return False
        with self._db.engine.connect() as connection:
            return _exists(connection, host, user)

    def users(self, host: str) -> list[str]:
        """The usernames of a host, sorted."""
        with self._db.engine.connect() as connection:
            return list(connection.scalars(select(accounts.c.username)
                                           .where(accounts.c.host == host)
                                           .order_by(accounts.c.username)))

    def scram_credentials(self, host: str, username: str,
                          mechanism: str) -> ScramCredentials | None:
        """The stored material for a SCRAM mechanism ("SCRAM-SHA-1", "SCRAM-SHA-256[-PLUS]").

        None when there is no such account; ValueError for another mechanism.
        """
        hash_name = SCRAM_HASHES.get(mechanism.removesuffix("-PLUS"))
        if hash_name is None:
            raise ValueError(f"not a SCRAM mechanism we keep material for: {mechanism}")
        user = stored_username(username)
        if user is None:
            return None
        # A login's one read: a prebuilt statement on a pooled DB-API connection,
        # without SQLAlchemy's per-execution machinery (its columns need no conversion).
        rows = self._db.fetch_rows(_SCRAM_QUERIES[hash_name], {"host": host, "username": user})
        # A NULL stored key: the account has no material for this hash (yet).
        return None if not rows or rows[0][2] is None else ScramCredentials(*rows[0])

    def check_password(self, host: str, username: str, password: str) -> bool:
        """Whether the clear password (SASL PLAIN) is the account's.

        An account that has SCRAM-SHA-1 material only (moved from Prosody 0.12)
        is checked against it and, on success, given SCRAM-SHA-256 material
        derived from the password, so the host can offer SCRAM-SHA-256 once
        every account has it.
        """
        creds = self.scram_credentials(host, username, "SCRAM-SHA-256")
        if creds is None:
            return self._check_and_upgrade(host, username, password)
        account = (host, prep_username(username))
        if self._verified.matches(account, password, creds.stored_key):
            return True
        if not self._run(password_matches, (password, "sha256", creds)):
            return False
        self._verified.remember(account, password, creds.stored_key)
        return True

    def _check_and_upgrade(self, host: str, username: str, password: str) -> bool:
        sha1 = self.scram_credentials(host, username, "SCRAM-SHA-1")
        if sha1 is None or not self._run(password_matches, (password, "sha1", sha1)):
            return False
        sha256 = self._run(derive, (password, "sha256", sha1.salt, sha1.iterations))
        self.add_sha256(host, username, sha256, sha1.stored_key)
        self._verified.remember((host, prep_username(username)), password, sha256.stored_key)
        return True

    def add_sha256(self, host: str, username: str, sha256: ScramCredentials,
                   sha1_stored_key: bytes) -> bool:
        """Give an account that lacks it SCRAM-SHA-256 material (made with the salt
        and iterations of its SHA-1 material), while `sha1_stored_key` is still its
        SHA-1 key (no password change in between). Whether it was stored."""
        user = stored_username(username)
        if user is None:
            return False
        with self._db.transaction() as connection:
            stored = connection.execute(update(accounts).where(
                accounts.c.host == host, accounts.c.username == user,
                accounts.c.sha1_stored_key == sha1_stored_key,
                accounts.c.sha256_stored_key.is_(None)).values(
                sha256_stored_key=sha256.stored_key,
                sha256_server_key=sha256.server_key)).rowcount
        self._scram_policy.pop(host, None)
        return stored > 0

    def lacking_sha256(self, host: str) -> int:
        """How many accounts of the host have no SCRAM-SHA-256 material yet."""
        with self._db.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(accounts).where(
                *_LACKING_SHA256), {"host": host}).scalar_one()

    def scram_mechanisms(self, host: str) -> frozenset[str]:
        """The SCRAM mechanisms every account of the host can answer (the idea of
        ejabberd's auth_scram_hash, decided by the data): SCRAM-SHA-1 always,
        SCRAM-SHA-256 once no account lacks its material."""
        now = time.monotonic()
        cached = self._scram_policy.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self._db.engine.connect() as connection:
            lacking = connection.execute(select(accounts.c.id).where(*_LACKING_SHA256).limit(1),
                                         {"host": host}).first() is not None
        mechanisms = frozenset(SCRAM_HASHES) - ({"SCRAM-SHA-256"} if lacking else set())
        self._scram_policy[host] = (now + SCRAM_POLICY_TTL, mechanisms)
        return mechanisms
