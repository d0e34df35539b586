"""`app.py run --workers N`: N server processes on the same ports (SO_REUSEPORT),
each a member of the cluster the `cluster` option names (issue 21).

The parent migrates the database once, writes the pidfile and supervises: it
passes SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 on to every worker and
exits once they all have, with the worst exit status. Worker I is node
"<node>-I"; worker 0 keeps the configured admin socket (`app.py sessions`
lists the whole cluster from there, remote sessions with their node), the
others add ".I" to its name.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Sequence

from xmpp.admin import DEFAULT_SOCKET
from xmpp.cluster.options import cluster_options
from xmpp.config import Config, ConfigError
from xmpp.listeners import share_ports

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def default_count() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1


def check_workers(config: Config, count: int) -> None:
    """ConfigError unless `count` workers can run on this config."""
    if count < 1:
        raise ConfigError(str(config.path), None, "--workers must be at least 1")
    if cluster_options(config) is None:
        raise ConfigError(str(config.path), None, "--workers needs the 'cluster' option "
                          '(cluster = { redis = "redis://...", node = "name" })')


def become_worker(config: Config, index: int) -> None:
    """Make this process worker `index`: its own node name and admin socket, no
    pidfile (the parent's), and ports shared with its siblings."""
    options = cluster_options(config)
    if options is None or index < 0:
        raise ConfigError(str(config.path), None, "a worker needs the 'cluster' option")
    config.globals["cluster"] = {**config.globals["cluster"], "node": f"{options.node}-{index}"}
    if index:
        socket_name = config.get_str("admin_socket", DEFAULT_SOCKET) or DEFAULT_SOCKET
        config.globals["admin_socket"] = f"{socket_name}.{index}"
    config.globals.pop("pidfile", None)
    share_ports()


def supervise(command: Sequence[str], count: int) -> int:
    """Run `command --worker I` for I in 0..count-1 until every one has exited."""
    workers = [subprocess.Popen([*command, "--worker", str(index)]) for index in range(count)]
    log.info("Started %d workers: %s", count, ", ".join(str(w.pid) for w in workers))

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    try:
        statuses = [worker.wait() for worker in workers]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for worker, status in zip(workers, statuses, strict=True):
        if status:
            log.warning("Worker %d exited with status %d", worker.pid, status)
    return max((abs(status) for status in statuses), default=0)
