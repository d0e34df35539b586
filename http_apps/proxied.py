"""HTTP and HTTPS on PROXY-protocol ports (HAProxy's proxy-protocol.txt), as mod_net_proxy maps.

A `proxy_port_mappings` entry naming "http" or "https" opens a pywsgi listener
whose connections start with a PROXY header (read by xmpp.proxy_listener's
gate: trusted peers only, bounded in size and time, never past the header).
The request then runs with REMOTE_ADDR set to the client address the proxy
sent, so `trusted_proxies` (X-Forwarded-For) and every route see that address.
For "https" the TLS handshake follows the header on the same socket.
"""

from __future__ import annotations

import logging
from typing import Any

from http_apps.server import HttpServer, https_context
from xmpp.proxy_listener import HTTP_SERVICES, Binder, ProxyGate, configured_ports

log = logging.getLogger(__name__)


class ProxyHttpServer(HttpServer):
    """An HttpServer whose connections open with a PROXY header. `kwargs` are HttpServer's."""

    def __init__(self, listener: Any, application: Any, gate: ProxyGate, **kwargs: Any) -> None:
        super().__init__(listener, application, **kwargs)
        self.gate = gate

    def handle(self, sock: Any, address: Any) -> None:
        admitted = self.gate.admit(sock, address)
        # The gate reads the header to its last byte and no further: nothing is left over.
        if admitted is not None:
            super().handle(sock, admitted.peer)


def start_proxy_http_servers(server: Any, application: Any, bind: Binder,
                             **limits: Any) -> list[ProxyHttpServer]:
    """Open and start the PROXY ports mapped to http or https, serving `application`.

    `limits` are HttpServer's (max_head_size, head_timeout, ...). Stop them with
    http_apps.server.stop_http_servers.
    """
    servers = []
    for entry in configured_ports(server.config):
        if entry.service not in HTTP_SERVICES:
            continue
        context = None
        if entry.service == "https":
            context = https_context(server.config)
            if context is None:
                log.error("No certificate for https on PROXY port %d: not listening", entry.port)
                continue
        for interface in server.interfaces("proxy"):
            sock = bind(interface, entry.port)
            if sock is None:
                continue
            http = ProxyHttpServer(sock, application, entry.gate,
                                   service=f"proxy:{entry.service}", ssl_context=context,
                                   **limits)
            http.start()
            log.info("Listening for proxied %s on [%s]:%d", entry.service, interface, entry.port)
            servers.append(http)
    return servers
