"""JIDs (RFC 7622): parsing, validation and the bare/full forms."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

MAX_PART_BYTES = 1023
_FORBIDDEN_LOCAL = frozenset('"&\'/:<>@')


class InvalidJID(ValueError):
    """A JID that RFC 7622 does not allow."""


@dataclass(frozen=True, slots=True)
class JID:
    local: str | None
    domain: str
    resource: str | None = None

    @property
    def bare(self) -> JID:
        return _bare(self.local, self.domain) if self.resource else self

    @property
    def bare_text(self) -> str:
        """str(self.bare), without making the bare JID (hot paths)."""
        return f"{self.local}@{self.domain}" if self.local else self.domain

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    @property
    def host(self) -> JID:
        return JID(None, self.domain)

    def with_resource(self, resource: str) -> JID:
        return JID(self.local, self.domain, resource)

    def __str__(self) -> str:
        text = self.domain
        if self.local:
            text = f"{self.local}@{text}"
        if self.resource:
            text = f"{text}/{self.resource}"
        return text


@lru_cache(maxsize=65536)
def _bare(local: str | None, domain: str) -> JID:
    """The bare JID of a full one, made once: routing asks it per stanza, and the same
    object each time is found in a dictionary without comparing its fields."""
    return JID(local, domain)


def _check_part(part: str, what: str) -> None:
    if not part:
        raise InvalidJID(f"empty {what}")
    if len(part.encode("utf-8")) > MAX_PART_BYTES:
        raise InvalidJID(f"{what} too long")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in part):
        raise InvalidJID(f"control character in {what}")


@lru_cache(maxsize=65536)
def parse_jid(text: str) -> JID:
    """Parse and normalise a JID; raise InvalidJID when it is malformed.

    Local part and domain are case-folded (a simplification of PRECIS that
    matches what clients send in practice); the resource keeps its case.
    """
    rest, slash, resource = text.partition("/")
    local, at, domain = rest.rpartition("@")
    if slash:
        _check_part(resource, "resource")
    if at:
        _check_part(local, "localpart")
        if any(c in _FORBIDDEN_LOCAL or c.isspace() for c in local):
            raise InvalidJID("forbidden character in localpart")
        local = local.lower()
    domain = domain.rstrip(".").lower()
    _check_part(domain, "domain")
    if any(c.isspace() or c in "@/<>'\"&" for c in domain):
        raise InvalidJID("forbidden character in domain")
    return JID(local if at else None, domain, resource if slash else None)


def nodeprep(username: str) -> str:
    """Normalise a bare username the way parse_jid normalises localparts."""
    jid = parse_jid(f"{username}@x")
    if jid.local is None or jid.resource is not None or "@" in username:
        raise InvalidJID(f"invalid username {username!r}")
    return jid.local


@lru_cache(maxsize=65536)
def bare_of(text: str) -> str:
    """The normalised bare JID of JID `text` (InvalidJID when malformed): per
    message in hot paths, hence cached like parse_jid."""
    return parse_jid(text).bare_text
