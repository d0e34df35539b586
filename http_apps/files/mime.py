"""Content-Type by file extension, as Prosody's mod_http_files finds it.

A small built-in table first, then the `mime_types_file` database (the
/etc/mime.types format: a type, then its extensions), where an unknown
extension is application/octet-stream. Without a readable database an unknown
extension, like a name without one, gets no Content-Type (RFC 9110 8.3 allows
that when the type is unknown), as in Prosody.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "/etc/mime.types"
UNKNOWN = "application/octet-stream"
#: Prosody's table, which wins over the database.
BUILT_IN = {
    "html": "text/html", "htm": "text/html",
    "xml": "application/xml",
    "txt": "text/plain",
    "css": "text/css",
    "js": "application/javascript",
    "png": "image/png",
    "gif": "image/gif",
    "jpeg": "image/jpeg", "jpg": "image/jpeg",
    "svg": "image/svg+xml",
}


def parse_database(text: str) -> dict[str, str]:
    """Extension (lower case) -> type from a mime.types file; the first line naming
    an extension wins, as Prosody's search of the file does."""
    types: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        for extension in fields[1:]:
            types.setdefault(extension.lower(), fields[0])
    return types


def extension(name: str) -> str | None:
    """The extension of a file path's last segment ("gz" of "a.tar.gz"), lower case."""
    last = name.rpartition("/")[2]
    _, dot, ext = last.rpartition(".")
    return ext.lower() if dot and ext else None


class MimeMap:
    """The Content-Type of a file name; `database` None when none could be read."""

    def __init__(self, database: Mapping[str, str] | None) -> None:
        self.types = {**(database or {}), **BUILT_IN}
        self.unknown = UNKNOWN if database is not None else None

    def type_for(self, name: str) -> str | None:
        ext = extension(name)
        return None if ext is None else self.types.get(ext, self.unknown)


@functools.cache
def mime_map(database: Path) -> MimeMap:
    """The map with the database at `database`, read once per process (Prosody
    shares one map between every host too)."""
    try:
        text = database.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        log.debug("Could not open MIME database %s: %s", database, error)
        return MimeMap(None)
    return MimeMap(parse_database(text))
