"""StreamParser: events, chunking, limits and the XML restrictions of RFC 6120."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pyexpat import XMLParserType
from xml.etree.ElementTree import Element

import pytest

from xmpp import namespaces as ns
from xmpp.errors import StreamError
from xmpp.stanza import serialize
from xmpp.stream import XML_NS, StanzaEvent, StreamEnd, StreamOpen, StreamParser, parse_stanza

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' "
          b"version='1.0' xml:lang='en'>")

SAMPLE = HEADER + """
<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>
<message to='juliet@example.com' type='chat' id='m1'><body>H\u00e9llo &amp; \U0001f600 &lt;3</body>\
<x xmlns='jabber:x:data' type='form'><field var='f\u00fc'><value>a</value></field></x></message> \
<presence xml:lang='fr'><status>caf\u00e9</status></presence>
</stream:stream>""".encode()


def shape(element):
    """A comparable structure of an element (tag, attributes, text, children)."""
    return (element.tag, dict(element.attrib), element.text or "", element.tail or "",
            [shape(child) for child in element])


def normalise(events):
    out = []
    for event in events:
        if isinstance(event, StanzaEvent):
            out.append(("stanza", shape(event.element)))
        elif isinstance(event, StreamOpen):
            out.append(("open", event.attrs))
        else:
            out.append(("end",))
    return out


def feed_chunks(chunks, **kwargs):
    parser = StreamParser(**kwargs)
    events = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def error_of(*chunks, **kwargs) -> str:
    with pytest.raises(StreamError) as info:
        feed_chunks(chunks, **kwargs)
    return info.value.condition


def test_sample_stream_events():
    events = feed_chunks([SAMPLE])
    kinds = [type(event) for event in events]
    assert kinds == [StreamOpen, StanzaEvent, StanzaEvent, StanzaEvent, StreamEnd]
    iq, message, presence = (event.element for event in events[1:4])
    assert iq.tag == "{jabber:client}iq"
    assert iq[0].tag == "{urn:xmpp:ping}ping"
    assert message.get("to") == "juliet@example.com"
    body = message.find("{jabber:client}body")
    assert body.text == "H\u00e9llo & \U0001f600 <3"
    field = message.find("{jabber:x:data}x/{jabber:x:data}field")
    assert field.get("var") == "f\u00fc"
    assert presence.get(f"{{{XML_NS}}}lang") == "fr"
    assert presence[0].text == "caf\u00e9"


def test_header_attributes():
    (event,) = feed_chunks([HEADER])
    assert event.attrs == {
        "to": "example.com", "version": "1.0", "xml:lang": "en",
        "xmlns": ns.CLIENT, "xmlns:stream": ns.STREAMS,
    }


def test_header_with_extra_namespace_declaration():
    header = (b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
              b"xmlns:stream='http://etherx.jabber.org/streams' from='a.example' id='x'>")
    (event,) = feed_chunks([header], default_ns=ns.SERVER)
    assert event.attrs["xmlns:db"] == ns.DIALBACK
    assert event.attrs["from"] == "a.example"
    assert event.attrs["id"] == "x"


def test_every_split_point_gives_the_same_events():
    expected = normalise(feed_chunks([SAMPLE]))
    for cut in range(1, len(SAMPLE)):
        assert normalise(feed_chunks([SAMPLE[:cut], SAMPLE[cut:]])) == expected, cut


def test_byte_by_byte_feeding():
    expected = normalise(feed_chunks([SAMPLE]))
    chunks = [SAMPLE[i:i + 1] for i in range(len(SAMPLE))]
    assert normalise(feed_chunks(chunks)) == expected


def test_events_come_as_soon_as_a_stanza_is_complete():
    parser = StreamParser()
    parser.feed(HEADER)
    assert parser.feed(b"<message><body>hi</body></messa") == []
    (event,) = parser.feed(b"ge>")
    assert event.element.find("{jabber:client}body").text == "hi"


def test_several_stanzas_in_one_chunk():
    parser = StreamParser()
    parser.feed(HEADER)
    events = parser.feed(b"<presence/><message id='1'/><iq id='2' type='get'/>")
    assert [local(e.element.tag) for e in events] == ["presence", "message", "iq"]


def local(tag):
    return tag.rpartition("}")[2]


def test_whitespace_keepalives_are_dropped():
    parser = StreamParser()
    parser.feed(HEADER)
    assert parser.feed(b" ") == []
    assert parser.feed(b"\n\t \r\n") == []
    (event,) = parser.feed(b"  <presence/>  ")
    assert event.element.tail is None
    assert parser.feed(b"   ") == []


def test_text_between_stanzas_is_bad_format():
    assert error_of(HEADER, b"<presence/>hello") == "bad-format"
    assert error_of(HEADER, b"hello<presence/>") == "bad-format"


def test_stream_end():
    parser = StreamParser()
    parser.feed(HEADER)
    assert isinstance(parser.feed(b"</stream:stream>")[0], StreamEnd)


def test_text_and_tails_inside_stanza_are_kept():
    parser = StreamParser()
    parser.feed(HEADER)
    (event,) = parser.feed(b"<message>\n  <body>a</body>\n  <thread>t</thread>\n</message>")
    message = event.element
    assert message.text == "\n  "
    assert message[0].tail == "\n  "
    assert message[1].tail == "\n"


def test_namespaced_attributes_are_clark():
    parser = StreamParser()
    parser.feed(HEADER)
    (event,) = parser.feed(b"<message xmlns:p='urn:p'><x p:a='1' xml:lang='de'/></message>")
    child = event.element[0]
    assert child.attrib == {"{urn:p}a": "1", f"{{{XML_NS}}}lang": "de"}


# --- the stream header ----------------------------------------------------

def test_wrong_stream_namespace():
    header = b"<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>"
    assert error_of(header) == "invalid-namespace"


def test_root_not_in_any_namespace():
    assert error_of(b"<stream xmlns='jabber:client'>") == "invalid-namespace"


def test_wrong_root_name_in_stream_namespace():
    header = b"<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    assert error_of(header) == "bad-format"


def test_wrong_content_namespace():
    assert error_of(HEADER, default_ns=ns.SERVER) == "invalid-namespace"
    header = HEADER.replace(b"xmlns='jabber:client'", b"xmlns='jabber:component:accept'")
    assert error_of(header) == "invalid-namespace"


def test_missing_content_namespace():
    header = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='x'>"
    assert error_of(header) == "invalid-namespace"


def test_component_stream():
    header = HEADER.replace(b"jabber:client", ns.COMPONENT.encode())
    events = feed_chunks([header, b"<handshake>abc</handshake>"], default_ns=ns.COMPONENT)
    assert events[1].element.tag == f"{{{ns.COMPONENT}}}handshake"


def test_other_encoding_declared():
    header = HEADER.replace(b"version='1.0'?>", b"version='1.0' encoding='ISO-8859-1'?>", 1)
    assert error_of(header) == "unsupported-encoding"


def test_utf8_encoding_declared():
    header = HEADER.replace(b"version='1.0'?>", b"version='1.0' encoding='UTF-8'?>", 1)
    assert isinstance(feed_chunks([header])[0], StreamOpen)


def test_invalid_utf8_bytes():
    assert error_of(HEADER, b"<message><body>\xff\xfe</body></message>") == "not-well-formed"


# --- restricted XML (RFC 6120 11.1) -----------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>
<message><body>&lol9;</body></message>"""


def test_billion_laughs_is_refused_before_expansion():
    assert error_of(BILLION_LAUGHS) == "restricted-xml"
    # Refused at the DOCTYPE itself, before any entity is declared or used.
    head = BILLION_LAUGHS[:BILLION_LAUGHS.index(b"<!ENTITY")]
    assert error_of(head) == "restricted-xml"


def test_billion_laughs_byte_by_byte():
    chunks = [BILLION_LAUGHS[i:i + 1] for i in range(len(BILLION_LAUGHS))]
    assert error_of(*chunks) == "restricted-xml"


def test_external_entity_is_refused():
    xxe = (b"<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
           b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
           b"<message><body>&xxe;</body></message>")
    assert error_of(xxe) == "restricted-xml"


def test_doctype_is_refused():
    doctype = b"<!DOCTYPE stream:stream>" + HEADER.split(b"?>", 1)[1]
    assert error_of(doctype) == "restricted-xml"


def test_undeclared_entity_reference_is_refused():
    assert error_of(HEADER, b"<message><body>&nbsp;</body></message>") == "restricted-xml"


def test_predefined_and_character_references_are_fine():
    events = feed_chunks([HEADER, b"<message><body>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</body>"
                                  b"</message>"])
    assert events[1].element[0].text == "<>&'\"AB"


def test_processing_instruction_is_refused():
    assert error_of(HEADER, b"<message><?php evil()?></message>") == "restricted-xml"
    assert error_of(HEADER, b"<?foo bar?>") == "restricted-xml"


def test_processing_instruction_before_stream_is_refused():
    assert error_of(b"<?foo?>" + HEADER.split(b"?>", 1)[1]) == "restricted-xml"


def test_second_xml_declaration_is_refused():
    assert error_of(HEADER, b"<?xml version='1.0'?>") == "not-well-formed"


def test_comment_is_refused():
    assert error_of(HEADER, b"<message><!-- hi --></message>") == "restricted-xml"
    assert error_of(HEADER, b"<!-- between stanzas -->") == "restricted-xml"


def test_cdata_section_is_text():
    events = feed_chunks([HEADER, b"<message><body><![CDATA[<b>&]]></body></message>"])
    assert events[1].element[0].text == "<b>&"


# --- malformed XML ----------------------------------------------------------

def test_mismatched_tags():
    assert error_of(HEADER, b"<message><body></message>") == "not-well-formed"


def test_garbage_before_stream():
    assert error_of(b"GET / HTTP/1.1\r\n") == "not-well-formed"


def test_undeclared_prefix():
    assert error_of(HEADER, b"<foo:message/>") == "bad-namespace-prefix"


def test_junk_after_stream_end():
    assert error_of(HEADER, b"</stream:stream><message/>") == "not-well-formed"


def test_feeding_after_an_error_keeps_raising():
    parser = StreamParser()
    parser.feed(HEADER)
    with pytest.raises(StreamError) as first:
        parser.feed(b"<message><!-- x --></message>")
    for _ in range(2):
        with pytest.raises(StreamError) as again:
            parser.feed(b"<presence/>")
        assert again.value is first.value


# --- limits -----------------------------------------------------------------

def stanza_of_size(size: int) -> bytes:
    head, tail = b"<message><body>", b"</body></message>"
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_stanza_within_limit():
    events = feed_chunks([HEADER, stanza_of_size(1000)], max_stanza_size=1000)
    assert isinstance(events[1], StanzaEvent)


def test_completed_stanza_over_limit():
    assert error_of(HEADER, stanza_of_size(1200), max_stanza_size=1000) == "policy-violation"


def test_open_stanza_over_limit_is_caught_while_arriving():
    parser = StreamParser(max_stanza_size=10_000)
    parser.feed(HEADER + b"<message><body>")
    fed = 0
    with pytest.raises(StreamError) as info:
        for _ in range(100):
            parser.feed(b"y" * 1000)
            fed += 1000
    assert info.value.condition == "policy-violation"
    assert fed <= 10_000


def test_huge_start_tag_is_caught_before_it_completes():
    parser = StreamParser(max_stanza_size=10_000)
    parser.feed(HEADER + b"<presence/><message to='")
    fed = 0
    with pytest.raises(StreamError) as info:
        for _ in range(100):
            parser.feed(b"z" * 1000)
            fed += 1000
    assert info.value.condition == "policy-violation"
    assert fed <= 11_000


def test_huge_stream_header_is_caught():
    parser = StreamParser(max_stanza_size=10_000)
    parser.feed(b"<stream:stream xmlns='jabber:client' to='")
    with pytest.raises(StreamError) as info:
        for _ in range(100):
            parser.feed(b"z" * 1000)
    assert info.value.condition == "policy-violation"


def test_oversized_stanza_in_one_big_chunk():
    data = HEADER + stanza_of_size(1_000_000)
    assert error_of(data, max_stanza_size=10_000) == "policy-violation"


def test_many_small_stanzas_in_one_big_chunk_are_fine():
    data = HEADER + b"<presence/>" * 20_000
    events = feed_chunks([data], max_stanza_size=1000)
    assert len(events) == 20_001


def test_limit_can_be_raised_after_auth():
    parser = StreamParser(max_stanza_size=1000)
    parser.feed(HEADER)
    parser.max_stanza_size = 100_000
    (event,) = parser.feed(stanza_of_size(50_000))
    assert len(event.element[0].text) > 40_000


def nested(depth: int) -> bytes:
    return b"<message>" + b"<a>" * (depth - 1) + b"</a>" * (depth - 1) + b"</message>"


def test_nesting_at_the_limit():
    events = feed_chunks([HEADER, nested(32)])
    assert isinstance(events[1], StanzaEvent)


def test_nesting_too_deep():
    assert error_of(HEADER, nested(33)) == "policy-violation"
    assert error_of(HEADER, nested(5), max_depth=4) == "policy-violation"


# --- reset ------------------------------------------------------------------

def test_reset_after_starttls():
    parser = StreamParser()
    parser.feed(HEADER)
    (event,) = parser.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert event.element.tag == f"{{{ns.TLS}}}starttls"
    parser.reset()
    events = parser.feed(HEADER + b"<iq type='get' id='1'/>")
    assert [type(e) for e in events] == [StreamOpen, StanzaEvent]


def test_reset_drops_a_half_stanza():
    parser = StreamParser()
    parser.feed(HEADER + b"<message><body>half")
    parser.reset()
    assert [type(e) for e in parser.feed(HEADER + b"<presence/>")] == [StreamOpen, StanzaEvent]


# --- found by fuzzing (tests/fuzz/fuzz_stream.py) ----------------------------


@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le"])
def test_a_utf16_stream_is_refused(encoding):
    # expat guessed UTF-16 from the NULs of the first bytes, despite the forced UTF-8.
    assert error_of(HEADER.decode().encode(encoding)) == "unsupported-encoding"


@pytest.mark.parametrize(("chunks", "condition"), [
    ([b"'\x00"], "unsupported-encoding"),
    ([b"\x00<x/>"], "unsupported-encoding"),
    ([b"'", b"\x00"], "not-well-formed"),  # whole, the same bytes were taken as UTF-16
])
def test_a_nul_byte_near_the_start_is_refused_however_it_is_cut(chunks, condition):
    assert error_of(*chunks) == condition


def test_a_nul_byte_later_is_not_well_formed():
    assert error_of(HEADER, b"<message><body>a\x00b</body></message>") == "not-well-formed"


def test_an_element_in_no_namespace_keeps_it_when_written_again():
    # Found by tests/fuzz/fuzz_bosh_body.py, through the same tag mapping.
    stanza = feed_chunks([HEADER, b"<iq id='1'><q xmlns=''><r/></q><s xmlns='urn:a'><t xmlns=''/>"
                                  b"</s></iq>"])[1].element
    assert [e.tag for e in stanza.iter()] == ["{jabber:client}iq", "{}q", "{}r", "{urn:a}s", "{}t"]
    assert serialize(stanza) == ("<iq id='1'><q xmlns=''><r/></q>"
                                 "<s xmlns='urn:a'><t xmlns=''/></s></iq>")
    assert serialize(Element("error")) == "<error/>"  # a bare tag built in code joins the scope


# -- releasing the parser of a quiet stream ---------------------------------------------

def feed_releasing(chunks, **kwargs):
    """feed_chunks, releasing the expat parser wherever the stream allows it."""
    parser = StreamParser(**kwargs)
    events, released = [], 0
    for chunk in chunks:
        events.extend(parser.feed(chunk))
        released += parser.release()
    return events, released


def test_a_released_parser_gives_the_same_events_at_every_split_point():
    expected = normalise(feed_chunks([SAMPLE]))
    for cut in range(1, len(SAMPLE)):
        events, _ = feed_releasing([SAMPLE[:cut], SAMPLE[cut:]])
        assert normalise(events) == expected, cut
    events, released = feed_releasing([SAMPLE[i:i + 1] for i in range(len(SAMPLE))])
    assert normalise(events) == expected
    assert released > 3  # at least between the stanzas


def test_release_only_between_stanzas():
    parser = StreamParser()
    assert not parser.release()  # no header yet: nothing to resume from
    parser.feed(HEADER)
    assert parser.release()
    assert parser.feed(b"<message><body>hi</bo") == []
    assert not parser.release()  # inside a stanza
    parser.feed(b"dy></message><presence type='unavaila")
    assert not parser.release()  # inside a start tag, though no element is open
    (event,) = parser.feed(b"ble'/>")
    assert event.element.get("type") == "unavailable"
    assert parser.release()


def cyclic_garbage_of(action: Callable[[], None]) -> list[object]:
    """The parsers (ours and expat's) that `action` left for the cyclic collector."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        action()
        gc.collect()
        return [o for o in gc.garbage if isinstance(o, (StreamParser, XMLParserType))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def test_dropped_parsers_are_freed_without_the_cyclic_collector():
    """An idle server seldom runs a full collection: a released parser, the one
    a stream restart replaces and a closed stream's must go at once."""
    def release() -> None:
        parser = StreamParser()
        parser.feed(HEADER + b"<presence/>")
        assert parser.release()
        parser.feed(b"<presence/>")  # resumed: a second expat parser
        assert parser.release()

    def restart() -> None:
        parser = StreamParser()
        parser.feed(HEADER)
        parser.reset()
        parser.feed(HEADER)
        parser.close()

    def close() -> None:
        parser = StreamParser()
        parser.feed(HEADER + b"<message><body>cut")
        parser.close()

    for action in (release, restart, close):
        assert cyclic_garbage_of(action) == [], action.__name__


def test_a_resumed_stream_keeps_the_peers_prefixes():
    """The header's declarations (s2s `db:`, the peer's streams prefix) hold after release."""
    header = (b"<s:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
              b"xmlns:stream='urn:example:not-streams' xmlns:s='http://etherx.jabber.org/streams'>")
    parser = StreamParser(default_ns=ns.SERVER)
    parser.feed(header)
    assert parser.release()
    (result, other, end) = parser.feed(b"<db:result to='a' from='b'>key</db:result>"
                                       b"<stream:x/></s:stream>")
    assert result.element.tag == "{jabber:server:dialback}result"
    assert result.element.text == "key"
    assert other.element.tag == "{urn:example:not-streams}x"
    assert isinstance(end, StreamEnd)


def test_a_stream_with_two_streams_prefixes_keeps_its_parser():
    """Which of them the root used decides the closing tag; the header does not say."""
    parser = StreamParser()
    parser.feed(b"<a:stream xmlns='jabber:client' xmlns:a='http://etherx.jabber.org/streams' "
                b"xmlns:b='http://etherx.jabber.org/streams'>")
    assert not parser.release()
    assert isinstance(parser.feed(b"</a:stream>")[0], StreamEnd)


def test_the_size_limit_holds_after_release():
    parser = StreamParser(max_stanza_size=1000)
    parser.feed(HEADER)
    assert parser.release()
    with pytest.raises(StreamError) as info:
        parser.feed(stanza_of_size(1200))
    assert info.value.condition == "policy-violation"
    after = StreamParser(max_stanza_size=1000)
    after.feed(HEADER)
    after.release()
    assert len(after.feed(stanza_of_size(1000))) == 1


def test_parse_stanza_one_after_another_and_after_bad_text():
    """parse_stanza keeps one parser across calls; a bad or partial text never
    leaves it half-fed for the next."""
    message = "<message to='a@b/c' type='chat'><body>hi</body></message>"
    assert parse_stanza(message).find(f"{{{ns.CLIENT}}}body").text == "hi"
    with pytest.raises(ValueError):
        parse_stanza("<message><body>cut off")
    with pytest.raises(StreamError):
        parse_stanza("<a><b></a>")
    with pytest.raises(ValueError):
        parse_stanza("</stream:stream>")
    first = parse_stanza("<presence type='probe'/><message/>")
    assert first.tag == f"{{{ns.CLIENT}}}presence"
    assert parse_stanza(message).get("to") == "a@b/c"
    assert parse_stanza("<handshake/>", ns.COMPONENT).tag == f"{{{ns.COMPONENT}}}handshake"
