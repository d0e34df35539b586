"""Request paths to file paths, and the validators of a file (RFC 9110 8.8, 13.1).

Pure functions of their arguments: no file system, no clock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from werkzeug.http import http_date, parse_date, parse_etags


def wsgi_path(path_info: str) -> str | None:
    """PATH_INFO (the request's bytes, percent-decoded once, read as latin-1) as the
    file system spells names (UTF-8, undecodable bytes kept as surrogates); None
    when it cannot be a request's bytes."""
    try:
        return path_info.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def sanitize_path(path: str) -> str | None:
    """`path` with "." and ".." resolved and empty segments dropped, starting with "/"
    and keeping a trailing one; None for a path leaving the root or naming a NUL byte.

    Prosody's net.http.files refuses the same paths (400). It percent-decodes each
    segment again after its HTTP parser did: we decode once (RFC 3986), so "%252e"
    is a file named "%2e" here, not "..".
    """
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if "\0" in part:
            return None
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    clean = "/" + "/".join(parts)
    return clean + "/" if parts and path.endswith("/") else clean


@dataclass(frozen=True, slots=True)
class Validators:
    """What tells one version of a file from another: Prosody's Last-Modified
    (whole seconds) and ETag (change time, size and modification time, in hex)."""

    modified: int
    etag: str

    @classmethod
    def of(cls, stat: os.stat_result) -> Validators:
        modified = int(stat.st_mtime)
        return cls(modified, f'"{int(stat.st_ctime):x}-{stat.st_size:x}-{modified:x}"')

    @property
    def last_modified(self) -> str:
        return http_date(self.modified)

    def headers(self) -> list[tuple[str, str]]:
        return [("Last-Modified", self.last_modified), ("ETag", self.etag)]

    def not_modified(self, if_none_match: str | None, if_modified_since: str | None) -> bool:
        """Whether a GET or HEAD with these fields is answered 304 (RFC 9110 13.2.2).

        If-None-Match, when sent, decides alone, by weak comparison over its list
        ("*" matches); else an If-Modified-Since date at or after the modification
        time. (Prosody compares both fields as exact strings, so it answers 200 to a
        list, a weak tag or a later date.)
        """
        if if_none_match is not None:
            return parse_etags(if_none_match).contains_weak(self.etag.strip('"'))
        since = parse_date(if_modified_since) if if_modified_since else None
        return since is not None and self.modified <= since.timestamp()
