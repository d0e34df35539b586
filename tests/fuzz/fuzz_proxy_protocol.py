"""Fuzz target: the PROXY protocol v1/v2 header parser (xmpp/proxy_protocol.py).

Input: max_v2_length (2 bytes, big-endian), then the connection's first bytes.
Documented refusal: ProxyHeaderError (the connection is closed). Checked too:
reading `bytes_wanted()` at a time never reads past the header, and gives the
same header as the bytes fed in one piece, whose surplus comes back as
`remainder`.
"""

from __future__ import annotations

import atheris

from tests.fuzz.harness import INSTRUMENTED, run

with atheris.instrument_imports(include=INSTRUMENTED):
    from xmpp.proxy_protocol import ProxyHeaderError, ProxyHeaderParser

REFUSALS = (ProxyHeaderError,)


def _read_as_a_listener(data: bytes, max_v2_length: int) -> tuple[object, int]:
    """(header or error, bytes consumed) reading at most bytes_wanted() per recv."""
    parser = ProxyHeaderParser(max_v2_length=max_v2_length)
    used = 0
    for _ in range(len(data) + 1):  # each feed takes at least one byte, or ends
        wanted = parser.bytes_wanted()
        assert wanted > 0
        chunk = data[used:used + wanted]
        used += len(chunk)
        try:
            header = parser.feed(chunk)
        except ProxyHeaderError as error:
            return error, used
        if header is not None:
            assert parser.remainder == b"" and parser.bytes_wanted() == 0
            return header, used
    raise AssertionError("the parser never finished")


def one_input(data: bytes) -> None:
    max_v2_length = int.from_bytes(data[:2], "big")
    stream = data[2:]
    stepped, used = _read_as_a_listener(stream, max_v2_length)

    parser = ProxyHeaderParser(max_v2_length=max_v2_length)
    try:
        header = parser.feed(stream)
    except ProxyHeaderError:
        # Refused whole: stepping must have been refused too, or still be waiting
        # for bytes that never came (then it was refused at EOF).
        assert isinstance(stepped, ProxyHeaderError), (stepped, stream)
        return
    if header is None:
        assert isinstance(stepped, ProxyHeaderError) and used == len(stream)
        return
    assert header == stepped, (header, stepped)
    assert parser.remainder == stream[used:]


if __name__ == "__main__":
    run(one_input, REFUSALS, name="proxy_protocol")
