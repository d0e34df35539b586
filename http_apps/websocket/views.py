"""The WebSocket endpoint (RFC 6455 section 4, RFC 7395 section 3.1): a page, or the upgrade.

A GET without a WebSocket key (a browser pointed at the URL) gets a short page,
as Prosody's; a handshake is checked (handshake.py) and answered 101, after
which the connection belongs to the WebSocket session (service.py) until it
closes. The handler is a plain WSGI route (http_apps.plain), behind the same
host dispatcher, trusted proxies and CORS layers as BOSH.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from http_apps.errors import wsgi_error
from http_apps.plain import SECURE_SCHEMES, WsgiApp
from http_apps.upgrade import SwitchedProtocols, connection_socket, early_data
from http_apps.websocket.handshake import HandshakeError, accept_headers, wants_upgrade
from http_apps.websocket.service import WebSocketService


def page(text: str, secure: bool) -> bytes:
    """The endpoint's HTML page, with Prosody's warning when it is not considered secure."""
    warning = "" if secure else "<p><strong>This endpoint is not considered secure!</strong></p>"
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>WebSocket</title>'
            f"</head><body>\n<p>{html.escape(text)}</p>{warning}\n</body></html>\n").encode()


def wsgi_handlers(service: WebSocketService) -> dict[str, WsgiApp]:
    """The plain WSGI handler serving the WebSocket endpoint at the mount path: GET."""
    options = service.options

    def get(environ: dict, start_response: Any) -> Iterable[bytes]:
        secure = environ.get("wsgi.url_scheme") in SECURE_SCHEMES
        if not wants_upgrade(environ):
            body = page(options.page_text, secure or options.consider_secure)
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        sock = connection_socket(environ)
        try:
            if sock is None:
                raise HandshakeError(501, "This HTTP server cannot hand connections over")
            headers = accept_headers(environ)
            if early_data(environ):
                raise HandshakeError(400, "Data sent before the handshake completed")
        except HandshakeError as error:
            # Bytes the client may have sent after its request are no next request.
            return wsgi_error(start_response, error.status, str(error),
                              (*error.headers, ("Connection", "close")))
        write = start_response("101 Switching Protocols", headers)
        peer = (environ.get("REMOTE_ADDR") or "", int(environ.get("REMOTE_PORT") or 0))
        return SwitchedProtocols(write, lambda: service.serve(sock, peer=peer, secure=secure))

    return {"GET": get}
