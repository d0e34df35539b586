"""A bare-socket XMPP peer for sending exactly the bytes a test needs, hostile ones included."""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
import time
from pathlib import Path
from xml.parsers import expat

READ_TIMEOUT = 10.0


class RawClient:
    """Blocking socket with helpers to read until a pattern or the peer closes."""

    def __init__(self, port: int, address: str = "127.0.0.1",
                 source_address: str | None = None) -> None:
        """`source_address` binds the client end (e.g. another loopback address)."""
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            (address, port), timeout=READ_TIMEOUT,
            source_address=(source_address, 0) if source_address else None)
        self.buffer = b""
        #: Everything read so far, as the reads returned it.
        self.transcript: list[bytes] = []

    @classmethod
    def accepted(cls, sock: socket.socket) -> RawClient:
        """A RawClient on a connection the test accepted (a server dialling it)."""
        sock.settimeout(READ_TIMEOUT)
        client = cls.__new__(cls)
        client.sock, client.buffer, client.transcript = sock, b"", []
        return client

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def read_until(self, pattern: bytes, timeout: float = READ_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.S)
        while not regex.search(self.buffer):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} not seen in {self.buffer[-500:]!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before {pattern!r}: {self.buffer[-500:]!r}")
            self.buffer += chunk
        data, self.buffer = self.buffer, b""
        self.transcript.append(data)
        return data

    def read_to_close(self, timeout: float = READ_TIMEOUT) -> bytes:
        """Everything the server sends until it closes the connection."""
        deadline = time.monotonic() + timeout
        data, self.buffer = self.buffer, b""
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
        else:
            raise TimeoutError(f"server did not close: {data[-500:]!r}")
        self.transcript.append(data)
        return data

    def open_stream(self, to: str) -> bytes:
        self.send(f"<?xml version='1.0'?><stream:stream to='{to}' version='1.0' "
                  "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
        return self.read_until(rb"</stream:features>")

    def starttls(self, to: str, cafile: Path) -> bytes:
        self.open_stream(to)
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(rb"<proceed")
        context = ssl.create_default_context(cafile=str(cafile))
        self.sock = context.wrap_socket(self.sock, server_hostname=to)
        return self.open_stream(to)

    def login(self, to: str, cafile: Path, user: str, password: str,
              resource: str = "raw") -> None:
        """STARTTLS, SASL PLAIN, stream restart and bind."""
        self.starttls(to, cafile)
        answer = self.auth_plain(user, password)
        if b"<success" not in answer:
            raise ConnectionError(f"login refused: {answer!r}")
        self.open_stream(to)
        self.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        self.read_until(rb"</iq>")

    def auth_plain(self, user: str, password: str) -> bytes:
        """SASL PLAIN as `user`; the server's <success/> or <failure/>."""
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                  f"{token}</auth>")
        return self.read_until(rb"<success[^>]*>|</failure>")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def redundant_xmlns(data: bytes) -> list[str]:
    """The elements of `data` that declare, as their default namespace, the one
    already in scope: "name xmlns='uri'" each.

    `data` is what a peer wrote: one or more streams (each from its XML
    declaration or header on, possibly unfinished) or a whole document such as
    a BOSH <body/>. Raises expat.ExpatError when a part is not well-formed.
    """
    return [found for part in _documents(data) for found in _redundant_in(part)]


def _redundant_in(document: bytes) -> list[str]:
    found: list[str] = []
    scopes: list[str | None] = [None]  # the default namespace in scope, per open element
    declared: list[str] = []  # default namespaces declared on the element starting

    def declare(prefix: str | None, uri: str) -> None:
        if prefix is None:
            declared.append(uri)

    def start(name: str, _attrs: dict) -> None:
        default = scopes[-1]
        for uri in declared:
            if uri == default:
                found.append(f"{name.rpartition(' ')[2]} xmlns='{uri}'")
            default = uri
        declared.clear()
        scopes.append(default)

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartNamespaceDeclHandler = declare
    parser.StartElementHandler = start
    parser.EndElementHandler = lambda _name: scopes.pop()
    parser.Parse(document, False)
    return found


def _documents(data: bytes) -> list[bytes]:
    """`data` cut before each stream header (with its XML declaration, if any)."""
    starts = [match.start() for match in
              re.finditer(rb"(?:<\?xml [^>]*\?>\s*)?<stream:stream[\s>]", data)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]
