"""HTTP apps as data (Prosody's `module:provides("http", ...)`): what a module offers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import flask

#: The host of apps served on every HTTP host (Prosody's global HTTP apps).
GLOBAL_HOST = "*"


@dataclass(frozen=True)
class HttpProvider:
    """One HTTP app a module provides on one host.

    name: the app name, the key of `http_paths` and `http_cors_override`
        ("bosh", "file_share", "openmetrics", ...).
    host: the VirtualHost or Component whose module provides it; ignored (read as
        "*") when `global_` is set.
    make_blueprint: called once per Flask app that mounts it (when a request first
        needs that app); should return a fresh blueprint. Its routes are relative to
        the mount path: a route "" is the mount path itself, "/" the mount path with
        a trailing slash. None for an app made of `wsgi_handlers`, which then has no
        blueprint.
    default_path: the mount path unless `http_paths` says otherwise; None means
        "/" + name. May contain "$host".
    cors: the module's CORS settings, Prosody's `cors` table: True or False
        (enabled or not), a mapping with Prosody's keys (`enabled`, `credentials`,
        `headers`, `methods`, `origins`), or None when the module says nothing
        (then `http_default_cors_enabled`, default true, decides).
        `http_cors_override[name]` replaces this entirely.
    methods: methods its routes use, added to `access_control_allow_methods` (the
        blueprint's own route methods are added too).
    max_body_size: request body limit for its routes (413 beyond); None means
        `http_max_content_size` (10 MiB).
    global_: served for every HTTP host, before host selection, as Prosody does for
        HTTP apps of global modules (http_openmetrics).
    wsgi_handlers: plain WSGI apps by method ("GET", "POST", ...) answering the mount
        path itself, with or without a trailing slash, ahead of Flask: for hot routes
        whose handlers are cheaper than Flask's request machinery (http_apps.plain
        gives them the same body limit, CORS headers and error pages). They see
        REMOTE_ADDR and wsgi.url_scheme as trusted_proxies leaves them. A handler
        answering from the whole body can be an http_apps.plain.BodyHandler, which
        the HTTP server serves without building a WSGI environ.
    subpaths: the `wsgi_handlers` answer every path under the mount path too
        (Prosody's "GET /*" routes): they see the mount path in SCRIPT_NAME and the
        rest, from its slash, in PATH_INFO; the mount path itself redirects (301) to
        the mount path with a trailing slash. A blueprint mounted deeper keeps its paths.
    """

    name: str
    host: str
    make_blueprint: Callable[[], flask.Blueprint] | None
    default_path: str | None = None
    cors: bool | Mapping[str, Any] | None = None
    methods: tuple[str, ...] = ("GET",)
    max_body_size: int | None = None
    global_: bool = False
    wsgi_handlers: Mapping[str, Callable[[dict, Callable[..., Any]], Iterable[bytes]]] | None = None
    subpaths: bool = False

    def __post_init__(self) -> None:
        # The CORS headers of plain routes are settled at start, before Flask is loaded
        # (http_apps.flask_host), so they cannot include a blueprint's route methods.
        if self.make_blueprint is not None and self.wsgi_handlers:
            raise ValueError(f"HTTP app {self.name!r} has both a blueprint and "
                             "wsgi_handlers; make them two apps")

    @property
    def served_host(self) -> str:
        """The host this app belongs to: its module's host, or "*" when global."""
        return GLOBAL_HOST if self.global_ else self.host
