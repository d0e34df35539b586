"""BOSH (XEP-0124/XEP-0206) over real HTTP against a server process, with slixmpp TCP users."""

from __future__ import annotations

import asyncio
import http.client
import socket
import time

import pytest

from storage.roster import RosterItem, RosterStore
from tests.integration.bosh_client import STREAMS, BoshClient, Response, local, request
from tests.integration.clients import close, login
from tests.integration.server_fixture import make_server

TIMEOUT = 30  # well inside the sessions' 60 s wait
USERS = {name: f"pw-{name}" for name in ("web", "tcp", "web2", "tcp2", "idle", "friend")}
FRIENDS = (("web", "tcp"), ("idle", "friend"))


def befriend(server, pairs) -> None:
    """Mutual presence subscriptions, written before the server starts."""
    with server.database() as database:
        store = RosterStore(database)
        for a, b in pairs:
            for user, contact in ((a, b), (b, a)):
                store.put_item(server.domain, user,
                               RosterItem(jid=server.jid(contact), subscription="both"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, databases):
    server = make_server(tmp_path_factory.mktemp("bosh"), modules=("bosh",), http=True,
                         database=databases.config())
    server.create_users(USERS)
    befriend(server, FRIENDS)
    server.start()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def strict(tmp_path_factory, databases):
    """A server with a 1 s inactivity limit, CORS off for bosh and BOSH moved to /bosh."""
    server = make_server(tmp_path_factory.mktemp("bosh-strict"), modules=("bosh",), http=True,
                         database=databases.config(),
                         extra='bosh_max_inactivity = 1\n'
                               'http_cors_override = { bosh = { enabled = false } }\n'
                               'http_paths = { bosh = "/bosh" }\n')
    server.create_users(USERS)
    befriend(server, FRIENDS)
    server.start()
    yield server
    assert server.stop() == 0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def bosh(server, **kwargs) -> BoshClient:
    """A client over https (a secure session) unless told otherwise."""
    kwargs.setdefault("https", True)
    port = server.ports["https" if kwargs["https"] else "http"]
    return BoshClient(port, server.domain, **kwargs)


def terminate_condition(response: Response) -> str | None:
    assert response.status == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    body = response.body
    assert body.get("type") == "terminate", response.data
    return body.get("condition")


# -- the endpoint ---------------------------------------------------------------------

def test_get_shows_a_page_on_both_paths(server):
    for path in ("/http-bind", "/http-bind/"):
        response = request(server.ports["http"], "GET", path)
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/html")
        assert b"BOSH" in response.data


def test_enabled_globally_it_answers_for_any_http_host(server):
    client = bosh(server)
    response = request(client.port, data=(
        f"<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='{server.domain}' "
        "wait='60'/>").encode(), https=True, host="anything.example")
    assert response.status == 200 and response.body.get("sid")


def test_session_creation_response(server):
    client = bosh(server)
    body = client.create(wait=500)
    assert body.get("sid") and body.get("authid") == body.get("sid")
    assert {name: body.get(name) for name in
            ("wait", "requests", "hold", "inactivity", "polling", "ver", "from", "secure")} == {
        "wait": "120", "requests": "2", "hold": "1", "inactivity": "60", "polling": "5",
        "ver": "1.6", "from": server.domain, "secure": "true"}
    assert body.get("{urn:xmpp:xbosh}version") == "1.0"
    assert local(body[0]) == "features" and body[0].tag == f"{{{STREAMS}}}features"
    assert "PLAIN" in client.mechanisms()


def test_insecure_sessions_get_no_mechanisms_unless_a_trusted_proxy_says_https(server):
    plain = bosh(server, https=False)
    plain.create()
    assert plain.mechanisms() == []
    proxied = bosh(server, https=False, headers={"X-Forwarded-Proto": "https"})
    proxied.create()
    assert "PLAIN" in proxied.mechanisms()
    # 127.0.0.2 is not in trusted_proxies (default: loopback 127.0.0.1 and ::1 only).
    untrusted = bosh(server, https=False, source="127.0.0.2",
                     headers={"X-Forwarded-Proto": "https"})
    untrusted.create()
    assert untrusted.mechanisms() == []


def post_raw(server, text: str) -> Response:
    return request(server.ports["https"], https=True, data=text.encode())


BODY_NS = "xmlns='http://jabber.org/protocol/httpbind'"


@pytest.mark.parametrize("text, condition", [
    (f"<body {BODY_NS} rid='1' wait='60'/>", "improper-addressing"),
    (f"<body {BODY_NS} rid='1' wait='60' to='unknown.example'/>", "improper-addressing"),
    (f"<body {BODY_NS} rid='x' wait='60' to='localhost'/>", "bad-request"),
    (f"<body {BODY_NS} wait='60' to='localhost'/>", "bad-request"),
    (f"<body {BODY_NS} rid='1' wait='-5' to='localhost'/>", "bad-request"),
    (f"<body {BODY_NS} rid='1' to='localhost'/>", "bad-request"),
    (f"<body {BODY_NS} rid='1' wait='60' to='localhost'", "bad-request"),
    ("not xml at all", "bad-request"),
    (f"<body {BODY_NS} rid='1' sid='no-such-session'/>", "item-not-found"),
])
def test_refusals_are_terminate_bodies(server, text, condition):
    assert terminate_condition(post_raw(server, text)) == condition


def test_a_stream_error_ends_the_session_as_remote_stream_error(server):
    client = bosh(server)
    client.create()
    # A stanza before authentication is a not-authorized stream error.
    response = client.post(f"<message xmlns='jabber:client' to='{server.jid('tcp')}'/>")
    assert terminate_condition(response) == "remote-stream-error"
    error = response.body.find(f"{{{STREAMS}}}error")
    assert local(error[0]) == "not-authorized"
    assert terminate_condition(client.post()) == "item-not-found"


def test_body_over_the_c2s_stanza_limit_is_refused(server):
    # Refused on its Content-Length (256 KiB by default) before any of it is read.
    with socket.create_connection(("127.0.0.1", server.ports["http"]), timeout=10) as sock:
        sock.sendall(b"POST /http-bind HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: text/xml; charset=utf-8\r\nContent-Length: 300000\r\n\r\n"
                     + b"<body xmlns='http://jabber.org/protocol/httpbind'>")
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        assert response.status == 413


def test_cors_preflight_and_headers(server):
    origin = {"Origin": "http://page.example"}
    preflight = request(server.ports["http"], "OPTIONS", headers={
        **origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type"})
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == "http://page.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "Content-Type" in preflight.headers["access-control-allow-headers"]
    client = bosh(server, headers=origin)
    response = client.post(to=server.domain, wait="60")
    assert response.body.get("sid")
    assert response.headers["access-control-allow-origin"] == "http://page.example"


# -- rid window, hold, wait ---------------------------------------------------------------

def test_rid_window_hold_and_repeats(server):
    """Requests out of order under hold=1, judged by what comes back, not by timing:
    the wait (60 s) outlasts the scenario, so no answer here is a wait expiry."""
    async def scenario():
        tcp = await login(server, "tcp2", resource="desk")
        client = bosh(server)
        await asyncio.to_thread(client.login, "web2", USERS["web2"], "window", 60)
        first, ahead = client.rid + 1, client.rid + 2
        # The request one ahead waits for the gap, which `first` fills; then, beyond
        # hold=1, the older of the two open requests is answered at once, empty.
        # (Whichever of the two reaches the server first, that is the outcome.)
        ahead_task = asyncio.create_task(asyncio.to_thread(client.post, rid=ahead))
        answered = await asyncio.wait_for(asyncio.to_thread(client.post, rid=first), TIMEOUT)
        assert len(answered.body) == 0 and answered.body.get("type") is None
        # The newer one is held until there is something to send.
        assert not ahead_task.done()
        tcp.send_message(mto=f"{server.jid('web2')}/window", mbody="released", mtype="chat")
        held = await asyncio.wait_for(ahead_task, TIMEOUT)
        assert [child.findtext("{jabber:client}body") for child in held.body] == ["released"]
        client.rid = ahead
        # A repeated rid in the window: the same bytes again.
        assert (await asyncio.to_thread(client.post, rid=ahead)).data == held.data
        assert (await asyncio.to_thread(client.post, rid=first)).data == answered.data
        # Too far ahead: item-not-found ends the session.
        assert terminate_condition(await asyncio.to_thread(
            client.post, rid=ahead + 5)) == "item-not-found"
        assert terminate_condition(await asyncio.to_thread(client.post)) == "item-not-found"
        await close(tcp)

    run(scenario())


def test_wait_expiry_answers_empty(server):
    client = bosh(server)
    client.login("web2", USERS["web2"], "wait", wait=1)
    started = time.monotonic()
    body = client.send()
    elapsed = time.monotonic() - started
    assert len(body) == 0 and body.get("type") is None
    assert 0.9 <= elapsed < 5


# -- BOSH and TCP users ------------------------------------------------------------------------

def available_from(jid: str, kind: str = "available"):
    return lambda p: p["from"].bare == jid and p["type"] == kind


def test_bosh_and_tcp_users_exchange_messages_and_presence(server):
    async def scenario():
        tcp = await login(server, "tcp", resource="desk")
        web = bosh(server)
        await asyncio.to_thread(web.login, "web", USERS["web"], "browser", 60)
        await asyncio.to_thread(web.send, "<presence xmlns='jabber:client'/>")
        await tcp.next_presence(available_from(server.jid("web")))
        # The BOSH user sees the TCP user's presence (probe answer).
        presence = await asyncio.to_thread(web.collect, lambda s: local(s) == "presence"
                                           and s.get("from", "").startswith(server.jid("tcp")))
        assert presence.get("type") is None

        # The request carrying a message has nothing to answer yet: it is held...
        held = asyncio.create_task(asyncio.to_thread(
            web.post, f"<message xmlns='jabber:client' to='{server.jid('tcp')}' type='chat'>"
                      "<body>from the browser</body></message>"))
        message = await tcp.next_message()
        assert message["body"] == "from the browser"
        assert str(message["from"]) == f"{server.jid('web')}/browser"
        # ...and returns when a message for the user arrives, carrying it (its wait,
        # 60 s, would have answered empty, and later than this bound).
        tcp.send_message(mto=f"{server.jid('web')}/browser", mbody="from tcp", mtype="chat")
        response = await asyncio.wait_for(held, TIMEOUT)
        messages = [c for c in response.body if local(c) == "message"]
        assert messages and messages[0].findtext("{jabber:client}body") == "from tcp"
        assert messages[0].tag == "{jabber:client}message"
        assert messages[0].get("from") == f"{server.jid('tcp')}/desk"

        # Terminate: the TCP user sees the BOSH user go offline.
        ended = await asyncio.to_thread(web.send, "<presence xmlns='jabber:client' "
                                        "type='unavailable'/>", type="terminate")
        assert ended.get("type") == "terminate" and ended.get("condition") is None
        await tcp.next_presence(available_from(server.jid("web"), "unavailable"))
        assert terminate_condition(await asyncio.to_thread(web.post)) == "item-not-found"
        await close(tcp)

    run(scenario())


# -- the strict server: inactivity, CORS off, another path ----------------------------------------

def test_inactivity_destroys_the_session_with_unavailable_presence(strict):
    async def scenario():
        friend = await login(strict, "friend", resource="desk")
        idle = bosh(strict, path="/bosh")
        await asyncio.to_thread(idle.login, "idle", USERS["idle"], "browser", 60)
        # The session's last request: inactivity counts from its answer, so from after
        # this instant (time.time, the server's clock).
        before_last_request = time.time()
        await asyncio.to_thread(idle.send, "<presence xmlns='jabber:client'/>")
        await friend.next_presence(available_from(strict.jid("idle")))
        await friend.next_presence(available_from(strict.jid("idle"), "unavailable"),
                                   timeout=10)
        assert time.time() - before_last_request >= 1  # bosh_max_inactivity
        assert terminate_condition(await asyncio.to_thread(idle.post)) == "item-not-found"
        await close(friend)

    run(scenario())


def test_cors_override_turns_cors_off_for_bosh(strict):
    origin = {"Origin": "http://page.example"}
    preflight = request(strict.ports["http"], "OPTIONS", "/bosh", headers={
        **origin, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    client = bosh(strict, path="/bosh", headers=origin)
    response = client.post(to=strict.domain, wait="60")
    assert response.body.get("sid")
    assert "access-control-allow-origin" not in response.headers


def test_http_paths_moves_the_endpoint(strict):
    assert request(strict.ports["http"], "GET", "/http-bind").status == 404
    assert request(strict.ports["http"], "GET", "/bosh").status == 200
