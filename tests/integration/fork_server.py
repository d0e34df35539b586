"""Server processes forked from one that has done the imports, for tests that
restart a server hundreds of times (the kill -9 loop): importing is most of a
start-up's CPU (~1.2 s of ~1.4 s, alembic's import included), and a fork
skips it.

The fork server is a child of the test that imports app.py (gevent's monkey
patching, as `app.py run` does) and every module Vireo has, then reads
commands on stdin: "fork" forks a process that runs app.py's main with the
fork server's arguments, in a session of its own, and answers its pid;
"wait PID" reaps it and answers its exit status. The servers are real
processes (SIGKILL ends them); not being the test's children, their exit is
seen through a pidfd.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

MAIN = """
import importlib, os, sys
sys.path.insert(0, {root!r})
import app
from gevent import monkey
from xmpp.modules import IMPLEMENTED
# What a start imports on demand: every module, alembic (Database.migrate) and
# the PostgreSQL driver (SQLAlchemy loads it with the first engine).
for path in (*IMPLEMENTED.values(), "alembic.command", "alembic.config",
             "alembic.runtime.migration", "alembic.runtime.environment", "alembic.script",
             "psycopg"):
    importlib.import_module(path)
fork = monkey.get_original("os", "fork")  # no child watcher in this loop-less process
for line in sys.stdin:
    command, _, argument = line.partition(" ")
    if command.strip() == "fork":
        pid = fork()
        if pid == 0:
            os.setsid()
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(2, 1)  # stdout is the answers' pipe
            os._exit(app.main(sys.argv[1:]) or 0)
        print(pid, flush=True)
    elif command == "wait":
        print(os.waitstatus_to_exitcode(os.waitpid(int(argument), 0)[1]), flush=True)
"""


class ForkServer:
    """The fork server of one server config (see the module's docstring)."""

    def __init__(self, root: Path, config_path: Path, output: Path) -> None:
        with open(output, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", MAIN.format(root=str(root)), "-c", str(config_path),
                 "run"], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                text=True, bufsize=1)

    def _ask(self, command: str) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the fork server exited ({self.process.wait()})")
        return int(answer)

    def fork(self) -> ForkedProcess:
        return ForkedProcess(self._ask("fork"), self)

    def reap(self, pid: int) -> int:
        return self._ask(f"wait {pid}")

    def close(self, timeout: float = 10.0) -> None:
        """End the fork server (EOF on its stdin); its servers must have ended."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout)


class ForkedProcess:
    """A forked server, with the subprocess.Popen methods the tests use."""

    def __init__(self, pid: int, fork_server: ForkServer) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._fork_server = fork_server
        self._pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        return self.wait(0) if self._ended(0) else self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not self._ended(timeout):
                raise subprocess.TimeoutExpired(f"server {self.pid}", timeout or 0)
            os.close(self._pidfd)
            self.returncode = self._fork_server.reap(self.pid)
        return self.returncode

    def _ended(self, timeout: float | None) -> bool:
        if self.returncode is not None:
            return True
        return bool(select.select([self._pidfd], [], [], timeout)[0])

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(9)
