"""Start a real Vireo server process on ephemeral loopback ports for integration tests."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from storage.accounts import AccountStore
from storage.db import Database, database_url
from tests.certs import make_self_signed
from tests.integration.fork_server import ForkServer
from xmpp.config import load_config

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0
LOWEST_PORT = 10000
PORT_ATTEMPTS = 200


def ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


# Ports this process handed out: free again once picked (nothing binds them until the
# server starts), so a second pick for the same config or a server started later
# could get one of them; never twice per test process (some 20,000 to pick from).
_PICKED: set[tuple[str, int]] = set()


def free_port(address: str = "127.0.0.1") -> int:
    """A port free on `address` now, for a server to bind soon after.

    Picked below the kernel's ephemeral range: every outgoing connection (clients,
    PostgreSQL) takes its local port from that range, and could take a port picked
    there (`bind(0)`) before the server binds it ("Address already in use").
    """
    top = max(ephemeral_range_start(), 2 * LOWEST_PORT)  # (overlaps a range set that low)
    for _ in range(PORT_ATTEMPTS):
        port = random.randrange(LOWEST_PORT, top)
        if (address, port) in _PICKED:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                continue
            _PICKED.add((address, port))
            return port
    raise RuntimeError(f"no free port on {address} in {PORT_ATTEMPTS} tries")


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = STARTUP_TIMEOUT,
                  address: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} during startup")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {address}:{port} after {timeout}s")


def spawn_logged(command: list[str], directory: Path, *, cwd: Path) -> subprocess.Popen:
    """Start a server in its own session, its output appended to directory/stderr.log."""
    with open(directory / "stderr.log", "ab") as output:
        return subprocess.Popen(command, cwd=cwd, stdout=output, stderr=output,
                                start_new_session=True)


def stop_process(process: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout` (to its whole session when it leads
    one); the exit status."""
    if process is None or process.poll() is not None:
        return process.returncode if process else None
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        if os.getsid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        return process.wait(timeout)


@dataclass
class ServerProcess:
    """A running server and what tests need to reach it."""

    directory: Path
    domain: str
    ports: dict[str, int]
    cert: Path
    key: Path
    config_path: Path
    process: subprocess.Popen | None = None
    fork_server: ForkServer | None = None
    users: dict[str, str] = field(default_factory=dict)
    address: str = "127.0.0.1"

    @property
    def c2s_port(self) -> int:
        return self.ports["c2s"]

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def use_fork_server(self) -> None:
        """Start servers from now on by forking one that has done the imports
        (tests/integration/fork_server.py), until `stop`."""
        self.fork_server = ForkServer(ROOT, self.config_path, self.directory / "stderr.log")

    def start(self) -> None:
        if self.fork_server is not None:
            self.process = self.fork_server.fork()
        else:
            self.process = spawn_logged(
                [sys.executable, str(ROOT / "app.py"), "-c", str(self.config_path), "run"],
                self.directory, cwd=ROOT)
        wait_for_port(self.c2s_port, self.process, address=self.address)
        if "http" in self.ports:  # the HTTP ports open last
            wait_for_port(self.ports["http"], self.process)

    def stop(self, timeout: float = 10.0) -> int | None:
        status = stop_process(self.process, timeout)
        if self.fork_server is not None:
            self.fork_server, fork_server = None, self.fork_server
            fork_server.close(timeout)
        return status

    def admin(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "-c", str(self.config_path), *args],
            cwd=ROOT, input=input_text, capture_output=True, text=True, timeout=60)

    def sessions(self) -> list[dict]:
        """The live sessions, as `app.py sessions --json` lists them."""
        result = self.admin("sessions", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    @contextlib.contextmanager
    def database(self) -> Iterator[Database]:
        """The server's database, found from its config as the server finds it."""
        database = Database(database_url(load_config(self.config_path)))
        try:
            yield database
        finally:
            database.close()

    def query(self, statement: str, **params: object) -> list[tuple]:
        """Run one SQL statement (`:name` parameters) on the server's database; its rows."""
        with self.database() as database, database.engine.begin() as connection:
            result = connection.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []

    def create_users(self, users: dict[str, str]) -> None:
        """Accounts straight through the storage API: fast, and the same code the server uses."""
        with self.database() as database:
            database.migrate()
            accounts = AccountStore(database)
            for user, password in users.items():
                if not accounts.exists(self.domain, user):
                    accounts.create(self.domain, user, password)
        self.users.update(users)

    def jid(self, user: str) -> str:
        return f"{user}@{self.domain}"


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Databases:
    """Where test servers keep their data: "sqlite", Prosody's default (a file in each
    server's data_path), or "postgresql": on the database at `server_url`, a role and a
    schema of its own for each server, so parallel workers never share tables (a role's
    default search_path, "$user", puts its tables in the schema of its name). Dropped by
    `drop_all`; schemas rather than databases, as each DROP DATABASE waits out a
    checkpoint (seconds on a busy machine)."""

    def __init__(self, backend: str, server_url: str | None = None) -> None:
        self.backend = backend
        self.server_url = server_url
        self.created: list[str] = []

    def config(self) -> str:
        """Config lines for one new server: none for SQLite; for PostgreSQL, Prosody's
        `storage = "sql"` and an `sql` table naming a new role with an empty schema."""
        if self.backend == "sqlite":
            return ""
        assert self.server_url is not None
        name, password = f"vireo_test_{uuid.uuid4().hex[:16]}", uuid.uuid4().hex
        self._admin(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'",
                    f'CREATE SCHEMA "{name}" AUTHORIZATION "{name}"')
        self.created.append(name)
        url = make_url(self.server_url)
        fields = {"driver": "PostgreSQL", "database": url.database, "host": url.host,
                  "port": url.port, "username": name, "password": password}
        table = ", ".join(f"{key} = {value if isinstance(value, int) else lua_string(value)}"
                          for key, value in fields.items() if value is not None)
        return f'storage = "sql"\nsql = {{ {table} }}\n'

    def drop_all(self) -> None:
        for name in self.created:
            self._admin(f'DROP SCHEMA IF EXISTS "{name}" CASCADE', f'DROP ROLE IF EXISTS "{name}"')
        self.created.clear()

    def _admin(self, *statements: str) -> None:
        engine = create_engine(self.server_url)
        try:
            with engine.begin() as connection:
                for statement in statements:
                    connection.execute(text(statement))
        finally:
            engine.dispose()


def make_server(directory: Path, *, domain: str = "localhost", extra: str = "",
                address: str = "127.0.0.1", s2s: bool = False,
                host_extra: str = "", modules: tuple[str, ...] = (),
                http: bool = False, database: str = "") -> ServerProcess:
    """Write a config (with a self-signed certificate for `domain`) and pick ports on
    `address`; federation is off (`modules_disabled = { "s2s" }`) unless `s2s`.

    With `http`, the http and https ports are set too (on 127.0.0.1). `database` holds
    the lines of `Databases.config()`; without them the data is in SQLite.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = make_self_signed(directory, domain)
    ports = {"c2s": free_port(address), "c2s_direct_tls": free_port(address),
             "component": free_port()}
    if s2s:
        ports["s2s"] = free_port(address)
    s2s_line = (f's2s_ports = {{ {ports["s2s"]} }}' if s2s else 'modules_disabled = { "s2s" }')
    if http:
        ports.update(http=free_port(), https=free_port())
        extra = (f'http_ports = {{ {ports["http"]} }}\nhttp_interfaces = {{ "127.0.0.1" }}\n'
                 f'https_ports = {{ {ports["https"]} }}\nhttps_interfaces = {{ "127.0.0.1" }}\n'
                 + extra)
    enabled = ("roster", "saslauth", "tls", "disco", "ping", "version", "time", "uptime",
               *modules)
    config = directory / "vireo.cfg.lua"
    config.write_text(f"""
data_path = "{directory / 'data'}"
pidfile = "{directory / 'vireo.pid'}"
log = {{ debug = "{directory / 'server.log'}", warn = "*stderr" }}
interfaces = {{ "{address}" }}
c2s_ports = {{ {ports['c2s']} }}
c2s_direct_tls_ports = {{ {ports['c2s_direct_tls']} }}
component_ports = {{ {ports['component']} }}
modules_enabled = {{ {', '.join(f'"{m}"' for m in enabled)} }}
{s2s_line}
ssl = {{ certificate = "{cert}", key = "{key}" }}
vireo_auth_failure_delay = 0.2
{database}{extra}

VirtualHost "{domain}"
{host_extra}
""")
    return ServerProcess(directory, domain, ports, cert, key, config, address=address)


@contextlib.contextmanager
def serving(directory: Path, users: dict[str, str], **options) -> Iterator[ServerProcess]:
    """make_server(directory, **options) with `users`, started; stopped cleanly
    (exit status 0) when the block ends: a module-scoped fixture's whole life."""
    server = make_server(directory, **options)
    server.create_users(users)
    server.start()
    yield server
    assert server.stop() == 0
