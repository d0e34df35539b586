"""Nothing acknowledged is lost: SIGKILL the server in the middle of storage work, again and again.

Each cycle starts the server, runs five workloads at once (roster changes, bursts
of offline messages, upload PUTs, registrations, password changes), kills the
process with SIGKILL at a random moment, restarts it and checks the stores from
outside. What counts as acknowledged, for each workload:

- a roster set: its IQ result arrived;
- an offline message: the sender got no error for it, and a ping sent after it
  came back (the server handles a stream's stanzas in order);
- an upload: the PUT answered 201;
- a registration or a password change: its IQ result arrived.

Every acknowledged change must be there after the restart; the one change of
each kind that was in flight at the kill may or may not be, but whole or not at
all. The upload store must hold no partial file, no file of a slot the
database does not count as complete, and no completed slot without its file.

Each database gets VIREO_CRASH_KILLS kills (default 200), within
VIREO_CRASH_SECONDS (default 360): a loop that has not managed them by then
fails. A cycle is kept cheap: servers are forked from one that has done the
imports (tests/integration/fork_server.py), each workload checks its own store
while the others log in, and the clients share one TLS context.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from slixmpp.exceptions import IqError

from http_apps.file_share.service import MODULE_NAME, encode_host
from storage.accounts import AccountStore
from storage.db import Database
from storage.offline import OfflineStore
from storage.roster import RosterStore
from storage.uploads import UploadStore
from tests.integration.clients import TIMEOUT, TestClient, close, run, try_login
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import ServerProcess
from tests.integration.test_file_share import (
    PLUGINS,
    UPLOAD,
    file_share_server,
    put_headers,
    request_slot,
)
from tests.unit import storage_fixtures

log = logging.getLogger(__name__)

db_url = storage_fixtures.db_url

KILLS_ENV, DEFAULT_KILLS = "VIREO_CRASH_KILLS", 200
SECONDS_ENV, DEFAULT_SECONDS = "VIREO_CRASH_SECONDS", 360.0
MAX_CYCLES = 10_000
# The kill lands this long (uniformly drawn) after every workload is under way.
MAX_KILL_DELAY = 0.5
# After the kill: how long the clients get to notice that their connections died.
NOTICE_TIMEOUT = 5.0
CYCLE_TIMEOUT = 60.0
CONTACTS = 5
BURST = 10
MAX_UPLOAD = 512 * 1024
UPLOAD_CHUNK = 64 * 1024
UPLOAD_PAUSE = 0.01
CHANGER_PLUGINS = ("xep_0030", "xep_0004", "xep_0066", "xep_0077")

USERS = {"rosterer": "pw-rosterer", "sender": "pw-sender", "away": "pw-away",
         "uploader": "pw-uploader", "changer": "pw-changer-0"}


class Killed(Exception):
    """The workload stopped because the server died (as the test meant it to)."""


@dataclass
class Stores:
    """The server's database, opened by the test to check it while the server idles."""

    accounts: AccountStore
    rosters: RosterStore
    offline: OfflineStore
    uploads: UploadStore


class Workload:
    """One kind of storage work: `run` it until the kill, then `check` the stores."""

    clients: list[TestClient]
    ready: asyncio.Event

    async def run(self, server: ServerProcess, stores: Stores, killed: asyncio.Event) -> None:
        # What the last kill left is checked first (the server is up again, nothing
        # else touches this workload's data), in a thread: the checks (PBKDF2 for
        # each password) overlap the other workloads' logins.
        await asyncio.to_thread(self.check, server, stores)
        try:
            await self.work(server)
        except Exception as error:
            if not killed.is_set():
                raise
            log.debug("%s stopped by the kill: %r", type(self).__name__, error)

    async def work(self, server: ServerProcess) -> None:
        raise NotImplementedError

    async def settle(self, task: asyncio.Task) -> None:
        """After the kill, until everything the server sent has been read:
        each connection has seen its end."""
        for client in self.clients:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(client.ended), NOTICE_TIMEOUT)

    async def login(self, server: ServerProcess, user: str, password: str,
                    plugins: tuple[str, ...] = ("xep_0030", "xep_0199")) -> TestClient:
        client = await try_login(server, user, password, plugins=plugins)
        if client is None:
            raise Killed(f"login of {user} failed")
        self.clients.append(client)
        return client

    def check(self, server: ServerProcess, stores: Stores) -> None:
        raise NotImplementedError


class RosterChanges(Workload):
    """One user adds, renames and removes a few contacts, one roster set at a time."""

    user = "rosterer"

    def __init__(self) -> None:
        self.names: dict[str, str] = {}    # acknowledged: contact -> name (absent: removed)
        self.version = 0                   # acknowledged changes (each bumps the version)
        self.in_flight: tuple[str, str | None] | None = None
        self.seq = 0

    async def work(self, server: ServerProcess) -> None:
        client = await self.login(server, self.user, USERS[self.user])
        self.ready.set()
        while True:
            self.seq += 1
            contact = f"c{self.seq % CONTACTS}@example.org"
            name = None if self.seq % 3 == 0 else f"n{self.seq}"
            iq = client.Iq()
            iq["type"] = "set"
            iq["roster"]["items"] = {contact: {"subscription": "remove"} if name is None
                                     else {"name": name, "subscription": "none"}}
            self.in_flight = (contact, name)
            try:
                await iq.send(timeout=TIMEOUT)
            except IqError as error:
                # Removing a contact that is not there changes nothing.
                assert name is None and contact not in self.names, error
                self.in_flight = None
                continue
            self.in_flight = None
            if name is None:
                del self.names[contact]
            else:
                self.names[contact] = name
            self.version += 1

    def check(self, server: ServerProcess, stores: Stores) -> None:
        roster = stores.rosters.get_roster(server.domain, self.user)
        version = stores.rosters.version(server.domain, self.user)
        actual = {contact: item.name for contact, item in roster.items()}
        if self.in_flight is not None and version == self.version + 1:
            contact, name = self.in_flight  # the change in flight was committed
            if name is None:
                self.names.pop(contact, None)
            else:
                self.names[contact] = name
            self.version = version
        assert (actual, version) == (self.names, self.version)
        self.in_flight = None


class OfflineBursts(Workload):
    """Bursts of messages to a user who is never online, each burst followed by a ping."""

    sender, recipient = "sender", "away"

    def __init__(self) -> None:
        self.sent: set[int] = set()
        self.acknowledged: set[int] = set()
        self.seq = 0

    async def work(self, server: ServerProcess) -> None:
        client = await self.login(server, self.sender, USERS[self.sender])
        refused: set[str] = set()
        client.add_event_handler("message_error", lambda message: refused.add(message["id"]))
        self.ready.set()
        while True:
            burst = range(self.seq + 1, self.seq + 1 + BURST)
            self.seq += BURST
            for seq in burst:
                message = client.make_message(mto=server.jid(self.recipient), mbody=f"m{seq}",
                                              mtype="chat")
                message["id"] = f"m{seq}"
                self.sent.add(seq)
                message.send()
            await client["xep_0199"].ping(server.domain, timeout=TIMEOUT)
            self.acknowledged.update(seq for seq in burst if f"m{seq}" not in refused)

    def check(self, server: ServerProcess, stores: Stores) -> None:
        # Taken out, so the queue stays short: the server never touches it meanwhile.
        stored = [xml for xml, _stamp in stores.offline.pop_all(server.domain, self.recipient)]
        seqs = [int(xml.split("<body>m", 1)[1].split("<", 1)[0]) for xml in stored]
        assert len(seqs) == len(set(seqs)), "a message stored twice"
        assert set(seqs) <= self.sent, "a message nobody sent"
        assert self.acknowledged <= set(seqs), \
            f"acknowledged messages lost: {sorted(self.acknowledged - set(seqs))}"
        self.sent.clear()
        self.acknowledged.clear()


class Uploads(Workload):
    """Slot requests and PUTs of random sizes, one at a time."""

    user = "uploader"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.acknowledged: dict[str, str] = {}  # slot -> sha256 of the body that got 201
        self.seq = 0

    async def work(self, server: ServerProcess) -> None:
        client = await self.login(server, self.user, USERS[self.user], plugins=PLUGINS)
        async with aiohttp.ClientSession() as http:
            self.ready.set()
            while True:
                self.seq += 1
                body = self.rng.randbytes(self.rng.randint(1, MAX_UPLOAD))
                slot = (await request_slot(client, f"f{self.seq}.bin", len(body),
                                           "application/octet-stream"))["http_upload_slot"]
                url = slot["put"]["url"]
                headers = {**put_headers(slot), "Content-Length": str(len(body))}
                async with http.put(url, data=slowly(body), headers=headers) as response:
                    assert response.status == 201, response.status
                self.acknowledged[urlsplit(url).path.split("/")[-2]] = \
                    hashlib.sha256(body).hexdigest()

    def check(self, server: ServerProcess, stores: Stores) -> None:
        directory = server.directory / "data" / encode_host(UPLOAD) / MODULE_NAME
        files = {path.name for path in directory.iterdir()} if directory.exists() else set()
        assert not [name for name in files if "~" in name], f"partial uploads left: {files}"
        rows = {row.slot: row for row in stores.uploads.created_until(
            UPLOAD, datetime(9999, 1, 1, tzinfo=UTC), MAX_CYCLES * 100)}
        completed = {f"{slot}.bin" for slot, row in rows.items() if row.completed is not None}
        assert files == completed, (f"files without a completed slot: {files - completed}, "
                                    f"completed slots without a file: {completed - files}")
        for slot, digest in self.acknowledged.items():
            row = rows[slot]
            assert row.path is not None and row.completed is not None
            data = Path(row.path).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (row.size, digest)
        self.acknowledged.clear()


async def slowly(body: bytes):
    """The body in chunks with pauses, as a slow client sends it: most kills then
    find an upload half-received."""
    for start in range(0, len(body), UPLOAD_CHUNK):
        yield body[start:start + UPLOAD_CHUNK]
        await asyncio.sleep(UPLOAD_PAUSE)


class Registrations(Workload):
    """In-band registrations on one unauthenticated stream (a raw client in a thread)."""

    def __init__(self) -> None:
        self.acknowledged: dict[str, str] = {}
        self.in_flight: tuple[str, str] | None = None
        self.seq = 0

    async def settle(self, task: asyncio.Task) -> None:
        # The thread cannot be cancelled; it ends at the end of its connection.
        await asyncio.wait([task], timeout=NOTICE_TIMEOUT)

    async def work(self, server: ServerProcess) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.register, server, lambda: loop.call_soon_threadsafe(
            self.ready.set))

    def register(self, server: ServerProcess, started) -> None:
        client = RawClient(server.c2s_port)
        try:
            client.starttls(server.domain, server.cert)
            started()
            for _ in range(MAX_CYCLES):
                self.seq += 1
                seq = self.seq
                user, password = f"reg{seq}", f"pw{seq}"
                self.in_flight = (user, password)
                client.send(f"<iq type='set' id='r{seq}'><query xmlns='jabber:iq:register'>"
                            f"<username>{user}</username><password>{password}</password>"
                            "</query></iq>")
                answer = client.read_until(rb"<iq .*?(/>|</iq>)")
                assert b"type='result'" in answer or b'type="result"' in answer, answer
                self.acknowledged[user] = password
                self.in_flight = None
        finally:
            client.close()

    def check(self, server: ServerProcess, stores: Stores) -> None:
        for user, password in self.acknowledged.items():
            assert stores.accounts.check_password(server.domain, user, password), user
        if self.in_flight is not None:
            user, password = self.in_flight
            if stores.accounts.exists(server.domain, user):
                assert stores.accounts.check_password(server.domain, user, password), user
        self.acknowledged.clear()
        self.in_flight = None


class PasswordChanges(Workload):
    """A user logs in, changes the password (the server then resets the stream), repeat."""

    user = "changer"

    def __init__(self) -> None:
        self.password = USERS[self.user]
        self.in_flight: str | None = None
        self.seq = 0

    async def work(self, server: ServerProcess) -> None:
        while True:
            client = await self.login(server, self.user, self.password,
                                      plugins=CHANGER_PLUGINS)
            self.ready.set()
            self.seq += 1
            self.in_flight = f"pw-changer-{self.seq}-{os.getpid()}"
            await client["xep_0077"].change_password(self.in_flight, timeout=TIMEOUT)
            self.password, self.in_flight = self.in_flight, None
            await asyncio.wait_for(client.ended, TIMEOUT)

    def check(self, server: ServerProcess, stores: Stores) -> None:
        if self.in_flight is not None and stores.accounts.check_password(
                server.domain, self.user, self.in_flight):
            self.password = self.in_flight
        assert stores.accounts.check_password(server.domain, self.user, self.password)
        self.in_flight = None


async def cycle(server: ServerProcess, stores: Stores, workloads: list[Workload],
                kill_delay: float) -> None:
    """Check what the last kill left, run the workloads, SIGKILL the server once all
    are under way, let them notice."""
    killed = asyncio.Event()
    for workload in workloads:
        workload.clients, workload.ready = [], asyncio.Event()
    tasks = [asyncio.create_task(workload.run(server, stores, killed))
             for workload in workloads]
    try:
        await kill_when_under_way(server, workloads, tasks, killed, kill_delay)
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):  # not CancelledError: those were waiting
                raise result
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close(*(client for workload in workloads for client in workload.clients))


async def kill_when_under_way(server: ServerProcess, workloads: list[Workload],
                              tasks: list[asyncio.Task], killed: asyncio.Event,
                              kill_delay: float) -> None:
    readiness = asyncio.gather(*(workload.ready.wait() for workload in workloads))
    done, _ = await asyncio.wait([readiness, *tasks], timeout=CYCLE_TIMEOUT,
                                 return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()  # a workload that failed before the kill fails the test
    await asyncio.sleep(kill_delay)
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGKILL)
    killed.set()
    # Everything the server sent before it died is in the clients' sockets; once
    # they have read to the end, nothing acknowledged is still on its way, and a
    # workload still waiting for an answer will wait in vain.
    await asyncio.gather(*(workload.settle(task) for workload, task in zip(workloads, tasks,
                                                                          strict=True)))
    for task in tasks:
        task.cancel()


def test_nothing_acknowledged_is_lost_when_the_server_is_killed(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIREO_DATABASE_URL", db_url)
    server = file_share_server(
        tmp_path / "server", "    http_file_share_daily_quota = 1024 * 1024 * 1024 * 1024\n",
        users=USERS,
        host_options='modules_enabled = { "register" }\nallow_registration = true\n')
    kills = min(int(os.environ.get(KILLS_ENV, DEFAULT_KILLS)), MAX_CYCLES)
    seconds = float(os.environ.get(SECONDS_ENV, DEFAULT_SECONDS))
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    log.info("crash loop seed %d", seed)
    database = Database(db_url)
    stores = Stores(AccountStore(database), RosterStore(database), OfflineStore(database),
                    UploadStore(database))
    workloads = [RosterChanges(), OfflineBursts(), Uploads(rng), Registrations(),
                 PasswordChanges()]
    roster, offline, uploads, _registrations, changer = workloads
    cycles = 0
    started = time.monotonic()
    deadline = started + seconds
    try:
        server.use_fork_server()
        server.start()
        while cycles < kills and time.monotonic() < deadline:
            run(cycle(server, stores, workloads, rng.uniform(0, MAX_KILL_DELAY)))
            server.process.wait(TIMEOUT)
            cycles += 1
            server.start()
        for workload in workloads:
            workload.check(server, stores)
        assert server.stop() == 0
    finally:
        server.stop()
        database.close()
    took = time.monotonic() - started
    print(f"{cycles} kills in {took:.0f} s (seed {seed}): "
          f"{roster.version} roster changes, {offline.seq} messages, "
          f"{uploads.seq} uploads, {changer.seq} password changes")
    assert cycles == kills, f"only {cycles} of {kills} kills in {seconds:.0f} s"
