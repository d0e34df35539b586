"""A real browser over BOSH: headless Chromium runs Strophe.js from a page of another origin.

The page is served by a small static server on its own port, so every BOSH
request is cross-origin: with CORS on (the default) Strophe logs in and chats
with a slixmpp user; with `http_cors_override.bosh` off the browser refuses to
let the page connect. Needs Debian's `chromium` and `npm ci` in this folder
(`make test` does both).
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
USERS = {"browser": "pw-browser", "desk": "pw-desk"}

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which("node") is None
    or not (HERE / "node_modules" / "playwright-core").exists(),
    reason="needs Debian's chromium, node and `npm ci` in tests/browser (make test does it)")


def start_server(directory: Path, extra: str = ""):
    # Plain http on loopback, as behind a TLS-terminating proxy.
    server = make_server(directory, modules=("bosh",), http=True,
                         extra="consider_bosh_secure = true\n" + extra)
    server.create_users(USERS)
    server.start()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("browser"))
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def no_cors_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("browser-nocors"),
                          "http_cors_override = { bosh = { enabled = false } }\n")
    yield server
    assert server.stop() == 0


def run_browser(server, page_origin: str, text: str, timeout_ms: int = 20000) -> dict:
    args = {
        "pageUrl": f"{page_origin}/bosh_page.html",
        "boshUrl": f"http://127.0.0.1:{server.ports['http']}/http-bind",
        "jid": f"{server.jid('browser')}/chromium", "password": USERS["browser"],
        "peer": server.jid("desk"), "text": text, "timeoutMs": timeout_ms,
    }
    return run_page(args)


def test_strophe_in_chromium_logs_in_and_chats_with_a_tcp_user(server, page_origin):
    async def scenario():
        desk = await login(server, "desk", resource="desk")

        def reply(message) -> None:
            if message["type"] in ("chat", "normal") and message["body"]:
                desk.send_message(mto=message["from"], mbody="pong: " + message["body"],
                                  mtype="chat")

        desk.add_event_handler("message", reply)
        result = await asyncio.to_thread(run_browser, server, page_origin, "ping from chromium")
        received = await desk.next_message()
        await close(desk)
        return result, received

    result, received = asyncio.run(asyncio.wait_for(scenario(), RUN_TIMEOUT + 30))
    assert result["connected"], result
    assert result["jid"] == f"{server.jid('browser')}/chromium"
    assert result["reply"] == "pong: ping from chromium", result
    assert result["from"] == f"{server.jid('desk')}/desk"
    assert received["body"] == "ping from chromium"
    assert str(received["from"]) == f"{server.jid('browser')}/chromium"
    assert result["pageOrigin"] != f"http://127.0.0.1:{server.ports['http']}"


def test_with_cors_off_for_bosh_the_page_cannot_connect(no_cors_server, page_origin):
    result = run_browser(no_cors_server, page_origin, "never sent", timeout_ms=5000)
    assert not result["connected"], result
    assert result["reply"] is None
    assert any("CORS" in error or "Access-Control" in error
               for error in result["consoleErrors"]), result
