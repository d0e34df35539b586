"""Local hosts (VirtualHost and Component sections) and the hooks modules add to them.

A host is where Prosody's modules live: each module's `setup(m)` hooks the
stanza routes it answers (`m.hook_iq`, `m.hook`), adds disco features and
declares HTTP apps. Handlers return True to stop propagation, as in Prosody.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

if TYPE_CHECKING:
    from xmpp.config import HostConfig
    from xmpp.server import VireoServer

log = logging.getLogger(__name__)

EventHandler = Callable[..., Any]
IqHandler = Callable[["IqRequest"], "Element | None | bool"]


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


@dataclass
class LocalHost:
    """One configured host and everything its modules registered on it."""

    name: str
    config: HostConfig
    server: VireoServer
    is_component: bool = False
    modules: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    identities: list[Identity] = field(default_factory=list)
    extensions: list[Element] = field(default_factory=list)
    # (type, payload tag, target) -> handler; target is "host" or "user"
    iq_handlers: dict[tuple[str, str, str], IqHandler] = field(default_factory=dict)
    events: dict[str, list[tuple[int, EventHandler]]] = field(
        default_factory=lambda: defaultdict(list))
    # An internal or external component takes every stanza for its domain.
    component_handler: Callable[[Element, Any], None] | None = None

    def add_feature(self, var: str) -> None:
        if var not in self.features:
            self.features.append(var)

    def hook(self, event: str, handler: EventHandler, priority: int = 0) -> None:
        handlers = self.events[event]
        handlers.append((priority, handler))
        handlers.sort(key=lambda pair: -pair[0])

    def fire(self, event: str, *args: Any) -> bool:
        """Run the handlers of `event` by priority; True once one handled it."""
        return any(handler(*args) for _priority, handler in self.events.get(event, ()))

    def hook_iq(self, iq_type: str, payload_tag: str, handler: IqHandler,
                target: str = "host") -> None:
        self.iq_handlers[(iq_type, payload_tag, target)] = handler

    def iq_handler(self, iq_type: str, payload_tag: str, target: str) -> IqHandler | None:
        return self.iq_handlers.get((iq_type, payload_tag, target))


class ModuleContext:
    """What a module's setup(m) sees: its host, options, and the hook points."""

    def __init__(self, name: str, host: LocalHost) -> None:
        self.name = name
        self.host = host
        self.server = host.server
        self.log = logging.getLogger(f"{host.name}:{name}")

    @property
    def config(self) -> HostConfig:
        return self.host.config

    def hook(self, event: str, handler: EventHandler, priority: int = 0) -> None:
        self.host.hook(event, handler, priority)

    def hook_iq(self, iq_type: str, payload_tag: str, handler: IqHandler,
                target: str = "host") -> None:
        """Answer IQs of `iq_type` whose payload is `payload_tag` (Clark
        notation), sent to the host itself or (target="user") to a bare JID."""
        self.host.hook_iq(iq_type, payload_tag, handler, target)

    def add_feature(self, var: str) -> None:
        self.host.add_feature(var)

    def add_identity(self, category: str, type_: str, name: str | None = None) -> None:
        self.host.identities.append(Identity(category, type_, name))

    def add_extension(self, form: Element) -> None:
        self.host.extensions.append(form)

    def provides_http(self, name: str, make_blueprint: Callable[[], Any] | None,
                      **kwargs: Any) -> None:
        """Declare an HTTP app, mounted by the HTTP server at its path: a Flask
        blueprint, and/or plain WSGI handlers for hot routes (`wsgi_handlers`)."""
        from http_apps.provider import HttpProvider

        self.server.http_providers.append(
            HttpProvider(name=name, host=self.host.name, make_blueprint=make_blueprint, **kwargs))
