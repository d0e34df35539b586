"""Server metrics for OpenMetrics exposition (Prosody's statsmanager), in one registry.

Other code increments these; http_apps.openmetrics serves them at /metrics:

    CONNECTIONS.labels(listener="c2s").inc() / .dec()      open connections per listener
    SESSIONS.labels(kind="c2s").inc() / .dec()             c2s, bosh, s2sin, s2sout, component
    STANZAS.labels(direction="in", kind="message").inc()   stanzas in and out, by name
    HTTP_REQUESTS.labels(status="200").inc()               HTTP responses (counted by http_apps)
    STORAGE_ERRORS.labels(store="roster").inc()            failed storage operations, by store
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

REGISTRY = CollectorRegistry()

CONNECTIONS = Gauge("vireo_connections", "Open connections, per listener", ["listener"],
                    registry=REGISTRY)
SESSIONS = Gauge("vireo_sessions", "Established sessions, per kind", ["kind"],
                 registry=REGISTRY)
STANZAS = Counter("vireo_stanzas", "Stanzas received (in) and sent (out)",
                  ["direction", "kind"], registry=REGISTRY)
HTTP_REQUESTS = Counter("vireo_http_requests", "HTTP requests answered, by status",
                        ["status"], registry=REGISTRY)
STORAGE_ERRORS = Counter("vireo_storage_errors", "Failed storage operations, per store",
                         ["store"], registry=REGISTRY)

# CPU, memory and file descriptors of this process (process_*), as Prosody exports them.
ProcessCollector(registry=REGISTRY)
