"""XEP-0352 Client State Indication, the protocol (Prosody's mod_csi): the stream
feature, and `<active/>`/`<inactive/>` from a bound client turned into the
`csi-client-active`/`csi-client-inactive` events. What an inactive state means
for delivery is a policy module's (csi_simple)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import SubElement

from xmpp.moduleapi import ModuleContext

CSI = "urn:xmpp:csi:0"
MODULE = "csi"


@dataclass(slots=True)
class ClientState:
    """What the client last said (Prosody's session.state)."""

    active: bool = True


def is_inactive(session: Any) -> bool:
    state = session.module_data.get(MODULE)
    return state is not None and not state.active


def setup(m: ModuleContext) -> None:
    def features(event: Any) -> None:
        if event.origin.authenticated:
            SubElement(event.features, f"{{{CSI}}}csi")

    def indicate(active: bool) -> Any:
        def handler(event: Any) -> bool | None:
            session = event.origin
            if session.jid is None:
                return None  # before binding, not a state of any session
            m.session_data(session, ClientState).active = active
            m.fire("csi-client-active" if active else "csi-client-inactive", origin=session)
            return True
        return handler

    m.hook("stream-features", features)
    m.hook(f"stanza/{CSI}:active", indicate(True))
    m.hook(f"stanza/{CSI}:inactive", indicate(False))
