"""XEP-0198 stream management (mod_smacks) over real sockets: slixmpp's xep_0198
resuming after its socket is killed mid-burst, resumption across listeners
(TCP, WebSocket), expiry into offline storage, and hostile input."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.integration.clients import close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server
from tests.integration.websocket_client import WsClient, local

SM = "urn:xmpp:sm:3"
USERS = {name: f"secret-{name}" for name in (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")}
PLUGINS = ("xep_0030", "xep_0198", "xep_0203")
BURST = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("smacks"), modules=("smacks", "websocket"),
                         http=True)
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """Sessions hibernate one second, with room for five unacked stanzas and one
    resumable session per user."""
    server = make_server(tmp_path_factory.mktemp("smacks-short"), modules=("smacks",),
                         extra="smacks_hibernation_time = 1\nsmacks_max_queue_size = 5\n"
                               "smacks_max_hibernated_sessions = 1\n")
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


# -- raw streams ------------------------------------------------------------------------

def authenticated(server, user: str) -> RawClient:
    """A TCP stream past SASL and the restart, not bound."""
    raw = RawClient(server.c2s_port)
    raw.starttls(server.domain, server.cert)
    assert b"<success" in raw.auth_plain(user, USERS[user])
    features = raw.open_stream(server.domain)
    assert f"<sm xmlns=\"{SM}\"".encode() in features or f"<sm xmlns='{SM}'".encode() in features
    return raw


def enabled(server, user: str, resource: str = "raw") -> tuple[RawClient, str]:
    """A bound TCP stream with resumable stream management; its resumption id."""
    raw = RawClient(server.c2s_port)
    raw.login(server.domain, server.cert, user, USERS[user], resource=resource)
    raw.send(f"<enable xmlns='{SM}' resume='true'/>")
    answer = raw.read_until(rb"<enabled[^>]*>").decode()
    return raw, re.search(r"id=['\"]([^'\"]+)", answer).group(1)


def resume(raw: RawClient, previd: str, h: int | str) -> bytes:
    raw.send(f"<resume xmlns='{SM}' previd='{previd}' h='{h}'/>")
    return raw.read_until(rb"<resumed[^>]*>|</failed>|<failed[^>]*/>")


def wait_for_log(server, text: str, timeout: float = 10.0) -> None:
    """Until the server logged `text` (an expiry has no other outward sign)."""
    deadline = time.monotonic() + timeout
    while text not in server.log_path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.05)


def test_enable_acks_and_ack_requests(server):
    raw = RawClient(server.c2s_port)
    raw.login(server.domain, server.cert, "alice", USERS["alice"])
    raw.send(f"<enable xmlns='{SM}' resume='true'/>")
    answer = raw.read_until(rb"<enabled[^>]*>")
    assert re.search(rb"resume=.true.", answer) and re.search(rb"max=.600.", answer)
    try:
        assert len(re.search(rb"id=.([^'\"]+)", answer).group(1)) >= 16
        raw.send(f"<r xmlns='{SM}'/>")
        assert re.search(rb"<a xmlns=.urn:xmpp:sm:3. h=.0.", raw.read_until(rb"<a [^>]*>"))
        raw.send("<presence/>")  # counted; its reflection is a stanza for us to ack
        reply = raw.read_until(rb"<r xmlns=.urn:xmpp:sm:3./>")
        assert b"<presence" in reply
        raw.send(f"<a xmlns='{SM}' h='1'/><r xmlns='{SM}'/>")
        assert re.search(rb"h=.1.", raw.read_until(rb"<a [^>]*>"))
    finally:
        raw.close()


def test_enable_twice_or_before_bind_fails(server):
    raw = authenticated(server, "bob")
    try:
        raw.send(f"<enable xmlns='{SM}'/>")
        assert b"<unexpected-request" in raw.read_until(rb"</failed>")
    finally:
        raw.close()
    raw, _ = enabled(server, "bob")
    try:
        raw.send(f"<enable xmlns='{SM}'/>")
        assert b"<unexpected-request" in raw.read_until(rb"</failed>")
    finally:
        raw.close()


@pytest.mark.parametrize("h, condition, text", [
    ("5", b"undefined-condition", b"Client acknowledged more stanzas than sent by server"),
    ("x", b"invalid-xml", b"Missing or invalid 'h' attribute"),
])
def test_an_impossible_ack_ends_the_stream(server, h, condition, text):
    raw, _ = enabled(server, "carol")
    try:
        raw.send(f"<a xmlns='{SM}' h='{h}'/>")
        closing = raw.read_to_close()
        assert b"<stream:error><" + condition in closing and text in closing
    finally:
        raw.close()


def test_resume_with_a_forged_or_foreign_id_fails(server):
    alice, token = enabled(server, "alice", "forged")
    try:
        for user, previd in (("alice", "forged-id"), ("dave", token)):
            raw = authenticated(server, user)
            try:
                answer = resume(raw, previd, 0)
                assert b"<failed" in answer and b"<item-not-found" in answer
            finally:
                raw.close()
    finally:
        alice.close()


def test_resume_with_h_beyond_what_was_sent_fails_and_leaves_the_session(server):
    raw, token = enabled(server, "erin")
    raw.close()  # the network goes: the session hibernates
    again = authenticated(server, "erin")
    try:
        answer = resume(again, token, 99)
        assert b"<undefined-condition" in answer and b"h=" in answer
        assert b"<resumed" in resume(again, token, 0)
    finally:
        again.close()


def test_resume_after_binding_fails(server):
    raw, token = enabled(server, "frank")
    try:
        assert b"<unexpected-request" in resume(raw, token, 0)
    finally:
        raw.close()


def test_resumption_replaces_a_stale_connection(server):
    stale, token = enabled(server, "grace")
    fresh = authenticated(server, "grace")
    try:
        assert b"<resumed" in resume(fresh, token, 0)
        stale.read_to_close()  # closed by the server, without a stream error of its own
        fresh.send(f"<message to='grace@{server.domain}/raw' type='chat'><body>hi</body>"
                   "</message>")
        assert b"<body>hi</body>" in fresh.read_until(rb"</message>")
    finally:
        stale.close()
        fresh.close()


def test_a_session_started_on_tcp_resumes_on_websocket(server):
    async def scenario():
        raw, token = enabled(server, "heidi")
        raw.close()
        bob = await login(server, "bob", resource="ws-sender")
        bob.send_message(mto=f"heidi@{server.domain}/raw", mbody="while away", mtype="chat")
        web = await WsClient.connect(server, https=True)
        try:
            await web.authenticate("heidi", USERS["heidi"])
            await web.send(f"<resume xmlns='{SM}' previd='{token}' h='0'/>")
            resumed = await web.until(lambda e: local(e) in ("resumed", "failed"))
            assert local(resumed) == "resumed"
            message = await web.until(lambda e: local(e) == "message")
            assert message.findtext("{jabber:client}body") == "while away"
        finally:
            await web.close()
            await close(bob)

    run(scenario())


# -- slixmpp: no loss, no duplicate ---------------------------------------------------

async def stream_managed(client) -> None:
    """Once slixmpp's xep_0198 has stream management enabled (after session_start)."""
    if client.plugin["xep_0198"].sm_id:
        return
    done = asyncio.get_running_loop().create_future()
    client.add_event_handler("sm_enabled", lambda _: done.done() or done.set_result(True))
    await asyncio.wait_for(done, 10)


@pytest.mark.parametrize("direct_tls", [False, True])
def test_messages_of_a_burst_cut_by_the_network_arrive_once_after_resumption(server,
                                                                            direct_tls):
    port = server.ports["c2s_direct_tls" if direct_tls else "c2s"]

    async def scenario():
        ivan = await login(server, "ivan", plugins=PLUGINS, direct_tls=direct_tls,
                           resource=f"direct-{direct_tls}")
        judy = await login(server, "judy", plugins=PLUGINS)
        await stream_managed(ivan)
        resumed = asyncio.get_running_loop().create_future()
        ivan.add_event_handler("session_resumed", lambda _: resumed.set_result(True))
        bodies = [f"burst {n}" for n in range(BURST)]
        seen: list[str] = []
        for body in bodies:
            judy.send_message(mto=str(ivan.boundjid), mbody=body, mtype="chat")
        seen.append((await ivan.next_message())["body"])
        ivan.abort()  # mid-burst: what is in flight is lost on the wire
        await asyncio.wait_for(ivan.disconnected, 10)
        ivan.connect(host=server.address, port=port)
        await asyncio.wait_for(resumed, 10)
        while len(seen) < BURST:
            seen.append((await ivan.next_message())["body"])
        with pytest.raises(TimeoutError):
            await ivan.next_message(timeout=0.5)
        assert sorted(seen) == sorted(bodies)
        await close(ivan, judy)

    run(scenario())


# -- the end of a hibernation --------------------------------------------------------------

def test_an_expired_session_leaves_its_messages_in_offline_storage(short):
    async def scenario():
        bob = await login(short, "bob")
        raw, token = enabled(short, "alice")
        raw.close()
        for n in range(3):
            bob.send_message(mto=f"alice@{short.domain}/raw", mbody=f"queued {n}", mtype="chat")
        await asyncio.to_thread(wait_for_log, short, "alice@localhost/raw hibernated too long")
        late = authenticated(short, "alice")
        try:
            answer = resume(late, token, 0)
            assert b"<item-not-found" in answer and re.search(rb"h=.\d+.", answer)
        finally:
            late.close()
        alice = await login(short, "alice", resource="back")
        bodies = sorted([(await alice.next_message())["body"] for _ in range(3)])
        assert bodies == [f"queued {n}" for n in range(3)]
        with pytest.raises(TimeoutError):
            await alice.next_message(timeout=0.5)
        await close(alice, bob)

    run(scenario())


def test_an_overflowing_queue_ends_the_session_into_offline_storage(short):
    raw, _ = enabled(short, "carol")
    raw.send("<presence/>")
    raw.read_until(rb"<presence[^>]*>")

    async def scenario():
        dave = await login(short, "dave")
        for n in range(8):
            dave.send_message(mto=f"carol@{short.domain}", mbody=f"flood {n}", mtype="chat")
        closing = await asyncio.to_thread(raw.read_to_close)
        assert b"<resource-constraint" in closing
        carol = await login(short, "carol", resource="back")
        received = [(await carol.next_message())["body"] for _ in range(8)]
        seen = set(re.findall(rb"<body>(flood \d)</body>", closing))
        # Nothing lost: every message is in offline storage, those the old
        # connection was sent but never acknowledged included.
        assert sorted(received) == [f"flood {n}" for n in range(8)]
        assert all(body.decode() in received for body in seen)
        await close(carol, dave)

    try:
        run(scenario())
    finally:
        raw.close()


def test_beyond_max_hibernated_sessions_the_oldest_is_no_longer_resumable(short):
    first, first_token = enabled(short, "erin", "one")
    second, _ = enabled(short, "erin", "two")
    late = authenticated(short, "erin")
    try:
        answer = resume(late, first_token, 0)
        assert b"<item-not-found" in answer and re.search(rb"h=.0.", answer)
    finally:
        for raw in (first, second, late):
            raw.close()


def test_a_restart_leaves_hibernated_messages_in_offline_storage(tmp_path):
    server = make_server(tmp_path, modules=("smacks",))
    server.create_users(USERS)
    server.start()
    try:
        raw, token = enabled(server, "alice")
        raw.close()

        async def send() -> None:
            bob = await login(server, "bob")
            for n in range(2):
                bob.send_message(mto=f"alice@{server.domain}/raw", mbody=f"kept {n}",
                                 mtype="chat")
            await bob.plugin["xep_0199"].ping(jid=server.domain, timeout=10)  # all routed
            await close(bob)

        run(send())
        assert server.stop() == 0
        server.start()
        late = authenticated(server, "alice")
        try:
            answer = resume(late, token, 0)
            assert b"<item-not-found" in answer and re.search(rb"h=.\d+.", answer)
        finally:
            late.close()

        async def receive() -> list[str]:
            alice = await login(server, "alice", resource="back")
            bodies = sorted([(await alice.next_message())["body"] for _ in range(2)])
            await close(alice)
            return bodies

        assert run(receive()) == ["kept 0", "kept 1"]
    finally:
        assert server.stop() == 0
