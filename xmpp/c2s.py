"""Client-to-server streams (RFC 6120): negotiation, SASL, binding, stanza intake.

The session machine takes bytes in (`data_received`) and writes bytes out
through a small transport interface; it never touches a socket. The
listener owns the socket and performs what the transport is asked to do
(STARTTLS, close). BOSH sessions reuse this machine with their own transport.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.auth_throttle import Attempt, wait_text
from xmpp.errors import StanzaError, StreamError
from xmpp.filters import NO_FILTERS, add_filter, run_filters
from xmpp.hosts import payload_name
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.metrics import STANZAS_IN, STANZAS_OUT
from xmpp.sasl import (
    Challenge,
    Failure,
    Outcome,
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
    import ssl

    from xmpp.auth_throttle import FailureThrottle
    from xmpp.hosts import LocalHost
    from xmpp.router import Router
    from xmpp.scram import ScramCredentials

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
SASL_CHANNEL_BINDING = "urn:xmpp:sasl-cb:0"  # XEP-0440

# Before authentication a client has no business sending large stanzas:
# SASL payloads and registration forms are small.
DEFAULT_UNAUTHENTICATED_STANZA_SIZE = 16 * 1024


class Transport(Protocol):
    """What a session asks of the connection that carries it.

    A transport over TLS of its own may also offer `channel_bindings`
    (RFC 5056 type -> data, xmpp.channel_binding); those that lack it (BOSH,
    WebSocket: TLS ends in the HTTP layer) offer no -PLUS mechanism.
    """

    peer: tuple[str, int]
    secure: bool
    listener: str

    def write(self, data: bytes) -> None: ...
    def start_tls(self) -> None: ...
    def close(self) -> None: ...
    def call_later(self, seconds: float, callback: object) -> None: ...


class Credentials(Protocol):
    """Where SASL finds the accounts (storage.accounts.AccountStore)."""

    def check_password(self, host: str, username: str, password: str) -> bool: ...
    def scram_credentials(self, host: str, username: str,
                          mechanism: str) -> ScramCredentials | None: ...
    def scram_mechanisms(self, host: str) -> Collection[str]:
        """The SCRAM mechanisms every account of the host has material for."""
        ...


@dataclass(frozen=True, slots=True)
class UserAgent:
    """What a client said of itself at login (XEP-0388 <user-agent/>): a stable
    id per installation, and the free-text software and device names."""

    id: str
    software: str | None = None
    device: str | None = None

    def describe(self) -> str | None:
        return " / ".join(part for part in (self.software, self.device) if part) or None


class Certificates(Protocol):
    def context_for(self, host: str) -> ssl.SSLContext | None: ...


@dataclass(eq=False)
class C2SServices:
    """What client sessions need of the server, and nothing else.

    One instance serves every c2s session of a process, whatever carries it
    (TCP, BOSH, WebSocket).
    """

    hosts: Mapping[str, LocalHost]
    router: Router
    credentials: Credentials
    throttle: FailureThrottle
    clock: Callable[[], float]
    certificates: Certificates
    stanza_size_limit: Callable[[LocalHost | None], int]
    unauthenticated_stanza_size: int = DEFAULT_UNAUTHENTICATED_STANZA_SIZE
    timeout: float = 300.0  # Prosody's c2s_timeout: authenticate and bind by then
    # A failure of ours while handling a stanza: the stanza error condition when
    # it is the storage's (counted in the metrics), else None.
    storage_failure: Callable[[Exception], str | None] = lambda error: None


class _HostCredentials:
    """The SASL credential source for one host."""

    def __init__(self, credentials: Credentials, host: str) -> None:
        self.credentials = credentials
        self.host = host

    def check_password(self, username: str, password: str) -> bool:
        return self.credentials.check_password(self.host, username, password)

    def scram_credentials(self, username: str, mechanism: str) -> ScramCredentials | None:
        return self.credentials.scram_credentials(self.host, username, mechanism)


class C2SSession(XmlStreamSession):
    """One client stream, from the first header to the closing tag."""

    kind = "c2s"
    # This stream's SASL mechanisms: the RFC 6120 and SASL2 features and the
    # exchange all ask, and the answer holds until the stream restarts.
    _offered: list[str] | None = None

    def __init__(self, services: C2SServices, transport: Transport) -> None:
        self.services = services
        self.transport = transport
        self.parser: StreamParser | None = None
        if self.framed:
            self.parser = StreamParser(default_ns=ns.CLIENT,
                                       max_stanza_size=services.unauthenticated_stanza_size)
        self.host: LocalHost | None = None
        self.stream_id = ""
        self.header_sent = False
        self.username: str | None = None
        self.auth_mechanism: str | None = None  # the SASL mechanism that succeeded
        self.user_agent: UserAgent | None = None  # XEP-0388, when the client gave one
        self.jid: JID | None = None
        self.sasl: SaslExchange | None = None
        # The failure throttle's turn of the SASL exchange under way, until its verdict.
        self.sasl_attempt: Attempt | None = None
        self.closed = False
        # Still bound with no connection: a module kept it at `pre-resource-unbind`
        # (XEP-0198 hibernation). Stanzas sent to it go through its filters only.
        self.detached = False
        # Each module's own state on this session (xmpp.moduleapi session_data).
        self.module_data: dict[str, Any] = {}
        self.filters = NO_FILTERS
        # Prosody's c2s_timeout: a stream must have bound a resource by then.
        transport.call_later(services.timeout, self._check_established)

    def _check_established(self) -> None:
        if self.jid is None:
            self.close(StreamError("connection-timeout", "Took too long to authenticate"))

    @property
    def secure(self) -> bool:
        return self.transport.secure

    @property
    def authenticated(self) -> bool:
        return self.username is not None

    @property
    def channel_bindings(self) -> Mapping[str, bytes]:
        """The connection's TLS channel bindings by type, strongest first ({} without)."""
        return getattr(self.transport, "channel_bindings", None) or {}

    def describe(self) -> dict[str, object]:
        """This session in the admin listing (the contract is in xmpp.admin)."""
        return {"kind": self.kind, "id": str(self.jid) if self.jid else None,
                "address": self.transport.peer[0], "port": self.transport.peer[1],
                "secure": self.secure, "listener": self.transport.listener,
                "auth": self.auth_mechanism,
                "client": self.user_agent.describe() if self.user_agent else None}

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
        self._offered = None  # a new stream (after STARTTLS too) asks again
        if self.host is None:
            # The header comes first even when the stream is about to fail (RFC 6120 4.9.1.2).
            self._send_header(to or None)
            if not to:
                raise StreamError("improper-addressing", "A 'to' attribute is required")
            host = self.services.hosts.get(to)
            if host is None or host.is_component:
                raise StreamError("host-unknown", "This server does not serve " + to)
            self.host = host
        else:
            self._send_header(self.host.name)
            if to and to != self.host.name:
                raise StreamError("host-unknown", "Stream restarted for another host")
        if not supported_version(attrs.get("version")):
            raise StreamError("unsupported-version")
        self.send_features()

    def send_features(self) -> None:
        """<stream:features/> for where the stream is (also after SASL2's success)."""
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
            mechanisms = self.sasl_mechanisms()
            if mechanisms:
                mech_el = SubElement(features, f"{{{ns.SASL}}}mechanisms")
                for name in mechanisms:
                    SubElement(mech_el, f"{{{ns.SASL}}}mechanism").text = name
                if any(name.endswith("-PLUS") for name in mechanisms):
                    types = SubElement(features, f"{{{SASL_CHANNEL_BINDING}}}sasl-channel-binding")
                    for name in self.channel_bindings:
                        SubElement(types, f"{{{SASL_CHANNEL_BINDING}}}channel-binding",
                                   type=name)
        elif self.jid is None:
            SubElement(features, BIND)
            session = SubElement(features, SESSION)
            SubElement(session, f"{{{ns.SESSION}}}optional")
        self.host.fire("stream-features", origin=self, features=features)
        return features

    def _can_starttls(self) -> bool:
        assert self.host is not None
        return (self.framed and not self.secure and "tls" in self.host.modules
                and self.services.certificates.context_for(self.host.name) is not None)

    def _encryption_required(self) -> bool:
        assert self.host is not None
        return self.host.config.get_bool("c2s_require_encryption", True)

    def sasl_mechanisms(self) -> list[str]:
        """The SASL mechanisms this stream offers now (RFC 6120 and SASL2 alike)."""
        if self._offered is None:
            self._offered = self._sasl_mechanisms()
        return list(self._offered)

    def _sasl_mechanisms(self) -> list[str]:
        assert self.host is not None
        if "saslauth" not in self.host.modules:
            return []
        if not self.secure and self._encryption_required():
            return []
        mechanisms = offered_mechanisms(
            secure=self.secure,
            allow_unencrypted_plain_auth=self.host.config.get_bool(
                "allow_unencrypted_plain_auth", False),
            scram=self.services.credentials.scram_mechanisms(self.host.name),
            channel_binding=bool(self.channel_bindings))
        # The host's authentication provider may offer others (auth_anonymous).
        self.host.fire("sasl-mechanisms", session=self, mechanisms=mechanisms)
        return mechanisms

    # -- elements -------------------------------------------------------------

    def handle_element(self, element: Element) -> None:
        """Act on one top-level element; a failure of ours costs this stanza only."""
        try:
            if self.filters and self.filters.get("stanzas/in"):
                filtered = run_filters(self.filters["stanzas/in"], element, self)
                if filtered is None:
                    return
                element = filtered
            self._dispatch(element)
        except StreamError:
            raise
        except Exception as error:
            self._internal_error(element, error)

    def _internal_error(self, element: Element, error: Exception) -> None:
        # As Prosody: log it with context and answer the stanza, keeping the stream.
        who = self.jid or self.transport.peer[0]
        condition = self.services.storage_failure(error)
        if condition is not None:
            # The database is down or full: one line each, not a traceback per stanza.
            log.error("Storage failed handling <%s/> from %s: %s", local_name(element.tag), who,
                      error)
        else:
            log.exception("Error handling <%s/> from %s", local_name(element.tag), who)
            condition = "internal-server-error"
        if element.tag in (SASL_AUTH, SASL_RESPONSE):
            # RFC 6120 6.5.13: the client may try again later. Not a failed
            # password, so the failure throttle does not count it.
            self.sasl = None
            self.sasl_abandoned()
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
        elif not self._stream_element(element):
            raise StreamError("not-authorized", "Authenticate and bind a resource first")

    def _stream_element(self, element: Element) -> bool:
        """Prosody's `stanza/NS:name` event for an element that is no stanza
        (stream management's <r/>, <enable/>...); whether a module took it."""
        assert self.host is not None
        return bool(self.host.fire("stanza/" + payload_name(element.tag),
                                   origin=self, stanza=element))

    def _starttls(self) -> None:
        self.answer_starttls(not self.authenticated and self._can_starttls())

    # -- SASL ----------------------------------------------------------------

    def _sasl(self, element: Element) -> None:
        if self.authenticated:
            raise StreamError("policy-violation", "Already authenticated")
        if element.tag == SASL_AUTH and not self.secure \
                and self.sasl_needs_encryption(element.get("mechanism", "")):
            # RFC 6120 6.4.3, as Prosody answers: the client may STARTTLS and retry.
            self.sasl = None
            self.sasl_abandoned()
            self.transport.write(
                f"<failure xmlns='{ns.SASL}'><encryption-required/></failure>".encode())
            return
        if element.tag == SASL_ABORT:
            self.sasl = None
            self._sasl_result(Failure("aborted"))
            return
        if element.tag == SASL_AUTH:
            refusal = self.sasl_throttled()
            if refusal is not None:
                self._sasl_result(refusal)
                return
        try:
            payload = decode_payload(element.text)
        except ValueError:
            self.sasl = None
            self._sasl_result(Failure("incorrect-encoding"))
            return
        if element.tag == SASL_AUTH:
            self.sasl = self.new_sasl_exchange(element.get("mechanism", ""))
            self._sasl_result(self.sasl.start(payload))
        elif self.sasl is None:
            self._sasl_result(Failure("malformed-request", "No exchange in progress"))
        else:
            self._sasl_result(self.sasl.respond(payload or b""))

    def _sasl_result(self, result: Outcome) -> None:
        if isinstance(result, Challenge):
            self._write_sasl("challenge", result.data)
            return
        mechanism, self.sasl = self.sasl and self.sasl.mechanism, None
        if isinstance(result, Success):
            self._write_sasl("success", result.data)
            if self.parser is not None:
                self.parser.reset()
            self.authenticated_as(result.username, mechanism or "")
            return
        self.sasl_failed(result)
        failure = f"<failure xmlns='{ns.SASL}'><{result.condition}/>"
        if result.text:
            failure += f"<text>{_escape(result.text)}</text>"
        failure += "</failure>"
        self.transport.write(failure.encode())

    # What SASL over RFC 6120 and SASL2 (xmpp.modules.sasl2) share.

    def new_sasl_exchange(self, mechanism: str) -> SaslExchange:
        """An exchange for `mechanism` against this host's accounts and this
        connection's channel bindings."""
        assert self.host is not None
        return SaslExchange(mechanism, _HostCredentials(self.services.credentials, self.host.name),
                            host=self.host.name, offered=self.sasl_mechanisms(),
                            channel_bindings=self.channel_bindings)

    def sasl_throttled(self) -> Failure | None:
        """The refusal for an attempt from an address past its failure limit, or None.

        Slows password guessing from one address (Prosody has no such limit):
        past the limit an attempt is refused at once, unchecked, and the client
        is told how long to wait; attempts from one address in flight take
        turns (xmpp.auth_throttle), so this may wait for one."""
        self.sasl_abandoned()  # a new exchange replaces one that checked nothing yet
        self.sasl_attempt = None
        attempt = self.services.throttle.attempt(self.transport.peer[0], self.services.clock)
        if not attempt.refused:
            self.sasl_attempt = attempt
            return None
        log.info("Authentication from %s refused for %.1f s more", self.transport.peer[0],
                 attempt.wait)
        return Failure("temporary-auth-failure", wait_text(
            "Too many failed authentication attempts from your address", attempt.wait))

    def sasl_abandoned(self) -> None:
        """The exchange under way ended unchecked: its throttle turn goes to the
        next (a check still under way gives its verdict all the same)."""
        if self.sasl_attempt is not None:
            self.sasl_attempt.abandoned()

    def sasl_needs_encryption(self, mechanism: str) -> bool:
        """Whether authenticating with `mechanism` on this insecure stream waits for TLS
        (-PLUS binds to a TLS channel, so it always does; PLAIN and HT-* tokens
        could be read or replayed off the wire unless allowed)."""
        assert self.host is not None
        if self._encryption_required() or mechanism.endswith("-PLUS"):
            return True
        return (mechanism == "PLAIN" or mechanism.startswith("HT-")) and not \
            self.host.config.get_bool("allow_unencrypted_plain_auth", False)

    def authenticated_as(self, username: str, mechanism: str) -> None:
        """The stream is now `username`'s: lift the pre-authentication limits and
        tell the modules (`authentication-success`)."""
        address = self.transport.peer[0]
        attempt, self.sasl_attempt = self.sasl_attempt, None
        if attempt is not None:
            attempt.succeeded()
        self.username = username
        self.auth_mechanism = mechanism
        log.info("Authenticated %s@%s from %s", username, self.host and self.host.name, address)
        if self.parser is not None:
            self.parser.max_stanza_size = self.services.stanza_size_limit(self.host)
        if self.host is not None:
            self.host.fire("authentication-success", session=self)

    def sasl_failed(self, failure: Failure) -> None:
        """Count the exchange's attempt as failed and tell the modules
        (`authentication-failure`); the caller answers the client."""
        attempt, self.sasl_attempt = self.sasl_attempt, None
        if attempt is not None:  # none for a refusal: that attempt was not checked
            attempt.failed()
        if self.host is not None:
            self.host.fire("authentication-failure", session=self, condition=failure.condition)

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
            self.services.router.handle_iq(self.host, iq, "host", self)
        elif not self.authenticated:
            # Prosody's stanza/iq/<xmlns>:<name> on an unauthenticated stream: a
            # module may answer it (XEP-0401's preauth); anything else must wait.
            if payload is None or not self.host.fire(
                    f"stanza/iq/{payload_name(payload.tag)}", origin=self, stanza=iq):
                raise StreamError("not-authorized", "Authenticate first")
        elif payload is not None and payload.tag == BIND and iq.get("type") == "set":
            self._bind(iq, payload)
        elif payload is not None and payload.tag == SESSION:
            self.send(_result(iq))
        else:
            self.send(StanzaError("not-allowed", "Bind a resource first").to_reply(iq))

    def _bind(self, iq: Element, bind: Element) -> None:
        requested = (bind.findtext(f"{{{ns.BIND}}}resource") or "").strip()
        try:
            jid = self.bind_resource(requested or "vireo-" + secrets.token_hex(4))
        except StanzaError as error:
            self.send(error.to_reply(iq))
            return
        result = _result(iq)
        bound = SubElement(result, BIND)
        SubElement(bound, f"{{{ns.BIND}}}jid").text = str(jid)
        self.send(result)
        self.announce_bind()

    def bind_resource(self, resource: str) -> JID:
        """Bind this authenticated stream to `resource` (RFC 6120 7, or Bind 2);
        StanzaError("bad-request") when it is no valid resource. The caller
        answers the client, then calls `announce_bind`."""
        assert self.host is not None and self.username is not None
        try:
            jid = parse_jid(f"{self.username}@{self.host.name}/{resource}")
        except InvalidJID as error:
            raise StanzaError("bad-request", "Invalid resource") from error
        self.jid = jid
        self.services.router.bind(self, jid)
        return jid

    def announce_bind(self) -> None:
        """`resource-bind` for the modules, once the client knows its JID."""
        assert self.host is not None
        log.info("Bound %s (%s)", self.jid, "secure" if self.secure else "insecure")
        self.host.fire("resource-bind", session=self)

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
            if not self._stream_element(stanza):
                raise StreamError("unsupported-stanza-type")
            return
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
        to = stanza.get("to")
        family, names = PRE_EVENTS[stanza.tag]
        if family in self.host.events.families and self.host.fire(
                names[_address_kind(to)], origin=self, stanza=stanza, to_self=not to):
            return
        if not to:
            stanza.set("to", str(self.jid.bare))
        self.services.router.route(stanza, self)

    def send(self, stanza: Element) -> None:
        if self.closed and not self.detached:
            return
        if self.filters:
            chain = self.filters.get("stanzas/out")
            if chain:
                filtered = run_filters(chain, stanza, self)
                if filtered is None:
                    return
                stanza = filtered
        if self.closed:
            return
        STANZAS_OUT[stanza.tag] += 1
        # Outside a stream the jabber:client namespace must be written out.
        self.transport.write(serialize(stanza, ns.CLIENT if self.framed else "").encode())

    def take_over(self, old: C2SSession) -> None:
        """Continue `old`'s bound session on this authenticated stream (XEP-0198
        resumption): its JID, every module's state and filters and its place in
        the router. A connection `old` still has (a stale one) is closed without
        a word; `old` ends without unbinding."""
        assert old.jid is not None and old.username == self.username
        old.closed, old.detached = True, False
        old.transport.close()
        self.jid = old.jid
        # The session's state, but what this stream's own login left (SASL2, Bind 2
        # and FAST requests, read before the session was known) stays its own.
        self.module_data = {**old.module_data, **self.module_data}
        if old.filters is not NO_FILTERS:
            for kind, ranked in old.filter_ranks.items():
                for negated_priority, _, fn in ranked:
                    add_filter(self, kind, fn, -negated_priority)
        self.services.router.bind(self, old.jid)
        log.info("%s resumed (%s)", self.jid, "secure" if self.secure else "insecure")

    # -- closing -----------------------------------------------------------------

    def _send_error_header(self) -> None:
        self._send_header(self.host.name if self.host else None)

    def close(self, error: StreamError | None = None) -> None:
        """End the stream; Prosody's `pre-session-close` comes first (not on a lost
        connection), so modules can tell a chosen end from a network failure."""
        if self.host is not None and (self.detached or not self.closed):
            self.host.fire("pre-session-close", session=self, error=error)
        if self.detached:
            self.destroy()
        else:
            super().close(error)

    def destroy(self) -> None:
        """Unbind the session, unless a `pre-resource-unbind` handler keeps it
        bound without its connection (`detached`), as XEP-0198 hibernation does."""
        self.detached = False
        if self.jid is None or self.host is None:
            return
        if self.host.fire("pre-resource-unbind", session=self):
            self.detached = True
            return
        self.services.router.unbind(self)
        self.host.fire("resource-unbind", session=self)

    def _ended(self) -> None:
        self.sasl_abandoned()
        self.destroy()


# Prosody's pre-events for a stanza a local client sends, by stanza and by the
# kind of its `to`: no `to` counts as the sender's own bare JID.
PRE_EVENTS = {tag: (f"pre-{local_name(tag)}",
                    {kind: f"pre-{local_name(tag)}/{kind}" for kind in ("bare", "full", "host")})
              for tag in (MESSAGE, PRESENCE, IQ)}


def _address_kind(to: str | None) -> str:
    """"bare", "full" or "host", as Prosody tells them apart (malformed JIDs
    are the router's to refuse)."""
    if not to:
        return "bare"
    at = to.find("@")
    slash = to.find("/")
    if at < 0 or 0 <= slash < at:
        return "host"
    return "full" if slash > 0 else "bare"


def _result(iq: Element) -> Element:
    result = Element(IQ, {"type": "result"})
    if iq.get("id") is not None:
        result.set("id", iq.get("id", ""))
    return result


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
