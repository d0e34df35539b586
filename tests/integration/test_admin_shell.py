"""The admin shell (Prosody's mod_admin_shell) through the admin socket, as
`app.py shell` gives it: one command as arguments, or lines typed at the prompt."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.integration.clients import close, login, run, try_login
from tests.integration.raw_client import raw_login
from tests.integration.server_fixture import make_server
from tests.integration.test_operator_modules import other_host_user, two_host_server

USERS = {"ann": "ann-pw", "ben": "ben-pw"}


@pytest.fixture
def server(tmp_path):
    server = make_server(tmp_path / "shell", modules=("admin_shell",))
    server.create_users(USERS)
    server.start()
    yield server
    server.stop()


def test_commands_as_arguments(server):
    listed = server.admin("shell", 'user:list("localhost")')
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["| ann@localhost", "| ben@localhost",
                                          "OK: Showing all 2 users"]
    created = server.admin("shell", 'user:create("cid@localhost", "cid-pw")')
    assert created.stdout.strip() == "OK: User created"
    again = server.admin("shell", 'user:create("cid@localhost", "x")')
    assert (again.returncode, again.stdout.strip()) == (1, "! User exists")
    assert server.admin("shell", "user:password('cid@localhost', 'new-pw')").stdout.strip() \
        == "OK: User password changed"
    server.users["cid"] = "new-pw"

    async def cid_logs_in():
        client = await login(server, "cid", presence=False)
        shown = await asyncio.to_thread(server.admin, "shell", "c2s:show()")
        assert "cid@localhost/test" in shown.stdout
        assert shown.stdout.strip().endswith("OK: 1 c2s sessions shown")
        await close(client)

    run(cid_logs_in())
    assert server.admin("shell", 'user:delete("cid@localhost")').stdout.strip() \
        == "OK: User deleted"

    async def cid_is_gone():
        assert await try_login(server, "cid", "new-pw") is None

    run(cid_is_gone())
    assert server.admin("shell", 'user:list("nowhere.example")').stdout.strip() \
        == "! No such host"
    assert server.admin("shell", "s2s:show()").stdout.strip() == "OK: 0 s2s sessions shown"
    assert server.admin("shell", "server:version()").stdout.startswith("OK: ")
    assert "This server has been running for 0 days" in server.admin(
        "shell", "server:uptime()").stdout
    modules = server.admin("shell", "module:list()").stdout
    assert "Global:\n|     admin_shell\n|     c2s" in modules and "|     roster" in modules
    bad = server.admin("shell", "os.execute('id')")
    assert bad.returncode == 1 and bad.stdout.startswith("! ")


def test_interactive_prompt_and_shutdown_with_its_reason_to_every_host(tmp_path):
    server = two_host_server(tmp_path / "shell", modules=("admin_shell",))
    server.create_users(USERS)
    server.start()
    ann, _features = raw_login(server, "ann")
    cid = other_host_user(server)
    try:
        typed = server.admin("shell", input_text='user:list("localhost")\nnot a command\n'
                                                 'server:shutdown("maintenance")\n')
        assert typed.returncode == 0, typed.stderr
        assert "| ann@localhost" in typed.stdout
        assert "! expected a command like" in typed.stdout
        assert "OK: Shutdown initiated" in typed.stdout
        # Prosody's prosody.shutdown(reason): the reason ends every stream.
        for client in (ann, cid):
            assert re.search(rb"<system-shutdown [^>]*/><text [^>]*>maintenance</text>",
                             client.read_to_close())
        assert server.process.wait(timeout=15) == 0
    finally:
        ann.close()
        cid.close()
        server.stop()
