"""Prosody's mod_http_openmetrics: /metrics in the OpenMetrics format, on every HTTP host.

Access rules and the statistics switch are in http_apps.openmetrics.
"""

from __future__ import annotations

from http_apps.openmetrics import provider
from xmpp.moduleapi import ModuleContext


def setup(m: ModuleContext) -> None:
    # A global app: one provider however many hosts load the module.
    m.provides("http", provider(m.global_config))
