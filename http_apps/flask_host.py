"""The Flask app of one host (Prosody's mod_http routes of a host's modules): its
blueprints, body limits, CORS headers and error pages.

Built at the first request it may have to answer (http_apps.HostSite), not at
start: Flask with Jinja, click and itsdangerous is some 4 MiB of the resident
memory, which a server whose HTTP is BOSH or WebSocket alone (plain routes,
http_apps.plain) never needs, and which the others need only once someone asks
for a page.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import flask
from flask.sessions import NullSession, SecureCookieSessionInterface
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import MapAdapter, RequestRedirect
from werkzeug.utils import get_content_type

from http_apps.cors import CorsPolicy
from http_apps.errors import CONTENT_TYPE, error_page, status_line, unexpected_error
from http_apps.limits import limit_body
from http_apps.provider import HttpProvider

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


def host_app(config: Any, host: str, app_limit: int,
             blueprints: list[tuple[HttpProvider, str]],
             policies: Mapping[str, CorsPolicy]) -> HostApp:
    """The Flask app of `host` with the blueprints of its providers, each mounted at
    its path; `policies` are their CORS policies (by provider name), to which the
    methods of the blueprint's routes are added."""
    # Named after the package: Flask's root path and app name are the package's.
    app = HostApp("http_apps", static_folder=None)
    app.url_map.merge_slashes = False
    app.config.update(VIREO_HOST=host, VIREO_CONFIG=config, MAX_CONTENT_LENGTH=app_limit)
    body_limits: dict[str, int] = {}
    cors: dict[str, CorsPolicy] = {}
    for provider, path in blueprints:
        app.register_blueprint(provider.make_blueprint(), name=provider.name, url_prefix=path)
        if provider.max_body_size is not None:
            body_limits[provider.name] = provider.max_body_size
        policy = policies.get(provider.name)
        if policy is not None:
            cors[provider.name] = policy.allowing(_route_methods(app, provider.name))

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

    install_cors(app, cors)
    install_error_handlers(app)
    return app


def handles(app: flask.Flask, environ: dict) -> bool:
    """Whether a route of `app` answers this path (or redirects it, or wants another method)."""
    try:
        app.url_map.bind_to_environ(environ).match(method=environ.get("REQUEST_METHOD"))
    except NotFound:
        return False
    except HTTPException:
        return True
    return True


def _route_methods(app: flask.Flask, blueprint: str) -> set[str]:
    methods: set[str] = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".", 1)[0] == blueprint:
            # HEAD comes implicitly with GET and OPTIONS from Flask; neither is a route method.
            methods |= (rule.methods or set()) - {"HEAD", "OPTIONS"}
    return methods


def install_cors(app: flask.Flask, policies: Mapping[str, CorsPolicy]) -> None:
    """Add CORS headers to responses of the blueprints named in `policies`.

    Headers are set, never added, so a route's own Access-Control-Allow-Origin is
    replaced rather than duplicated.
    """
    def add_cors_headers(response: flask.Response) -> flask.Response:
        request = flask.request._get_current_object()  # one proxy lookup, not three
        blueprint = request.blueprint
        policy = policies.get(blueprint.split(".", 1)[0]) if blueprint else None
        if policy is not None:
            headers = response.headers
            # Iterating Headers gives its pairs as stored; keys() would go through two
            # generators per name.
            present = {name.lower() for name, _ in headers}
            for name, value in policy.header_items(request.environ.get("HTTP_ORIGIN")):
                # Adding is a third of the cost of setting, which looks for the name first.
                if name.lower() in present:
                    headers[name] = value
                else:
                    headers.add(name, value)
        return response

    app.after_request(add_cors_headers)


def _http_error(error: HTTPException) -> flask.Response:
    code = error.code or 500
    response = error.get_response()  # keeps headers such as Allow on 405
    response.status = status_line(code)
    response.set_data(error_page(code, error.description))
    response.content_type = CONTENT_TYPE
    return response


def _unexpected_error(error: Exception) -> flask.Response:
    return _http_error(unexpected_error(flask.request.method, flask.request.path,
                                       flask.current_app.config.get("VIREO_HOST"), error))


def install_error_handlers(app: flask.Flask) -> None:
    """Make every error response of `app` a small page; unexpected exceptions become 500."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
