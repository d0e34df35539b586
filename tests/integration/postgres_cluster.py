"""A private PostgreSQL cluster for tests that stop and start the database under a running server.

The machine's shared PostgreSQL serves CI and other tests, so it is never
stopped: this one lives in a temporary directory, listens on a high loopback
port, and is built with Debian's binaries (the `postgresql` package).
initdb refuses to run as root, so under root every command runs as the
`postgres` user, which owns the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.integration.server_fixture import free_port

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
COMMAND_TIMEOUT = 60
UNPRIVILEGED_USER = "postgres"


def available() -> bool:
    return bool(BINARIES) and (os.geteuid() != 0 or _has_user(UNPRIVILEGED_USER))


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PrivateCluster:
    """initdb'd on creation; `start` and `stop` as often as a test likes; `remove` at the end."""

    def __init__(self) -> None:
        self.bin = Path(BINARIES[-1])
        self.user = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        # Not under pytest's tmp_path: its 0700 parents keep the postgres user out.
        self.directory = Path(tempfile.mkdtemp(prefix="vireo-pg-"))
        if self.user is not None:
            shutil.chown(self.directory, self.user)
        self.data = self.directory / "data"
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run([str(self.bin / program), *args], user=self.user, check=True,
                       cwd=self.directory, capture_output=True, timeout=COMMAND_TIMEOUT)

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.directory} -c fsync=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options,
                  "-l", str(self.directory / "postgres.log"), "-w", "start")

    def stop(self) -> None:
        """Stop at once: open connections are cut, as when a database server goes down."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
