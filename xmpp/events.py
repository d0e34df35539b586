"""Named events with prioritised handlers (the idea of Prosody's util/events).

Handlers of one event run by descending priority, in the order they were
added within a priority. A handler returning a truthy value stops the chain,
and `fire` returns that value; `None` means nobody handled the event.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

Handler = Callable[["Event"], Any]


class Event(SimpleNamespace):
    """What handlers of one firing share (Prosody's event table): `origin`,
    `stanza` and whatever fields the event names. Handlers may add fields."""


class EventBus:
    """The events of one host (or of the whole server)."""

    def __init__(self) -> None:
        # name -> handlers in call order; rebuilt on hook/unhook, read on fire.
        self.handlers: dict[str, tuple[Handler, ...]] = {}
        # What comes before the first "/" of each hooked name ("pre-message" for
        # "pre-message/bare"): hot paths test one family before naming an event.
        self.families: frozenset[str] = frozenset()
        self._ranked: dict[str, list[tuple[int, int, Handler]]] = {}
        self._added = 0

    def hook(self, name: str, handler: Handler, priority: int = 0) -> None:
        self._added += 1
        ranked = self._ranked.setdefault(name, [])
        ranked.append((-priority, self._added, handler))
        ranked.sort(key=lambda entry: entry[:2])
        self.handlers[name] = tuple(entry[2] for entry in ranked)
        self._update_families()

    def _update_families(self) -> None:
        self.families = frozenset(name.partition("/")[0] for name in self.handlers)

    def unhook(self, name: str, handler: Handler) -> None:
        ranked = [entry for entry in self._ranked.get(name, ()) if entry[2] is not handler]
        if ranked:
            self._ranked[name] = ranked
            self.handlers[name] = tuple(entry[2] for entry in ranked)
        else:
            self._ranked.pop(name, None)
            self.handlers.pop(name, None)
        self._update_families()

    def __contains__(self, name: str) -> bool:
        return name in self.handlers

    def fire(self, name: str, **fields: Any) -> Any:
        """Run the handlers of `name` with one Event made of `fields`."""
        handlers = self.handlers.get(name)
        if not handlers:
            return None
        return self.fire_event(name, Event(**fields), handlers)

    def fire_event(self, name: str, event: Event,
                   handlers: tuple[Handler, ...] | None = None) -> Any:
        """Run the handlers of `name` with an Event already made."""
        for handler in handlers if handlers is not None else self.handlers.get(name, ()):
            result = handler(event)
            if result:
                return result
        return None
