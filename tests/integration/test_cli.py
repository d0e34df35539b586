"""prosodyctl's words on app.py: account commands, check, migrate, and config errors."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import termios
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.db import Database, database_url
from storage.offline import OfflineStore
from storage.roster import RosterItem, RosterStore
from tests.integration.clients import can_login
from tests.integration.server_fixture import ROOT, make_server
from xmpp.config import load_config

TABLES = {"accounts", "roster_items", "roster_groups", "roster_pending", "roster_versions",
          "offline_messages", "alembic_version"}






def app(config: Path, *args: str) -> subprocess.CompletedProcess:
    """app.py on a config that is not a running test server's."""
    return subprocess.run([sys.executable, str(ROOT / "app.py"), "-c", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("cli"))
    server.create_users({"existing": "pw-existing"})
    server.start()
    yield server
    assert server.stop() == 0


# -- accounts --------------------------------------------------------------------------

def test_register_creates_an_account_that_can_log_in(server):
    result = server.admin("register", "newbie", server.domain, "pw-newbie")
    assert result.returncode == 0, output(result)
    assert can_login(server, "newbie", "pw-newbie")
    assert not can_login(server, "newbie", "another")


def test_register_with_a_file_log_leaves_stderr_clean(tmp_path):
    """Nothing on stderr at exit: with HTTP configured (Flask imported) it printed
    "greenlet is being finalized" from logging's handler clean-up under gevent."""
    config = make_server(tmp_path, http=True, modules=("bosh",)).config_path
    result = app(config, "register", "quiet", "localhost", "pw-quiet")
    assert result.returncode == 0, output(result)
    assert result.stderr == ""


def test_register_refuses_an_existing_account(server):
    result = server.admin("register", "existing", server.domain, "whatever")
    assert result.returncode != 0
    assert "existing@localhost already exists" in result.stderr
    assert can_login(server, "existing", "pw-existing")


def test_register_refuses_an_unknown_host(server):
    result = server.admin("register", "someone", "elsewhere.example", "pw")
    assert result.returncode != 0
    assert "elsewhere.example" in result.stderr


def test_register_refuses_an_invalid_username(server):
    result = server.admin("register", "bad user", server.domain, "pw")
    assert result.returncode != 0
    assert "Traceback" not in output(result)


def test_adduser_asks_for_the_password_twice(server):
    result = server.admin("adduser", server.jid("added"), input_text="pw-added\npw-added\n")
    assert result.returncode == 0, output(result)
    assert can_login(server, "added", "pw-added")


def test_adduser_reads_piped_passwords_even_with_a_terminal(server):
    """As with prosodyctl, `printf 'pw\\npw\\n' | app.py adduser` works from a shell."""
    primary, secondary = os.openpty()

    def own_terminal() -> None:  # the child gets a controlling terminal, as in a shell
        os.setsid()
        fcntl.ioctl(secondary, termios.TIOCSCTTY, 0)

    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "-c", str(server.config_path),
             "adduser", server.jid("piped")],
            cwd=ROOT, input="pw-piped\npw-piped\n", capture_output=True, text=True,
            timeout=30, preexec_fn=own_terminal)
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 0, output(result)
    assert can_login(server, "piped", "pw-piped")


def test_adduser_with_mismatched_passwords_creates_nothing(server):
    result = server.admin("adduser", server.jid("mismatch"), input_text="one\ntwo\n")
    assert result.returncode != 0
    assert "did not match" in result.stderr
    again = server.admin("adduser", server.jid("mismatch"), input_text="same\nsame\n")
    assert again.returncode == 0, output(again)


def test_adduser_refuses_an_existing_account(server):
    result = server.admin("adduser", server.jid("existing"), input_text="x\nx\n")
    assert result.returncode != 0
    assert "already exists" in result.stderr


def test_passwd_replaces_the_password(server):
    assert server.admin("register", "changer", server.domain, "old-pw").returncode == 0
    assert can_login(server, "changer", "old-pw")  # the server now caches this password
    result = server.admin("passwd", server.jid("changer"), input_text="new-pw\nnew-pw\n")
    assert result.returncode == 0, output(result)
    assert not can_login(server, "changer", "old-pw")
    assert can_login(server, "changer", "new-pw")


def test_passwd_of_a_missing_account_fails(server):
    result = server.admin("passwd", server.jid("nobody"), input_text="x\nx\n")
    assert result.returncode != 0
    assert "No such account" in result.stderr


def test_deluser_removes_the_account_and_its_rows(server):
    assert server.admin("register", "leaver", server.domain, "pw-leaver").returncode == 0
    assert can_login(server, "leaver", "pw-leaver")
    database = Database(database_url(load_config(server.config_path)))
    try:
        rosters, offline = RosterStore(database), OfflineStore(database)
        rosters.put_item(server.domain, "leaver", RosterItem(server.jid("existing"),
                                                             groups=["Pals"]))
        rosters.set_pending_in(server.domain, "leaver", server.jid("added"), None)
        offline.store(server.domain, "leaver", "<message><body>hi</body></message>",
                      datetime.now(UTC))

        result = server.admin("deluser", server.jid("leaver"))
        assert result.returncode == 0, output(result)

        assert rosters.get_roster(server.domain, "leaver") == {}
        assert rosters.pending_in(server.domain, "leaver") == {}
        assert offline.count(server.domain, "leaver") == 0
    finally:
        database.close()
    assert not can_login(server, "leaver", "pw-leaver")
    again = server.admin("deluser", server.jid("leaver"))
    assert again.returncode != 0
    assert "No such account" in again.stderr


@pytest.mark.parametrize(("jid", "named"), [("no-at-sign", "no-at-sign"),
                                           ("user@elsewhere.example", "elsewhere.example"),
                                           ("user@localhost/res", "user@localhost/res")])
def test_account_commands_refuse_bad_jids(server, jid, named):
    result = server.admin("deluser", jid)
    assert result.returncode != 0
    assert named in result.stderr
    assert "Traceback" not in result.stderr


# -- check --------------------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_check_reports_a_syntax_error_with_file_and_line(tmp_path):
    config = write(tmp_path / "broken.cfg.lua",
                   'data_path = "data"\n\nmodules_enabled = { "roster" \nVirtualHost "a"\n')
    result = app(config, "check")
    assert result.returncode != 0
    assert f"{config}:4" in output(result)


def test_check_reports_an_error_inside_an_included_file(tmp_path):
    included = write(tmp_path / "conf.d" / "host.cfg.lua",
                     'VirtualHost "b.example"\n\nallow_registration = = true\n')
    config = write(tmp_path / "main.cfg.lua",
                   f'data_path = "data"\nInclude "{tmp_path}/conf.d/*.cfg.lua"\n')
    result = app(config, "check")
    assert result.returncode != 0
    assert f"{included}:3" in output(result)


def test_check_warns_about_unknown_options_and_passes(tmp_path):
    make_server(tmp_path, extra="surely_not_an_option = 42")
    result = app(tmp_path / "vireo.cfg.lua", "check")
    assert result.returncode == 0, output(result)
    assert "surely_not_an_option" in result.stdout
    assert "Warning" in result.stdout


def test_check_warns_about_unknown_modules_and_passes(tmp_path):
    make_server(tmp_path, host_extra='modules_enabled = { "no_such_module" }')
    result = app(tmp_path / "vireo.cfg.lua", "check")
    assert result.returncode == 0, output(result)
    warnings = [line for line in result.stdout.splitlines() if line.startswith("Warning")]
    assert any("no_such_module" in line for line in warnings), result.stdout


@pytest.mark.parametrize("command", [("check",), ("run",), ("register", "u", "anon.example", "pw")])
def test_an_authentication_provider_vireo_lacks_is_an_error(tmp_path, command):
    """Not password logins in its place: check fails, and run (and the account
    commands) refuse the config instead of serving the host."""
    make_server(tmp_path, extra='authentication = "internal_plain"',
                host_extra='VirtualHost "anon.example"\n    authentication = "anonymous"\n'
                           'VirtualHost "ldap.example"\n    authentication = "ldap"\n')
    result = app(tmp_path / "vireo.cfg.lua", *command)
    assert result.returncode == 1, output(result)
    assert "Traceback" not in result.stderr
    assert 'VirtualHost "ldap.example": authentication = \'ldap\' is not available' \
        in result.stderr
    assert "anon.example" not in result.stderr  # mod_auth_anonymous is implemented
    assert "localhost" not in result.stderr  # internal_plain, inherited, is fine
    assert not (tmp_path / "vireo.pid").exists()


def test_check_warns_about_a_missing_certificate(tmp_path):
    missing = tmp_path / "nowhere.crt"
    config = write(tmp_path / "vireo.cfg.lua", f"""
data_path = "{tmp_path / 'data'}"
VirtualHost "nocert.example"
VirtualHost "badpath.example"
ssl = {{ certificate = "{missing}", key = "{tmp_path / 'nowhere.key'}" }}
""")
    result = app(config, "check")
    assert result.returncode == 0, output(result)
    warnings = [line for line in result.stdout.splitlines() if line.startswith("Warning")]
    assert any("nocert.example" in line for line in warnings), result.stdout
    assert any("badpath.example" in line and str(missing) in line for line in warnings), \
        result.stdout


def test_check_of_a_clean_config_passes_without_warnings(tmp_path):
    make_server(tmp_path)
    result = app(tmp_path / "vireo.cfg.lua", "check")
    assert result.returncode == 0, output(result)
    assert "Warning" not in result.stdout


# -- migrate and missing configs ------------------------------------------------------

def test_migrate_creates_the_schema_and_can_run_twice(tmp_path):
    config = write(tmp_path / "vireo.cfg.lua",
                   f'data_path = "{tmp_path / "data"}"\nVirtualHost "localhost"\n')
    first = app(config, "migrate")
    assert first.returncode == 0, output(first)
    database = next((tmp_path / "data").glob("*.sqlite"))
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        (head,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert tables >= TABLES
    second = app(config, "migrate")
    assert second.returncode == 0, output(second)
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == \
            [(head,)]


@pytest.mark.parametrize("command", [["run"], ["check"], ["migrate"],
                                     ["register", "a", "localhost", "b"]])
def test_missing_config_file_is_a_clear_error(tmp_path, command):
    missing = tmp_path / "absent.cfg.lua"
    result = app(missing, *command)
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr
