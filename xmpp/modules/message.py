"""Messages to a user's bare JID (RFC 6121 8.5.2, Prosody's mod_message).

Delivered to the available resources of highest non-negative priority
(every non-negative one for headlines), else offered to offline storage
(`message/offline/handle`), else bounced. Full-JID delivery is the router's.
"""

from __future__ import annotations

from typing import Any

from xmpp.errors import StanzaError
from xmpp.jid import JID
from xmpp.moduleapi import ModuleContext
from xmpp.modules.presence import available_sessions, presence_of


def setup(m: ModuleContext) -> None:
    # Below every other handler: they may take the message first (carbons, MAM...).
    m.hook("message/bare", lambda event: deliver_to_bare(m, event), -1)


def bare_targets(m: ModuleContext, to: JID, kind: str) -> list[Any]:
    """The sessions a message of type `kind` to bare JID `to` is delivered to:
    the available ones of highest non-negative priority (every non-negative
    one for headlines and errors)."""
    targets = [s for s in available_sessions(m, to) if presence_of(s).priority >= 0]
    if kind in ("normal", "chat") and targets:
        top = max(presence_of(s).priority for s in targets)
        targets = [s for s in targets if presence_of(s).priority == top]
    return targets


def deliver_to_bare(m: ModuleContext, event: Any) -> bool:
    stanza, to, origin = event.stanza, event.to, event.origin
    kind = stanza.get("type", "normal")
    if kind == "groupchat":
        m.bounce(stanza, origin, StanzaError("service-unavailable"))
        return True
    targets = bare_targets(m, to, kind)
    if targets:
        for session in targets:
            session.send(stanza)
    elif kind in ("normal", "chat") and not m.fire(
            "message/offline/handle", origin=origin, stanza=stanza, username=to.local,
            host=to.domain, to=to):
        m.bounce(stanza, origin, StanzaError("service-unavailable"))
    return True
