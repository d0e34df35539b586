"""Benchmark (not a test): MAM paging over XMPP, Vireo against Prosody 0.12, in one sitting.

    .venv/bin/python -m tests.integration.bench_mam_paging [--targets vireo,prosody]
        [--rows 1000000] [--users 1000] [--pages 200] [--port-base 25700]

Each server runs on `../shared/bench/xmppbench.py`'s generated config with
`storage = "sql"` on SQLite and `mam` enabled (archives never expire, so
neither counts totals). Its archive table is filled directly with `--rows`
messages over `--users` users (each with 10 contacts, one message a minute),
in the server's own row format, between two starts. A client logged in as
one of those users then asks for pages of 50: by `with`, by a two-hour time
range, an `after-id` continuation from the middle of the archive, and the
last page (RSM `<before/>`). Prints, per kind of page, the median and 95th
percentile of the time from the query to its IQ result (after the 50
forwarded messages), and the server's CPU per page.
"""

from __future__ import annotations

import argparse
import base64
import random
import re
import socket
import sqlite3
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.integration.bench_tsung import load_xmppbench

CONTACTS = 10
PAGE = 50
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PAGER = "user0"
PASSWORD = "pagerpw"
DATABASE = "archive.sqlite"
MAM = "urn:xmpp:mam:2"
CONFIG = [
    'storage = "sql"',
    f'sql = {{ driver = "SQLite3", database = "{DATABASE}" }}',
    'modules_enabled = { "roster", "saslauth", "disco", "ping", "mam" }',
    'archive_expires_after = "never"',
    f"max_archive_query_results = {PAGE}",
    "vireo_mam_query_burst = 1000000",  # Vireo's query throttle; Prosody has none
]
RESULT_ID = re.compile(rb"<result [^>]*\bid=['\"]([^'\"]+)")


def contact(i: int) -> str:
    return f"contact{i}@remote.example"


def stanza(user: str, host: str, peer: str, n: int) -> str:
    return (f"<message xmlns='jabber:client' from='{peer}/phone' to='{user}@{host}' "
            f"type='chat' id='m{n}'><body>Message number {n} of a conversation about "
            f"nothing in particular.</body></message>")


def fill(path: Path, target: str, host: str, users: int, per_user: int) -> None:
    """The rows as each server writes them: Vireo's `archive` (a timestamp
    text), Prosody's `prosodyarchive` (Unix seconds, a UUID key)."""
    connection = sqlite3.connect(path)
    try:
        if target == "prosody":
            insert = ("INSERT INTO prosodyarchive (host, user, store, key, \"when\", \"with\", "
                      "type, value) VALUES (?, ?, 'archive', ?, ?, ?, 'xml', ?)")
            when_of = lambda n: int((T0 + timedelta(minutes=n)).timestamp())  # noqa: E731
        else:
            insert = ("INSERT INTO archive (host, username, store, key, \"when\", \"with\", "
                      "type, value) VALUES (?, ?, 'archive', ?, ?, ?, 'xml', ?)")
            when_of = lambda n: (T0 + timedelta(minutes=n)).strftime(  # noqa: E731
                "%Y-%m-%d %H:%M:%S.%f")
        for u in range(users):
            user = f"user{u}"
            connection.executemany(insert, [
                (host, user, str(uuid.uuid4()), when_of(n), contact(n % CONTACTS),
                 stanza(user, host, contact(n % CONTACTS), n)) for n in range(per_user)])
        connection.commit()
        connection.execute("ANALYZE")
    finally:
        connection.close()


class Client:
    """A plain-TCP c2s client that logs in with PLAIN and pages an archive."""

    def __init__(self, addr: str, port: int, domain: str) -> None:
        self.domain = domain
        self.sock = socket.create_connection((addr, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.serial = 0

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"closed: {self.buffer[-300:]!r}")
            self.buffer += data
        cut = self.buffer.index(marker) + len(marker)
        head, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return head

    def open_stream(self) -> None:
        self.sock.sendall(
            f"<?xml version='1.0'?><stream:stream to='{self.domain}' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".encode())
        self.read_until(b"</stream:features>")

    def log_in(self, user: str, password: str) -> None:
        self.open_stream()
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.sock.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                          f"mechanism='PLAIN'>{token}</auth>".encode())
        if b"<success" not in self.read_until(b"/>"):
            raise RuntimeError("login refused")
        self.open_stream()
        self.sock.sendall(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:"
                          b"xmpp-bind'><resource>pager</resource></bind></iq>")
        self.read_until(b"</iq>")

    def page(self, fields: dict[str, str], rsm: str) -> list[bytes]:
        """One query; the ids of the results, once its IQ result is in."""
        self.serial += 1
        qid = f"q{self.serial}"
        form = "".join(f"<field var='{name}'><value>{value}</value></field>"
                       for name, value in fields.items())
        self.sock.sendall(
            f"<iq type='set' id='{qid}'><query xmlns='{MAM}' queryid='{qid}'>"
            f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{MAM}</value></field>{form}</x>"
            f"<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>".encode())
        # The forwarded messages, then the IQ result with the <fin/> (no
        # archived body holds a raw "</iq>": it would be escaped).
        answer = b""
        while b"<fin" not in answer:
            answer += self.read_until(b"</iq>")
        return RESULT_ID.findall(answer)


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def page_kinds(client: Client, rng: random.Random, per_user: int):
    middle = client.page({"start": stamp(T0 + timedelta(minutes=per_user // 2))},
                         "<max>1</max>")[0].decode()

    def two_hours() -> tuple[dict[str, str], str]:
        start = T0 + timedelta(minutes=rng.randrange(per_user - 120))
        return {"start": stamp(start), "end": stamp(start + timedelta(hours=2))}, \
            f"<max>{PAGE}</max>"
    return {
        "with": lambda: ({"with": contact(rng.randrange(CONTACTS))}, f"<max>{PAGE}</max>"),
        "time range": two_hours,
        "after-id": lambda: ({}, f"<max>{PAGE}</max><after>{middle}</after>"),
        "last page": lambda: ({}, f"<max>{PAGE}</max><before/>"),
    }


def measure(xb, target: str, args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    options = xb.build_parser().parse_args(
        ["login", "--target", target, "--port-base", str(args.port_base), "--users", "cmd",
         "--password", PASSWORD] + [f"--config-extra={line}" for line in CONFIG])
    xb.resolve(options)
    server = xb.Server(options, "login")
    per_user = args.rows // args.users
    try:
        server.start()  # makes the schema
        server.add_users([PAGER])
        server.stop()
        started = time.monotonic()
        fill(Path(server.data_dir) / DATABASE, target, options.domain, args.users, per_user)
        print(f"{target}: {args.users * per_user} rows in {time.monotonic() - started:.0f} s",
              flush=True)
        server.pid, server.owned = None, False
        server.start()
        client = Client(options.addr, xb.ports(options)["c2s"], options.domain)
        client.log_in(PAGER, PASSWORD)
        rng = random.Random(1)
        figures = {}
        for name, make in page_kinds(client, rng, per_user).items():
            for _ in range(10):  # warm the caches
                client.page(*make())
            walls = []
            cpu = server.cpu()
            for _ in range(args.pages):
                query = make()
                begun = time.perf_counter()
                got = client.page(*query)
                walls.append((time.perf_counter() - begun) * 1000)
                if len(got) != PAGE:
                    raise RuntimeError(f"{target} {name}: {len(got)} results, not {PAGE}")
            cpu_ms = (server.cpu() - cpu) * 1000 / args.pages
            walls.sort()
            figures[name] = (statistics.median(walls), walls[int(len(walls) * 0.95)], cpu_ms)
        return figures
    finally:
        server.stop()
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", default="vireo,prosody")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--port-base", type=int, default=25700)
    args = parser.parse_args()
    xb = load_xmppbench()
    results = {target: measure(xb, target, args) for target in args.targets.split(",")}
    print(f"\n{args.rows} archived messages, {args.users} users; ms per page of {PAGE}, "
          f"{args.pages} pages each (median / p95 wall, server CPU):")
    for target, figures in results.items():
        for name, (median, p95, cpu_ms) in figures.items():
            print(f"  {target:>8} {name:>10}: {median:6.2f} / {p95:6.2f} ms, "
                  f"CPU {cpu_ms:5.2f} ms")


if __name__ == "__main__":
    main()
