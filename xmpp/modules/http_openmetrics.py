"""Prosody's mod_http_openmetrics: /metrics in the OpenMetrics format, on every HTTP host.

Access rules and the statistics switch are in http_apps.openmetrics. Each
scrape fires `openmetrics-scrape` with `event.registry` (this process's); a
handler may hand back a wider one (a cluster's, issue 21).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from http_apps.openmetrics import provider, this_process
from xmpp.moduleapi import ModuleContext


def setup(m: ModuleContext) -> None:
    def registry() -> CollectorRegistry:
        return m.fire_event("openmetrics-scrape", registry=this_process()).registry

    # A global app: one provider however many hosts load the module.
    m.provides("http", provider(m.global_config, registry))
