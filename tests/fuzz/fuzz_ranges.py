"""Fuzz target: the Range header parser of file downloads (http_apps/file_share/ranges.py).

Input: the file size (6 bytes, big-endian), then the header value. Documented
refusal: RangeNotSatisfiable (416). Checked too: a range given back lies inside
the file.
"""

from __future__ import annotations

import atheris

from tests.fuzz.harness import INSTRUMENTED, run

with atheris.instrument_imports(include=INSTRUMENTED):
    from http_apps.file_share.ranges import RangeNotSatisfiable, parse_range

REFUSALS = (RangeNotSatisfiable,)


def one_input(data: bytes) -> None:
    size = int.from_bytes(data[:6], "big")
    # A WSGI header value is latin-1 text.
    header = data[6:].decode("latin-1")
    byte_range = parse_range(header, size)
    if byte_range is not None:
        assert 0 <= byte_range.first <= byte_range.last < size, (header, size, byte_range)
        assert byte_range.length == byte_range.last - byte_range.first + 1
        byte_range.content_range()


if __name__ == "__main__":
    run(one_input, REFUSALS, name="ranges")
