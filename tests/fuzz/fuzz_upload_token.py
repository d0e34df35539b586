"""Fuzz target: the upload token check (http_apps/file_share/tokens.py), as a PUT's
Authorization header brings it.

Input: a mode byte; odd: the token as it comes; even: a length byte, the JWT's
JSON header (empty: HS256's) and its JSON payload, signed here with the secret
so the claim checks are reached too. Documented refusals: TokenInvalid and
TokenExpired (TokenError, 401).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import atheris

from tests.fuzz.harness import INSTRUMENTED, run

with atheris.instrument_imports(include=[*INSTRUMENTED, "jwt"]):
    from http_apps.file_share.tokens import TokenError, verify

REFUSALS = (TokenError,)
SECRET = "fuzzing secret"
NOW = 1_700_000_000


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def signed(header: bytes, payload: bytes) -> str:
    """A compact JWS of raw `header` and `payload` bytes, HMAC-SHA256 over SECRET."""
    signing_input = _b64(header) + b"." + _b64(payload)
    mac = hmac.digest(SECRET.encode(), signing_input, hashlib.sha256)
    return (signing_input + b"." + _b64(mac)).decode("ascii")


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    if data[0] & 1:
        token = data[1:].decode("latin-1")
    else:
        header_end = 2 + data[1]
        token = signed(data[2:header_end] or b'{"alg":"HS256","typ":"JWT"}', data[header_end:])
    claims = verify(SECRET, token, NOW)
    assert isinstance(claims.filesize, int) and claims.filesize >= 0
    assert claims.exp >= NOW


if __name__ == "__main__":
    run(one_input, REFUSALS, name="upload_token")
