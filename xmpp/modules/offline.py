"""Offline messages (Prosody's mod_offline): stored while the user is away,
delivered with an XEP-0203 delay stamp at their next initial presence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

from xmpp.jid import JID
from xmpp.moduleapi import ModuleContext
from xmpp.stanza import serialize, with_delay
from xmpp.stream import parse_stanza


def setup(m: ModuleContext) -> None:
    m.hook("message/offline/handle", lambda event: store(m, event.stanza, event.to))
    m.hook("message/offline/broadcast", lambda event: deliver(m, event.origin))


def store(m: ModuleContext, stanza: Element, to: JID) -> bool:
    if not m.users.exists(to.local):
        return False
    stamped = with_delay(stanza, m.host.name, m.now())
    return m.typed_store("offline").store(to.domain, to.local, serialize(stamped),
                                          datetime.now(UTC))


def deliver(m: ModuleContext, session: Any) -> bool:
    user: JID = session.jid
    for xml, _stamp in m.typed_store("offline").pop_all(user.domain, user.local):
        session.send(parse_stanza(xml))
    return False
