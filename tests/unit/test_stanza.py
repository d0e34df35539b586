"""Stanza serialisation, the stream header and the small stanza helpers."""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.stanza import (
    STREAM_CLOSE,
    XML_NS,
    SerializedElement,
    SharedElement,
    escape_attr,
    local_name,
    make_iq_result,
    namespace,
    serialize,
    serialized_element,
    stream_header,
    with_delay,
)
from xmpp.stream import StanzaEvent, StreamEnd, StreamOpen, StreamParser, parse_stanza

HEADER = stream_header(default_ns=ns.CLIENT, from_="example.com", to=None, stream_id="s1")
LANG = f"{{{XML_NS}}}lang"


def shape(element):
    return (element.tag, dict(element.attrib), element.text or "", element.tail or "",
            [shape(child) for child in element])


def parse_one(wire: str, default_ns: str = ns.CLIENT) -> Element:
    """Parse one serialised stanza inside a stream of `default_ns`."""
    parser = StreamParser(default_ns=default_ns)
    header = stream_header(default_ns=default_ns, from_=None, to=None, stream_id=None)
    events = parser.feed((header + wire).encode())
    assert isinstance(events[0], StreamOpen)
    (event,) = events[1:]
    assert isinstance(event, StanzaEvent)
    return event.element


def roundtrip(element: Element, default_ns: str = ns.CLIENT) -> Element:
    return parse_one(serialize(element, default_ns), default_ns)


def test_round_trip_of_a_parsed_stream():
    wire = (
        "<message to='juliet@example.com/balcony' type='chat' id='m&amp;1' xml:lang='en'>\n"
        "  <body>caf\u00e9 \U0001f600 &lt;b&gt; &amp; 'q' \"dq\"</body>\n"
        "  <x xmlns='jabber:x:data' type='submit'><field var='a&lt;b'><value>1</value>"
        "</field><field var=\"it's\"/></x>\n"
        "  <active xmlns='http://jabber.org/protocol/chatstates'/>\n"
        "</message>"
    )
    first = parse_one(wire)
    assert shape(roundtrip(first)) == shape(first)


def test_content_namespace_gets_no_prefix_or_declaration():
    message = Element(f"{{{ns.CLIENT}}}message", {"to": "a@b"})
    SubElement(message, f"{{{ns.CLIENT}}}body").text = "hi"
    wire = serialize(message)
    assert wire.startswith("<message ")
    assert "xmlns" not in wire
    assert shape(roundtrip(message)) == shape(message)


def test_nested_foreign_namespaces():
    message = Element(f"{{{ns.CLIENT}}}message", {"type": "chat"})
    SubElement(message, f"{{{ns.CLIENT}}}body").text = "form"
    form = SubElement(message, f"{{{ns.DATA_FORMS}}}x", {"type": "form"})
    field = SubElement(form, f"{{{ns.DATA_FORMS}}}field", {"var": "FORM_TYPE"})
    SubElement(field, f"{{{ns.DATA_FORMS}}}value").text = "urn:example"
    SubElement(form, "{urn:other}thing")
    wire = serialize(message)
    assert "ns0" not in wire and "<x xmlns='jabber:x:data' " in wire
    # Declared once on <x>, inherited by <field> and <value>.
    assert wire.count(ns.DATA_FORMS) == 1
    assert shape(roundtrip(message)) == shape(message)


def test_back_to_content_namespace_inside_foreign_element():
    message = Element(f"{{{ns.CLIENT}}}message")
    forwarded = SubElement(message, "{urn:xmpp:forward:0}forwarded")
    inner = SubElement(forwarded, f"{{{ns.CLIENT}}}message", {"from": "x@y"})
    SubElement(inner, f"{{{ns.CLIENT}}}body").text = "inner"
    assert shape(roundtrip(message)) == shape(message)


def test_other_stream_namespace():
    result = Element(f"{{{ns.SERVER}}}iq", {"type": "result", "id": "1"})
    SubElement(result, f"{{{ns.PING}}}ping")
    assert serialize(result, ns.SERVER).startswith("<iq ")
    assert shape(roundtrip(result, ns.SERVER)) == shape(result)


def test_xml_lang():
    presence = Element(f"{{{ns.CLIENT}}}presence", {LANG: "fr"})
    SubElement(presence, f"{{{ns.CLIENT}}}status", {LANG: "de"}).text = "weg"
    wire = serialize(presence)
    assert "xml:lang='fr'" in wire
    assert shape(roundtrip(presence)) == shape(presence)


def test_other_namespaced_attribute():
    element = Element(f"{{{ns.CLIENT}}}message")
    SubElement(element, "{urn:a}x", {"{urn:b}attr": "v", "plain": "p"})
    assert shape(roundtrip(element)) == shape(element)


def test_escaping_in_text_and_attributes():
    message = Element(f"{{{ns.CLIENT}}}message", {"id": "a'b\"c<d>&e\nf\tg\rh"})
    SubElement(message, f"{{{ns.CLIENT}}}body").text = "1 < 2 && 3 > 2 ]]> \r\n end"
    back = roundtrip(message)
    assert back.get("id") == "a'b\"c<d>&e\nf\tg\rh"
    assert back[0].text == "1 < 2 && 3 > 2 ]]> \r\n end"
    assert escape_attr("it's") == "it&apos;s"


def test_unicode_round_trip():
    message = Element(f"{{{ns.CLIENT}}}message", {"to": "\u00fcber@ex\u00e4mple.com"})
    SubElement(message, f"{{{ns.CLIENT}}}body").text = "\u65e5\u672c \U0001f426"
    assert shape(roundtrip(message)) == shape(message)


def test_unqualified_children_inherit_the_enclosing_namespace():
    message = Element(f"{{{ns.CLIENT}}}message", {"type": "error"})
    error = SubElement(message, "error", {"type": "cancel"})
    SubElement(error, f"{{{ns.STANZA_ERRORS}}}item-not-found")
    back = roundtrip(message)
    assert back[0].tag == f"{{{ns.CLIENT}}}error"
    assert back[0][0].tag == f"{{{ns.STANZA_ERRORS}}}item-not-found"


def test_stream_elements_use_the_stream_prefix():
    features = Element(f"{{{ns.STREAMS}}}features")
    SubElement(features, f"{{{ns.TLS}}}starttls")
    wire = serialize(features)
    assert wire.startswith("<stream:features>") and wire.endswith("</stream:features>")
    assert shape(roundtrip(features)) == shape(features)


def test_standalone_serialisation_declares_every_namespace():
    features = Element(f"{{{ns.STREAMS}}}features")
    wire = serialize(features, prefixes={})
    assert wire == f"<features xmlns='{ns.STREAMS}'/>"


def test_a_shared_element_is_written_as_the_original_in_every_stanza_and_scope():
    message = Element(f"{{{ns.CLIENT}}}message", {"to": "a@example.com/r"})
    event = SubElement(message, "{http://jabber.org/protocol/pubsub#event}event")
    SubElement(event, "{http://jabber.org/protocol/pubsub#event}items", {"node": "n&1"})
    event.tail = "after"
    SubElement(message, f"{{{ns.CLIENT}}}body").text = "<hi>"
    body = [SharedElement(child) for child in message]
    for to in ("b@example.com/r", "c@example.com/r"):
        copy = Element(message.tag, {"to": to})
        copy[:] = body
        message.set("to", to)
        for default_ns, prefixes in ((ns.CLIENT, None), ("", {}), (ns.SERVER, None)):
            kwargs = {} if prefixes is None else {"prefixes": prefixes}
            assert serialize(copy, default_ns, **kwargs) == \
                serialize(message, default_ns, **kwargs)
    assert shape(roundtrip(copy)) == shape(roundtrip(message))


def test_a_stored_stanza_is_forwarded_as_written_without_a_parse():
    archived = Element(f"{{{ns.CLIENT}}}message", {"from": "a@example.com/r", "id": "x>'"})
    SubElement(archived, f"{{{ns.CLIENT}}}body").text = "<hi> & bye"
    SubElement(archived, "{urn:xmpp:sid:0}origin-id", {"id": "o"})
    for stored in (serialize(archived, prefixes={}),
                   serialize(archived, "", prefixes={})):  # declared: as Prosody stores it
        element = serialized_element(stored)
        assert type(element) is SerializedElement and element.tag == archived.tag
        for scope in (ns.CLIENT, ns.SERVER, ns.COMPONENT):
            wrapper = Element("{urn:xmpp:forward:0}forwarded")
            wrapper.append(element)
            plain = Element("{urn:xmpp:forward:0}forwarded")
            plain.append(archived)
            assert shape(roundtrip(wrapper, scope)) == shape(roundtrip(plain, scope))
        assert serialize(element) == stored


def test_a_stored_stanza_in_another_namespace_is_not_taken_as_written():
    assert serialized_element("<item xmlns='urn:example'><x/></item>") is None
    assert serialized_element("<message xmlns='jabber:client' xmlns='x'/>") is None
    assert serialized_element("not xml") is None
    assert serialized_element("<>") is None


def test_empty_and_text_only_elements():
    assert serialize(Element(f"{{{ns.CLIENT}}}presence")) == "<presence/>"
    body = Element(f"{{{ns.CLIENT}}}body")
    body.text = "x"
    assert serialize(body) == "<body>x</body>"


def test_stream_header_is_parsed_back():
    header = stream_header(default_ns=ns.SERVER, from_="a.example", to="b.example",
                           stream_id="abc", extra_ns={"db": ns.DIALBACK})
    assert header.startswith("<?xml version='1.0'?><stream:stream ")
    (event,) = StreamParser(default_ns=ns.SERVER).feed(header.encode())
    assert event.attrs == {
        "xmlns": ns.SERVER, "xmlns:stream": ns.STREAMS, "xmlns:db": ns.DIALBACK,
        "id": "abc", "from": "a.example", "to": "b.example", "version": "1.0",
        "xml:lang": "en",
    }


def test_stream_header_without_version_or_addresses():
    header = stream_header(default_ns=ns.COMPONENT, from_=None, to=None, stream_id="c",
                           version=None)
    (event,) = StreamParser(default_ns=ns.COMPONENT).feed(header.encode())
    assert "version" not in event.attrs and "to" not in event.attrs
    assert event.attrs["id"] == "c"


def test_stream_close():
    parser = StreamParser()
    events = parser.feed((HEADER + STREAM_CLOSE).encode())
    assert isinstance(events[-1], StreamEnd)


def test_make_iq_result():
    iq = Element(f"{{{ns.CLIENT}}}iq",
                 {"type": "get", "id": "q1", "from": "a@b/c", "to": "b"})
    SubElement(iq, f"{{{ns.PING}}}ping")
    result = make_iq_result(iq)
    assert result.tag == iq.tag
    assert result.attrib == {"type": "result", "id": "q1", "to": "a@b/c", "from": "b"}
    assert len(result) == 0
    payload = Element(f"{{{ns.ROSTER}}}query")
    assert make_iq_result(iq, payload)[0] is payload


def test_make_iq_result_without_addresses():
    result = make_iq_result(Element(f"{{{ns.CLIENT}}}iq", {"type": "set", "id": "7"}))
    assert result.attrib == {"type": "result", "id": "7"}


def test_clark_helpers():
    assert local_name("{jabber:client}message") == "message"
    assert namespace("{jabber:client}message") == "jabber:client"
    assert local_name("error") == "error"
    assert namespace("error") == ""


def test_with_delay_stamps_a_copy_once():
    stanza = parse_stanza("<presence xmlns='jabber:client'><status>here</status></presence>")
    stamped = with_delay(stanza, "example.com", 86400.5)
    delay = stamped.find(f"{{{ns.DELAY}}}delay")
    assert delay.attrib == {"from": "example.com", "stamp": "1970-01-02T00:00:00Z"}
    assert stamped.findtext(f"{{{ns.CLIENT}}}status") == "here"
    assert stanza.find(f"{{{ns.DELAY}}}delay") is None
    assert with_delay(stamped, "other.example", 0) is stamped
