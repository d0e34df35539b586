"""The HTTP server's WSGI application (Prosody's mod_http): virtual hosts, paths, CORS, proxies.

`build_wsgi_app(config, providers)` gives one WSGI callable, run by pywsgi
(http_apps.server), gunicorn's gevent worker or Flask's test client alike:

    metrics count -> TrustedProxies -> HostDispatcher -> the host's HostSite
        -> a plain WSGI route (http_apps.plain) or the host's Flask app

Each layer also has a `direct_route(PlainRequest)`: the HTTP server asks it, once a
request head is in, for a plain route's BodyHandler it may call without an environ
(http_apps.plain), giving the same answer as the WSGI path.

Each host with HTTP apps gets its own Flask app (`create_app`) carrying the
blueprints of its providers, each mounted at its path (http_apps.urls.base_path),
with their plain WSGI routes (`HttpProvider.wsgi_handlers`) in front of it. The
Flask app (http_apps.flask_host) is made at the first request that may reach it,
so a server whose HTTP is plain routes alone (BOSH, WebSocket) never loads Flask.
HTTP apps of global modules are served on every host, before host selection.

Route code sees, per request:
- `flask.request.remote_addr`: the client address, after `trusted_proxies`
  (the connected peer stays in `flask.request.environ["vireo.peer_addr"]`);
- `flask.request.is_secure`: true for https, directly or through a trusted proxy;
- `flask.current_app.config["VIREO_HOST"]`: the VirtualHost or Component the app
  serves ("*" for global apps) and `["VIREO_CONFIG"]`: the Config;
- `http_apps.urls.external_url(config, host, path)` to build public URLs.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from http_apps.cors import CorsPolicy, cors_policy
from http_apps.errors import wsgi_error
from http_apps.plain import (
    Answer,
    DirectRoute,
    PlainRequest,
    PlainRoute,
    plain_paths,
    redirect_to_slash,
)
from http_apps.provider import GLOBAL_HOST, HttpProvider
from http_apps.proxies import DEFAULT_TRUSTED_PROXIES, TrustedProxies
from http_apps.urls import base_path
from xmpp.lru import remember
from xmpp.metrics import HTTP_RESPONSES

if TYPE_CHECKING:
    import flask

log = logging.getLogger(__name__)

#: Prosody's default request body limit (`http_max_content_size`).
DEFAULT_MAX_CONTENT_SIZE = 10 * 1024 * 1024

_PORT = re.compile(r":\d+$")
#: Host field -> the host name it gives, as seen lately: every request of a client
#: sends the same one, and the regex cost more than the rest of picking the app.
_HOST_NAMES: dict[str, str] = {}
_HOST_NAMES_KEPT = 1000


class HostSite:
    """The WSGI app of one host: its plain routes (http_apps.plain) ahead of its Flask
    app, which is built (http_apps.flask_host) at the first request it may answer.

    `subpath_routes` are (prefix ending in "/", route) for apps serving every path
    under their mount path (HttpProvider.subpaths), longest prefix first; a blueprint
    mounted deeper than such a prefix keeps the paths under it.
    """

    def __init__(self, make_app: Callable[[], flask.Flask], routes: dict[str, PlainRoute],
                 mount_paths: tuple[str, ...],
                 subpath_routes: Iterable[tuple[str, PlainRoute]] = ()) -> None:
        self._make_app = make_app
        self.routes = routes
        self.mount_paths = mount_paths  # of the blueprints
        self.subpath_routes = tuple(
            (prefix, route, tuple(m for m in mount_paths if len(m) >= len(prefix)))
            for prefix, route in sorted(subpath_routes, key=lambda item: -len(item[0])))

    @functools.cached_property
    def app(self) -> flask.Flask:
        return self._make_app()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        route = self.routes.get(path)
        if route is None and self.subpath_routes:
            found = self._under(path)
            if found is not None:
                prefix, route = found
                # As a WSGI dispatcher does: the mount path moves to SCRIPT_NAME.
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix[:-1]
                environ["PATH_INFO"] = path[len(prefix) - 1:]
        return (route or self.app)(environ, start_response)

    def _under(self, path: str) -> tuple[str, PlainRoute] | None:
        """The subpath route whose prefix starts `path`, unless a blueprint mounted
        deeper does."""
        for prefix, route, deeper in self.subpath_routes:
            if path.startswith(prefix):
                return None if path.startswith(deeper) else (prefix, route)
        return None

    def handles(self, environ: dict) -> bool:
        """Whether a route answers this path (or redirects it, or wants another method)."""
        path = environ.get("PATH_INFO", "")
        if path in self.routes or self._under(path) is not None:
            return True
        if not path.startswith(self.mount_paths):
            return False
        from http_apps.flask_host import handles  # loaded with the app

        return handles(self.app, environ)

    def claims(self, path: str) -> bool | None:
        """`handles` told from the path alone; None when only the environ can tell."""
        if path in self.routes or self._under(path) is not None:
            return True
        return None if path.startswith(self.mount_paths) else False

    def direct_route(self, request: PlainRequest) -> DirectRoute | None:
        """The direct route (http_apps.plain) of the plain route at the request's path."""
        route = self.routes.get(request.path)
        return route.direct_route(request) if route is not None else None


def create_app(config: Any, host: str, providers: Iterable[HttpProvider]) -> HostSite:
    """The app of `host` (a VirtualHost, a Component or "*") carrying its providers' apps.

    The config is read now (its warnings come at start); the Flask app serving the
    blueprints is made when a request first needs it.
    """
    app_limit = config.get_int("http_max_content_size", DEFAULT_MAX_CONTENT_SIZE, min=0)
    blueprints: list[tuple[HttpProvider, str]] = []
    policies: dict[str, CorsPolicy] = {}
    routes: dict[str, PlainRoute] = {}
    subpath_routes: list[tuple[str, PlainRoute]] = []
    for provider in providers:
        path = base_path(config, host, provider.name, provider.default_path)
        handlers = provider.wsgi_handlers or {}
        policy = cors_policy(config, provider.name, provider.cors,
                             [*provider.methods,
                              *(m for m in handlers if m not in ("HEAD", "OPTIONS"))])
        if provider.make_blueprint is not None:
            blueprints.append((provider, path))
            if policy is not None:
                policies[provider.name] = policy
        if handlers:
            limit = app_limit if provider.max_body_size is None else provider.max_body_size
            route = PlainRoute(handlers, host=host, limit=limit, app_limit=app_limit, cors=policy)
            if provider.subpaths:
                prefix = path.rstrip("/") + "/"
                subpath_routes.append((prefix, route))
                if path != prefix:
                    routes[path] = PlainRoute({"GET": redirect_to_slash}, host=host, limit=limit,
                                              app_limit=app_limit, cors=None)
            else:
                routes.update(dict.fromkeys(plain_paths(path), route))
        log.debug("Serving HTTP app %r on %s at %s", provider.name, host, path)

    def make_app() -> flask.Flask:
        from http_apps.flask_host import host_app

        return host_app(config, host, app_limit, blueprints, policies)

    return HostSite(make_app, routes, tuple(path for _, path in blueprints), subpath_routes)


class HostDispatcher:
    """WSGI middleware picking the app (HostSite) of the request's HTTP host.

    Global apps answer first when one of their routes matches the path. Then the
    Host header (port stripped, case folded) selects the host; an unknown or
    missing one falls back to `default_host` when that is served, else 404
    "Unknown host" (400 without a Host header). Hosts sharing one HTTP name
    (`http_host`) are tried in order, the first with a matching route serving.
    """

    def __init__(self, hosts: dict[str, list[HostSite]], global_app: HostSite | None,
                 default_host: str | None) -> None:
        self.hosts = hosts
        self.global_app = global_app
        self.default_host = default_host.lower() if default_host else None

    def __call__(self, environ, start_response):
        if self.global_app is not None and self.global_app.handles(environ):
            return self.global_app(environ, start_response)
        name, apps = self._apps(environ.get("HTTP_HOST", ""))
        if not apps:
            if not name:
                return wsgi_error(start_response, 400, "Missing or invalid 'Host' header")
            return wsgi_error(start_response, 404, f"Unknown host: {name}")
        if len(apps) > 1:
            return next((app for app in apps if app.handles(environ)), apps[0])(
                environ, start_response)
        return apps[0](environ, start_response)

    def _apps(self, host_field: str) -> tuple[str, list[HostSite] | None]:
        """The host name a Host field gives, and the apps of that host, else of the
        default host."""
        name = _HOST_NAMES.get(host_field)
        if name is None:
            name = _PORT.sub("", host_field.strip()).lower()
            remember(_HOST_NAMES, host_field, name, _HOST_NAMES_KEPT)  # the client's choice
        return name, self.hosts.get(name) or self.hosts.get(self.default_host or "")

    def direct_route(self, request: PlainRequest) -> DirectRoute | None:
        """The direct route of the app __call__ would pick, when the path and Host
        alone pick it (a Flask route needs the environ to tell)."""
        if self.global_app is not None:
            claimed = self.global_app.claims(request.path)
            if claimed is None:
                return None
            if claimed:
                return self.global_app.direct_route(request)
        _name, apps = self._apps(request.host or "")
        if not apps:
            return None  # an error page, through WSGI
        site = apps[0]
        if len(apps) > 1:
            for app in apps:
                claimed = app.claims(request.path)
                if claimed is None:
                    return None
                if claimed:
                    site = app
                    break
        return site.direct_route(request)


class _CountStatus:
    """Counts responses by status (vireo_http_requests_total)."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        def counting_start_response(status, headers, exc_info=None):
            HTTP_RESPONSES[status.split(" ", 1)[0]] += 1
            return start_response(status, headers, exc_info)

        return self.app(environ, counting_start_response)

    def direct_route(self, request: PlainRequest) -> DirectRoute | None:
        """The app's direct route (http_apps.plain), its answers counted."""
        find = getattr(self.app, "direct_route", None)
        route = find(request) if find is not None else None
        if route is None:
            return None

        def counted_route(read: Callable[[], bytes]) -> Answer:
            status, headers, body = route(read)
            HTTP_RESPONSES[status.split(" ", 1)[0]] += 1
            return status, headers, body

        return counted_route


def _served_hosts(config: Any, providers: list[HttpProvider]) -> list[str]:
    """Hosts with an HTTP app: those with providers and those loading mod_http themselves."""
    hosts = [p.host for p in providers if not p.global_]
    for section in config.hosts.values():
        if section.enabled and (section.module == "http" or "http" in section.modules()):
            hosts.append(section.name)
    return list(dict.fromkeys(hosts))


def _http_name(config: Any, host: str) -> str:
    """The name a host is served under: its `http_host`, else its own name."""
    section = config.host(host)
    return ((section.get_str("http_host", None) if section else None) or host).lower()


def build_wsgi_app(config: Any, providers: Iterable[HttpProvider]):
    """The whole HTTP server as one WSGI callable (see the module docstring)."""
    providers = list(providers)
    hosts: dict[str, list[HostSite]] = {}
    for host in _served_hosts(config, providers):
        http_name = _http_name(config, host)
        if http_name in hosts:
            log.warning("Host %s shares HTTP host %s with another host", host, http_name)
        hosts.setdefault(http_name, []).append(
            create_app(config, host, [p for p in providers if p.host == host and not p.global_]))
    global_providers = [p for p in providers if p.global_]
    global_app = create_app(config, GLOBAL_HOST, global_providers) if global_providers else None
    default_host = config.get_str("http_default_host", None)
    if default_host and default_host.lower() not in hosts:
        # Prosody wants the http_host of the intended host here; its own name is as clear.
        default_host = _http_name(config, default_host)
    app = HostDispatcher(hosts, global_app, default_host)
    trusted = config.get_list("trusted_proxies", DEFAULT_TRUSTED_PROXIES)
    return _CountStatus(TrustedProxies(app, trusted))
