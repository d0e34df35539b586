"""The client's side of SCRAM (RFC 5802), with channel binding, for tests that
must send what slixmpp would not (bindings of another TLS session, -PLUS)."""

from __future__ import annotations

import base64
import hashlib
import hmac


def client_final(password: str, hash_name: str, *, gs2_header: str, cb_data: bytes,
                 client_first_bare: str, server_first: bytes) -> bytes:
    """The client-final message answering `server_first`."""
    attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    binding = base64.b64encode(gs2_header.encode() + cb_data).decode()
    without_proof = f"c={binding},r={attrs['r']}"
    auth_message = f"{client_first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.digest(hashlib.new(hash_name, client_key).digest(), auth_message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
