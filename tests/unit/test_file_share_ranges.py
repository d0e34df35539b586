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
    "bytes=0-1,5-6", "bytes=1-2-3", "bytes=0x1-2",
])
def test_ignored_headers_mean_the_whole_file(header):
    assert parse_range(header, 100) is None
