"""XEP-0114 Jabber Component Protocol: the accept side of an external component's stream.

The session machine takes bytes in (`data_received`) and writes bytes out
through the same small transport interface as c2s; it never touches a
socket. The stream header names the component's domain, the component
proves it knows `component_secret` with `<handshake/>` (hex SHA-1 of stream
id + secret; failures from one address are throttled as client logins are,
see xmpp.auth_throttle), and from then on every stanza it sends is checked,
stamped and handed to the router. Which session currently serves a domain (and
what happens to a second one) is the business of the host's `component`
module (xmpp.modules.component), reached through two host events:
`component-authenticated` (a handler may raise the `conflict` StreamError)
and `component-disconnected`.

XEP-0114 defines no encryption, so component streams are not subject to
`require_encryption` (as in Prosody); they listen on loopback by default.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from xml.etree.ElementTree import Element

from xmpp import namespaces as ns
from xmpp.auth_throttle import FailureThrottle, wait_text
from xmpp.c2s import Transport
from xmpp.errors import StanzaError, StreamError
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.metrics import STANZAS_IN, STANZAS_OUT
from xmpp.stanza import serialize, stream_header
from xmpp.stream import StreamParser
from xmpp.xmlstream import XmlStreamSession

if TYPE_CHECKING:
    from xmpp.config import Config
    from xmpp.hosts import LocalHost
    from xmpp.router import Router

log = logging.getLogger(__name__)

HANDSHAKE = f"{{{ns.COMPONENT}}}handshake"
STANZA_NAMES = frozenset({"message", "presence", "iq"})

DEFAULT_PORT = 5347
# Prosody's component service is private: loopback unless configured otherwise.
LOOPBACK_INTERFACES = ("127.0.0.1", "::1")
DEFAULT_STANZA_SIZE = 512 * 1024  # Prosody 0.12's component_stanza_size_limit
MIN_STANZA_SIZE = 10000

AUTHENTICATED_EVENT = "component-authenticated"
DISCONNECTED_EVENT = "component-disconnected"


def handshake_digest(stream_id: str, secret: str) -> str:
    """The handshake a component must send: lowercase hex SHA-1 of stream id + secret."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


def to_client_namespace(element: Element, source_ns: str = ns.COMPONENT) -> Element:
    """Move `element` and its descendants out of `source_ns` into jabber:client,
    in place, so the router sees the same stanzas whatever stream they came on.
    Children in other namespaces (payloads) keep theirs."""
    prefix = "{" + source_ns + "}"
    for node in element.iter():
        if node.tag.startswith(prefix):
            node.tag = f"{{{ns.CLIENT}}}" + node.tag[len(prefix):]
    return element


def stanza_size_limit(config: Config) -> int:
    """`component_stanza_size_limit`, falling back to `s2s_stanza_size_limit` as Prosody does."""
    fallback = config.get_int("s2s_stanza_size_limit", DEFAULT_STANZA_SIZE, min=MIN_STANZA_SIZE)
    return config.get_int("component_stanza_size_limit", fallback, min=MIN_STANZA_SIZE)


def listen_interfaces(config: Config) -> list[str]:
    """Where to listen: `component_interfaces`, the older `component_interface`,
    then `local_interfaces`, then loopback (Prosody's order for private services)."""
    for name in ("component_interfaces", "component_interface", "local_interfaces"):
        value = config.get_list(name, ())
        if value:
            return [str(item) for item in value]
    return list(LOOPBACK_INTERFACES)


class ComponentSession(XmlStreamSession):
    """One external component's stream, from its header to the closing tag."""

    kind = "component"

    def __init__(self, router: Router, transport: Transport, *, throttle: FailureThrottle,
                 max_stanza_size: int = DEFAULT_STANZA_SIZE,
                 clock: Callable[[], float] = time.time) -> None:
        self.router = router
        self.clock = clock
        self.transport = transport
        self.throttle = throttle  # failed handshakes per address, shared by the listener
        self.parser = StreamParser(default_ns=ns.COMPONENT, max_stanza_size=max_stanza_size)
        self.host: LocalHost | None = None
        self.stream_id = ""
        self.header_sent = False
        # The component's domain once it has authenticated and been accepted.
        self.jid: JID | None = None
        self.validate_from = True
        self.closed = False

    @property
    def secure(self) -> bool:
        return self.transport.secure

    @property
    def authenticated(self) -> bool:
        return self.jid is not None

    # -- stream header ----------------------------------------------------------

    def stream_opened(self, attrs: dict[str, str]) -> None:
        self.stream_id = secrets.token_hex(16)
        to = attrs.get("to", "").strip().lower()
        if not to:
            raise StreamError("improper-addressing",
                              "A 'to' attribute is required on stream headers")
        host = self.router.hosts.get(to)
        if host is None or not host.is_component or "component" not in host.modules:
            raise StreamError("host-unknown",
                              f"{to} does not match any configured external components")
        self.host = host
        self._send_header()

    def _send_error_header(self) -> None:
        self._send_header()

    def _send_header(self) -> None:
        self.header_sent = True
        # XEP-0114 streams carry no version attribute.
        self.transport.write(stream_header(
            default_ns=ns.COMPONENT, from_=self.host.name if self.host else None, to=None,
            stream_id=self.stream_id or None, version=None).encode())

    # -- elements -----------------------------------------------------------------

    def handle_element(self, element: Element) -> None:
        if element.tag == HANDSHAKE and not self.authenticated:
            self._handshake(element)
            return
        uri, _, name = element.tag[1:].partition("}")
        if name not in STANZA_NAMES or uri not in (ns.COMPONENT, ns.CLIENT):
            raise StreamError("unsupported-stanza-type")
        if not self.authenticated:
            raise StreamError("not-authorized", "Send the handshake first")
        self.handle_stanza(to_client_namespace(element))

    def _handshake(self, element: Element) -> None:
        assert self.host is not None
        address = self.transport.peer[0]
        # Slows secret guessing (Prosody has no such limit): past the limit a
        # handshake is refused unchecked, with the wait; one that ends without
        # success counts as failed.
        with self.throttle.attempt(address, self.clock) as attempt:
            if attempt.refused:
                log.info("Component handshake for %s from %s refused for %.1f s more",
                         self.host.name, address, attempt.wait)
                raise StreamError("policy-violation", wait_text(
                    "Too many failed handshakes from your address", attempt.wait))
            self._check_handshake(element)
            attempt.succeeded()
        self.validate_from = self.host.config.get_bool("validate_from_addresses", True)
        # The host's component module accepts us or raises `conflict`.
        self.host.fire(AUTHENTICATED_EVENT, session=self)
        self.jid = JID(None, self.host.name)
        # The stream's default namespace already is jabber:component:accept.
        self.transport.write(b"<handshake/>")
        log.info("External component %s connected from %s", self.host.name,
                 self.transport.peer[0])

    def _check_handshake(self, element: Element) -> None:
        """StreamError("not-authorized") unless `element` is the digest of this
        stream's id and the component's secret."""
        assert self.host is not None
        if len(element):
            raise StreamError("not-authorized", "Invalid handshake")
        secret = self.host.config.get_str("component_secret", None)
        if not secret:
            log.warning("Component attempted to identify as %s, but component_secret is not set",
                        self.host.name)
            raise StreamError("not-authorized")
        supplied = (element.text or "").strip().lower()
        expected = handshake_digest(self.stream_id, secret)
        if not hmac.compare_digest(supplied.encode(), expected.encode()):
            log.info("Component authentication failed for %s from %s", self.host.name,
                     self.transport.peer[0])
            raise StreamError("not-authorized", "Given token does not match calculated token")

    # -- established session ------------------------------------------------------

    def handle_stanza(self, stanza: Element) -> None:
        """Check and stamp a stanza from the component, then route it."""
        assert self.host is not None
        STANZAS_IN[stanza.tag] += 1
        sender = stanza.get("from")
        if sender:
            try:
                source = parse_jid(sender)
            except InvalidJID:
                source = None
            if self.validate_from and (source is None or source.domain != self.host.name):
                raise StreamError("invalid-from",
                                  f"Component tried to send from address <{sender}> which is "
                                  f"not in domain <{self.host.name}>")
            if source is None:
                self._refuse(stanza, StanzaError("jid-malformed", "The source address is invalid"))
                return
            stanza.set("from", str(source))
        else:
            # COMPAT: Prosody 0.12 lets components leave 'from' out.
            stanza.set("from", self.host.name)
        if not stanza.get("to"):
            self._refuse(stanza, StanzaError(
                "bad-request", "Components MUST specify a 'to' address on stanzas"))
            return
        self.router.route(stanza, self)

    def _refuse(self, stanza: Element, error: StanzaError) -> None:
        # Never answer an error (or a result) with an error.
        if stanza.get("type") not in ("error", "result"):
            self.send(error.to_reply(stanza))

    def send(self, stanza: Element) -> None:
        """Write a (jabber:client) stanza: unprefixed, it reads as
        jabber:component:accept on this stream."""
        if not self.closed:
            STANZAS_OUT[stanza.tag] += 1
            self.transport.write(serialize(stanza).encode())

    # -- closing -------------------------------------------------------------------

    def _ended(self) -> None:
        if self.jid is not None and self.host is not None:
            log.info("External component %s disconnected", self.host.name)
            self.host.fire(DISCONNECTED_EVENT, session=self)
