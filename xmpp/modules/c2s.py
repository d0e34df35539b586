"""Client connections (Prosody's mod_c2s): the c2s and c2s_direct_tls listeners.

A global module: it declares the two services as data and the server opens
them. `c2s_ports` (5222) speak STARTTLS; `c2s_direct_tls_ports` (none by
default, XEP-0368) start with the TLS handshake, choosing the certificate by SNI.
"""

from __future__ import annotations

from typing import Any

from xmpp.c2s import C2SServices, C2SSession
from xmpp.moduleapi import ModuleContext
from xmpp.providers import NetProvider


def setup(m: ModuleContext) -> None:
    services: C2SServices = m.service("c2s")

    def make_session(transport: Any) -> C2SSession:
        return C2SSession(services, transport)

    def starttls_context(session: Any) -> Any:
        return services.certificates.context_for(session.host.name) if session.host else None

    m.provides("net", NetProvider("c2s", make_session, default_ports=(5222,),
                                  starttls_context=starttls_context))
    if not m.config.get_list("c2s_direct_tls_ports", []):
        return
    if services.certificates.shared_server_context() is None:
        m.log.error("c2s_direct_tls_ports set but no certificate found; not listening")
        return
    # Asked per connection, so certificates reloaded on SIGHUP serve new ones.
    m.provides("net", NetProvider("c2s_direct_tls", make_session,
                                  tls_context=services.certificates.shared_server_context,
                                  starttls_context=starttls_context))
