"""Claims in Redis (issue 21): what one node at a time holds, for as long as it
beats; refused to a second node, taken over on request, lost when another took
it (Redis at $VIREO_TEST_REDIS_URL)."""

from __future__ import annotations

import pytest

from tests.unit import redis_fixtures
from xmpp.cluster.node import ClusterNode
from xmpp.cluster.options import ClusterOptions

redis_url = redis_fixtures.redis_url
redis_prefix = redis_fixtures.redis_prefix


@pytest.fixture
def nodes(redis_url, redis_prefix):
    made = [ClusterNode(ClusterOptions(redis_url, name, 2.0, redis_prefix))
            for name in ("n1", "n2")]
    yield made
    for node in made:
        node.redis.close()


def test_a_claim_is_refused_to_another_node_and_released_by_its_holder(nodes):
    n1, n2 = nodes
    assert n1.claim("component", "c.example") is None
    assert n2.claim("component", "c.example") == "n1"
    assert n2.holder("component", "c.example") == "n1"
    n2.release("component", "c.example")  # not its own: nothing happens
    assert n1.holder("component", "c.example") == "n1"
    n1.release("component", "c.example")
    assert n2.holder("component", "c.example") is None
    assert n2.claim("component", "c.example") is None


def test_a_take_over_names_the_previous_holder_who_finds_it_lost(nodes):
    n1, n2 = nodes
    assert n1.claim("component", "c.example") is None
    assert n2.claim("component", "c.example", take=True) == "n1"
    assert n1.renew_claims() == [("component", "c.example")]
    assert n2.renew_claims() == []
    assert n1.holder("component", "c.example") == "n2"
    n1.release("component", "c.example")  # lost already: n2 keeps it
    assert n1.holder("component", "c.example") == "n2"


def test_a_claim_lives_with_the_heartbeat(nodes):
    n1, n2 = nodes
    n1.claim("bosh", "sid-1")
    key = n1.key("claim", "bosh", "sid-1")
    assert 0 < n1.redis.ttl(key) <= 2
    n1.redis.delete(key)  # expired while n1's heartbeat had lapsed, nobody took it
    assert n1.renew_claims() == []
    assert n2.holder("bosh", "sid-1") == "n1" and n1.redis.ttl(key) > 0
