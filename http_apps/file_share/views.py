"""XEP-0363 HTTP File Upload routes: PUT a slot's file, GET/HEAD it (with ranges).

Mounted at the service's path (`/file_share` by default); a slot's URL is
`<path>/<slot>/<filename>` (the filename is not checked, as in Prosody).

PUT answers, in the order checked: from an address with too many failed PUTs,
429 with `Retry-After`, its token unchecked (a Vireo limit, see
xmpp.auth_throttle: every PUT counts until its token verifies); then as
Prosody 0.12: no `Authorization: Bearer` 401 (with `WWW-Authenticate:
Bearer`); a token not signed with the secret by HS256, or without `exp`, 401;
an expired token 410; a token for another slot 400; a Content-Length other
than the token's `filesize` 413; an unknown slot 404; a slot already uploaded
409; a body whose final size differs 413; else 201. The body streams to a
temporary file beside the store in bounded chunks and is renamed into place
when complete: an aborted upload leaves nothing.
`Expect: 100-continue` is answered by the WSGI server when the body is first
read, so a refused request never gets it.

GET/HEAD answer 404 for an unknown slot, 410 for an expired or missing file,
304 when not modified since `If-Modified-Since`, 206/416 for byte ranges.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO

import flask
from gevent.pywsgi import Input
from werkzeug.http import http_date, parse_date

from http_apps.file_share import tokens
from http_apps.file_share.policy import served_content_type
from http_apps.file_share.ranges import RangeNotSatisfiable, parse_range, unsatisfied_range
from http_apps.file_share.service import FileShare, hold_while_writing, to_datetime
from xmpp.auth_throttle import wait_text, whole_seconds

log = logging.getLogger(__name__)

#: Bytes read from the client or the disk at a time: memory per transfer stays bounded.
CHUNK_SIZE = 1024 * 1024

_BEARER = re.compile(r"Bearer (\S+)")

# Prosody 0.12's headers on downloads.
DOWNLOAD_HEADERS = {
    "Cache-Control": "max-age=31556952, immutable",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none';",
    "Strict-Transport-Security": "max-age=31556952",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # COMPAT: browsers without CSP frame-ancestors
    "X-XSS-Protection": "1; mode=block",
}


class ClientGone(Exception):
    """The client stopped sending the body (closed, reset or timed out)."""


def make_blueprint(share: FileShare) -> flask.Blueprint:
    """The routes of one upload service."""
    blueprint = flask.Blueprint("file_share", __name__)

    @blueprint.get("/")
    def index() -> flask.Response:
        return flask.Response("This is the Vireo HTTP file sharing endpoint.\n",
                              content_type="text/plain; charset=utf-8")

    @blueprint.route("/<slot>", methods=["GET", "PUT"])
    @blueprint.route("/<slot>/<path:_name>", methods=["GET", "PUT"])
    def slot_file(slot: str, _name: str = "") -> flask.Response:
        if flask.request.method == "PUT":
            return upload(share, slot)
        return download(share, slot)

    return blueprint


# -- PUT --------------------------------------------------------------------------------

def refuse(status: int, message: str, headers: dict[str, str] | None = None) -> flask.Response:
    """An answer to a PUT whose body was not (wholly) read: close rather than drain it."""
    response = flask.Response(message + "\n", status, headers or {},
                              content_type="text/plain; charset=utf-8")
    response.headers["Connection"] = "close"
    stream = flask.request.environ.get("wsgi.input")
    if isinstance(stream, Input):
        # pywsgi would read the rest of the body (or wait for a body that an
        # `Expect: 100-continue` client never sends) before answering.
        stream.content_length = stream.position
        stream.chunked_input = False
    return response


def upload(share: FileShare, slot: str) -> flask.Response:
    request = flask.request
    address = request.remote_addr or ""
    # A PUT that ends without a verified token counts as failed (an expired one too).
    with share.throttle.attempt(address, share.now) as attempt:
        if attempt.refused:
            log.info("%s: upload from %s refused for %.1f s more", share.host, address,
                     attempt.wait)
            return refuse(429, wait_text("Too many failed uploads from your address",
                                         attempt.wait),
                          {"Retry-After": str(whole_seconds(attempt.wait))})
        match = _BEARER.fullmatch(request.headers.get("Authorization", ""))
        if match is None:
            return refuse(401, "Missing or malformed Authorization header",
                          {"WWW-Authenticate": "Bearer"})
        try:
            claims = tokens.verify(share.secret, match.group(1), share.now())
        except tokens.TokenExpired:
            return refuse(410, "Authorization token expired")
        except tokens.TokenInvalid as error:
            log.debug("%s: refused upload token: %s", share.host, error)
            return refuse(401, "Unauthorized or invalid token",
                          {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        attempt.succeeded()
    if claims.slot != slot:
        return refuse(400, "Invalid upload slot")
    if request.content_length is not None and request.content_length != claims.filesize:
        return refuse(413, "File size does not match the slot")
    record = share.store.get(share.host, slot)
    if record is None:
        return refuse(404, "No such upload slot")
    final = share.path_for(slot)
    if record.completed is not None or final.exists():
        return refuse(409, "Upload already completed")
    return receive(share, slot, claims.filesize, request.environ["wsgi.input"],
                   request.content_length)


def receive(share: FileShare, slot: str, filesize: int, stream: BinaryIO,
            content_length: int | None) -> flask.Response:
    """Stream the body into a temporary file, then move it into place (201)."""
    share.directory.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=share.directory, prefix=f"{slot}.bin~")
    try:
        # Open, and locked, until the upload is recorded (see FileShare.recover).
        with open(fd, "wb") as out:
            hold_while_writing(out)
            received = copy_body(stream, out, content_length, limit=filesize)
            if received != filesize:
                log.debug("%s: upload to %s was %d bytes, not %d", share.host, slot,
                          received, filesize)
                return refuse(413, "File size does not match the slot")
            out.flush()
            try:
                # A link, not a rename: a concurrent upload that finished first keeps its file.
                os.link(temporary, share.path_for(slot))
            except FileExistsError:
                return refuse(409, "Upload already completed")
            if not share.store.complete(share.host, slot, to_datetime(share.now())):
                share.path_for(slot).unlink(missing_ok=True)
                return refuse(409, "Upload already completed or slot gone")
    except ClientGone as error:
        log.debug("%s: upload to %s aborted: %s", share.host, slot, error)
        return refuse(400, "Incomplete upload")
    finally:
        os.unlink(temporary)
    log.info("%s: upload of %d bytes to slot %s completed", share.host, filesize, slot)
    return flask.Response("", 201)


def copy_body(stream: BinaryIO, out: BinaryIO, content_length: int | None, *,
              limit: int) -> int:
    """Copy the request body to `out` in bounded chunks; the bytes received.

    Stops once more than `limit` bytes came (the caller answers 413). Raises
    ClientGone when the client stops sending before its Content-Length.
    """
    received = 0
    while content_length is None or received < content_length:
        want = CHUNK_SIZE if content_length is None else min(CHUNK_SIZE,
                                                             content_length - received)
        try:
            chunk = stream.read(want)
        except OSError as error:  # reset, timeout, or pywsgi's "unexpected end of file"
            raise ClientGone(str(error)) from error
        if not chunk:
            if content_length is not None:
                raise ClientGone("end of stream before Content-Length")
            break
        received += len(chunk)
        if received > limit:
            break
        out.write(chunk)
    return received


# -- GET and HEAD -------------------------------------------------------------------

def download(share: FileShare, slot: str) -> flask.Response:
    record = share.store.get(share.host, slot)
    if record is None:
        flask.abort(404)
    if share.policy.is_expired(record.created.timestamp(), share.now()) \
            or record.completed is None or record.path is None:
        flask.abort(410)
    modified = record.completed.replace(microsecond=0)
    headers = {"Last-Modified": http_date(modified), **DOWNLOAD_HEADERS}
    if not_modified_since(flask.request.headers.get("If-Modified-Since"), modified):
        return flask.Response(status=304, headers=headers)
    try:
        handle = open(record.path, "rb")  # noqa: SIM115 - closed by the response iterator
    except FileNotFoundError:
        flask.abort(410)
    size = os.fstat(handle.fileno()).st_size
    content_type = served_content_type(record.content_type)
    headers.update({
        "Content-Type": content_type,
        "Content-Disposition": share.policy.content_disposition(record.filename, content_type),
        "Accept-Ranges": "bytes",
    })
    try:
        byte_range = parse_range(flask.request.headers.get("Range"), size)
    except RangeNotSatisfiable:
        handle.close()
        headers["Content-Range"] = unsatisfied_range(size)
        return flask.Response(status=416, headers=headers)
    status, first, length = 200, 0, size
    if byte_range is not None:
        status, first, length = 206, byte_range.first, byte_range.length
        headers["Content-Range"] = byte_range.content_range()
    headers["Content-Length"] = str(length)
    # The server's wsgi.file_wrapper sends the file with sendfile(2) where it can
    # (ours and gunicorn's: from the offset, Content-Length bytes).
    file_wrapper = flask.request.environ.get("wsgi.file_wrapper")
    if file_wrapper is not None:
        handle.seek(first)
        body = file_wrapper(handle, CHUNK_SIZE)
    else:
        body = FileChunks(handle, first, length)
    response = flask.Response(body, status=status, headers=headers, direct_passthrough=True)
    # Flask's default mimetype would add a charset to text/* types.
    response.headers["Content-Type"] = content_type
    return response


def not_modified_since(header: str | None, modified: datetime) -> bool:
    """Whether If-Modified-Since (`header`) is at or after `modified`."""
    since = parse_date(header) if header else None
    return since is not None and modified <= since


class FileChunks:
    """`length` bytes of an open file from offset `first`, in bounded chunks.

    A WSGI iterable that closes the file when the server closes it, also when
    it was never iterated (HEAD).
    """

    def __init__(self, handle: BinaryIO, first: int, length: int) -> None:
        self.handle = handle
        self.left = length
        handle.seek(first)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = self.handle.read(min(CHUNK_SIZE, self.left)) if self.left > 0 else b""
        if not chunk:
            raise StopIteration
        self.left -= len(chunk)
        return chunk

    def close(self) -> None:
        self.handle.close()
