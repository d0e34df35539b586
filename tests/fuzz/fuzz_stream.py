"""Fuzz target: the XML stream parser (xmpp/stream.py), as a client's bytes reach it.

Input: one byte for the read size (1 + b % 64), one for the limits (stanza size
16 * (1 + b), depth 1 + b % 40), then the stream. Documented refusal:
StreamError (its condition is sent to the peer). Checked too:
the events do not depend on how the bytes are cut into reads, and every stanza
survives xmpp.stanza.serialize and a parse back unchanged.
"""

from __future__ import annotations

import atheris

from tests.fuzz.harness import INSTRUMENTED, run, same_element

with atheris.instrument_imports(include=INSTRUMENTED):
    from xmpp.errors import StreamError
    from xmpp.stanza import serialize
    from xmpp.stream import StanzaEvent, StreamOpen, StreamParser, parse_stanza

REFUSALS = (StreamError,)

# Large enough that the size limit never depends on where reads end.
_NO_SIZE_LIMIT = 1 << 24


# expat may hold a trailing token back (even an invalid one) until more bytes come;
# this closing tag, fed last, settles it.
_CLOSE = b"</stream:stream>"


def _events(data: bytes, cuts: list[int]) -> list | StreamError:
    """Feed `data` cut at `cuts`, then the stream close; the events, or the StreamError."""
    parser = StreamParser(max_stanza_size=_NO_SIZE_LIMIT)
    events = []
    start = 0
    try:
        for end in [*cuts, len(data)]:
            events += parser.feed(data[start:end])
            start = end
        events += parser.feed(_CLOSE)
    except StreamError as error:
        return error
    return events


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    cut_every = 1 + data[0] % 64
    limit = 16 * (1 + data[1])
    stream = data[2:]

    whole = _events(stream, [])
    cut = _events(stream, list(range(cut_every, len(stream), cut_every)))
    assert isinstance(whole, StreamError) == isinstance(cut, StreamError), (whole, cut)
    if not isinstance(whole, StreamError):
        assert len(whole) == len(cut), (whole, cut)
        for a, b in zip(whole, cut, strict=True):
            assert type(a) is type(b)
            if isinstance(a, StreamOpen):
                assert a.attrs == b.attrs
            elif isinstance(a, StanzaEvent):
                assert same_element(a.element, b.element)
                copy = parse_stanza(serialize(a.element, prefixes={}))
                assert same_element(a.element, copy), (serialize(a.element, prefixes={}),)

    # The limits, which may refuse at any read: they raise StreamError, nothing else.
    parser = StreamParser(max_stanza_size=limit, max_depth=1 + data[1] % 40)
    for offset in range(0, len(stream), cut_every):
        parser.feed(stream[offset:offset + cut_every])


if __name__ == "__main__":
    run(one_input, REFUSALS, name="stream", dictionary="xml.dict")
