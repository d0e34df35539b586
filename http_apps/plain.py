"""Plain WSGI routes for hot paths (RFC 9110 methods): ahead of Flask, answering as Flask would.

A provider's `wsgi_handlers` (http_apps.provider) answer its mount path with
and without a trailing slash. Flask's request machinery (context, routing,
response object) costs more than a small handler such as a BOSH request; a
plain route keeps what the Flask route would give, each piece from its own
module: the body limit (http_apps.limits), error pages (http_apps.errors) and
CORS headers (http_apps.cors), HEAD as GET, no body in any HEAD answer, the automatic
OPTIONS answer and 405 with Allow for other methods (no CORS headers on that
one, as a Flask routing failure gets none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.exceptions import MethodNotAllowed

from http_apps.cors import CorsPolicy, with_cors
from http_apps.errors import with_error_pages
from http_apps.limits import limit_body

WsgiApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]

_OPTIONS_HEADERS = (("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0"))


def plain_paths(path: str) -> tuple[str, ...]:
    """The paths a plain route answers: the mount path with and without a trailing slash."""
    return tuple(dict.fromkeys((path, path.rstrip("/") + "/")))


def _limited(app: WsgiApp, limit: int) -> WsgiApp:
    def limited_app(environ: dict, start_response: Any) -> Iterable[bytes]:
        limit_body(environ, limit)
        return app(environ, start_response)

    return limited_app


class PlainRoute:
    """One path served by plain WSGI handlers, one per method ("GET", "POST", ...).

    `limit` is the route's body limit, `app_limit` the one Flask applies before a
    405 (`http_max_content_size`); `cors` None means no CORS headers.
    """

    def __init__(self, handlers: Mapping[str, WsgiApp], *, host: str, limit: int,
                 app_limit: int, cors: CorsPolicy | None) -> None:
        self.handlers = dict(handlers)
        if "GET" in self.handlers:
            self.handlers.setdefault("HEAD", self.handlers["GET"])
        self.handlers.setdefault("OPTIONS", self._options)
        self.allow = ", ".join(sorted(self.handlers))
        serve = with_error_pages(_limited(self._dispatch, limit), host)
        self.serve = with_cors(serve, cors) if cors is not None else serve
        self.refuse = with_error_pages(_limited(self._not_allowed, app_limit), host)

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        app = self.serve if method in self.handlers else self.refuse
        if method == "HEAD":
            return _without_body(app(environ, start_response))
        return app(environ, start_response)

    def _dispatch(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        return self.handlers[environ["REQUEST_METHOD"]](environ, start_response)

    def _options(self, _environ: dict, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [*_OPTIONS_HEADERS, ("Allow", self.allow)])
        return []

    def _not_allowed(self, _environ: dict, _start_response: Any) -> Iterable[bytes]:
        raise MethodNotAllowed(valid_methods=sorted(self.handlers))


def _without_body(body: Iterable[bytes]) -> Iterable[bytes]:
    """A HEAD answer keeps the status and headers (Content-Length included), not the body."""
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return []
