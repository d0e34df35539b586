"""Tests for the PROXY protocol v1/v2 header parser (xmpp/proxy_protocol.py)."""

from __future__ import annotations

import random
import struct

import pytest

from xmpp.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderParser,
    crc32c,
)

APP = b"<?xml version='1.0'?><stream:stream to='example.org'>"


def v2(command: int = 1, family: int = 0x11, body: bytes = b"", *, version: int = 2) -> bytes:
    """A v2 header with the given fields; the length field is the body's length."""
    return (
        V2_SIGNATURE + bytes([version << 4 | command, family]) + struct.pack("!H", len(body)) + body
    )


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


INET = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack("!HH", 56324, 5222)
INET6 = (
    bytes.fromhex("20010db8000000000000000000000001")
    + bytes.fromhex("20010db8000000000000000000000002")
    + struct.pack("!HH", 1, 65535)
)
UNIX = b"/run/haproxy.sock".ljust(108, b"\0") + b"\0xmpp-abstract".ljust(108, b"\0")


def with_crc(body_before_crc: bytes, family: int = 0x11) -> bytes:
    """A v2 PROXY header whose last TLV is a correct CRC32C."""
    blank = v2(1, family, body_before_crc + tlv(0x03, bytes(4)))
    return blank[:-4] + struct.pack("!I", crc32c(blank))


def header(version, command, family, source, destination, tlvs=None) -> ProxyHeader:
    return ProxyHeader(version, command, family, source, destination, tlvs or {})


VALID = {
    "v1 tcp4": (
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 5222\r\n",
        header(1, "PROXY", "TCP4", ("192.0.2.1", 56324), ("198.51.100.2", 5222)),
    ),
    "v1 tcp4 port bounds": (
        b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
        header(1, "PROXY", "TCP4", ("0.0.0.0", 0), ("255.255.255.255", 65535)),
    ),
    "v1 tcp6 canonicalised": (
        b"PROXY TCP6 2001:DB8::1 2001:db8:0:0:0:0:0:2 1 65535\r\n",
        header(1, "PROXY", "TCP6", ("2001:db8::1", 1), ("2001:db8::2", 65535)),
    ),
    "v1 tcp6 shortest": (
        b"PROXY TCP6 :: :: 0 0\r\n",
        header(1, "PROXY", "TCP6", ("::", 0), ("::", 0)),
    ),
    "v1 tcp6 v4-mapped": (
        b"PROXY TCP6 ::ffff:192.0.2.1 ::1 4000 5269\r\n",
        header(1, "PROXY", "TCP6", ("::ffff:c000:201", 4000), ("::1", 5269)),
    ),
    "v1 tcp6 longest": (
        b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n",
        header(
            1,
            "PROXY",
            "TCP6",
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
        ),
    ),
    "v1 unknown": (b"PROXY UNKNOWN\r\n", header(1, "UNKNOWN", None, None, None)),
    "v1 unknown with addresses": (
        b"PROXY UNKNOWN ffff:: ffff:: 1 2\r\n",
        header(1, "UNKNOWN", None, None, None),
    ),
    "v1 unknown 107 bytes": (
        b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n",
        header(1, "UNKNOWN", None, None, None),
    ),
    "v2 inet": (
        v2(1, 0x11, INET),
        header(2, "PROXY", "TCP4", ("192.0.2.1", 56324), ("198.51.100.2", 5222)),
    ),
    "v2 inet6": (
        v2(1, 0x21, INET6),
        header(2, "PROXY", "TCP6", ("2001:db8::1", 1), ("2001:db8::2", 65535)),
    ),
    "v2 unix": (
        v2(1, 0x31, UNIX),
        header(2, "PROXY", "UNIX", ("/run/haproxy.sock", 0), ("\0xmpp-abstract", 0)),
    ),
    "v2 unspec": (v2(1, 0x00, b""), header(2, "PROXY", None, None, None)),
    "v2 unspec with a block": (v2(1, 0x00, b"ignored"), header(2, "PROXY", None, None, None)),
    "v2 local": (v2(0, 0x00, b""), header(2, "LOCAL", None, None, None)),
    "v2 local ignores family and block": (
        v2(0, 0x77, b"\x01"),
        header(2, "LOCAL", None, None, None),
    ),
    "v2 inet with tlvs": (
        v2(
            1,
            0x11,
            INET
            + tlv(0x01, b"xmpp-client")
            + tlv(0x02, b"example.org")
            + tlv(0x04, b"\0" * 5)
            + tlv(0x05, b"")
            + tlv(0x01, b"second value ignored")
            + tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.3")),
        ),
        header(
            2,
            "PROXY",
            "TCP4",
            ("192.0.2.1", 56324),
            ("198.51.100.2", 5222),
            {
                0x01: b"xmpp-client",
                0x02: b"example.org",
                0x05: b"",
                0x20: b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.3"),
            },
        ),
    ),
    "v2 inet6 with crc32c": (
        with_crc(INET6 + tlv(0x02, b"example.org"), family=0x21),
        header(
            2,
            "PROXY",
            "TCP6",
            ("2001:db8::1", 1),
            ("2001:db8::2", 65535),
            {0x02: b"example.org", 0x03: with_crc(INET6 + tlv(0x02, b"example.org"), 0x21)[-4:]},
        ),
    ),
}

# name -> (bytes, a part of the expected reason)
MALFORMED = {
    # detection
    "http request": (b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", "not a PROXY"),
    "http2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "v1: malformed"),
    "tls client hello": (bytes.fromhex("160301 00f4 01 0000f0 0303") + bytes(32), "not a PROXY"),
    "xmpp stream": (APP, "not a PROXY"),
    "v2 signature, wrong last byte": (V2_SIGNATURE[:-1] + b"\x0b" + INET, "signature"),
    # v1 framing
    "v1 lowercase": (b"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "not a PROXY"),
    "v1 lowercase family": (b"PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 unknown family": (b"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 UNKNOWN glued": (b"PROXY UNKNOWNX\r\n", "v1: malformed"),
    "v1 no family": (b"PROXY\r\n", "v1: malformed"),
    "v1 empty family": (b"PROXY \r\n", "v1: malformed"),
    "v1 double space": (b"PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 leading space": (b"PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 trailing space": (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n", "v1: malformed"),
    "v1 tab": (b"PROXY TCP4\t192.0.2.1 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 missing port": (b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n", "v1: malformed"),
    "v1 extra field": (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n", "v1: malformed"),
    "v1 bare LF": (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n" + APP, "v1: malformed"),
    "v1 CR without LF": (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r" + APP, "v1: malformed"),
    "v1 no CRLF within 107": (b"PROXY UNKNOWN " + b"x" * 93, "107"),
    "v1 108 bytes": (b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", "107"),
    # Two 45-character addresses make a 108-byte line.
    "v1 tcp6 too long": (
        b"PROXY TCP6 " + (b"ffff:" * 6 + b"255.255.255.255 ") * 2 + b"1 2\r\n",
        "107",
    ),
    # v1 addresses
    "v1 ipv4 octet > 255": (b"PROXY TCP4 256.0.2.1 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 ipv4 three octets": (b"PROXY TCP4 192.0.2 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 ipv4 five octets": (b"PROXY TCP4 192.0.2.1.5 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 ipv4 leading zero": (b"PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 ipv4 hostname": (b"PROXY TCP4 localhost 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 tcp4 with ipv6": (b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n", "v1: malformed"),
    "v1 tcp6 with ipv4": (b"PROXY TCP6 192.0.2.1 2001:db8::1 1 2\r\n", "v1: malformed"),
    "v1 tcp6 bad": (b"PROXY TCP6 2001:db8:::1 2001:db8::2 1 2\r\n", "v1: malformed"),
    "v1 tcp6 zone id": (b"PROXY TCP6 fe80::1%eth0 2001:db8::2 1 2\r\n", "v1: malformed"),
    "v1 tcp6 bracketed": (b"PROXY TCP6 [2001:db8::1] 2001:db8::2 1 2\r\n", "v1: malformed"),
    # v1 ports
    "v1 port 65536": (b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n", "v1: malformed"),
    "v1 port 6 digits": (b"PROXY TCP4 192.0.2.1 198.51.100.2 100000 2\r\n", "v1: malformed"),
    "v1 port leading zero": (b"PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n", "v1: malformed"),
    "v1 port 00": (b"PROXY TCP4 192.0.2.1 198.51.100.2 00 2\r\n", "v1: malformed"),
    "v1 port negative": (b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n", "v1: malformed"),
    "v1 port plus": (b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n", "v1: malformed"),
    "v1 port hex": (b"PROXY TCP4 192.0.2.1 198.51.100.2 0x50 2\r\n", "v1: malformed"),
    "v1 port trailing garbage": (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2a\r\n", "v1: malformed"),
    "v1 port unicode digit": (
        "PROXY TCP4 192.0.2.1 198.51.100.2 1 \u0661\r\n".encode(),
        "v1: malformed",
    ),
    # v2 fixed part
    "v2 version 1": (v2(1, 0x11, INET, version=1), "version"),
    "v2 version 3": (v2(1, 0x11, INET, version=3), "version"),
    "v2 version 0": (v2(1, 0x11, INET, version=0), "version"),
    "v2 command 2": (v2(2, 0x11, INET), "command"),
    "v2 command 15": (v2(15, 0x11, INET), "command"),
    "v2 family 4": (v2(1, 0x41, INET), "family"),
    "v2 protocol 3": (v2(1, 0x13, INET), "family"),
    "v2 inet unspec protocol": (v2(1, 0x10, INET), "family"),
    "v2 unspec family stream": (v2(1, 0x01, INET), "family"),
    "v2 udp4": (v2(1, 0x12, INET), "datagram"),
    "v2 udp6": (v2(1, 0x22, INET6), "datagram"),
    "v2 unix dgram": (v2(1, 0x32, UNIX), "datagram"),
    "v2 inet length 11": (v2(1, 0x11, INET[:11]), "too small"),
    "v2 inet6 length 35": (v2(1, 0x21, INET6[:35]), "too small"),
    "v2 unix length 215": (v2(1, 0x31, UNIX[:215]), "too small"),
    "v2 length over limit": (v2(1, 0x11, INET + tlv(0xE0, bytes(4096))), "limit"),
    "v2 local length over limit": (v2(0, 0x00, bytes(4097)), "limit"),
    # v2 TLVs
    "v2 tlv header truncated": (v2(1, 0x11, INET + b"\x01\x00"), "truncated TLV"),
    "v2 tlv one byte": (v2(1, 0x11, INET + b"\x01"), "truncated TLV"),
    "v2 tlv value past end": (v2(1, 0x11, INET + b"\x02\x00\x05abc"), "past the end"),
    "v2 second tlv past end": (
        v2(1, 0x11, INET + tlv(0x01, b"x") + b"\x02\xff\xff"),
        "past the end",
    ),
    "v2 crc32c mismatch": (with_crc(INET)[:-1] + b"\x00", "mismatch"),
    "v2 crc32c wrong size": (v2(1, 0x11, INET + tlv(0x03, b"\0\0\0")), "not 4 bytes"),
    "v2 crc32c over other content": (
        v2(1, 0x11, INET + tlv(0x03, struct.pack("!I", 0x12345678))),
        "mismatch",
    ),
    # truncation at EOF
    "eof at once": (b"", "closed"),
    "eof mid v1 line": (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r", "closed"),
    "eof mid v2 fixed part": (v2(1, 0x11, INET)[:14], "closed"),
    "eof mid v2 block": (v2(1, 0x11, INET)[:-1], "closed"),
}


def feed_all(parser: ProxyHeaderParser, data: bytes, chunk: int) -> ProxyHeader | None:
    """Feed `data` in `chunk`-sized pieces, then EOF if no header came out."""
    for start in range(0, len(data), chunk):
        result = parser.feed(data[start : start + chunk])
        if result is not None:
            return result
    return parser.feed(b"")


class SocketStub:
    """A byte stream read like `sock.recv(n)`, optionally delivering fewer bytes than asked."""

    def __init__(self, data: bytes, rng: random.Random | None = None) -> None:
        self.data = data
        self.pos = 0
        self.rng = rng

    def recv(self, n: int) -> bytes:
        assert n > 0
        if self.rng is not None:
            n = self.rng.randint(1, n)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk


def read_header(sock: SocketStub, parser: ProxyHeaderParser) -> ProxyHeader:
    """The listener's recommended loop, bounded."""
    for _ in range(ProxyHeaderParser.MAX_V2):
        result = parser.feed(sock.recv(parser.bytes_wanted()))
        if result is not None:
            return result
    raise AssertionError("parser never finished")


# --- valid headers -----------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID)
def test_valid_in_one_piece(name):
    data, expected = VALID[name]
    parser = ProxyHeaderParser()
    assert parser.feed(data) == expected
    assert parser.remainder == b""
    assert parser.bytes_wanted() == 0


@pytest.mark.parametrize("name", VALID)
def test_valid_byte_by_byte(name):
    data, expected = VALID[name]
    parser = ProxyHeaderParser()
    results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
    assert results[:-1] == [None] * (len(data) - 1)
    assert results[-1] == expected
    assert parser.remainder == b""


@pytest.mark.parametrize("name", VALID)
def test_remainder_keeps_application_bytes(name):
    data, expected = VALID[name]
    parser = ProxyHeaderParser()
    assert parser.feed(data + APP) == expected
    assert parser.remainder == APP


@pytest.mark.parametrize("name", VALID)
def test_remainder_after_split_feeds(name):
    data, expected = VALID[name]
    stream = data + APP
    for cut in range(1, len(data)):
        parser = ProxyHeaderParser()
        assert parser.feed(stream[:cut]) is None
        assert parser.feed(stream[cut:]) == expected
        assert parser.remainder == APP


@pytest.mark.parametrize("name", VALID)
def test_bytes_wanted_never_reads_past_the_header(name):
    data, expected = VALID[name]
    sock = SocketStub(data + APP)
    parser = ProxyHeaderParser()
    assert read_header(sock, parser) == expected
    assert sock.pos == len(data)
    assert parser.remainder == b""
    assert sock.data[sock.pos :] == APP


@pytest.mark.parametrize("name", VALID)
def test_bytes_wanted_with_short_reads(name):
    data, expected = VALID[name]
    rng = random.Random(name)
    for _ in range(20):
        sock = SocketStub(data + APP, rng)
        assert read_header(sock, ProxyHeaderParser()) == expected
        assert sock.pos == len(data)


def test_initial_bytes_wanted_is_the_shortest_header():
    assert ProxyHeaderParser().bytes_wanted() == len(b"PROXY UNKNOWN\r\n")


def test_v2_is_read_in_two_steps():
    data = v2(1, 0x21, INET6 + tlv(0x01, b"h2"))
    parser = ProxyHeaderParser()
    assert parser.feed(data[:15]) is None
    assert parser.bytes_wanted() == 1
    assert parser.feed(data[15:16]) is None
    assert parser.bytes_wanted() == len(data) - 16
    assert parser.feed(data[16:]) is not None


def test_v1_wanted_shrinks_to_the_crlf():
    parser = ProxyHeaderParser()
    line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 5222"
    parser.feed(line[:15])
    # "PROXY TCP4 192." can still end as "...192.0.0 0.0.0.0 0 0\r\n".
    assert parser.bytes_wanted() == len(b"0.0 0.0.0.0 0 0\r\n")
    parser.feed(line[15:])
    assert parser.bytes_wanted() == 2
    parser.feed(b"\r")
    assert parser.bytes_wanted() == 1


def test_custom_v2_limit():
    body = INET + tlv(0xE0, bytes(100))
    assert ProxyHeaderParser(max_v2_length=len(body)).feed(v2(1, 0x11, body)) is not None
    with pytest.raises(ProxyHeaderError, match="limit"):
        ProxyHeaderParser(max_v2_length=len(body) - 1).feed(v2(1, 0x11, body))


def test_largest_v2_header_under_the_largest_limit():
    body = INET + tlv(0xE0, bytes(0xFFFF - len(INET) - 3))
    parser = ProxyHeaderParser(max_v2_length=0xFFFF)
    assert parser.feed(v2(1, 0x11, body)).tlvs[0xE0] == bytes(0xFFFF - len(INET) - 3)
    assert len(v2(1, 0x11, body)) == ProxyHeaderParser.MAX_V2


@pytest.mark.parametrize("limit", [-1, 0x10000])
def test_limit_out_of_range(limit):
    with pytest.raises(ValueError):
        ProxyHeaderParser(max_v2_length=limit)


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283


# --- malformed headers -------------------------------------------------------------------


@pytest.mark.parametrize("name", MALFORMED)
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_malformed_is_refused(name, chunk):
    data, reason = MALFORMED[name]
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderError, match=reason) as caught:
        feed_all(parser, data, chunk)
    assert caught.value.reason == str(caught.value)
    assert parser.bytes_wanted() == 0


@pytest.mark.parametrize("name", [n for n in MALFORMED if not n.startswith("eof")])
def test_malformed_is_refused_before_eof(name):
    data, reason = MALFORMED[name]
    with pytest.raises(ProxyHeaderError, match=reason):
        ProxyHeaderParser().feed(data + APP)


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        (b"G", "not a PROXY"),
        (b"\x16", "not a PROXY"),
        (b"<", "not a PROXY"),
        (b"PRI", "v1"),
        (b"\r\n\r\nQ", "signature"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 80 80\n", "v1"),
        (V2_SIGNATURE + b"\x31", "version"),
        (V2_SIGNATURE + b"\x23", "command"),
        (V2_SIGNATURE + b"\x21\x12", "datagram"),
        (V2_SIGNATURE + b"\x21\x51", "family"),
        (V2_SIGNATURE + b"\x21\x11\x10\x01", "limit"),
        (V2_SIGNATURE + b"\x21\x11\x00\x0b", "too small"),
    ],
)
def test_refused_as_soon_as_impossible(prefix, reason):
    parser = ProxyHeaderParser()
    for byte in prefix[:-1]:
        assert parser.feed(bytes([byte])) is None
    with pytest.raises(ProxyHeaderError, match=reason):
        parser.feed(prefix[-1:])


def test_v1_refused_once_107_bytes_cannot_hold_it():
    parser = ProxyHeaderParser()
    line = b"PROXY UNKNOWN " + b"x" * 91
    for i in range(len(line)):
        assert parser.feed(line[i : i + 1]) is None
    # 105 bytes: only CRLF can follow now.
    assert parser.bytes_wanted() == 2
    with pytest.raises(ProxyHeaderError, match="107"):
        parser.feed(b"x")


def test_every_v2_signature_byte_is_checked():
    for index in range(len(V2_SIGNATURE)):
        bad = bytearray(v2(1, 0x11, INET))
        bad[index] ^= 0x20
        with pytest.raises(ProxyHeaderError):
            ProxyHeaderParser().feed(bytes(bad))


@pytest.mark.parametrize("data", [b"", b"P", b"PROXY TCP4 ", V2_SIGNATURE, v2(1, 0x11, INET)[:20]])
def test_eof_inside_the_header(data):
    parser = ProxyHeaderParser()
    if data:
        assert parser.feed(data) is None
    with pytest.raises(ProxyHeaderError, match="closed"):
        parser.feed(b"")


def test_error_is_sticky():
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderError) as first:
        parser.feed(b"GET /")
    with pytest.raises(ProxyHeaderError) as again:
        parser.feed(b"PROXY UNKNOWN\r\n")
    assert again.value is first.value


def test_feeding_after_completion_is_a_caller_bug():
    parser = ProxyHeaderParser()
    parser.feed(b"PROXY UNKNOWN\r\n")
    with pytest.raises(RuntimeError):
        parser.feed(APP)
    assert parser.remainder == b""


# --- fuzzing -----------------------------------------------------------------------------


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if action == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif action == 1:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif action == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        else:
            buf = buf[:pos]
    return bytes(buf)


def test_fuzz_only_headers_none_or_header_errors():
    """Random bytes and mutated headers, fed in random pieces (bounded, fixed seed)."""
    rng = random.Random(20240613)
    seeds = [data for data, _ in VALID.values()]
    outcomes = {"header": 0, "error": 0}
    for _ in range(10000):
        if rng.random() < 0.2:
            data = rng.randbytes(rng.randint(0, 300))
            if rng.random() < 0.5:
                data = rng.choice([b"PROXY ", V2_SIGNATURE]) + data
        else:
            data = _mutate(rng, rng.choice(seeds)) + rng.randbytes(rng.randint(0, 4))
        parser = ProxyHeaderParser(max_v2_length=rng.choice([0, 12, 300, 4096]))
        pos = 0
        try:
            while True:
                wanted = parser.bytes_wanted()
                assert 0 < wanted <= ProxyHeaderParser.MAX_V2
                piece = data[pos : pos + rng.randint(1, wanted + 3)]
                pos += len(piece)
                result = parser.feed(piece)
                if result is not None:
                    assert isinstance(result, ProxyHeader)
                    assert result.version in (1, 2)
                    assert parser.remainder == data[pos - len(parser.remainder) : pos]
                    outcomes["header"] += 1
                    break
        except ProxyHeaderError as exc:
            assert exc.reason
            outcomes["error"] += 1
    assert outcomes["header"] > 200
    assert outcomes["error"] > 5000
