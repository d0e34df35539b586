"""Claims in Redis (issue 21): what one node at a time holds, for as long as it
beats; refused to a second node, taken over on request, found lost when
another took it (Redis at $VIREO_TEST_REDIS_URL)."""

from __future__ import annotations

import pytest
import redis

from tests.unit import redis_fixtures
from xmpp.cluster.node import ClusterNode
from xmpp.cluster.options import ClusterOptions

redis_url = redis_fixtures.redis_url
redis_prefix = redis_fixtures.redis_prefix


@pytest.fixture
def nodes(redis_url, redis_prefix):
    made = [ClusterNode(ClusterOptions(redis_url, name, 2.0, redis_prefix))
            for name in ("n1", "n2")]
    for node in made:
        node.join()  # beating: a claim holds while its node beats
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
    assert n1.holder("component", "c.example") == "n1"  # as far as n1 knows...
    assert n1.verify_claims(every=True) == [("component", "c.example")]  # ...till it looks
    assert n2.verify_claims(every=True) == []
    assert n1.holder("component", "c.example") == "n2"
    n1.release("component", "c.example")  # lost already: n2 keeps it
    assert n1.holder("component", "c.example") == "n2"


def test_a_claim_lives_with_the_heartbeat(nodes):
    n1, n2 = nodes
    n1.claim("bosh", "sid-1")
    assert n2.claim("bosh", "sid-1") == "n1"
    n1.redis.delete(n1.key("node", "n1"))  # n1's heartbeat expired
    assert n2.claim("bosh", "sid-1") is None
    assert n1.verify_claims(every=True) == [("bosh", "sid-1")]


def test_a_claim_redis_was_not_told_of_is_written_at_the_next_beat(nodes, redis_url):
    n1, n2 = nodes
    working = n1.claim_home
    n1.claim_home = lambda entity: (_ for _ in ()).throw(redis.ConnectionError("down"))
    with pytest.raises(redis.ConnectionError):
        n1.claim("component", "c.example")
    n1.claim_home = working
    assert n2.holder("component", "c.example") is None
    assert n1.verify_claims(every=False) == []
    assert n2.claim("component", "c.example") == "n1"


def test_a_claim_is_located_with_its_holders_http_url_in_one_answer(nodes):
    n1, n2 = nodes
    assert n2.located("bosh", "sid1") == (None, None)
    n1.claim("bosh", "sid1")
    assert n1.located("bosh", "sid1") == ("n1", None)  # here: nothing to pass on
    assert n2.located("bosh", "sid1") == ("n1", None)  # no URL published
    n1.publish_http("http://127.0.0.1:4321")
    assert n2.located("bosh", "sid1") == ("n1", "http://127.0.0.1:4321")
    n1.release("bosh", "sid1")
    assert n2.located("bosh", "sid1") == (None, None)


def test_a_shared_setting_is_compared_with_the_live_nodes_only(nodes, redis_url, redis_prefix):
    n1, n2 = nodes
    assert n1.agree("dialback_secret", "fp-a") == []
    assert n2.agree("dialback_secret", "fp-b") == ["n1"]
    assert n2.agree("dialback_secret", "fp-a") == []
    # n1 restarted with another value: its own record is no obstacle, n2's is.
    assert n1.agree("dialback_secret", "fp-c") == ["n2"]
    n3 = ClusterNode(ClusterOptions(redis_url, "n3", 2.0, redis_prefix))
    try:
        assert n3.agree("dialback_secret", "fp-b") == ["n1", "n2"]
        # Once they are dead (and started long ago), their records no longer count.
        setting = n1.key("setting", "dialback_secret")
        for node in (n1, n2):
            node.redis.delete(node.key("node", node.name))
            record = n1.redis.hget(setting, node.name).decode().split()[0]
            n1.redis.hset(setting, node.name, f"{record} 1000")
        assert n3.agree("dialback_secret", "fp-b") == []
        # n3 starts, not beating yet: another node starting at once compares with it.
        assert n1.agree("dialback_secret", "fp-a") == ["n3"]
        n3.join()
        assert n1.agree("dialback_secret", "fp-a") == ["n3"]
        assert n1.agree("dialback_secret", "fp-b") == []
    finally:
        n3.redis.close()
