"""xmpp.js (@xmpp/client) stream management against Vireo: its socket is cut after
a message, it reconnects and resumes, and every message arrives exactly once,
over ws:// and over TCP (STARTTLS).

Needs node and `npm ci` in tests/node (`make test` does both).
"""

from __future__ import annotations

import asyncio
import json
import os
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Plain ws:// on loopback, as behind a TLS-terminating proxy.
    server = make_server(tmp_path_factory.mktemp("smacks-xmppjs"), modules=("websocket", "smacks"),
                         http=True, extra="consider_websocket_secure = true\n")
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


@pytest.mark.parametrize("transport", ["websocket", "tcp"])
def test_xmppjs_resumes_after_its_socket_is_cut(server, transport):
    service = (f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket"
               if transport == "websocket" else f"xmpp://127.0.0.1:{server.c2s_port}")
    args = {"service": service, "domain": server.domain, "username": "nodejs",
            "password": USERS["nodejs"], "expect": ["before the cut", "during the cut"]}
    to = f"nodejs@{server.domain}/node"

    async def scenario():
        desk = await login(server, "desk", resource=transport)
        node = await asyncio.create_subprocess_exec(
            "node", "--experimental-websocket", "run_xmppjs_resume.mjs", json.dumps(args),
            cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_EXTRA_CA_CERTS": str(server.cert)})
        events = []
        try:
            async with asyncio.timeout(40):
                while True:
                    line = json.loads(await node.stdout.readline() or b'{"event": "eof"}')
                    events.append(line["event"])
                    if line["event"] == "online":
                        desk.send_message(mto=to, mbody="before the cut", mtype="chat")
                    elif line["event"] == "cut":
                        desk.send_message(mto=to, mbody="during the cut", mtype="chat")
                    elif line["event"] in ("done", "failed", "eof"):
                        break
            stderr = await node.stderr.read()
        finally:
            if node.returncode is None:
                node.kill()
            await node.wait()
            await close(desk)
        return line, events, stderr

    line, events, stderr = run(scenario())
    assert line["event"] == "done", (line, stderr)
    assert "resumed" in events, events
    assert sorted(line["received"]) == ["before the cut", "during the cut"]
