"""Benchmark (not a test): MAM pages on a large archive, SQLite or PostgreSQL.

    .venv/bin/python -m tests.integration.bench_mam --db sqlite|postgresql
        [--rows 10000000] [--users 10000] [--samples 300] [--path DIR]

Fills the `archive` table (through the migrations, with the indexes dropped
during the load and made again after it, as a restore would) with R rows
spread evenly over U users, each talking to 10 contacts, one message a
minute; then, for random users, times what mod_mam does for one page of 50:
ArchiveStore.find (limit 51) and count, and the result stanzas serialized.
Pages: by `with`, by a two-hour time range, an `after-id` continuation from
the middle of the archive, and the last page (RSM <before/>). Prints the
median and 95th percentile in ms, and each query's plan (SQLite's EXPLAIN
QUERY PLAN, PostgreSQL's EXPLAIN ANALYZE). A filled database is reused when
run again with the same --path (PostgreSQL: the same schema name).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, event, func, make_url, select, text

from storage.db import Database
from storage.models import archive
from storage.stores import StoreFactory
from xmpp import mam
from xmpp.stanza import serialize

HOST = "bench.example"
CONTACTS = 10
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 50_000
PAGE = 50


def user_name(i: int) -> str:
    return f"user{i}"


def contact(i: int) -> str:
    return f"contact{i}@remote.example"


def value(user: str, peer: str, n: int) -> str:
    return (f"<message xmlns='jabber:client' from='{peer}/phone' to='{user}@{HOST}' "
            f"type='chat' id='m{n}'><body>Message number {n} of a conversation about "
            f"nothing in particular.</body></message>")


def rows(users: int, per_user: int):
    for u in range(users):
        user = user_name(u)
        for n in range(per_user):
            peer = contact(n % CONTACTS)
            yield (HOST, user, "archive", secrets.token_urlsafe(12),
                   T0 + timedelta(minutes=n), peer, "xml", value(user, peer, n))


def fill(db: Database, users: int, per_user: int) -> None:
    table = archive
    with db.engine.connect() as connection:
        present = connection.scalar(select(func.count()).select_from(table))
    if present == users * per_user:
        print(f"reusing {present} rows", flush=True)
        return
    if present:
        sys.exit(f"the database holds {present} rows, not {users * per_user}: use another path")
    engine = db.engine
    for index in table.indexes:
        index.drop(engine)
    started = time.monotonic()
    columns = ("host", "username", "store", "key", "when", "with", "type", "value")
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            cursor = connection.connection.cursor()
            quoted = ", ".join(f'"{c}"' for c in columns)
            with cursor.copy(f"COPY archive ({quoted}) FROM STDIN") as copy:
                for i, row in enumerate(rows(users, per_user)):
                    copy.write_row(row)
                    if i % 1_000_000 == 0:
                        print(f"  {i} rows, {time.monotonic() - started:.0f} s", flush=True)
    else:
        insert = ("INSERT INTO archive (host, username, store, key, \"when\", \"with\", type, "
                  "value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            batch = []
            for i, (h, u, s, k, w, wi, t, v) in enumerate(rows(users, per_user)):
                batch.append((h, u, s, k, w.strftime("%Y-%m-%d %H:%M:%S.%f"), wi, t, v))
                if len(batch) == CHUNK:
                    cursor.executemany(insert, batch)
                    raw.commit()
                    batch = []
                if i % 1_000_000 == 0:
                    print(f"  {i} rows, {time.monotonic() - started:.0f} s", flush=True)
            cursor.executemany(insert, batch)
            raw.commit()
        finally:
            raw.close()
    print(f"loaded in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    for index in table.indexes:
        index.create(engine)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    print(f"indexed and analysed in {time.monotonic() - started:.0f} s", flush=True)


class Statements:
    """The SQL a store call sends, for EXPLAIN."""

    def __init__(self, engine) -> None:
        self.seen: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn, _cursor, statement, parameters, _context, _many) -> None:
        self.seen.append((statement, parameters))


def explain(engine, statements: list[tuple[str, object]]) -> None:
    with engine.connect() as connection:
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            print("   ", " ".join(statement.split())[:400])
            raw = connection.connection.cursor()
            if engine.dialect.name == "postgresql":
                raw.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            else:
                raw.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            for line in raw.fetchall():
                print("      ", " | ".join(str(part) for part in line))


def page_cost(store, user: str, query: mam.ArchiveQuery) -> tuple[float, float]:
    """One page as mod_mam makes it (run_query: find limit+1 and count; result stanzas):
    wall-clock and this process's CPU milliseconds."""
    started, cpu = time.perf_counter(), time.process_time()
    records, _done = mam.run_query(store, user, query, include_total=True)
    for record in records:
        serialize(mam.result_message(f"{user}@{HOST}/r", "q", record.key, record.when,
                                     record.value))
    return (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000


def two_hours(start: datetime) -> mam.ArchiveQuery:
    return mam.ArchiveQuery(start=start, end=start + timedelta(hours=2), limit=PAGE)


def measure(db: Database, users: int, per_user: int, samples: int) -> None:
    store = StoreFactory(db).open(HOST, "archive", "archive")
    rng = random.Random(1)
    middle_minute = per_user // 2
    kinds = {
        "with": lambda user: mam.ArchiveQuery(with_=contact(rng.randrange(CONTACTS)),
                                              limit=PAGE),
        "time range": lambda user: two_hours(T0 + timedelta(minutes=rng.randrange(per_user))),
        "after-id": lambda user: mam.ArchiveQuery(
            after=(store.find(user, start=T0 + timedelta(minutes=middle_minute),
                              limit=1)[0].key,), limit=PAGE),
        "last page": lambda user: mam.ArchiveQuery(limit=PAGE, reverse=True),
    }
    recorder = Statements(db.engine)
    for name, make in kinds.items():
        walls, cpus = [], []
        for _ in range(samples):
            user = user_name(rng.randrange(users))
            wall, cpu = page_cost(store, user, make(user))
            walls.append(wall)
            cpus.append(cpu)
        walls.sort()
        print(f"{name:>10}: median {statistics.median(walls):.2f} ms, "
              f"p95 {walls[int(len(walls) * 0.95)]:.2f} ms, max {walls[-1]:.2f} ms; "
              f"CPU median {statistics.median(cpus):.2f} ms ({samples} pages of {PAGE})",
              flush=True)
        user = user_name(rng.randrange(users))
        query = make(user)
        recorder.seen.clear()
        page_cost(store, user, query)
        explain(db.engine, list(recorder.seen))


def database_for(kind: str, path: Path) -> str:
    if kind == "sqlite":
        path.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path / 'archive.sqlite'}"
    server = os.environ.get("VIREO_TEST_POSTGRES_URL")
    if not server:
        sys.exit("set VIREO_TEST_POSTGRES_URL for PostgreSQL")
    schema = "bench_mam_" + path.name.replace("-", "_")
    admin = create_engine(server)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    admin.dispose()
    url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--path", type=Path, default=Path("/tmp/bench_mam"))
    args = parser.parse_args()
    per_user = args.rows // args.users
    db = Database(database_for(args.db, args.path))
    db.migrate()
    fill(db, args.users, per_user)
    measure(db, args.users, per_user, args.samples)
    db.close()


if __name__ == "__main__":
    main()
