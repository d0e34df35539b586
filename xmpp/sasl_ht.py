"""The HT-* SASL mechanisms (draft-schmaus-kitten-sasl-ht) for FAST tokens (XEP-0484).

Sans-I/O, as xmpp.sasl: the client's one message is `authcid NUL
HMAC(token, "Initiator" || cb-data)`; the server answers with
`HMAC(token, "Responder" || cb-data)`. No password hashing is involved.

Tokens are longer than SHA-256's 64-byte block, so HMAC keys on SHA-256 of
the token (RFC 2104 section 2): that digest is all the server keeps, and it
is never the token a client presents.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from xmpp.jid import nodeprep
from xmpp.sasl import Failure, Outcome, Success
from xmpp.scram import saslprep

# Mechanism -> the channel binding type it needs (None: none).
HT_MECHANISMS: dict[str, str | None] = {
    "HT-SHA-256-EXPR": "tls-exporter",
    "HT-SHA-256-UNIQ": "tls-unique",
    "HT-SHA-256-ENDP": "tls-server-end-point",
    "HT-SHA-256-NONE": None,
}
TOKEN_PREFIX = "secret-token:fast-"  # RFC 8959, so leaked tokens are recognisable
_TOKEN_BYTES = 48  # 64 base64 characters: the token is longer than the HMAC block


def ht_mechanisms(channel_bindings: Mapping[str, bytes]) -> list[str]:
    """The HT mechanisms this connection can serve, strongest first."""
    return [name for name, binding in HT_MECHANISMS.items()
            if binding is None or binding in channel_bindings]


def new_token() -> tuple[str, bytes]:
    """A fresh token for the client and the key the server keeps for it."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
    return token, token_key(token)


def token_key(token: str) -> bytes:
    """What HMAC-SHA-256 keys on for `token` (RFC 2104: long keys are hashed first)."""
    key = token.encode("utf-8")
    return hashlib.sha256(key).digest() if len(key) > hashlib.sha256().block_size else key


def initiator_hash(key: bytes, cb_data: bytes = b"") -> bytes:
    return hmac.digest(key, b"Initiator" + cb_data, "sha256")


def responder_hash(key: bytes, cb_data: bytes = b"") -> bytes:
    return hmac.digest(key, b"Responder" + cb_data, "sha256")


@dataclass(frozen=True, slots=True)
class TokenProof:
    """A client's claim: it holds a token of `username`'s whose HMAC is `initiator`."""

    username: str
    mechanism: str
    initiator: bytes
    cb_data: bytes

    def made_with(self, key: bytes) -> bool:
        return hmac.compare_digest(initiator_hash(key, self.cb_data), self.initiator)


# The token store's verdict: the key that matched, or the SASL condition to fail with.
TokenCheck = Callable[[TokenProof], "bytes | Failure"]


class HtExchange:
    """One HT-* authentication: `start` with the initial response, then done.

    `check` finds the user's token for this user agent and judges it
    (expiry, replay); the exchange only parses and computes.
    """

    def __init__(self, mechanism: str, check: TokenCheck, *,
                 channel_bindings: Mapping[str, bytes]) -> None:
        self.mechanism = mechanism
        self._check = check
        self._channel_bindings = channel_bindings
        self._started = False

    def start(self, initial_response: bytes | None) -> Outcome:
        if self._started:
            raise RuntimeError("HT exchange already started")
        self._started = True
        if self.mechanism not in HT_MECHANISMS:
            return Failure("invalid-mechanism")
        binding = HT_MECHANISMS[self.mechanism]
        cb_data = b""
        if binding is not None:
            if binding not in self._channel_bindings:
                return Failure("invalid-mechanism", f"no {binding} channel binding here")
            cb_data = self._channel_bindings[binding]
        if not initial_response:
            return Failure("malformed-request", "HT needs an initial response")
        authcid, nul, initiator = initial_response.partition(b"\0")
        if not nul or not authcid or len(initiator) != hashlib.sha256().digest_size:
            return Failure("malformed-request")
        try:
            username = nodeprep(saslprep(authcid.decode("utf-8")))
        except (UnicodeDecodeError, ValueError):
            return Failure("not-authorized")
        verdict = self._check(TokenProof(username, self.mechanism, initiator, cb_data))
        if isinstance(verdict, Failure):
            return verdict
        return Success(username, responder_hash(verdict, cb_data))

    def respond(self, data: bytes) -> Outcome:
        """HT has one message: anything more is out of order."""
        return Failure("malformed-request", "no authentication in progress")
