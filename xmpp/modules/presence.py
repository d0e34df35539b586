"""RFC 6121 sections 3 and 4: subscriptions, presence broadcast, probes, directed presence.

The subscription transitions themselves are the pure state machine in
xmpp.subscription; this module applies them to stored rosters, routes the
stanzas they call for and keeps each session's presence.
"""

from __future__ import annotations

import copy
from typing import Any
from xml.etree.ElementTree import Element

from storage.roster import RosterItem
from xmpp import namespaces as ns
from xmpp.hosts import ModuleContext
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.modules.roster import item_state, push
from xmpp.stanza import serialize
from xmpp.stream import parse_stanza
from xmpp.subscription import KINDS, SUBSCRIBE, SubscriptionState, inbound, outbound

PRESENCE = f"{{{ns.CLIENT}}}presence"
PRIORITY = f"{{{ns.CLIENT}}}priority"


def setup(m: ModuleContext) -> None:
    m.hook("presence/outbound", lambda stanza, session: outbound_presence(m, stanza, session))
    m.hook("presence/bare", lambda stanza, to, origin: inbound_presence(m, stanza, to))
    m.hook("presence/full", lambda stanza, to, origin: inbound_full(m, stanza, to))
    m.hook("session-ended", lambda session: session_ended(m, session))


# -- stored subscription state ------------------------------------------------

def load_state(m: ModuleContext, user: JID, contact: str) -> tuple[SubscriptionState,
                                                                  RosterItem | None]:
    store = m.server.rosters
    item = store.get_item(user.domain, user.local, contact)
    pending = contact in store.pending_in(user.domain, user.local)
    return item_state(item, pending), item


def save_state(m: ModuleContext, user: JID, contact: str, old: SubscriptionState,
               new: SubscriptionState, item: RosterItem | None,
               stanza: Element | None = None) -> RosterItem | None:
    store = m.server.rosters
    if new.in_roster:
        item = item or RosterItem(jid=contact)
        item.subscription, item.ask = new.subscription, new.ask
        store.put_item(user.domain, user.local, item)
    elif old.in_roster:
        store.remove_item(user.domain, user.local, contact)
    if new.pending_in and not old.pending_in:
        store.set_pending_in(user.domain, user.local, contact,
                             serialize(stanza) if stanza is not None else None)
    elif old.pending_in and not new.pending_in:
        store.clear_pending_in(user.domain, user.local, contact)
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
        track_directed(stanza, session)
        return False
    if kind is None:
        available(m, stanza, session)
    elif kind == "unavailable":
        unavailable(m, stanza, session)
    return True


def track_directed(stanza: Element, session: Any) -> None:
    kind = stanza.get("type")
    if kind is None:
        session.directed.add(stanza.get("to"))
    elif kind == "unavailable":
        session.directed.discard(stanza.get("to"))


def available(m: ModuleContext, stanza: Element, session: Any) -> None:
    try:
        session.priority = max(-128, min(127, int(stanza.findtext(PRIORITY) or 0)))
    except ValueError:
        session.priority = 0
    initial = not session.available
    session.available = True
    session.presence = stanza
    broadcast(m, stanza, session.jid)
    if initial:
        user: JID = session.jid
        bare = str(user.bare)
        for contact, item in m.server.rosters.get_roster(user.domain, user.local).items():
            if item.subscription in ("to", "both"):
                m.server.router.route(presence("probe", bare, contact))
        # The new resource learns of the user's other available ones (as Prosody does).
        for resource in m.server.router.available_resources(user.bare):
            if resource is not session and resource.presence is not None:
                session.send(_stamped(resource.presence, str(resource.jid), str(user)))
        for contact, pending in m.server.rosters.pending_in(user.domain, user.local).items():
            session.send(parse_stanza(pending) if pending else presence("subscribe", contact, bare))
        if session.priority >= 0:
            m.host.fire("presence/initial", session)


def unavailable(m: ModuleContext, stanza: Element, session: Any) -> None:
    informed: set[str] = set()
    if session.available:
        session.available = False
        session.presence = None
        informed = broadcast(m, stanza, session.jid)
    # Directed presence may precede initial presence; its recipients still
    # learn that the sender left (as Prosody's mod_presence does), once.
    for target in session.directed:
        if _bare(target) not in informed:
            m.server.router.route(_addressed(stanza, target))
    session.directed.clear()


def broadcast(m: ModuleContext, stanza: Element, user: JID) -> set[str]:
    """To contacts subscribed to the user, and to all the user's own available
    resources; the contacts it went to."""
    router = m.server.router
    informed = set()
    for contact, item in m.server.rosters.get_roster(user.domain, user.local).items():
        if item.subscription in ("from", "both"):
            router.route(_addressed(stanza, contact))
            informed.add(contact)
    for resource in router.available_resources(user.bare):
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
    state, item = load_state(m, user, str(contact))
    outcome = outbound(state, kind)
    item = save_state(m, user, str(contact), state, outcome.state, item)
    if outcome.changed and item is not None:
        push(m, user, item)
    if not outcome.deliver:
        return
    # Subscription stanzas travel between bare JIDs (RFC 6121 3.1.2).
    m.server.router.route(_stamped(stanza, str(user.bare), str(contact)))
    router = m.server.router
    if kind == "subscribed":
        for resource in router.available_resources(user.bare):
            if resource.presence is not None:
                router.route(_stamped(resource.presence, str(resource.jid), str(contact)))
    elif kind == "unsubscribed":
        for resource in router.available_resources(user.bare):
            router.route(presence("unavailable", str(resource.jid), str(contact)))


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
        for resource in m.server.router.available_resources(user):
            resource.send(stanza)
    return True


def inbound_full(m: ModuleContext, stanza: Element, to: JID) -> bool:
    if stanza.get("type") in (*KINDS, "probe"):
        return inbound_presence(m, stanza, to.bare)
    return False


def inbound_subscription(m: ModuleContext, stanza: Element, user: JID, contact: JID,
                         kind: str) -> None:
    if not m.server.accounts.exists(user.domain, user.local):
        if kind == SUBSCRIBE:
            # As Prosody 0.12 (mod_presence), rather than RFC 6121 3.1.3: the receipt
            # is acknowledged with the contact's unavailable presence, which Prosody
            # sends for existing accounts too, so the answer does not tell whether
            # the account exists. Nothing is stored.
            m.server.router.route(presence("unavailable", str(user), str(contact)))
        return
    state, item = load_state(m, user, str(contact))
    outcome = inbound(state, kind)
    forwarded = _stamped(stanza, str(contact), str(user))
    item = save_state(m, user, str(contact), state, outcome.state, item, forwarded)
    if outcome.changed and item is not None:
        push(m, user, item)
    if outcome.deliver:
        for resource in m.server.router.available_resources(user):
            resource.send(forwarded)
    if outcome.auto_reply:
        m.server.router.route(presence(outcome.auto_reply, str(user), str(contact)))


def answer_probe(m: ModuleContext, user: JID, prober: JID) -> None:
    state, _item = load_state(m, user, str(prober.bare))
    router = m.server.router
    if not state.has_from:
        # RFC 6121 4.3.2: tell the prober its subscription is gone (as Prosody does).
        router.route(presence("unsubscribed", str(user), str(prober.bare)))
        return
    resources = [r for r in router.available_resources(user) if r.presence is not None]
    for resource in resources:
        router.route(_stamped(resource.presence, str(resource.jid), str(prober)))
    if not resources:
        router.route(presence("unavailable", str(user), str(prober)))


def session_ended(m: ModuleContext, session: Any) -> bool:
    if session.available or session.directed:
        unavailable(m, presence("unavailable", str(session.jid), ""), session)
    return False

