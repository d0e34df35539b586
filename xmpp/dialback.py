"""XEP-0185 dialback keys for XEP-0220 Server Dialback: generation and checking.

key = hex(HMAC-SHA-256(hex(SHA-256(secret)), "<receiving> <originating> <stream id>"))

The secret is `dialback_secret` when configured (so several processes
behind one domain accept each other's keys), otherwise a random one made
once per process (in a cluster, one kept in the shared database: see
xmpp.modules.s2s). Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret() -> str:
    """A random secret for a process that has no `dialback_secret`."""
    return secrets.token_hex(32)


# What a secret's fingerprint is the HMAC of (any fixed text would do).
FINGERPRINT_LABEL = b"vireo dialback_secret fingerprint"


def fingerprint(secret: str) -> str:
    """What the nodes of a cluster compare to tell whether they share one
    secret without showing it to each other or to Redis: an HMAC of a fixed
    label keyed with the secret."""
    return hmac.new(secret.encode("utf-8"), FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


class DialbackKeys:
    """Makes and checks the keys of one secret."""

    def __init__(self, secret: str) -> None:
        # XEP-0185: the secret is hashed first so that the HMAC key has the
        # digest's length whatever the configured secret looks like.
        self._key = hashlib.sha256(secret.encode("utf-8")).hexdigest().encode("ascii")

    def key(self, receiving: str, originating: str, stream_id: str) -> str:
        """The key the originating server sends in <db:result/> for this stream."""
        text = f"{receiving} {originating} {stream_id}".encode()
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()

    def verify(self, receiving: str, originating: str, stream_id: str, key: str) -> bool:
        """Whether `key` is the one this secret makes (constant-time comparison)."""
        expected = self.key(receiving, originating, stream_id)
        return hmac.compare_digest(expected.encode(), key.strip().lower().encode("utf-8"))
