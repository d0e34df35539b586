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
with their plain WSGI routes (`HttpProvider.wsgi_handlers`) in front of it.
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
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import flask
from flask.sessions import NullSession, SecureCookieSessionInterface
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import MapAdapter, RequestRedirect
from werkzeug.utils import get_content_type

from http_apps.cors import cors_policy, install_cors
from http_apps.errors import install_error_handlers, wsgi_error
from http_apps.limits import limit_body
from http_apps.plain import Answer, DirectRoute, PlainRequest, PlainRoute, plain_paths
from http_apps.provider import GLOBAL_HOST, HttpProvider
from http_apps.proxies import DEFAULT_TRUSTED_PROXIES, TrustedProxies
from http_apps.urls import base_path
from xmpp.metrics import HTTP_RESPONSES

log = logging.getLogger(__name__)

#: Prosody's default request body limit (`http_max_content_size`).
DEFAULT_MAX_CONTENT_SIZE = 10 * 1024 * 1024

_PORT = re.compile(r":\d+$")


#: What werkzeug's Map.bind_to_environ reads of the environ (get_host included).
_BIND_KEYS = ("HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme", "HTTP_CONNECTION",
              "HTTP_UPGRADE", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_METHOD")
_ADAPTERS_KEPT = 1000


class _MovedPermanently(RequestRedirect):
    code = 301


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's cookie sessions, with one null session shared by every request: an app
    without a secret key (all of ours) made a new one per request to refuse writes."""

    _null = NullSession()

    def make_null_session(self, app: flask.Flask) -> NullSession:
        return self._null


class HostApp(flask.Flask):
    """The Flask app of one host: Prosody's 301 to the slash-terminated path."""

    session_interface = _SessionInterface()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}
        self._adapters: dict[tuple[Any, ...], MapAdapter] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Flask asks inspect whether each view and hook is a coroutine function, on
        # every request; functions don't change, so their answer is kept.
        if type(func) is not types.FunctionType:
            return super().ensure_sync(func)
        sync = self._sync.get(func)
        if sync is None:
            sync = self._sync[func] = super().ensure_sync(func)
        return sync

    def create_url_adapter(self, request: flask.Request | None) -> MapAdapter | None:
        # Binding the URL map IDNA-encodes the host and decodes the path on every request;
        # an adapter is only read after, so requests alike (polls, probes) share one.
        if request is None or not self._adapters_shareable:
            return super().create_url_adapter(request)
        environ = request.environ
        key = tuple(environ.get(name) for name in _BIND_KEYS)
        adapter = self._adapters.get(key)
        if adapter is None:
            adapter = super().create_url_adapter(request)
            if len(self._adapters) >= _ADAPTERS_KEPT:  # paths are the client's choice
                self._adapters.clear()
            self._adapters[key] = adapter
        return adapter

    @property
    def _adapters_shareable(self) -> bool:
        """Whether the adapter depends on the environ's _BIND_KEYS alone (no trusted
        hosts to check, no server name or host matching configured)."""
        return (self.config["TRUSTED_HOSTS"] is None and self.config["SERVER_NAME"] is None
                and not self.url_map.host_matching and not self.subdomain_matching)

    def make_response(self, rv: Any) -> flask.Response:
        # A view returning text (the usual case) gets Flask's response with its Content-Type
        # given up front: werkzeug would look for one in the empty headers first, at the
        # price of an exception raised and caught inside the lookup.
        if type(rv) is str or type(rv) is bytes:
            headers = Headers()
            headers.add("Content-Type", self._text_type)
            return self.response_class(rv, headers=headers)
        return super().make_response(rv)

    @functools.cached_property
    def _text_type(self) -> str:
        """The Content-Type werkzeug gives a response without one."""
        return get_content_type(self.response_class.default_mimetype, "utf-8")

    def raise_routing_exception(self, request: flask.Request) -> None:
        error = request.routing_exception
        if isinstance(error, RequestRedirect):
            # "/base" on a "/base/" route: a relative Location keeping the query.
            target = urlsplit(error.new_url)
            location = target.path + (f"?{target.query}" if target.query else "")
            raise _MovedPermanently(location) from None
        super().raise_routing_exception(request)


def _route_methods(app: flask.Flask, blueprint: str) -> set[str]:
    methods: set[str] = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".", 1)[0] == blueprint:
            # HEAD comes implicitly with GET and OPTIONS from Flask; neither is a route method.
            methods |= (rule.methods or set()) - {"HEAD", "OPTIONS"}
    return methods


class HostSite:
    """The WSGI app of one host: its plain routes (http_apps.plain) ahead of its Flask app."""

    def __init__(self, app: flask.Flask, routes: dict[str, PlainRoute]) -> None:
        self.app = app
        self.routes = routes

    def __call__(self, environ, start_response):
        route = self.routes.get(environ.get("PATH_INFO", ""))
        return (route or self.app)(environ, start_response)

    def handles(self, environ: dict) -> bool:
        """Whether a route answers this path (or redirects it, or wants another method)."""
        return environ.get("PATH_INFO", "") in self.routes or _handles(self.app, environ)

    def claims(self, path: str) -> bool | None:
        """`handles` told from the path alone; None when only the environ can tell."""
        if path in self.routes:
            return True
        return None if path.startswith(self.app.config["VIREO_MOUNT_PATHS"]) else False

    def direct_route(self, request: PlainRequest) -> DirectRoute | None:
        """The direct route (http_apps.plain) of the plain route at the request's path."""
        route = self.routes.get(request.path)
        return route.direct_route(request) if route is not None else None


def create_app(config: Any, host: str, providers: Iterable[HttpProvider]) -> HostSite:
    """The app of `host` (a VirtualHost, a Component or "*") carrying its providers' apps."""
    app = HostApp(__name__, static_folder=None)
    app.url_map.merge_slashes = False
    app_limit = config.get_int("http_max_content_size", DEFAULT_MAX_CONTENT_SIZE, min=0)
    app.config.update(VIREO_HOST=host, VIREO_CONFIG=config, MAX_CONTENT_LENGTH=app_limit)
    body_limits: dict[str, int] = {}
    cors = {}
    mount_paths = []
    routes: dict[str, PlainRoute] = {}
    for provider in providers:
        path = base_path(config, host, provider.name, provider.default_path)
        if provider.make_blueprint is not None:
            mount_paths.append(path)
            app.register_blueprint(provider.make_blueprint(), name=provider.name,
                                   url_prefix=path)
        if provider.max_body_size is not None:
            body_limits[provider.name] = provider.max_body_size
        handlers = provider.wsgi_handlers or {}
        policy = cors_policy(config, provider.name, provider.cors,
                             [*provider.methods, *_route_methods(app, provider.name),
                              *(m for m in handlers if m not in ("HEAD", "OPTIONS"))])
        if policy is not None:
            cors[provider.name] = policy
        if handlers:
            route = PlainRoute(handlers, host=host, limit=body_limits.get(provider.name, app_limit),
                               app_limit=app_limit, cors=policy)
            routes.update(dict.fromkeys(plain_paths(path), route))
        log.debug("Serving HTTP app %r on %s at %s", provider.name, host, path)

    @app.before_request
    def limit_request_body() -> None:
        request = flask.request._get_current_object()  # one proxy lookup, not six
        environ = request.environ
        if "CONTENT_LENGTH" not in environ and "HTTP_TRANSFER_ENCODING" not in environ:
            return  # the usual GET, told without parsing anything
        length = request.content_length
        if length is None and "HTTP_TRANSFER_ENCODING" not in environ:
            return  # no body at all (RFC 9112 6.3), as for most GETs
        blueprint = request.blueprint
        limit = body_limits.get(blueprint.split(".", 1)[0]) if blueprint else None
        if limit is not None:
            request.max_content_length = limit
        limit = request.max_content_length
        if limit is not None and limit_body(environ, limit):
            # None would mean MAX_CONTENT_LENGTH again; the capped input enforces the limit.
            request.max_content_length = sys.maxsize

    app.config["VIREO_MOUNT_PATHS"] = tuple(mount_paths)
    install_cors(app, cors)
    install_error_handlers(app)
    return HostSite(app, routes)


def _handles(app: flask.Flask, environ: dict) -> bool:
    """Whether a route of `app` answers this path (or redirects it, or wants another method)."""
    if not environ.get("PATH_INFO", "").startswith(app.config["VIREO_MOUNT_PATHS"]):
        return False
    try:
        app.url_map.bind_to_environ(environ).match(method=environ.get("REQUEST_METHOD"))
    except NotFound:
        return False
    except HTTPException:
        return True
    return True


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
        name = _PORT.sub("", host_field.strip()).lower()
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
