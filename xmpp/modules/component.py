"""XEP-0114 external components on their host: routing to the connected one (mod_component).

Loaded on every `Component "name"` section without a module of its own.
The host's `component_handler` sends each stanza for the domain to the
component's live stream; while none is connected, stanzas bounce with
`remote-server-timeout`. `component_conflict_resolve` decides what a second
authenticated connection does: `kick_new` (refused) or `kick_old`.
`add_listener(server)` opens `component_ports` when any such host exists;
its connections share one throttle of failed handshakes per address.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.auth_throttle import failure_throttle
from xmpp.component import (
    AUTHENTICATED_EVENT,
    DEFAULT_PORT,
    DISCONNECTED_EVENT,
    ComponentSession,
    listen_interfaces,
    stanza_size_limit,
)
from xmpp.errors import StanzaError, StreamError
from xmpp.hosts import LocalHost, ModuleContext
from xmpp.stanza import make_iq_result

if TYPE_CHECKING:
    from xmpp.server import VireoServer

log = logging.getLogger(__name__)

NOT_CONNECTED = "xmpp:prosody.im/protocol/component"
CONFLICT_POLICIES = ("kick_new", "kick_old")
IQ = f"{{{ns.CLIENT}}}iq"
DISCO_INFO = f"{{{ns.DISCO_INFO}}}query"


class ComponentLink:
    """Which stream currently serves one external component's domain."""

    def __init__(self, host: LocalHost, policy: str) -> None:
        self.host = host
        self.policy = policy
        self.session: ComponentSession | None = None

    def attach(self, session: ComponentSession) -> bool:
        """Make `session` the component's stream, or raise `conflict` (kick_new)."""
        old = self.session
        if old is not None and old is not session:
            if self.policy == "kick_new":
                log.warning("%s: a second component connection was refused (kick_new)",
                            self.host.name)
                raise StreamError("conflict", "Component already connected")
            old.close(StreamError("conflict", "Replaced by a new connection"))
        self.session = session
        return True

    def detach(self, session: ComponentSession) -> bool:
        if self.session is session:
            self.session = None
        return False

    def deliver(self, stanza: Element, origin: Any) -> None:
        """The host's component_handler: every stanza addressed to the domain."""
        if self.session is not None:
            self.session.send(stanza)
            return
        router = self.host.server.router
        answer = self._offline_disco_info(stanza)
        if answer is not None:
            router.reply(origin, answer)
        elif stanza.get("type") not in ("error", "result"):
            error = StanzaError("remote-server-timeout", "Component unavailable",
                                extra=Element(f"{{{NOT_CONNECTED}}}not-connected"))
            router.reply(origin, error.to_reply(stanza, by=self.host.name))

    def _offline_disco_info(self, stanza: Element) -> Element | None:
        """Prosody answers disco#info for a disconnected component that has a `name`."""
        name = self.host.config.options.get("name")
        if not name or stanza.tag != IQ or stanza.get("type") != "get" \
                or stanza.get("to") != self.host.name or len(stanza) != 1 \
                or stanza[0].tag != DISCO_INFO or stanza[0].get("node"):
            return None
        query = Element(DISCO_INFO)
        SubElement(query, f"{{{ns.DISCO_INFO}}}identity",
                   {"category": "component", "type": "generic", "name": str(name)})
        SubElement(query, f"{{{ns.DISCO_INFO}}}feature", {"var": ns.DISCO_INFO})
        return make_iq_result(stanza, query)


def setup(m: ModuleContext) -> None:
    if not m.host.is_component:
        m.log.error("mod_component is for external components; see Prosody's doc/components")
        return
    policy = m.config.get_str("component_conflict_resolve", "kick_new")
    if policy not in CONFLICT_POLICIES:
        m.log.warning("component_conflict_resolve must be one of %s, not %r; using kick_new",
                      ", ".join(CONFLICT_POLICIES), policy)
        policy = "kick_new"
    link = ComponentLink(m.host, policy)
    m.host.component_handler = link.deliver
    m.hook(AUTHENTICATED_EVENT, link.attach)
    m.hook(DISCONNECTED_EVENT, link.detach)


def external_components(server: VireoServer) -> list[LocalHost]:
    """The hosts served by an external component process."""
    return [host for host in server.router.hosts.values()
            if host.is_component and host.component_handler is not None
            and "component" in host.modules]


def add_listener(server: VireoServer) -> None:
    """Listen on `component_ports` (Prosody's default 5347), only when some
    external component is configured, as Prosody does."""
    if not external_components(server):
        return
    limit = stanza_size_limit(server.config)
    throttle = failure_throttle(server.config)
    server.add_listener(
        "component", server.ports("component", (DEFAULT_PORT,)), listen_interfaces(server.config),
        lambda transport: ComponentSession(server, transport, throttle=throttle,
                                           max_stanza_size=limit))
