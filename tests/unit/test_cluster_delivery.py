"""How a stanza from another node is written to a local session (issue 21)."""

from types import SimpleNamespace

from xmpp.filters import NO_FILTERS, add_filter
from xmpp.modules.cluster import as_sent
from xmpp.stanza import SerializedElement, serialize
from xmpp.stream import parse_stanza

WIRE = serialize(parse_stanza(
    "<message to='bob@example.com/phone' type='chat' xml:lang='en'>"
    "<body>é &amp; &lt;x&gt;</body></message>"))


def session(**fields):
    return SimpleNamespace(filters=NO_FILTERS, filter_ranks={}, **fields)


def test_the_senders_wire_text_goes_out_unparsed_to_a_session_without_out_filters():
    element = as_sent(session(), WIRE)
    assert type(element) is SerializedElement
    assert element.tag == "{jabber:client}message"
    # Written as it came, inside a stream and outside one (WebSocket, BOSH).
    assert serialize(element) == WIRE
    assert serialize(element, "") == serialize(parse_stanza(WIRE), "")


def test_an_out_filter_gets_a_parsed_stanza():
    filtered = session()
    add_filter(filtered, "stanzas/in", lambda stanza, _session: stanza)
    assert as_sent(filtered, WIRE) is not None  # only "stanzas/out" reads what is sent
    add_filter(filtered, "stanzas/out", lambda stanza, _session: stanza)
    assert as_sent(filtered, WIRE) is None


def test_a_session_without_filters_or_a_foreign_root_gets_a_parsed_stanza():
    assert as_sent(SimpleNamespace(), WIRE) is None
    assert as_sent(session(), "<message xmlns='jabber:server'/>") is None
