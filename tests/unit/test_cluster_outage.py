"""One warning per outage of a loop retrying a Redis call (xmpp.cluster.outage)."""

from __future__ import annotations

import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from xmpp.cluster.outage import OutageLog, failure_kind

NOGROUP = ResponseError("NOGROUP No such key 'vireo:stream:b' or consumer group 'vireo'")
REFUSED = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


@pytest.fixture
def outage(caplog) -> OutageLog:
    caplog.set_level(logging.DEBUG, logger="test-outage")
    return OutageLog(logging.getLogger("test-outage"), "Reading")


def levels(caplog) -> list[str]:
    return [record.levelname for record in caplog.records]


def test_a_failure_is_told_by_redis_error_code_else_by_its_class():
    assert failure_kind(NOGROUP) == "NOGROUP"
    assert failure_kind(REFUSED) == "ConnectionError"
    assert failure_kind(TimeoutError("Timeout reading from socket")) == "TimeoutError"


def test_the_same_failure_again_is_a_debug_line(outage, caplog):
    for _ in range(4):
        outage.failed(NOGROUP, ": gone")
    assert levels(caplog) == ["WARNING", "DEBUG", "DEBUG", "DEBUG"]
    assert caplog.records[0].getMessage() == f"Reading failed ({NOGROUP}): gone; retrying"


def test_another_kind_of_failure_in_the_same_outage_is_a_warning(outage, caplog):
    outage.failed(REFUSED)
    outage.failed(REFUSED)
    outage.failed(NOGROUP)
    assert levels(caplog) == ["WARNING", "DEBUG", "WARNING"]


def test_the_end_of_an_outage_is_told_once_and_the_next_one_warns_again(outage, caplog):
    outage.succeeded()
    assert caplog.records == []
    outage.failed(NOGROUP)
    outage.failed(NOGROUP)
    outage.succeeded()
    outage.succeeded()
    outage.failed(NOGROUP)
    assert levels(caplog) == ["WARNING", "DEBUG", "INFO", "WARNING"]
    assert caplog.records[2].getMessage() == "Reading works again after 2 failed attempt(s)"
