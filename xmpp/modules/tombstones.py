"""Deleted names stay taken (Prosody's mod_tombstones): a deleted account's
name cannot be registered again, for `user_tombstone_expiry` seconds (by
default for ever). Tombstones live in the host's map store "tombstones"."""

from __future__ import annotations

from typing import Any

from xmpp.moduleapi import ModuleContext


def setup(m: ModuleContext) -> None:
    graveyard = m.open_store("tombstones", "map")
    ttl = m.config.get_number("user_tombstone_expiry", None, min=0)

    def on_deleted(event: Any) -> None:
        graveyard.set(None, event.username, int(m.now()))

    def on_registering(event: Any) -> bool | None:
        buried = graveyard.get(None, event.username)
        if buried is None:
            return None
        if ttl is not None and buried + ttl < m.now():
            graveyard.set(None, event.username, None)
            return None
        event.allowed = False
        event.reason = "A previous user by that name has been deleted"
        return True

    m.hook("user-deleted", on_deleted)
    m.hook("user-registering", on_registering, 10)
