"""RFC 2782 SRV ordering: priority first, then weighted random with an injected RNG."""

import random
from collections import Counter

from xmpp.srv import SrvRecord, order_records, service_unavailable


class FixedDraws(random.Random):
    """randint returns the queued draws, clamped to the asked range."""

    def __init__(self, draws):
        super().__init__(0)
        self.draws = list(draws)

    def randint(self, a, b):
        return min(max(self.draws.pop(0), a), b)


def rec(priority, weight, target, port=5269):
    return SrvRecord(priority, weight, port, target)


def test_lower_priority_always_comes_first():
    records = [rec(20, 100, "c"), rec(10, 0, "a"), rec(30, 5, "d"), rec(10, 0, "b")]
    for seed in range(20):
        order = [r.target for r in order_records(records, random.Random(seed))]
        assert set(order[:2]) == {"a", "b"}
        assert order[2:] == ["c", "d"]


def test_weighted_draw_walks_the_running_sum():
    # Zero weights first in the running sum: [z:0, a:10, b:30] -> sums 0, 10, 40.
    records = [rec(1, 10, "a"), rec(1, 30, "b"), rec(1, 0, "z")]
    assert [r.target for r in order_records(records, FixedDraws([0, 0, 0]))] == ["z", "a", "b"]
    # 11 falls past a's running sum of 10: b; then [z:0, a:10]: draw 5 -> a; then z.
    assert [r.target for r in order_records(records, FixedDraws([11, 5, 0]))] == ["b", "a", "z"]
    assert [r.target for r in order_records(records, FixedDraws([40, 10, 0]))] == ["b", "a", "z"]


def test_weights_set_first_choice_frequencies():
    # RFC 2782 draws uniformly from 0..sum inclusive: with sums 1 and 4, the
    # light record wins on 0 and 1 (2 of 5 draws), the heavy one on 2..4.
    records = [rec(0, 1, "light"), rec(0, 3, "heavy")]
    rng = random.Random(1234)
    firsts = Counter(order_records(records, rng)[0].target for _ in range(4000))
    assert 0.55 < firsts["heavy"] / 4000 < 0.65


def test_every_record_is_returned_once():
    records = [rec(p, w, f"{p}-{w}") for p in (1, 2) for w in (0, 1, 5)]
    ordered = order_records(records, random.Random(7))
    assert sorted(ordered, key=lambda r: r.target) == sorted(records, key=lambda r: r.target)


def test_dot_target_means_no_service():
    assert service_unavailable([rec(0, 0, ".")])
    assert service_unavailable([rec(0, 0, "")])
    assert not service_unavailable([rec(0, 0, "xmpp.example")])
    assert not service_unavailable([rec(0, 0, "."), rec(1, 0, "xmpp.example")])
    assert not service_unavailable([])
