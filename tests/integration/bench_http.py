"""Benchmark (not a test): a trivial HTTP route on Vireo and on Prosody 0.12, driven by wrk.

    .venv/bin/python -m tests.integration.bench_http [--duration 10] [--connections 10]
        [--reps 3] [--targets vireo,prosody] [--vireo-route probe,files]
        [--baseline DIR] [--profile DIR]

Vireo serves the test probe app's GET /probe/hello ("hello\\n", CORS headers
on) through the whole HTTP layer (pywsgi listener, proxies, host dispatch,
Flask); with `--vireo-route files` it serves instead the 6-byte file Prosody
serves, /files/hello.txt, with http_files (a plain route, no Flask), and with
`--vireo-route probe,files` both, one after the other, as targets "vireo" and
"vireo/files" of one process. Prosody (Debian's package) serves that file with
mod_http_files. Each repetition runs wrk (Debian's, one thread,
keep-alive connections) against each target in turn, and reads the server
process's own CPU seconds from /proc around it. Reports requests/s, server
CPU ms per 1000 requests and wrk's latency percentiles, median over the
repetitions. --baseline names another Vireo checkout (for example
`git archive REV | tar -x -C DIR`), run side by side as target "baseline"
for before/after figures. With --profile, Vireo runs under `py-spy record -r 200 -f raw`
for one extra run and the raw stacks go to DIR/vireo.raw.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.http_fixtures import ROOT, http_server_process
from tests.integration.prosody_fixture import ProsodyFiles

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "example.com"
FILE = "hello.txt"
VIREO_CONFIG = """
http_files_dir = "{files}"
http_ports = {{ 0 }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
log = {{ error = "*stderr" }}
VirtualHost "{host}"
"""
#: The path of each route Vireo may serve.
VIREO_ROUTES = {"probe": "/probe/hello", "files": f"/files/{FILE}"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wrk(url: str, duration: float, connections: int) -> dict:
    """One wrk run: requests, seconds, latency percentiles (ms), non-2xx count."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency",
         "-H", f"Host: {HOST}", url],
        capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if done is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    seconds = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    result = {"requests": int(done.group(1)), "seconds": seconds,
              "non_2xx": int(m.group(1)) if (m := re.search(r"Non-2xx.*?(\d+)", out)) else 0}
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if match:
            scale = {"us": 0.001, "ms": 1, "s": 1000}[match.group(2)]
            result[f"p{pct}_ms"] = round(float(match.group(1)) * scale, 3)
    return result


def measure(pid: int, url: str, duration: float, connections: int) -> dict:
    wrk(url, min(2.0, duration), connections)  # warm-up
    before = cpu_seconds(pid)
    result = wrk(url, duration, connections)
    cpu = cpu_seconds(pid) - before
    if result["non_2xx"]:
        raise RuntimeError(f"{url}: {result['non_2xx']} non-2xx answers")
    return {"rps": round(result["requests"] / result["seconds"], 1),
            "cpu_ms_per_1k": round(cpu * 1e6 / result["requests"], 1),
            "cpu_util": round(cpu / result["seconds"], 3),
            "p50_ms": result.get("p50_ms"), "p99_ms": result.get("p99_ms")}


def profile(pid: int, url: str, duration: float, connections: int, out: Path) -> None:
    """py-spy's raw stacks of `pid` while wrk loads `url`."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    recorder = subprocess.Popen([spy, "record", "-r", "200", "-f", "raw", "-o", str(out),
                                 "-p", str(pid), "-d", str(int(duration) + 1)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    wrk(url, duration, connections)
    recorder.wait(duration + 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--targets", default="vireo,prosody")
    parser.add_argument("--vireo-route", default="probe",
                        help="Vireo's routes, comma-separated: probe (Flask), files (http_files)")
    parser.add_argument("--baseline", type=Path)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    routes = args.vireo_route.split(",")
    unknown = set(routes) - set(VIREO_ROUTES)
    if unknown:
        parser.error(f"unknown --vireo-route {', '.join(sorted(unknown))}")
    servers_wanted = args.targets.split(",") + (["baseline"] if args.baseline else [])
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, \
            contextlib.ExitStack() as stack:
        files = Path(tmp) / "www"
        files.mkdir()
        (files / FILE).write_text("hello\n")
        servers = {}
        for server in servers_wanted:
            if server == "prosody":
                prosody = stack.enter_context(ProsodyFiles(Path(tmp) / server, files, HOST))
                servers[server] = (prosody.process.pid,
                                   f"http://127.0.0.1:{prosody.port}/files/{FILE}")
                continue
            root = args.baseline if server == "baseline" else ROOT
            vireo = stack.enter_context(http_server_process(
                Path(tmp) / server, VIREO_CONFIG.format(files=files, host=HOST), root=root))
            for route in routes:
                target = server if route == "probe" else f"{server}/{route}"
                servers[target] = (vireo.process.pid,
                                   f"http://127.0.0.1:{vireo.http_port}{VIREO_ROUTES[route]}")
        targets = list(servers)
        runs: dict[str, list[dict]] = {target: [] for target in targets}
        for rep in range(args.reps):
            for target in targets:
                pid, url = servers[target]
                run = measure(pid, url, args.duration, args.connections)
                runs[target].append(run)
                print(f"rep {rep + 1} {target}: {run}", file=sys.stderr)
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            profile(*servers[targets[0]], args.duration, args.connections,
                    args.profile / "vireo.raw")
    summary = {target: {key: statistics.median(run[key] for run in runs[target])
                        for key in runs[target][0]} for target in targets}
    print(json.dumps({"params": {key: value if isinstance(value, int | float) else str(value)
                                 for key, value in vars(args).items()},
                      "median": summary, "runs": runs}))
    print(f"{'target':12} {'req/s':>9} {'CPU ms/1k req':>14} {'CPU util':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7}", file=sys.stderr)
    for target, row in summary.items():
        print(f"{target:12} {row['rps']:>9.0f} {row['cpu_ms_per_1k']:>14.1f} "
              f"{row['cpu_util']:>9.2f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f}",
              file=sys.stderr)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
