"""XEP-0114 external components on their host: routing to the connected one (mod_component).

Loaded on every `Component "name"` section without a module of its own.
The host's `component_handler` sends each stanza for the domain to the
component's live stream; while none is connected, stanzas bounce with
`remote-server-timeout`. `component_conflict_resolve` decides what a second
authenticated connection does: `kick_new` (refused) or `kick_old`.
In a cluster (xmpp.ownership) the domain is claimed by the node the component
connected to, with the same policy against a connection on another node, and
stanzas for it arriving elsewhere are passed on to that node.
It declares the `component` listener (`component_ports`, 5347, on loopback),
which opens when any such host exists, as in Prosody; its connections share
one throttle of failed handshakes per address.
"""

from __future__ import annotations

import logging
from typing import Any
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
from xmpp.hosts import LocalHost
from xmpp.moduleapi import ModuleContext
from xmpp.ownership import Ownership
from xmpp.providers import NetProvider
from xmpp.stanza import make_iq_result

log = logging.getLogger(__name__)

NOT_CONNECTED = "xmpp:prosody.im/protocol/component"
CONFLICT_POLICIES = ("kick_new", "kick_old")
IQ = f"{{{ns.CLIENT}}}iq"
DISCO_INFO = f"{{{ns.DISCO_INFO}}}query"


class ComponentLink:
    """Which stream currently serves one external component's domain."""

    def __init__(self, m: ModuleContext, host: LocalHost, policy: str) -> None:
        self.m = m
        self.host = host
        self.policy = policy
        self.session: ComponentSession | None = None
        self.ownership = Ownership(m, "component")

    def attach(self, event: Any) -> bool:
        """Make the session the component's stream, or raise `conflict` (kick_new)."""
        session: ComponentSession = event.session
        old = self.session
        if old is not None and old is not session:
            if self.policy == "kick_new":
                log.warning("%s: a second component connection was refused (kick_new)",
                            self.host.name)
                raise StreamError("conflict", "Component already connected")
            old.close(StreamError("conflict", "Replaced by a new connection"))
        elsewhere = self.ownership.claim(self.host.name, replace=self.policy == "kick_old")
        if elsewhere is not None:
            log.warning("%s: a second component connection was refused (kick_new; "
                        "connected to node %s)", self.host.name, elsewhere)
            raise StreamError("conflict", "Component already connected")
        self.session = session
        return True

    def detach(self, event: Any) -> bool:
        if self.session is event.session:
            self.session = None
            self.ownership.release(self.host.name)
        return False

    def lost(self, event: Any) -> None:
        """A connection on another node took the domain over (kick_old)."""
        if event.kind == "component" and event.key == self.host.name \
                and self.session is not None:
            session, self.session = self.session, None
            session.close(StreamError("conflict", "Replaced by a new connection"))

    def deliver(self, stanza: Element, origin: Any) -> None:
        """The host's component_handler: every stanza addressed to the domain."""
        if self.session is not None:
            self.session.send(stanza)
            return
        if self.ownership.forward(self.host.name, stanza, origin):
            return
        answer = self._offline_disco_info(stanza)
        if answer is not None:
            self.m.reply(origin, answer)
        elif stanza.get("type") not in ("error", "result"):
            error = StanzaError("remote-server-timeout", "Component unavailable",
                                extra=Element(f"{{{NOT_CONNECTED}}}not-connected"))
            self.m.reply(origin, error.to_reply(stanza, by=self.host.name))

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
    link = ComponentLink(m, m.host, policy)
    m.host.component_handler = link.deliver
    m.hook(AUTHENTICATED_EVENT, link.attach)
    m.hook(DISCONNECTED_EVENT, link.detach)
    m.hook("ownership-lost", link.lost)
    config = m.global_config
    limit = stanza_size_limit(config)
    router = m.service("router")
    throttle = m.shared("component-throttle", lambda: failure_throttle(config, "component"))
    m.provides("net", NetProvider(
        "component",
        lambda transport: ComponentSession(router, transport, throttle=throttle,
                                           max_stanza_size=limit, clock=m.now),
        default_ports=(DEFAULT_PORT,), interfaces=tuple(listen_interfaces(config))))
