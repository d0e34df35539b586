"""XEP-0012 Last Activity of users: how long ago each went offline, and with
what status (Prosody's mod_lastactivity; the server's uptime is mod_uptime).

The time and status of a user's last unavailable presence (or of the drop of
an available session) are kept in the "lastactivity" keyval store, so they
survive a restart. The user and contacts with a subscription to the user's
presence may ask; others are refused, as the presence itself would be.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.presence import available_sessions, presence_of

NS = "jabber:iq:last"
QUERY = f"{{{NS}}}query"
STATUS = f"{{{ns.CLIENT}}}status"
# Before mod_presence handles (and ends) the same events.
BEFORE_PRESENCE = 10


def setup(m: ModuleContext) -> None:
    store = m.open_store("lastactivity", "keyval")
    m.add_feature(NS)

    def unavailable(event: Any) -> None:
        stanza = event.stanza
        if not stanza.get("to") and stanza.get("type") == "unavailable":
            record(m, store, event.origin.jid, stanza.findtext(STATUS))

    def dropped(event: Any) -> None:
        if presence_of(event.session).available:
            record(m, store, event.session.jid, None)

    m.hook("pre-presence/bare", unavailable, BEFORE_PRESENCE)
    m.hook("pre-resource-unbind", dropped, BEFORE_PRESENCE)
    m.hook_iq("get", QUERY, lambda request: last_activity(m, store, request), target="bare")


def record(m: ModuleContext, store: Any, user: JID, status: str | None) -> None:
    store.set(user.local, {"t": m.now(), "s": status})


def last_activity(m: ModuleContext, store: Any, request: IqRequest) -> Element:
    """XEP-0012 section 4, the offline user query: 0 seconds while the user has
    an available resource, else the seconds since the last one went offline."""
    try:
        user = parse_jid(request.stanza.get("to", "")).bare
        asker = parse_jid(request.stanza.get("from", "")).bare
    except InvalidJID as error:
        raise StanzaError("jid-malformed") from error
    if asker != user and not contact_subscribed(m, user, asker):
        raise StanzaError("forbidden")
    query = Element(QUERY, {"seconds": "0"})
    last = store.get(user.local)
    if last is not None and not available_sessions(m, user):
        query.set("seconds", str(max(0, int(m.now() - last["t"]))))
        query.text = last["s"]
    return query


def contact_subscribed(m: ModuleContext, user: JID, contact: JID) -> bool:
    """Whether `contact` has a subscription to the user's presence."""
    item = m.typed_store("rosters").get_item(user.domain, user.local, str(contact))
    return item is not None and item.subscription in ("from", "both")
