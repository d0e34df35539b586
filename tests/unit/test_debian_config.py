"""Debian's stock prosody.cfg.lua: what Vireo still lacks of it, exactly, and
that the operator modules it names load on the module API."""

from __future__ import annotations

from pathlib import Path

from storage.db import Database
from storage.stores import StoreFactory
from tests.unit import storage_fixtures
from tests.unit.core_fixtures import MemoryAccounts, MemoryOffline, MemoryRosters
from xmpp.config import load_config
from xmpp.core import ServerCore
from xmpp.modules import unknown_modules

db_url = storage_fixtures.db_url
db = storage_fixtures.db

DEBIAN = Path(__file__).parent / "configs" / "debian" / "prosody.cfg.lua"

# Every module the stock config enables is now available in Vireo.
STILL_MISSING: set[str] = set()


def test_modules_not_available_yet():
    config = load_config(DEBIAN)
    missing = {name for _host, name in unknown_modules(config)}
    assert missing == STILL_MISSING


def test_operator_modules_load(db: Database):
    core = ServerCore(load_config(DEBIAN), accounts=MemoryAccounts(), stores=StoreFactory(db),
                      typed_stores={"rosters": MemoryRosters(), "offline": MemoryOffline(),
                                    "uploads": None})
    assert core.global_host.modules == ["c2s", "s2s", "admin_shell", "limits"]
    modules = core.router.hosts["example.com"].modules
    for name in ("invites", "invites_adhoc", "invites_register", "admin_adhoc", "adhoc",
                 "register", "posix"):
        assert name in modules
    assert "admin_shell" not in modules and "limits" not in modules
    assert "admin/shell" in core.global_host.events
    assert "session-opened" in core.global_host.events
