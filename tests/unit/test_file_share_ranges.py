"""Byte ranges of RFC 9110 section 14 for downloads: 206 ranges, 416, and ignored headers."""

from __future__ import annotations

import pytest

from http_apps.file_share.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    parse_range,
    unsatisfied_range,
)


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=0-1", 100, (0, 1)),          # the probe browsers send before playing video
    ("bytes=0-0", 100, (0, 0)),
    ("bytes=10-19", 100, (10, 19)),
    ("bytes=90-", 100, (90, 99)),
    ("bytes=0-", 100, (0, 99)),
    ("bytes=90-1000", 100, (90, 99)),    # a last byte past the end is clamped
    ("bytes=99-99", 100, (99, 99)),
    ("bytes=-10", 100, (90, 99)),        # suffix: the last 10 bytes
    ("bytes=-1000", 100, (0, 99)),       # a suffix longer than the file is all of it
    ("Bytes = 5 - 6", 100, (5, 6)),
    ("bytes=0010-0019", 100, (10, 19)),
])
def test_satisfiable_ranges(header, size, expected):
    got = parse_range(header, size)
    assert (got.first, got.last) == expected
    assert got.size == size


def test_content_range_and_length():
    got = parse_range("bytes=10-19", 100)
    assert got == ByteRange(10, 19, 100)
    assert got.length == 10
    assert got.content_range() == "bytes 10-19/100"
    assert unsatisfied_range(100) == "bytes */100"


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=100-", 100),
    ("bytes=100-200", 100),
    ("bytes=-0", 100),
    ("bytes=0-", 0),
    ("bytes=-5", 0),
])
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@pytest.mark.parametrize("header", [
    None, "", "items=0-1", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-1",
    "bytes=0-1,5-6", "bytes=1-2-3", "bytes=0x1-2", "bytes=200-150", "bytes=010-9",
])
def test_ignored_headers_mean_the_whole_file(header):
    assert parse_range(header, 100) is None


LONG = "9" * 5000  # too long for int(): Python refuses over 4300 digits


@pytest.mark.parametrize(("header", "expected"), [
    pytest.param(f"bytes=0-{LONG}", (0, 99), id="last"),
    pytest.param(f"bytes=-{LONG}", (0, 99), id="suffix"),
    pytest.param(f"bytes={LONG}-", RangeNotSatisfiable, id="first"),
    pytest.param(f"bytes=-{'0' * 5000}", RangeNotSatisfiable, id="zero-suffix"),
    pytest.param(f"bytes={'0' * 4999}5-{LONG}", (5, 99), id="leading-zeros"),
    pytest.param(f"bytes={LONG}-{'1' * 5000}", None, id="last-before-first"),
])
def test_numbers_of_thousands_of_digits(header, expected):
    if expected is RangeNotSatisfiable:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, 100)
    elif expected is None:
        assert parse_range(header, 100) is None
    else:
        got = parse_range(header, 100)
        assert (got.first, got.last) == expected
