"""Request heads: strict field parsing, and no ambiguous body framing (RFC 9112 5, 6.1, 6.3)."""

from __future__ import annotations

import pytest

from http_apps import server
from http_apps.server import BadHead, check_framing, parse_fields
from tests.fuzz.fuzz_http_head import read_head


def lines(text: str) -> list[bytes]:
    return [line.encode("latin-1") + b"\r\n" for line in text.split("\n")]


def head(text: str):
    return parse_fields(lines(text))


def test_fields_are_parsed():
    fields = head("Host: example.com\nX-Empty:\nx-spaced: \t a  b \t\nAccept:*/*\n"
                  "X-Latin: caf\xe9\nX-Twice: 1\nX-Twice: 2\n")
    assert fields["host"] == "example.com"
    assert fields["X-Empty"] == ""
    assert fields["X-Spaced"] == "a  b"
    assert fields["accept"] == "*/*"
    assert fields["X-Latin"] == "caf\xe9"
    assert fields.get_all("X-Twice") == ["1", "2"]
    assert next(iter(fields.headers)) == "Host: example.com\r\n"  # what pywsgi reads


def test_parsing_stops_at_the_blank_line_and_takes_bare_lf():
    fields = parse_fields([b"Host: a\n", b"\n", b"X-Body: no\r\n"])
    assert fields.items() == [("Host", "a")]


@pytest.mark.parametrize("line", [
    b" folded continuation\r\n",
    b"\tfolded continuation\r\n",
    b"no colon here\r\n",
    b"Host : a\r\n",
    b"Ho st: a\r\n",
    b": no name\r\n",
    b"X-A: a\x00b\r\n",
    b"X-A: a\rb\r\n",
    b"X-\xe9: a\r\n",
])
def test_malformed_lines_are_refused(line):
    with pytest.raises(BadHead) as refused:
        parse_fields([b"Host: a\r\n", b"X-Before: 1\r\n", line, b"\r\n"])
    assert refused.value.status == 400


@pytest.mark.parametrize("text", [
    "Host: a",
    "Host: a\nContent-Length: 0",
    "Host: a\nContent-Length: 12345",
    "Host: a\nContent-Length:  7 ",
    "Host: a\nTransfer-Encoding: chunked",
    "Host: a\nTransfer-Encoding: Chunked",
])
def test_unambiguous_framing_passes(text):
    check_framing(head(text))


@pytest.mark.parametrize(("text", "status"), [
    ("Host: a\nContent-Length: 5\nContent-Length: 6", 400),
    ("Host: a\nContent-Length: 5\nContent-Length: 5", 400),
    ("Host: a\nContent-Length: 5, 6", 400),
    ("Host: a\nContent-Length: 1_0", 400),
    ("Host: a\nContent-Length: +5", 400),
    ("Host: a\nContent-Length: -1", 400),
    ("Host: a\nContent-Length: 0x10", 400),
    ("Host: a\nContent-Length:", 400),
    ("Host: a\nTransfer-Encoding: chunked\nContent-Length: 5", 400),
    ("Host: a\nTransfer-Encoding: gzip", 501),
    ("Host: a\nTransfer-Encoding: gzip, chunked", 501),
    ("Host: a\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked", 501),
])
def test_ambiguous_framing_is_refused(text, status):
    with pytest.raises(BadHead) as refused:
        check_framing(head(text))
    assert refused.value.status == status


# --- found by fuzzing (tests/fuzz/fuzz_http_head.py) -------------------------


@pytest.mark.parametrize("head", [
    b"\t!\t!||||||??|||| HTTP/0\r\n",
    b"GET /file_share/2f1c-4a0e/cat.jpg?x=1&y=%2F HTTP/1\n1.\rHost: upload.example.com\r\n\r\n",
    b"GET / HTTP/1.1.1\r\n\r\n",
    b"GET / HTTP/x.y\r\n\r\n",
])
def test_a_malformed_http_version_is_a_bad_head(head):
    # pywsgi raised IndexError on "HTTP/0" (turned into a 400 only by its catch-all).
    with pytest.raises(BadHead) as refused:
        read_head(head)
    assert refused.value.status == 400


def test_a_well_formed_head_reads_through_the_fuzzed_path():
    environ = read_head(b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\n"
                        b"X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n\r\n")
    assert environ["PATH_INFO"] == "/a" and environ["REMOTE_ADDR"] == "203.0.113.9"


def test_the_usual_versions_are_taken_without_the_version_regex(monkeypatch):
    class Unused:
        def fullmatch(self, version):
            raise AssertionError(f"{version} checked by the regex")

    monkeypatch.setattr(server, "_HTTP_VERSION", Unused())
    for version in ("HTTP/1.1", "HTTP/1.0"):
        environ = read_head(f"GET / {version}\r\nHost: example.com\r\n\r\n".encode())
        assert environ["SERVER_PROTOCOL"] == version
