"""Message of the day (Prosody's mod_motd): `motd_text` sent from `motd_jid`
(the host) to each client at its initial presence."""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.moduleapi import ModuleContext


def setup(m: ModuleContext) -> None:
    text = m.config.get_str("motd_text", None)
    if not text:
        return
    # As Prosody: strip the indentation the config file gave the text.
    text = re.sub(r"\n[ \t]+", "\n", text.strip())
    sender = m.config.get_str("motd_jid", m.host.name) or m.host.name

    def on_initial(event: Any) -> None:
        message = Element(f"{{{ns.CLIENT}}}message", {"to": str(event.origin.jid),
                                                     "from": sender})
        SubElement(message, f"{{{ns.CLIENT}}}body").text = text
        m.route(message)

    m.hook("presence/initial", on_initial, 1)
