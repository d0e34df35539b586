"""Server metrics for OpenMetrics exposition (Prosody's statsmanager), in one registry.

Hot paths only bump plain integers; the figures are turned into metric
families when /metrics is scraped (http_apps.openmetrics):

    STANZAS_IN[stanza.tag] += 1 / STANZAS_OUT[...]   stanzas in and out, by element
    HTTP_RESPONSES["200"] += 1                       HTTP responses (counted by http_apps)
    HTTP_CONNECTIONS["http"] += 1 / -= 1             open connections of an HTTP listener
    storage_errors().labels(store="sql").inc()       failed storage operations
    watch_server(sessions=..., connections=...)      live sessions per kind and open
                                                     connections per XMPP listener,
                                                     read at scrape

prometheus_client is imported when the registry is first asked for (a scrape,
a storage failure, the web admin's or a cluster's figures): with its
exposition helpers it is some 0.8 MiB that a server nobody scrapes never uses.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# A dict increment costs far less per stanza or request than a labelled
# prometheus metric with its lock.
# Clark tag -> count, per direction.
STANZAS_IN: defaultdict[str, int] = defaultdict(int)
STANZAS_OUT: defaultdict[str, int] = defaultdict(int)
# Status code ("200") -> responses.
HTTP_RESPONSES: defaultdict[str, int] = defaultdict(int)
# HTTP listener ("http", "https", "proxy:http") -> open connections.
HTTP_CONNECTIONS: defaultdict[str, int] = defaultdict(int)

SessionSource = Callable[[], Iterable[str]]
ConnectionSource = Callable[[], Iterable[tuple[str, int]]]
_server_sources: list[tuple[SessionSource, ConnectionSource]] = []


def watch_server(sessions: SessionSource, connections: ConnectionSource) -> None:
    """Set what the server reports at scrape time.

    `sessions` gives the kind of each live session (c2s, bosh, component...);
    `connections` gives (listener, open connections) for each XMPP listener.
    One server per process: a newer server (as in tests) replaces the older one.
    """
    _server_sources[:] = [(sessions, connections)]


class _ScrapeTimeCollector:
    """Stanzas, HTTP responses, connections and live sessions, computed when scraped."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stanzas = CounterMetricFamily("vireo_stanzas", "Stanzas received (in) and sent (out)",
                                      labels=["direction", "kind"])
        for direction, counts in (("in", STANZAS_IN), ("out", STANZAS_OUT)):
            by_name: Tally[str] = Tally()
            for tag, count in list(counts.items()):
                by_name[tag.rpartition("}")[2]] += count
            for name, count in sorted(by_name.items()):
                stanzas.add_metric([direction, name], count)
        yield stanzas
        responses = CounterMetricFamily("vireo_http_requests",
                                        "HTTP requests answered, by status", labels=["status"])
        for status, count in sorted(HTTP_RESPONSES.items()):
            responses.add_metric([status], count)
        yield responses
        kinds: Tally[str] = Tally()
        listeners: Tally[str] = Tally(HTTP_CONNECTIONS)
        for sessions, connections in _server_sources:
            kinds.update(sessions())
            for listener, count in connections():
                listeners[listener] += count
        open_connections = GaugeMetricFamily("vireo_connections",
                                             "Open connections, per listener",
                                             labels=["listener"])
        for listener, count in sorted(listeners.items()):
            open_connections.add_metric([listener], count)
        yield open_connections
        by_kind = GaugeMetricFamily("vireo_sessions", "Established sessions, per kind",
                                    labels=["kind"])
        for kind, count in sorted(kinds.items()):
            by_kind.add_metric([kind], count)
        yield by_kind


@cache
def registry() -> CollectorRegistry:
    """This process's metrics, in the one registry every exposition reads."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    built = CollectorRegistry()
    built.register(_ScrapeTimeCollector())
    # CPU, memory and file descriptors of this process (process_*), as Prosody exports them.
    ProcessCollector(registry=built)
    return built


@cache
def storage_errors() -> Counter:
    """Failed storage operations, per store."""
    from prometheus_client import Counter

    return Counter("vireo_storage_errors", "Failed storage operations, per store",
                   ["store"], registry=registry())
