"""RFC 7395 framing (one element per message, <open/>, <close/>) and the RFC 6455 handshake."""

from __future__ import annotations

import pytest

from http_apps.websocket.framing import (
    CLOSE,
    OPEN,
    declare_stream_prefix,
    open_attrs,
    open_element,
    parse_message,
)
from http_apps.websocket.handshake import HandshakeError, accept_headers, wants_upgrade
from xmpp import namespaces as ns
from xmpp.errors import StreamError

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"


def test_open_is_read_with_its_attributes():
    element = parse_message(f"<open xmlns='{FRAMING}' to='example.com' version='1.0' "
                            "xml:lang='fr'/>".encode(), 1000)
    assert element.tag == OPEN
    assert open_attrs(element) == {"to": "example.com", "version": "1.0", "xml:lang": "fr"}


def test_a_stanza_and_whitespace():
    element = parse_message(b"\n<message xmlns='jabber:client'><body>hi</body></message> ", 1000)
    assert element.tag == f"{{{ns.CLIENT}}}message" and element.findtext(
        f"{{{ns.CLIENT}}}body") == "hi"
    assert parse_message(b" \r\n", 1000) is None


@pytest.mark.parametrize("data, condition", [
    (b"<a/><b/>", "bad-format"),
    (b"<message>", "not-well-formed"),
    (b"<message", "not-well-formed"),
    (b"hello", "bad-format"),
    (b"<a/>trailing", "bad-format"),
    (b"<!DOCTYPE a><a/>", "not-well-formed"),
    (b"<a>&ent;</a>", "restricted-xml"),
    (b"<a><!-- c --></a>", "restricted-xml"),
    (b"<x:a/>", "bad-namespace-prefix"),
    (b"<a>" + b"x" * 100 + b"</a>", "policy-violation"),
])
def test_messages_breaking_the_rules(data, condition):
    with pytest.raises(StreamError) as error:
        parse_message(data, 64)
    assert error.value.condition == condition


def test_server_framing_elements():
    assert open_element(from_="example.com", stream_id="abc") == (
        f"<open xmlns='{FRAMING}' id='abc' from='example.com' version='1.0' "
        "xml:lang='en'/>").encode()
    assert open_element(from_=None, stream_id="x").count(b"from") == 0
    assert f"<close xmlns='{FRAMING}'/>".encode() == CLOSE


@pytest.mark.parametrize("data, expected", [
    (b"<stream:features><bind xmlns='b'/></stream:features>",
     f"<stream:features xmlns:stream='{ns.STREAMS}'><bind xmlns='b'/></stream:features>"),
    (b"<stream:error><x/></stream:error>",
     f"<stream:error xmlns:stream='{ns.STREAMS}'><x/></stream:error>"),
    (b"<stream:features/>", f"<stream:features xmlns:stream='{ns.STREAMS}'/>"),
    (b"<message xmlns='jabber:client'/>", "<message xmlns='jabber:client'/>"),
])
def test_the_stream_prefix_is_declared_where_used(data, expected):
    assert declare_stream_prefix(data) == expected.encode()


# -- the handshake (RFC 6455 4.2.1, with its example key) ------------------------------

def handshake(**changes: str | None) -> dict:
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "keep-alive, Upgrade",
               "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
               "HTTP_SEC_WEBSOCKET_VERSION": "13", "HTTP_SEC_WEBSOCKET_PROTOCOL": "chat, xmpp"}
    environ.update(changes)
    return {key: value for key, value in environ.items() if value is not None}


def test_an_accepted_handshake():
    assert wants_upgrade(handshake())
    assert dict(accept_headers(handshake())) == {
        "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-WebSocket-Protocol": "xmpp"}


def test_requests_without_a_key_get_the_page():
    assert not wants_upgrade(handshake(HTTP_SEC_WEBSOCKET_KEY=None))
    assert not wants_upgrade(handshake(REQUEST_METHOD="HEAD"))


@pytest.mark.parametrize("changes, status", [
    ({"HTTP_SEC_WEBSOCKET_PROTOCOL": None}, 501),
    ({"HTTP_SEC_WEBSOCKET_PROTOCOL": "chat, xmpp-old"}, 501),
    ({"HTTP_SEC_WEBSOCKET_VERSION": "8"}, 426),
    ({"HTTP_SEC_WEBSOCKET_KEY": "c2hvcnQ="}, 400),
    ({"HTTP_SEC_WEBSOCKET_KEY": "not base64!"}, 400),
    ({"HTTP_UPGRADE": "h2c"}, 400),
    ({"HTTP_CONNECTION": "keep-alive"}, 400),
    ({"SERVER_PROTOCOL": "HTTP/1.0"}, 400),
])
def test_refused_handshakes(changes, status):
    with pytest.raises(HandshakeError) as error:
        accept_headers(handshake(**changes))
    assert error.value.status == status
    if status == 426:
        assert error.value.headers == (("Sec-WebSocket-Version", "13"),)
