"""Hostile and malformed input over raw sockets: the exact stream error, and no harm to others."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from tests.integration.clients import close, login
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server

HEADER = ("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
          "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<stream:stream to='localhost' xmlns='jabber:client'
 xmlns:stream='http://etherx.jabber.org/streams'>&lol9;"""


class Bystander:
    """A slixmpp client on its own event loop thread that must keep working throughout."""

    def __init__(self, server) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = self.call(login(server, "bystander"))

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def ping(self, domain: str) -> None:
        self.call(self.client.plugin["xep_0199"].ping(domain, timeout=10))

    def stop(self) -> None:
        self.call(close(self.client))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("bad"),
                         extra="c2s_stanza_size_limit = 64 * 1024\nc2s_timeout = 2")
    server.create_users({"bystander": "pw-bystander", "raw": "pw-raw"})
    server.start()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def bystander(server):
    bystander = Bystander(server)
    yield bystander
    bystander.stop()


def stream_error(data: bytes) -> str:
    match = re.search(rb"<stream:error><([a-z-]+) xmlns=.urn:ietf:params:xml:ns:xmpp-streams", data)
    assert match, f"no stream error in {data[-400:]!r}"
    return match.group(1).decode()


CASES = {
    "billion-laughs": (BILLION_LAUGHS, "restricted-xml"),
    # A DOCTYPE inside the root element is not even well-formed XML.
    "doctype-in-stream": (HEADER + "<!DOCTYPE x>", "not-well-formed"),
    "external-entity": ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                        + HEADER, "restricted-xml"),
    "processing-instruction": (HEADER + "<?evil data?>", "restricted-xml"),
    "comment": (HEADER + "<!-- hello -->", "restricted-xml"),
    "malformed": (HEADER + "<message><body>x</bod></message>", "not-well-formed"),
    "unknown-host": (HEADER.replace("to='localhost'", "to='nowhere.example'"), "host-unknown"),
    "missing-to": (HEADER.replace("to='localhost' ", ""), "improper-addressing"),
    "wrong-namespace": (HEADER.replace("xmlns='jabber:client'", "xmlns='jabber:server'"),
                        "invalid-namespace"),
    "deep-nesting": (HEADER + "<iq type='get' id='1'>" + "<a>" * 200, "policy-violation"),
    "oversized-before-auth": (HEADER + "<iq type='get' id='1'><query xmlns='jabber:iq:register'>"
                              + "x" * (40 * 1024), "policy-violation"),
    "stanza-before-auth": (HEADER + "<message to='bystander@localhost'><body>hi</body></message>",
                           "not-authorized"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_exact_stream_error(server, bystander, case):
    payload, condition = CASES[case]
    raw = RawClient(server.c2s_port)
    try:
        raw.send(payload)
        data = raw.read_to_close()
    finally:
        raw.close()
    assert stream_error(data) == condition
    assert data.rstrip().endswith(b"</stream:stream>")
    bystander.ping(server.domain)


def test_oversized_stanza_after_auth_is_policy_violation(server, bystander):
    raw = RawClient(server.c2s_port)
    try:
        raw.login("localhost", server.cert, "raw", "pw-raw")
        raw.send("<message to='bystander@localhost'><body>" + "x" * (70 * 1024))
        data = raw.read_to_close()
    finally:
        raw.close()
    assert stream_error(data) == "policy-violation"
    bystander.ping(server.domain)


def test_abrupt_disconnects_do_not_disturb_others(server, bystander):
    for cut in (10, len(HEADER), len(HEADER) + 5):
        raw = RawClient(server.c2s_port)
        raw.send((HEADER + "<iq type='get' id='1'>")[:cut])
        raw.close()
    bystander.ping(server.domain)


def test_starttls_then_plain_login_and_sasl_retry(server):
    raw = RawClient(server.c2s_port)
    try:
        features = raw.starttls("localhost", server.cert)
        assert b"SCRAM-SHA-256" in features and b"PLAIN" in features
        import base64

        bad = base64.b64encode(b"\0raw\0nope").decode()
        raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{bad}</auth>")
        assert b"<not-authorized/>" in raw.read_until(rb"</failure>")
        good = base64.b64encode(b"\0raw\0pw-raw").decode()
        raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{good}</auth>")
        raw.read_until(rb"<success")
    finally:
        raw.close()


def test_insecure_stream_offers_no_mechanisms_when_encryption_required(server):
    raw = RawClient(server.c2s_port)
    try:
        features = raw.open_stream("localhost")
    finally:
        raw.close()
    assert b"<starttls" in features and b"<required/>" in features
    assert b"<mechanism>" not in features


def test_stream_that_never_authenticates_times_out(server, bystander):
    raw = RawClient(server.c2s_port)
    try:
        raw.open_stream("localhost")
        data = raw.read_to_close()
    finally:
        raw.close()
    assert stream_error(data) == "connection-timeout"
    bystander.ping(server.domain)  # bound sessions are not timed out


def test_a_throttled_login_is_answered_at_once_and_accepted_after_the_wait(server):
    """vireo_auth_failure_limit (5) failures; then even the right password is
    refused at once, told the wait (0.2 s doubled, in whole seconds: 1 s);
    once it has passed the right password logs in."""
    raw = RawClient(server.c2s_port, source_address="127.0.0.7")
    try:
        raw.starttls("localhost", server.cert)
        for _ in range(5):
            assert b"<not-authorized/>" in raw.auth_plain("raw", "nope")
        started = time.monotonic()
        answer = raw.auth_plain("raw", "pw-raw")
        answered_in = time.monotonic() - started
    finally:
        raw.close()
    assert b"<temporary-auth-failure/>" in answer
    told = re.search(rb"wait (\d+) s", answer)
    assert told is not None and int(told.group(1)) == 1
    assert answered_in < 1.0
    time.sleep(1.0)  # the wait the server told
    again = RawClient(server.c2s_port, source_address="127.0.0.7")
    try:
        again.login("localhost", server.cert, "raw", "pw-raw")
    finally:
        again.close()
