"""SASL server (RFC 4422, RFC 6120 6) with PLAIN (RFC 4616), SCRAM (RFC 5802, RFC 7677)
with channel binding (SCRAM-*-PLUS) and XEP-0474's downgrade protection, and
ANONYMOUS (RFC 4505, offered only where a module offers it: auth_anonymous).

Sans-I/O: the c2s machine decodes the base64 of `<auth>`/`<response>` with
`decode_payload`, feeds the bytes to a `SaslExchange` and turns each outcome
(`Challenge`, `Success`, `Failure`) into its element. Nothing here touches
storage directly; a `CredentialSource` answers for the accounts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from xmpp.jid import InvalidJID, nodeprep, parse_jid
from xmpp.scram import DEFAULT_ITERATIONS, SCRAM_HASHES, ScramCredentials, saslprep

PLUS_MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS")
MECHANISMS = (*PLUS_MECHANISMS, "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")
ANONYMOUS = "ANONYMOUS"
FAILURE_CONDITIONS = frozenset({
    "aborted", "account-disabled", "credentials-expired", "encryption-required",
    "incorrect-encoding", "invalid-authzid", "invalid-mechanism", "malformed-request",
    "mechanism-too-weak", "not-authorized", "temporary-auth-failure",
})

# Unknown users get SCRAM material derived from this, so their exchange looks
# like a real one until the proof fails (no user enumeration by shape).
_FAKE_SECRET = secrets.token_bytes(32)
_FAKE_SALT_BYTES = 16  # what xmpp.scram.new_credentials stores

_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII except ","
_EXTENSION = re.compile(r"[A-Za-z]=[^,]*")
_BAD_ESCAPE = re.compile(r"=(?!2C|3D)")
_ESCAPES = {"=2C": ",", "=3D": "="}


class CredentialSource(Protocol):
    """What SASL needs from account storage."""

    def check_password(self, username: str, password: str) -> bool:
        """True when `password` is the account's (PLAIN)."""
        ...

    def scram_credentials(self, username: str, mechanism: str) -> ScramCredentials | None:
        """Stored SCRAM material for `mechanism`, or None for an unknown user."""
        ...


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    username: str
    data: bytes | None  # additional data with success (SCRAM's server-final message)


@dataclass(frozen=True, slots=True)
class Failure:
    condition: str  # an RFC 6120 6.5 condition
    text: str | None = None

    def __post_init__(self) -> None:
        if self.condition not in FAILURE_CONDITIONS:
            raise ValueError(f"not a SASL failure condition: {self.condition}")


Outcome = Challenge | Success | Failure

_NOT_AUTHORIZED = Failure("not-authorized")


def offered_mechanisms(*, secure: bool, allow_unencrypted_plain_auth: bool,
                       scram: Collection[str] = frozenset(SCRAM_HASHES),
                       channel_binding: bool = False) -> list[str]:
    """Mechanisms to advertise: the SCRAM ones in `scram` (those every account of
    the host can answer), their -PLUS twins where the connection has a channel
    binding, PLAIN only over TLS unless allowed (Prosody)."""
    plain = secure or allow_unencrypted_plain_auth
    return [m for m in MECHANISMS
            if (plain if m == "PLAIN" else m.removesuffix("-PLUS") in scram)
            and (channel_binding or m not in PLUS_MECHANISMS)]


def downgrade_protection(mechanisms: list[str], binding_types: list[str], hash_name: str) -> str:
    """XEP-0474 (0.3)'s `h` attribute: the hash of what was offered, so a client
    that checks it can tell whether someone in between pruned the lists. Sorted
    mechanisms joined by U+001E, then U+001F and the sorted binding types (as
    Prosody's mod_sasl_ssdp)."""
    offered = "\x1e".join(sorted(mechanisms))
    if binding_types:
        offered += "\x1f" + "\x1e".join(sorted(binding_types))
    return base64.b64encode(hashlib.new(hash_name, offered.encode("utf-8")).digest()).decode()


def decode_payload(text: str | None) -> bytes | None:
    """Bytes carried by `<auth>`/`<response>`: None when empty, b"" for "=".

    Raises ValueError for invalid base64 (answer `incorrect-encoding`).
    """
    if text is None:
        return None
    # COMPAT: some clients wrap long base64 lines; whitespace carries no data.
    text = "".join(text.split())
    if not text:
        return None
    if text == "=":
        return b""
    return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)


def encode_payload(data: bytes | None) -> str | None:
    """Text for `<challenge>`/`<success>`: None for no data, "=" for empty data."""
    if data is None:
        return None
    if not data:
        return "="
    return base64.b64encode(data).decode("ascii")


def _default_nonce() -> str:
    return secrets.token_urlsafe(18)


class SaslExchange:
    """One authentication attempt with one mechanism.

    `start` takes the initial response (None when the client sent none),
    `respond` each later response; both return the next outcome. After a
    `Success` or `Failure` the exchange is over. `nonce` makes the server
    part of SCRAM's nonce (injected by tests). `channel_bindings` are the
    connection's (type -> data, xmpp.channel_binding), for -PLUS.
    """

    def __init__(self, mechanism: str, credentials: CredentialSource, *, host: str,
                 offered: list[str], nonce: Callable[[], str] = _default_nonce,
                 channel_bindings: Mapping[str, bytes] | None = None,
                 announce_offer: bool = True) -> None:
        self.mechanism = mechanism
        self.credentials = credentials
        self.host = host
        self.offered = offered
        self.channel_bindings = channel_bindings or {}
        # XEP-0474's `h` attribute in SCRAM's server-first message (off only for
        # the RFC test vectors, which predate it).
        self.announce_offer = announce_offer
        self._nonce = nonce
        self._started = False
        self._step: Callable[[bytes], Outcome] | None = None
        # SCRAM state between the two client messages
        self._username = ""
        self._creds: ScramCredentials | None = None
        self._known_user = False
        self._gs2_header = ""
        self._binding_data = b""
        self._client_first_bare = ""
        self._server_first = ""
        self._full_nonce = ""

    def start(self, initial_response: bytes | None) -> Outcome:
        """Begin with the `<auth>` payload; an empty challenge asks for one if absent."""
        if self._started:
            raise RuntimeError("SASL exchange already started")
        self._started = True
        if self.mechanism not in self.offered or self.mechanism not in (*MECHANISMS, ANONYMOUS):
            return Failure("invalid-mechanism")
        self._step = {"PLAIN": self._plain, ANONYMOUS: self._anonymous}.get(
            self.mechanism, self._scram_first)
        if initial_response is None:
            if self.mechanism == ANONYMOUS:
                return self.respond(b"")  # the trace is optional: nothing to ask for
            return Challenge(b"")
        return self.respond(initial_response)

    def respond(self, data: bytes) -> Outcome:
        """Feed a `<response>` payload."""
        step, self._step = self._step, None
        if step is None:
            return Failure("malformed-request", "no authentication in progress")
        return step(data)

    def abort(self) -> Failure:
        """The client sent `<abort/>`."""
        self._step = None
        return Failure("aborted")

    # -- shared checks -----------------------------------------------------------

    def _authzid_allowed(self, authzid: str, username: str) -> bool:
        """Only the account itself may be the authorization identity."""
        try:
            jid = parse_jid(authzid)
            own = parse_jid(f"{username}@{self.host}")
        except InvalidJID:
            return False
        return jid == own

    # -- PLAIN -------------------------------------------------------------------

    def _plain(self, data: bytes) -> Outcome:
        parts = data.split(b"\0")
        if len(parts) != 3:
            return Failure("malformed-request")
        try:
            authzid, authcid, password = (part.decode("utf-8") for part in parts)
        except UnicodeDecodeError:
            return Failure("malformed-request")
        if not authcid or not password:
            return Failure("malformed-request")
        try:
            username = nodeprep(saslprep(authcid))
            password = saslprep(password)
        except ValueError:  # InvalidJID too
            return _NOT_AUTHORIZED
        if authzid and not self._authzid_allowed(authzid, username):
            return Failure("invalid-authzid")
        if not self.credentials.check_password(username, password):
            return _NOT_AUTHORIZED
        return Success(username, None)

    # -- ANONYMOUS -----------------------------------------------------------------

    def _anonymous(self, data: bytes) -> Outcome:
        """RFC 4505: the optional trace is not kept; the session gets a random
        node, a UUID as Prosody's mod_auth_anonymous gives."""
        try:
            trace = data.decode("utf-8")
        except UnicodeDecodeError:
            return Failure("malformed-request")
        if len(trace) > 255:
            return Failure("malformed-request")
        return Success(str(uuid.uuid4()), None)

    # -- SCRAM -------------------------------------------------------------------

    def _scram_first(self, data: bytes) -> Outcome:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Failure("malformed-request")
        flag, comma1, rest = text.partition(",")
        authz, comma2, bare = rest.partition(",")
        if not (comma1 and comma2):
            return Failure("malformed-request")
        refused = self._check_binding_flag(flag)
        if refused is not None:
            return refused
        attrs = bare.split(",")
        if attrs[0].startswith("m="):
            return Failure("malformed-request", "mandatory extension not supported")
        if (len(attrs) < 2 or not attrs[0].startswith("n=") or not attrs[1].startswith("r=")
                or not _NONCE.fullmatch(attrs[1][2:])
                or not all(_EXTENSION.fullmatch(a) for a in attrs[2:])):
            return Failure("malformed-request")
        try:
            authzid = _unescape(authz[2:]) if authz.startswith("a=") else None
            name = _unescape(attrs[0][2:])
        except ValueError:
            return Failure("malformed-request")
        if authz and authzid is None:
            return Failure("malformed-request")
        try:
            username = nodeprep(saslprep(name))
        except ValueError:
            return _NOT_AUTHORIZED
        if authzid is not None and not self._authzid_allowed(authzid, username):
            return Failure("invalid-authzid")

        hash_name = SCRAM_HASHES[self._scram_mechanism]
        creds = self.credentials.scram_credentials(username, self._scram_mechanism)
        self._known_user = creds is not None
        self._creds = creds or _fake_credentials(username, hash_name)
        self._username = username
        self._gs2_header = f"{flag},{authz},"
        self._client_first_bare = bare
        self._full_nonce = attrs[1][2:] + self._nonce()
        salt = base64.b64encode(self._creds.salt).decode("ascii")
        self._server_first = f"r={self._full_nonce},s={salt},i={self._creds.iterations}"
        if self.announce_offer:
            self._server_first += ",h=" + downgrade_protection(
                self.offered, list(self.channel_bindings), hash_name)
        self._step = self._scram_final
        return Challenge(self._server_first.encode("ascii"))

    @property
    def _scram_mechanism(self) -> str:
        return self.mechanism.removesuffix("-PLUS")

    def _check_binding_flag(self, flag: str) -> Failure | None:
        """RFC 5802 section 6's gs2 flag rules; keeps the binding data to expect."""
        plus = self.mechanism in PLUS_MECHANISMS
        if flag.startswith("p="):
            if not plus:
                return Failure("malformed-request", "channel binding needs a -PLUS mechanism")
            data = self.channel_bindings.get(flag[2:])
            if data is None:
                return Failure("malformed-request", "unsupported channel binding type")
            self._binding_data = data
            return None
        if flag not in ("n", "y"):
            return Failure("malformed-request")
        if plus:
            return Failure("malformed-request", "a -PLUS mechanism needs channel binding")
        if flag == "y" and self.channel_bindings:
            # The client can bind but saw no -PLUS offered: someone removed it.
            return Failure("not-authorized", "server does support channel binding")
        return None

    def _scram_final(self, data: bytes) -> Outcome:
        assert self._creds is not None
        hash_name = SCRAM_HASHES[self._scram_mechanism]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Failure("malformed-request")
        attrs = text.split(",")
        if (len(attrs) < 3 or not attrs[0].startswith("c=") or not attrs[1].startswith("r=")
                or not attrs[-1].startswith("p=")
                or not all(_EXTENSION.fullmatch(a) for a in attrs[2:-1])):
            return Failure("malformed-request")
        try:
            binding = binascii.a2b_base64(attrs[0][2:], strict_mode=True)
            proof = binascii.a2b_base64(attrs[-1][2:], strict_mode=True)
        except binascii.Error:
            return Failure("malformed-request")
        if not hmac.compare_digest(binding, self._gs2_header.encode("utf-8") + self._binding_data):
            if self._binding_data:
                # Bound to another TLS session than ours: someone in between.
                return Failure("not-authorized", "channel binding does not match")
            return Failure("malformed-request", "channel binding data does not match")
        if attrs[1][2:] != self._full_nonce:
            return Failure("malformed-request", "wrong nonce")
        if len(proof) != hashlib.new(hash_name).digest_size:
            return Failure("malformed-request")

        without_proof = text[: -len(attrs[-1]) - 1]
        auth_message = ",".join(
            (self._client_first_bare, self._server_first, without_proof)).encode("utf-8")
        signature = hmac.digest(self._creds.stored_key, auth_message, hash_name)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        matches = hmac.compare_digest(hashlib.new(hash_name, client_key).digest(),
                                      self._creds.stored_key)
        if not (matches and self._known_user):
            return _NOT_AUTHORIZED
        verifier = hmac.digest(self._creds.server_key, auth_message, hash_name)
        return Success(self._username, b"v=" + base64.b64encode(verifier))


def _unescape(saslname: str) -> str:
    """RFC 5802 saslname: "=2C" is ",", "=3D" is "=", any other "=" is an error."""
    if _BAD_ESCAPE.search(saslname):
        raise ValueError("bad escape in saslname")
    return re.sub("=2C|=3D", lambda m: _ESCAPES[m.group()], saslname)


def _fake_credentials(username: str, hash_name: str) -> ScramCredentials:
    """Stable per-process stand-in credentials for an unknown user."""
    seed = hmac.digest(_FAKE_SECRET, username.encode("utf-8"), "sha256")
    return ScramCredentials(
        salt=hmac.digest(seed, b"salt", "sha256")[:_FAKE_SALT_BYTES],
        iterations=DEFAULT_ITERATIONS,
        stored_key=hmac.digest(seed, b"stored key", hash_name),
        server_key=hmac.digest(seed, b"server key", hash_name),
    )
