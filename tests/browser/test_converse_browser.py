"""Converse.js in a real browser over WebSocket, from a page of another origin.

Headless Chromium (Debian's) loads converse_page.html from a small static server
on its own port, so the WebSocket upgrade is cross-origin; Converse.js logs in
over `ws://` to /xmpp-websocket, opens a chat with a slixmpp user over TCP and
gets the reply in its chat box. Needs Debian's `chromium` and `npm ci` in this
folder (`make test` does both).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.browser.conftest import RUN_TIMEOUT, run_page
from tests.integration.clients import close, login
from tests.integration.server_fixture import make_server

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
USERS = {"converse": "pw-converse", "desk": "pw-desk"}

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which("node") is None
    or not (HERE / "node_modules" / "converse.js").exists(),
    reason="needs Debian's chromium, node and `npm ci` in tests/browser (make test does it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Plain http on loopback, as behind a TLS-terminating proxy. Converse.js waits for
    # the XEP-0191 blocklist before it opens a chat, so the server offers it.
    server = make_server(tmp_path_factory.mktemp("converse"), modules=("websocket", "blocklist"),
                         http=True, extra="consider_websocket_secure = true\n")
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


def test_converse_in_chromium_logs_in_over_websocket_and_chats_with_a_tcp_user(
        server, page_origin):
    args = {
        "entry": "runConverse", "pageUrl": f"{page_origin}/converse_page.html",
        "websocketUrl": f"ws://127.0.0.1:{server.ports['http']}/xmpp-websocket",
        "jid": f"{server.jid('converse')}/chromium", "password": USERS["converse"],
        "peer": server.jid("desk"), "text": "hello from converse", "timeoutMs": 30000,
    }

    async def scenario():
        desk = await login(server, "desk", resource="desk")

        def reply(message) -> None:
            if message["type"] in ("chat", "normal") and message["body"]:
                desk.send_message(mto=message["from"], mbody="pong: " + message["body"],
                                  mtype="chat")

        desk.add_event_handler("message", reply)
        result = await asyncio.to_thread(run_page, args)
        received = await desk.next_message()
        await close(desk)
        return result, received

    result, received = asyncio.run(asyncio.wait_for(scenario(), RUN_TIMEOUT + 30))
    assert result["connected"], result
    assert result["transport"] == "websocket", result
    assert result["jid"] == f"{server.jid('converse')}/chromium"
    assert result["reply"] == "pong: hello from converse", result
    assert result["from"] == f"{server.jid('desk')}/desk"
    assert received["body"] == "hello from converse"
    assert str(received["from"]) == f"{server.jid('converse')}/chromium"
    assert result["pageOrigin"] != f"http://127.0.0.1:{server.ports['http']}"
