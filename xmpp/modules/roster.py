"""RFC 6121 section 2: roster get, set, remove, pushes and versioning (Prosody's mod_roster)."""

from __future__ import annotations

import secrets
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from storage.roster import RosterItem
from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.stanza import make_iq_result
from xmpp.subscription import SubscriptionState, roster_item_attrs

QUERY = f"{{{ns.ROSTER}}}query"
ITEM = f"{{{ns.ROSTER}}}item"
GROUP = f"{{{ns.ROSTER}}}group"
IQ = f"{{{ns.CLIENT}}}iq"
# RFC 6121 2.6.1: the stream feature announcing roster versioning.
ROSTERVER_FEATURE = "{urn:xmpp:features:rosterver}ver"


MODULE = "roster"


def setup(m: ModuleContext) -> None:
    m.add_feature(ns.ROSTER)
    # Pushes go to the resources that asked for the roster, on whichever node.
    m.share_session_data(bool, bool)
    m.hook("stream-features", announce_versioning)
    m.hook_iq("get", QUERY, lambda request: roster_get(m, request), target="self")
    m.hook_iq("set", QUERY, lambda request: roster_set(m, request), target="self")


def announce_versioning(event: Any) -> None:
    """RFC 6121 2.6.1: roster versioning, offered once the client is authenticated."""
    if event.origin.authenticated:
        SubElement(event.features, ROSTERVER_FEATURE)


def item_state(item: RosterItem | None, pending_in: bool) -> SubscriptionState:
    """The subscription state of one contact, from what storage holds."""
    if item is None:
        return SubscriptionState(pending_in=pending_in)
    has_from = item.subscription in ("from", "both")
    has_to = item.subscription in ("to", "both")
    pending = pending_in and not has_from
    return SubscriptionState(item.subscription, item.ask and not has_to, pending, True,
                             item.approved and not (has_from or pending))


def item_element(item: RosterItem, subscription: str | None = None) -> Element:
    element = Element(ITEM, {"jid": item.jid})
    if subscription is None:
        element.attrib.update(roster_item_attrs(item_state(item, False)))
    else:
        element.set("subscription", subscription)
    if item.name:
        element.set("name", item.name)
    for group in item.groups:
        SubElement(element, GROUP).text = group
    return element


def roster_get(m: ModuleContext, request: IqRequest) -> Element | None:
    """The whole roster with its version, or an empty result when the client's
    cached copy (its `ver`) is current (RFC 6121 2.6.3): changes come as pushes."""
    session = request.origin
    user: JID = session.jid
    if not session.module_data.get(MODULE):
        session.module_data[MODULE] = True  # it asked for the roster: it gets pushes
        m.session_data_changed(session)
    store = m.typed_store("rosters")
    # The version is read before the items: a change in between gives newer
    # items under an older version, which the client merely fetches again.
    version = str(store.version(user.domain, user.local))
    if request.payload.get("ver") == version:
        return None
    query = Element(QUERY, {"ver": version})
    items = store.get_roster(user.domain, user.local)
    # Prosody's roster-load: modules may add contacts that are not stored (mod_groups).
    m.fire("roster-load", username=user.local, host=user.domain, roster=items)
    for item in items.values():
        query.append(item_element(item))
    return query


def roster_set(m: ModuleContext, request: IqRequest) -> bool:
    """Answer the set, then push the change (as Prosody: the result comes first)."""
    user: JID = request.origin.jid
    items = request.payload.findall(ITEM)
    if len(items) != 1:
        raise StanzaError("bad-request", "A roster set carries exactly one item")
    element = items[0]
    try:
        contact = parse_jid(element.get("jid", ""))
    except InvalidJID as error:
        raise StanzaError("jid-malformed") from error
    if contact.bare == user.bare:
        raise StanzaError("not-allowed", "You are always in your own roster")
    store = m.typed_store("rosters")
    existing = store.get_item(user.domain, user.local, str(contact.bare))
    if element.get("subscription") == "remove":
        if existing is None:
            raise StanzaError("item-not-found")
        version = remove_contact(m, user, existing)
        m.reply(request.origin, make_iq_result(request.stanza))
        push(m, user, existing, version, removed=True)
        return True
    groups = [g.text or "" for g in element.findall(GROUP)]
    if len(set(groups)) != len(groups) or "" in groups:
        raise StanzaError("bad-request", "Duplicate or empty group")
    # The subscription is kept as stored when written: a subscription stanza
    # handled meanwhile is not undone.
    with store.contact_for_update(user.domain, user.local, str(contact.bare)) as record:
        item = record.item or RosterItem(jid=str(contact.bare))
        item.name = element.get("name") or None
        item.groups = groups
        record.item = item
    m.reply(request.origin, make_iq_result(request.stanza))
    push(m, user, item, record.version)
    return True


def remove_contact(m: ModuleContext, user: JID, item: RosterItem) -> int:
    """Drop the item and any pending request from the contact. Before that,
    `roster-item-removed` (Prosody's event) lets mod_presence cancel both
    subscription directions (RFC 6121 2.5.2). The caller pushes the removal,
    with the roster version returned."""
    store = m.typed_store("rosters")
    pending = item.jid in store.pending_in(user.domain, user.local)
    m.fire("roster-item-removed", username=user.local, jid=item.jid, item=item,
           pending_in=pending, user=user)
    with store.contact_for_update(user.domain, user.local, item.jid) as record:
        record.item, record.pending_in = None, False
    return record.version


def push(m: ModuleContext, user: JID, item: RosterItem, version: int, *,
         removed: bool = False) -> None:
    """Send a roster push to every resource of `user` that asked for the roster.

    `version` is the one the change's own write made (RosterStore.contact_for_update),
    not the roster's version read now: a later change may have been written
    meanwhile, and this older item under its newer version would leave a
    client that got the later push first with the older item, and a `ver` that
    the server finds current, so that no roster get ever fixes it."""
    interested = [s for s in m.sessions(user.bare).values() if s.module_data.get(MODULE)]
    if not interested:
        return
    for session in interested:
        iq = Element(IQ, {"type": "set", "id": "push" + secrets.token_hex(4),
                          "to": str(session.jid)})
        query = SubElement(iq, QUERY, {"ver": str(version)})
        query.append(item_element(item, "remove" if removed else None))
        session.send(iq)
