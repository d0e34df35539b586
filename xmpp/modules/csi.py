"""XEP-0352 Client State Indication, the protocol (Prosody's mod_csi): the stream
feature, and `<active/>`/`<inactive/>` from a bound client turned into the
`csi-client-active`/`csi-client-inactive` events. What an inactive state means
for delivery is a policy module's (csi_simple)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import SubElement

from xmpp.moduleapi import ModuleContext
from xmpp.modules.sasl2_bind2 import offer_inline

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

    def set_state(session: Any, active: bool) -> None:
        m.session_data(session, ClientState).active = active
        m.fire("csi-client-active" if active else "csi-client-inactive", origin=session)

    def indicate(active: bool) -> Any:
        def handler(event: Any) -> bool | None:
            if event.origin.jid is None:
                return None  # before binding, not a state of any session
            set_state(event.origin, active)
            return True
        return handler

    def inline(event: Any) -> None:
        # Bind 2 (XEP-0386): the state to start in, inside `<bind/>`.
        for child in event.features:
            if child.tag in (f"{{{CSI}}}active", f"{{{CSI}}}inactive"):
                set_state(event.session, child.tag == f"{{{CSI}}}active")

    m.hook("stream-features", features)
    m.hook(f"stanza/{CSI}:active", indicate(True))
    m.hook(f"stanza/{CSI}:inactive", indicate(False))
    m.hook("advertise-bind-features", lambda event: offer_inline(event.features, CSI))
    m.hook("enable-bind-features", inline)
