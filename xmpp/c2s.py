"""Client-to-server streams (RFC 6120): negotiation, SASL, binding, stanza intake.

The session machine takes bytes in (`data_received`) and writes bytes out
through a small transport interface; it never touches a socket. The
listener owns the socket and performs what the transport is asked to do
(STARTTLS, close). BOSH sessions reuse this machine with their own transport.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from xml.etree.ElementTree import Element, SubElement

from storage.db import is_storage_error, storage_error_condition
from xmpp import namespaces as ns
from xmpp.errors import StanzaError, StreamError
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.metrics import STANZAS_IN, STANZAS_OUT, STORAGE_ERRORS
from xmpp.sasl import (
    Challenge,
    Failure,
    SaslExchange,
    Success,
    decode_payload,
    encode_payload,
    offered_mechanisms,
)
from xmpp.stanza import local_name, serialize, stream_header
from xmpp.stream import StreamParser
from xmpp.xmlstream import XmlStreamSession, supported_version

if TYPE_CHECKING:
    from xmpp.hosts import LocalHost
    from xmpp.server import VireoServer

log = logging.getLogger(__name__)

TLS_STARTTLS = f"{{{ns.TLS}}}starttls"
SASL_AUTH = f"{{{ns.SASL}}}auth"
SASL_RESPONSE = f"{{{ns.SASL}}}response"
SASL_ABORT = f"{{{ns.SASL}}}abort"
IQ = f"{{{ns.CLIENT}}}iq"
MESSAGE = f"{{{ns.CLIENT}}}message"
PRESENCE = f"{{{ns.CLIENT}}}presence"
BIND = f"{{{ns.BIND}}}bind"
SESSION = f"{{{ns.SESSION}}}session"
REGISTER_QUERY = f"{{{ns.REGISTER}}}query"

# Before authentication a client has no business sending large stanzas:
# SASL payloads and registration forms are small.
DEFAULT_UNAUTHENTICATED_STANZA_SIZE = 16 * 1024
# While a throttled authentication attempt waits, later input waits behind it;
# a client that keeps sending meanwhile is not one we need to keep.
MAX_HELD_ELEMENTS = 16


class Transport(Protocol):
    """What a session asks of the connection that carries it."""

    peer: tuple[str, int]
    secure: bool
    listener: str

    def write(self, data: bytes) -> None: ...
    def start_tls(self) -> None: ...
    def close(self) -> None: ...
    def call_later(self, seconds: float, callback: object) -> None: ...


class Accounts:
    """The SASL credential source for one host, backed by the account store."""

    def __init__(self, server: VireoServer, host: str) -> None:
        self.store = server.accounts
        self.host = host

    def check_password(self, username: str, password: str) -> bool:
        return self.store.check_password(self.host, username, password)

    def scram_credentials(self, username: str, mechanism: str):
        return self.store.scram_credentials(self.host, username, mechanism)


class C2SSession(XmlStreamSession):
    """One client stream, from the first header to the closing tag."""

    kind = "c2s"

    def __init__(self, server: VireoServer, transport: Transport) -> None:
        self.server = server
        self.transport = transport
        self.parser: StreamParser | None = None
        if self.framed:
            self.parser = StreamParser(default_ns=ns.CLIENT,
                                       max_stanza_size=server.unauthenticated_stanza_size)
        self.host: LocalHost | None = None
        self.stream_id = ""
        self.header_sent = False
        self.username: str | None = None
        self.auth_mechanism: str | None = None  # the SASL mechanism that succeeded
        self.jid: JID | None = None
        self.sasl: SaslExchange | None = None
        self.priority = 0
        self.available = False
        self.presence: Element | None = None
        self.directed: set[str] = set()
        self.roster_requested = False
        self.closed = False
        # Elements waiting behind a throttled <auth/> (None: nothing is waiting).
        self.held: list[Element] | None = None
        # Prosody's c2s_timeout: a stream must have bound a resource by then.
        transport.call_later(server.c2s_timeout, self._check_established)

    def _check_established(self) -> None:
        if self.jid is None:
            self.close(StreamError("connection-timeout", "Took too long to authenticate"))

    @property
    def secure(self) -> bool:
        return self.transport.secure

    @property
    def authenticated(self) -> bool:
        return self.username is not None

    def describe(self) -> dict[str, object]:
        """This session in the admin listing (the contract is in xmpp.admin)."""
        return {"kind": self.kind, "id": str(self.jid) if self.jid else None,
                "address": self.transport.peer[0], "port": self.transport.peer[1],
                "secure": self.secure, "listener": self.transport.listener,
                "auth": self.auth_mechanism}

    # -- input ------------------------------------------------------------------

    def open_stream(self, attrs: dict[str, str]) -> None:
        """Open, or after authentication restart, an unframed stream (BOSH)."""
        self._unframed(self.stream_opened, attrs)

    def element_received(self, element: Element) -> None:
        """Take one top-level element parsed by the transport (BOSH)."""
        self._unframed(self.handle_element, element)

    def _unframed(self, handler: Callable[[Any], None], arg: Any) -> None:
        if self.closed:
            return
        try:
            handler(arg)
        except StreamError as error:
            self.close(error)

    # -- stream header and features ------------------------------------------

    def stream_opened(self, attrs: dict[str, str]) -> None:
        to = attrs.get("to", "").strip().lower()
        self.stream_id = secrets.token_hex(8)
        if self.host is None:
            # The header comes first even when the stream is about to fail (RFC 6120 4.9.1.2).
            self._send_header(to or None)
            if not to:
                raise StreamError("improper-addressing", "A 'to' attribute is required")
            host = self.server.router.hosts.get(to)
            if host is None or host.is_component:
                raise StreamError("host-unknown", "This server does not serve " + to)
            self.host = host
        else:
            self._send_header(self.host.name)
            if to and to != self.host.name:
                raise StreamError("host-unknown", "Stream restarted for another host")
        if not supported_version(attrs.get("version")):
            raise StreamError("unsupported-version")
        self.transport.write(serialize(self._features()).encode())

    def _send_header(self, host: str | None) -> None:
        self.header_sent = True
        if self.framed:
            self.transport.write(stream_header(
                default_ns=ns.CLIENT, from_=host, to=None, stream_id=self.stream_id).encode())

    def _features(self) -> Element:
        assert self.host is not None
        features = Element(f"{{{ns.STREAMS}}}features")
        if not self.authenticated:
            if self._can_starttls():
                tls = SubElement(features, TLS_STARTTLS)
                if self._encryption_required():
                    SubElement(tls, f"{{{ns.TLS}}}required")
            mechanisms = self._mechanisms()
            if mechanisms:
                mech_el = SubElement(features, f"{{{ns.SASL}}}mechanisms")
                for name in mechanisms:
                    SubElement(mech_el, f"{{{ns.SASL}}}mechanism").text = name
            self.host.fire("stream-features/pre-auth", self, features)
        else:
            SubElement(features, BIND)
            session = SubElement(features, SESSION)
            SubElement(session, f"{{{ns.SESSION}}}optional")
            self.host.fire("stream-features/post-auth", self, features)
        return features

    def _can_starttls(self) -> bool:
        assert self.host is not None
        return (self.framed and not self.secure and "tls" in self.host.modules
                and self.server.c2s_tls.context_for(self.host.name) is not None)

    def _encryption_required(self) -> bool:
        assert self.host is not None
        return self.host.config.get_bool("c2s_require_encryption", True)

    def _mechanisms(self) -> list[str]:
        assert self.host is not None
        if "saslauth" not in self.host.modules:
            return []
        if not self.secure and self._encryption_required():
            return []
        return offered_mechanisms(
            secure=self.secure,
            allow_unencrypted_plain_auth=self.host.config.get_bool(
                "allow_unencrypted_plain_auth", False))

    # -- elements -------------------------------------------------------------

    def handle_element(self, element: Element) -> None:
        """Act on one top-level element; a failure of ours costs this stanza only."""
        if self.held is not None:
            if len(self.held) >= MAX_HELD_ELEMENTS:
                raise StreamError("policy-violation", "Too much input while authentication waits")
            self.held.append(element)
            return
        try:
            self._dispatch(element)
        except StreamError:
            raise
        except Exception as error:
            self._internal_error(element, error)

    def _internal_error(self, element: Element, error: Exception) -> None:
        # As Prosody: log it with context and answer the stanza, keeping the stream.
        who = self.jid or self.transport.peer[0]
        condition = "internal-server-error"
        if is_storage_error(error):
            # The database is down or full: one line each, not a traceback per stanza.
            log.error("Storage failed handling <%s/> from %s: %s", local_name(element.tag), who,
                      error)
            STORAGE_ERRORS.labels(store="sql").inc()
            condition = storage_error_condition(error)
        else:
            log.exception("Error handling <%s/> from %s", local_name(element.tag), who)
        if element.tag in (SASL_AUTH, SASL_RESPONSE):
            # RFC 6120 6.5.13: the client may try again later. Not a failed
            # password, so the failure throttle does not count it.
            self.sasl = None
            self.transport.write(
                f"<failure xmlns='{ns.SASL}'><temporary-auth-failure/></failure>".encode())
        elif element.tag in (IQ, MESSAGE) and element.get("type") not in ("error", "result"):
            self.send(StanzaError(condition, error_type="wait").to_reply(element))

    def _dispatch(self, element: Element) -> None:
        if self.jid is not None:
            self.handle_stanza(element)
        elif element.tag == TLS_STARTTLS:
            self._starttls()
        elif element.tag in (SASL_AUTH, SASL_RESPONSE, SASL_ABORT):
            self._sasl(element)
        elif element.tag == IQ:
            self._pre_bind_iq(element)
        else:
            raise StreamError("not-authorized", "Authenticate and bind a resource first")

    def _starttls(self) -> None:
        self.answer_starttls(not self.authenticated and self._can_starttls())

    # -- SASL ----------------------------------------------------------------

    def _sasl(self, element: Element) -> None:
        if self.authenticated:
            raise StreamError("policy-violation", "Already authenticated")
        if element.tag == SASL_AUTH and not self.secure \
                and self._needs_encryption(element.get("mechanism", "")):
            # RFC 6120 6.4.3, as Prosody answers: the client may STARTTLS and retry.
            self.sasl = None
            self.transport.write(
                f"<failure xmlns='{ns.SASL}'><encryption-required/></failure>".encode())
            return
        if element.tag == SASL_ABORT:
            self.sasl = None
            self._sasl_result(Failure("aborted"))
            return
        try:
            payload = decode_payload(element.text)
        except ValueError:
            self.sasl = None
            self._sasl_result(Failure("incorrect-encoding"))
            return
        if element.tag == SASL_AUTH:
            assert self.host is not None
            delay = self.server.auth_throttle.delay_for(self.transport.peer[0],
                                                        self.server.now())
            if delay > 0:
                # Slows password guessing from one address; Prosody does not do this.
                # The attempt itself waits (not only its answer), so sending
                # attempts without waiting for answers gains nothing.
                self.held = [element]
                self.transport.call_later(delay, self._release_held)
                return
            self.sasl = SaslExchange(element.get("mechanism", ""),
                                     Accounts(self.server, self.host.name),
                                     host=self.host.name, offered=self._mechanisms())
            self._sasl_result(self.sasl.start(payload))
        elif self.sasl is None:
            self._sasl_result(Failure("malformed-request", "No exchange in progress"))
        else:
            self._sasl_result(self.sasl.respond(payload or b""))

    def _sasl_result(self, result: Challenge | Success | Failure) -> None:
        address = self.transport.peer[0]
        if isinstance(result, Challenge):
            self._write_sasl("challenge", result.data)
            return
        mechanism, self.sasl = self.sasl and self.sasl.mechanism, None
        if isinstance(result, Success):
            self.server.auth_throttle.record_success(address, self.server.now())
            self.username = result.username
            self.auth_mechanism = mechanism
            log.info("Authenticated %s@%s from %s", result.username,
                     self.host and self.host.name, address)
            self._write_sasl("success", result.data)
            if self.parser is not None:
                self.parser.reset()
                self.parser.max_stanza_size = self.server.c2s_stanza_size_limit(self.host)
            return
        self.server.auth_throttle.record_failure(address, self.server.now())
        failure = f"<failure xmlns='{ns.SASL}'><{result.condition}/>"
        if result.text:
            failure += f"<text>{_escape(result.text)}</text>"
        failure += "</failure>"
        self.transport.write(failure.encode())

    def _release_held(self) -> None:
        """The throttle's wait is over: handle the held <auth/> and what came after it."""
        held, self.held = self.held or [], None
        for element in held:
            if self.closed:
                return
            try:
                self.handle_element(element)
            except StreamError as error:
                self.close(error)

    def _needs_encryption(self, mechanism: str) -> bool:
        """Whether authenticating with `mechanism` on this insecure stream waits for TLS."""
        assert self.host is not None
        if self._encryption_required():
            return True
        return mechanism == "PLAIN" and not self.host.config.get_bool(
            "allow_unencrypted_plain_auth", False)

    def _write_sasl(self, name: str, data: bytes | None) -> None:
        text = encode_payload(data)
        if text is None:
            self.transport.write(f"<{name} xmlns='{ns.SASL}'/>".encode())
        else:
            self.transport.write(f"<{name} xmlns='{ns.SASL}'>{text}</{name}>".encode())

    # -- binding ---------------------------------------------------------------

    def _pre_bind_iq(self, iq: Element) -> None:
        assert self.host is not None
        payload = iq[0] if len(iq) == 1 else None
        if payload is not None and payload.tag == REGISTER_QUERY and not self.authenticated:
            # XEP-0077 registration happens before authentication.
            self.server.router.handle_iq(self.host, iq, "host", self)
        elif not self.authenticated:
            raise StreamError("not-authorized", "Authenticate first")
        elif payload is not None and payload.tag == BIND and iq.get("type") == "set":
            self._bind(iq, payload)
        elif payload is not None and payload.tag == SESSION:
            self.send(_result(iq))
        else:
            self.send(StanzaError("not-allowed", "Bind a resource first").to_reply(iq))

    def _bind(self, iq: Element, bind: Element) -> None:
        assert self.host is not None and self.username is not None
        requested = (bind.findtext(f"{{{ns.BIND}}}resource") or "").strip()
        resource = requested or "vireo-" + secrets.token_hex(4)
        try:
            jid = parse_jid(f"{self.username}@{self.host.name}/{resource}")
        except InvalidJID:
            self.send(StanzaError("bad-request", "Invalid resource").to_reply(iq))
            return
        self.jid = jid
        self.server.router.bind(self, jid)
        result = _result(iq)
        bound = SubElement(result, BIND)
        SubElement(bound, f"{{{ns.BIND}}}jid").text = str(jid)
        self.send(result)
        log.info("Bound %s (%s)", jid, "secure" if self.secure else "insecure")

    # -- established session ----------------------------------------------------

    def handle_stanza(self, stanza: Element) -> None:
        assert self.jid is not None and self.host is not None
        STANZAS_IN[stanza.tag] += 1
        if stanza.tag == IQ and len(stanza) == 1 and stanza[0].tag in (BIND, SESSION) \
                and not stanza.get("to"):
            self.send(_result(stanza) if stanza[0].tag == SESSION else
                      StanzaError("not-allowed", "Already bound").to_reply(stanza))
            return
        if stanza.tag not in (MESSAGE, PRESENCE, IQ):
            raise StreamError("unsupported-stanza-type")
        sender = stanza.get("from")
        if sender:
            # Compared as JIDs, so a client's own JID in another case is its own.
            try:
                claimed = parse_jid(sender)
            except InvalidJID as error:
                raise StreamError("invalid-from") from error
            if claimed != self.jid and claimed != self.jid.bare:
                raise StreamError("invalid-from")
        stanza.set("from", str(self.jid))
        if stanza.tag == PRESENCE and self.host.fire("presence/outbound", stanza, self):
            return
        if not stanza.get("to"):
            stanza.set("to", str(self.jid.bare))
        self.server.router.route(stanza, self)

    def send(self, stanza: Element) -> None:
        if not self.closed:
            STANZAS_OUT[stanza.tag] += 1
            # Outside a stream the jabber:client namespace must be written out.
            self.transport.write(serialize(stanza, ns.CLIENT if self.framed else "").encode())

    # -- closing -----------------------------------------------------------------

    def _send_error_header(self) -> None:
        self._send_header(self.host.name if self.host else None)

    def _ended(self) -> None:
        if self.jid is not None and self.host is not None:
            self.host.fire("session-ended", self)
            self.server.router.unbind(self)


def _result(iq: Element) -> Element:
    result = Element(IQ, {"type": "result"})
    if iq.get("id") is not None:
        result.set("id", iq.get("id", ""))
    return result


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
