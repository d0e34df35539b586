"""`authentication = "anonymous"` (mod_auth_anonymous): SASL ANONYMOUS, a random
node per session, nothing kept after it ends, no stanzas to other servers."""

from __future__ import annotations

import re
import time

import pytest

from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server

ANONYMOUS_AUTH = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("anonymous"),
                         host_extra='authentication = "anonymous"\n')
    server.start()
    yield server
    assert server.stop() == 0


def anonymous_session(server) -> tuple[RawClient, str]:
    raw = RawClient(server.c2s_port)
    features = raw.starttls(server.domain, server.cert)
    assert re.findall(rb"<mechanism>([^<]+)</mechanism>", features) == [b"ANONYMOUS"]
    raw.send(ANONYMOUS_AUTH)
    assert b"<success" in raw.read_until(rb"<success[^>]*>|</failure>")
    raw.open_stream(server.domain)
    raw.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    jid = re.search(rb"<jid>([^<]+)</jid>", raw.read_until(rb"</iq>")).group(1).decode()
    return raw, jid


def stored_roster(server, node: str) -> dict:
    from storage.db import Database, database_url
    from storage.roster import RosterStore
    from xmpp.config import load_config

    database = Database(database_url(load_config(server.config_path)))
    try:
        return RosterStore(database).get_roster(server.domain, node)
    finally:
        database.close()


def test_each_session_gets_a_random_node_and_leaves_nothing_stored(server):
    first, first_jid = anonymous_session(server)
    second, second_jid = anonymous_session(server)
    node = first_jid.split("@")[0]
    assert first_jid != second_jid and first_jid.split("/")[0] == f"{node}@{server.domain}"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", node)
    try:
        first.send(f"<iq type='set' id='r'><query xmlns='jabber:iq:roster'>"
                   f"<item jid='{second_jid.split('/')[0]}' name='friend'/></query></iq>")
        first.read_until(rb"id=.r.")
        assert stored_roster(server, node)
        first.send(f"<message to='{second_jid}' type='chat'><body>hello</body></message>")
        assert b"<body>hello</body>" in second.read_until(rb"</message>")
    finally:
        first.send("</stream:stream>")
        first.read_to_close()
        first.close()
    deadline = time.monotonic() + 10
    while stored_roster(server, node):
        assert time.monotonic() < deadline, "the anonymous user's roster outlived the session"
        time.sleep(0.05)
    second.close()


def test_anonymous_users_cannot_reach_other_servers(server):
    raw, _ = anonymous_session(server)
    try:
        raw.send("<message to='someone@elsewhere.example' id='m1' type='chat'>"
                 "<body>out</body></message>")
        answer = raw.read_until(rb"</message>")
        assert b"type=\"error\"" in answer or b"type='error'" in answer
        assert b"<service-unavailable" in answer
    finally:
        raw.close()


def test_passwords_are_not_offered_on_an_anonymous_host(server):
    raw = RawClient(server.c2s_port)
    try:
        raw.starttls(server.domain, server.cert)
        assert b"<invalid-mechanism" in raw.auth_plain("someone", "password")
    finally:
        raw.close()
