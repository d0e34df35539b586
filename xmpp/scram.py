"""SCRAM key derivation (RFC 5802, RFC 7677) shared by SASL and storage."""

from __future__ import annotations

import hashlib
import hmac
import os
import stringprep
import unicodedata
from dataclasses import dataclass

SCRAM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
DEFAULT_ITERATIONS = 10000  # Prosody 0.12's default for internal_hashed


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a server keeps for one account and one hash: never the password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def derive(password: str, hash_name: str, salt: bytes, iterations: int) -> ScramCredentials:
    """RFC 5802's keys from a password, normalised with SASLprep as clients do."""
    salted = hashlib.pbkdf2_hmac(hash_name, _normalized(password).encode("utf-8"), salt,
                                 iterations)
    return from_salted_password(salted, hash_name, salt, iterations)


def from_salted_password(salted: bytes, hash_name: str, salt: bytes,
                         iterations: int) -> ScramCredentials:
    """The keys from RFC 5802's SaltedPassword (what XEP-0480's upgrade task sends)."""
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    return ScramCredentials(salt, iterations, stored_key, server_key)


def new_credentials(password: str, hash_name: str,
                    iterations: int = DEFAULT_ITERATIONS) -> ScramCredentials:
    """Fresh SCRAM material with a random salt."""
    return derive(password, hash_name, os.urandom(16), iterations)


def password_matches(password: str, hash_name: str, creds: ScramCredentials) -> bool:
    """Check a clear password (from SASL PLAIN) against stored material."""
    candidate = derive(password, hash_name, creds.salt, creds.iterations)
    return hmac.compare_digest(candidate.stored_key, creds.stored_key)


def saslprep(text: str) -> str:
    """RFC 4013 SASLprep for queries (unassigned code points allowed).

    Raises ValueError when the string holds prohibited characters.
    """
    if text.isascii() and text.isprintable():
        return text
    mapped = "".join(" " if stringprep.in_table_c12(c) else c
                     for c in text if not stringprep.in_table_b1(c))
    result = unicodedata.normalize("NFKC", mapped)
    for c in result:
        if (stringprep.in_table_c12(c) or stringprep.in_table_c21_c22(c)
                or stringprep.in_table_c3(c) or stringprep.in_table_c4(c)
                or stringprep.in_table_c5(c) or stringprep.in_table_c6(c)
                or stringprep.in_table_c7(c) or stringprep.in_table_c8(c)
                or stringprep.in_table_c9(c)):
            raise ValueError("prohibited character")
    if any(stringprep.in_table_d1(c) for c in result):
        if any(stringprep.in_table_d2(c) for c in result):
            raise ValueError("mixed bidirectional text")
        if not (stringprep.in_table_d1(result[0]) and stringprep.in_table_d1(result[-1])):
            raise ValueError("bidirectional text must start and end with RandALCat")
    return result


def _normalized(password: str) -> str:
    # A password SASLprep refuses can still be stored and checked as given;
    # SASL PLAIN refuses it before it gets here.
    try:
        return saslprep(password)
    except ValueError:
        return password
