"""A welcome message to each newly registered user (Prosody's mod_welcome):
`welcome_message`, with $username and $host replaced."""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.moduleapi import ModuleContext

DEFAULT = "Hello $username, welcome to the $host IM server!"


def fill(template: str, values: dict[str, str]) -> str:
    """Prosody's "$name" substitution; unknown names are left as they are."""
    return re.sub(r"\$(\w+)", lambda match: values.get(match.group(1), match.group(0)), template)


def setup(m: ModuleContext) -> None:
    template = m.config.get_str("welcome_message", DEFAULT) or DEFAULT

    def on_registered(event: Any) -> None:
        message = Element(f"{{{ns.CLIENT}}}message",
                          {"to": f"{event.username}@{m.host.name}", "from": m.host.name})
        SubElement(message, f"{{{ns.CLIENT}}}body").text = fill(
            template, {"username": event.username, "host": m.host.name})
        m.route(message)

    m.hook("user-registered", on_registered)
