"""XEP-0280 Message Carbons, urn:xmpp:carbons:2 (Prosody's mod_carbons).

A resource that enables carbons gets a copy of the messages its user's other
resources send (<sent/>) and of those the user receives that routing does not
bring it anyway (<received/>), under the XEP's rules: chat messages, normal
ones with a body, bounces of those; never <private/> ones or those hinting
`no-copy`, nor MUC private messages received.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.moduleapi import ModuleContext
from xmpp.modules.message import bare_targets
from xmpp.modules.sasl2_bind2 import offer_inline

NS = "urn:xmpp:carbons:2"
RULES = "urn:xmpp:carbons:rules:0"
FORWARD_NS = "urn:xmpp:forward:0"
PRIVATE = f"{{{NS}}}private"
MESSAGE = f"{{{ns.CLIENT}}}message"
MUC_USER = "{http://jabber.org/protocol/muc#user}x"
# Between mod_mam (0: the archive id is in the copy) and delivery (-1).
PRIORITY = -0.5


@dataclass(slots=True)
class CarbonsState:
    enabled: bool = False


def setup(m: ModuleContext) -> None:
    m.add_feature(NS)
    # Whoever routes a message copies it, on whichever node the resource is.
    m.share_session_data(lambda state: state.enabled, lambda enabled: CarbonsState(bool(enabled)))
    m.add_feature(RULES)
    for action, enabled in (("enable", True), ("disable", False)):
        m.hook_iq("set", f"{{{NS}}}{action}",
                  lambda request, enabled=enabled: toggle(m, request.origin, enabled),
                  target="self")
    for kind in ("host", "bare", "full"):
        m.hook(f"pre-message/{kind}", lambda event: copy_sent(m, event), PRIORITY)
    m.hook("message/bare", lambda event: copy_received(m, event), PRIORITY)
    m.hook("message/full", lambda event: copy_received(m, event), PRIORITY)
    # Bind 2 (XEP-0386): `<enable/>` inside `<bind/>`; nothing to answer.
    m.hook("advertise-bind-features", lambda event: offer_inline(event.features, NS))

    def enable_inline(event: Any) -> None:
        if event.features.find(f"{{{NS}}}enable") is not None:
            toggle(m, event.session, True)

    m.hook("enable-bind-features", enable_inline)


def toggle(m: ModuleContext, session: Any, enabled: bool) -> None:
    state = m.session_data(session, CarbonsState)
    if state.enabled != enabled:
        state.enabled = enabled
        m.session_data_changed(session)


def wants_carbons(m: ModuleContext, session: Any) -> bool:
    state = session.module_data.get(m.name)
    return state is not None and state.enabled


def should_copy(stanza: Element, sent: bool, user: str) -> tuple[bool, str]:
    """Whether a message is eligible for carbons (XEP-0280 section 6), and why."""
    if stanza.find(PRIVATE) is not None:
        return False, "private"
    if stanza.find("{urn:xmpp:hints}no-copy") is not None:
        return False, "hint"
    if not sent and stanza.get("to") != user and stanza.find(MUC_USER) is not None:
        return False, "muc-pm"  # MUC private messages go to one resource
    kind = stanza.get("type", "normal")
    if kind == "chat":
        return True, "type"
    if kind == "normal" and stanza.find(f"{{{ns.CLIENT}}}body") is not None:
        return True, "type"
    if kind == "error" and not sent and "/" not in stanza.get("from", "/"):
        return True, "bounce"  # of a message sent to a bare JID
    if any(child.tag.startswith(("{urn:xmpp:jingle-message:0}", "{urn:xmpp:jingle-message:1}"))
           for child in stanza):
        return True, "jingle call"
    if any(child.get("by") == user for child in stanza.findall("{urn:xmpp:sid:0}stanza-id")):
        return True, "archived"
    return False, "default"


def carbon(stanza: Element, direction: str, user: str) -> Element:
    """The copy of `stanza` wrapped as XEP-0280 asks: from the user's bare JID."""
    wrapper = Element(MESSAGE, {"from": user, "type": stanza.get("type", "normal")})
    forwarded = SubElement(SubElement(wrapper, f"{{{NS}}}{direction}"),
                           f"{{{FORWARD_NS}}}forwarded")
    forwarded.append(copy.deepcopy(stanza))
    return wrapper


def _send_copies(sessions: list[Any], wrapped: Element) -> None:
    for session in sessions:
        # One shell per session: some transports queue the element before writing it.
        each = copy.copy(wrapped)
        each.set("to", str(session.jid))
        session.send(each)


def copy_sent(m: ModuleContext, event: Any) -> None:
    """A message a local client sends: a <sent/> copy to its other resources."""
    origin, stanza = event.origin, event.stanza
    user = origin.jid.bare
    targets = [s for s in m.sessions(user).values()
               if s is not origin and wants_carbons(m, s)]
    if not targets or not should_copy(stanza, True, str(user))[0]:
        return
    wrapped = carbon(stanza, "sent", str(user))
    forwarded = wrapped[0][0][0]
    if not forwarded.get("to"):
        forwarded.set("to", str(user))
    _send_copies(targets, wrapped)


def copy_received(m: ModuleContext, event: Any) -> None:
    """A message for a local user: a <received/> copy to the resources with
    carbons on that neither it is addressed to nor routing delivers it to."""
    stanza, to = event.stanza, event.to
    if to.resource is None and "/" in stanza.get("to", ""):
        return  # for a resource that has gone: handled already as message/full
    sessions = m.sessions(to.bare)
    if not sessions:
        return
    user = str(to.bare)
    should, why = should_copy(stanza, False, user)
    if not should:
        if why == "private":
            for private in stanza.findall(PRIVATE):
                stanza.remove(private)
        return
    addressed = sessions.get(to.resource) if to.resource else None
    if addressed is not None:
        skip = [addressed]
    else:
        skip = bare_targets(m, to.bare, stanza.get("type", "normal"))
    targets = [s for s in sessions.values()
               if wants_carbons(m, s) and not any(s is other for other in skip)]
    if targets:
        _send_copies(targets, carbon(stanza, "received", user))

