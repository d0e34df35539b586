"""The framing of RFC 7395 section 3.3: one XML element per WebSocket message,
<open/> and <close/> in place of the stream tags.

Sans-I/O. `parse_message(bytes)` gives the one element a text message carries
(the restricted XML of RFC 6120 section 11, the stanza size and depth limits, as
on a TCP stream), or raises the StreamError to answer. `open_element()` and
`CLOSE` are the server's framing elements; `declare_stream_prefix()` makes a
<stream:features/> or <stream:error/> a document of its own (section 3.3.3: every
message is parsable alone, with the namespace declarations it needs, and no others).
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from xmpp import namespaces as ns
from xmpp.errors import StreamError
from xmpp.stanza import escape_attr
from xmpp.stream import StanzaEvent, StreamParser

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"{{{FRAMING}}}open"
CLOSE_TAG = f"{{{FRAMING}}}close"
#: Our <close/>, ending the XMPP stream (section 3.6).
CLOSE = f"<close xmlns='{FRAMING}'/>".encode()

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

# Each message is parsed as the only child of a stream, so it gets the same checks as a
# TCP stanza. Unqualified elements read as jabber:client, as on a c2s stream.
_HEADER = f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAMS}'>".encode()
_END = b"</stream:stream>"
_XML_WHITESPACE = b" \t\r\n"
_STREAM_PREFIX = b"<stream:"
_STREAM_DECLARATION = f" xmlns:stream='{ns.STREAMS}'".encode()


def parse_message(data: bytes, max_size: int) -> Element | None:
    """The element of one text message; None for whitespace alone (a keepalive).

    A message holding more or less than one complete element breaks the framing:
    `bad-format` for several elements, `not-well-formed` for an unfinished one.
    """
    if not data.strip(_XML_WHITESPACE):
        return None
    parser = StreamParser(default_ns=ns.CLIENT, max_stanza_size=max_size)
    events = parser.feed(_HEADER + data)
    # Closing the stream right after fails on an element left open or half written.
    events += parser.feed(_END)
    elements = [event.element for event in events if isinstance(event, StanzaEvent)]
    if len(elements) != 1:
        raise StreamError("bad-format", "one XML element per WebSocket message (RFC 7395 3.3.3)")
    return elements[0]


def open_attrs(element: Element) -> dict[str, str]:
    """The attributes of a client's <open/>, named as a stream header's are."""
    attrs = dict(element.attrib)
    if XML_LANG in attrs:
        attrs["xml:lang"] = attrs.pop(XML_LANG)
    return attrs


def open_element(*, from_: str | None, stream_id: str, lang: str = "en",
                 version: str = "1.0") -> bytes:
    """The server's <open/> (section 3.3.2)."""
    parts = [f"<open xmlns='{FRAMING}'"]
    for key, value in (("id", stream_id), ("from", from_), ("version", version),
                       ("xml:lang", lang)):
        if value:
            parts.append(f" {key}='{escape_attr(value)}'")
    parts.append("/>")
    return "".join(parts).encode()


def declare_stream_prefix(data: bytes) -> bytes:
    """`data` with the `stream` prefix declared on its root, when the root uses it.

    The c2s machine writes <stream:features/> and <stream:error/> as for a TCP
    stream, whose header declares the prefix; over WebSocket there is no header.
    """
    if not data.startswith(_STREAM_PREFIX):
        return data
    end = len(_STREAM_PREFIX)
    while end < len(data) and data[end] not in b" />":
        end += 1
    return data[:end] + _STREAM_DECLARATION + data[end:]
