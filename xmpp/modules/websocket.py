"""RFC 7395 XMPP over WebSocket (Prosody's mod_websocket): c2s sessions on WebSocket connections.

The HTTP app "websocket" is mounted at /xmpp-websocket (`http_paths.websocket`
moves it) on the http and https ports, with CORS on unless
`http_cors_override.websocket` says otherwise. Enabled in the global
modules_enabled it answers on every HTTP host; enabled on a VirtualHost only, on
that host's HTTP name. Either way the `to` of the client's <open/> picks the XMPP
host, which must have websocket loaded.

The WebSocket protocol is wsproto's (python-hyper): a maintained, sans-I/O
implementation of RFC 6455 frames (masking, control frames, UTF-8, close codes),
which fits our rings: bytes in, events out, no socket. The socket loop is ours
(http_apps.websocket.service), on the connection gevent's pywsgi or gunicorn
hands over after the 101 (http_apps.upgrade).

Options (global section, as Prosody): consider_websocket_secure (false),
websocket_frame_buffer_limit (2 x c2s_stanza_size_limit),
websocket_frame_fragment_limit (8), websocket_get_response_text, c2s_close_timeout
(5), network_settings.read_timeout (840: a silent connection gets a ping). Each
message is held to c2s_stanza_size_limit (c2s_unauthenticated_stanza_size_limit
before authentication).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from http_apps.websocket.service import WebSocketOptions, WebSocketService
from http_apps.websocket.views import wsgi_handlers
from xmpp.errors import StreamError
from xmpp.hosts import ModuleContext

if TYPE_CHECKING:
    from xmpp.server import VireoServer

_services: WeakKeyDictionary[VireoServer, WebSocketService] = WeakKeyDictionary()


def service_for(server: VireoServer) -> WebSocketService:
    """The server's WebSocket service, made on first use."""
    service = _services.get(server)
    if service is None:
        def serves(domain: str) -> bool:
            host = server.router.hosts.get(domain)
            return host is not None and not host.is_component and "websocket" in host.modules

        options = WebSocketOptions.from_config(server.config,
                                               server.c2s_stanza_size_limit(None))
        service = WebSocketService(server, options, serves)
        _services[server] = service
    return service


def setup(m: ModuleContext) -> None:
    server = m.server
    first = server not in _services
    service = service_for(server)
    # Sessions get their system-shutdown stream error before the HTTP server drains.
    m.hook("server-stopping", lambda: service.close_all(StreamError("system-shutdown")))
    if first and "cross_domain_websocket" in server.config.globals:
        m.log.warning("The 'cross_domain_websocket' option is deprecated and ignored; "
                      "CORS for websocket is set with http_cors_override")
    global_ = "websocket" in server.config.get_list("modules_enabled", [])
    if global_ and not first:
        return  # one global app serves every host
    m.provides_http("websocket", None, wsgi_handlers=wsgi_handlers(service),
                    default_path="/xmpp-websocket", cors=True, methods=("GET",),
                    global_=global_)
