"""Module state shared across cluster nodes (xmpp.shared_session_data): what a
node exports from a session and restores on its stand-in elsewhere."""

from __future__ import annotations

from dataclasses import dataclass

from xmpp.shared_session_data import SharedSessionData


@dataclass
class Toggle:
    on: bool


def declared() -> SharedSessionData:
    shared = SharedSessionData()
    shared.declare("carbons", lambda state: state.on, lambda on: Toggle(bool(on)))
    shared.declare("roster", bool, bool)
    return shared


def test_export_takes_the_declared_modules_that_have_state():
    module_data = {"carbons": Toggle(True), "presence": object(), "csi": object()}
    assert declared().export(module_data) == {"carbons": True}


def test_restore_replaces_declared_state_and_leaves_the_rest():
    presence = object()
    module_data = {"carbons": Toggle(False), "roster": True, "presence": presence}
    declared().restore(module_data, {"carbons": True})
    # Roster no longer in the export: the session has none (any more).
    assert module_data == {"carbons": Toggle(True), "presence": presence}


def test_a_round_trip_gives_equal_state():
    shared = declared()
    module_data = {"carbons": Toggle(True), "roster": True}
    restored: dict = {}
    shared.restore(restored, shared.export(module_data))
    assert restored == module_data


def test_an_unreadable_value_counts_as_none():
    shared = SharedSessionData()
    shared.declare("pep", lambda nodes: sorted(nodes), frozenset)
    module_data: dict = {"pep": frozenset({"old"})}
    shared.restore(module_data, {"pep": 5})  # frozenset(5): TypeError
    assert module_data == {}
