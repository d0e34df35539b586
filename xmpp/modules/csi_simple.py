"""What an inactive client is spared (Prosody's mod_csi_simple, XEP-0352): while
it says it is inactive, stanzas that can wait (presence, chat states, receipts,
markers: messages without a body) are held, in order, up to `csi_queue_size`
(256). The held ones are sent, before it and in order, when something important
comes (a message with a body, an IQ, a subscription, anything not a stanza), when
the client becomes active, when the queue is full, and when the connection is
lost (so stream management keeps them for resumption).

A "stanzas/out" filter does the holding; `csi-is-stanza-important` lets other
modules decide for a stanza (truthy: important)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

from xmpp import namespaces as ns
from xmpp.moduleapi import ModuleContext
from xmpp.modules.csi import is_inactive

MESSAGE = f"{{{ns.CLIENT}}}message"
PRESENCE = f"{{{ns.CLIENT}}}presence"
IQ = f"{{{ns.CLIENT}}}iq"
CARBONS = "urn:xmpp:carbons:2"
FORWARDED = "{urn:xmpp:forward:0}forwarded"
# Message children that make a message worth waking the client for.
IMPORTANT_CHILDREN = frozenset({
    f"{{{ns.CLIENT}}}body", f"{{{ns.CLIENT}}}subject", "{urn:xmpp:eme:0}encryption",
    "{jabber:x:conference}x", "{urn:xmpp:jingle-message:0}propose",
    "{urn:xmpp:jingle-message:1}propose",
})
MUC_INVITE = "{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}invite"


@dataclass(slots=True)
class HeldStanzas:
    held: list[Element] = field(default_factory=list)
    flushing: bool = False
    filtering: bool = False


def is_important(stanza: Element) -> bool:
    """Prosody's default judgement: whether a stanza must reach an inactive client now."""
    tag = stanza.tag
    if tag == PRESENCE:
        return stanza.get("type") not in (None, "unavailable", "error")  # subscriptions are
    if tag == MESSAGE:
        kind = stanza.get("type")
        if kind == "headline":
            return False
        if kind == "error":
            return True
        for carbon in ("received", "sent"):
            inner = stanza.find(f"{{{CARBONS}}}{carbon}/{FORWARDED}/{MESSAGE}")
            if inner is not None:
                return is_important(inner)
        return any(child.tag in IMPORTANT_CHILDREN for child in stanza) \
            or stanza.find(MUC_INVITE) is not None
    return True  # IQs, and whatever is not a stanza


def setup(m: ModuleContext) -> None:
    m.depends("csi")
    queue_size = m.config.get_int("csi_queue_size", 256, min=1)

    def held_of(session: Any) -> HeldStanzas:
        return m.session_data(session, HeldStanzas)

    def flush(session: Any) -> None:
        state = session.module_data.get(m.name)
        if state is None or not state.held or state.flushing:
            return
        m.fire("csi-flushing", session=session)
        state.flushing = True
        try:
            held, state.held = state.held, []
            for stanza in held:
                session.send(stanza)
        finally:
            state.flushing = False

    def hold(stanza: Element, session: Any) -> Element | None:
        state = held_of(session)
        if state.flushing or not is_inactive(session):
            return stanza
        important = m.fire("csi-is-stanza-important", stanza=stanza, session=session)
        if important is None:
            important = is_important(stanza)
        if important:
            flush(session)
            return stanza
        state.held.append(stanza)
        if len(state.held) >= queue_size:
            flush(session)
        return None

    def inactive(event: Any) -> None:
        state = held_of(event.origin)
        if not state.filtering:
            state.filtering = True
            # Before stream management's queue (-999): only what is sent gets counted.
            m.add_filter(event.origin, "stanzas/out", hold, 100)

    m.hook("csi-client-inactive", inactive)
    m.hook("csi-client-active", lambda event: flush(event.origin))
    # Before smacks (10) decides to hibernate: held stanzas join its queue.
    m.hook("pre-resource-unbind", lambda event: flush(event.session), 20)
