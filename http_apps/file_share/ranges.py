"""HTTP range requests (RFC 9110 section 14) for downloads: one byte range per request.

`parse_range("bytes=0-1", size)` gives the range to send (206), None when the
whole file should be sent (no header, another unit, a malformed or a
multi-range header: RFC 9110 lets a server ignore those), or raises
RangeNotSatisfiable (416) when the range lies outside the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


class RangeNotSatisfiable(Exception):
    """No byte of the requested range exists in the representation."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes first..last (inclusive) of a representation of `size` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self) -> str:
        """The Content-Range header value of a 206 answer."""
        return f"bytes {self.first}-{self.last}/{self.size}"


def unsatisfied_range(size: int) -> str:
    """The Content-Range header value of a 416 answer."""
    return f"bytes */{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The byte range asked for by a Range header over `size` bytes (see the module docstring)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _SPEC.fullmatch(spec)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_text, last_text = match.groups()
    if first_text == "":
        # A suffix range: the last N bytes.
        suffix = _at_most(last_text, size)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return ByteRange(size - suffix, size - 1, size)
    if last_text and _magnitude(last_text) < _magnitude(first_text):
        return None  # invalid syntax (RFC 9110 14.1.1): ignored
    first = _at_most(first_text, size)
    if first >= size:
        raise RangeNotSatisfiable(header)
    last = _at_most(last_text, size - 1) if last_text else size - 1
    return ByteRange(first, last, size)


def _magnitude(digits: str) -> tuple[int, str]:
    """A key ordering digit strings as the numbers they spell, without converting them."""
    significant = digits.lstrip("0")
    return len(significant), significant


def _at_most(digits: str, bound: int) -> int:
    """min(int(digits), bound); a string longer than the bound's is not converted
    (int() refuses over 4300 digits, and such a number is past any file's end)."""
    significant = digits.lstrip("0") or "0"
    return bound if len(significant) > len(str(bound)) else min(int(significant), bound)
