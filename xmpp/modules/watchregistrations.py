"""Tell the `registration_watchers` (default: `admins`) of each new
registration (Prosody's mod_watchregistrations)."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.moduleapi import ModuleContext
from xmpp.modules.welcome import fill

DEFAULT = "User $username just registered on $host from $ip"


def setup(m: ModuleContext) -> None:
    watchers = [str(jid) for jid in m.config.get_list(
        "registration_watchers", m.config.get_list("admins", []))]
    sender = m.config.get_str("registration_from", m.host.name) or m.host.name
    template = m.config.get_str("registration_notification", DEFAULT) or DEFAULT
    message_type = m.config.get_str("registration_notification_type", "chat") or "chat"

    def on_registered(event: Any) -> None:
        # The registering address (Prosody's event.ip), else the stream's.
        session = getattr(event, "session", None)
        peer = getattr(getattr(session, "transport", None), "peer", None) or ("?",)
        text = fill(template, {"username": event.username, "host": m.host.name,
                               "ip": str(getattr(event, "ip", None) or peer[0])})
        for watcher in watchers:
            message = Element(f"{{{ns.CLIENT}}}message",
                              {"type": message_type, "from": sender, "to": watcher})
            SubElement(message, f"{{{ns.CLIENT}}}body").text = text
            m.route(message)

    m.hook("user-registered", on_registered)
