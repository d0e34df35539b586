"""Stanza routing (RFC 6120 section 10, RFC 6121 section 8): where each stanza goes.

The router knows the local hosts and the bound client sessions. Every
session kind gives it the same small interface (`send(stanza)`, `jid`,
`close(error)`), so TCP and BOSH clients, components and s2s links are
routed alike. It never touches a socket or storage.

It fires Prosody's events on the host a stanza is addressed to
(`message/bare`, `message/full`, `message/host`, `presence/*`,
`iq-get/host/NS:name` ... and `route/local`), and `route/remote` on the
sender's host for other domains. Modules decide what the events mean:
delivery to a bare JID by priority is mod_message's, presence is
mod_presence's. What the router still does itself, when no handler took a
stanza, is what RFC 6120 asks of every server: full-JID delivery, bounces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol
from xml.etree.ElementTree import Element

from xmpp import namespaces as ns
from xmpp.errors import StanzaError, StreamError
from xmpp.hosts import IqAnswer, LocalHost, iq_event
from xmpp.jid import JID, InvalidJID, parse_jid

log = logging.getLogger(__name__)

MESSAGE = f"{{{ns.CLIENT}}}message"
PRESENCE = f"{{{ns.CLIENT}}}presence"
IQ = f"{{{ns.CLIENT}}}iq"


class Session(Protocol):
    """What the router needs from a session of any kind."""

    jid: JID | None

    def send(self, stanza: Element) -> None: ...
    def close(self, error: StreamError | None = None) -> None: ...


class Router:
    """Delivers stanzas to local sessions, host handlers, components or remote links."""

    def __init__(self) -> None:
        self.hosts: dict[str, LocalHost] = {}
        # bare JID -> resource -> session
        self.sessions: dict[JID, dict[str, Session]] = {}
        # Set by the s2s module when federation is on; None bounces remote stanzas.
        self.remote: Callable[[Element, JID, Any], None] | None = None

    # -- sessions -----------------------------------------------------------

    def bind(self, session: Session, jid: JID) -> None:
        """Make `session` reachable at full `jid`, replacing (and kicking)
        an older session with the same full JID."""
        assert jid.resource is not None
        resources = self.sessions.setdefault(jid.bare, {})
        old = resources.get(jid.resource)
        resources[jid.resource] = session
        if old is not None and old is not session:
            old.close(StreamError("conflict", "Replaced by new connection"))

    def unbind(self, session: Session) -> None:
        jid = session.jid
        if jid is None or jid.resource is None:
            return
        resources = self.sessions.get(jid.bare)
        if resources is not None and resources.get(jid.resource) is session:
            del resources[jid.resource]
            if not resources:
                del self.sessions[jid.bare]

    def resources(self, bare: JID) -> dict[str, Session]:
        return self.sessions.get(bare, {})

    # -- routing --------------------------------------------------------------

    def route(self, stanza: Element, origin: Any = None) -> None:
        """Send `stanza` towards its `to` (already stamped with a valid `from`)."""
        try:
            to = parse_jid(stanza.get("to", ""))
        except InvalidJID:
            self.bounce(stanza, origin, StanzaError("jid-malformed"))
            return
        host = self.hosts.get(to.domain)
        if host is None:
            self.route_remote(stanza, to, origin)
        elif "route/local" in host.events.handlers and host.fire(
                "route/local", origin=origin, stanza=stanza, to=to):
            return
        elif host.component_handler is not None:
            host.component_handler(stanza, origin)
        elif to.local is None:
            self._to_host(host, stanza, origin)
        elif to.resource is None:
            self.to_bare(host, stanza, to, origin)
        else:
            self._to_full(host, stanza, to, origin)

    def route_remote(self, stanza: Element, to: JID, origin: Any) -> None:
        sender = self.hosts.get(_domain(stanza.get("from", "")))
        if sender is not None and "route/remote" in sender.events.handlers and sender.fire(
                "route/remote", origin=origin, stanza=stanza, from_host=sender.name,
                to_host=to.domain):
            return
        if self.remote is None:
            self.bounce(stanza, origin, StanzaError("service-unavailable"))
        else:
            self.remote(stanza, to, origin)

    def reply(self, origin: Any, stanza: Element) -> None:
        """Answer a stanza: straight back to the session it came from (which
        may not be bound yet), else through the normal routes."""
        if origin is not None:
            origin.send(stanza)
        else:
            self.route(stanza)

    def bounce(self, stanza: Element, origin: Any, error: StanzaError) -> None:
        """Answer `stanza` with `error`, unless it is itself an error or a
        result (RFC 6120 8.3.1: never answer an error with an error)."""
        if stanza.get("type") in ("error", "result"):
            return
        if stanza.tag == PRESENCE and stanza.get("type") not in ("subscribe", "probe"):
            return
        reply = error.to_reply(stanza)
        if origin is not None:
            origin.send(reply)
        elif reply.get("to"):
            self.route(reply)

    # -- the three kinds of local address --------------------------------------

    def _to_host(self, host: LocalHost, stanza: Element, origin: Any) -> None:
        if stanza.tag == IQ:
            self.handle_iq(host, stanza, "host", origin)
        elif stanza.tag == MESSAGE:
            if not host.fire("message/host", origin=origin, stanza=stanza):
                self.bounce(stanza, origin, StanzaError("service-unavailable"))
        else:
            host.fire("presence/host", origin=origin, stanza=stanza)

    def _look_further(self, host: LocalHost, to: JID) -> None:
        """No session here for `to`: `session-missing` lets a module that knows of
        sessions elsewhere (another cluster node's) bind them before delivery."""
        if "session-missing" in host.events.handlers:
            host.fire("session-missing", to=to)

    def to_bare(self, host: LocalHost, stanza: Element, to: JID, origin: Any) -> None:
        """A stanza for a user's bare JID; messages nobody handles bounce."""
        if stanza.tag != IQ and to not in self.sessions:
            self._look_further(host, to)
        if stanza.tag == MESSAGE:
            if not host.fire("message/bare", origin=origin, stanza=stanza, to=to):
                self.bounce(stanza, origin, StanzaError("service-unavailable"))
        elif stanza.tag == PRESENCE:
            host.fire("presence/bare", origin=origin, stanza=stanza, to=to)
        elif stanza.tag == IQ:
            own = origin is not None and getattr(origin, "jid", None) is not None \
                and origin.jid.bare == to
            self.handle_iq(host, stanza, "self" if own else "bare", origin)

    def _to_full(self, host: LocalHost, stanza: Element, to: JID, origin: Any) -> None:
        tag = stanza.tag
        if tag == MESSAGE and "message/full" in host.events.handlers and host.fire(
                "message/full", origin=origin, stanza=stanza, to=to):
            return
        session = self.sessions.get(to.bare, {}).get(to.resource or "")
        if session is None:
            self._look_further(host, to)
            session = self.sessions.get(to.bare, {}).get(to.resource or "")
        if tag == MESSAGE:
            if session is not None:
                session.send(stanza)
            elif stanza.get("type", "normal") in ("normal", "chat", "headline"):
                # RFC 6121 8.5.3.2.1: no such resource, so treat it as sent to the bare JID.
                self.to_bare(host, stanza, to.bare, origin)
            else:
                self.bounce(stanza, origin, StanzaError("service-unavailable"))
        elif tag == PRESENCE:
            if not host.fire("presence/full", origin=origin, stanza=stanza, to=to) \
                    and session is not None:
                session.send(stanza)
        elif session is not None:
            session.send(stanza)
        elif host.is_component:
            # Nobody binds resources on a component: its modules answer for
            # every JID on it, full ones included (through "bare" handlers).
            self.handle_iq(host, stanza, "bare", origin)
        else:
            self.bounce(stanza, origin, StanzaError("service-unavailable"))

    # -- IQs ------------------------------------------------------------------

    def handle_iq(self, host: LocalHost, stanza: Element, target: str, origin: Any) -> None:
        """Fire `iq-get/<target>/NS:name` (falling back from "self" to "bare");
        responses fire `iq-result/<target>/ID` and `iq-error/<target>/ID`."""
        iq_type = stanza.get("type")
        if iq_type in ("result", "error"):
            host.fire(f"iq-{iq_type}/{target}/{stanza.get('id', '')}",
                      origin=origin, stanza=stanza)
            return
        if iq_type not in ("get", "set") or len(stanza) != 1:
            self.bounce(stanza, origin, StanzaError("bad-request"))
            return
        payload_tag = stanza[0].tag
        handled = host.fire(iq_event(iq_type, target, payload_tag), origin=origin, stanza=stanza)
        if not handled and target == "self":
            handled = host.fire(iq_event(iq_type, "bare", payload_tag),
                                origin=origin, stanza=stanza)
        if not handled:
            self.bounce(stanza, origin, StanzaError("service-unavailable"))
        elif isinstance(handled, IqAnswer):
            self.reply(origin, handled.stanza)


def _domain(jid: str) -> str:
    try:
        return parse_jid(jid).domain
    except InvalidJID:
        return ""
