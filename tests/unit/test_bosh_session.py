"""The pure BOSH session state (XEP-0124): rid window, hold, wait, inactivity, with a fake clock."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from http_apps.bosh.body import HTTPBIND, BoshError, parse_body, response_body, terminate_body
from http_apps.bosh.session import BoshSession, Limits
from xmpp.stanza import serialize

BODY = f"{{{HTTPBIND}}}body"
LIMITS = Limits(wait=60, hold=1, requests=2, inactivity=30, polling=5)


def new_session(rid: int = 100, limits: Limits = LIMITS, now: float = 0.0) -> BoshSession:
    session: BoshSession[str] = BoshSession("sid1", rid, limits, now)
    # The creation request, answered at once with the stream features.
    session.begin()
    assert session.receive(rid, "create", now).process == [(rid, "create")]
    session.push(b"<features/>", now)
    assert session.settle(now) == [rid]
    return session


def process(session: BoshSession, rid: int, payload: str, now: float,
            output: bytes = b"") -> tuple[list, list[int]]:
    """One request as the manager handles it: receive, process (maybe output), settle."""
    session.begin()
    received = session.receive(rid, payload, now)
    if output:
        session.push(output, now)
    return received.process, session.settle(now)


def children(body: bytes) -> list[str]:
    element = ElementTree.fromstring(body)
    assert element.tag == BODY
    return [child.tag.rpartition("}")[2] for child in element]


def test_creation_answered_with_queued_output_and_session_then_idle():
    session = new_session()
    assert children(session.response(100)) == ["features"]
    assert session.idle_since == 0.0
    assert ElementTree.fromstring(session.response(100)).get("sid") == "sid1"


def test_first_response_carries_creation_attributes_once():
    session: BoshSession[str] = BoshSession("s", 1, LIMITS, 0.0)
    session.first_attrs = {"wait": "60", "hold": "1"}
    session.begin()
    session.receive(1, "create", 0.0)
    session.push(b"<x/>", 0.0)
    session.settle(0.0)
    first = ElementTree.fromstring(session.response(1))
    assert (first.get("wait"), first.get("hold"), first.get("sid")) == ("60", "1", "s")
    process(session, 2, "", 1.0, b"<y/>")
    assert ElementTree.fromstring(session.response(2)).get("wait") is None


def test_next_rid_is_held_until_output_arrives():
    session = new_session()
    processed, answered = process(session, 101, "a", 1.0)
    assert processed == [(101, "a")] and answered == []
    assert session.deadline(101) == 61.0
    assert session.idle_since is None
    assert session.push(b"<message/>", 2.0) == [101]
    assert children(session.response(101)) == ["message"]
    assert session.idle_since == 2.0


def test_output_while_processing_waits_for_settle():
    session = new_session()
    session.begin()
    session.receive(101, "a", 1.0)
    assert session.push(b"<iq/>", 1.0) == []
    assert session.settle(1.0) == [101]


def test_requests_beyond_hold_answer_the_oldest():
    session = new_session()
    process(session, 101, "a", 1.0)
    _processed, answered = process(session, 102, "b", 2.0)
    assert answered == [101]
    assert children(session.response(101)) == []
    assert list(session.open) == [102]


def test_queued_output_goes_to_the_oldest_and_newer_stays_held():
    session = new_session()
    process(session, 101, "a", 1.0)
    _processed, answered = process(session, 102, "b", 2.0, output=b"<iq/>")
    assert answered == [101]
    assert children(session.response(101)) == ["iq"]
    assert list(session.open) == [102]


def test_hold_zero_answers_every_request_at_once():
    session = new_session(limits=Limits(wait=60, hold=0, requests=1, inactivity=30, polling=5))
    _processed, answered = process(session, 101, "a", 1.0)
    assert answered == [101]


def test_output_with_no_request_open_waits_in_the_outbox():
    session = new_session()
    assert session.push(b"<message/>", 1.0) == []
    _processed, answered = process(session, 101, "", 2.0)
    assert answered == [101]
    assert children(session.response(101)) == ["message"]


def test_one_ahead_waits_for_the_gap_then_both_are_processed_in_order():
    session = new_session()
    assert process(session, 102, "second", 1.0) == ([], [])
    assert session.deadline(102) is None
    processed, answered = process(session, 101, "first", 2.0)
    assert processed == [(101, "first"), (102, "second")]
    assert answered == [101]          # hold 1: the older of the two is answered
    assert session.deadline(102) == 62.0


def test_rid_too_far_ahead_or_unknown_is_item_not_found():
    session = new_session()
    with pytest.raises(BoshError) as error:
        session.receive(103, "x", 1.0)
    assert error.value.condition == "item-not-found"
    with pytest.raises(BoshError):
        session.receive(50, "x", 1.0)


def test_repeated_rid_gets_the_same_bytes_while_in_the_window():
    session = new_session()
    process(session, 101, "a", 1.0)
    session.push(b"<message>hi</message>", 2.0)
    first = session.response(101)
    received = session.receive(101, "a again", 3.0)
    assert received.resend == first and received.process == []
    process(session, 102, "b", 4.0)
    assert session.receive(101, "a", 5.0).resend == first
    process(session, 103, "c", 6.0)   # 101 leaves the window of 2
    with pytest.raises(BoshError):
        session.receive(101, "a", 7.0)


def test_repeated_rid_still_open_is_waited_on_not_processed_twice():
    session = new_session()
    process(session, 101, "a", 1.0)
    received = session.receive(101, "a", 2.0)
    assert received.process == [] and received.resend is None


def test_wait_expiry_answers_empty():
    session = new_session()
    process(session, 101, "a", 10.0)
    assert session.expire(69.9) == []
    assert session.expire(70.0) == [101]
    assert children(session.response(101)) == []
    assert session.idle_since == 70.0


def test_inactivity_counts_from_the_last_answer():
    session = new_session()
    assert not session.inactive(29.9)
    process(session, 101, "a", 20.0)
    assert not session.inactive(100.0)      # a request is open: never inactive
    session.expire(80.0)
    assert not session.inactive(109.9)
    assert session.inactive(110.0)


def test_terminate_answers_open_and_waiting_requests_with_queued_output():
    session = new_session()
    process(session, 101, "a", 1.0)
    process(session, 103, "c", 1.0)
    session.begin()                    # the closing stream writes its last words
    session.push(b"<e/>", 1.0)
    answered = session.terminate(2.0, "remote-stream-error")
    assert sorted(answered) == [101, 103]
    body = ElementTree.fromstring(session.response(103))
    assert (body.get("type"), body.get("condition")) == ("terminate", "remote-stream-error")
    assert children(session.response(103)) == ["e"]
    assert session.response(101) == session.response(103)
    with pytest.raises(BoshError):
        session.receive(102, "b", 3.0)
    assert session.terminate(3.0) == [] and not session.inactive(1000.0)


# -- the wrapper ------------------------------------------------------------------

def test_parse_body_attributes_and_children_in_jabber_client():
    body = parse_body(
        b"<?xml version='1.0'?><body xmlns='http://jabber.org/protocol/httpbind' rid='5' "
        b"sid='s' xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true' xml:lang='en'>"
        b"<message to='a@b'><body>hi <b>there</b> x</body></message>"
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGE=</auth></body>")
    assert body.get("rid") == "5" and body.get("xml:lang") == "en" and body.restart
    message, auth = body.children
    assert message.tag == "{jabber:client}message"
    assert message[0].tag == "{jabber:client}body"
    assert message[0].text == "hi " and message[0][0].tail == " x"
    assert auth.tag == "{urn:ietf:params:xml:ns:xmpp-sasl}auth" and auth.text == "AGE="


@pytest.mark.parametrize("data", [
    b"", b"<body xmlns='http://jabber.org/protocol/httpbind'", b"<other/>",
    b"<body xmlns='wrong'/>",
    b"<!DOCTYPE body [<!ENTITY x 'y'>]><body xmlns='http://jabber.org/protocol/httpbind'/>",
    b"<body xmlns='http://jabber.org/protocol/httpbind'><!-- c --></body>",
    b"<body xmlns='http://jabber.org/protocol/httpbind'><?pi x?></body>",
    b"<?xml version='1.0' encoding='latin-1'?><body xmlns='http://jabber.org/protocol/httpbind'/>",
    b"<body xmlns='http://jabber.org/protocol/httpbind'>" + b"<a>" * 40 + b"</a>" * 40
    + b"</body>",
])
def test_parse_body_refuses_bad_input(data):
    with pytest.raises(BoshError) as error:
        parse_body(data)
    assert error.value.condition == "bad-request"


def test_response_bodies():
    empty = ElementTree.fromstring(response_body(b"", {"sid": "s"}))
    assert empty.tag == BODY and empty.get("sid") == "s" and len(empty) == 0
    features = ElementTree.fromstring(response_body(b"<stream:features/>", {}))
    assert features[0].tag == "{http://etherx.jabber.org/streams}features"
    end = ElementTree.fromstring(terminate_body("item-not-found"))
    assert (end.get("type"), end.get("condition")) == ("terminate", "item-not-found")
    with pytest.raises(ValueError):
        terminate_body("no-such-condition")


# --- found by fuzzing (tests/fuzz/fuzz_stream.py, the same expat setup) -------


@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le", "utf-16"])
def test_a_utf16_body_is_refused(encoding):
    body = (f"<body xmlns='{HTTPBIND}' rid='1'><message xmlns='jabber:client'>"
            "<body>hi</body></message></body>")
    with pytest.raises(BoshError) as refused:
        parse_body(body.encode(encoding))
    assert refused.value.condition == "bad-request"


def test_a_child_in_no_namespace_keeps_it_when_written_again():
    # Found by tests/fuzz/fuzz_bosh_body.py: <auth xmlns=''/> came back in jabber:client.
    body = parse_body(b"<body xmlns='http://jabber.org/protocol/httpbind'  xmlns:xmpp='maSID'>"
                      b"<message to='romeo@xampler:ient'/><iq  id='1'>ping xmlnr='urn:d='S'"
                      b"1573741SmoeSID'><auth xmlns=''/></iq></body>")
    iq = body.children[1]
    assert iq[0].tag == "{}auth"
    assert serialize(iq).endswith("<auth xmlns=''/></iq>")
