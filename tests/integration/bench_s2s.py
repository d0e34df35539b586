"""Benchmark (not a test): messages relayed between two servers over one s2s link.

    .venv/bin/python -m tests.integration.bench_s2s --target vireo|prosody [--pairs 50]
        [--messages 400] [--window 16] [--reps 3]

Starts a test DNS server and two servers of the target kind (a.bench on
127.0.0.2, b.bench on 127.0.0.3; s2s with their defaults: STARTTLS and
dialback), logs in P senders on a.bench and P receivers on b.bench over
plain c2s, warms the link up with one message per pair, then streams M chat
messages per pair (at most W in flight each) and reports wall-clock
throughput and the CPU each server process spent, per 1000 messages. The
generator is one asyncio process that never parses XML (it counts closing
tags), in the spirit of shared/bench/xmppbench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.bench_report import print_rep, print_summary
from tests.integration.fake_dns import FakeDns
from tests.integration.prosody_fixture import make_prosody
from tests.integration.server_fixture import make_server

CLIENT_NS = "jabber:client"
STREAMS_NS = "http://etherx.jabber.org/streams"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PASSWORD = "benchpw"
C2S_PLAIN = ("c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Conn:
    """A raw c2s connection: just enough to log in and stream messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""
        self.last = b""

    async def until(self, token: bytes, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while token not in self.buffer:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError(f"closed while waiting for {token!r}: {self.buffer!r}")
                self.buffer += data
        end = self.buffer.index(token) + len(token)
        self.last, self.buffer = self.buffer[:end], self.buffer[end:]  # what the token ended

    def header(self, domain: str) -> None:
        self.writer.write(f"<?xml version='1.0'?><stream:stream xmlns='{CLIENT_NS}' "
                          f"xmlns:stream='{STREAMS_NS}' to='{domain}' version='1.0'>".encode())


async def login(address: str, port: int, domain: str, user: str) -> Conn:
    conn = Conn(*await asyncio.open_connection(address, port))
    conn.header(domain)
    await conn.until(b"</stream:features>")
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    conn.writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                      f"{token}</auth>".encode())
    return await bind_after_success(conn, domain)


async def bind_after_success(conn: Conn, domain: str) -> Conn:
    """The rest of an RFC 6120 login once SASL is under way: await <success/>,
    restart the stream and bind resource `r`."""
    await conn.until(b"success")
    conn.header(domain)
    await conn.until(b"</stream:features>")
    conn.writer.write(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                      b"<resource>r</resource></bind></iq>")
    await conn.until(b"</iq>")
    return conn


class Pair:
    def __init__(self, index: int, sender: Conn, receiver: Conn, to: str, total: int,
                 window: int, body: str) -> None:
        self.sender, self.receiver = sender, receiver
        self.total, self.window = total, window
        self.sent = self.received = 0
        self.template = (f"<message to='{to}/r' type='chat' id='m{index}-%d'>"
                         f"<body>{body}</body></message>")
        self.done = asyncio.get_running_loop().create_future()

    def send(self, count: int) -> None:
        count = min(count, self.total - self.sent)
        if count > 0:
            self.sender.writer.write("".join(self.template % (self.sent + n)
                                             for n in range(count)).encode())
            self.sent += count

    async def receive(self) -> None:
        tail = b""
        token = b"</message>"
        while self.received < self.total:
            data = await self.receiver.reader.read(65536)
            if not data:
                raise ConnectionError("receiver closed")
            chunk = tail + data
            arrived = chunk.count(token)
            tail = chunk[-(len(token) - 1):]
            self.received += arrived
            self.send(arrived)
        self.done.set_result(True)


async def run_round(pairs_conns, messages: int, window: int, body: str, to_domain: str):
    pairs = [Pair(i, s, r, f"u{i}@{to_domain}", messages, window, body)
             for i, (s, r) in enumerate(pairs_conns)]
    readers = [asyncio.create_task(pair.receive()) for pair in pairs]
    for pair in pairs:
        pair.send(window)
    await asyncio.wait_for(asyncio.gather(*readers), 600)
    return sum(pair.received for pair in pairs)


async def drive(a, b, args) -> dict:
    users = range(args.pairs)
    senders = [await login(a.address, a.c2s_port, a.domain, f"u{i}") for i in users]
    receivers = [await login(b.address, b.c2s_port, b.domain, f"u{i}") for i in users]
    conns = list(zip(senders, receivers, strict=True))
    body = "x" * args.body_size
    # Warm-up: one message per pair brings the s2s link (and both dialbacks) up.
    await run_round(conns, 1, 1, body, b.domain)
    a_pid, b_pid = a.process.pid, b.process.pid
    cpu_a0, cpu_b0, t0 = cpu_seconds(a_pid), cpu_seconds(b_pid), time.monotonic()
    delivered = await run_round(conns, args.messages, args.window, body, b.domain)
    wall = time.monotonic() - t0
    cpu_a, cpu_b = cpu_seconds(a_pid) - cpu_a0, cpu_seconds(b_pid) - cpu_b0
    for conn in senders + receivers:
        conn.writer.close()
    per_k = 1000 / delivered
    return {"messages": delivered, "wall_s": round(wall, 3),
            "msgs_per_s": round(delivered / wall, 1),
            "cpu_ms_per_1k_sending_server": round(cpu_a * per_k * 1000, 1),
            "cpu_ms_per_1k_receiving_server": round(cpu_b * per_k * 1000, 1),
            "cpu_ms_per_1k_both": round((cpu_a + cpu_b) * per_k * 1000, 1),
            "cpu_util_sending": round(cpu_a / wall, 2),
            "cpu_util_receiving": round(cpu_b / wall, 2)}


def start_pair(target: str, base: Path, dns: FakeDns):
    servers = []
    for name, address in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
        domain = f"{name}.bench"
        if target == "vireo":
            server = make_server(base / name, domain=domain, address=address, s2s=True,
                                 extra=f'unbound = {{ forward = "{dns.forward}" }}\n'
                                       + C2S_PLAIN + 'log = { warn = "*stderr" }')
        else:
            server = make_prosody(base / name, domain=domain, address=address,
                                  dns_forward=dns.forward,
                                  extra=C2S_PLAIN + 'log = { warn = "*stderr" }')
        dns.add_srv(domain, f"xmpp.{domain}", server.ports["s2s"])
        dns.add_address(f"xmpp.{domain}", address)
        servers.append(server)
    return servers


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("vireo", "prosody"), required=True)
    parser.add_argument("--pairs", type=int, default=50)
    parser.add_argument("--messages", type=int, default=400, help="per pair")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--body-size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    results = []
    for _rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="bench-s2s-") as tmp:
            dns = FakeDns().start()
            a, b = start_pair(args.target, Path(tmp), dns)
            try:
                for server in (a, b):
                    server.create_users({f"u{i}": PASSWORD for i in range(args.pairs)})
                    server.start()
                results.append(asyncio.run(drive(a, b, args)))
            finally:
                a.stop()
                b.stop()
                dns.stop()
        print_rep(results[-1])
    print_summary(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
