"""Benchmark (not a test): server CPU per message round trip over WebSocket, Vireo vs Prosody.

    .venv/bin/python -m tests.integration.bench_websocket [--pairs 20] [--messages 500]
        [--window 8] [--body-size 64] [--reps 3] [--targets vireo,prosody] [--port-base 26100]

Starts Vireo (module websocket) and Debian's Prosody 0.12 (mod_websocket) side
by side, each with plain http on loopback (`consider_websocket_secure`, as
behind a TLS-terminating proxy) on a port from --port-base. Per target, P
pairs of RFC 7395 clients (aiohttp) log in over ws:// (SASL PLAIN, bind);
each sender streams M chat messages to its receiver's full JID, at most W in
flight: one WebSocket message in to the server, routed, one out to the other
client. Reported per target, median over the repetitions (which alternate
between the targets in one sitting): messages/s and the server process's own
CPU ms per 1000 round trips, read from /proc. The clients never parse the
timed traffic (they count `<message` openings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.integration.bench_s2s import C2S_PLAIN, PASSWORD, cpu_seconds
from tests.integration.prosody_fixture import make_prosody
from tests.integration.server_fixture import make_server, wait_for_port
from tests.integration.websocket_client import WsClient

DOMAIN = "localhost"  # the Host header WsClient sends names the virtual host
ADDRESS = "127.0.0.1"
WEBSOCKET_EXTRA = C2S_PLAIN + 'consider_websocket_secure = true\nlog = { warn = "*stderr" }\n'


def http_lines(port: int) -> str:
    return (f'http_ports = {{ {port} }}\nhttp_interfaces = {{ "{ADDRESS}" }}\n'
            'https_ports = { }\n')


def start(target: str, base: Path, port: int, users: dict[str, str]):
    """A started server of `target` with WebSocket on http `port`; ports["http"] set."""
    if target == "vireo":
        server = make_server(base / target, domain=DOMAIN, address=ADDRESS,
                             modules=("websocket",), extra=http_lines(port) + WEBSOCKET_EXTRA)
    else:
        # Lines after make_prosody's own `http_ports = { }` win.
        server = make_prosody(base / target, domain=DOMAIN, address=ADDRESS,
                              dns_forward="127.0.0.1@53", modules=("websocket",),
                              extra=http_lines(port) + WEBSOCKET_EXTRA)
    server.ports["http"] = port
    server.create_users(users)
    server.start()
    wait_for_port(port, server.process, address=ADDRESS)
    return server


class Pair:
    """A sender keeping `window` messages in flight to its receiver until `total` arrived."""

    def __init__(self, sender: WsClient, receiver: WsClient, to: str, total: int,
                 window: int, body: str) -> None:
        self.sender, self.receiver = sender, receiver
        self.total, self.window = total, window
        self.sent = self.received = 0
        self.template = (f"<message xmlns='jabber:client' to='{to}' type='chat' id='m%d'>"
                         f"<body>{body}</body></message>")

    async def send(self, count: int) -> None:
        for _ in range(min(count, self.total - self.sent)):
            await self.sender.send(self.template % self.sent)
            self.sent += 1

    async def run(self) -> None:
        await self.send(self.window)
        while self.received < self.total:
            message = await self.receiver.receive()
            if message.type == aiohttp.WSMsgType.PING:
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"receiver got {message.type!r}")
            if message.data.startswith("<message"):
                self.received += 1
                await self.send(1)


async def run_round(conns: list[tuple[WsClient, WsClient]], messages: int, window: int,
                    body: str) -> int:
    pairs = [Pair(sender, receiver, f"r{i}@{DOMAIN}/ws", messages, window, body)
             for i, (sender, receiver) in enumerate(conns)]
    await asyncio.wait_for(asyncio.gather(*(pair.run() for pair in pairs)), 600)
    return sum(pair.received for pair in pairs)


async def drive(server, args) -> dict:
    conns = []
    try:
        for i in range(args.pairs):
            sender = await WsClient.connect(server)
            conns.append((sender, None))
            await sender.login(f"s{i}", PASSWORD)
            receiver = await WsClient.connect(server)
            conns[-1] = (sender, receiver)
            await receiver.login(f"r{i}", PASSWORD)
        body = "x" * args.body_size
        await run_round(conns, args.window, args.window, body)  # warm-up
        pid = server.process.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        delivered = await run_round(conns, args.messages, args.window, body)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(pid) - cpu0
    finally:
        for client in (c for pair in conns for c in pair if c is not None):
            with contextlib.suppress(Exception):
                await client.close()
    return {"round_trips": delivered, "wall_s": round(wall, 3),
            "msgs_per_s": round(delivered / wall, 1),
            "cpu_ms_per_1k_round_trips": round(cpu * 1e6 / delivered, 1),
            "cpu_util": round(cpu / wall, 2)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="vireo,prosody")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--messages", type=int, default=500, help="per pair")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--body-size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--port-base", type=int, default=26100)
    args = parser.parse_args(argv)
    targets = args.targets.split(",")
    users = {f"{role}{i}": PASSWORD for i in range(args.pairs) for role in "sr"}
    runs: dict[str, list[dict]] = {target: [] for target in targets}
    with tempfile.TemporaryDirectory(prefix="bench-websocket-") as tmp:
        servers = {}
        try:
            for offset, target in enumerate(targets):
                servers[target] = start(target, Path(tmp), args.port_base + offset, users)
            for rep in range(args.reps):
                for target in targets:
                    runs[target].append(asyncio.run(drive(servers[target], args)))
                    print(f"rep {rep + 1} {target}: {runs[target][-1]}", file=sys.stderr)
        finally:
            for server in servers.values():
                server.stop()
    summary = {target: {key: statistics.median(run[key] for run in runs[target])
                        for key in runs[target][0]} for target in targets}
    print(json.dumps({"params": vars(args), "median": summary, "runs": runs}))
    print(f"{'target':8} {'msgs/s':>9} {'CPU ms/1k round trips':>22} {'CPU util':>9}",
          file=sys.stderr)
    for target, row in summary.items():
        print(f"{target:8} {row['msgs_per_s']:>9.0f} {row['cpu_ms_per_1k_round_trips']:>22.1f} "
              f"{row['cpu_util']:>9.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
