"""mod_limits' parsing of Prosody's rate and burst syntax, and its token bucket."""

from __future__ import annotations

import pytest

from xmpp.modules.limits import TokenBucket, parse_burst, parse_rate


@pytest.mark.parametrize(("text", "rate"), [
    ("10kb/s", 10_000), ("30 kb/s", 30_000), ("1mb/s", 1_000_000), ("500b/s", 500),
    ("10KB/s", 10_000), ("fast", None), ("10kb", None), (10, None), (None, None)])
def test_parse_rate(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize(("value", "burst"), [
    ("2s", 2.0), ("5 s", 5.0), (3, 3.0), ("soon", None), (True, None)])
def test_parse_burst(value, burst):
    assert parse_burst(value) == burst


def test_bucket_pauses_by_the_debt_and_refills():
    now = [0.0]
    bucket = TokenBucket(1000, 2, lambda: now[0])
    assert bucket.take(2000) == 0.0  # the burst
    assert bucket.take(500) == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take(0) == 0.0
    now[0] += 10  # refills up to the burst only
    assert bucket.take(2000) == 0.0
    assert bucket.take(1000) == pytest.approx(1.0)
