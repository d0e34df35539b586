"""Benchmark (not a test): memory per hibernated XEP-0198 session.

    .venv/bin/python -m tests.integration.bench_smacks --target vireo|prosody
        [--sessions 1000] [--queued 10] [--reps 3]

Starts one server of the target kind with stream management (Vireo's smacks,
Debian Prosody 0.12's bundled mod_smacks), logs in N users over plain c2s,
enables resumable stream management on each, then cuts every connection (no
</stream>) so each session hibernates. A sender then puts Q chat messages of 64
bytes in each hibernated session's queue. Reported: the server's resident memory
growth per hibernated session (KiB), from just before the logins to after the
queues are filled, the sessions still hibernating (smacks_hibernation_time is
left at 600 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.bench_report import print_rep
from tests.integration.bench_s2s import C2S_PLAIN, PASSWORD, Conn, login
from tests.integration.prosody_fixture import make_prosody
from tests.integration.server_fixture import make_server

SETTLE_SECONDS = 2.0  # for the server to notice the cut connections
DOMAIN = "smacks.bench"
ADDRESS = "127.0.0.1"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def round_trip(conn: Conn, n: int) -> None:
    """Everything the connection sent before has been handled once this returns."""
    conn.writer.write(f"<iq type='get' id='ping{n}' to='{DOMAIN}'>"
                      "<ping xmlns='urn:xmpp:ping'/></iq>".encode())
    await conn.until(f"ping{n}".encode(), timeout=120)


async def drive(server, args) -> dict:
    pid = server.process.pid
    sender = await login(server.address, server.c2s_port, DOMAIN, "sender")
    await round_trip(sender, 0)
    before = rss_kib(pid)
    for start in range(0, args.sessions, 100):
        batch = await asyncio.gather(*(
            login(server.address, server.c2s_port, DOMAIN, f"u{i}")
            for i in range(start, min(start + 100, args.sessions))))
        for conn in batch:
            conn.writer.write(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        for conn in batch:
            await conn.until(b"<enabled", timeout=60)
            conn.writer.transport.abort()  # the network goes
    await asyncio.sleep(SETTLE_SECONDS)
    body = "x" * 64
    for i in range(args.sessions):
        sender.writer.write("".join(
            f"<message to='u{i}@{DOMAIN}/r' type='chat'><body>{body}</body></message>"
            for _ in range(args.queued)).encode())
        if i % 100 == 99:
            await round_trip(sender, i)
    await round_trip(sender, args.sessions)
    after = rss_kib(pid)
    sender.writer.close()
    return {"sessions": args.sessions, "queued_per_session": args.queued,
            "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_hibernated_session": round((after - before) / args.sessions, 2)}


def start(target: str, base: Path):
    if target == "vireo":
        return make_server(base, domain=DOMAIN, address=ADDRESS, modules=("smacks",),
                           extra=C2S_PLAIN + 'log = { warn = "*stderr" }')
    server = make_prosody(base, domain=DOMAIN, address=ADDRESS, dns_forward="127.0.0.1@53",
                          extra=C2S_PLAIN + 'log = { warn = "*stderr" }')
    # Host modules add to the global ones in Prosody.
    server.config_path.write_text(server.config_path.read_text()
                                  + 'modules_enabled = { "smacks" }\n')
    return server


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("vireo", "prosody"), required=True)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--queued", type=int, default=10, help="messages per session")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    results = []
    for _rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="bench-smacks-") as tmp:
            server = start(args.target, Path(tmp))
            try:
                server.create_users({"sender": PASSWORD}
                                    | {f"u{i}": PASSWORD for i in range(args.sessions)})
                started = time.monotonic()
                server.start()
                results.append(asyncio.run(drive(server, args)))
                results[-1]["seconds"] = round(time.monotonic() - started, 1)
            finally:
                server.stop()
        print_rep(results[-1])
    summary = statistics.median(r["kib_per_hibernated_session"] for r in results)
    print(json.dumps({"target": args.target, "params": vars(args),
                      "median_kib_per_hibernated_session": summary, "reps": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
