"""The whole cluster's metrics on every node's /metrics (issue 21).

Each node writes its own exposition to Redis (`metrics:NODE`, expiring with
its heartbeat's timeout) at every beat. A scrape of any node then reads the
live peers' and adds this node's current figures, every sample labelled with
its `node`, each family once with the samples of every node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from xmpp.cluster.node import ClusterNode, RedisError

NODE_LABEL = "node"


class ClusterMetrics:
    """This node's part in the cluster's metrics: publishing, and the merged view."""

    def __init__(self, node: ClusterNode, local: CollectorRegistry,
                 peers: Callable[[], Iterable[str]], log: logging.Logger) -> None:
        self.node = node
        self.local = local
        self.peers = peers
        self.log = log
        self.view = CollectorRegistry(auto_describe=False)
        self.view.register(self)

    def publish(self) -> None:
        """Write this node's figures for the others' scrapes (skipped while Redis
        is unreachable: the stream consumer already says so)."""
        try:
            self.node.redis.set(self.node.key("metrics", self.node.name),
                                generate_latest(self.local), ex=max(1, round(self.node.timeout)))
        except RedisError as error:
            self.log.debug("Cluster metrics not published: %s", error)

    def collect(self) -> Iterator[Metric]:
        """Every live node's families, merged by name, samples labelled by node."""
        merged: dict[str, Metric] = {}
        for node, families in self._per_node():
            for family in families:
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation,
                                                        family.type, family.unit)
                into.samples.extend(sample._replace(labels={**sample.labels, NODE_LABEL: node})
                                    for sample in family.samples)
        yield from merged.values()

    def _per_node(self) -> Iterator[tuple[str, Iterable[Metric]]]:
        yield self.node.name, self.local.collect()
        peers = sorted(self.peers())
        if not peers:
            return
        try:
            texts = self.node.redis.mget([self.node.key("metrics", peer) for peer in peers])
        except RedisError as error:
            self.log.warning("Cluster metrics of peers unreadable: %s", error)
            return
        for peer, text in zip(peers, texts, strict=True):
            if text is None:
                continue  # not published yet, or gone
            try:
                yield peer, list(text_string_to_metric_families(text.decode()))
            except ValueError as error:
                self.log.warning("Cluster metrics of %s unreadable: %s", peer, error)
