"""Benchmark (not a test): what one archived message costs SQLite itself.

    .venv/bin/python -m tests.integration.bench_archive_floor
        [--rows 200000] [--users 50] [--batch 500] [--path DIR]

Issue 16 asks for `c2s_msgs` with `mam` at most 1.3x the CPU of `c2s_msgs`
without it. A chat message between two local users is archived twice (once in
each user's archive, as Prosody does), so that mark leaves 0.15x of a routed
message's CPU for two rows. This measures the process CPU per row of Vireo's
own append path (ArchiveStore.append_many through the archive writer's thread
hand-off, batches of --batch rows) on the migrated SQLite schema, three ways:

- `schema`: the archive table as migrated (the unique key and the two paging
  indexes that keep a page under 5 ms at 10 million rows);
- `no paging indexes`: the two paging indexes dropped;
- `bare table`: every secondary index dropped (an append to the rowid B-tree
  only, the least any SQL row can cost).

The table is first filled with --rows rows so that the indexes have depth.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from sqlalchemy import text

from storage.db import Database
from storage.stores import ArchiveEntry, StoreFactory

HOST = "bench.example"
PAGING_INDEXES = ("ix_archive_host_username_store_when_id_with",
                  "ix_archive_host_username_store_with_when_id")
UNIQUE_KEY = "uq_archive_host_username_store_key"


def _message(number: int) -> Element:
    stanza = Element("{jabber:client}message", {"to": "u2@bench.example", "type": "chat",
                                                "from": "u1@bench.example/phone",
                                                "id": f"m{number:012d}"})
    body = Element("{jabber:client}body")
    body.text = f"message {number} " + "x" * 100
    stanza.append(body)
    return stanza


def _entries(first: int, count: int, users: int) -> list[ArchiveEntry]:
    when = datetime.now(UTC)
    return [ArchiveEntry(f"user{(first + i) % users}", _message(first + i), when,
                         f"user{(first + i + 1) % users}@{HOST}") for i in range(count)]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_us_per_row(store: Any, rows: int, users: int, batch: int, first: int,
                    run_blocking: Callable[..., Any]) -> float:
    batches = [_entries(first + start, batch, users) for start in range(0, rows, batch)]
    before = _cpu_seconds()
    for entries in batches:
        store.append_many(entries, run_blocking=run_blocking)
    return (_cpu_seconds() - before) / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--path", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.path) as directory:
        db = Database(f"sqlite:///{directory}/archive.sqlite")
        db.migrate()
        store = StoreFactory(db).open(HOST, "archive", "archive")

        def in_thread(function: Callable[..., Any], arguments: tuple[Any, ...]) -> Any:
            return function(*arguments)  # the writer's thread pool, without gevent

        _cpu_us_per_row(store, args.rows, args.users, args.batch, 0, in_thread)
        first = args.rows
        for label, drop in (("schema", ()), ("no paging indexes", PAGING_INDEXES),
                            ("bare table", (UNIQUE_KEY,))):
            with db.engine.begin() as connection:
                for index in drop:
                    connection.execute(text(f"DROP INDEX {index}"))
            cost = _cpu_us_per_row(store, args.rows, args.users, args.batch, first, in_thread)
            first += args.rows
            print(f"{label:>18}: {cost:6.2f} CPU-us per archived row, "
                  f"{2 * cost:6.2f} per chat message (two archives)")
        db.close()


if __name__ == "__main__":
    main()
