"""The cluster's /metrics view (xmpp/cluster/metrics.py), with a real Redis:
each node's families once, every sample labelled with its node."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.unit import redis_fixtures
from xmpp.cluster.metrics import ClusterMetrics
from xmpp.cluster.node import ClusterNode
from xmpp.cluster.options import ClusterOptions

redis_url = redis_fixtures.redis_url
redis_prefix = redis_fixtures.redis_prefix

log = logging.getLogger(__name__)


def node_with_metrics(url: str, prefix: str, name: str, peers: list[str],
                      logins: int) -> ClusterMetrics:
    registry = CollectorRegistry()
    Counter("vireo_logins", "Logins", ["host"], registry=registry).labels("a.test").inc(logins)
    node = ClusterNode(ClusterOptions(url, name, 10.0, prefix))
    return ClusterMetrics(node, registry, lambda: peers, log)


def samples(metrics: ClusterMetrics) -> dict[tuple[str, str], float]:
    families = list(text_string_to_metric_families(generate_latest(metrics.view).decode()))
    assert len([f for f in families if f.name == "vireo_logins"]) == 1
    return {(sample.labels["node"], sample.name): sample.value
            for family in families for sample in family.samples
            if sample.name == "vireo_logins_total"}


def test_a_scrape_shows_every_live_node_by_label(redis_url, redis_prefix):
    n1 = node_with_metrics(redis_url, redis_prefix, "n1", ["n2", "n3"], logins=3)
    n2 = node_with_metrics(redis_url, redis_prefix, "n2", ["n1", "n3"], logins=5)
    n2.publish()
    # n3 is live but has not published yet: left out, not an error.
    assert samples(n1) == {("n1", "vireo_logins_total"): 3.0,
                           ("n2", "vireo_logins_total"): 5.0}


def test_a_node_alone_shows_itself(redis_url, redis_prefix):
    assert samples(node_with_metrics(redis_url, redis_prefix, "n1", [], logins=2)) == {
        ("n1", "vireo_logins_total"): 2.0}


def test_garbage_from_a_peer_is_left_out(redis_url, redis_prefix):
    n1 = node_with_metrics(redis_url, redis_prefix, "n1", ["n2"], logins=1)
    n1.node.redis.set(n1.node.key("metrics", "n2"), b"not openmetrics {{{")
    assert samples(n1) == {("n1", "vireo_logins_total"): 1.0}
