"""XEP-0199 XMPP Ping: the server answers pings addressed to it (mod_ping)."""

from __future__ import annotations

from xmpp import namespaces as ns
from xmpp.moduleapi import ModuleContext

PING = f"{{{ns.PING}}}ping"


def setup(m: ModuleContext) -> None:
    m.add_feature(ns.PING)
    m.hook_iq("get", PING, lambda request: None)
