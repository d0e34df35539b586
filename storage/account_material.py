"""What every account path shares: the stored username and the SCRAM columns of a password.

Free of SQLAlchemy, for the ORM store (storage.accounts) and the DB-API
account commands (storage.account_rows) alike, so both write the same rows.
"""

from __future__ import annotations

import os

from xmpp.jid import InvalidJID, nodeprep
from xmpp.scram import DEFAULT_ITERATIONS, derive


class AccountExists(Exception):
    """create() found an account of that name on that host."""


def scram_material(password: str, iterations: int = DEFAULT_ITERATIONS) -> dict[str, bytes | int]:
    """The `accounts` columns for a password: SHA-1 and SHA-256 material."""
    # One salt and iteration count for both hashes, as Prosody keeps them.
    salt = os.urandom(16)
    sha1 = derive(password, "sha1", salt, iterations)
    sha256 = derive(password, "sha256", salt, iterations)
    return {"salt": salt, "iterations": iterations,
            "sha1_stored_key": sha1.stored_key, "sha1_server_key": sha1.server_key,
            "sha256_stored_key": sha256.stored_key, "sha256_server_key": sha256.server_key}


def prep_username(username: str) -> str:
    """The stored form of a username; InvalidJID when no account can have it."""
    # nodeprep() reads "a/b" as a JID with a resource and fails an assert.
    if "/" in username:
        raise InvalidJID("forbidden character in localpart")
    return nodeprep(username)


def stored_username(username: str) -> str | None:
    """The stored form of a username, or None when no account can have it."""
    try:
        return prep_username(username)
    except InvalidJID:
        return None
