"""The HTTP/1.1 listeners (RFC 9112) of Prosody's `http` and `https` services, on gevent's pywsgi.

`http_ports` (5280) on `http_interfaces` (loopback) and `https_ports` (5281) on
`https_interfaces` (all), with Prosody's fallbacks (`local_interfaces`,
`interfaces`). HTTPS picks the certificate by SNI from the hosts' certificates
(xmpp.tls.SniContexts), unless a global `https_ssl` table names one certificate
for the port. Without any certificate the https ports stay closed with
Prosody's error message; the http ports serve regardless.

Limits: the request head (request line and headers) is bounded (431; 414 for a
request line alone over pywsgi's 8 KiB), must arrive within a deadline (408),
body reads and writes time out per operation, and each listener has its own
connection pool. Body size limits are per route (http_apps.create_app). A head
whose body length a proxy could read differently (repeated or non-numeric
Content-Length, both framings, a transfer coding other than chunked, a
malformed header line) gets 400 (501 for the coding) and the connection closes.

A request the application can answer without a WSGI environ (its `direct_route`, see
http_apps.plain; BOSH's POST) is served from the parsed head: no environ, no
middleware calls, the same response handling.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO
from urllib.parse import unquote

import gevent
import gevent.ssl
from gevent.pool import Pool
from gevent.pywsgi import Input, WSGIHandler, WSGIServer
from gevent.socket import wait_write

from http_apps import urls
from http_apps.errors import raw_error
from http_apps.limits import read_length
from http_apps.plain import PlainRequest
from http_apps.upgrade import EARLY_DATA, SOCKET
from xmpp.listeners import bind_socket
from xmpp.lru import remember
from xmpp.metrics import HTTP_CONNECTIONS
from xmpp.ownership import FORWARDED_HEADER
from xmpp.tls import CertificateFinder, SniContexts, TlsConfigError, server_context

log = logging.getLogger(__name__)
#: One debug line per request, as Prosody logs them.
access_log = logging.getLogger("vireo.http.access")

DEFAULT_PORTS = {"http": (5280,), "https": (5281,)}
DEFAULT_LOCAL_INTERFACES = ("127.0.0.1", "::1")
DEFAULT_INTERFACES = ("*", "::")

#: Prosody's head_size_limit: request line and headers together.
MAX_HEAD_SIZE = 10 * 1024
#: Seconds a client has to send a complete request head, once its first byte is in.
HEAD_TIMEOUT = 30.0
#: Seconds a keep-alive connection may wait for its next request: Prosody's
#: network read_timeout (14 minutes). BOSH clients idle between polls for long.
IDLE_TIMEOUT = 840.0
#: Seconds any single read or write of a body may take.
IO_TIMEOUT = 60.0
MAX_CONNECTIONS = 10000
#: Response bodies up to this size leave in the same send as the head.
COALESCE_SIZE = 64 * 1024


#: The second and its Date value last formatted.
_date: list[Any] = [-1, b""]


def _http_date_now() -> bytes:
    """The Date field's value (RFC 9110 5.6.7) of this second, formatted once per second."""
    now = int(time.time())
    if now != _date[0]:
        _date[:] = now, email.utils.formatdate(now, usegmt=True).encode("latin-1")
    return _date[1]


class HeadTooLarge(ValueError):
    """The request line and headers exceed the server's limit."""


class BadHead(ValueError):
    """A malformed request head, or one whose body length is ambiguous: 400 (or 501)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# RFC 9110 5.1 and 5.5: a token, a colon, the value without CR, LF or NUL. Its trailing
# whitespace is stripped after the match: a lazy value before `[ \t]*` cost 4x as much.
_FIELD_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n\x00]*)\r?\n?")
_DIGITS = re.compile(r"[0-9]+")
_HTTP_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
#: Versions every client sends, taken without the checks above.
_KNOWN_VERSIONS = frozenset({"HTTP/1.1", "HTTP/1.0"})


class RequestFields:
    """The header fields of a request head in arrival order, looked up by name without
    regard to case: the part of email's Message that pywsgi and this module use (get,
    get_all, deletion, `headers` lines), without its per-field policy work."""

    __slots__ = ("_by_name", "_fields")
    #: pywsgi refuses a head whose status is set; parse_fields raises instead.
    status = ""

    def __init__(self) -> None:
        self._fields: list[tuple[str, str]] = []
        self._by_name: dict[str, list[str]] = {}

    def add(self, name: str, value: str) -> None:
        self._fields.append((name, value))
        self._by_name.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of field `name`, else `default`."""
        values = self._by_name.get(name.lower())
        return values[0] if values else default

    __getitem__ = get
    getheader = get

    def get_all(self, name: str, default: Any = None) -> Any:
        """Every value of field `name` in arrival order, else `default`."""
        values = self._by_name.get(name.lower())
        return list(values) if values else default

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._by_name

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        if self._by_name.pop(key, None) is not None:
            self._fields = [(k, v) for k, v in self._fields if k.lower() != key]

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def joined(self, name: str) -> str | None:
        """The value the WSGI environ gives field `name`: its values stripped and
        joined by commas (see VireoHandler.get_environ); None when absent."""
        values = self._by_name.get(name)
        if not values:
            return None
        return values[0].strip() if len(values) == 1 else ",".join(v.strip() for v in values)

    @property
    def typeheader(self) -> str | None:
        return self.get("content-type")

    @property
    def headers(self) -> Iterator[str]:
        """The fields as header lines, as pywsgi's own message class gives them."""
        return (f"{name}: {value}\r\n" for name, value in self._fields)


def parse_fields(lines: Iterable[bytes]) -> RequestFields:
    """The header fields of a request head (its lines after the request line).

    Strict where a lenient parser would differ from a proxy in front: obs-fold
    continuation lines, whitespace before the colon and lines that are not fields
    are refused (RFC 9112 5), as are CR and NUL in values.
    """
    fields = RequestFields()
    for line in lines:
        if line in (b"\r\n", b"\n", b""):
            break
        field = _PARSED_LINES.get(line)
        if field is None:
            field = _parse_field_line(line)
        fields.add(*field)
    return fields


#: Header lines parsed lately, as (name, value): a client sends the same ones with each
#: request (Host, User-Agent, Content-Type), and a dictionary lookup costs a fifth of
#: decoding and matching a line.
_PARSED_LINES: dict[bytes, tuple[str, str]] = {}
_PARSED_LINES_KEPT = 1000
_PARSED_LINE_MAX = 256


def _parse_field_line(line: bytes) -> tuple[str, str]:
    match = _FIELD_LINE.fullmatch(line.decode("latin-1"))
    if match is None:
        raise BadHead(f"malformed header line {line[:100]!r}")
    field = match.group(1), match.group(2).rstrip(" \t")
    if len(line) <= _PARSED_LINE_MAX:
        remember(_PARSED_LINES, line, field, _PARSED_LINES_KEPT)  # lines are the client's choice
    return field


def check_framing(headers: RequestFields) -> None:
    """Refuse a head that a proxy in front could frame differently (request smuggling).

    pywsgi would take the first of several Content-Length fields, read "1_0" as
    ten, treat an unknown transfer coding as no body, and keep the connection
    after a request carrying both fields; RFC 9112 6.1 and 6.3 want an error.
    """
    lengths = headers.get_all("Content-Length") or []
    codings = headers.get_all("Transfer-Encoding") or []
    if codings:
        if lengths:
            raise BadHead("both Transfer-Encoding and Content-Length")
        if len(codings) > 1 or codings[0].strip().lower() != "chunked":
            raise BadHead(f"transfer coding {', '.join(codings)!r}", 501)
    elif len(lengths) > 1 or (lengths and not _DIGITS.fullmatch(lengths[0].strip())):
        raise BadHead(f"Content-Length {', '.join(lengths)!r}")


#: Field name -> its environ key ("" for fields the environ leaves out), as seen so far.
_ENVIRON_KEYS: dict[str, str] = {}
_ENVIRON_KEYS_KEPT = 1000


def _environ_key(name: str) -> str:
    """The environ key of a field (PEP 3333): none for names with "_", which could pass
    for another field's; Content-Type and -Length have keys without HTTP_."""
    if "_" in name:
        return ""
    key = name.replace("-", "_").upper()
    return "" if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


class FileBody:
    """This server's `wsgi.file_wrapper` (PEP 3333): a file from its current offset,
    as many bytes as the response's Content-Length. The handler hands it to the
    kernel with sendfile(2) on a plain TCP socket (no copy through Python); over TLS,
    or without a Content-Length, it is read in `block_size` pieces."""

    def __init__(self, filelike: BinaryIO, block_size: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.block_size = block_size
        self.offset = filelike.tell()

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.filelike.read(self.block_size), b"")

    def close(self) -> None:
        self.filelike.close()


class _Deadline:
    """What a gevent Timeout does for one greenlet, restarted twice per request: its
    loop timer throws `error` into the greenlet that made it. (The Timeout checks
    its state and the kind of its exception on each start.)"""

    __slots__ = ("error", "throw", "timer")

    def __init__(self, seconds: float, error: BaseException) -> None:
        self.timer = gevent.get_hub().loop.timer(seconds)
        self.error = error
        self.throw = gevent.getcurrent().throw

    def start(self) -> None:
        # The loop's time brought up to date first, so the deadline does not come early.
        self.timer.start(self.throw, self.error, update=True)

    def cancel(self) -> None:
        self.timer.stop()

    def close(self) -> None:
        self.timer.close()
        self.throw = None  # no cycle through the greenlet


class VireoHandler(WSGIHandler):
    """pywsgi's handler with a bounded head, deadlines and plain error answers."""

    server: HttpServer

    def __init__(self, sock, address, server, rfile=None) -> None:
        sock.settimeout(server.io_timeout)
        # pywsgi sends the head and a large body separately: without this, Nagle's algorithm
        # and the client's delayed ACK hold the body back ~40 ms on keep-alive connections.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(sock, address, server, rfile)

    def handle(self) -> None:
        HTTP_CONNECTIONS[self.server.service] += 1
        # One timer each per connection, started again for each request (a socket
        # timeout would make a new one for every wait), in this connection's greenlet.
        self._idle_deadline = _Deadline(self.server.idle_timeout,
                                        TimeoutError("connection idle"))
        self._head_deadline = _Deadline(self.server.head_timeout,
                                        TimeoutError("request head too slow"))
        try:
            super().handle()
        finally:
            self._idle_deadline.close()
            self._head_deadline.close()
            HTTP_CONNECTIONS[self.server.service] -= 1

    def handle_one_request(self):
        if not self._next_request_arrives():
            return None
        self._head_deadline.start()
        try:
            result = super().handle_one_request()
        finally:
            self._head_deadline.cancel()
        return result

    def _next_request_arrives(self) -> bool:
        """Wait up to the idle timeout for the first byte of a request; False closes.

        A request that is here already waits one turn of the loop: a keep-alive client
        sending its requests back to back would otherwise be served again and again
        before any other connection gets a turn. Any other request is waited for, and
        that yields anyway: the loop polled meanwhile. (Asking first, without waiting,
        whether bytes are here cost a failed recv() and its exception per request.)
        """
        loop = gevent.get_hub().loop
        polls = loop.iteration
        self.socket.settimeout(None)
        self._idle_deadline.start()
        try:
            arrived = bool(self.rfile.peek(1))
        except OSError:  # timed out, reset, or a TLS error
            return False
        finally:
            self._idle_deadline.cancel()
            if self.socket is not None:
                self.socket.settimeout(self.server.io_timeout)
        if arrived and loop.iteration == polls:
            gevent.sleep(0)
        return arrived

    def read_request(self, raw_requestline: str) -> bool:
        # pywsgi's, in one pass: it split the line twice, checked the version through a
        # generator and read each framing field from the headers more than once.
        try:
            self.requestline = raw_requestline.rstrip()
            words = self.requestline.split()
            if len(words) == 3:
                self.command, self.path, version = words
                if version not in _KNOWN_VERSIONS:  # looked up for less than the regex costs
                    if not _HTTP_VERSION.fullmatch(version):
                        # RFC 9112 2.3; pywsgi raised IndexError on "HTTP/1" (fuzzing found it).
                        raise BadHead(f"HTTP version {version[:20]!r}")
                    if version[5] >= "2" or version < "HTTP/0.9":
                        raise BadHead(f"HTTP version {version!r}")
            elif len(words) == 2 and words[0] == "GET":
                self.command, self.path = words
                version = "HTTP/0.9"
            else:
                raise BadHead(f"request line {raw_requestline[:100]!r}")
            self.request_version = version
            self.headers = fields = self.MessageClass(self.rfile, 0)
            if fields.get("transfer-encoding", "").lower() == "chunked":
                del fields["content-length"]  # check_framing refused a head with both
            length = fields.get("content-length")
            if length is not None:
                length = int(length)  # digits only, as check_framing saw
                if length and self.command == "HEAD":
                    raise BadHead("a HEAD request with a body")
            self.content_length = length
            if version == "HTTP/1.1":
                self.close_connection = fields.get("connection", "").lower() == "close"
            elif version == "HTTP/1.0":
                self.close_connection = fields.get("connection", "close").lower() != "keep-alive"
            else:
                self.close_connection = True
            self._direct = self._direct_route()
            return True
        finally:
            # The head is in: the application runs without the head deadline.
            self._head_deadline.cancel()

    #: The direct route (http_apps.plain) of the request being served, if it has one.
    _direct: Any = None

    def _direct_route(self) -> Any:
        """The application's direct route for this request: one with a body of known
        length, without Expect (100-continue needs the WSGI input) or an upgrade."""
        find = getattr(self.server.application, "direct_route", None)
        length = self.content_length
        fields = self.headers
        if (find is None or length is None or "expect" in fields
                or self._connection_upgrade_requested()):
            return None
        path, _, query = self.path.partition("?")
        address = self.client_address
        peer = str(address[0]) if isinstance(address, tuple) else ""
        # The values the WSGI environ would give (get_environ), before trusted_proxies.
        return find(PlainRequest(
            method=self.command, script_name="", path=unquote(path, encoding="latin-1"),
            query=query, host=fields.joined("host"), content_type=fields.get("content-type"),
            content_length=length, origin=fields.joined("origin"), remote_addr=peer,
            peer=peer, secure=self.server.tls_context is not None,
            forwarded=FORWARDED_HEADER in fields,
            forwarded_for=fields.joined("x-forwarded-for"),
            forwarded_proto=fields.joined("x-forwarded-proto")))

    def handle_one_response(self):
        route, self._direct = self._direct, None
        if route is not None:
            self.application = functools.partial(self._serve_directly, route)
        return super().handle_one_response()

    def _serve_directly(self, route: Any, _environ: dict, start_response: Any):
        """A request with a direct route, as a WSGI app for pywsgi's response handling:
        the route's answer, reading the body from the same input the environ would hold.

        A small answer of a known number of parts (every BOSH response) leaves from
        here, head and body in one send, and pywsgi is handed nothing more to write:
        its write path (a held head, the fields written one by one, the parts summed
        for a Content-Length) cost more CPU than the rest of a BOSH response."""
        length = self.content_length
        status, headers, body = route(lambda: read_length(self.wsgi_input, length))
        start_response(status, headers)
        if self.code in (204, 304) or not hasattr(body, "__len__") or hasattr(body, "close"):
            return body
        data = b"".join(body)  # a held BOSH request waits here
        if len(data) > COALESCE_SIZE:
            return [data]
        self._send_whole(data)
        return ()

    def _send_whole(self, data: bytes) -> None:
        """The response head, with the fields pywsgi's finalize_headers would add
        (Date, then Content-Length), and `data` as its whole body, in one send."""
        fields = self.response_headers
        if len(fields) == len(self._head.fields):
            out = [self._head.lines]  # the fields start_response checked, written once
        else:  # HTTP/1.0's Connection field added
            out = [b"HTTP/1.1 ", self.status, b"\r\n"]
            for name, value in fields:
                out += (name, b": ", value, b"\r\n")
        if self.provided_date is None:
            date = _http_date_now()
            fields.append((b"Date", date))
            out += (b"Date: ", date, b"\r\n")
            self.provided_date = True
        if self.provided_content_length is None:
            length = b"%d" % len(data)
            fields.append((b"Content-Length", length))
            out += (b"Content-Length: ", length, b"\r\n")
        self.headers_sent = True
        out += (b"\r\n", data)
        self._send(b"".join(out))

    def MessageClass(self, fp, *_args):
        """Read the header lines within what is left of the head budget, then parse them."""
        budget = self.server.max_head_size - len(self.requestline or "")
        lines = []
        while True:
            line = fp.readline(budget + 1)
            budget -= len(line)
            if budget < 0:
                raise HeadTooLarge("request head too large")
            lines.append(line)
            if line in (b"\r\n", b"\n", b""):
                break
        headers = parse_fields(lines)
        check_framing(headers)
        return headers

    def finalize_headers(self) -> None:
        if self.provided_date is None:
            self.response_headers.append((b"Date", _http_date_now()))
            self.provided_date = True  # pywsgi would format the date again
        super().finalize_headers()

    #: The response head while it waits to leave with the first piece of the body.
    _held_head: bytes | bytearray | None = None

    def _write_with_headers(self, data) -> None:
        # pywsgi sends the head, then the body: for a small body (every BOSH response) one
        # send instead of two saves a syscall and a TCP segment per response.
        if len(data) > COALESCE_SIZE:
            return super()._write_with_headers(data)
        self._held_head = b""
        try:
            return super()._write_with_headers(data)
        finally:
            head, self._held_head = self._held_head, None
            if head:  # an empty body: no send came to carry the head
                self._send(head)

    def _sendall(self, data) -> None:
        head = self._held_head
        if head is None:
            return self._send(data)
        if not head:
            self._held_head = data
            return None
        self._held_head = None
        return self._send(head + data)

    def _send(self, data) -> None:
        """pywsgi's _sendall, trying one send() first: gevent's sendall() asks the
        kernel for the socket's buffer size first, a syscall per response."""
        try:
            sent = self.socket.send(data)
            if sent < len(data):
                self.socket.sendall(memoryview(data)[sent:])
        except OSError as error:
            self.status = f"socket error: {error}"
            if self.code > 0:
                self.code = -self.code
            raise
        self.response_length += len(data)

    def process_result(self) -> None:
        body = self.result
        length = self.provided_content_length
        if not isinstance(body, FileBody) or length is None or self.code in (204, 304):
            return super().process_result()
        self.write(b"")  # the head
        left = int(length)
        if isinstance(self.socket, gevent.ssl.SSLSocket):
            while left > 0 and (chunk := body.filelike.read(min(body.block_size, left))):
                self._sendall(chunk)
                left -= len(chunk)
            return None
        self._sendfile(body.filelike.fileno(), body.offset, left)
        return None

    def _sendfile(self, source: int, offset: int, count: int) -> None:
        """`count` bytes of the file `source` from `offset`, by the kernel, waiting
        (in this greenlet) for the socket to take more within the I/O timeout."""
        target = self.socket.fileno()
        while count > 0:
            try:
                sent = os.sendfile(target, source, offset, count)
            except BlockingIOError:
                wait_write(target, timeout=self.server.io_timeout,
                           timeout_exc=TimeoutError("client not reading"))
                continue
            if sent == 0:  # the file is shorter than it was: the head promised too much
                raise OSError("file truncated while sending it")
            offset += sent
            count -= sent
            self.response_length += sent

    def log_request(self) -> None:
        # pywsgi would format the line for every request (and log it at info).
        if access_log.isEnabledFor(logging.DEBUG):
            access_log.debug("%s", self.format_request())

    def _handle_client_error(self, ex: Exception):
        if isinstance(ex, HeadTooLarge):
            return ("431", raw_error(431, "The request headers are too large."))
        if isinstance(ex, TimeoutError):
            return ("408", raw_error(408, "The request took too long to arrive."))
        if isinstance(ex, BadHead):
            log.debug("Refused HTTP request from %s: %s", self.client_address, ex)
            return (str(ex.status), raw_error(ex.status, "The request could not be understood."))
        log.debug("Bad HTTP request from %s: %s", self.client_address, ex)
        return ("400", raw_error(400, "The request could not be understood."))

    def get_environ(self) -> dict:
        if self._direct is not None:
            # Served without an environ (handle_one_response): only the body's input,
            # which pywsgi discards the rest of after the response.
            self.wsgi_input = Input(self.rfile, self.content_length)
            return {}
        # pywsgi's environ (PEP 3333), built from the parsed fields at once: its own
        # formats each field as a line again and splits it back.
        environ = self.server.get_environ()
        environ["REQUEST_METHOD"] = self.command
        environ["SCRIPT_NAME"] = ""
        path, _, environ["QUERY_STRING"] = self.path.partition("?")
        environ["PATH_INFO"] = unquote(path, encoding="latin-1")
        environ["SERVER_PROTOCOL"] = self.request_version
        fields = self.headers
        content_type = fields.get("content-type")
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
        length = fields.get("content-length")
        if length:
            environ["CONTENT_LENGTH"] = length
        address = self.client_address
        if isinstance(address, tuple):
            environ["REMOTE_ADDR"] = str(address[0])
            environ["REMOTE_PORT"] = str(address[1])
        for name, value in fields.items():
            key = _ENVIRON_KEYS.get(name)
            if key is None:
                key = _environ_key(name)
                if len(_ENVIRON_KEYS) < _ENVIRON_KEYS_KEPT:  # names are the client's choice
                    _ENVIRON_KEYS[name] = key
            if not key:
                continue
            value = value.strip()
            if key in environ:  # a repeated field: one value, as pywsgi joins them
                environ[key] += ("; " if "COOKIE" in key else ",") + value
            else:
                environ[key] = value
        reads = not self._connection_upgrade_requested()
        self.wsgi_input = Input(
            self.rfile, self.content_length,
            socket=self.socket if environ.get("HTTP_EXPECT") == "100-continue" else None,
            chunked_input=environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked")
        # pywsgi hands an upgrade request the raw stream (it has no body to frame).
        environ["wsgi.input"] = self.wsgi_input if reads else self.rfile
        environ["wsgi.input_terminated"] = reads
        # For routes that take the connection over after a 101 (http_apps.upgrade).
        environ[SOCKET] = self.socket
        environ[EARLY_DATA] = self._early_data
        environ["wsgi.file_wrapper"] = FileBody
        return environ

    def _early_data(self) -> bool:
        """Whether bytes past the request head are already here, without waiting for any."""
        self.socket.settimeout(0.0)
        try:
            return bool(self.rfile.peek(1))
        except OSError:  # would block (a TLS socket says so with an error)
            return False
        finally:
            self.socket.settimeout(self.server.io_timeout)

    def start_response(self, status: str, headers: list, exc_info=None):
        """pywsgi's, in one pass over the headers: it checked and encoded them in one loop
        and looked for the Connection, Date and Content-Length fields in another. A status
        and fields seen lately (every BOSH answer has the same) are taken as checked then."""
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no cycle through the traceback
        if status.startswith("101 "):
            # The connection now belongs to another protocol, until it closes.
            self.close_connection = True
        if status.startswith("413 "):
            # Don't read an oversized body just to discard it: close the connection instead.
            headers = [(k, v) for k, v in headers if k.lower() != "connection"]
            headers.append(("Connection", "close"))
            self.wsgi_input.content_length = self.wsgi_input.position
            self.wsgi_input.chunked_input = False
        head = _response_head(status, headers)
        self.status = head.status
        self._orig_status = status  # for the access log
        self.response_headers = encoded = list(head.fields)
        self.code = head.code
        self.provided_date = head.date
        self.provided_content_length = head.length
        self._head = head
        if self.request_version == "HTTP/1.0" and head.connection is None:
            encoded.append((b"Connection", b"close" if self.close_connection else b"keep-alive"))
        elif head.connection == "close":
            self.close_connection = True
        length = head.length
        if head.code in (304, 204) and length is not None and length != "0":
            raise self.ApplicationError(
                f"Invalid Content-Length for {head.code} response: {length!r} "
                "(must be absent or zero)".encode("latin-1"))
        return self.write


class _ResponseHead:
    """A response's status and header fields, checked and encoded (start_response)."""

    __slots__ = ("code", "connection", "date", "fields", "length", "lines", "status")

    def __init__(self, status: str, headers: Iterable[tuple[str, str]]) -> None:
        encoded, self.connection, self.date, self.length = _encoded_headers(headers)
        if not isinstance(status, str):
            raise UnicodeError("The status string must be a native string")
        if "\r" in status or "\n" in status:
            raise ValueError("carriage return or newline in status", status)
        self.code = int(status.split(" ", 1)[0])
        self.status = status.encode("latin-1")
        self.fields = tuple(encoded)
        #: The status line and the fields, as _send_whole writes them.
        self.lines = b"".join([b"HTTP/1.1 ", self.status, b"\r\n",
                               *(b"%s: %s\r\n" % field for field in encoded)])


#: Response heads checked lately, by status and fields: most answers repeat one.
_HEADS: dict[tuple, _ResponseHead] = {}
_HEADS_KEPT = 1000


def _response_head(status: str, headers: list) -> _ResponseHead:
    try:
        key = (status, *headers)
        head = _HEADS.get(key)
    except TypeError:  # an unhashable field (a list pair): checked without the cache
        return _ResponseHead(status, headers)
    if head is None:
        head = _ResponseHead(status, headers)
        if type(status) is str and all(type(f) is tuple and type(f[0]) is str
                                       and type(f[1]) is str for f in headers):
            remember(_HEADS, key, head, _HEADS_KEPT)  # Content-Length values vary
    return head


def _encoded_headers(headers: Iterable[tuple[str, str]]
                     ) -> tuple[list[tuple[bytes, bytes]], str | None, str | None, str | None]:
    """A response's header fields in latin-1, as pywsgi checks them (native strings
    without CR or LF), and the values of its Connection, Date and Content-Length."""
    encoded = []
    connection = date = length = None
    for field in headers:
        known = _ENCODED_FIELDS.get(field) if type(field) is tuple else None
        name, value = field
        if known is None:
            known = _encoded_field(name, value)
        pair, lowered = known
        encoded.append(pair)
        if lowered == "connection":
            connection = value
        elif lowered == "date":
            date = value
        elif lowered == "content-length":
            length = value
    return encoded, connection, date, length


#: Response fields encoded lately, with their names in lower case: apps answer with the
#: same ones (Content-Type, the CORS fields) again and again.
_ENCODED_FIELDS: dict[tuple[str, str], tuple[tuple[bytes, bytes], str]] = {}
_ENCODED_FIELDS_KEPT = 1000


def _encoded_field(name: str, value: str) -> tuple[tuple[bytes, bytes], str]:
    if not isinstance(name, str):
        raise UnicodeError("The header must be a native string", name, value)
    if not isinstance(value, str):
        raise UnicodeError("The value must be a native string", name, value)
    if "\r" in name or "\n" in name:
        raise ValueError("carriage return or newline in header name", name)
    if "\r" in value or "\n" in value:
        raise ValueError("carriage return or newline in header value", value)
    try:
        known = (name.encode("latin-1"), value.encode("latin-1")), name.lower()
    except UnicodeEncodeError:
        raise UnicodeError("Non-latin1 header", repr(name), repr(value)) from None
    if type(name) is str and type(value) is str:  # a subclass could encode otherwise
        remember(_ENCODED_FIELDS, (name, value), known,
                 _ENCODED_FIELDS_KEPT)  # values such as lengths vary
    return known


class HttpServer(WSGIServer):
    """One listening socket of the `http` or `https` service."""

    handler_class = VireoHandler

    def __init__(self, listener: Any, application: Any, *, service: str,
                 ssl_context: ssl.SSLContext | None = None,
                 max_head_size: int = MAX_HEAD_SIZE, head_timeout: float = HEAD_TIMEOUT,
                 io_timeout: float = IO_TIMEOUT, idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        host = listener.getsockname()[0] if hasattr(listener, "getsockname") else listener[0]
        super().__init__(listener, application, spawn=Pool(max_connections),
                         log=access_log,
                         error_log=logging.getLogger("vireo.http"),
                         environ={"SERVER_NAME": host})
        self.service = service
        self.tls_context = _for_gevent(ssl_context) if ssl_context is not None else None
        self.max_head_size = max_head_size
        self.head_timeout = head_timeout
        self.io_timeout = io_timeout
        self.idle_timeout = idle_timeout

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self.address[1]

    def handle(self, sock, address) -> None:
        if self.tls_context is None:
            return super().handle(sock, address)
        sock.settimeout(self.head_timeout)
        try:
            # gevent's cooperative SSLSocket around a stdlib or gevent context.
            tls_sock = gevent.ssl.SSLSocket(sock=sock, server_side=True, _context=self.tls_context)
        except (OSError, ssl.SSLError) as error:
            log.debug("TLS handshake with %s failed: %s", address[0], error)
            sock.close()
            return None
        try:
            return super().handle(tls_sock, address)
        finally:
            tls_sock.close()

    def get_environ(self) -> dict:
        environ = super().get_environ()
        environ["wsgi.url_scheme"] = "https" if self.tls_context is not None else "http"
        return environ


def _for_gevent(context: ssl.SSLContext) -> ssl.SSLContext:
    """Let an SNI callback of a stdlib context see the SSLSocket under gevent's SSLSocket.

    gevent hands SNI callbacks an internal socket unless the context is its own
    (as it is once `ssl` is monkey-patched); the callback needs the SSLSocket to
    switch `context`.
    """
    callback = context.sni_callback
    if callback is None or isinstance(context, gevent.ssl.SSLContext):
        return context

    def on_sni(conn: Any, server_name: str | None, ctx: ssl.SSLContext) -> Any:
        owner = getattr(conn, "_sslsock", None)
        return callback(owner() if owner is not None else conn, server_name, ctx)

    context.sni_callback = on_sni
    return context


def _first_set(config: Any, names: Iterable[str], default: Iterable[Any]) -> list:
    for name in names:
        if config.get(name, None) is not None:
            return config.get_list(name)
    return list(default)


def listen_addresses(config: Any, service: str) -> list[tuple[str, int]]:
    """(interface, port) pairs of `service` ("http" or "https"), as Prosody's portmanager."""
    own = (f"{service}_interfaces", f"{service}_interface")
    if service == "http":  # a private service: loopback unless told otherwise
        interfaces = _first_set(config, (*own, "local_interfaces"), DEFAULT_LOCAL_INTERFACES)
    else:
        interfaces = _first_set(config, (*own, "interfaces", "interface"), DEFAULT_INTERFACES)
    ports = config.get_list(f"{service}_ports", DEFAULT_PORTS[service])
    return [(str(i), int(p)) for i in dict.fromkeys(interfaces) for p in dict.fromkeys(ports)]


def https_context(config: Any) -> ssl.SSLContext | None:
    """The https ports' context: a global `https_ssl` certificate, else SNI over the hosts'."""
    manual = config.globals.get("https_ssl")
    try:
        if isinstance(manual, dict) and manual.get("certificate"):
            # Prosody: a manual https_ssl certificate serves every name (no SNI selection).
            settings = CertificateFinder(config).service_settings("https")
            return server_context(settings["certificate"], settings["key"],
                                  ciphers=settings.get("ciphers"),
                                  protocol=settings.get("protocol"),
                                  cafile=settings.get("cafile"),
                                  profile=str(config.get("tls_profile", "intermediate")))
        contexts = SniContexts(config, service="https")
    except (TlsConfigError, KeyError) as error:
        log.error("Unusable https_ssl: %s", error)
        return None
    for problem in contexts.errors:
        log.error("HTTPS certificate problem: %s", problem)
    return contexts.server_context()


def reload_certificates(servers: Iterable[HttpServer], config: Any) -> None:
    """SIGHUP: the TLS ports among `servers` serve `config`'s certificates to
    new connections; connections already open keep theirs."""
    encrypted = [server for server in servers if server.tls_context is not None]
    if not encrypted:
        return
    context = https_context(config)
    if context is None:
        log.error("HTTPS certificates not reloaded: no usable certificate; keeping the old ones")
        return
    context = _for_gevent(context)
    for server in encrypted:
        server.tls_context = context


def start_http_servers(config: Any, wsgi_app: Any, *,
                       services: Iterable[str] = ("http", "https"),
                       **limits: Any) -> list[HttpServer]:
    """Open and start every port of `services`; ports that fail are logged and skipped.

    `limits` are HttpServer keyword arguments (max_head_size, head_timeout,
    io_timeout, max_connections).
    """
    servers = []
    for service in services:
        addresses = listen_addresses(config, service)
        context = None
        if service == "https" and addresses:
            context = https_context(config)
            if context is None:
                for _interface, port in dict.fromkeys(addresses):
                    log.error("Error binding encrypted port for https: No certificate present "
                              "in SSL/TLS configuration for https port %d", port)
                continue
        for interface, port in addresses:
            try:
                sock = bind_socket(interface, port)
            except OSError as error:
                log.error("Failed to open server port %s on %s for %s: %s",
                          port, interface, service, error)
                continue
            if sock is None:
                continue
            server = HttpServer(sock, wsgi_app, service=service, ssl_context=context, **limits)
            server.start()
            urls.mark_listening(service, server.port)
            log.info("Listening for %s on [%s]:%d", service, interface, server.port)
            servers.append(server)
    return servers


def stop_http_servers(servers: Iterable[HttpServer], timeout: float = 5.0) -> None:
    """Close every listener, let requests in flight finish within `timeout`, then stop."""
    servers = list(servers)
    for server in servers:
        server.close()
    for server in servers:
        server.stop(timeout=timeout)
        urls.mark_listening(server.service, server.port, listening=False)
