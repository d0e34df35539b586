"""Cross-origin resource sharing (W3C Fetch, CORS protocol) with Prosody 0.12's options.

Global options: `access_control_allow_methods` (GET, OPTIONS), `_headers`
(Content-Type), `_credentials` (false), `_origins` (any), `access_control_max_age`
(7200 s) and `http_default_cors_enabled` (true). Each app's settings come from
`http_cors_override[app]` when present, else from its module; the methods its
routes use are always allowed. Headers go on every response of the app's routes,
including Flask's automatic OPTIONS answer (the preflight: 200, empty body).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_METHODS = ("GET", "OPTIONS")
DEFAULT_HEADERS = ("Content-Type",)
DEFAULT_MAX_AGE = 7200


@dataclass(frozen=True)
class CorsPolicy:
    """What one app answers to cross-origin requests; `origins` None means any origin."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    headers: tuple[str, ...] = DEFAULT_HEADERS
    credentials: bool = False
    origins: frozenset[str] | None = None
    max_age: int = DEFAULT_MAX_AGE

    def headers_for(self, origin: str | None) -> dict[str, str]:
        """The CORS response headers for a request from `origin`; none for a refused origin."""
        return dict(self.header_items(origin))

    def header_items(self, origin: str | None) -> tuple[tuple[str, str], ...]:
        """`headers_for` as pairs, built once per origin (requests repeat their Origin)."""
        items = self._by_origin.get(origin)
        if items is None:
            refused = self.origins is not None and origin not in self.origins
            items = () if refused else self._allowed_items(origin)
            if len(self._by_origin) < _ORIGINS_KEPT:  # origins are the client's choice
                self._by_origin[origin] = items
        return items

    def allowing(self, methods: Iterable[str]) -> CorsPolicy:
        """This policy with `methods` allowed too (those of a blueprint's routes, known
        once the blueprint is registered), after its own."""
        return replace(self, methods=_unique([*self.methods,
                                                          *(m.upper() for m in methods)]))

    @functools.cached_property
    def names(self) -> frozenset[str]:
        """The names of the headers `headers_for` may give, as str.title() spells them."""
        return frozenset(name.title() for name, _ in self._allowed_items(None))

    @functools.cached_property
    def _by_origin(self) -> dict[str | None, tuple[tuple[str, str], ...]]:
        return {}

    def _allowed_items(self, origin: str | None) -> tuple[tuple[str, str], ...]:
        items = [
            ("Access-Control-Allow-Methods", ", ".join(self.methods)),
            ("Access-Control-Allow-Headers", ", ".join(self.headers)),
            ("Access-Control-Max-Age", str(self.max_age)),
            ("Access-Control-Allow-Origin", origin or "*"),
        ]
        if self.credentials:
            items.append(("Access-Control-Allow-Credentials", "true"))
        return tuple(items)


_ORIGINS_KEPT = 1000


def _origin_set(origins: Any) -> frozenset[str] | None:
    items = [origins] if isinstance(origins, str) else list(origins or ())
    if not items or "*" in items:
        return None
    return frozenset(str(item) for item in items)


def _edited(current: tuple[str, ...], change: Any, *, upper: bool) -> tuple[str, ...]:
    """Apply an override: a table {name = true/false} adds or removes, a list replaces."""
    def norm(name: Any) -> str:
        return str(name).upper() if upper else str(name)

    if isinstance(change, Mapping):
        items = list(current)
        for name, enable in change.items():
            present = [item for item in items if item.lower() == norm(name).lower()]
            if enable and not present:
                items.append(norm(name))
            elif not enable:
                items = [item for item in items if item not in present]
        return tuple(items)
    if isinstance(change, str):
        change = [change]
    return _unique(norm(name) for name in change)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def cors_policy(config: Any, app_name: str, module_cors: bool | Mapping[str, Any] | None,
                route_methods: Iterable[str] = ()) -> CorsPolicy | None:
    """The CORS policy of app `app_name`, or None when CORS is off for it.

    `module_cors` is the module's own setting (see HttpProvider.cors); an entry in
    `http_cors_override` replaces it.
    """
    overrides = config.get("http_cors_override", None)
    settings: Any = module_cors
    if isinstance(overrides, Mapping) and app_name in overrides:
        settings = overrides[app_name]
    if isinstance(settings, bool):
        settings = {"enabled": settings}
    if settings is None:
        if not config.get_bool("http_default_cors_enabled", True):
            return None
        settings = {}
    if not isinstance(settings, Mapping) or settings.get("enabled") is False:
        return None

    methods = _unique(str(m).upper() for m in
                      config.get_list("access_control_allow_methods", DEFAULT_METHODS))
    headers = _unique(str(h) for h in
                      config.get_list("access_control_allow_headers", DEFAULT_HEADERS))
    credentials = config.get_bool("access_control_allow_credentials", False)
    origins = _origin_set(config.get_list("access_control_allow_origins", ()))
    # Prosody applies a module's or override's settings only with `enabled = true`;
    # we apply them unless disabled, as the documentation describes them.
    if settings.get("credentials") is not None:
        credentials = bool(settings["credentials"])
    if settings.get("headers") is not None:
        headers = _edited(headers, settings["headers"], upper=False)
    if settings.get("methods") is not None:
        methods = _edited(methods, settings["methods"], upper=True)
    if settings.get("origins") is not None:
        origins = _origin_set(settings["origins"])
    return CorsPolicy(
        methods=_unique([*methods, *(m.upper() for m in route_methods)]),
        headers=headers,
        credentials=credentials,
        origins=origins,
        max_age=int(config.get_number("access_control_max_age", DEFAULT_MAX_AGE)),
    )


def with_cors(app: Any, policy: CorsPolicy) -> Any:
    """WSGI middleware: `policy`'s headers on every response of `app` (errors included),
    set as install_cors (http_apps.flask_host) sets them on a blueprint's responses.
    For plain WSGI routes."""
    def cors_app(environ: dict, start_response: Any) -> Any:
        origin = environ.get("HTTP_ORIGIN")
        if not policy.header_items(origin):
            return app(environ, start_response)

        def start_with_cors(status: str, headers: list, exc_info: Any = None) -> Any:
            return start_response(status, cors_headers(policy, origin, headers), exc_info)

        return app(environ, start_with_cors)

    return cors_app


def cors_headers(policy: CorsPolicy, origin: str | None,
                 headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` with `policy`'s CORS headers for `origin` set (replacing the
    response's own), as with_cors sets them."""
    extra = policy.header_items(origin)
    if not extra:
        return headers
    names = policy.names
    return [*((k, v) for k, v in headers if k.title() not in names), *extra]
