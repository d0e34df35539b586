"""The connection the cluster's hot paths keep to Redis (xmpp.cluster.node.Lane):
its replies stay in step with its commands whatever happens to a call."""

from __future__ import annotations

from collections.abc import Iterator

import gevent
import pytest
import redis

from tests.unit import redis_fixtures
from xmpp.cluster.node import Lane

redis_url = redis_fixtures.redis_url
redis_prefix = redis_fixtures.redis_prefix


@pytest.fixture
def client(redis_url) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(redis_url)
    yield made
    made.close()


def test_an_error_reply_is_raised_once_every_reply_is_read(client, redis_prefix):
    lane = Lane(client)
    key = f"{redis_prefix}k"
    with pytest.raises(redis.ResponseError):
        lane.call([("SET", key, "text"), ("INCR", key), ("APPEND", key, "+more")])
    assert client.get(key) == b"text+more"  # the command after the error ran
    assert lane.call([("GET", key)]) == [b"text+more"]  # not the APPEND's reply


def test_a_call_killed_in_its_read_leaves_no_reply_for_the_next_one(client):
    """The consumer is killed (the server stops) while it waits for a reply:
    a later call must not take that reply for its own."""
    lane = Lane(client)
    lane.call([("PING",)])
    parser = lane.connection._parser
    read = parser.read_response

    def killed(*args, **options):
        parser.read_response = read
        raise gevent.GreenletExit  # as a kill arrives, in the wait for the reply

    parser.read_response = killed
    with pytest.raises(gevent.GreenletExit):
        lane.call([("ECHO", "theirs")])
    assert lane.call([("ECHO", "mine")]) == [b"mine"]


def test_the_clients_close_closes_the_lanes_connection(client, redis_prefix):
    lane = Lane(client)
    assert lane.call([("PING",)]) in ([b"PONG"], [True], ["PONG"])
    client.close()
    assert lane.connection._sock is None
    assert lane.call([("EXISTS", f"{redis_prefix}none")]) == [0]  # connects again
