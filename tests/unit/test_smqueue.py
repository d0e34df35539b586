"""XEP-0198 counters and the unacked queue (xmpp.smqueue), without sockets."""

from __future__ import annotations

from xml.etree.ElementTree import Element

import pytest

from xmpp.smqueue import MODULUS, AckError, AckQueue, parse_h


def stanzas(count: int) -> list[Element]:
    return [Element("message", {"id": str(n)}) for n in range(count)]


def test_acks_drop_what_they_acknowledge_oldest_first():
    queue = AckQueue(max_size=10)
    for stanza in stanzas(4):
        assert queue.push(stanza)
    assert queue.ack(3) == 3
    assert [s.get("id") for s in queue.unacked] == ["3"]
    assert queue.ack(3) == 0  # the same ack again is harmless
    assert queue.sent == 4


def test_counters_wrap_at_two_to_the_32():
    queue = AckQueue(max_size=10, handled=MODULUS - 1, acked=MODULUS - 2)
    queue.count_handled()
    assert queue.handled == 0
    for stanza in stanzas(3):
        queue.push(stanza)
    assert queue.sent == 1
    assert queue.ack(0) == 2  # 2^32 - 2 + 2 wraps to 0
    assert queue.ack(1) == 1 and not queue.unacked


@pytest.mark.parametrize("h, text", [
    (3, "more stanzas than sent"),
    (MODULUS - 1, "less stanzas than already acknowledged"),
])
def test_impossible_acks_are_refused_and_change_nothing(h, text):
    queue = AckQueue(max_size=10)
    for stanza in stanzas(2):
        queue.push(stanza)
    with pytest.raises(AckError, match=text) as raised:
        queue.ack(h)
    assert raised.value.condition == "undefined-condition"
    assert len(queue.unacked) == 2 and queue.acked == 0


def test_a_full_queue_says_so_but_keeps_the_stanza():
    queue = AckQueue(max_size=2)
    assert [queue.push(s) for s in stanzas(3)] == [True, True, False]
    assert [s.get("id") for s in queue.drain()] == ["0", "1", "2"]
    assert not queue.unacked


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("4294967295", MODULUS - 1), ("4294967296", None), ("-1", None),
    ("1e3", None), ("", None), (None, None), (" 1", None),
])
def test_parse_h(text, value):
    assert parse_h(text) == value
