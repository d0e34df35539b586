"""Modern login: SASL2 (XEP-0388), Bind 2 (XEP-0386), FAST (XEP-0484) and SCRAM
channel binding (RFC 5802, RFC 9266, XEP-0440), against a real server.

xmpp.js (@xmpp/client in tests/node) logs in over TCP, direct TLS and
WebSocket, then again with its FAST token and no password, while slixmpp
logs in the RFC 6120 way on the same server. Raw sockets send what no real
client would: replayed and stolen tokens, bindings to another TLS session,
oversized user agents, a hundred inline features.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clients import can_login, run, trusting_context
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server
from tests.scram_client import client_final
from xmpp.channel_binding import _LIBSSL
from xmpp.s2s_tls import ssl_pointer
from xmpp.sasl_ht import initiator_hash, responder_hash, token_key

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
USERS = {"nodejs": "pw-nodejs", "desk": "pw-desk", "raw": "pw-raw", "changer": "pw-changer"}
MODULES = ("sasl2", "sasl2_bind2", "sasl2_fast", "websocket", "register")
SASL2 = "urn:xmpp:sasl:2"
FAST = "urn:xmpp:fast:0"
NODE_TIMEOUT = 30.0

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@xmpp" / "client").exists(),
    reason="needs node and `npm ci` in tests/node (make test does it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("sasl2"), modules=MODULES, http=True,
                         extra="consider_websocket_secure = true\n")
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


def sessions(server) -> list[dict]:
    listing = server.admin("sessions", "--json")
    assert listing.returncode == 0, listing.stderr
    return json.loads(listing.stdout)


# -- xmpp.js ---------------------------------------------------------------------------------


async def node_login(args: dict) -> tuple[asyncio.subprocess.Process, dict]:
    """Start login_sasl2.mjs; its result once online (or failed). It stays online
    until `node_logout`."""
    node = await asyncio.create_subprocess_exec(
        "node", "--experimental-websocket", "login_sasl2.mjs", json.dumps(args), cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        # The test certificate is self-signed; the Python clients check it.
        env={**os.environ, "NODE_TLS_REJECT_UNAUTHORIZED": "0"})
    line = await asyncio.wait_for(node.stdout.readline(), NODE_TIMEOUT)
    return node, json.loads(line or b'{"ok": false, "error": "no output"}')


async def node_logout(node: asyncio.subprocess.Process) -> None:
    node.stdin.close()
    try:
        await asyncio.wait_for(node.wait(), NODE_TIMEOUT)
    except TimeoutError:
        node.kill()
        await node.wait()


def service(server, transport: str) -> str:
    return {"tcp": f"xmpp://127.0.0.1:{server.c2s_port}",
            "direct_tls": f"xmpps://127.0.0.1:{server.ports['c2s_direct_tls']}",
            "websocket": f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket"}[transport]


def session_of(server, jid: str) -> dict:
    return next(row for row in sessions(server) if row["id"] == jid)


@needs_node
@pytest.mark.parametrize("transport", ["tcp", "direct_tls", "websocket"])
def test_xmppjs_password_then_fast_token_without_password(server, transport):
    agent = {"agentId": f"c3f6a1de-{transport}", "software": "vireo-test",
             "device": f"laptop {transport}"}
    args = {"service": service(server, transport), "domain": server.domain,
            "username": "nodejs", "resource": "node", **agent}

    async def scenario():
        node, first = await node_login({**args, "password": USERS["nodejs"]})
        try:
            assert first["ok"], first
            # Bind 2: the client's tag, then a part stable for this account and device.
            assert re.fullmatch(rf"nodejs@{server.domain}/node~[\w-]{{8}}", first["jid"]), first
            assert first["token"]["token"].startswith("secret-token:fast-")
            assert first["token"]["mechanism"] == "HT-SHA-256-NONE"
            row = session_of(server, first["jid"])
            assert row["auth"] == "SCRAM-SHA-1"  # xmpp.js's best
            assert row["client"] == f"vireo-test / laptop {transport}"
        finally:
            await node_logout(node)

        node, second = await node_login({**args, "token": first["token"]})
        try:
            assert second["ok"], second
            assert second["jid"] == first["jid"]
            assert session_of(server, second["jid"])["auth"] == "HT-SHA-256-NONE"
        finally:
            await node_logout(node)

    run(scenario())
    if transport == "tcp":
        # The old way still works beside it (slixmpp: RFC 6120 SASL and bind).
        assert can_login(server, "desk", USERS["desk"])


# -- raw SASL2 -------------------------------------------------------------------------------


def tls_client(server) -> RawClient:
    """A direct TLS connection (XEP-0368) with its stream open."""
    client = RawClient(server.ports["c2s_direct_tls"])
    client.sock = trusting_context(server.cert).wrap_socket(client.sock,
                                                            server_hostname=server.domain)
    client.features = client.open_stream(server.domain)
    return client


@contextlib.contextmanager
def connected(server) -> Iterator[RawClient]:
    """A `tls_client`, closed after the block."""
    client = tls_client(server)
    try:
        yield client
    finally:
        client.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def authenticate(client: RawClient, mechanism: str, initial: bytes | None,
                 inside: str = "") -> bytes:
    response = f"<initial-response>{b64(initial)}</initial-response>" if initial else ""
    client.send(f"<authenticate xmlns='{SASL2}' mechanism='{mechanism}'>{response}"
                f"{inside}</authenticate>")
    return client.read_until(rb"</success>|</failure>|</challenge>")


def user_agent(agent_id: str) -> str:
    return (f"<user-agent id='{agent_id}'><software>raw</software>"
            "<device>test</device></user-agent>")


def condition(answer: bytes) -> str:
    match = re.search(rb"<failure xmlns=.urn:xmpp:sasl:2.><([a-z-]+) ", answer)
    assert match, answer
    return match.group(1).decode()


def fast_token(server, agent_id: str, mechanism: str = "HT-SHA-256-NONE", user: str = "raw",
               password: str | None = None) -> str:
    client = tls_client(server)
    try:
        answer = authenticate(client, "PLAIN", f"\0{user}\0{password or USERS[user]}".encode(),
                              user_agent(agent_id) + f"<request-token xmlns='{FAST}' "
                              f"mechanism='{mechanism}'/>")
        match = re.search(rb"token='([^']+)'", answer)
        assert b"<success" in answer and match, answer
        return match.group(1).decode()
    finally:
        client.close()


def fast_login(server, token: str, agent_id: str, fast: str = "", user: str = "raw") -> bytes:
    client = tls_client(server)
    try:
        proof = f"{user}\0".encode() + initiator_hash(token_key(token))
        return authenticate(client, "HT-SHA-256-NONE", proof,
                            user_agent(agent_id) + f"<fast xmlns='{FAST}' {fast}/>")
    finally:
        client.close()


def test_fast_token_replayed_stolen_or_invalidated_is_refused(server):
    token = fast_token(server, "agent-one")
    assert b"<success" in fast_login(server, token, "agent-one", "count='1'")
    # XEP-0484's count must grow: the same message again is a replay.
    assert condition(fast_login(server, token, "agent-one", "count='1'")) == "not-authorized"
    assert b"<success" in fast_login(server, token, "agent-one", "count='2'")
    # A token only works with the user agent it was issued to.
    assert condition(fast_login(server, token, "agent-two")) == "not-authorized"
    assert condition(fast_login(server, "secret-token:fast-made-up", "agent-one")) \
        == "not-authorized"
    # invalidate='true' logs in one last time.
    assert b"<success" in fast_login(server, token, "agent-one", "invalidate='true'")
    assert condition(fast_login(server, token, "agent-one")) == "not-authorized"
    # FAST without a user agent id is refused before any token is looked at.
    client = tls_client(server)
    try:
        answer = authenticate(client, "HT-SHA-256-NONE", b"raw\0" + bytes(32),
                              f"<fast xmlns='{FAST}'/>")
        assert condition(answer) == "malformed-request"
    finally:
        client.close()


def test_fast_tokens_end_when_the_password_changes(server):
    token = fast_token(server, "agent-pw", user="changer")
    assert b"<success" in fast_login(server, token, "agent-pw", user="changer")
    # In-band (XEP-0077) from a session bound by Bind 2.
    client = tls_client(server)
    try:
        answer = authenticate(client, "PLAIN", f"\0changer\0{USERS['changer']}".encode(),
                              "<bind xmlns='urn:xmpp:bind:0'/>")
        assert b"<success" in answer, answer
        client.send("<iq type='set' id='pw'><query xmlns='jabber:iq:register'>"
                    "<username>changer</username><password>pw-two</password></query></iq>")
        assert b"type='result'" in client.read_until(rb"id='pw'[^>]*>|id=.pw.")
    finally:
        client.close()
    assert condition(fast_login(server, token, "agent-pw", user="changer")) == "not-authorized"
    # From the command line (another process), as prosodyctl passwd.
    token = fast_token(server, "agent-pw", user="changer", password="pw-two")
    assert b"<success" in fast_login(server, token, "agent-pw", user="changer")
    changed = server.admin("passwd", f"changer@{server.domain}", input_text="pw-3\npw-3\n")
    assert changed.returncode == 0, changed.stderr
    assert condition(fast_login(server, token, "agent-pw", user="changer")) == "not-authorized"


def test_no_inline_feature_is_offered_without_its_module(server):
    # carbons, smacks and csi are not loaded here (test_sasl2_inline.py loads them).
    with connected(server) as client:
        features = client.features
    assert b"<bind xmlns='urn:xmpp:bind:0'/>" in features, features
    assert b"urn:xmpp:sm:3" not in features and b"urn:xmpp:carbons:2" not in features
    assert b"urn:xmpp:csi:0" not in features


def test_oversized_user_agent_and_too_many_inline_features_are_refused(server):
    client = tls_client(server)
    try:
        login = f"\0raw\0{USERS['raw']}".encode()
        answer = authenticate(client, "PLAIN", login, user_agent("x" * 500))
        assert condition(answer) == "malformed-request"
        assert b"User agent too long" in answer
        features = "".join(f"<feature{i} xmlns='urn:example:{i}'/>" for i in range(100))
        answer = authenticate(client, "PLAIN", login, user_agent("agent-three")
                              + f"<bind xmlns='urn:xmpp:bind:0'><tag>raw</tag>{features}</bind>")
        assert condition(answer) == "malformed-request"
        # The stream goes on: a sane request still succeeds, with Bind 2.
        answer = authenticate(client, "PLAIN", login, user_agent("agent-three")
                              + "<bind xmlns='urn:xmpp:bind:0'><tag>raw</tag></bind>")
        assert b"<success" in answer and b"<bound xmlns=" in answer, answer
        assert re.search(rb"<authorization-identifier>raw@localhost/raw~[\w-]{8}<", answer)
    finally:
        client.close()


# -- channel binding -------------------------------------------------------------------------


def exporter(client: RawClient) -> bytes:
    """RFC 9266's tls-exporter of the client's TLS session (the libssl call the server uses)."""
    assert _LIBSSL is not None
    data = _LIBSSL.exporter(ssl_pointer(client.sock))
    assert data is not None
    return data


def scram_plus(client: RawClient, *, binding: str, data: bytes, sasl2: bool = True,
               flag: str | None = None, mechanism: str = "SCRAM-SHA-256-PLUS") -> bytes:
    """A SCRAM exchange as user "raw", bound with `data` (flag p=`binding`)."""
    gs2 = f"{flag or 'p=' + binding},,"
    first_bare = "n=raw,r=clientnonce0123"
    if sasl2:
        answer = authenticate(client, mechanism, (gs2 + first_bare).encode())
    else:
        client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>"
                    f"{b64((gs2 + first_bare).encode())}</auth>")
        answer = client.read_until(rb"</challenge>|</failure>")
    if b"<challenge" not in answer:
        return answer
    server_first = base64.b64decode(re.search(rb"<challenge[^>]*>([^<]+)<", answer).group(1))
    final = client_final(USERS["raw"], "sha256", gs2_header=gs2, cb_data=data,
                         client_first_bare=first_bare, server_first=server_first)
    if sasl2:
        client.send(f"<response xmlns='{SASL2}'>{b64(final)}</response>")
        return client.read_until(rb"</success>|</failure>|</challenge>")
    client.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{b64(final)}</response>")
    return client.read_until(rb"<success[^>]*>|</failure>")


def test_channel_binding_to_another_tls_session_is_refused(server):
    first, second = tls_client(server), tls_client(server)
    try:
        for client in (first, second):
            assert b"<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in client.features
            assert b"<channel-binding type='tls-exporter'" in client.features
            assert b"<channel-binding type='tls-server-end-point'" in client.features
        # The binding of the first connection, presented on the second (a MITM's relay).
        answer = scram_plus(second, binding="tls-exporter", data=exporter(first))
        assert condition(answer) == "not-authorized"
        # Each connection's own binding gets in.
        assert b"<success" in scram_plus(second, binding="tls-exporter", data=exporter(second))
        end_point = hashlib.sha256(first.sock.getpeercert(binary_form=True)).digest()
        answer = scram_plus(first, binding="tls-server-end-point", data=end_point, sasl2=False)
        assert b"<success" in answer, answer
    finally:
        first.close()
        second.close()


def test_fast_token_bound_to_the_tls_session(server):
    token = fast_token(server, "agent-expr", "HT-SHA-256-EXPR")
    first, second = tls_client(server), tls_client(server)
    try:
        def login(client: RawClient, cb_data: bytes) -> bytes:
            proof = b"raw\0" + initiator_hash(token_key(token), cb_data)
            return authenticate(client, "HT-SHA-256-EXPR", proof,
                                user_agent("agent-expr") + f"<fast xmlns='{FAST}'/>")

        assert condition(login(second, exporter(first))) == "not-authorized"
        answer = login(second, exporter(second))
        assert b"<success" in answer, answer
        # The server proves it holds the token, bound to this session too.
        additional = re.search(rb"<additional-data>([^<]+)<", answer).group(1)
        assert base64.b64decode(additional) == responder_hash(token_key(token), exporter(second))
    finally:
        first.close()
        second.close()


def test_scram_downgrade_flags_are_refused(server):
    client = tls_client(server)
    try:
        # "y": the client can bind but believes the server cannot. It can: a MITM.
        answer = scram_plus(client, binding="", data=b"", flag="y", mechanism="SCRAM-SHA-256")
        assert condition(answer) == "not-authorized"
        answer = scram_plus(client, binding="tls-unique", data=b"x")  # not on TLS 1.3
        assert condition(answer) == "malformed-request"
        # XEP-0474: the server-first message names what was offered.
        answer = authenticate(client, "SCRAM-SHA-256", b"n,,n=raw,r=abc")
        server_first = base64.b64decode(re.search(rb"<challenge[^>]*>([^<]+)<", answer).group(1))
        authentication = client.features.split(b"<authentication")[1].split(b"<inline")[0]
        offered = sorted(re.findall(rb"<mechanism>([^<]+)</mechanism>", authentication))
        expected = b"\x1e".join(offered) + b"\x1ftls-exporter\x1etls-server-end-point"
        assert server_first.endswith(b",h=" + base64.b64encode(hashlib.sha256(expected).digest()))
    finally:
        client.close()


def test_plus_without_tls_is_refused(tmp_path):
    server = make_server(tmp_path, modules=("sasl2", "sasl2_fast"),
                         extra="c2s_require_encryption = false\n")
    server.create_users(USERS)
    server.start()
    try:
        client = RawClient(server.c2s_port)
        features = client.open_stream(server.domain)
        assert b"-PLUS" not in features and b"SCRAM-SHA-256" in features
        assert b"urn:xmpp:fast:0" not in features  # HT tokens would cross in the clear
        answer = authenticate(client, "SCRAM-SHA-256-PLUS", b"p=tls-exporter,,n=raw,r=abc")
        assert condition(answer) == "encryption-required"
        client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1-PLUS'>"
                    f"{b64(b'p=tls-exporter,,n=raw,r=abc')}</auth>")
        assert b"<encryption-required/>" in client.read_until(rb"</failure>")
        answer = authenticate(client, "HT-SHA-256-NONE", b"raw\0" + bytes(32),
                              user_agent("agent-clear") + f"<fast xmlns='{FAST}'/>")
        assert condition(answer) == "encryption-required"
        client.close()
    finally:
        assert server.stop() == 0


def test_starttls_tls12_offers_tls_unique(server):
    client = RawClient(server.c2s_port)
    try:
        client.open_stream(server.domain)
        client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        client.read_until(rb"<proceed")
        context = trusting_context(server.cert)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        client.sock = context.wrap_socket(client.sock, server_hostname=server.domain)
        client.features = client.open_stream(server.domain)
        for kind in (b"tls-exporter", b"tls-unique", b"tls-server-end-point"):
            assert b"<channel-binding type='" + kind + b"'" in client.features
        assert b"<mechanism>HT-SHA-256-UNIQ</mechanism>" in client.features
        unique = client.sock.get_channel_binding("tls-unique")
        assert b"<success" in scram_plus(client, binding="tls-unique", data=unique)
    finally:
        client.close()
