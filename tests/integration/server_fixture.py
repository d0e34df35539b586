"""Start a real Vireo server process on ephemeral loopback ports for integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.certs import make_self_signed

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


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
    users: dict[str, str] = field(default_factory=dict)
    address: str = "127.0.0.1"

    @property
    def c2s_port(self) -> int:
        return self.ports["c2s"]

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def start(self) -> None:
        self.process = spawn_logged(
            [sys.executable, str(ROOT / "app.py"), "-c", str(self.config_path), "run"],
            self.directory, cwd=ROOT)
        wait_for_port(self.c2s_port, self.process, address=self.address)
        if "http" in self.ports:  # the HTTP ports open last
            wait_for_port(self.ports["http"], self.process)

    def stop(self, timeout: float = 10.0) -> int | None:
        return stop_process(self.process, timeout)

    def admin(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "-c", str(self.config_path), *args],
            cwd=ROOT, input=input_text, capture_output=True, text=True, timeout=60)

    def sessions(self) -> list[dict]:
        """The live sessions, as `app.py sessions --json` lists them."""
        result = self.admin("sessions", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def create_users(self, users: dict[str, str]) -> None:
        """Accounts straight through the storage API: fast, and the same code the server uses."""
        from storage.accounts import AccountStore
        from storage.db import Database, database_url
        from xmpp.config import load_config

        database = Database(database_url(load_config(self.config_path)))
        try:
            database.migrate()
            accounts = AccountStore(database)
            for user, password in users.items():
                if not accounts.exists(self.domain, user):
                    accounts.create(self.domain, user, password)
        finally:
            database.close()
        self.users.update(users)

    def jid(self, user: str) -> str:
        return f"{user}@{self.domain}"


def make_server(directory: Path, *, domain: str = "localhost", extra: str = "",
                address: str = "127.0.0.1", s2s: bool = False,
                host_extra: str = "", modules: tuple[str, ...] = (),
                http: bool = False) -> ServerProcess:
    """Write a config (with a self-signed certificate for `domain`) and pick ports on
    `address`; federation is off (`modules_disabled = { "s2s" }`) unless `s2s`.

    With `http`, the http and https ports are set too (on 127.0.0.1).
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
{extra}

VirtualHost "{domain}"
{host_extra}
""")
    return ServerProcess(directory, domain, ports, cert, key, config, address=address)
