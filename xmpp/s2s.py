"""Server-to-server streams (RFC 6120, XEP-0220 Server Dialback, XEP-0178 SASL EXTERNAL).

Two session machines, sans-I/O like c2s: bytes in through
`data_received`, bytes out through the transport, no socket and no clock
(the time comes in as `now`). Everything that spans connections - the pool
of outgoing links, the dialback verifications waiting on another
connection, the policy options, the keys - belongs to the federation
manager (xmpp.s2s_manager), which both machines hold as `manager`.

Incoming (`S2SIncoming`, we are the receiving or the authoritative
server): offers STARTTLS, SASL EXTERNAL when the peer's certificate is
valid for its domain, and dialback. A `<db:result/>` key is checked with
the authoritative server over another connection (the manager sends the
`<db:verify/>`); a `<db:verify/>` is answered from our own keys. Each
verified (remote, local) pair is remembered: a stanza whose `from` is not
a verified remote domain ends the stream with `invalid-from`, one whose
`to` we do not serve with `host-unknown`. Stanzas are renamed from
jabber:server to jabber:client and routed with the session as origin.

Outgoing (`S2SOutgoing`, we are the originating server): one per remote
domain, carrying stanzas of several local domains (dialback
piggybacking). Stanzas wait in a per-domain queue until their local
domain is authenticated (SASL EXTERNAL for the stream's own `from`, or a
`<db:result/>` answered `valid`), then go out in order. `<db:verify/>`
requests go out as soon as the stream is open, authenticated or not:
waiting would deadlock two servers verifying each other.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.component import to_client_namespace
from xmpp.errors import StreamError
from xmpp.jid import InvalidJID, parse_jid
from xmpp.metrics import STANZAS_IN, STANZAS_OUT
from xmpp.s2s_tls import NO_CERTIFICATE, PeerCertificate
from xmpp.stanza import STREAM_CLOSE, serialize, stream_header
from xmpp.stream import StreamParser
from xmpp.xmlstream import XmlStreamSession, supported_version

if TYPE_CHECKING:
    from xmpp.c2s import Transport
    from xmpp.s2s_manager import S2SManager

log = logging.getLogger(__name__)

DB_RESULT = f"{{{ns.DIALBACK}}}result"
DB_VERIFY = f"{{{ns.DIALBACK}}}verify"
DIALBACK_FEATURE_NS = "urn:xmpp:features:dialback"
STREAM_FEATURES = f"{{{ns.STREAMS}}}features"
STREAM_ERROR = f"{{{ns.STREAMS}}}error"
TLS_STARTTLS = f"{{{ns.TLS}}}starttls"
TLS_PROCEED = f"{{{ns.TLS}}}proceed"
TLS_FAILURE = f"{{{ns.TLS}}}failure"
SASL_MECHANISMS = f"{{{ns.SASL}}}mechanisms"
SASL_AUTH = f"{{{ns.SASL}}}auth"
SASL_SUCCESS = f"{{{ns.SASL}}}success"
SASL_FAILURE = f"{{{ns.SASL}}}failure"
SERVER_PREFIX = f"{{{ns.SERVER}}}"
STANZA_TAGS = frozenset(SERVER_PREFIX + name for name in ("message", "presence", "iq"))
# Our stream header binds these prefixes, so what we write may use them.
S2S_PREFIXES = {ns.STREAMS: "stream", ns.DIALBACK: "db"}

NOT_ENCRYPTED = "Encrypted server-to-server communication is required but was not "


def stream_domain(value: str | None) -> str | None:
    """A stream or dialback address as a domain (None when absent);
    anything but a bare domain is `improper-addressing`."""
    if not value:
        return None
    try:
        jid = parse_jid(value)
    except InvalidJID:
        raise StreamError("improper-addressing", f"Invalid address {value!r}") from None
    if jid.local is not None or jid.resource is not None:
        raise StreamError("improper-addressing", f"{value!r} is not a domain")
    return jid.domain


def dialback_element(tag: str, sender: str, to: str, *, kind: str | None = None,
              stream_id: str | None = None, key: str | None = None) -> Element:
    element = Element(tag, {"from": sender, "to": to})
    if stream_id is not None:
        element.set("id", stream_id)
    if kind is not None:
        element.set("type", kind)
    if key is not None:
        element.text = key
    return element


class _Stream(XmlStreamSession):
    """What both directions share: parsing, writing, closing."""

    kind = "s2s"
    direction = ""

    def __init__(self, manager: S2SManager, transport: Transport | None, now: float) -> None:
        self.manager = manager
        self.transport = transport
        self.parser = StreamParser(default_ns=ns.SERVER,
                                   max_stanza_size=manager.unauthed_stanza_size)
        self.stream_id = ""
        self.header_sent = False
        self.closed = False
        self.cert: PeerCertificate | None = None
        self.created = now
        self.last_active = now
        # The router's session interface: an s2s link is no bound resource.
        self.jid = None
        self.priority = 0
        self.available = False

    @property
    def secure(self) -> bool:
        return self.transport is not None and self.transport.secure

    def write(self, element: Element) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(serialize(element, ns.CLIENT, S2S_PREFIXES).encode())

    def _peer_error(self, element: Element) -> None:
        conditions = [child.tag.rpartition("}")[2] for child in element
                      if child.tag.rpartition("}")[2] != "text"]
        log.info("%s s2s stream with %s closed by the peer: %s", self.direction.capitalize(),
                 self.peer_domain, conditions[0] if conditions else "undefined-condition")
        self.close()

    def _check_certificate(self, domain: str | None) -> None:
        """Read the peer's certificate once TLS is up; where policy demands a
        valid one, close without it (Prosody's check_auth_policy)."""
        if not self.secure:
            # Policy then rests on STARTTLS being required (see _features).
            return
        if self.cert is None:
            self.cert = self.manager.peer_certificate(self.transport)
        if domain and self.manager.must_secure(domain):
            cert = self.cert or NO_CERTIFICATE
            if not cert.valid_for(domain):
                reason = cert.describe(domain)
                log.warning("Refusing insecure s2s with %s: its certificate %s", domain, reason)
                raise StreamError("not-authorized", "Your server's certificate " + reason)

    def _write_header(self, sender: str | None, to: str | None, stream_id: str | None) -> None:
        self.header_sent = True
        if self.transport is not None:
            self.transport.write(stream_header(
                default_ns=ns.SERVER, from_=sender, to=to, stream_id=stream_id,
                extra_ns={"db": ns.DIALBACK}).encode())

    @property
    def peer_domain(self) -> str | None:
        raise NotImplementedError

    def _address(self) -> tuple[Any, Any]:
        peer = getattr(self.transport, "peer", None) or (None, None)
        return peer[0], peer[1]


class S2SIncoming(_Stream):
    """A stream another server opened to us."""

    kind = "s2sin"
    direction = "incoming"

    def __init__(self, manager: S2SManager, transport: Transport, now: float) -> None:
        super().__init__(manager, transport, now)
        self.local: str | None = None     # the stream's 'to'
        self.remote: str | None = None    # the stream's 'from'
        # remote domain -> how it was authenticated ("dialback", "EXTERNAL")
        self.verified: dict[str, str] = {}
        self.pairs: set[tuple[str, str]] = set()             # (remote, local)
        self.pending: dict[tuple[str, str], str] = {}        # (remote, local) -> key
        self.external_offered = False
        self.sasl_done = False

    @property
    def peer_domain(self) -> str | None:
        return self.remote

    @property
    def authenticated(self) -> bool:
        return bool(self.pairs)

    # -- stream header and features -----------------------------------------

    def stream_opened(self, attrs: dict[str, str]) -> None:
        first = not self.header_sent
        self.stream_id = self.manager.new_stream_id()
        try:
            to, sender = stream_domain(attrs.get("to")), stream_domain(attrs.get("from"))
        except StreamError:
            if first:
                # The header goes out even when the stream fails (RFC 6120 4.9.1.2).
                self._write_header(None, None, self.stream_id)
            raise
        if first:
            self.local, self.remote = to, sender
            self._write_header(to, sender, self.stream_id)
        else:
            if to and to != self.local:
                raise StreamError("improper-addressing", "New stream 'to' does not match")
            if sender and sender != self.remote:
                raise StreamError("improper-addressing", "New stream 'from' does not match")
            self._write_header(self.local, self.remote, self.stream_id)
        if self.local is not None:
            self._check_local(self.local)
        if self.remote is not None and self.manager.serves(self.remote):
            raise StreamError("undefined-condition", "Attempt to connect from a host we serve")
        self._check_certificate(self.remote)
        if supported_version(attrs.get("version")):
            self.write(self._features())

    def _check_local(self, domain: str) -> None:
        if not self.manager.serves(domain):
            raise StreamError("host-unknown", "This host does not serve " + domain)
        if not self.manager.s2s_allowed(domain):
            raise StreamError("policy-violation",
                              "Server-to-server communication is disabled for this host")

    def _features(self) -> Element:
        features = Element(STREAM_FEATURES)
        if not self.secure and self.local and self.manager.can_accept_tls(self.local):
            tls = SubElement(features, TLS_STARTTLS)
            if self.manager.starttls_required:
                SubElement(tls, f"{{{ns.TLS}}}required")
        if (self.secure and not self.sasl_done and self.remote and self.local
                and (self.cert or NO_CERTIFICATE).valid_for(self.remote)):
            self.external_offered = True
            mechanisms = SubElement(features, SASL_MECHANISMS)
            SubElement(mechanisms, f"{{{ns.SASL}}}mechanism").text = "EXTERNAL"
        SubElement(features, f"{{{DIALBACK_FEATURE_NS}}}dialback")
        return features

    # -- elements ------------------------------------------------------------

    def handle_element(self, element: Element) -> None:
        tag = element.tag
        if tag in STANZA_TAGS:
            self._stanza(element)
        elif tag == DB_RESULT:
            self._dialback_result(element)
        elif tag == DB_VERIFY:
            self._dialback_verify(element)
        elif tag == TLS_STARTTLS:
            self._starttls()
        elif tag == SASL_AUTH:
            self._sasl_external(element)
        elif tag == STREAM_ERROR:
            self._peer_error(element)
        else:
            raise StreamError("unsupported-stanza-type")

    def _starttls(self) -> None:
        self.answer_starttls(not self.secure and bool(self.local)
                             and self.manager.can_accept_tls(self.local))

    def _sasl_external(self, element: Element) -> None:
        condition = self._external_failure(element)
        if condition is not None:
            self.transport.write(f"<failure xmlns='{ns.SASL}'><{condition}/></failure>".encode())
            if condition == "not-authorized":
                self.close()
            return
        assert self.remote is not None and self.local is not None
        self.sasl_done = True
        self.transport.write(f"<success xmlns='{ns.SASL}'/>".encode())
        self.parser.reset()
        self._authenticated(self.remote, self.local, "EXTERNAL")

    def _external_failure(self, element: Element) -> str | None:
        """Why a SASL EXTERNAL attempt fails (RFC 6120 6.5 conditions), or None."""
        if not self.external_offered or self.sasl_done:
            return "invalid-mechanism" if self.secure else "encryption-required"
        if element.get("mechanism") != "EXTERNAL":
            return "invalid-mechanism"
        text = (element.text or "").strip()
        if not text:
            return "malformed-request"
        try:
            authzid = "" if text == "=" else base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "incorrect-encoding"
        if authzid not in ("", self.remote):
            return "invalid-authzid"
        if not (self.cert or NO_CERTIFICATE).valid_for(self.remote or ""):
            return "not-authorized"
        return None

    def _dialback_result(self, element: Element) -> None:
        if element.get("type"):
            log.debug("Ignoring a typed db:result on an incoming stream")
            return
        local = stream_domain(element.get("to"))
        remote = stream_domain(element.get("from"))
        if local is None or remote is None:
            raise StreamError("improper-addressing", "Dialback needs 'from' and 'to'")
        self._check_local(local)
        if self.manager.serves(remote):
            raise StreamError("undefined-condition", "Attempt to authenticate as a host we serve")
        if not self.secure and self.manager.needs_encryption(remote):
            raise StreamError("policy-violation", NOT_ENCRYPTED + "used")
        self._check_certificate(remote)
        key = (element.text or "").strip()
        if (remote, local) in self.pairs:
            self.write(dialback_element(DB_RESULT, local, remote, kind="valid"))
        elif not key:
            self.write(dialback_element(DB_RESULT, local, remote, kind="invalid"))
        else:
            self.pending[(remote, local)] = key
            self.manager.request_verify(self, local, remote, key)

    def dialback_verified(self, remote: str, local: str, valid: bool) -> None:
        """The authoritative server's answer about the key `remote` gave for `local`."""
        if self.closed or self.pending.pop((remote, local), None) is None:
            return
        self.write(dialback_element(DB_RESULT, local, remote, kind="valid" if valid else "invalid"))
        if valid:
            self._authenticated(remote, local, "dialback")
        else:
            log.warning("Dialback key from %s for %s refused by its authoritative server",
                        remote, local)

    def _dialback_verify(self, element: Element) -> None:
        if element.get("type"):
            log.debug("Ignoring a typed db:verify on an incoming stream")
            return
        receiving = element.get("from") or ""
        originating = element.get("to") or ""
        stream_id = element.get("id") or ""
        key = (element.text or "").strip()
        valid = bool(stream_id and key and self.manager.serves(originating)
                     and self.manager.keys.verify(receiving, originating, stream_id, key))
        if not valid:
            log.warning("Asked to verify a dialback key for %s that is not ours "
                        "(an impostor claiming to be %s?)", receiving, originating)
        self.write(dialback_element(DB_VERIFY, originating, receiving, stream_id=stream_id,
                             kind="valid" if valid else "invalid"))

    def _authenticated(self, remote: str, local: str, method: str) -> None:
        first = not self.pairs
        self.pairs.add((remote, local))
        self.verified.setdefault(remote, method)
        self.parser.max_stanza_size = self.manager.stanza_size_limit
        log.info("Incoming s2s %s->%s authenticated (%s, %s)", remote, local, method,
                 "secure" if self.secure else "insecure")
        if first:
            self.manager.established(self, local)

    # -- stanzas --------------------------------------------------------------

    def _stanza(self, stanza: Element) -> None:
        if not self.pairs:
            raise StreamError("not-authorized", "Authenticate with dialback or SASL first")
        sender_text, to_text = stanza.get("from"), stanza.get("to")
        if not sender_text or not to_text:
            raise StreamError("improper-addressing", "Stanzas need 'from' and 'to'")
        try:
            sender, to = parse_jid(sender_text), parse_jid(to_text)
        except InvalidJID:
            raise StreamError("improper-addressing", "Invalid stanza address") from None
        if sender.domain not in self.verified:
            raise StreamError("invalid-from", f"{sender.domain} is not authenticated here")
        if not self.manager.serves(to.domain):
            raise StreamError("host-unknown", "This server does not serve " + to.domain)
        stanza = to_client_namespace(stanza, ns.SERVER)
        STANZAS_IN[stanza.tag] += 1
        self.manager.router.route(stanza, self)

    def send(self, stanza: Element) -> None:
        """A reply to a stanza this stream brought in: it leaves on an outgoing link."""
        self.manager.send_remote(stanza)

    # -- closing ----------------------------------------------------------------

    def peer_name(self) -> str:
        return self.remote or self._address()[0]

    def _send_error_header(self) -> None:
        self._write_header(self.local, self.remote, self.stream_id or None)

    def _ended(self) -> None:
        self.manager.incoming_closed(self)

    def describe(self) -> dict[str, Any]:
        """This link in the admin listing (the contract is in xmpp.admin)."""
        address, port = self._address()
        return {"kind": self.kind, "id": self.remote, "address": address, "port": port,
                "secure": self.secure, "listener": getattr(self.transport, "listener", None),
                "direction": self.direction, "remote_domain": self.remote,
                "local_domain": self.local,
                "domains": [f"{remote}->{local}" for remote, local in sorted(self.pairs)],
                "auth": ",".join(sorted(set(self.verified.values()))) or None}


class S2SOutgoing(_Stream):
    """Our stream to one remote domain, for any number of our domains."""

    kind = "s2sout"
    direction = "outgoing"

    def __init__(self, manager: S2SManager, remote: str, local: str, now: float) -> None:
        super().__init__(manager, None, now)
        self.remote = remote
        self.local = local                  # the stream's 'from'
        # local domain -> "pending" | "dialback" (key sent) | "valid"
        self.domains: dict[str, str] = {}
        self.methods: dict[str, str] = {}
        self.pending_since: dict[str, float] = {}
        self.queues: dict[str, list[tuple[bytes, Element]]] = {}
        self.verifies: list[Element] = []
        self.ready = False          # stream open and features done: dialback may go out
        self.starttls_sent = False
        self.sasl = ""              # "", "attempting", "succeeded", "failed"
        self.had_stream = False

    @property
    def peer_domain(self) -> str | None:
        return self.remote

    @property
    def connected(self) -> bool:
        return self.transport is not None

    # -- what the manager asks ------------------------------------------------

    def send_stanza(self, local: str, stanza: Element, now: float) -> None:
        """Send `stanza` from our domain `local` once `local` is authenticated here."""
        STANZAS_OUT[stanza.tag] += 1
        data = serialize(stanza, ns.CLIENT, S2S_PREFIXES).encode()
        state = self.domains.get(local)
        if state == "valid":
            self.last_active = now
            if self.transport is not None:
                self.transport.write(data)
            return
        self.queues.setdefault(local, []).append((data, stanza))
        if state is None:
            self.domains[local] = "pending"
            self.pending_since[local] = now
            if self.ready:
                self._start_dialback(local)

    def send_verify(self, local: str, stream_id: str, key: str) -> None:
        """Ask this (authoritative) server whether `key` is one it gave for `local`."""
        element = dialback_element(DB_VERIFY, local, self.remote, stream_id=stream_id, key=key)
        if self.ready:
            self.write(element)
        else:
            self.verifies.append(element)

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self._write_header(self.local, self.remote, None)

    def tls_established(self) -> None:
        """The transport finished the TLS handshake the peer agreed to."""
        self._write_header(self.local, self.remote, None)

    def expire(self, now: float) -> None:
        """Give up on what waited longer than `s2s_timeout`; close when idle."""
        timeout = self.manager.timeout
        expired = [local for local, since in self.pending_since.items() if now - since >= timeout]
        for local in expired:
            self._fail_domain(local, "remote-server-timeout", "timed out")
        if not self.connected:
            if now - self.created >= timeout:
                self._ended("timed out", "remote-server-timeout")
        elif expired and "valid" not in self.domains.values():
            # Nothing ever got through: a fresh connection is the better bet.
            self.close(StreamError("connection-timeout"))
        elif not self.pending_since and now - self.last_active >= self.manager.idle_timeout:
            log.info("Closing idle s2s link to %s", self.remote)
            self.close()

    def next_deadline(self) -> float:
        """When `expire` next has something to do."""
        timeout = self.manager.timeout
        deadlines = [since + timeout for since in self.pending_since.values()]
        if not self.connected:
            deadlines.append(self.created + timeout)
        elif not self.pending_since:
            deadlines.append(self.last_active + self.manager.idle_timeout)
        return min(deadlines) if deadlines else self.created + timeout

    # -- stream -----------------------------------------------------------------

    def stream_opened(self, attrs: dict[str, str]) -> None:
        self.had_stream = True
        stream_id = attrs.get("id")
        if not stream_id:
            raise StreamError("undefined-condition", "Missing stream ID")
        self.stream_id = stream_id
        self._check_certificate(self.remote)
        if not supported_version(attrs.get("version")):
            # A pre-1.0 server sends no features: dialback straight away.
            if not self.secure and self.manager.needs_encryption(self.remote):
                raise StreamError("policy-violation", NOT_ENCRYPTED + "offered")
            self._ready()

    def handle_element(self, element: Element) -> None:
        tag = element.tag
        if tag == DB_RESULT:
            self._dialback_result(element)
        elif tag == DB_VERIFY:
            self._dialback_verify(element)
        elif tag == STREAM_FEATURES:
            self._features(element)
        elif tag == TLS_PROCEED and self.starttls_sent and not self.secure:
            self.transport.start_tls()
            self.parser.reset()
        elif tag == TLS_FAILURE:
            raise StreamError("undefined-condition", "STARTTLS refused")
        elif tag == SASL_SUCCESS and self.sasl == "attempting":
            self.sasl = "succeeded"
            self.parser.reset()
            self._write_header(self.local, self.remote, None)
        elif tag == SASL_FAILURE and self.sasl == "attempting":
            self.sasl = "failed"
            log.info("SASL EXTERNAL with %s failed; trying dialback", self.remote)
            self._ready()
        elif tag == STREAM_ERROR:
            self._peer_error(element)
        elif tag in STANZA_TAGS:
            # Without XEP-0288 a server sends us stanzas on its own outgoing stream.
            log.debug("Dropping a stanza %s sent on our outgoing stream", self.remote)
        else:
            raise StreamError("unsupported-stanza-type")

    def _features(self, features: Element) -> None:
        if self.sasl == "succeeded":
            self._ready()
            return
        if not self.secure:
            if features.find(TLS_STARTTLS) is not None and self.manager.allow_tls:
                self.starttls_sent = True
                self.transport.write(f"<starttls xmlns='{ns.TLS}'/>".encode())
                return
            if self.manager.needs_encryption(self.remote):
                log.warning("Encryption required but not offered by %s", self.remote)
                raise StreamError("policy-violation", NOT_ENCRYPTED + "offered")
        elif not self.sasl and self._offers_external(features):
            self.sasl = "attempting"
            authzid = base64.b64encode(self.local.encode()).decode()
            self.transport.write(
                f"<auth xmlns='{ns.SASL}' mechanism='EXTERNAL'>{authzid}</auth>".encode())
            return
        self._ready()

    @staticmethod
    def _offers_external(features: Element) -> bool:
        mechanisms = features.find(SASL_MECHANISMS)
        return mechanisms is not None and any(
            (mechanism.text or "").strip() == "EXTERNAL" for mechanism in mechanisms)

    def _ready(self) -> None:
        self.ready = True
        if self.sasl == "succeeded":
            self._valid(self.local, "EXTERNAL")
        for local, state in list(self.domains.items()):
            if state == "pending":
                self._start_dialback(local)
        verifies, self.verifies = self.verifies, []
        for element in verifies:
            self.write(element)

    def _start_dialback(self, local: str) -> None:
        self.domains[local] = "dialback"
        self.write(dialback_element(DB_RESULT, local, self.remote,
                             key=self.manager.keys.key(self.remote, local, self.stream_id)))

    def _dialback_result(self, element: Element) -> None:
        local, sender = element.get("to") or "", element.get("from") or ""
        if sender != self.remote or self.domains.get(local) != "dialback":
            log.debug("Ignoring an unexpected db:result from %s for %s", sender, local)
            return
        if element.get("type") == "valid":
            self._valid(local, "dialback")
        else:
            log.warning("%s refused our dialback key for %s", self.remote, local)
            self._fail_domain(local, "remote-server-timeout", "dialback authentication failed")

    def _dialback_verify(self, element: Element) -> None:
        if element.get("from") != self.remote:
            log.debug("Ignoring a db:verify answer from %s on the link to %s",
                      element.get("from"), self.remote)
            return
        self.manager.verify_answered(self.remote, element.get("to") or "",
                                     element.get("id") or "", element.get("type") == "valid")

    def _valid(self, local: str, method: str) -> None:
        first = "valid" not in self.domains.values()
        self.domains[local] = "valid"
        self.methods[local] = method
        self.last_active = self.manager.now()
        self.pending_since.pop(local, None)
        self.parser.max_stanza_size = self.manager.stanza_size_limit
        log.info("Outgoing s2s %s->%s authenticated (%s, %s)", local, self.remote, method,
                 "secure" if self.secure else "insecure")
        if first:
            self.manager.established(self, local)
        queued = self.queues.pop(local, [])
        if queued and self.transport is not None:
            self.transport.write(b"".join(data for data, _stanza in queued))

    def _fail_domain(self, local: str, condition: str, reason: str) -> None:
        """Stop trying for `local` (a later stanza starts afresh) and bounce its queue."""
        self.domains.pop(local, None)
        self.pending_since.pop(local, None)
        for _data, stanza in self.queues.pop(local, []):
            self.manager.bounce(stanza, condition, reason)

    # -- closing -----------------------------------------------------------------

    def close(self, error: StreamError | None = None) -> None:
        if self.closed:
            return
        if self.transport is not None:
            if error is not None:
                log.info("Closing outgoing s2s stream to %s: %s", self.remote, error)
                self.transport.write(error.to_xml())
            self.transport.write(STREAM_CLOSE.encode())
            self.transport.close()
        self._ended()

    def connect_failed(self, reason: str) -> None:
        """No address of the remote domain took a connection."""
        log.info("Cannot reach %s: %s", self.remote, reason)
        self._ended(reason)

    def connection_lost(self) -> None:
        self._ended()

    def _ended(self, reason: str | None = None, condition: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        if condition is None:
            condition = "remote-server-timeout" if self.had_stream else "remote-server-not-found"
        for local in list(self.queues):
            self._fail_domain(local, condition, reason or "connection closed")
        self.manager.outgoing_closed(self)

    def describe(self) -> dict[str, Any]:
        """This link in the admin listing (the contract is in xmpp.admin)."""
        address, port = self._address()
        return {"kind": self.kind, "id": self.remote, "address": address, "port": port,
                "secure": self.secure, "listener": "outgoing", "direction": self.direction,
                "remote_domain": self.remote, "local_domain": self.local,
                "domains": [f"{local}->{self.remote}" for local, state
                            in sorted(self.domains.items()) if state == "valid"],
                "auth": ",".join(sorted(set(self.methods.values()))) or None}
