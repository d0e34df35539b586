"""/metrics: OpenMetrics exposition and Prosody's access rules."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from http_apps import openmetrics
from tests.http_fixtures import http_client, write_config
from xmpp import metrics

ON = 'statistics = "internal"\n'
HOSTS = 'VirtualHost "example.com"\n'


def metrics_client(tmp_path, text):
    config_text = text + HOSTS
    config = write_config(tmp_path, config_text)
    registry = CollectorRegistry()
    Counter("vireo_test_things", "Things", registry=registry).inc(3)
    return http_client(tmp_path, config_text, [openmetrics.provider(config, lambda: registry)])


def get(client, peer="127.0.0.1", **kwargs):
    return client.get("/metrics", environ_base={"REMOTE_ADDR": peer}, **kwargs)


def test_loopback_gets_openmetrics_text(tmp_path):
    reply = get(metrics_client(tmp_path, ON))
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in text_string_to_metric_families(reply.get_data(as_text=True))}
    assert families["vireo_test_things"].samples[0].value == 3


def test_ipv6_loopback_allowed_others_forbidden(tmp_path):
    c = metrics_client(tmp_path, ON)
    assert get(c, "::1").status_code == 200
    assert get(c, "192.0.2.1").status_code == 403


def test_allow_ips_and_cidr(tmp_path):
    c = metrics_client(tmp_path, ON + 'openmetrics_allow_ips = { "192.0.2.1" }\n'
                       'openmetrics_allow_cidr = "198.51.100.0/24"\n')
    assert get(c, "192.0.2.1").status_code == 200
    assert get(c, "198.51.100.77").status_code == 200
    assert get(c, "127.0.0.1").status_code == 403


def test_judged_on_the_forwarded_client(tmp_path):
    c = metrics_client(tmp_path, ON)
    assert get(c, headers={"X-Forwarded-For": "203.0.113.5"}).status_code == 403
    assert get(c, "203.0.113.5", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 403


def test_statistics_off_is_404(tmp_path):
    reply = get(metrics_client(tmp_path, ""))
    assert reply.status_code == 404
    assert reply.get_data(as_text=True) == "No statistics provider configured\n"
    assert get(metrics_client(tmp_path, "statistics_interval = 30\n")).status_code == 200


def test_served_on_any_host_and_movable(tmp_path):
    c = metrics_client(tmp_path, ON + 'http_paths = { openmetrics = "/stats" }\n')
    assert get(c, headers={"Host": "unknown.example"}).status_code == 404
    reply = c.get("/stats", headers={"Host": "unknown.example"})
    assert reply.status_code == 200


def test_server_registry_exposes_the_vireo_metrics(monkeypatch):
    monkeypatch.setattr(metrics, "STANZAS_IN", {"{jabber:client}message": 3,
                                                "{jabber:component:accept}message": 1})
    monkeypatch.setattr(metrics, "HTTP_RESPONSES", {"200": 5, "404": 1})
    monkeypatch.setattr(metrics, "HTTP_CONNECTIONS", {"http": 1, "https": 0})
    monkeypatch.setattr(metrics, "_server_sources", [])
    metrics.watch_server(sessions=lambda: ["c2s", "c2s", "component"],
                         connections=lambda: [("c2s", 2), ("c2s", 1), ("component", 1)])
    metrics.storage_errors().labels(store="sql")
    samples = {(s.name, tuple(s.labels.values())): s.value
               for family in text_string_to_metric_families(
                   generate_latest(metrics.registry()).decode())
               for s in family.samples}
    assert samples[("vireo_sessions", ("c2s",))] == 2
    assert samples[("vireo_sessions", ("component",))] == 1
    assert samples[("vireo_connections", ("c2s",))] == 3  # two c2s listeners
    assert samples[("vireo_connections", ("component",))] == 1
    assert samples[("vireo_connections", ("http",))] == 1
    assert samples[("vireo_connections", ("https",))] == 0
    assert samples[("vireo_stanzas_total", ("in", "message"))] == 4
    assert samples[("vireo_http_requests_total", ("200",))] == 5
    assert samples[("vireo_http_requests_total", ("404",))] == 1
    assert ("vireo_storage_errors_total", ("sql",)) in samples
    assert any(name.startswith("process_") for name, _ in samples)
