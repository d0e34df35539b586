"""Per-session module state that other nodes of a cluster see too.

A module keeps its state on a session under its own name (`session_data`).
Most of it matters only where the session lives, but some is read by whoever
routes to the session: carbons enabled, "asked for the roster". A module
declares such state shared, with how to turn it into a small JSON value and
back; whatever mirrors sessions across nodes (mod_cluster) carries the values
and restores them on its stand-in sessions, so module code that reads
`session.module_data` works on those unchanged. Alone, a node keeps only the
declarations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Codec:
    """How one module's state becomes a JSON value (`encode`) and back (`decode`)."""

    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


class SharedSessionData:
    """The declarations, by module name, and the two directions over a session's
    `module_data`."""

    def __init__(self) -> None:
        self._codecs: dict[str, Codec] = {}

    def declare(self, module: str, encode: Callable[[Any], Any],
                decode: Callable[[Any], Any]) -> None:
        self._codecs[module] = Codec(encode, decode)

    def export(self, module_data: MutableMapping[str, Any]) -> dict[str, Any]:
        """The shared part of a session's state, as JSON values by module name."""
        return {name: codec.encode(module_data[name]) for name, codec in self._codecs.items()
                if module_data.get(name) is not None}

    def restore(self, module_data: MutableMapping[str, Any], shared: dict[str, Any]) -> None:
        """Put exported state into a stand-in session's `module_data`: each declared
        module's value replaced, or removed when the session no longer has one.
        A value this node cannot read (a peer on another version) counts as none."""
        for name, codec in self._codecs.items():
            module_data.pop(name, None)
            if name in shared:
                try:
                    module_data[name] = codec.decode(shared[name])
                except (TypeError, ValueError, KeyError) as error:
                    log.warning("Shared session state of %s unreadable: %s", name, error)
