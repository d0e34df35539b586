"""The database going away: the stanzas that need it fail with an error, the server stays
up, and service resumes by itself when the database is back.

PostgreSQL: a private cluster (tests/integration/postgres_cluster.py) is stopped
and started again under the running server.

SQLite: the file is made unwritable by a full disk. chmod is no way to do it:
the server keeps its pooled connections open, and a file opened for writing
stays writable whatever its mode becomes (and root ignores modes anyway). So
the test sets the server process's RLIMIT_FSIZE to 0 (prlimit, allowed on a
child of one's own user, and to root): from then on the kernel refuses every
write to a regular file by that process, with EFBIG, as a full disk refuses
them with ENOSPC. Reads still work, so logins do; writes fail.
"""

from __future__ import annotations

import asyncio
import base64
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from tests.integration import postgres_cluster
from tests.integration.clients import TIMEOUT, TestClient, close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import ServerProcess, make_server

STORAGE_FAILURES = {"internal-server-error", "resource-constraint"}
CONTACT = "contact@example.org"


def outage_server(directory: Path) -> ServerProcess:
    server = make_server(directory)
    server.create_users({"alice": "alice-pw", "bob": "bob-pw"})
    server.start()
    return server


class Alice:
    """alice's session: roster sets, messages to bob (offline), what comes back."""

    def __init__(self, client: TestClient, server: ServerProcess) -> None:
        self.client = client
        self.server = server
        self.refused: asyncio.Queue = asyncio.Queue()
        self.pushes: asyncio.Queue = asyncio.Queue()
        client.add_event_handler("message_error", self.refused.put_nowait)
        client.add_event_handler(
            "roster_update", lambda iq: iq["type"] == "set" and self.pushes.put_nowait(iq))

    @classmethod
    async def connect(cls, server: ServerProcess) -> Alice:
        alice = cls(await login(server, "alice"), server)
        await alice.client.get_roster(timeout=TIMEOUT)
        return alice

    async def set_contact(self, name: str) -> None:
        iq = self.client.Iq()
        iq["type"] = "set"
        iq["roster"]["items"] = {CONTACT: {"name": name, "subscription": "none"}}
        await iq.send(timeout=TIMEOUT)

    async def message_bob(self, body: str) -> None:
        """Send, then ping: once the pong is back, an error would have come before it."""
        self.client.send_message(mto=self.server.jid("bob"), mbody=body, mtype="chat")
        await self.client["xep_0199"].ping(self.server.domain, timeout=TIMEOUT)

    async def works(self, name: str) -> None:
        await self.set_contact(name)
        push = await asyncio.wait_for(self.pushes.get(), TIMEOUT)
        assert push["roster"]["items"][CONTACT]["name"] == name  # no push of a failed set
        await self.message_bob(name)
        assert self.refused.empty()

    async def fails(self, name: str) -> None:
        with pytest.raises(IqError) as caught:
            await self.set_contact(name)
        assert caught.value.iq["error"]["condition"] in STORAGE_FAILURES
        await self.message_bob(name)
        refused = self.refused.get_nowait()
        assert refused["error"]["condition"] in STORAGE_FAILURES


async def offline_bodies(server: ServerProcess) -> list[str]:
    """What bob gets at login: the server sends it at his initial presence, before
    it answers the ping he sends next."""
    bob = await login(server, "bob")
    await bob["xep_0199"].ping(server.domain, timeout=TIMEOUT)
    bodies = []
    while not bob.messages.empty():
        bodies.append(bob.messages.get_nowait()["body"])
    await close(bob)
    return bodies


def sasl_answer(server: ServerProcess, user: str, password: str) -> bytes:
    """What the server answers a SASL PLAIN <auth/> (the element's name and condition)."""
    raw = RawClient(server.c2s_port)
    try:
        raw.starttls(server.domain, server.cert)
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        raw.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        return raw.read_until(rb"<success|</failure>")
    finally:
        raw.close()


# -- PostgreSQL -------------------------------------------------------------------------

@pytest.fixture
def cluster() -> Iterator[postgres_cluster.PrivateCluster]:
    if not postgres_cluster.available():
        pytest.skip("PostgreSQL's server binaries are not installed (Debian's postgresql)")
    cluster = postgres_cluster.PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def test_postgresql_restart_fails_stanzas_then_service_resumes(
        cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIREO_DATABASE_URL", cluster.url)
    server = outage_server(tmp_path / "server")

    async def scenario() -> None:
        alice = await Alice.connect(server)
        await alice.works("before")
        await asyncio.to_thread(cluster.stop)
        await alice.fails("during")
        assert b"temporary-auth-failure" in await asyncio.to_thread(
            sasl_answer, server, "bob", "bob-pw")
        await asyncio.to_thread(cluster.start)
        await alice.works("after")  # the same session: pooled connections were replaced
        await close(alice.client)
        assert await offline_bodies(server) == ["before", "after"]

    try:
        run(scenario())
        assert server.process is not None and server.process.poll() is None
    finally:
        assert server.stop() == 0


# -- SQLite -------------------------------------------------------------------------------

def test_sqlite_disk_full_fails_stanzas_then_service_resumes(tmp_path: Path) -> None:
    server = outage_server(tmp_path / "server")
    assert server.process is not None
    pid = server.process.pid
    limits = resource.prlimit(pid, resource.RLIMIT_FSIZE)

    async def scenario() -> None:
        alice = await Alice.connect(server)
        await alice.works("before")
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, limits[1]))
        try:
            await alice.fails("during")
            # Reading still works: a login needs no write.
            assert b"<success" in await asyncio.to_thread(sasl_answer, server, "bob", "bob-pw")
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)
        await alice.works("after")
        await close(alice.client)
        assert await offline_bodies(server) == ["before", "after"]

    try:
        run(scenario())
        assert server.process.poll() is None
    finally:
        assert server.stop() == 0
