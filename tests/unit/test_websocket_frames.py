"""RFC 6455 frames with Prosody's limits: our frame layer against wsproto's client, in memory."""

from __future__ import annotations

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from http_apps.websocket.frames import Failure, Message, PeerClosed, WebSocketConnection


def pair(**limits) -> tuple[Connection, WebSocketConnection]:
    limits = {"max_message_size": 100, "max_buffer_size": 150, "max_fragments": 4, **limits}
    return Connection(ConnectionType.CLIENT), WebSocketConnection(**limits)


def fragments(client: Connection, *pieces: str) -> bytes:
    *first, last = pieces
    data = b"".join(client.send(TextMessage(piece, message_finished=False)) for piece in first)
    return data + client.send(TextMessage(last))


def test_text_messages_arrive_whole():
    client, server = pair()
    data = client.send(TextMessage("<a/>")) + fragments(client, "<b>", "é", "</b>")
    assert server.receive_data(data[:3]) == []
    assert server.receive_data(data[3:]) == [Message(b"<a/>"), Message("<b>é</b>".encode())]


def test_pings_are_answered_and_pongs_ignored():
    client, server = pair()
    assert server.receive_data(client.send(Ping(b"hello")) + client.send(Pong(b"x"))) == []
    client.receive_data(server.data_to_send())
    assert list(client.events()) == [Pong(b"hello")]
    assert server.data_to_send() == b""


def test_a_message_over_the_limit_fails_before_it_is_whole():
    client, server = pair()
    frame = client.send(TextMessage("x" * 1000))
    # The header and the first 101 bytes are enough: the rest is never held.
    assert server.receive_data(frame[:8 + 101]) == [
        Failure(1009, "Stanza too large", "policy-violation")]
    assert server.receive_data(frame[109:]) == []


def test_the_limit_counts_every_fragment_of_a_message():
    client, server = pair()
    events = server.receive_data(fragments(client, "x" * 60, "y" * 60))
    assert events == [Failure(1009, "Stanza too large", "policy-violation")]


def test_the_limit_may_be_raised_between_reads():
    client, server = pair()
    server.max_message_size = 120
    assert server.receive_data(client.send(TextMessage("x" * 110))) == [Message(b"x" * 110)]


def test_a_fragment_flood_is_refused():
    client, server = pair()
    data = fragments(client, *("<" for _ in range(4)), "/>")
    assert server.receive_data(data) == [
        Failure(1008, "Too many fragments", "resource-constraint")]


def test_the_frame_buffer_limit_is_a_resource_constraint():
    client, server = pair(max_message_size=1000, max_buffer_size=50)
    assert server.receive_data(fragments(client, "x" * 60, "/>")) == [
        Failure(1009, "Frame buffer exceeded", "resource-constraint")]


def test_binary_messages_are_refused_with_1003():
    client, server = pair()
    assert server.receive_data(client.send(BytesMessage(b"<a/>"))) == [
        Failure(1003, "Only text frames are supported, RFC 7395 3.2")]


@pytest.mark.parametrize("frame, code", [
    (b"\x81\x04<a/>", 1002),                           # unmasked client frame
    (b"\x83\x80\x00\x00\x00\x00", 1002),               # reserved opcode
    (b"\xc1\x80\x00\x00\x00\x00", 1002),               # RSV1 without an extension
    (b"\x09\x80\x00\x00\x00\x00", 1002),               # fragmented control frame
    (b"\x81\x82\x00\x00\x00\x00\xc3\x28", 1007),       # invalid UTF-8
    (b"\x88\x82\x00\x00\x00\x00\x03\xe7", 1002),       # close code 999
])
def test_protocol_errors_fail_the_connection(frame, code):
    _client, server = pair()
    [failure] = server.receive_data(frame)
    assert isinstance(failure, Failure) and failure.code == code and failure.condition is None
    assert server.closed
    assert server.receive_data(b"\x81\x80\x00\x00\x00\x00") == []


def test_the_peers_close_is_echoed():
    client, server = pair()
    assert server.receive_data(client.send(CloseConnection(1001))) == [PeerClosed(1001)]
    client.receive_data(server.data_to_send())
    assert [event.code for event in client.events()] == [1001]
    assert server.closed and server.close() == b"" and server.send_message(b"<a/>") == b""


def test_our_close_then_the_peers_answer():
    client, server = pair()
    client.receive_data(server.close(1000))
    [close] = client.events()
    assert close.code == 1000
    assert server.closed
    assert server.receive_data(client.send(close.response())) == [PeerClosed(1000)]
    assert server.data_to_send() == b""


def test_messages_and_pings_out():
    client, server = pair()
    client.receive_data(server.send_message("<a>é</a>".encode()) + server.ping())
    assert [type(event) for event in client.events()] == [TextMessage, Ping]
