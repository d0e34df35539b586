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

from http_apps.websocket.service import WebSocketOptions, WebSocketService
from http_apps.websocket.views import wsgi_handlers
from xmpp.http_c2s import provide_c2s_over_http, serving_hosts
from xmpp.moduleapi import ModuleContext


def setup(m: ModuleContext) -> None:
    provide_c2s_over_http(
        m, make_service=lambda: new_service(m), wsgi_handlers=wsgi_handlers,
        default_path="/xmpp-websocket", methods=("GET",),
        deprecated_option="cross_domain_websocket")


def new_service(m: ModuleContext) -> WebSocketService:
    """The server's one WebSocket service."""
    c2s = m.service("c2s")
    options = WebSocketOptions.from_config(m.global_config, c2s.stanza_size_limit(None))
    return WebSocketService(c2s, options, serving_hosts(m))
