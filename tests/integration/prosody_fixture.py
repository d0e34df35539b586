"""A real Prosody (Debian's package) as a subprocess, for interoperability tests.

Started the way the shared benchmark harness starts it (`prosody --config
FILE -F`, its own config and data dir, `run_as_root` when root), with
accounts written straight into Prosody's internal storage. It offers the
same attributes as server_fixture.ServerProcess that the slixmpp helpers use.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.certs import make_self_signed
from tests.integration.server_fixture import (
    free_port,
    lua_string,
    spawn_logged,
    stop_process,
    wait_for_port,
)

PROSODY = shutil.which("prosody")


def _encode(name: str) -> str:
    """Prosody's datamanager path encoding: every non-alphanumeric byte as %xx."""
    return re.sub(r"[^0-9A-Za-z]", lambda m: f"%{ord(m.group(0)):02x}", name)


@dataclass
class ProsodyProcess:
    directory: Path
    domain: str
    address: str
    ports: dict[str, int]
    cert: Path
    key: Path
    config_path: Path
    process: subprocess.Popen | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def c2s_port(self) -> int:
        return self.ports["c2s"]

    @property
    def log_path(self) -> Path:
        return self.directory / "prosody.log"

    def create_users(self, users: dict[str, str]) -> None:
        accounts = self.directory / "data" / _encode(self.domain) / "accounts"
        accounts.mkdir(parents=True, exist_ok=True)
        for user, password in users.items():
            (accounts / f"{_encode(user)}.dat").write_text(
                f"return {{\n\t[\"password\"] = {lua_string(password)};\n}};\n")
        self.users.update(users)

    def start(self) -> None:
        self.process = spawn_logged([PROSODY, "--config", str(self.config_path), "-F"],
                                    self.directory, cwd=self.directory)
        wait_for_port(self.c2s_port, self.process, address=self.address)

    def stop(self, timeout: float = 10.0) -> int | None:
        return stop_process(self.process, timeout)


def make_prosody(directory: Path, *, domain: str, address: str, dns_forward: str,
                 extra: str = "", authentication: str = "internal_plain",
                 modules: tuple[str, ...] = ()) -> ProsodyProcess:
    """Write a Prosody config for `domain` on `address` with its own self-signed
    certificate, s2s on, and DNS through `dns_forward` ("ADDR@PORT") only;
    `modules` are enabled besides the basic ones."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    cert, key = make_self_signed(directory, domain)
    ports = {"c2s": free_port(address), "s2s": free_port(address)}
    root = "run_as_root = true\n" if os.geteuid() == 0 else ""
    config = directory / "prosody.cfg.lua"
    config.write_text(f"""{root}
pidfile = "{directory / 'prosody.pid'}"
data_path = "{directory / 'data'}"
interfaces = {{ "{address}" }}
local_interfaces = {{ "{address}" }}
c2s_ports = {{ {ports['c2s']} }}
s2s_ports = {{ {ports['s2s']} }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster", "saslauth", "tls", "dialback", "disco", "ping", "version",
    "time", "uptime"{''.join(f', "{name}"' for name in modules)} }}
authentication = "{authentication}"
storage = "internal"
ssl = {{ certificate = "{cert}", key = "{key}" }}
unbound = {{ forward = "{dns_forward}", resolvconf = false }}
log = {{ debug = "{directory / 'prosody.log'}", error = "*stderr" }}
{extra}

VirtualHost "{domain}"
""")
    return ProsodyProcess(directory, domain, address, ports, cert, key, config)


class ProsodyFiles:
    """Debian's Prosody serving `files` (a directory) with mod_http_files at /files on
    a free port of 127.0.0.1, for VirtualHost `domain`; a context manager."""

    def __init__(self, directory: Path, files: Path, domain: str = "example.com") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "data").mkdir(exist_ok=True)
        self.directory = directory
        self.port = free_port()
        root = "run_as_root = true\n" if os.geteuid() == 0 else ""
        self.config = directory / "prosody.cfg.lua"
        self.config.write_text(f"""{root}
pidfile = "{directory / 'prosody.pid'}"
data_path = "{directory / 'data'}"
c2s_ports = {{ {free_port()} }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ {self.port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
modules_enabled = {{ "http_files" }}
http_files_dir = "{files}"
log = {{ error = "*stderr" }}
VirtualHost "{domain}"
""")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ProsodyFiles:
        self.process = spawn_logged([PROSODY, "--config", str(self.config), "-F"],
                                    self.directory, cwd=self.directory)
        wait_for_port(self.port, self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)
