"""The /metrics endpoint (Prosody's mod_http_openmetrics) in the OpenMetrics text format.

Access rules as Prosody's: the client address (after `trusted_proxies`) must be
in `openmetrics_allow_ips` (default loopback) or `openmetrics_allow_cidr`, else
403; statistics must be enabled (`statistics = "internal"`, or
`statistics_interval` set), else 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest

from http_apps.provider import GLOBAL_HOST, HttpProvider
from xmpp.metrics import registry as this_process_registry
from xmpp.netmatch import AddressMatcher

DEFAULT_ALLOW_IPS = ("::1", "127.0.0.1")


def statistics_enabled(config: Any) -> bool:
    """Whether the built-in statistics provider is on, as Prosody's statsmanager decides."""
    provider = config.get_str("statistics", None)
    if provider is None:
        return config.get("statistics_interval", None) is not None
    return provider == "internal"


def this_process() -> CollectorRegistry:
    """The metrics of this process alone."""
    return this_process_registry()


def make_blueprint(config: Any, registry: Callable[[], CollectorRegistry] = this_process
                   ) -> flask.Blueprint:
    """A blueprint answering GET at its mount path with the metrics of the
    registry `registry()` gives at each scrape (a cluster's view widens it)."""
    allowed = AddressMatcher([*config.get_list("openmetrics_allow_ips", DEFAULT_ALLOW_IPS),
                              *config.get_list("openmetrics_allow_cidr", ())])
    enabled = statistics_enabled(config)
    blueprint = flask.Blueprint("openmetrics", __name__)

    @blueprint.get("")
    def metrics() -> flask.Response:
        if flask.request.remote_addr not in allowed:
            flask.abort(403)
        if not enabled:
            return flask.Response("No statistics provider configured\n", 404,
                                  content_type="text/plain; charset=utf-8")
        return flask.Response(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)

    return blueprint


def provider(config: Any, registry: Callable[[], CollectorRegistry] = this_process
             ) -> HttpProvider:
    """The http_openmetrics app: global, at /metrics unless `http_paths.openmetrics` moves it."""
    return HttpProvider(name="openmetrics", host=GLOBAL_HOST, default_path="/metrics",
                        make_blueprint=lambda: make_blueprint(config, registry), global_=True)
