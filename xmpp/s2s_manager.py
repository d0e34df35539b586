"""Federation (RFC 6120 server-to-server, XEP-0220): links, policy, and the s2s port.

The I/O ring of s2s. `S2SManager` owns the pool of outgoing links (one
per remote domain, opened on demand through SRV/A lookups, closed after
`s2s_idle_timeout` without traffic), carries dialback verifications from
an incoming stream to an outgoing link and back, bounces what cannot be
delivered (remote-server-not-found when the domain does not resolve or no
address answers, remote-server-timeout when the link does not come up
within `s2s_timeout`; IQs and messages get an error, presence is dropped)
and reads the policy options once, with Prosody's names and defaults:
`s2s_require_encryption` (true), `s2s_secure_auth` (false),
`s2s_secure_domains`, `s2s_insecure_domains`,
`s2s_allow_encryption` (true), `s2s_timeout` (90 s),
`s2s_stanza_size_limit` (512 KiB), `s2s_unauthed_stanza_size_limit`
(10000), `dialback_secret` (random per process; in a cluster the same on
every node, kept in the database unless set: xmpp.modules.s2s).
In a cluster the link to a domain is one node's (`ownership-claim` of kind
`s2s`): a `<db:verify/>` asked on another node goes to that node
(`ownership-forward`), and its answer comes back to the asking node through
a claim of kind `dialback` on the verification ("REMOTE LOCAL STREAM-ID"),
held while it waits. Should that node die first, the verification is asked
again over the link as it is then (`holder_gone`). `modules_disabled = {
"s2s" }` turns federation off: the router then bounces remote stanzas with
service-unavailable.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

import gevent
from gevent.event import Event

from xmpp import namespaces as ns
from xmpp.dialback import DialbackKeys, new_secret
from xmpp.errors import StanzaError, StreamError
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.listeners import SocketTransport, dial, run_connection, start_tls_client
from xmpp.resolver import (
    DEFAULT_PORT,
    Resolver,
    ResolverConfigError,
    ResolverSettings,
    settings_from_config,
)
from xmpp.s2s import DB_VERIFY, S2SIncoming, S2SOutgoing, dialback_element
from xmpp.s2s_tls import PeerCertificate, S2STls, peer_certificate

if TYPE_CHECKING:
    from xmpp.config import Config
    from xmpp.ownership import Ownership
    from xmpp.router import Router

log = logging.getLogger(__name__)

PRESENCE = f"{{{ns.CLIENT}}}presence"
DEFAULT_TIMEOUT = 90.0                     # Prosody's s2s_timeout
DEFAULT_IDLE_TIMEOUT = 300.0               # mod_s2s_idle_timeout's default
DEFAULT_STANZA_SIZE = 512 * 1024           # Prosody's s2s_stanza_size_limit
DEFAULT_UNAUTHED_STANZA_SIZE = 10000       # Prosody's s2s_unauthed_stanza_size_limit
CONNECT_TIMEOUT = 20.0                     # per address tried


#: (remote, local, stream id): one dialback key to verify.
Verification = tuple[str, str, str]


@dataclass(eq=False)
class _Link:
    """An outgoing session and the greenlets that drive it."""

    session: S2SOutgoing
    wake: Event = field(default_factory=Event)
    connector: gevent.Greenlet | None = None
    watcher: gevent.Greenlet | None = None


class S2SManager:
    """Everything federation shares between connections."""

    def __init__(self, config: Config, router: Router, clock: Callable[[], float], *,
                 resolver: Resolver | None = None, tls: S2STls | None = None,
                 fire: Callable[..., Any] | None = None,
                 links: Ownership | None = None,
                 verifications: Ownership | None = None) -> None:
        self.config = config
        self.router = router
        self.now = clock
        # fire(name, local=None, **fields): a server-wide event, also on local
        # host `local` when given (the s2s module's; modules see links through it).
        self.fire = fire if fire is not None else _no_event
        # Where a cluster's other nodes hold links and wait for verifications
        # (xmpp.ownership); None for a manager that is alone (unit tests).
        self.links = links
        self.verifications = verifications
        self.secure_auth = bool(config.get_bool("s2s_secure_auth", False))
        self.require_encryption = bool(config.get_bool("s2s_require_encryption", True))
        # Prosody's mod_tls marks STARTTLS <required/> under s2s_secure_auth too,
        # though only `needs_encryption` decides whether a plain stream may authenticate.
        self.starttls_required = self.require_encryption or self.secure_auth
        self.allow_tls = bool(config.get_bool("s2s_allow_encryption", True))
        self.secure_domains = {str(d).lower() for d in config.get_list("s2s_secure_domains", [])}
        self.insecure_domains = {str(d).lower()
                                 for d in config.get_list("s2s_insecure_domains", [])}
        self.timeout = float(config.get_number("s2s_timeout", DEFAULT_TIMEOUT, min=1))
        self.idle_timeout = float(config.get_number("s2s_idle_timeout", DEFAULT_IDLE_TIMEOUT,
                                                    min=1))
        self.stanza_size_limit = config.get_int("s2s_stanza_size_limit", DEFAULT_STANZA_SIZE,
                                                min=10000)
        self.unauthed_stanza_size = config.get_int("s2s_unauthed_stanza_size_limit",
                                                   DEFAULT_UNAUTHED_STANZA_SIZE, min=1000)
        self.keys = DialbackKeys(config.get_str("dialback_secret", None) or new_secret())
        self.tls = tls if tls is not None else S2STls(config)
        self.resolver = resolver if resolver is not None else _resolver(config)
        self.outgoing: dict[str, _Link] = {}
        # The incoming stream waiting for each verification's answer, None when
        # it waits on another node; those of ours that went over another node's
        # link, with that node and the key (to ask again should it die).
        self._verifying: dict[Verification, S2SIncoming | None] = {}
        self._waiting_elsewhere: dict[Verification, tuple[str, str]] = {}

    # -- policy ------------------------------------------------------------------

    def serves(self, domain: str) -> bool:
        return domain in self.router.hosts

    def s2s_allowed(self, domain: str) -> bool:
        """Whether local `domain` federates (a host may disable s2s for itself)."""
        section = self.config.host(domain)
        if section is None or section.get_bool("disallow_s2s", False):
            return False
        return "s2s" not in section.get_list("modules_disabled", [])

    def must_secure(self, domain: str) -> bool:
        """Whether `domain` must authenticate with a valid certificate (Prosody's rule):
        all but `s2s_insecure_domains` under `s2s_secure_auth`, else `s2s_secure_domains`."""
        domain = domain.lower()
        if self.secure_auth:
            return domain not in self.insecure_domains
        return domain in self.secure_domains

    def needs_encryption(self, domain: str) -> bool:
        """Whether a link with `domain` may only authenticate once encrypted:
        `s2s_require_encryption`, or a certificate the policy demands."""
        return self.require_encryption or self.must_secure(domain)

    def can_accept_tls(self, local: str) -> bool:
        return self.allow_tls and self.tls.server_context(local) is not None

    @staticmethod
    def new_stream_id() -> str:
        return secrets.token_hex(12)

    @staticmethod
    def peer_certificate(transport: Any) -> PeerCertificate:
        return peer_certificate(getattr(transport, "sock", None))

    # -- routing -------------------------------------------------------------------

    def route(self, stanza: Element, to: JID, origin: Any) -> None:
        """The router's `remote`: send `stanza` over the link to `to`'s domain."""
        try:
            local = parse_jid(stanza.get("from", "")).domain
        except InvalidJID:
            log.warning("Not routing a stanza without a valid 'from' to %s", to.domain)
            return
        if not self.serves(local):
            log.warning("Not routing a stanza from %s (not ours) to %s", local, to.domain)
            return
        if not self.s2s_allowed(local):
            self.router.bounce(stanza, origin, StanzaError(
                "service-unavailable", "Server-to-server communication is disabled"))
            return
        link = self._link(to.domain, local)
        link.session.send_stanza(local, stanza, self.now())
        link.wake.set()

    def send_remote(self, stanza: Element) -> None:
        """A reply on behalf of an incoming stream: route it like any other stanza."""
        self.router.route(stanza)

    def bounce(self, stanza: Element, condition: str, reason: str) -> None:
        """Answer an undeliverable stanza to its local sender (RFC 6120 8.3.1:
        never errors or results; presence is dropped)."""
        if stanza.tag == PRESENCE or stanza.get("type") in ("error", "result"):
            return
        try:
            by = parse_jid(stanza.get("from", "")).domain
        except InvalidJID:
            return
        error = StanzaError(condition, "Server-to-server connection failed: " + reason)
        self.router.route(error.to_reply(stanza, by=by))

    # -- dialback across connections ---------------------------------------------

    def request_verify(self, session: S2SIncoming, local: str, remote: str, key: str) -> None:
        """Ask `remote`'s authoritative server whether `key` is its own (XEP-0220 2.3),
        over the one link to `remote`: ours, or another node's."""
        verification = (remote, local, session.stream_id)
        self._verifying[verification] = session
        self._ask(verification, key)

    def _ask(self, verification: Verification, key: str) -> None:
        if not self._verify_elsewhere(verification, key):
            self._send_verify(verification, key)

    def _verify_elsewhere(self, verification: Verification, key: str) -> bool:
        """Whether the request went to the node holding the link to `remote`;
        the claim on the verification tells that node where to answer."""
        remote, local, stream_id = verification
        if self.links is None or self.verifications is None or remote in self.outgoing \
                or self.links.claim(remote) is None:
            return False
        name = " ".join(verification)
        if self.verifications.claim(name) is not None:
            return False  # stream ids are random: another node waiting for it is not ours
        request = dialback_element(DB_VERIFY, local, remote, stream_id=stream_id, key=key)
        node = self.links.forward(remote, request, None)
        if node is not None:
            self._waiting_elsewhere[verification] = (node, key)
            return True
        self.verifications.release(name)
        return False

    def holder_gone(self, node: str) -> None:
        """Node `node` of the cluster stopped beating: the verifications it was
        asked to send get no answer from it. Each is asked again over the link
        to its remote domain as it is now (claimed afresh, maybe by this node):
        XEP-0220 waits for the authoritative server's word on the key, which
        one of our nodes dying does not give (nor should the remote server wait
        for `s2s_timeout` to try again)."""
        for verification, (asked, key) in list(self._waiting_elsewhere.items()):
            if asked != node:
                continue
            self._stop_waiting_elsewhere(verification)
            log.info("Dialback verification for %s asked again: node %s is gone",
                     verification[0], node)
            self._ask(verification, key)

    def _send_verify(self, verification: Verification, key: str) -> None:
        remote, local, stream_id = verification
        link = self._link(remote, local)
        link.session.send_verify(local, stream_id, key)
        link.wake.set()

    def verify_for_peer(self, request: Element) -> bool:
        """A `<db:verify/>` another node of the cluster asked to go over our
        link; the answer goes back to it (`verify_answered`)."""
        remote, local = request.get("to") or "", request.get("from") or ""
        stream_id = request.get("id") or ""
        if request.tag != DB_VERIFY or not self.serves(local) or self.serves(remote) \
                or not stream_id:
            return False
        verification = (remote, local, stream_id)
        self._verifying.setdefault(verification, None)
        self._send_verify(verification, request.text or "")
        return True

    def verify_answered(self, remote: str, local: str, stream_id: str, valid: bool) -> None:
        verification = (remote, local, stream_id)
        if verification not in self._verifying:
            return
        session = self._verifying.pop(verification)
        if session is None:
            self._answer_peer(verification, valid)
            return
        self._stop_waiting_elsewhere(verification)
        session.dialback_verified(remote, local, valid)

    def _answer_peer(self, verification: Verification, valid: bool) -> None:
        """To the node whose incoming stream waits for the answer."""
        remote, local, stream_id = verification
        if self.verifications is not None:
            answer = dialback_element(DB_VERIFY, remote, local, stream_id=stream_id,
                                      kind="valid" if valid else "invalid")
            self.verifications.forward(" ".join(verification), answer, None)

    def peer_answered(self, answer: Element) -> bool:
        """The answer to a verification this node asked another one to send."""
        verification = (answer.get("from") or "", answer.get("to") or "", answer.get("id") or "")
        if answer.tag != DB_VERIFY or verification not in self._waiting_elsewhere:
            return False
        self.verify_answered(*verification, valid=answer.get("type") == "valid")
        return True

    def _stop_waiting_elsewhere(self, verification: Verification) -> None:
        if verification in self._waiting_elsewhere and self.verifications is not None:
            del self._waiting_elsewhere[verification]
            self.verifications.release(" ".join(verification))

    def incoming_closed(self, session: S2SIncoming) -> None:
        for verification, waiting in list(self._verifying.items()):
            if waiting is session:
                del self._verifying[verification]
                self._stop_waiting_elsewhere(verification)

    def outgoing_closed(self, session: S2SOutgoing) -> None:
        link = self.outgoing.get(session.remote)
        if link is not None and link.session is session:
            del self.outgoing[session.remote]
            link.wake.set()
            if link.connector is not None and not session.connected \
                    and link.connector is not gevent.getcurrent():
                link.connector.kill(block=False)
        # Verifications that were to travel on this link will get no answer.
        for verification in [verification for verification in self._verifying
                             if verification[0] == session.remote
                             and verification not in self._waiting_elsewhere]:
            self.verify_answered(*verification, valid=False)

    # -- incoming connections --------------------------------------------------------

    def make_incoming(self, transport: SocketTransport) -> S2SIncoming:
        """The s2s listener's session factory."""
        session = S2SIncoming(self, transport, self.now())
        transport.call_later(self.timeout, lambda: self._incoming_timeout(session))
        return session

    @staticmethod
    def _incoming_timeout(session: S2SIncoming) -> None:
        if not session.closed and not session.authenticated:
            session.close(StreamError("connection-timeout"))

    def starttls_context(self, session: S2SIncoming) -> ssl.SSLContext | None:
        return self.tls.server_context(session.local) if session.local else None

    # -- outgoing connections -----------------------------------------------------------

    def _link(self, remote: str, local: str) -> _Link:
        link = self.outgoing.get(remote)
        if link is None:
            link = _Link(S2SOutgoing(self, remote, local, self.now()))
            self.outgoing[remote] = link
            link.connector = gevent.spawn(self._connect, link)
            link.watcher = gevent.spawn(self._watch, link)
        return link

    def _watch(self, link: _Link) -> None:
        """Run the link's timeouts: setup (`s2s_timeout`) and idle close."""
        session = link.session
        while not session.closed:
            link.wake.wait(timeout=max(0.0, session.next_deadline() - self.now()))
            link.wake.clear()
            if not session.closed:
                session.expire(self.now())

    def _connect(self, link: _Link) -> None:
        """RFC 6120 3.2: each SRV target (or the domain on 5269) and each of
        its addresses in turn, until one takes the TCP connection."""
        session = link.session
        targets = self.resolver.targets(session.remote)
        if not targets:
            session.connect_failed("the domain offers no XMPP server")
            return
        tried = 0
        for host, port in targets:
            for address in self.resolver.addresses(host):
                if session.closed:
                    return
                tried += 1
                try:
                    sock = dial(address, port or DEFAULT_PORT, CONNECT_TIMEOUT)
                except OSError as error:
                    log.debug("s2s to %s: [%s]:%d failed: %s", session.remote, address, port,
                              error)
                    continue
                self._run(link, SocketTransport(sock, (address, port), "outgoing", False))
                return
        session.connect_failed("no address answered" if tried else "the domain does not resolve")

    def _run(self, link: _Link, transport: SocketTransport) -> None:
        session = link.session
        if session.closed:
            transport.close()
            return
        session.connection_made(transport)
        # As the listeners' sessions (mod_limits installs its s2sout throttle).
        self.fire("session-opened", session=session)
        # What arrives may change the link's deadlines (authenticated: idle next).
        run_connection(transport, session, self._start_tls,
                       after_read=link.wake.set)

    def _start_tls(self, transport: SocketTransport, session: S2SOutgoing) -> bool:
        if not start_tls_client(transport, self.tls.client_context(session.local),
                                session.remote, self.timeout):
            return False
        session.tls_established()
        return True

    def established(self, session: S2SIncoming | S2SOutgoing, local: str) -> None:
        """Prosody's `s2sin-established` / `s2sout-established`: the session's
        first authenticated domain pair, with our domain `local`."""
        self.fire(f"{session.kind}-established", local=local, session=session)

    # -- the whole -------------------------------------------------------------------

    def outgoing_sessions(self) -> list[S2SOutgoing]:
        """Live outgoing links, for the admin listing."""
        return [link.session for link in self.outgoing.values()]

    def stop(self) -> None:
        """Close every outgoing link with system-shutdown (incoming streams
        belong to the listener, which the server closes)."""
        for link in list(self.outgoing.values()):
            # A connected link's reader ends by itself once the close is flushed.
            link.session.close(StreamError("system-shutdown"))
            if link.watcher is not None and link.watcher is not gevent.getcurrent():
                link.watcher.kill(block=False)


def _no_event(name: str, local: str | None = None, **fields: Any) -> None:
    """No module listens (a manager made without the s2s module)."""


def _resolver(config: Any) -> Resolver:
    try:
        settings = settings_from_config(config)
    except ResolverConfigError as error:
        log.error("%s; using the system's DNS servers", error)
        settings = ResolverSettings()
    return Resolver(settings)
