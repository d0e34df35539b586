"""XEP-0198 Stream Management (Prosody's mod_smacks): acks, and resumption of a
session whose connection was lost, from any c2s listener (TCP, direct TLS,
WebSocket).

The counting and the queue are xmpp.smqueue's; this module wires them to the
session: a "stanzas/in" filter counts what the client sends, a "stanzas/out"
filter keeps a copy of each stanza sent until the client acknowledges it. When
the connection of a resumable session is lost, `pre-resource-unbind` keeps the
session bound without it (hibernation) for `smacks_hibernation_time`; stanzas
for it are queued. A `<resume/>` on a new stream takes it over
(C2SSession.take_over) and gets what the client had not acknowledged again.

Nothing unacknowledged is dropped: when a session ends without being resumed,
each message goes to offline storage (`message/offline/handle`, when the user
has no other session) or is bounced with recipient-unavailable, as Prosody's
`delivery/failure` handling does.

Options, with Prosody's defaults: smacks_hibernation_time (600 s),
smacks_max_unacked_stanzas (0: ask for an ack after every burst),
smacks_max_queue_size (500 unacknowledged stanzas; past it the session is
closed with resource-constraint), smacks_max_hibernated_sessions (10
resumable sessions per user; the least recently used one beyond it stops
being resumable, and ends now if it is hibernating), smacks_max_old_sessions
(10 expired sessions per user whose counter is kept, so a late `<resume/>` is
told its `h` with `<failed/>`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.errors import StanzaError, StreamError
from xmpp.moduleapi import ModuleContext
from xmpp.modules.sasl2_bind2 import offer_inline
from xmpp.smqueue import AckError, AckQueue, parse_h
from xmpp.stanza import serialize
from xmpp.stream import parse_stanza

SM2 = "urn:xmpp:sm:2"
SM3 = "urn:xmpp:sm:3"
MESSAGE = f"{{{ns.CLIENT}}}message"
PRESENCE = f"{{{ns.CLIENT}}}presence"
IQ = f"{{{ns.CLIENT}}}iq"
STANZAS = frozenset({MESSAGE, PRESENCE, IQ})
DELAY = f"{{{ns.DELAY}}}delay"
MODULE = "smacks"
INLINE = "smacks/sasl2"
SASL2 = "urn:xmpp:sasl:2"


@dataclass(frozen=True)
class Options:
    hibernation_time: float = 600
    max_unacked: int = 0
    max_queue_size: int = 500
    max_hibernated_sessions: int = 10
    max_old_sessions: int = 10

    @classmethod
    def from_config(cls, config: Any) -> Options:
        return cls(
            hibernation_time=config.get_number("smacks_hibernation_time", 600, min=0),
            max_unacked=config.get_int("smacks_max_unacked_stanzas", 0, min=0),
            max_queue_size=config.get_int("smacks_max_queue_size", 500, min=1),
            max_hibernated_sessions=config.get_int("smacks_max_hibernated_sessions", 10, min=1),
            max_old_sessions=config.get_int("smacks_max_old_sessions", 10, min=0))


@dataclass(eq=False, slots=True)  # one per session, hibernated ones too
class SmState:
    """Stream management on one session (moves with it when it is resumed)."""

    xmlns: str
    queue: AckQueue
    token: str | None = None  # the resumption id, while the session is resumable
    hibernating_since: float | None = None
    expiry: Any = None  # the hibernation timer
    awaiting_ack: bool = False  # an <r/> went out and its <a/> has not come
    ack_scheduled: bool = False
    last_requested_h: int | None = None
    resending: bool = False


@dataclass
class Registry:
    """Resumable sessions by (host, username), least recently used first, by token
    (plain dicts keep insertion order, at half an OrderedDict's size per user)."""

    users: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def get(self, host: str, username: str, token: str) -> Any:
        return self.users.get((host, username), {}).get(token)

    def put(self, host: str, username: str, token: str, session: Any) -> None:
        tokens = self.users.setdefault((host, username), {})
        tokens.pop(token, None)  # to the end: the most recently used
        tokens[token] = session

    def remove(self, host: str, username: str, token: str) -> None:
        tokens = self.users.get((host, username))
        if tokens is not None:
            tokens.pop(token, None)
            if not tokens:
                del self.users[(host, username)]

    def beyond(self, host: str, username: str, limit: int) -> list[Any]:
        """The user's least recently used sessions past `limit`."""
        tokens = self.users.get((host, username), {})
        return list(tokens.values())[:max(0, len(tokens) - limit)]

    def sessions(self, host: str) -> list[Any]:
        return [session for (name, _), tokens in self.users.items() if name == host
                for session in tokens.values()]


def state_of(session: Any) -> SmState | None:
    """The session's stream management, None unless it enabled it."""
    return session.module_data.get(MODULE)


def setup(m: ModuleContext) -> None:
    SmacksModule(m)


class SmacksModule:
    """mod_smacks on one host."""

    def __init__(self, m: ModuleContext) -> None:
        self.m = m
        self.options = Options.from_config(m.config)
        self.registry: Registry = m.shared("smacks/resumable", Registry)
        for xmlns in (SM2, SM3):
            m.hook(f"stanza/{xmlns}:enable", self.on_enable, 100)
            m.hook(f"stanza/{xmlns}:resume", self.on_resume, 100)
            m.hook(f"stanza/{xmlns}:r", self.on_r)
            m.hook(f"stanza/{xmlns}:a", self.on_a)
        m.hook("stream-features", self.on_features)
        m.hook("pre-session-close", self.on_pre_session_close)
        # Before mod_presence's broadcast of unavailable: a hibernating session stays online.
        m.hook("pre-resource-unbind", self.on_pre_resource_unbind, 10)
        m.hook("delivery/failure", self.on_delivery_failure, -1)
        m.hook("server-stopping", self.on_server_stopping)
        self.hook_inline()

    @property
    def old_sessions(self) -> Any:
        """The counters of expired sessions (Prosody's `smacks_h` map), opened when needed."""
        return self.m.open_store("smacks_h", "map")

    # -- negotiation -----------------------------------------------------------------

    def on_features(self, event: Any) -> None:
        session = event.origin
        if session.authenticated and state_of(session) is None:
            for xmlns in (SM2, SM3):
                sm = SubElement(event.features, f"{{{xmlns}}}sm")
                SubElement(sm, f"{{{xmlns}}}optional")

    def on_enable(self, event: Any) -> bool:
        event.origin.send(self.enable(event.origin, event.stanza))
        return True

    def enable(self, session: Any, stanza: Element) -> Element:
        """Start stream management on a bound session: `<enabled/>` or `<failed/>`."""
        xmlns = _namespace(stanza.tag)
        if state_of(session) is not None:
            return _failure(xmlns, "unexpected-request")
        if not session.authenticated:
            return _failure(xmlns, "service-unavailable")
        if session.jid is None:
            return _failure(xmlns, "unexpected-request")
        state = SmState(xmlns, AckQueue(self.options.max_queue_size))
        session.module_data[MODULE] = state
        self.m.add_filter(session, "stanzas/in", count_incoming, 999)
        self.m.add_filter(session, "stanzas/out", self.outgoing, -999)
        enabled = Element(f"{{{xmlns}}}enabled")
        if stanza.get("resume") in ("true", "1"):
            state.token = secrets.token_urlsafe(18)
            enabled.attrib.update(id=state.token, resume="true",
                                  max=f"{self.options.hibernation_time:g}")
            self.track(session, state)
        return enabled

    def track(self, session: Any, state: SmState) -> None:
        """Make the session resumable by its token, within the per-user limit."""
        assert state.token is not None
        host, user = session.host.name, session.username
        self.registry.put(host, user, state.token, session)
        for stale in self.registry.beyond(host, user, self.options.max_hibernated_sessions):
            self.m.log.info("%s has too many resumable sessions; %s no longer is", user,
                            stale.jid)
            self.expire(stale)

    # -- acks -----------------------------------------------------------------------

    def on_r(self, event: Any) -> bool | None:
        session = event.origin
        state = state_of(session)
        if state is None:
            return None
        session.send(Element(f"{{{state.xmlns}}}a", {"h": str(state.queue.handled)}))
        self.request_ack_if_needed(session, state)
        return True

    def on_a(self, event: Any) -> bool | None:
        session = event.origin
        state = state_of(session)
        if state is None:
            return None
        state.awaiting_ack = False
        h = parse_h(event.stanza.get("h"))
        if h is None:
            session.close(StreamError("invalid-xml", "Missing or invalid 'h' attribute"))
            return True
        try:
            state.queue.ack(h)
        except AckError as error:
            self.m.log.warning("%s acknowledged %d, but we sent %d", session.jid, h,
                               state.queue.sent)
            session.close(StreamError(error.condition, str(error)))
            return True
        self.request_ack_if_needed(session, state)
        return True

    def request_ack_if_needed(self, session: Any, state: SmState, force: bool = False) -> None:
        """Ask for an ack once the current burst is written (Prosody's 0 s timer)."""
        if state.ack_scheduled or state.awaiting_ack or state.hibernating_since is not None:
            return
        if not force and (len(state.queue.unacked) <= self.options.max_unacked
                          or state.queue.sent == state.last_requested_h):
            return
        state.ack_scheduled = True
        self.m.add_timer(0, lambda: self.request_ack(session, state))

    def request_ack(self, session: Any, state: SmState) -> None:
        state.ack_scheduled = False
        if state_of(session) is not state or session.closed or state.awaiting_ack:
            return
        state.awaiting_ack = True
        state.last_requested_h = state.queue.sent
        session.send(Element(f"{{{state.xmlns}}}r"))

    def outgoing(self, stanza: Element, session: Any) -> Element | None:
        """Keep a copy of each stanza sent (with a delay stamp for when it is sent
        again); while hibernating, the copy is all that is kept."""
        state = state_of(session)
        if state is None or state.resending or stanza.tag not in STANZAS:
            return stanza
        kept = stanza
        if stanza.tag != IQ and stanza.find(DELAY) is None:
            # A new top element over the same children: the stanza may be shared.
            kept = Element(stanza.tag, stanza.attrib)
            kept.text = stanza.text
            kept.extend(stanza)
            SubElement(kept, DELAY, {"from": str(session.jid.bare), "stamp": _now_stamp()})
        if not state.queue.push(serialize(kept)):
            # Taken into the queue all the same: it is handled with the rest as the session ends.
            session.close(StreamError("resource-constraint", "Too many unacked stanzas "
                                      "remaining, session can't be resumed"))
            return None
        if state.hibernating_since is not None:
            self.m.fire("smacks-hibernation-stanza-queued", origin=session, stanza=kept)
            return None
        self.request_ack_if_needed(session, state)
        return stanza

    # -- the end of a session, hibernation -------------------------------------------

    def on_pre_session_close(self, event: Any) -> None:
        session = event.session
        state = state_of(session)
        if state is None:
            return
        self.revoke(session, state)
        if not session.closed:
            # XEP-0198 1.5.2: a last ack, so the client knows what we handled.
            session.send(Element(f"{{{state.xmlns}}}a", {"h": str(state.queue.handled)}))

    def revoke(self, session: Any, state: SmState, old_record: bool = False) -> None:
        """The session is no longer resumable; with `old_record` its counter is kept
        for a late `<resume/>` (a token is recorded only once it is revoked)."""
        if state.expiry is not None:
            state.expiry.cancel()
            state.expiry = None
        if state.token is None:
            return
        token, state.token = state.token, None
        self.registry.remove(session.host.name, session.username, token)
        if old_record and self.options.max_old_sessions > 0:
            self.save_old_session(session.username, token, state.queue.handled)

    def save_old_session(self, username: str, token: str, handled: int) -> None:
        kept = self.old_sessions.get_all(username)
        kept[token] = {"h": handled, "t": self.m.now()}
        newest = sorted(kept, key=lambda key: kept[key].get("t", 0), reverse=True)
        self.old_sessions.set_keys(username, {
            key: (kept[key] if index < self.options.max_old_sessions else None)
            for index, key in enumerate(newest)})

    def on_pre_resource_unbind(self, event: Any) -> bool | None:
        session = event.session
        state = state_of(session)
        if state is None:
            return None
        if state.token is None:
            self.handle_unacked(session, state)
            return None
        if state.hibernating_since is None:
            state.hibernating_since = self.m.now()
            state.expiry = self.m.add_timer(self.options.hibernation_time,
                                            lambda: self.expire(session))
            self.m.log.debug("%s hibernating for up to %g s", session.jid,
                             self.options.hibernation_time)
            self.m.fire("smacks-hibernation-start", origin=session,
                        queue=[parse_stanza(kept) for kept in state.queue.unacked])
        return True  # keep it bound, without its connection

    def expire(self, session: Any) -> None:
        """The session stops being resumable; if hibernating it ends now."""
        state = state_of(session)
        if state is None or state.token is None:
            return
        self.revoke(session, state, old_record=True)
        if session.detached:
            self.m.log.info("%s hibernated too long; ending it", session.jid)
            session.destroy()

    def handle_unacked(self, session: Any, state: SmState) -> None:
        """Every stanza the client did not acknowledge: offline storage or a bounce."""
        module_data = session.module_data
        module_data.pop(MODULE, None)  # nothing more to queue
        for stanza in map(parse_stanza, list(state.queue.drain())):
            if self.m.fire("delivery/failure", session=session, stanza=stanza):
                continue
            if stanza.get("from") != str(session.jid):
                # Answered from the bare JID, as Prosody does (errors and results never are).
                stanza.set("to", str(session.jid.bare))
                self.m.bounce(stanza, None, StanzaError("recipient-unavailable",
                                                        error_type="cancel"))

    def on_delivery_failure(self, event: Any) -> bool:
        """A message to a user whose session ended stays for them when it was their
        last session (Prosody's choice: other sessions got it by carbons, or not)."""
        session, stanza = event.session, event.stanza
        if stanza.tag != MESSAGE or stanza.get("type", "normal") not in ("normal", "chat"):
            return False
        # A session binding the same resource replaces this one: not another session.
        others = [resource for resource, other in self.m.sessions(session.jid.bare).items()
                  if other is not session and resource != session.jid.resource]
        if others:
            return False
        return bool(self.m.fire("message/offline/handle", origin=session, stanza=stanza,
                                username=session.username, host=session.host.name,
                                to=session.jid.bare))

    def on_server_stopping(self, _event: Any) -> None:
        """Keep every resumable session's counter for the client's next `<resume/>`
        and end the hibernating ones (their stanzas go where expiry sends them);
        the connected ones are closed next, as every stream is."""
        for session in self.registry.sessions(self.m.host.name):
            self.expire(session)

    # -- resumption ------------------------------------------------------------------

    def on_resume(self, event: Any) -> bool:
        session = event.origin
        answer, state = self.resume(session, event.stanza)
        session.send(answer)
        if state is not None:
            self.resend(session, state)
        return True

    def resume(self, session: Any, stanza: Element) -> tuple[Element, SmState | None]:
        """Take over the hibernating (or stale) session `stanza` names:
        `<resumed/>` and its state, or `<failed/>` and None. The caller sends
        the answer, then `resend`s what the client has not acknowledged."""
        xmlns = _namespace(stanza.tag)
        if session.jid is not None:
            return _failure(xmlns, "unexpected-request"), None
        token = stanza.get("previd", "")
        h = parse_h(stanza.get("h"))
        original = self.registry.get(session.host.name, session.username or "", token) \
            if session.authenticated else None
        if original is None:
            old = self.old_sessions.get(session.username, token) if session.authenticated \
                and token else None
            if old is not None:
                self.old_sessions.set(session.username, token, None)
                return _failure(xmlns, "item-not-found", old.get("h")), None
            return _failure(xmlns, "item-not-found"), None
        state = state_of(original)
        assert state is not None
        if h is None:
            return _failure(xmlns, "bad-request", state.queue.handled), None
        self.m.log.debug("%s resuming with h=%d; %d acknowledged, %d not", original.jid, h,
                         state.queue.acked, len(state.queue.unacked))
        try:
            state.queue.ack(h)
        except AckError as error:
            self.m.log.warning("%s tried to resume with h=%d: %s", original.jid, h, error)
            return _failure(xmlns, error.condition, state.queue.handled), None
        if state.expiry is not None:
            state.expiry.cancel()
            state.expiry = None
        state.hibernating_since = None
        state.awaiting_ack = state.ack_scheduled = False
        session.take_over(original)
        self.registry.put(session.host.name, session.username, token, session)
        return Element(f"{{{xmlns}}}resumed",
                       {"h": str(state.queue.handled), "previd": token}), state

    def resend(self, session: Any, state: SmState) -> None:
        """After `<resumed/>`: what the client had not acknowledged, again."""
        state.resending = True
        try:
            for queued in list(state.queue.unacked):
                session.send(parse_stanza(queued))
        finally:
            state.resending = False
        self.m.fire("smacks-hibernation-end", origin=session)
        self.request_ack_if_needed(session, state, force=True)

    # -- inside SASL2 and Bind 2 (XEP-0198 section 5, as Prosody's mod_sasl2_sm) -------

    def hook_inline(self) -> None:
        m = self.m
        m.hook("advertise-sasl-features",
               lambda event: SubElement(event.features, f"{{{SM3}}}sm"))
        m.hook("advertise-bind-features", lambda event: offer_inline(event.features, SM3))
        m.hook(f"stanza/{SASL2}:authenticate", self.read_inline_resume, 100)
        # Before Bind 2 (100): a resumed session binds nothing.
        m.hook("sasl2/c2s/success", self.inline_resume, 110)
        # Once <success/> is out (-1000): the queue follows it.
        m.hook("sasl2/c2s/success", self.resend_after_success, -1100)
        m.hook("enable-bind-features", self.inline_enable)

    def read_inline_resume(self, event: Any) -> None:
        resume = event.stanza.find(f"{{{SM3}}}resume")
        if resume is not None:
            event.origin.module_data[INLINE] = _Inline(resume)
        else:
            event.origin.module_data.pop(INLINE, None)

    def inline_resume(self, event: Any) -> None:
        session = event.session
        inline = session.module_data.get(INLINE)
        if inline is not None and inline.resume is not None:
            self.m.log.debug("%s asks for resumption inside SASL2", session.username)
            answer, inline.resumed = self.resume(session, inline.resume)
            inline.resume = None
            event.success.append(answer)

    def resend_after_success(self, event: Any) -> None:
        # take_over() kept this stream's own entries, so the request is still there.
        inline = event.session.module_data.pop(INLINE, None)
        if inline is not None and inline.resumed is not None:
            self.resend(event.session, inline.resumed)

    def inline_enable(self, event: Any) -> None:
        request = event.features.find(f"{{{SM3}}}enable")
        if request is not None:
            event.result.append(self.enable(event.session, request))


@dataclass
class _Inline:
    """A `<resume/>` inside this stream's `<authenticate/>`, then what it resumed
    (kept under INLINE, beside the SmState that moves with the session)."""

    resume: Element | None
    resumed: SmState | None = None


def count_incoming(stanza: Element, session: Any) -> Element:
    state = state_of(session)
    if state is not None and stanza.tag in STANZAS:
        state.queue.count_handled()
    return stanza


def _failure(xmlns: str, condition: str, h: int | None = None) -> Element:
    failed = Element(f"{{{xmlns}}}failed")
    if h is not None:
        failed.set("h", str(h))
    SubElement(failed, f"{{{ns.STANZA_ERRORS}}}{condition}")
    return failed


def _namespace(tag: str) -> str:
    return tag[1:].partition("}")[0]


def _now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
