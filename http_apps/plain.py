"""Plain WSGI routes for hot paths (RFC 9110 methods): ahead of Flask, answering as Flask would.

A provider's `wsgi_handlers` (http_apps.provider) answer its mount path with
and without a trailing slash. Flask's request machinery (context, routing,
response object) costs more than a small handler such as a BOSH request; a
plain route keeps what the Flask route would give, each piece from its own
module: the body limit (http_apps.limits), error pages (http_apps.errors) and
CORS headers (http_apps.cors), HEAD as GET, no body in any HEAD answer, the automatic
OPTIONS answer and 405 with Allow for other methods (no CORS headers on that
one, as a Flask routing failure gets none).

A handler taking the whole body (`BodyHandler`, such as BOSH's POST) can also be served
without WSGI: http_apps.server asks the app for a `direct_route` once it has the request
head and, when every layer can answer without an environ (the route found from the path
and Host alone, a Content-Length within the limit), reads the body and calls it with a
`PlainRequest` made from the head. The answer is the one the WSGI route would give.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from werkzeug.exceptions import MethodNotAllowed
from werkzeug.wsgi import get_content_length

from http_apps.cors import CorsPolicy, cors_headers, with_cors
from http_apps.errors import error_answer, with_error_pages
from http_apps.forward import was_forwarded
from http_apps.limits import limit_body, read_body
from http_apps.proxies import PEER_ADDR

WsgiApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]
#: A response: status line, header fields, body chunks.
Answer = tuple[str, list[tuple[str, str]], Iterable[bytes]]
#: A direct route with its request: the answer, given the function reading the body.
DirectRoute = Callable[[Callable[[], bytes]], Answer]
#: URL schemes werkzeug's `Request.is_secure` counts as secure.
SECURE_SCHEMES = frozenset({"https", "wss"})


@dataclass(slots=True)
class PlainRequest:
    """What a `BodyHandler` reads of a request, as the WSGI environ would give it after
    trusted_proxies: repeated fields joined by commas, absent ones None."""

    method: str
    script_name: str
    path: str
    query: str
    host: str | None
    content_type: str | None
    content_length: int | None
    origin: str | None
    #: The client's address, from X-Forwarded-For when the peer is a trusted proxy.
    remote_addr: str
    #: The connected peer.
    peer: str
    secure: bool
    #: Passed on here by another cluster node.
    forwarded: bool
    #: X-Forwarded-For and X-Forwarded-Proto as received (http_apps.proxies reads them).
    forwarded_for: str | None = None
    forwarded_proto: str | None = None

    @classmethod
    def from_environ(cls, environ: dict) -> PlainRequest:
        return cls(method=environ.get("REQUEST_METHOD", ""),
                   script_name=environ.get("SCRIPT_NAME", ""),
                   path=environ.get("PATH_INFO", ""), query=environ.get("QUERY_STRING", ""),
                   host=environ.get("HTTP_HOST"), content_type=environ.get("CONTENT_TYPE"),
                   content_length=get_content_length(environ),
                   origin=environ.get("HTTP_ORIGIN"),
                   remote_addr=environ.get("REMOTE_ADDR") or "",
                   peer=environ.get(PEER_ADDR, environ.get("REMOTE_ADDR", "")),
                   secure=environ.get("wsgi.url_scheme") in SECURE_SCHEMES,
                   forwarded=was_forwarded(environ),
                   forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
                   forwarded_proto=environ.get("HTTP_X_FORWARDED_PROTO"))


class BodyHandler:
    """A plain handler answering from the whole request body: `answer(request, body)`.

    Through WSGI it reads the body as werkzeug would (http_apps.limits.read_body);
    PlainRoute also serves it directly (see the module docstring)."""

    def __init__(self, answer: Callable[[PlainRequest, bytes], Answer]) -> None:
        self.answer = answer

    def __call__(self, environ: dict, start_response: Any) -> Iterable[bytes]:
        data = read_body(environ)
        status, headers, body = self.answer(PlainRequest.from_environ(environ), data)
        start_response(status, headers)
        return body


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
        self.host = host
        self.limit = limit
        self.cors = cors
        #: Handlers served without WSGI; never HEAD (its answer has no body).
        self.direct = {method: handler for method, handler in self.handlers.items()
                       if isinstance(handler, BodyHandler) and method != "HEAD"}

    def direct_route(self, request: PlainRequest) -> DirectRoute | None:
        """The route of a request with a body of known length, when it can be served
        without WSGI; None to serve it through WSGI (over the limit: 413 there)."""
        handler = self.direct.get(request.method)
        length = request.content_length
        if handler is None or length is None or length > self.limit:
            return None
        return functools.partial(self._answer_directly, handler, request)

    def _answer_directly(self, handler: BodyHandler, request: PlainRequest,
                         read: Callable[[], bytes]) -> Answer:
        """`handler`'s answer with what the WSGI route adds: error pages (a body that
        cannot be read included) and CORS headers."""
        try:
            status, headers, body = handler.answer(request, read())
        except Exception as error:  # every error is a page, as through WSGI
            status, headers, body = error_answer(error, None, request.method, request.path,
                                                 self.host)
        if self.cors is not None:
            headers = cors_headers(self.cors, request.origin, headers)
        return status, headers, body

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


#: What RFC 3986 allows unescaped in a path segment, besides unreserved characters.
PATH_SAFE = "/!$&'()*+,;=:@"


def path_location(path: bytes, query: str = "") -> str:
    """A Location field's value for the path `path`, escaped (RFC 3986), with `query`."""
    location = quote(path, safe=PATH_SAFE)
    return f"{location}?{query}" if query else location


def redirect_to_slash(environ: dict, start_response: Any) -> Iterable[bytes]:
    """The mount path of an app serving the paths under it (HttpProvider.subpaths):
    301 to it with a trailing slash, the query kept, as Prosody's mod_http."""
    # PATH_INFO holds the request's bytes read as latin-1 (PEP 3333).
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") + "/").encode("latin-1")
    location = path_location(path, environ.get("QUERY_STRING", ""))
    start_response("301 Moved Permanently", [("Location", location), ("Content-Length", "0")])
    return []


def _without_body(body: Iterable[bytes]) -> Iterable[bytes]:
    """A HEAD answer keeps the status and headers (Content-Length included), not the body."""
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return []
