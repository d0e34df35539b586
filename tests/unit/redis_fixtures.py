"""A Redis key prefix of its own for a test, its keys deleted afterwards
(Redis at $VIREO_TEST_REDIS_URL, as CI provides; skipped without it).
Bind the fixtures in a test module (`redis_prefix = redis_fixtures.redis_prefix`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

REDIS_ENV = "VIREO_TEST_REDIS_URL"


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is needed")
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    import redis

    prefix = f"vireo-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def joined_nodes(redis_url: str, prefix: str, timeout: float,
                 names: tuple[str, ...] = ("a", "b", "c")) -> Iterator[dict[str, Any]]:
    """Cluster nodes `names` under `prefix`, each joined (beating); their
    connections closed afterwards. For a fixture to `yield from`."""
    from xmpp.cluster.node import ClusterNode
    from xmpp.cluster.options import ClusterOptions

    made = {name: ClusterNode(ClusterOptions(redis_url, name, timeout, prefix))
            for name in names}
    for node in made.values():
        node.join()
    yield made
    for node in made.values():
        node.redis.close()
