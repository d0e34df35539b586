"""Benchmark (not a test): one PEP publish fanned out to N subscribed contacts.

    .venv/bin/python -m tests.integration.bench_pep --target vireo|prosody [--contacts 100]
        [--publishes 300] [--window 4] [--reps 3]

Starts one server of the target kind (mod_pep loaded, plain c2s), with an
owner whose roster has N contacts in mutual subscription (written into the
server's storage beforehand). The owner creates the node, each contact
subscribes to it with its full JID (XEP-0060 6.1, allowed by the default
`presence` access model), then the owner publishes P items (at most W
unanswered) and every contact counts its notifications. Reports wall-clock
rate and the server's CPU per delivered notification. The generator is one
asyncio process that never parses XML, as bench_s2s.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from storage.db import Database, database_url
from storage.roster import RosterItem, RosterStore
from tests.integration.bench_report import print_rep, print_summary
from tests.integration.bench_s2s import C2S_PLAIN, PASSWORD, cpu_seconds, login
from tests.integration.prosody_fixture import _encode, make_prosody
from tests.integration.server_fixture import make_server
from xmpp.config import load_config

DOMAIN = "pep.bench"
ADDRESS = "127.0.0.1"
NODE = "urn:example:bench"
PUBSUB = "http://jabber.org/protocol/pubsub"
MARK = b">measured<"


def publish(item: int, text: str) -> bytes:
    return (f"<iq type='set' id='p{item}'><pubsub xmlns='{PUBSUB}'><publish node='{NODE}'>"
            f"<item id='i{item}'><x xmlns='urn:example'>{text}</x></item></publish>"
            "</pubsub></iq>").encode()


def seed_vireo(server, contacts: list[str]) -> None:
    database = Database(database_url(load_config(server.config_path)))
    try:
        store = RosterStore(database)
        owner = f"owner@{DOMAIN}"
        for contact in contacts:
            store.put_item(DOMAIN, "owner", RosterItem(f"{contact}@{DOMAIN}", subscription="both"))
            store.put_item(DOMAIN, contact, RosterItem(owner, subscription="both"))
    finally:
        database.close()


def seed_prosody(server, contacts: list[str]) -> None:
    """Rosters in Prosody's internal storage (data/HOST/roster/USER.dat)."""
    rosters = server.directory / "data" / _encode(DOMAIN) / "roster"
    rosters.mkdir(parents=True, exist_ok=True)

    def write(user: str, jids: list[str]) -> None:
        entries = "".join(f'\t["{jid}"] = {{ ["subscription"] = "both"; ["groups"] = {{}}; }};\n'
                          for jid in jids)
        (rosters / f"{_encode(user)}.dat").write_text(
            f'return {{\n\t[false] = {{ ["version"] = 1; }};\n{entries}}};\n')

    write("owner", [f"{contact}@{DOMAIN}" for contact in contacts])
    for contact in contacts:
        write(contact, [f"owner@{DOMAIN}"])


async def tokens(conn, token: bytes):
    """How many `token`s each read brings (a token split across reads counts once)."""
    tail, conn.buffer = conn.buffer, b""
    while True:
        data = await conn.reader.read(65536)
        if not data:
            raise ConnectionError("closed while counting")
        chunk = tail + data
        yield chunk.count(token)
        tail = chunk[-(len(token) - 1):]


async def count(conn, token: bytes, total: int) -> None:
    seen = 0
    async for arrived in tokens(conn, token):
        seen += arrived
        if seen >= total:
            return


async def drive(server, args) -> dict:
    owner = await login(ADDRESS, server.c2s_port, DOMAIN, "owner")
    owner.writer.write(publish(0, "warm-up"))
    await owner.until(b"</iq>")
    contacts = [await login(ADDRESS, server.c2s_port, DOMAIN, f"c{i}")
                for i in range(args.contacts)]
    for index, contact in enumerate(contacts):
        contact.writer.write(
            f"<iq type='set' id='sub' to='owner@{DOMAIN}'><pubsub xmlns='{PUBSUB}'>"
            f"<subscribe node='{NODE}' jid='c{index}@{DOMAIN}/r'/></pubsub></iq>".encode())
    for contact in contacts:
        await contact.until(b"subscribed")
    readers = [asyncio.create_task(count(contact, MARK, args.publishes))
               for contact in contacts]
    pid = server.process.pid
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    sent = answered = 0
    answers = tokens(owner, b"</iq>")
    while answered < args.publishes:
        while sent < args.publishes and sent - answered < args.window:
            sent += 1
            owner.writer.write(publish(sent, "measured"))
        answered += await asyncio.wait_for(anext(answers), 60)
    await asyncio.wait_for(asyncio.gather(*readers), 600)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    for conn in [owner, *contacts]:
        conn.writer.close()
    delivered = args.publishes * args.contacts
    return {"notifications": delivered, "wall_s": round(wall, 3),
            "notifications_per_s": round(delivered / wall, 1),
            "cpu_us_per_notification": round(cpu / delivered * 1e6, 1),
            "cpu_util": round(cpu / wall, 2)}


def start(target: str, base: Path):
    extra = C2S_PLAIN + 'log = { warn = "*stderr" }\n'
    if target == "vireo":
        return make_server(base, domain=DOMAIN, address=ADDRESS, modules=("pep",), extra=extra)
    return make_prosody(base, domain=DOMAIN, address=ADDRESS, dns_forward="127.0.0.1@1",
                        extra=extra + 'modules_enabled = { "roster", "saslauth", "disco", '
                        '"pep" }\n')


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("vireo", "prosody"), required=True)
    parser.add_argument("--contacts", type=int, default=100)
    parser.add_argument("--publishes", type=int, default=300)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    results = []
    for _rep in range(args.reps):
        with tempfile.TemporaryDirectory(prefix="bench-pep-") as tmp:
            server = start(args.target, Path(tmp))
            contacts = [f"c{i}" for i in range(args.contacts)]
            server.create_users({name: PASSWORD for name in ["owner", *contacts]})
            (seed_vireo if args.target == "vireo" else seed_prosody)(server, contacts)
            try:
                server.start()
                results.append(asyncio.run(drive(server, args)))
            finally:
                server.stop()
        print_rep(results[-1])
    print_summary(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
