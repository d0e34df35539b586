"""PROXY protocol versions 1 and 2 (HAProxy's proxy-protocol.txt): a sans-I/O header parser.

A trusted load balancer opens each connection to a PROXY port with one header
naming the client's real addresses; the bytes after it belong to the mapped
service (c2s, s2s, ...). `ProxyHeaderParser` takes those first bytes, tells the
listener how many more it may read without crossing into the service's bytes,
and returns a `ProxyHeader` once the header is complete. It never touches a
socket: the listener decides whom to trust (`proxy_trusted_proxies`) and what
to do with a `ProxyHeaderError` (close the connection).

Decisions the specification leaves open:
- v2 datagram families (UDP4, UDP6, UNIX DGRAM) are refused: every service
  behind a PROXY port is a stream service, so such a header is a misconfigured
  proxy and trusting it would map a stream to a datagram peer.
- v2 LOCAL and PROXY/UNSPEC keep the socket's own addresses and discard the
  whole address block, TLVs included (the specification says to ignore it).
- v2 TLVs are kept raw, first value per type; NOOP is dropped and a CRC32C TLV
  is verified (the specification requires it). Their total size is bounded by
  `max_v2_length`.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16  # signature, version/command, family/protocol, length
_V1_SHORTEST = len(b"PROXY UNKNOWN\r\n")  # no header of either version is shorter
_V1_LONGEST = 107  # the specification's worst case, CRLF included

_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_V2_UNSPEC = 0x00
_V2_DATAGRAM = frozenset({0x12, 0x22, 0x32})
_TLV_CRC32C, _TLV_NOOP = 0x03, 0x04


class ProxyHeaderError(Exception):
    """The bytes are not a valid, supported PROXY header: close the connection."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the proxy told us about the client's connection.

    `source` and `destination` are None when the socket's own addresses stand
    (v1 UNKNOWN, v2 LOCAL, v2 UNSPEC). UNIX addresses carry the socket path and
    port 0; an abstract-namespace name keeps its leading NUL.
    """

    version: int
    command: str
    family: str | None
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    tlvs: dict[int, bytes]


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of the v2 PP2_TYPE_CRC32C TLV."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- version 1: one text line -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Word:
    """One space-separated word of a v1 line."""

    could_start: Callable[[bytes], bool]  # may the word still grow into a valid one?
    is_valid: Callable[[bytes], bool]
    min_len: int


def _literal(text: bytes) -> _Word:
    return _Word(text.startswith, text.__eq__, len(text))


def _field(alphabet: bytes, min_len: int, max_len: int, check: Callable[[bytes], bool]) -> _Word:
    def could_start(word: bytes) -> bool:
        return len(word) <= max_len and not word.translate(None, alphabet)

    def is_valid(word: bytes) -> bool:
        return len(word) >= min_len and could_start(word) and check(word)

    return _Word(could_start, is_valid, min_len)


def _parses_as(address_type: type) -> Callable[[bytes], bool]:
    def check(word: bytes) -> bool:
        try:
            address_type(word.decode("ascii"))
        except ValueError:
            return False
        return True

    return check


def _is_port(word: bytes) -> bool:
    # Leading zeros are refused: a port is written as a plain decimal number.
    return (word == b"0" or not word.startswith(b"0")) and int(word) <= 0xFFFF


_DIGITS = b"0123456789"
# The alphabets keep out signs, whitespace and IPv6 zone ids ("%eth0") that ipaddress accepts.
_IPV4 = _field(_DIGITS + b".", 7, 15, _parses_as(ipaddress.IPv4Address))
_IPV6 = _field(_DIGITS + b"abcdefABCDEF:.", 2, 45, _parses_as(ipaddress.IPv6Address))
_PORT = _field(_DIGITS, 1, 5, _is_port)
_PROXY = _literal(b"PROXY")


class _Template(NamedTuple):
    words: tuple[_Word, ...]
    open_ended: bool  # anything may follow the listed words (UNKNOWN)


_V1_TEMPLATES = {
    "TCP4": _Template((_PROXY, _literal(b"TCP4"), _IPV4, _IPV4, _PORT, _PORT), False),
    "TCP6": _Template((_PROXY, _literal(b"TCP6"), _IPV6, _IPV6, _PORT, _PORT), False),
    "UNKNOWN": _Template((_PROXY, _literal(b"UNKNOWN")), True),
}


def _shortfall(words: list[bytes], template: _Template, *, partial: bool) -> int | None:
    """Fewest bytes (before the CRLF) that complete `words` under `template`.

    None when they cannot. With `partial` the last word may still grow; without
    it the words must be a whole line and the answer is 0 or None.
    """
    specs = template.words
    if len(words) > len(specs) and not template.open_ended:
        return None
    if not partial and len(words) < len(specs):
        return None
    *done, last = words
    if not all(spec.is_valid(word) for word, spec in zip(done, specs, strict=False)):
        return None
    if len(words) > len(specs):  # inside the free text after UNKNOWN
        return 0
    spec = specs[len(words) - 1]
    if not partial:
        return 0 if spec.is_valid(last) else None
    if not spec.could_start(last):
        return None
    missing = specs[len(words) :]
    return max(0, spec.min_len - len(last)) + sum(1 + later.min_len for later in missing)


def _v1_wanted(line: bytes) -> int:
    """Check an unterminated v1 line; return the fewest bytes that could finish it."""
    crlf_left = 1 if line.endswith(b"\r") else 2
    words = line.removesuffix(b"\r").split(b" ")
    needs = [
        need
        for template in _V1_TEMPLATES.values()
        if (need := _shortfall(words, template, partial=True)) is not None
    ]
    if not needs:
        raise ProxyHeaderError("v1: malformed header line")
    wanted = min(needs) + crlf_left
    if len(line) + wanted > _V1_LONGEST:
        raise ProxyHeaderError("v1: header line longer than 107 bytes")
    return wanted


def _v1_header(line: bytes) -> ProxyHeader:
    words = line.split(b" ")
    for family, template in _V1_TEMPLATES.items():
        if _shortfall(words, template, partial=False) is None:
            continue
        if family == "UNKNOWN":
            return ProxyHeader(1, "UNKNOWN", None, None, None, {})
        _, _, src, dst, sport, dport = words
        return ProxyHeader(
            1,
            "PROXY",
            family,
            (str(ipaddress.ip_address(src.decode("ascii"))), int(sport)),
            (str(ipaddress.ip_address(dst.decode("ascii"))), int(dport)),
            {},
        )
    raise ProxyHeaderError("v1: malformed header line")


class _Progress(NamedTuple):
    header: ProxyHeader | None
    size: int  # header length once complete
    wanted: int  # bytes still needed while incomplete


def _parse_v1(buf: bytes) -> _Progress:
    end = buf.find(b"\r\n", 0, _V1_LONGEST)
    if end >= 0:
        return _Progress(_v1_header(buf[:end]), end + 2, 0)
    # Past 107 bytes a line is too long, but a malformed start is the better reason.
    return _Progress(None, 0, _v1_wanted(buf[:_V1_LONGEST]))


# --- version 2: binary -------------------------------------------------------------------


def _unix_path(raw: bytes) -> str:
    # Abstract-namespace names start with NUL; ordinary paths end at their first NUL.
    name = raw.rstrip(b"\0") if raw.startswith(b"\0") else raw.split(b"\0", 1)[0]
    return name.decode("utf-8", "surrogateescape")


def _ip_text(address_type: type) -> Callable[[bytes], str]:
    return lambda raw: str(address_type(raw))


# family/protocol byte -> (family name, address block layout, address decoder)
_V2_FAMILIES: dict[int, tuple[str, struct.Struct, Callable[[bytes], str]]] = {
    0x11: ("TCP4", struct.Struct("!4s4sHH"), _ip_text(ipaddress.IPv4Address)),
    0x21: ("TCP6", struct.Struct("!16s16sHH"), _ip_text(ipaddress.IPv6Address)),
    0x31: ("UNIX", struct.Struct("!108s108s"), _unix_path),
}


def _check_v2_fixed(head: bytes, max_length: int) -> int | None:
    """Check what has arrived of the 16-byte fixed part; return the declared length if known."""
    if not V2_SIGNATURE.startswith(head[: len(V2_SIGNATURE)]):
        raise ProxyHeaderError("bad PROXY signature")
    if len(head) <= 12:
        return None
    version, command = head[12] >> 4, head[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"v2: unsupported version {version}")
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"v2: unsupported command {command}")
    # LOCAL ignores the family byte, as the specification says.
    family = head[13] if len(head) > 13 and command == _V2_PROXY else None
    if family in _V2_DATAGRAM:
        raise ProxyHeaderError("v2: datagram family on a stream service")
    if family is not None and family != _V2_UNSPEC and family not in _V2_FAMILIES:
        raise ProxyHeaderError(f"v2: unsupported family/protocol 0x{family:02x}")
    if len(head) < _V2_FIXED:
        return None
    length = int.from_bytes(head[14:16], "big")
    if length > max_length:
        raise ProxyHeaderError(f"v2: header length {length} over the limit of {max_length}")
    if family in _V2_FAMILIES and length < _V2_FAMILIES[family][1].size:
        raise ProxyHeaderError("v2: header length too small for its address family")
    return length


def _v2_tlvs(header: bytes, start: int) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    pos = start
    while pos < len(header):
        if pos + 3 > len(header):
            raise ProxyHeaderError("v2: truncated TLV")
        kind = header[pos]
        end = pos + 3 + int.from_bytes(header[pos + 1 : pos + 3], "big")
        if end > len(header):
            raise ProxyHeaderError("v2: TLV runs past the end of the header")
        value = header[pos + 3 : end]
        if kind == _TLV_CRC32C:
            if len(value) != 4:
                raise ProxyHeaderError("v2: CRC32C TLV is not 4 bytes")
            zeroed = header[: pos + 3] + bytes(4) + header[end:]
            if crc32c(zeroed) != int.from_bytes(value, "big"):
                raise ProxyHeaderError("v2: CRC32C mismatch")
        if kind != _TLV_NOOP:
            tlvs.setdefault(kind, value)
        pos = end
    return tlvs


def _v2_header(header: bytes) -> ProxyHeader:
    if header[12] & 0x0F == _V2_LOCAL:
        return ProxyHeader(2, "LOCAL", None, None, None, {})
    if header[13] == _V2_UNSPEC:
        return ProxyHeader(2, "PROXY", None, None, None, {})
    family, layout, decode = _V2_FAMILIES[header[13]]
    src, dst, *ports = layout.unpack_from(header, _V2_FIXED)
    sport, dport = ports or (0, 0)
    tlvs = _v2_tlvs(header, _V2_FIXED + layout.size)
    return ProxyHeader(2, "PROXY", family, (decode(src), sport), (decode(dst), dport), tlvs)


def _parse_v2(buf: bytes, max_length: int) -> _Progress:
    length = _check_v2_fixed(buf[:_V2_FIXED], max_length)
    if length is None:
        return _Progress(None, 0, _V2_FIXED - len(buf))
    size = _V2_FIXED + length
    if len(buf) < size:
        return _Progress(None, 0, size - len(buf))
    return _Progress(_v2_header(buf[:size]), size, 0)


def _detect_version(first: int) -> int:
    if first == ord("P"):
        return 1
    if first == V2_SIGNATURE[0]:
        return 2
    raise ProxyHeaderError("not a PROXY protocol header")


# --- the parser --------------------------------------------------------------------------


class ProxyHeaderParser:
    """Incremental parser of the one PROXY header (v1 or v2) that opens a connection.

    Recommended use, which never reads a byte past the header::

        parser = ProxyHeaderParser()
        header = None
        while header is None:
            header = parser.feed(sock.recv(parser.bytes_wanted()))
        first_service_bytes = parser.remainder   # b"" with this loop

    `recv` may return fewer bytes than asked; an empty read is the peer's EOF,
    and feeding it raises `ProxyHeaderError`. The first read asks for 15 bytes,
    the length of the shortest header of either version. A v2 header then takes
    two more reads (the 16th fixed byte, then exactly the declared length). A v1
    line has no length prefix, so `bytes_wanted` is the fewest bytes that could
    still complete the line read so far: six to sixteen reads for a TCP4/TCP6
    line, two bytes at a time through the free text of an UNKNOWN line (rare:
    senders write a bare `PROXY UNKNOWN`). A caller that would rather peek can feed
    a throwaway parser the bytes of `recv(n, MSG_PEEK)` and, once it returns a
    header, consume `len(peeked) - len(parser.remainder)` bytes. Feeding more
    than `bytes_wanted` is always safe: the surplus comes back in `remainder`.

    Input that cannot begin a PROXY header (an HTTP request, a TLS ClientHello,
    a plain XMPP stream) fails on its first byte that rules out both versions.
    """

    MAX_V1 = _V1_LONGEST
    MAX_V2 = _V2_FIXED + 0xFFFF  # what the v2 length field could declare

    def __init__(self, *, max_v2_length: int = 4096) -> None:
        """`max_v2_length` bounds the v2 length field (addresses and TLVs, after the
        16 fixed bytes); a header declaring more is refused before it is read."""
        if not 0 <= max_v2_length <= 0xFFFF:
            raise ValueError("max_v2_length must be between 0 and 65535")
        self.max_v2_length = max_v2_length
        self._buf = bytearray()
        self._version: int | None = None
        self._wanted = _V1_SHORTEST
        self._header: ProxyHeader | None = None
        self._error: ProxyHeaderError | None = None
        self._remainder = b""

    @property
    def remainder(self) -> bytes:
        """Bytes fed after the end of the header: the mapped service's first input."""
        return self._remainder

    def bytes_wanted(self) -> int:
        """How many bytes may be read next without reading past the header (0 when done)."""
        return self._wanted

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add received bytes; return the header once complete, None while more are needed.

        `b""` means the peer closed the connection. Raises `ProxyHeaderError` on
        a malformed, oversized, unsupported or truncated header, and again on
        every later call.
        """
        if self._error is not None:
            raise self._error
        if self._header is not None:
            raise RuntimeError("the PROXY header is already complete")
        try:
            return self._feed(data)
        except ProxyHeaderError as exc:
            self._error = exc
            self._wanted = 0
            raise

    def _feed(self, data: bytes) -> ProxyHeader | None:
        if not data:
            raise ProxyHeaderError("connection closed inside the PROXY header")
        self._buf += data
        if self._version is None:
            self._version = _detect_version(self._buf[0])
        buf = bytes(self._buf)
        progress = _parse_v1(buf) if self._version == 1 else _parse_v2(buf, self.max_v2_length)
        if progress.header is None:
            self._wanted = progress.wanted
            return None
        self._remainder = buf[progress.size :]
        self._buf.clear()
        self._header = progress.header
        self._wanted = 0
        return progress.header
