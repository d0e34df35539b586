"""Resource Binding 2.0 (XEP-0386), as Prosody's mod_sasl2_bind2: a resource
bound inside SASL2's `<authenticate/>`, with features enabled in the same trip.

The resource is the client's `<tag/>` (cleaned, at most 32 characters, else
"client") and a part of the server's: stable per account and user agent id,
so a device that reconnects takes its old resource back (the older stream
is replaced), random without a user agent.

Inline features are other modules' (Prosody's events):
- `advertise-bind-features` (`origin`, `features`): add `<feature var=.../>`
  (`offer_inline`).
- `enable-bind-features` (`session`, `features`: the request's `<bind/>`,
  `result`: the `<bound/>` to add answers to).
A session already bound when `<success/>` is made (resumed by stream
management inside `<authenticate/>`) binds nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp.errors import StanzaError
from xmpp.moduleapi import ModuleContext
from xmpp.sasl import Failure

NS = "urn:xmpp:bind:0"
SASL2 = "urn:xmpp:sasl:2"
TAG = f"{{{NS}}}tag"
MAX_TAG = 32
# What one <bind/> may ask for: a client enables a handful of features
# (carbons, stream management, CSI); dozens are junk or an attack.
MAX_INLINE_REQUESTS = 16
_NOT_IN_TAG = re.compile(r"[^\w.-]")


def setup(m: ModuleContext) -> None:
    m.depends("sasl2")

    def requested(session: Any) -> dict[str, Element | None]:
        return m.session_data(session, dict)

    def advertise(event: Any) -> None:
        bind = SubElement(event.features, f"{{{NS}}}bind")
        inline = Element(f"{{{NS}}}inline")
        m.fire("advertise-bind-features", origin=event.origin, features=inline)
        if len(inline):
            bind.append(inline)

    def read_request(event: Any) -> None:
        bind = event.stanza.find(f"{{{NS}}}bind")
        if bind is not None and sum(child.tag != TAG for child in bind) > MAX_INLINE_REQUESTS:
            event.failure = Failure("malformed-request",
                                    f"At most {MAX_INLINE_REQUESTS} inline features")
            bind = None
        requested(event.origin)["bind"] = bind

    def bind(event: Any) -> None:
        session = event.session
        request = requested(session).pop("bind", None)
        if request is None or session.jid is not None:
            return
        try:
            jid = session.bind_resource(resource_for(session, request.findtext(TAG)))
        except StanzaError as error:
            failed = SubElement(event.success, f"{{{NS}}}failed")
            failed.append(error.error_element())
            return
        bound = SubElement(event.success, f"{{{NS}}}bound")
        m.fire("enable-bind-features", session=session, features=request, result=bound)
        event.bound = jid

    def announce(event: Any) -> None:
        # resource-bind once <success/> told the client its JID (modules may send at once).
        if getattr(event, "bound", None) is not None:
            event.session.announce_bind()

    m.hook("advertise-sasl-features", advertise, 1)
    m.hook(f"stanza/{SASL2}:authenticate", read_request, 150)
    m.hook("sasl2/c2s/success", bind, 100)
    m.hook("sasl2/c2s/success", announce, -1500)


def offer_inline(features: Element, var: str) -> None:
    """Advertise an inline feature (an `advertise-bind-features` handler's answer)."""
    SubElement(features, f"{{{NS}}}feature", var=var)


def resource_for(session: Any, tag: str | None) -> str:
    """`tag~server-part`: the server part from the account and user agent id."""
    name = _NOT_IN_TAG.sub("", tag or "")[:MAX_TAG] or "client"
    agent = session.user_agent
    if agent is None:
        return f"{name}~{secrets.token_urlsafe(6)}"
    seed = f"{session.username}\0{agent.id}".encode()
    return f"{name}~{base64.urlsafe_b64encode(hashlib.sha256(seed).digest()[:6]).decode()}"
