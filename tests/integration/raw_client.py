"""A bare-socket XMPP peer for sending exactly the bytes a test needs, hostile ones included."""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
import time
from pathlib import Path
from xml.etree.ElementTree import Element, XMLPullParser
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
        self._stanzas: _StanzaReader | None = None

    @classmethod
    def accepted(cls, sock: socket.socket) -> RawClient:
        """A RawClient on a connection the test accepted (a server dialling it)."""
        sock.settimeout(READ_TIMEOUT)
        client = cls.__new__(cls)
        client.sock, client.buffer, client.transcript = sock, b"", []
        client._stanzas = None
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

    def read_stanza(self, timeout: float = READ_TIMEOUT) -> Element:
        """The next stanza (or other top-level element) of a stream already
        open, parsed; once called, the rest of the stream is read this way."""
        if self._stanzas is None:
            self._stanzas = _StanzaReader()
            self._stanzas.feed(self.buffer)
            self.buffer = b""
        deadline = time.monotonic() + timeout
        while not self._stanzas.ready:
            if time.monotonic() > deadline:
                raise TimeoutError("no stanza arrived")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before a stanza arrived")
            self.transcript.append(chunk)
            self._stanzas.feed(chunk)
        return self._stanzas.ready.pop(0)

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
              resource: str = "raw") -> bytes:
        """STARTTLS, SASL PLAIN, stream restart and bind; the features offered
        after authentication."""
        self.starttls(to, cafile)
        answer = self.auth_plain(user, password)
        if b"<success" not in answer:
            raise ConnectionError(f"login refused: {answer!r}")
        features = self.open_stream(to)
        self.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        self.read_until(rb"</iq>")
        return features

    def auth_plain(self, user: str, password: str) -> bytes:
        """SASL PLAIN as `user`; the server's <success/> or <failure/>."""
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                  f"{token}</auth>")
        return self.read_until(rb"<success[^>]*>|</failure>")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _StanzaReader:
    """Parses the children of a client stream whose header was already read."""

    def __init__(self) -> None:
        self._parser = XMLPullParser(events=("start", "end"))
        self._parser.feed(b"<stream:stream xmlns='jabber:client' "
                          b"xmlns:stream='http://etherx.jabber.org/streams'>")
        self._depth = 0
        self.ready: list[Element] = []

    def feed(self, data: bytes) -> None:
        self._parser.feed(data)
        for event, element in self._parser.read_events():
            self._depth += 1 if event == "start" else -1
            if event == "end" and self._depth == 1:
                self.ready.append(element)


# -- XMPP steps over a raw client (any server with c2s_port, domain, cert, users) --

ROSTER = "{jabber:iq:roster}"
PRESENCE = "{jabber:client}presence"
LAST = "{jabber:iq:last}query"


def raw_login(server, user: str, resource: str = "raw") -> tuple[RawClient, bytes]:
    """A raw client logged in as `user`, and the features of its authenticated stream."""
    raw = RawClient(server.c2s_port)
    features = raw.login(server.domain, server.cert, user, server.users[user], resource)
    return raw, features


def raw_iq(raw: RawClient, iq_id: str, payload: str, kind: str = "get") -> None:
    raw.send(f"<iq type='{kind}' id='{iq_id}'>{payload}</iq>")


def roster_query(ver: str | None = None) -> str:
    return "<query xmlns='jabber:iq:roster'%s/>" % (f" ver='{ver}'" if ver is not None else "")


def pushed_items(push: Element) -> list[tuple[str, dict[str, str]]]:
    return [(item.get("jid", ""), dict(item.attrib)) for item in push.iter(ROSTER + "item")]


def presences_until(raw: RawClient, sender: str, last_type: str,
                    limit: int = 20) -> list[tuple[str, str]]:
    """(from, type) of the presence stanzas from `sender`'s JIDs, up to one of `last_type`."""
    seen: list[tuple[str, str]] = []
    for _ in range(limit):
        stanza = raw.read_stanza()
        if stanza.tag != PRESENCE or _bare(stanza.get("from", "")) != sender:
            continue
        seen.append((stanza.get("from", ""), stanza.get("type", "available")))
        if seen[-1][1] == last_type:
            return seen
    raise AssertionError(f"no {last_type} from {sender} in {limit} stanzas: {seen}")


def next_push(raw: RawClient, limit: int = 20) -> Element:
    """The next roster push the raw client gets (other stanzas are skipped)."""
    for _ in range(limit):
        stanza = raw.read_stanza()
        if stanza.get("type") == "set" and stanza.find(ROSTER + "query") is not None:
            return stanza
    raise AssertionError(f"no roster push in {limit} stanzas")


def raw_online(server, user: str, resource: str = "raw") -> RawClient:
    """A raw client that fetched its roster (so it gets pushes) and is available."""
    raw, _ = raw_login(server, user, resource)
    raw_iq(raw, "roster", roster_query())
    raw.send("<presence/>")
    return raw


def _bare(jid: str) -> str:
    return jid.partition("/")[0]


def last_activity(raw: RawClient, jid: str | None = None) -> Element:
    """The answer to a XEP-0012 query (to the client's own account without `jid`)."""
    to = f" to='{jid}'" if jid else ""
    raw.send(f"<iq type='get' id='last'{to}><query xmlns='jabber:iq:last'/></iq>")
    for _ in range(20):
        stanza = raw.read_stanza()
        if stanza.get("id") == "last":
            return stanza
    raise AssertionError("no answer to the last activity query")


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
