"""SCRAM key derivation (RFC 5802, RFC 7677) shared by SASL and storage."""

from __future__ import annotations

import hashlib
import hmac
import os
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
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode("utf-8"), salt, iterations)
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
