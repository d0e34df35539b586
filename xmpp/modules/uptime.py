"""XEP-0012 Last Activity on the server: seconds since it started (mod_uptime)."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from xmpp.moduleapi import ModuleContext

NS = "jabber:iq:last"


def setup(m: ModuleContext) -> None:
    m.add_feature(NS)
    m.hook_iq("get", f"{{{NS}}}query", lambda request: Element(
        f"{{{NS}}}query", {"seconds": str(int(m.now() - m.process_started))}))
