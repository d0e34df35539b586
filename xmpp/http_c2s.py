"""What the HTTP transports of c2s (BOSH, WebSocket) share as modules: one service per
server, one HTTP app (global when the module is in the global modules_enabled,
else per VirtualHost), CORS on, and a system-shutdown to every session
before the HTTP server drains."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from http_apps.provider import HttpProvider
from xmpp.moduleapi import ModuleContext


def serving_hosts(m: ModuleContext) -> Callable[[str], bool]:
    """Whether sessions may be opened to a domain: a VirtualHost that loads `m`'s module."""
    def serves(domain: str) -> bool:
        host = m.hosts().get(domain)
        return host is not None and not host.is_component and m.name in host.modules

    return serves


def provide_c2s_over_http(m: ModuleContext, *, make_service: Callable[[], Any],
                          wsgi_handlers: Callable[[Any], Any], default_path: str,
                          methods: tuple[str, ...], deprecated_option: str,
                          limit_body: bool = False) -> None:
    """Declare the module's HTTP app; `make_service()` makes the one session table
    (with `close_all(error)`), `wsgi_handlers(service)` its routes."""
    config = m.global_config
    first = not m.provided("http", m.name)
    service = m.shared(m.name, make_service)
    if first and deprecated_option in config.globals:
        m.log.warning("The %r option is deprecated and ignored; CORS for %s is set with "
                      "http_cors_override", deprecated_option, m.name)
    global_ = m.name in config.get_list("modules_enabled", [])
    if global_ and not first:
        return  # one global app serves every host
    m.hook("server-stopping", lambda event: service.close_all(event.error))
    max_body_size = None
    if limit_body:
        max_body_size = m.service("c2s").stanza_size_limit(None if global_ else m.host)
    m.provides("http", HttpProvider(
        name=m.name, host=m.host.name, make_blueprint=None, wsgi_handlers=wsgi_handlers(service),
        default_path=default_path, cors=True, methods=methods, max_body_size=max_body_size,
        global_=global_))
