"""Memory soak (not a test): 2,000 clients log in, chat and leave, in a loop, for a while.

    .venv/bin/python tests/integration/soak_c2s.py [--minutes 30] [--pairs 1000]

One Vireo server (the benchmark's config on port base 25100, SQLite) serves
repeated runs of ../shared/bench/xmppbench.py's c2s_msgs scenario against it
(`--server-pid`): each run logs 2 x pairs clients in, sends messages both
ways and disconnects them. The server's RSS is read from /proc after every
run; the first and last figures, and the growth per hour fitted over the
second half, are printed. Bounded by --minutes; stops the server at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT.parent / "shared" / "bench" / "xmppbench.py"
PORT_BASE = 25100


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def config_text(data: Path) -> str:
    text = subprocess.run([sys.executable, str(BENCH), "config", "--target", "vireo",
                           "--port-base", str(PORT_BASE)], capture_output=True, text=True,
                          check=True).stdout
    text = text.replace("DATA", str(data))
    return text.replace('"bosh" }', '"bosh", "register" }').replace(
        "allow_registration = false", "allow_registration = true")


def wait_for_port(port: int, deadline: float) -> None:
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {port}")


def bench(pid: int, pairs: int, users: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(BENCH), "c2s_msgs", "--target", "custom", "--server-pid", str(pid),
         "--server-cmd", "unused", "--port-base", str(PORT_BASE), "--users", users,
         "--pairs", str(pairs), "--messages", "20", "--reps", "1", "--max-time", "120"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"bench failed: {result.stderr[-2000:]}")
    return json.loads(lines[-1])["median"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--pairs", type=int, default=1000)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="vireo-soak-"))
    config = data / "soak.cfg.lua"
    config.write_text(config_text(data))
    server = subprocess.Popen([str(ROOT / ".venv/bin/python"), "app.py", "-c", str(config), "run"],
                              cwd=ROOT, start_new_session=True)
    samples: list[tuple[float, int, float]] = []
    try:
        wait_for_port(PORT_BASE + 22, time.monotonic() + 60)
        start = time.monotonic()
        samples.append((0.0, rss_kib(server.pid), 0.0))
        print(f"RSS before any client: {samples[0][1]} KiB", flush=True)
        users = "ibr"
        while time.monotonic() - start < args.minutes * 60:
            figures = bench(server.pid, args.pairs, users)
            users = "none"
            elapsed = time.monotonic() - start
            samples.append((elapsed, rss_kib(server.pid), figures["msgs_per_s"]))
            print(f"{elapsed:7.0f} s  RSS {samples[-1][1]:7d} KiB  "
                  f"{figures['msgs_per_s']:8.0f} msgs/s  delivered {figures['delivered']}",
                  flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    runs = samples[1:]
    if len(runs) >= 4:
        half = runs[len(runs) // 2:]
        (t0, r0, _), (t1, r1, _) = half[0], half[-1]
        slope = (r1 - r0) / max(t1 - t0, 1) * 3600
        print(f"runs {len(runs)}; RSS first run {runs[0][1]} KiB, last {runs[-1][1]} KiB; "
              f"second half growth {slope:+.0f} KiB/hour")
    return 0


if __name__ == "__main__":
    sys.exit(main())
