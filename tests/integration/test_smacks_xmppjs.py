"""xmpp.js (@xmpp/client) stream management against Vireo: its socket is cut after
a message, it reconnects and resumes, and every message arrives exactly once,
over ws:// and over TCP (STARTTLS) after an RFC 6120 login, and over wss://
(the https port) and TCP after a SASL2 login, where xmpp.js enables stream
management inside Bind 2 and resumes inside `<authenticate/>`.

Needs node and `npm ci` in tests/node (`make test` does both).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.integration.clients import close, login, run
from tests.integration.server_fixture import make_server

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
USERS = {"nodejs": "pw-nodejs", "desk": "pw-desk"}

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@xmpp" / "client").exists(),
    reason="needs node and `npm ci` in tests/node (make test does it)")


def start_server(directory, modules: tuple[str, ...]):
    # Plain ws:// on loopback, as behind a TLS-terminating proxy.
    server = make_server(directory, modules=("websocket", "smacks", *modules),
                         http=True, extra="consider_websocket_secure = true\n")
    server.create_users(USERS)
    server.start()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("smacks-xmppjs"), ())
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def sasl2_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("smacks-xmppjs-sasl2"),
                          ("sasl2", "sasl2_bind2"))
    yield server
    assert server.stop() == 0


@pytest.mark.parametrize("transport", ["websocket", "tcp"])
def test_xmppjs_resumes_after_its_socket_is_cut(server, transport):
    service = (f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket"
               if transport == "websocket" else f"xmpp://127.0.0.1:{server.c2s_port}")
    online, _ = cut_and_resume(server, service, transport)
    assert online["jid"] == f"nodejs@{server.domain}/node"


@pytest.mark.parametrize("transport", ["wss", "tcp"])
def test_xmppjs_resumes_inside_sasl2_after_its_socket_is_cut(sasl2_server, transport):
    server = sasl2_server
    # wss:// names the certificate's host; Node asked for IPv4 first reaches 127.0.0.1.
    service = (f"wss://{server.domain}:{server.ports['https']}/xmpp-websocket"
               if transport == "wss" else f"xmpp://127.0.0.1:{server.c2s_port}")
    online, log = cut_and_resume(server, service, transport)
    # Bind 2's resource: xmpp.js's tag and a part of the server's.
    assert re.fullmatch(rf"nodejs@{server.domain}/node~[\w-]{{8}}", online["jid"]), online
    assert "resumption inside SASL2" in log


def cut_and_resume(server, service: str, transport: str) -> tuple[dict, str]:
    """Run run_xmppjs_resume.mjs: its "online" line and the server's log of the run."""
    args = {"service": service, "domain": server.domain, "username": "nodejs",
            "password": USERS["nodejs"], "expect": ["before the cut", "during the cut"]}
    log_start = server.log_path.stat().st_size

    async def scenario():
        desk = await login(server, "desk", resource=transport)
        node = await asyncio.create_subprocess_exec(
            "node", "--experimental-websocket", "--dns-result-order=ipv4first",
            "run_xmppjs_resume.mjs", json.dumps(args),
            cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_EXTRA_CA_CERTS": str(server.cert)})
        events, online = [], {}
        try:
            async with asyncio.timeout(40):
                while True:
                    line = json.loads(await node.stdout.readline() or b'{"event": "eof"}')
                    events.append(line["event"])
                    if line["event"] == "online":
                        online = line
                        desk.send_message(mto=line["jid"], mbody="before the cut", mtype="chat")
                    elif line["event"] == "cut":
                        desk.send_message(mto=online["jid"], mbody="during the cut",
                                          mtype="chat")
                    elif line["event"] in ("done", "failed", "eof"):
                        break
            stderr = await node.stderr.read()
        finally:
            if node.returncode is None:
                node.kill()
            await node.wait()
            await close(desk)
        return online, line, events, stderr

    online, line, events, stderr = run(scenario())
    assert line["event"] == "done", (line, stderr)
    assert "resumed" in events, events
    assert sorted(line["received"]) == ["before the cut", "during the cut"]
    with server.log_path.open("rb") as log:
        log.seek(log_start)
        return online, log.read().decode(errors="replace")
