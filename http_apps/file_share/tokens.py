"""XEP-0363 upload authorisation: the HS256 JSON Web Token (RFC 7519) of a slot's PUT.

Prosody 0.12's claims: `sub` (the uploader's bare JID), `iat`, `exp` (iat +
300 s), `slot`, `expires` (when the file will expire; absent when expiry is
off), `filename`, `filesize`, `filetype`. An external upload service verifies
the same token with the shared `http_file_share_secret`.

Only HS256 is accepted: `alg: none` and every other algorithm are refused.
Expiry is checked against the caller's `now`, never the clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# PyJWT (some 0.25 MiB) is imported by sign and verify: a server holds it from
# its first slot on, not from start.

ALGORITHM = "HS256"
TOKEN_LIFETIME = 300


class TokenError(Exception):
    """A token that does not authorise an upload."""


class TokenInvalid(TokenError):
    """Malformed, wrongly signed, of another algorithm, or missing a claim."""


class TokenExpired(TokenError):
    """Well signed, but its `exp` has passed."""


@dataclass(frozen=True)
class UploadClaims:
    """What a slot's token says."""

    sub: str
    iat: int
    exp: int
    slot: str
    filename: str
    filesize: int
    filetype: str
    expires: int | None = None

    def to_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        if self.expires is None:
            del payload["expires"]
        return payload


def make_claims(*, uploader: str, slot: str, filename: str, filesize: int, filetype: str,
                now: float, expires_after: float | None) -> UploadClaims:
    """The claims of a slot issued at `now`; expires_after None (or negative) means no expiry."""
    iat = int(now)
    expires = None if expires_after is None or expires_after < 0 else int(now + expires_after)
    return UploadClaims(sub=uploader, iat=iat, exp=iat + TOKEN_LIFETIME, slot=slot,
                        filename=filename, filesize=filesize, filetype=filetype,
                        expires=expires)


def sign(secret: str, claims: UploadClaims) -> str:
    """The compact HS256 JWT of `claims`."""
    import jwt

    return jwt.encode(claims.to_payload(), secret.encode(), algorithm=ALGORITHM)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def verify(secret: str, token: str, now: float) -> UploadClaims:
    """The claims of `token` if signed with `secret` by HS256 and not expired at `now`.

    Raises TokenInvalid or TokenExpired.
    """
    import jwt

    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise TokenInvalid(f"algorithm {header.get('alg')!r} refused")
        payload = jwt.decode(token, secret.encode(), algorithms=[ALGORITHM],
                             options={"verify_exp": False, "verify_iat": False,
                                      "verify_nbf": False, "require": ["exp"]})
    except jwt.PyJWTError as error:
        raise TokenInvalid(str(error)) from error
    exp = payload.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenInvalid("exp is not a number")
    try:
        claims = UploadClaims(
            sub=_text(payload, "sub"), iat=int(payload.get("iat", 0)), exp=int(exp),
            slot=_text(payload, "slot"), filename=_text(payload, "filename"),
            filesize=payload["filesize"], filetype=_text(payload, "filetype"),
            expires=payload.get("expires"))
    except (KeyError, TypeError, ValueError, OverflowError) as error:  # Overflow: Infinity
        raise TokenInvalid(f"bad claims: {error}") from error
    if not _integer(claims.filesize) or claims.filesize < 0:
        raise TokenInvalid("filesize is not a size")
    if claims.expires is not None and not _integer(claims.expires):
        raise TokenInvalid("expires is not a timestamp")
    if exp < now:
        raise TokenExpired(f"expired at {exp}")
    return claims


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload[name]
    if not isinstance(value, str):
        raise TypeError(f"{name} is not a string")
    return value
