"""XEP-0363 HTTP File Upload: who may have a slot, for what file, and how it is served.

Pure rules with Prosody 0.12's options and defaults (mod_http_file_share): no
storage, no clock. A slot request is checked in Prosody's order, the first
failing check giving the answer:

    access -> filename -> size format -> size limit -> global quota
    -> daily quota -> allowed file types

`check_request` runs the first four (they need no figures), `check_usage` the
rest, given what is already stored (`Usage`): the storage layer calls it inside
the transaction that records the slot, so two requests at once cannot both fit
into the last bytes of a quota.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024
#: The largest file size a slot can record (a signed 64-bit column).
MAX_SIZE = 2**63 - 1
DAILY_QUOTA_FACTOR = 10
DEFAULT_EXPIRES_AFTER = 7 * 86400
DEFAULT_SAFE_TYPES = ("image/*", "video/*", "audio/*", "text/plain")
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DAY = 86400

_DIGITS = re.compile(r"[0-9]+")
# A media type as RFC 9110 8.3.1 spells it, parameters allowed.
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*;[ -~]*)?")


class Refusal(Exception):
    """Why a slot is refused: Prosody's error reason with its stanza error.

    `max_file_size` is set for "filesize", whose error carries
    <file-too-large><max-file-size>N</max-file-size></file-too-large>.
    """

    def __init__(self, reason: str, max_file_size: int | None = None) -> None:
        self.reason = reason
        self.error_type, self.condition, self.text = _REFUSALS[reason]
        self.max_file_size = max_file_size
        super().__init__(reason)


# Prosody's upload_errors table: reason -> (type, condition, text).
_REFUSALS = {
    "access": ("auth", "forbidden", None),
    "filename": ("modify", "bad-request", "Invalid filename"),
    "filesizefmt": ("modify", "bad-request", "File size must be positive integer"),
    "filesize": ("modify", "not-acceptable", "File too large"),
    "outofdisk": ("wait", "resource-constraint", "Server global storage quota reached"),
    "quota": ("wait", "resource-constraint", "Daily quota reached"),
    "filetype": ("modify", "not-acceptable", "File type not allowed"),
}


@dataclass(frozen=True)
class SlotRequest:
    """The <request/> of XEP-0363 as received: attributes unparsed, uploader a bare JID."""

    uploader: str
    filename: str | None
    size: str | None
    content_type: str | None = None


@dataclass(frozen=True)
class FileSpec:
    """A request that passed the checks needing no figures: what the slot will hold."""

    uploader: str
    filename: str
    size: int
    content_type: str


@dataclass(frozen=True)
class Usage:
    """Bytes already charged on the service, and to the uploader in the last 24 hours."""

    global_bytes: int
    daily_bytes: int


def _type_matches(types: frozenset[str], content_type: str) -> bool:
    """Whether `content_type` (parameters ignored) or its "major/*" is in `types`."""
    base = content_type.split(";", 1)[0].strip().lower()
    return base in types or base.split("/", 1)[0] + "/*" in types


def _type_set(types: Iterable[str]) -> frozenset[str]:
    return frozenset(str(t).strip().lower() for t in types)


@dataclass(frozen=True)
class Policy:
    """The options of one upload service.

    daily_quota None means Prosody's default, 10 times the size limit;
    global_quota None means unlimited; an empty `allowed_types` allows every type;
    an empty `access` allows the users of `local_hosts`.
    """

    size_limit: int = DEFAULT_SIZE_LIMIT
    daily_quota: int | None = None
    global_quota: int | None = None
    allowed_types: frozenset[str] = frozenset()
    safe_types: frozenset[str] = field(default_factory=lambda: _type_set(DEFAULT_SAFE_TYPES))
    access: frozenset[str] = frozenset()
    local_hosts: frozenset[str] = frozenset()
    expires_after: float = DEFAULT_EXPIRES_AFTER

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_types", _type_set(self.allowed_types))
        object.__setattr__(self, "safe_types", _type_set(self.safe_types))
        object.__setattr__(self, "access", frozenset(a.lower() for a in self.access))
        object.__setattr__(self, "local_hosts", frozenset(h.lower() for h in self.local_hosts))
        if self.daily_quota is None:
            object.__setattr__(self, "daily_quota", self.size_limit * DAILY_QUOTA_FACTOR)

    # -- slot requests ------------------------------------------------------------

    def may_access(self, uploader: str) -> bool:
        """Prosody 0.12: local users when `access` is empty, else the JIDs and hosts it lists."""
        bare = uploader.lower()
        host = bare.rpartition("@")[2]
        if not self.access:
            return host in self.local_hosts
        return bare in self.access or host in self.access

    def check_request(self, request: SlotRequest) -> FileSpec:
        """Access, filename, size format and size limit, in that order; raises Refusal."""
        if not self.may_access(request.uploader):
            raise Refusal("access")
        if not valid_filename(request.filename):
            raise Refusal("filename")
        size = parse_size(request.size)
        if size is None:
            raise Refusal("filesizefmt")
        if size > self.size_limit:
            raise Refusal("filesize", self.size_limit)
        assert request.filename is not None
        return FileSpec(request.uploader, request.filename, size,
                        request.content_type or DEFAULT_CONTENT_TYPE)

    def check_usage(self, spec: FileSpec, usage: Usage) -> None:
        """Global quota, daily quota and file type, in that order; raises Refusal."""
        if self.global_quota is not None and usage.global_bytes + spec.size > self.global_quota:
            raise Refusal("outofdisk")
        assert self.daily_quota is not None
        if usage.daily_bytes + spec.size > self.daily_quota:
            raise Refusal("quota")
        if self.allowed_types and not _type_matches(self.allowed_types, spec.content_type):
            raise Refusal("filetype")

    def check(self, request: SlotRequest, usage: Usage) -> FileSpec:
        """Every check in order (check_request then check_usage)."""
        spec = self.check_request(request)
        self.check_usage(spec, usage)
        return spec

    @staticmethod
    def daily_window_start(now: float) -> float:
        """Slots issued at or after this time count against the daily quota."""
        return now - DAY

    # -- serving ------------------------------------------------------------------

    def expires_at(self, created: float) -> float | None:
        """When a file made at `created` expires; None when expiry is disabled (negative)."""
        return None if self.expires_after < 0 else created + self.expires_after

    def is_expired(self, created: float, now: float) -> bool:
        """Whether a slot created at `created` is past its expiry time at `now`."""
        expires = self.expires_at(created)
        return expires is not None and now >= expires

    def content_disposition(self, filename: str, content_type: str) -> str:
        """inline for the safe types, attachment otherwise, with an RFC 8187 filename."""
        disposition = "inline" if _type_matches(self.safe_types, content_type) else "attachment"
        return f"{disposition}; filename*=UTF-8''{quote(filename, safe='')}"


def valid_filename(name: str | None) -> bool:
    """A plain file name: not empty, ".", "..", nor with "/", NUL or control characters."""
    if not name or name in (".", ".."):
        return False
    return "/" not in name and not any(unicodedata.category(c) == "Cc" for c in name)


def parse_size(text: str | None) -> int | None:
    """The size attribute as a positive integer, or None when it is not one.

    Zero is refused, as the error text says ("File size must be positive
    integer"), although Prosody 0.12's check lets it through: a slot for no
    bytes has nothing to share.
    """
    if text is None or not _DIGITS.fullmatch(text.strip()):
        return None
    digits = text.strip().lstrip("0")
    if not digits:
        return None
    # Longer numbers are past any size limit (which is at most MAX_SIZE), and
    # Python refuses to convert strings of over 4300 digits.
    return int(digits) if len(digits) <= len(str(MAX_SIZE)) else MAX_SIZE + 1


def served_content_type(content_type: str | None) -> str:
    """The Content-Type to serve: the stored one when it is a well-formed media type."""
    if content_type and _MEDIA_TYPE.fullmatch(content_type):
        return content_type
    return DEFAULT_CONTENT_TYPE
