"""Per-session stanza filters (Prosody's util/filters): "stanzas/in" and "stanzas/out".

A filter is `fn(stanza, session)` returning the stanza to go on with (the
same one, or another) or None to drop it. Chains run by descending priority.
Sessions start with no chains at all, so an unfiltered stanza costs one test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xml.etree.ElementTree import Element

Filter = Callable[[Element, Any], "Element | None"]
KINDS = ("stanzas/in", "stanzas/out")

#: What a session holds before any filter is added (shared, never mutated).
NO_FILTERS: dict[str, tuple[Filter, ...]] = {}


def add_filter(session: Any, kind: str, fn: Filter, priority: int = 0) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown filter kind {kind!r}; one of {KINDS}")
    if session.filters is NO_FILTERS:
        session.filters = {}
        session.filter_ranks = {}
    ranked = session.filter_ranks.setdefault(kind, [])
    ranked.append((-priority, len(ranked), fn))
    ranked.sort(key=lambda entry: entry[:2])
    session.filters[kind] = tuple(entry[2] for entry in ranked)


def remove_filter(session: Any, kind: str, fn: Filter) -> None:
    if session.filters is NO_FILTERS:
        return
    ranked = [entry for entry in session.filter_ranks.get(kind, ()) if entry[2] is not fn]
    session.filter_ranks[kind] = ranked
    session.filters[kind] = tuple(entry[2] for entry in ranked)


def run_filters(chain: tuple[Filter, ...], stanza: Element, session: Any) -> Element | None:
    """`stanza` through `chain`; None once a filter drops it."""
    for fn in chain:
        result = fn(stanza, session)
        if result is None:
            return None
        stanza = result
    return stanza
