"""Request heads whose body framing is ambiguous are refused (RFC 9112 6.1, 6.3)."""

from __future__ import annotations

from http import client
from io import BytesIO

import pytest

from http_apps.server import BadFraming, check_framing


def head(text: str):
    return client.parse_headers(BytesIO(text.replace("\n", "\r\n").encode() + b"\r\n"))


@pytest.mark.parametrize("text", [
    "Host: a\n",
    "Host: a\nContent-Length: 0\n",
    "Host: a\nContent-Length: 12345\n",
    "Host: a\nContent-Length:  7 \n",
    "Host: a\nTransfer-Encoding: chunked\n",
    "Host: a\nTransfer-Encoding: Chunked\n",
    "Host: a\nX-Long: one\n two\n",  # obs-fold, which the parser unfolds
])
def test_unambiguous_heads_pass(text):
    check_framing(head(text))


@pytest.mark.parametrize(("text", "status"), [
    ("Host: a\nContent-Length: 5\nContent-Length: 6\n", 400),
    ("Host: a\nContent-Length: 5\nContent-Length: 5\n", 400),
    ("Host: a\nContent-Length: 5, 6\n", 400),
    ("Host: a\nContent-Length: 1_0\n", 400),
    ("Host: a\nContent-Length: +5\n", 400),
    ("Host: a\nContent-Length: -1\n", 400),
    ("Host: a\nContent-Length: 0x10\n", 400),
    ("Host: a\nContent-Length:\n", 400),
    ("Host: a\nTransfer-Encoding: chunked\nContent-Length: 5\n", 400),
    ("Host: a\nTransfer-Encoding: gzip\n", 501),
    ("Host: a\nTransfer-Encoding: gzip, chunked\n", 501),
    ("Host: a\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n", 501),
    ("Host: a\nTransfer-Encoding : chunked\n", 400),  # space before the colon
    ("Host: a\nno colon here\nContent-Length: 5\n", 400),
])
def test_ambiguous_heads_are_refused(text, status):
    with pytest.raises(BadFraming) as refused:
        check_framing(head(text))
    assert refused.value.status == status
