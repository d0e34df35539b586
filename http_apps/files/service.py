"""GET and HEAD of files under a directory (Prosody's net.http.files), as plain WSGI.

For a path under the mount path, in Prosody's order: a path leaving the
directory or naming a NUL byte 400; nothing there 404; Last-Modified and ETag
on every answer, and 304 when the request's validators match (RFC 9110 13.2.2,
see paths.Validators); a file cached since, unchanged, from memory; a directory
without a trailing slash 301 to the path with one; a directory, its first index
file (`http_index_files`), else a listing when `http_dir_listing` is on, else
403; a file that cannot be opened, or that is no regular file (a FIFO would
block the reader), 403; a file up to `http_files_cache_max_file_size` bytes read
and cached (`http_files_cache_size` answers, least recently used dropped), a
larger one sent by the server's file wrapper (sendfile(2) on plain TCP). No
byte ranges, as in Prosody. Symbolic links are followed, also out of the
directory, as in Prosody: whoever may write a link there may publish its target.
"""

from __future__ import annotations

import html
import itertools
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from werkzeug.exceptions import BadRequest, Forbidden, NotFound
from werkzeug.wsgi import wrap_file

from http_apps.files.mime import DEFAULT_DATABASE, MimeMap, mime_map
from http_apps.files.paths import Validators, sanitize_path, wsgi_path
from http_apps.plain import Answer, WsgiApp, path_location
from http_apps.provider import HttpProvider
from xmpp.lru import LRUCache

log = logging.getLogger(__name__)

APP_NAME = "files"
DEFAULT_PATH = "/files"
DEFAULT_INDEX_FILES = ("index.html", "index.htm")
DEFAULT_CACHE_SIZE = 128
MAX_CACHE_SIZE = 100_000
DEFAULT_CACHE_MAX_FILE_SIZE = 4096
MAX_CACHE_MAX_FILE_SIZE = 16 * 1024 * 1024
#: Bytes the file wrapper reads at a time where it cannot use sendfile (TLS).
CHUNK_SIZE = 256 * 1024
#: Entries a directory listing shows at most.
LISTING_LIMIT = 10_000
HTML = "text/html"

#: Makes the body of an answer sending an open file whole (the server's file wrapper).
SendFile = Callable[[BinaryIO], Iterable[bytes]]


@dataclass(frozen=True)
class FilesOptions:
    """Prosody's options of mod_http_files, with its defaults."""

    directory: Path
    index_files: tuple[str, ...] = DEFAULT_INDEX_FILES
    dir_listing: bool = False
    cache_size: int = DEFAULT_CACHE_SIZE
    cache_max_file_size: int = DEFAULT_CACHE_MAX_FILE_SIZE

    @classmethod
    def from_config(cls, scope: Any) -> FilesOptions | None:
        """The options of a host (or the global section); None without `http_files_dir`
        (nor Prosody's older `http_path`)."""
        directory = scope.get_str("http_files_dir", scope.get_str("http_path", None))
        if directory is None:
            return None
        return cls(
            directory=scope.config.resolve_path(directory),
            index_files=tuple(map(str, scope.get_list("http_index_files",
                                                      DEFAULT_INDEX_FILES))),
            dir_listing=scope.get_bool("http_dir_listing", False),
            cache_size=scope.get_int("http_files_cache_size", DEFAULT_CACHE_SIZE,
                                     min=1, max=MAX_CACHE_SIZE),
            cache_max_file_size=scope.get_int("http_files_cache_max_file_size",
                                              DEFAULT_CACHE_MAX_FILE_SIZE,
                                              min=0, max=MAX_CACHE_MAX_FILE_SIZE))


@dataclass(frozen=True, slots=True)
class FileRequest:
    """What an answer depends on: the mount path, the path under it (from its "/"),
    and the conditional fields."""

    mount: str
    path: str
    if_none_match: str | None = None
    if_modified_since: str | None = None

    @classmethod
    def from_environ(cls, environ: dict) -> FileRequest:
        mount = wsgi_path(environ.get("SCRIPT_NAME", ""))
        path = wsgi_path(environ.get("PATH_INFO", ""))
        if mount is None or path is None:
            raise BadRequest()
        return cls(mount, path, environ.get("HTTP_IF_NONE_MATCH"),
                   environ.get("HTTP_IF_MODIFIED_SINCE"))


@dataclass(frozen=True, slots=True)
class Cached:
    """A small file (or listing) kept in memory, valid while its ETag holds."""

    data: bytes
    content_type: str | None
    etag: str


class FileServer:
    """The files of one directory; `answer` gives the response to a FileRequest."""

    def __init__(self, options: FilesOptions, mime: MimeMap) -> None:
        self.options = options
        self.mime = mime
        self.root = os.fspath(options.directory).rstrip("/")
        #: Keyed by the request path (mount path included): one per URL, as Prosody.
        self.cache: LRUCache[str, Cached] = LRUCache(options.cache_size)

    def handlers(self) -> dict[str, WsgiApp]:
        """The plain WSGI handlers (HEAD follows GET, see http_apps.plain)."""
        def get(environ: dict, start_response: Any) -> Iterable[bytes]:
            request = FileRequest.from_environ(environ)
            status, headers, body = self.answer(request, lambda handle: wrap_file(
                environ, handle, CHUNK_SIZE))
            start_response(status, headers)
            return body

        return {"GET": get}

    def answer(self, request: FileRequest, send_file: SendFile) -> Answer:
        """The answer to GET `request`; `send_file(handle)` makes the body of a file too
        large to cache. Refusals are raised as werkzeug's HTTP exceptions."""
        relative = sanitize_path(request.path)
        if relative is None:
            raise BadRequest()
        return self._serve(request, relative, request.mount + relative, send_file)

    def _serve(self, request: FileRequest, relative: str, key: str, send_file: SendFile) -> Answer:
        full = self.root + relative
        try:
            found = os.stat(full.rstrip("/") or "/")
        except OSError:
            raise NotFound() from None
        validators = Validators.of(found)
        if validators.not_modified(request.if_none_match, request.if_modified_since):
            return "304 Not Modified", validators.headers(), []
        cached = self.cache.get(key)
        if cached is not None and cached.etag == validators.etag:
            return self._data(validators, cached)
        if stat.S_ISDIR(found.st_mode):
            return self._directory(request, relative, key, validators, send_file)
        if not stat.S_ISREG(found.st_mode):
            raise Forbidden()
        return self._file(full, key, validators, send_file)

    def _directory(self, request: FileRequest, relative: str, key: str,
                   validators: Validators, send_file: SendFile) -> Answer:
        if not relative.endswith("/"):
            location = path_location(os.fsencode(request.mount + relative + "/"))
            return "301 Moved Permanently", [("Location", location),
                                             ("Content-Length", "0")], []
        for index in self.options.index_files:
            if os.path.isfile(self.root + relative + index):
                return self._serve(request, relative + index, key, send_file)
        if not self.options.dir_listing:
            raise Forbidden()
        listing = Cached(directory_listing(self.root + relative, request.mount + relative),
                         HTML, validators.etag)
        self.cache.set(key, listing)
        return self._data(validators, listing)

    def _file(self, full: str, key: str, validators: Validators, send_file: SendFile) -> Answer:
        try:
            handle = open(full, "rb")  # noqa: SIM115 - closed here or by the response
        except OSError as error:
            log.debug("Could not open %s: %s", full, error)
            raise Forbidden() from None
        content_type = self.mime.type_for(full)
        size = os.fstat(handle.fileno()).st_size
        if size > self.options.cache_max_file_size:
            headers = [*validators.headers(), ("Content-Length", str(size))]
            if content_type is not None:
                headers.append(("Content-Type", content_type))
            return "200 OK", headers, send_file(handle)
        with handle:
            data = handle.read(size)  # at most what fstat said: the cache stays bounded
        small = Cached(data, content_type, validators.etag)
        self.cache.set(key, small)
        return self._data(validators, small)

    @staticmethod
    def _data(validators: Validators, cached: Cached) -> Answer:
        headers = [*validators.headers(), ("Content-Length", str(len(cached.data)))]
        if cached.content_type is not None:
            headers.append(("Content-Type", cached.content_type))
        return "200 OK", headers, [cached.data]


def directory_listing(directory: str, url_path: str) -> bytes:
    """An HTML page linking each entry of `directory` (sorted, directories with a
    trailing slash), as prosody-modules' mod_http_dirlisting offers; at most
    LISTING_LIMIT entries."""
    with os.scandir(directory) as entries:
        names = sorted(entry.name + ("/" if entry.is_dir() else "")
                       for entry in itertools.islice(entries, LISTING_LIMIT))
    title = html.escape(_readable(url_path))
    items = "".join(
        f'<li><a href="{html.escape(quote(name.encode("utf-8", "surrogateescape")))}">'
        f"{html.escape(_readable(name))}</a></li>\n" for name in ["../", *names])
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of {title}'
            f"</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n{items}</ul>"
            "</body></html>\n").encode()


def _readable(name: str) -> str:
    """A file name for display: bytes that are not UTF-8 shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def provider(scope: Any, host: str) -> HttpProvider | None:
    """The app "files" of `host` with the options of `scope` (its config section);
    None, with a warning, when no directory is configured."""
    options = FilesOptions.from_config(scope)
    if options is None:
        log.warning("%s: http_files_dir is not set; http_files serves nothing", host)
        return None
    if not options.directory.is_dir():
        log.warning("%s: http_files_dir %s is not a directory (yet)", host, options.directory)
    database = scope.config.resolve_path(scope.get_str("mime_types_file", DEFAULT_DATABASE))
    server = FileServer(options, mime_map(database))
    return HttpProvider(name=APP_NAME, host=host, make_blueprint=None,
                        default_path=DEFAULT_PATH, wsgi_handlers=server.handlers(),
                        subpaths=True)
