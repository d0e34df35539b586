"""xmpp.js (@xmpp/client) in Node over ws:// logs in and chats with a slixmpp user on TCP.

Needs node and `npm ci` in tests/node (`make test` does both).
"""

from __future__ import annotations

import asyncio
import json
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


def test_xmppjs_logs_in_over_websocket_and_chats(tmp_path):
    # Plain ws:// on loopback, as behind a TLS-terminating proxy.
    server = make_server(tmp_path, modules=("websocket",), http=True,
                         extra="consider_websocket_secure = true\n")
    server.create_users(USERS)
    server.start()

    async def scenario():
        desk = await login(server, "desk")
        args = {"service": f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket",
                "domain": server.domain, "username": "nodejs", "password": USERS["nodejs"],
                "to": f"desk@{server.domain}", "text": "hello from node",
                "expect": "hello from desk"}
        node = await asyncio.create_subprocess_exec(
            "node", "--experimental-websocket", "run_xmppjs.mjs", json.dumps(args),
            cwd=NODE_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            message = await desk.next_message(timeout=30)
            assert message["body"] == "hello from node"
            desk.send_message(mto=str(message["from"]), mbody="hello from desk", mtype="chat")
            stdout, stderr = await asyncio.wait_for(node.communicate(), 30)
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
            await close(desk)
        return json.loads(stdout.decode().strip().splitlines()[-1]), stderr

    try:
        result, stderr = run(scenario())
        assert result["ok"], (result, stderr)
        assert result["from"] == f"desk@{server.domain}/test"
    finally:
        assert server.stop() == 0
