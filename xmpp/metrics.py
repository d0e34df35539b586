"""Server metrics for OpenMetrics exposition (Prosody's statsmanager), in one registry.

Hot paths only bump plain integers; the figures are turned into metric
families when /metrics is scraped (http_apps.openmetrics):

    CONNECTIONS.labels(listener="c2s").inc() / .dec()   open connections per listener
    STANZAS_IN[stanza.tag] += 1 / STANZAS_OUT[...]      stanzas in and out, by element
    HTTP_REQUESTS.labels(status="200").inc()            HTTP responses (counted by http_apps)
    STORAGE_ERRORS.labels(store="sql").inc()            failed storage operations
    watch_sessions(lambda: kinds)                       live sessions per kind, read at scrape
"""

from __future__ import annotations

from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()

CONNECTIONS = Gauge("vireo_connections", "Open connections, per listener", ["listener"],
                    registry=REGISTRY)
HTTP_REQUESTS = Counter("vireo_http_requests", "HTTP requests answered, by status",
                        ["status"], registry=REGISTRY)
STORAGE_ERRORS = Counter("vireo_storage_errors", "Failed storage operations, per store",
                         ["store"], registry=REGISTRY)

# Clark tag -> count, per direction: a dict increment costs far less per
# stanza than a labelled prometheus Counter with its lock.
STANZAS_IN: defaultdict[str, int] = defaultdict(int)
STANZAS_OUT: defaultdict[str, int] = defaultdict(int)
_session_source: list[Callable[[], Iterable[str]]] = []


def watch_sessions(source: Callable[[], Iterable[str]]) -> None:
    """Set the callable giving the kind of each live session (c2s, bosh, component...).

    One server per process: a newer server (as in tests) replaces the older one.
    """
    _session_source[:] = [source]


class _ScrapeTimeCollector(Collector):
    """Stanza counts and live sessions, computed when scraped."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stanzas = CounterMetricFamily("vireo_stanzas", "Stanzas received (in) and sent (out)",
                                      labels=["direction", "kind"])
        for direction, counts in (("in", STANZAS_IN), ("out", STANZAS_OUT)):
            by_name: Tally[str] = Tally()
            for tag, count in list(counts.items()):
                by_name[tag.rpartition("}")[2]] += count
            for name, count in sorted(by_name.items()):
                stanzas.add_metric([direction, name], count)
        yield stanzas
        sessions = GaugeMetricFamily("vireo_sessions", "Established sessions, per kind",
                                     labels=["kind"])
        kinds: Tally[str] = Tally()
        for source in _session_source:
            kinds.update(source())
        for kind, count in sorted(kinds.items()):
            sessions.add_metric([kind], count)
        yield sessions


REGISTRY.register(_ScrapeTimeCollector())
# CPU, memory and file descriptors of this process (process_*), as Prosody exports them.
ProcessCollector(registry=REGISTRY)
