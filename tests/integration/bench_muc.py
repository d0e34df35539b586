"""Benchmark (not a test): one MUC room, its messages fanned out to every occupant.

    .venv/bin/python -m tests.integration.bench_muc --target vireo|prosody
        [--occupants 100] [--senders 10] [--rounds 100] [--window 4] [--reps 3]

Starts one server of the target kind with `Component "conference.bench" "muc"`
(c2s on port 26000 + 10 * rep), logs in N occupants over plain c2s, the first
creates the room (an instant room) and all join it without history. Then, in
each of R rounds, S of them send one groupchat message each; a round may
start once every occupant has every message of the round W before it. Each
message reaches all N occupants (the sender's echo included), so N * S * R
messages are delivered. Reports the server's CPU per 1000 delivered
messages and the wall-clock rate. The generator is one asyncio process that
never parses XML (it counts closing tags), as bench_s2s.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.bench_report import print_rep, print_summary
from tests.integration.bench_s2s import C2S_PLAIN, PASSWORD, Conn, cpu_seconds, login
from tests.integration.prosody_fixture import make_prosody
from tests.integration.server_fixture import make_server

DOMAIN = "bench"
MUC = f"conference.{DOMAIN}"
ROOM = f"room@{MUC}"
PORT_BASE = 26000
TOKEN = b"</message>"


def set_c2s_port(server, port: int) -> None:
    """Pin the server's c2s port (benchmarks use 26000+, away from other engineers')."""
    text = server.config_path.read_text()
    old = f"c2s_ports = {{ {server.ports['c2s']} }}"
    assert old in text
    server.config_path.write_text(text.replace(old, f"c2s_ports = {{ {port} }}"))
    server.ports["c2s"] = port


def start_server(target: str, directory: Path, port: int):
    extra = C2S_PLAIN + 'log = { warn = "*stderr" }'
    if target == "vireo":
        server = make_server(directory, domain=DOMAIN, extra=extra,
                             host_extra=f'Component "{MUC}" "muc"\n')
    else:
        server = make_prosody(directory, domain=DOMAIN, address="127.0.0.1",
                              dns_forward="127.0.0.1@9", extra=extra)
        with server.config_path.open("a") as config:
            config.write(f'\nComponent "{MUC}" "muc"\n')
    set_c2s_port(server, port)
    return server


class Occupant:
    """One occupant's connection: counts the messages it receives."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.received = 0
        self.changed = asyncio.Event()

    async def join(self, nick: str, create: bool) -> None:
        self.conn.writer.write(
            f"<presence to='{ROOM}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>"
            f"<history maxstanzas='0'/></x></presence>".encode())
        await self.conn.until(TOKEN)  # the subject ends the join
        if create:
            self.conn.writer.write(
                f"<iq type='set' id='config' to='{ROOM}'>"
                f"<query xmlns='http://jabber.org/protocol/muc#owner'>"
                f"<x xmlns='jabber:x:data' type='submit'/></query></iq>".encode())
            await self.conn.until(b"config")

    async def count(self) -> None:
        tail = self.conn.buffer
        while True:
            data = await self.conn.reader.read(65536)
            if not data:
                return
            chunk = tail + data
            self.received += chunk.count(TOKEN)
            tail = chunk[-(len(TOKEN) - 1):]
            self.changed.set()


async def drive(server, args) -> dict:
    occupants = []
    for index in range(args.occupants):
        conn = await login(server.address, server.c2s_port, DOMAIN, f"u{index}")
        occupant = Occupant(conn)
        await occupant.join(f"n{index}", create=index == 0)
        occupants.append(occupant)
    # Let the join presences of later occupants reach the earlier ones.
    await asyncio.sleep(1)
    for occupant in occupants:
        occupant.conn.buffer = b""
    counters = [asyncio.create_task(occupant.count()) for occupant in occupants]
    senders = occupants[:args.senders]
    body = "x" * args.body_size
    pid = server.process.pid
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for round_ in range(args.rounds):
        needed = max(0, round_ - args.window) * len(senders)
        for occupant in occupants:
            while occupant.received < needed:
                occupant.changed.clear()
                await asyncio.wait_for(occupant.changed.wait(), 60)
        for index, sender in enumerate(senders):
            sender.conn.writer.write(f"<message to='{ROOM}' type='groupchat' id='m{round_}-"
                                     f"{index}'><body>{body}</body></message>".encode())
    expected = args.rounds * len(senders)
    for occupant in occupants:
        while occupant.received < expected:
            occupant.changed.clear()
            await asyncio.wait_for(occupant.changed.wait(), 120)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    for task in counters:
        task.cancel()
    for occupant in occupants:
        occupant.conn.writer.close()
    delivered = sum(occupant.received for occupant in occupants)
    return {"delivered": delivered, "wall_s": round(wall, 3),
            "delivered_per_s": round(delivered / wall, 1),
            "cpu_ms_per_1k_delivered": round(cpu / delivered * 1e6, 1),
            "cpu_util": round(cpu / wall, 2)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("vireo", "prosody"), required=True)
    parser.add_argument("--occupants", type=int, default=100)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--body-size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    results = []
    for rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="bench-muc-") as tmp:
            server = start_server(args.target, Path(tmp), PORT_BASE + 10 * rep)
            try:
                server.create_users({f"u{i}": PASSWORD for i in range(args.occupants)})
                server.start()
                results.append(asyncio.run(drive(server, args)))
            finally:
                server.stop()
        print_rep(results[-1])
    print_summary(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
