"""Local hosts (VirtualHost and Component sections): what their modules registered.

A host is where Prosody's modules live. Modules hook its events (see
xmpp.moduleapi) and add disco identities, features and forms; the router
fires the host's events for the stanzas addressed to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

from xmpp.errors import StanzaError
from xmpp.events import EventBus
from xmpp.stanza import make_iq_result

if TYPE_CHECKING:
    from xmpp.config import Config, HostConfig

#: The name of the global pseudo-host (Prosody's "*"), where global modules live.
GLOBAL = "*"


@dataclass(slots=True)
class IqRequest:
    """An IQ get/set being handled, with what handlers usually need."""

    stanza: Element
    payload: Element
    origin: Any  # the session it came from (None when it came from inside)
    host: LocalHost

    @property
    def type(self) -> str:
        return self.stanza.get("type", "")


@dataclass(slots=True)
class Identity:
    category: str
    type: str
    name: str | None = None


def payload_name(tag: str) -> str:
    """Prosody's `xmlns:name` of an element from its Clark-notation tag."""
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return f"{namespace}:{name}"
    return f"jabber:client:{tag}"


def iq_event(iq_type: str, target: str, payload_tag: str) -> str:
    """Prosody's event for an IQ request: `iq-get/host/urn:xmpp:ping:ping`.

    target: "host" (to the host itself), "bare" (to a user's bare JID),
    "self" (to the sender's own bare JID), "full".
    """
    return f"iq-{iq_type}/{target}/{payload_name(payload_tag)}"


@dataclass(eq=False)
class LocalHost:
    """One configured host and everything its modules registered on it."""

    name: str
    config: HostConfig | Config
    is_component: bool = False
    modules: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    identities: list[Identity] = field(default_factory=list)
    extensions: list[Element] = field(default_factory=list)
    events: EventBus = field(default_factory=EventBus)
    # An internal or external component takes every stanza for its domain.
    component_handler: Callable[[Element, Any], None] | None = None

    def add_feature(self, var: str) -> None:
        if var not in self.features:
            self.features.append(var)

    @property
    def fire(self) -> Callable[..., Any]:
        """`fire(name, **fields)`: fire event `name` on this host (see xmpp.events).
        The bus's own method: a call of ours in between packed the fields twice,
        for each of the events a login fires, most of which nobody handles."""
        return self.events.fire


IqHandler = Callable[[IqRequest], "Element | None | bool"]


@dataclass(slots=True)
class IqAnswer:
    """An IQ handler's reply for the router to send (a result or an error)."""

    stanza: Element


def hook_iq(host: LocalHost, iq_type: str, payload_tag: str, handler: IqHandler,
            target: str = "host", priority: int = 0) -> None:
    """Answer IQs of `iq_type` whose payload is `payload_tag` (Clark notation),
    sent to `target` ("host", "bare", "self" or "full"), with a handler that
    returns the result payload (an Element, or None for an empty result), True
    when it answered by itself, False to leave the IQ to the next handler, or
    raises StanzaError for an error reply."""
    def on_iq(event: Any) -> Any:
        stanza = event.stanza
        try:
            answer = handler(IqRequest(stanza, stanza[0], event.origin, host))
        except StanzaError as error:
            return IqAnswer(error.to_reply(stanza))
        if answer is True or answer is False:
            return answer
        return IqAnswer(make_iq_result(stanza, answer if isinstance(answer, Element) else None))

    host.events.hook(iq_event(iq_type, target, payload_tag), on_iq, priority)
