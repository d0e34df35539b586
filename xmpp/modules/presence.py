"""RFC 6121 sections 3 and 4: subscriptions, presence broadcast, probes, directed presence.

The subscription transitions themselves are the pure state machine in
xmpp.subscription; this module applies them to stored rosters, routes the
stanzas they call for and keeps each session's presence.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from storage.roster import RosterItem
from xmpp import namespaces as ns
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.roster import item_state, push
from xmpp.stanza import serialize, with_delay
from xmpp.stream import parse_stanza
from xmpp.subscription import (
    KINDS,
    SUBSCRIBE,
    Outcome,
    SubscriptionState,
    inbound,
    outbound,
)

PRESENCE = f"{{{ns.CLIENT}}}presence"
PRIORITY = f"{{{ns.CLIENT}}}priority"
PRE_APPROVAL_FEATURE = "{urn:xmpp:features:pre-approval}sub"


MODULE = "presence"


@dataclass(slots=True)
class PresenceState:
    """What mod_presence keeps on each client session."""

    priority: int = 0
    available: bool = False
    presence: Element | None = None  # the last available presence broadcast, stamped
    directed: set[str] = field(default_factory=set)  # who got directed presence


_UNAVAILABLE = PresenceState()


def presence_of(session: Any) -> PresenceState:
    """A session's presence state (unavailable until it sends presence)."""
    return session.module_data.get(MODULE, _UNAVAILABLE)


def available_sessions(m: ModuleContext, bare: JID) -> list[Any]:
    """A user's sessions that have sent available presence."""
    return [s for s in m.sessions(bare).values() if presence_of(s).available]


def setup(m: ModuleContext) -> None:
    for kind in ("bare", "full", "host"):
        m.hook(f"pre-presence/{kind}",
               lambda event: outbound_presence(m, event.stanza, event.origin))
    m.hook("presence/bare", lambda event: inbound_presence(m, event.stanza, event.to))
    m.hook("presence/full", lambda event: inbound_full(m, event.stanza, event.to))
    m.hook("pre-resource-unbind", lambda event: session_ended(m, event.session))
    m.hook("stream-features", announce_pre_approval)
    m.hook("roster-item-removed", lambda event: contact_removed(
        m, event.user, event.item, event.pending_in))


def announce_pre_approval(event: Any) -> None:
    """RFC 6121 3.4: this server keeps subscription pre-approvals."""
    if event.origin.authenticated:
        SubElement(event.features, PRE_APPROVAL_FEATURE)


def _state(m: ModuleContext, session: Any) -> PresenceState:
    return m.session_data(session, PresenceState)


def _rosters(m: ModuleContext) -> Any:
    return m.typed_store("rosters")


# -- stored subscription state ------------------------------------------------

def load_state(m: ModuleContext, user: JID, contact: str) -> tuple[SubscriptionState,
                                                                  RosterItem | None]:
    store = _rosters(m)
    item = store.get_item(user.domain, user.local, contact)
    pending = contact in store.pending_in(user.domain, user.local)
    return item_state(item, pending), item


Transition = Callable[[SubscriptionState, str], Outcome]


def apply_subscription(m: ModuleContext, user: JID, contact: str, transition: Transition,
                       kind: str, request: Element | None = None) -> Outcome:
    """Apply a subscription stanza of `kind` to the user's stored state for the
    contact, and push the roster item when it changed. The state is read and
    written as one locked change: the user's stanzas and the contact's are
    handled side by side (each connection in its greenlet, database calls
    yield), and a stanza that read the state before another wrote it would
    otherwise write back what it read (an approval undone: `both` back to `to`).
    `request`: an inbound 'subscribe', kept while it waits for an answer."""
    request_xml = serialize(request) if request is not None else None
    with _rosters(m).contact_for_update(user.domain, user.local, contact) as record:
        outcome = transition(item_state(record.item, record.pending_in), kind)
        record.item = stored_item(record.item, contact, outcome.state)
        record.pending_in, record.request = outcome.state.pending_in, request_xml
    if outcome.changed and record.item is not None:
        push(m, user, record.item, record.version)
    return outcome


def stored_item(item: RosterItem | None, contact: str,
                state: SubscriptionState) -> RosterItem | None:
    """The roster item (None: none) that keeps `state`, from the stored one."""
    if not state.in_roster:
        return None
    item = item or RosterItem(jid=contact)
    item.subscription, item.ask, item.approved = state.subscription, state.ask, state.approved
    return item


def presence(kind: str | None, sender: str, to: str) -> Element:
    element = Element(PRESENCE, {"from": sender, "to": to})
    if kind:
        element.set("type", kind)
    return element


# -- presence the user sends ----------------------------------------------------

def outbound_presence(m: ModuleContext, stanza: Element, session: Any) -> bool:
    kind = stanza.get("type")
    if kind in KINDS:
        outbound_subscription(m, stanza, session.jid, kind)
        return True
    if stanza.get("to"):
        track_directed(m, stanza, session)
        return False
    if kind is None:
        available(m, stanza, session)
    elif kind == "unavailable":
        unavailable(m, stanza, session)
        # Echoed like available presence (broadcast() skips the now unavailable
        # sender), as Prosody does: the client sees its status was taken.
        session.send(_addressed(stanza, str(session.jid)))
    return True


def track_directed(m: ModuleContext, stanza: Element, session: Any) -> None:
    kind = stanza.get("type")
    if kind is None:
        _state(m, session).directed.add(stanza.get("to"))
    elif kind == "unavailable":
        _state(m, session).directed.discard(stanza.get("to"))


def priority_of(stanza: Element) -> int:
    """A presence's priority, clamped to -128..127; 0 when absent or no number."""
    try:
        return max(-128, min(127, int(stanza.findtext(PRIORITY) or 0)))
    except ValueError:
        return 0


def available(m: ModuleContext, stanza: Element, session: Any) -> None:
    state = _state(m, session)
    state.priority = priority_of(stanza)
    initial = not state.available
    state.available = True
    user: JID = session.jid
    # One read serves the broadcast and an initial presence's probes.
    roster = _rosters(m).get_roster(user.domain, user.local)
    broadcast(m, stanza, user, roster)
    # Replayed later (to probes, new subscribers, new resources) with when it was sent.
    state.presence = with_delay(stanza, m.host.name, m.now())
    if initial:
        m.fire("presence/initial", origin=session, stanza=stanza)
        bare = str(user.bare)
        for contact, item in roster.items():
            if item.subscription in ("to", "both"):
                m.route(presence("probe", bare, contact))
        # The new resource learns of the user's other available ones (as Prosody does).
        for resource, other in _with_presence(available_sessions(m, user.bare)):
            if resource is not session:
                session.send(_stamped(other, str(resource.jid), str(user)))
        for contact, pending in _rosters(m).pending_in(user.domain, user.local).items():
            session.send(parse_stanza(pending) if pending else presence("subscribe", contact, bare))
        if state.priority >= 0:
            m.fire("message/offline/broadcast", origin=session)


def _with_presence(sessions: Iterable[Any]) -> list[tuple[Any, Element]]:
    """(session, its last available presence) for those that have one."""
    pairs = [(session, presence_of(session).presence) for session in sessions]
    return [(session, stanza) for session, stanza in pairs if stanza is not None]


def unavailable(m: ModuleContext, stanza: Element, session: Any) -> None:
    state = _state(m, session)
    informed: set[str] = set()
    if state.available:
        state.available = False
        state.presence = None
        informed = broadcast(m, stanza, session.jid)
    tell_directed(m, stanza, state.directed, informed)
    state.directed.clear()


def tell_directed(m: ModuleContext, stanza: Element, directed: Iterable[str],
                  informed: set[str]) -> None:
    """Send unavailable `stanza` to those that got directed presence (which may
    precede initial presence: they still learn that the sender left, as with
    Prosody's mod_presence), but once: not to contacts `informed` already."""
    for target in directed:
        if _bare(target) not in informed:
            m.route(_addressed(stanza, target))


def broadcast(m: ModuleContext, stanza: Element, user: JID,
              roster: dict[str, RosterItem] | None = None) -> set[str]:
    """To contacts subscribed to the user (in `roster`, read when not given), and
    to all the user's own available resources; the contacts it went to."""
    informed = set()
    if roster is None:
        roster = _rosters(m).get_roster(user.domain, user.local)
    for contact, item in roster.items():
        if item.subscription in ("from", "both"):
            m.route(_addressed(stanza, contact))
            informed.add(contact)
    for resource in available_sessions(m, user.bare):
        resource.send(_addressed(stanza, str(resource.jid)))
    return informed


def _bare(jid: str) -> str:
    try:
        return str(parse_jid(jid).bare)
    except InvalidJID:
        return jid


def _addressed(stanza: Element, to: str) -> Element:
    copied = copy.copy(stanza)
    copied.attrib = dict(stanza.attrib, to=to)
    return copied


def outbound_subscription(m: ModuleContext, stanza: Element, user: JID, kind: str) -> None:
    try:
        contact = parse_jid(stanza.get("to", "")).bare
    except InvalidJID:
        return
    if contact == user.bare:
        return
    outcome = apply_subscription(m, user, str(contact), outbound, kind)
    if not outcome.deliver:
        return
    # Subscription stanzas travel between bare JIDs (RFC 6121 3.1.2).
    m.route(_stamped(stanza, str(user.bare), str(contact)))
    if kind == "subscribed":
        for resource, last in _with_presence(available_sessions(m, user.bare)):
            m.route(_stamped(last, str(resource.jid), str(contact)))
        if outcome.state.has_to:
            # Now mutual: the approver asks for the contact's presence at once
            # rather than waiting for its next change (as Prosody does).
            m.route(presence("probe", str(user.bare), str(contact)))
    elif kind == "unsubscribed":
        send_unavailable(m, user, str(contact))


def send_unavailable(m: ModuleContext, user: JID, contact: str) -> None:
    """The contact no longer gets the user's presence: it learns that each of
    the user's available resources is gone (RFC 6121 3.2.2)."""
    for resource in available_sessions(m, user.bare):
        m.route(presence("unavailable", str(resource.jid), contact))


def contact_removed(m: ModuleContext, user: JID, item: RosterItem, pending_in: bool) -> None:
    """RFC 6121 2.5.2: a contact removed from the roster loses both subscription
    directions, and a pending request from it is denied (as Prosody does)."""
    state = item_state(item, pending_in)
    bare = str(user.bare)
    if state.has_from or state.pending_in:
        m.route(presence("unsubscribed", bare, item.jid))
    if state.has_from:
        send_unavailable(m, user, item.jid)
    if state.has_to or state.ask:
        m.route(presence("unsubscribe", bare, item.jid))


def _stamped(stanza: Element, sender: str, to: str) -> Element:
    copied = copy.copy(stanza)
    copied.attrib = dict(stanza.attrib, to=to)
    copied.set("from", sender)
    return copied


# -- presence for a local user -------------------------------------------------

def inbound_presence(m: ModuleContext, stanza: Element, user: JID) -> bool:
    kind = stanza.get("type")
    try:
        sender = parse_jid(stanza.get("from", ""))
    except InvalidJID:
        return True
    if kind in KINDS:
        inbound_subscription(m, stanza, user, sender.bare, kind)
    elif kind == "probe":
        answer_probe(m, user, sender)
    else:
        for resource in available_sessions(m, user):
            resource.send(stanza)
    return True


def inbound_full(m: ModuleContext, stanza: Element, to: JID) -> bool:
    if stanza.get("type") in (*KINDS, "probe"):
        return inbound_presence(m, stanza, to.bare)
    return False


def inbound_subscription(m: ModuleContext, stanza: Element, user: JID, contact: JID,
                         kind: str) -> None:
    if not m.users.exists(user.local):
        if kind == SUBSCRIBE:
            acknowledge_request(m, user, contact)  # nothing is stored
        return
    forwarded = _stamped(stanza, str(contact), str(user))
    outcome = apply_subscription(m, user, str(contact), inbound, kind, forwarded)
    if outcome.deliver:
        for resource in available_sessions(m, user):
            resource.send(forwarded)
    if outcome.auto_reply:
        # Approved already or pre-approved: the requester gets the approval and
        # the user's presence with it (as Prosody does; RFC 6121 3.1.3, 3.4).
        m.route(presence(outcome.auto_reply, str(user), str(contact)))
        send_current_presence(m, user, str(contact))
    elif kind == SUBSCRIBE:
        acknowledge_request(m, user, contact)


def acknowledge_request(m: ModuleContext, user: JID, contact: JID) -> None:
    """As Prosody 0.12 (mod_presence), beyond RFC 6121 3.1.3: a subscription
    request that waits for the user is acknowledged with the user's unavailable
    presence, whether the account exists or not, so the answer does not tell."""
    m.route(presence("unavailable", str(user), str(contact)))


def send_current_presence(m: ModuleContext, user: JID, to: str) -> None:
    """The last presence of each of the user's available resources, or the
    user's unavailable presence when there is none."""
    resources = _with_presence(available_sessions(m, user))
    for resource, last in resources:
        m.route(_stamped(last, str(resource.jid), to))
    if not resources:
        m.route(presence("unavailable", str(user), to))


def answer_probe(m: ModuleContext, user: JID, prober: JID) -> None:
    state, _item = load_state(m, user, str(prober.bare))
    if not state.has_from:
        # RFC 6121 4.3.2: tell the prober its subscription is gone (as Prosody does).
        m.route(presence("unsubscribed", str(user), str(prober.bare)))
        return
    send_current_presence(m, user, str(prober))


def session_ended(m: ModuleContext, session: Any) -> bool:
    state = presence_of(session)
    if state.available or state.directed:
        unavailable(m, presence("unavailable", str(session.jid), ""), session)
    return False

