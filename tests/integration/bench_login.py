"""Benchmark (not a test): server CPU per login, RFC 6120 PLAIN and SCRAM-SHA-256
against a FAST token (XEP-0484) through SASL2 and Bind 2, on one Vireo server.

    .venv/bin/python -m tests.integration.bench_login [--logins 600]
        [--concurrency 10] [--users 50] [--reps 3]

shared/bench/xmppbench.py measures PLAIN and SCRAM-SHA-1 (against Prosody
and ejabberd too) but knows neither SCRAM-SHA-256 nor SASL2. This drives,
over plain TCP on loopback as xmppbench does, complete logins of each kind:
connect, authenticate, bind, close. RFC 6120 logins restart the stream and
bind with an IQ; a FAST login is one `<authenticate/>` carrying the token,
the user agent and the Bind 2 request. Tokens are fetched before the timed
window (one SASL2 PLAIN login per user). The generator is one asyncio
process that never parses XML; server CPU is read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.bench_s2s import C2S_PLAIN, PASSWORD, Conn, bind_after_success, cpu_seconds
from tests.integration.server_fixture import make_server
from tests.scram_client import client_final
from xmpp.sasl_ht import initiator_hash, token_key

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2 = "urn:xmpp:sasl:2"
FAST = "urn:xmpp:fast:0"
BIND2 = "<bind xmlns='urn:xmpp:bind:0'><tag>bench</tag></bind>"
MODES = ("PLAIN", "SCRAM-SHA-256", "FAST")
# Logins from one address take turns, at most vireo_auth_failure_limit checked at
# once: lifted, so the benchmark measures the server rather than that limit.
NO_THROTTLE = "vireo_auth_failure_limit = 1000000\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain(user: str) -> str:
    return b64(b"\0" + user.encode() + b"\0" + PASSWORD.encode())


def user_agent(user: str) -> str:
    return f"<user-agent id='bench-{user}'><software>bench</software></user-agent>"


async def connect(port: int, domain: str) -> Conn:
    conn = Conn(*await asyncio.open_connection("127.0.0.1", port))
    conn.header(domain)
    await conn.until(b"</stream:features>")
    return conn


async def rfc6120_login(port: int, domain: str, user: str, mechanism: str) -> Conn:
    conn = await connect(port, domain)
    if mechanism == "PLAIN":
        conn.writer.write(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{plain(user)}</auth>".encode())
    else:
        first_bare = f"n={user},r=benchnonce{id(conn)}"
        conn.writer.write(f"<auth xmlns='{SASL}' mechanism='{mechanism}'>"
                          f"{b64(('n,,' + first_bare).encode())}</auth>".encode())
        await conn.until(b"</challenge>")
        server_first = base64.b64decode(re.search(rb">([^<>]+)</challenge>", conn.last).group(1))
        final = client_final(PASSWORD, "sha256", gs2_header="n,,", cb_data=b"",
                             client_first_bare=first_bare, server_first=server_first)
        conn.writer.write(f"<response xmlns='{SASL}'>{b64(final)}</response>".encode())
    return await bind_after_success(conn, domain)


async def fetch_token(port: int, domain: str, user: str) -> str:
    conn = await connect(port, domain)
    conn.writer.write(
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>"
        f"{plain(user)}</initial-response>{user_agent(user)}"
        f"<request-token xmlns='{FAST}' mechanism='HT-SHA-256-NONE'/></authenticate>".encode())
    await conn.until(b"</success>")
    conn.writer.close()
    return re.search(rb"token='([^']+)'", conn.last).group(1).decode()


async def fast_login(port: int, domain: str, user: str, token: str) -> Conn:
    conn = await connect(port, domain)
    proof = user.encode() + b"\0" + initiator_hash(token_key(token))
    conn.writer.write(
        f"<authenticate xmlns='{SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>"
        f"{b64(proof)}</initial-response>{user_agent(user)}<fast xmlns='{FAST}'/>{BIND2}"
        "</authenticate>".encode())
    await conn.until(b"</success>")
    return conn


async def drive(server, mode: str, args, tokens: dict[str, str]) -> dict:
    port, domain = server.c2s_port, server.domain
    users = [f"u{i}" for i in range(args.users)]

    async def one(k: int) -> None:
        user = users[k % len(users)]
        if mode == "FAST":
            conn = await fast_login(port, domain, user, tokens[user])
        else:
            conn = await rfc6120_login(port, domain, user, mode)
        conn.writer.close()

    async def worker(queue: list[int], latencies: list[float]) -> None:
        while queue:
            k = queue.pop()
            start = time.monotonic()
            await one(k)
            latencies.append(time.monotonic() - start)

    await asyncio.gather(*(one(k) for k in range(min(10, args.logins))))  # warm-up
    queue, latencies = list(range(args.logins)), []
    cpu0, t0 = cpu_seconds(server.process.pid), time.monotonic()
    await asyncio.gather(*(worker(queue, latencies) for _ in range(args.concurrency)))
    wall, cpu = time.monotonic() - t0, cpu_seconds(server.process.pid) - cpu0
    latencies.sort()
    return {"mode": mode, "logins": len(latencies), "wall_s": round(wall, 3),
            "logins_per_s": round(len(latencies) / wall, 1),
            "server_cpu_ms_per_login": round(cpu * 1000 / len(latencies), 3),
            "lat_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "server_cpu_util": round(cpu / wall, 2)}


async def run_modes(server, args) -> list[dict]:
    users = [f"u{i}" for i in range(args.users)]
    tokens = {user: await fetch_token(server.c2s_port, server.domain, user) for user in users}
    return [await drive(server, mode, args, tokens) for mode in args.modes]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=600, help="per mode")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for _rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="bench-login-") as tmp:
            server = make_server(Path(tmp), modules=("sasl2", "sasl2_bind2", "sasl2_fast"),
                                 extra=C2S_PLAIN + NO_THROTTLE + 'log = { warn = "*stderr" }\n')
            server.create_users({f"u{i}": PASSWORD for i in range(args.users)})
            server.start()
            try:
                for row in asyncio.run(run_modes(server, args)):
                    results[row["mode"]].append(row)
                    print(json.dumps(row), file=sys.stderr)
            finally:
                server.stop()
    for mode, rows in results.items():
        median = {key: statistics.median(r[key] for r in rows) for key in rows[0] if key != "mode"}
        print(json.dumps({"scenario": "login", "mode": mode, "params": vars(args),
                          "median": median, "reps": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
