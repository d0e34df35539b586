"""A cluster node cut off by the network rejoins without duplicates (issue 21).

Node "cut" runs in a network namespace the test makes, with two veth pairs to
the host: its clients reach it over the "front" pair, and it reaches Redis and
PostgreSQL (which listen on loopback only) over the "back" pair, through TCP
relays the test runs on the host end. Taking the back link down is a real
partition: the node keeps its clients but reaches neither the store nor its
peers, while n1 and n2 (on the host) reap its sessions. Every message sent
either way meanwhile is counted once at its destination, in offline storage or
bounced to its sender, and never twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.engine import make_url

from storage.offline import OfflineStore
from tests.integration.clients import close, login, run
from tests.integration.server_fixture import (
    ROOT,
    Databases,
    ServerProcess,
    make_server,
    spawn_logged,
    wait_for_port,
)
from tests.integration.test_cluster import (
    NODE_TIMEOUT,
    REDIS_ENV,
    Cluster,
    available_from,
    from_,
    seed,
)
from tests.unit.storage_fixtures import POSTGRES_ENV
from xmpp.stream import parse_stanza

MESSAGES = 50  # per sender, in each phase of the partition
# Envelopes the cut-off node holds for its peers: its two senders' early
# messages and half their late ones; the rest bounce.
QUEUE_LIMIT = 3 * MESSAGES
REAP_WAIT = 4 * NODE_TIMEOUT + 10  # seconds for the survivors to reap the cut-off node
# The cut-off node notices within its Redis client's socket timeout (10 s) and a beat.
REJOIN_WAIT = 30


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Relay:
    """A TCP relay on the host: connections accepted on `listen` are joined to
    `target` (a service on loopback), a thread per direction."""

    def __init__(self, listen: str, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server((listen, 0))
        self.server.settimeout(0.2)  # so that `close` ends the accept loop soon
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while not self.closed.is_set():
            try:
                inner, _address = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            inner.settimeout(None)
            try:
                outer = socket.create_connection(self.target, timeout=5)
            except OSError:
                inner.close()
                continue
            outer.settimeout(None)
            self.sockets += [inner, outer]
            for source, sink in ((inner, outer), (outer, inner)):
                threading.Thread(target=self.pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        self.server.close()
        for end in self.sockets:
            end.close()


class Namespace:
    """A network namespace with a "front" veth pair (clients) and a "back" one
    (store and peers), in 10.213.N.0/29 on the veths only; `cut` and `mend`
    take the back link down and up on the host end."""

    def __init__(self) -> None:
        tag = secrets.token_hex(4)
        self.name = f"vireo-{tag}"
        self.back, self.front = f"vb{tag}", f"vf{tag}"
        net = f"10.213.{secrets.randbelow(256)}"
        self.back_host, self.back_inside = f"{net}.1", f"{net}.2"
        self.front_host, self.front_inside = f"{net}.5", f"{net}.6"
        ip("netns", "add", self.name)
        try:
            ip("-n", self.name, "link", "set", "lo", "up")
            for link, host, inside in ((self.back, self.back_host, self.back_inside),
                                       (self.front, self.front_host, self.front_inside)):
                ip("link", "add", link, "type", "veth", "peer", "name", "inner",
                   "netns", self.name)
                ip("-n", self.name, "link", "set", "inner", "name", link)
                ip("addr", "add", f"{host}/30", "dev", link)
                ip("-n", self.name, "addr", "add", f"{inside}/30", "dev", link)
                ip("link", "set", link, "up")
                ip("-n", self.name, "link", "set", link, "up")
        except BaseException:
            self.delete()
            raise

    def cut(self) -> None:
        ip("link", "set", self.back, "down")

    def mend(self) -> None:
        ip("link", "set", self.back, "up")

    def delete(self) -> None:
        """The namespace, and with it both veth pairs."""
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=10)


def relayed_url(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def start_in(namespace: Namespace, cluster: Cluster, name: str, redis_port: int,
             postgres_port: int) -> ServerProcess:
    """Node `name` of `cluster`, run inside `namespace`: listening on its front
    address, reaching Redis and PostgreSQL through the relays on the back one."""
    redis_url = relayed_url(cluster.redis_url, namespace.back_host, redis_port)
    database, count = re.subn(r'host = "[^"]*", port = \d+',
                              f'host = "{namespace.back_host}", port = {postgres_port}',
                              cluster.database_lines)
    assert count == 1, cluster.database_lines
    node = make_server(cluster.root / name, database=database,
                       extra=cluster.option(name, redis_url, f"queue_limit = {QUEUE_LIMIT}"))
    # Ports picked free on the host's loopback are free in a new namespace too.
    config = node.config_path.read_text()
    node.config_path.write_text(config.replace('interfaces = { "127.0.0.1" }',
                                               f'interfaces = {{ "{namespace.front_inside}" }}'))
    node.address = namespace.front_inside
    node.users.update(cluster.nodes["n1"].users)
    node.process = spawn_logged(["ip", "netns", "exec", namespace.name, sys.executable,
                                 str(ROOT / "app.py"), "-c", str(node.config_path), "run"],
                                node.directory, cwd=ROOT)
    cluster.nodes[name] = node
    wait_for_port(node.c2s_port, node.process, address=node.address)
    return node


@pytest.fixture
def partitioned(tmp_path) -> Iterator[tuple[Cluster, Namespace]]:
    postgres, redis_url = os.environ.get(POSTGRES_ENV), os.environ.get(REDIS_ENV)
    if not postgres or not redis_url:
        pytest.skip(f"{POSTGRES_ENV} and {REDIS_ENV} are needed")
    # Skips are failures under CI=true (tests/conftest.py), which runs as root.
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    databases = Databases("postgresql", postgres)
    cluster = Cluster(tmp_path, redis_url, databases.config())
    try:
        namespace = Namespace()
    except (OSError, subprocess.CalledProcessError) as error:
        databases.drop_all()
        stderr = getattr(error, "stderr", b"") or b""
        pytest.skip(f"no network namespace: {error} {stderr.decode(errors='replace')}")
    relays: list[Relay] = []
    try:
        seed(cluster.start_node("n1"))
        cluster.start_node("n2")
        store = urlsplit(redis_url)
        relays.append(Relay(namespace.back_host, (store.hostname or "127.0.0.1",
                                                  store.port or 6379)))
        database = make_url(postgres)
        relays.append(Relay(namespace.back_host, (database.host or "127.0.0.1",
                                                  database.port or 5432)))
        start_in(namespace, cluster, "cut", relays[0].port, relays[1].port)
        cluster.wait_joined()
        yield cluster, namespace
    finally:
        cluster.stop()
        for relay in relays:
            relay.close()
        namespace.delete()
        databases.drop_all()


def stored_ids(node: ServerProcess, user: str) -> list[str]:
    """The ids of the messages offline storage holds for `user` (taken out)."""
    with node.database() as database:
        return [parse_stanza(xml).get("id", "") for xml, _stamp
                in OfflineStore(database).pop_all(node.domain, user)]


async def logged(node: ServerProcess, text: str, timeout: float = REJOIN_WAIT, *,
                 since: int = 0) -> None:
    """Until the node's log has `text` (after its first `since` characters)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in node.log_path.read_text()[since:]:
        assert loop.time() < deadline, f"never logged: {text}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("until", ["reaped", "timed out"])
def test_a_node_cut_off_by_the_network_rejoins_without_duplicates(partitioned, until):
    """The link comes back once the others reaped the node (its connections to
    Redis stalled, then go on), or once its Redis client also timed out (it
    reconnects)."""
    cluster, namespace = partitioned
    n1, n2, cut = (cluster.nodes[name] for name in ("n1", "n2", "cut"))

    async def scenario():
        # Alice has a resource on the cut-off node (preferred) and one on n2;
        # Gina has one only on the cut-off node. Bob and Hank are their contacts.
        alice = await login(cut, "alice", resource="cut", presence=False)
        alice.send_presence(ppriority=5)
        alice_other = await login(n2, "alice", resource="other", presence=False)
        alice_other.send_presence(ppriority=1)
        gina = await login(cut, "gina", resource="cut")
        jack = await login(cut, "jack", resource="cut")
        bob = await login(n1, "bob")
        hank = await login(n2, "hank")
        ivy = await login(n1, "ivy")
        await jack.next_presence(from_(str(ivy.boundjid)))
        await available_from(bob, str(alice.boundjid), str(alice_other.boundjid))
        await hank.next_presence(from_(str(gina.boundjid)))
        got: dict[str, list[str]] = {}  # receiver -> message ids, as they came
        errors: dict[str, list[str]] = {}  # sender -> ids of its messages bounced

        def counting(name: str, client) -> None:
            got[name], errors[name] = [], []
            client.add_event_handler("message", lambda m: (
                errors if m["type"] == "error" else got)[name].append(m["id"]))

        for name, client in (("alice", alice), ("alice_other", alice_other),
                             ("gina", gina), ("bob", bob), ("hank", hank)):
            counting(name, client)

        sent: dict[tuple[str, str], list[str]] = {}  # (sender, recipient) -> ids

        def burst(phase: str, sender: str, client, to: str) -> None:
            for number in range(MESSAGES):
                message = client.make_message(mto=to, mbody=f"{phase} {number}", mtype="chat")
                message["id"] = f"{sender}-{phase}-{number}"
                message.send()
                sent.setdefault((sender, to.partition("@")[0]), []).append(message["id"])

        def both_ways(phase: str) -> None:
            burst(phase, "bob", bob, n1.jid("alice"))
            burst(phase, "hank", hank, n2.jid("gina"))
            burst(phase, "alice", alice, n1.jid("bob"))
            burst(phase, "gina", gina, n1.jid("hank"))

        survivors = ((n1, "n2", len(n1.log_path.read_text())),
                     (n2, "n1", len(n2.log_path.read_text())))  # and their logs so far
        namespace.cut()
        # Before the survivors notice: the cut-off node's sessions still look alive.
        both_ways("early")
        await bob.next_presence(from_(str(alice.boundjid), "unavailable"), timeout=REAP_WAIT)
        await hank.next_presence(from_(str(gina.boundjid), "unavailable"), timeout=REAP_WAIT)
        # Those came from the reaper alone: the other survivor counts the node out
        # at its own next watch, and until then sends Ivy's leaving (below) to the
        # cut-off node's stream rather than to the reaper as the test means.
        for survivor, other, before_cut in survivors:
            await logged(survivor, f"Cluster peers: {other}\n", REAP_WAIT, since=before_cut)
        # After they reaped it: Alice's other resource or offline storage.
        both_ways("late")
        await close(ivy)  # Jack's contact leaves: the news goes to the reaper
        if until == "timed out":
            await logged(cut, "Cluster stream read failed")
        namespace.mend()
        # The cut-off node re-registers its sessions: its contacts see them again.
        await bob.next_presence(from_(str(alice.boundjid)), timeout=REJOIN_WAIT)
        await hank.next_presence(from_(str(gina.boundjid)), timeout=REJOIN_WAIT)
        # ... and its clients see what changed meanwhile.
        await jack.next_presence(from_(str(ivy.boundjid), "unavailable"), timeout=REJOIN_WAIT)

        # Markers, each after its pair's queue in order: once they arrive, what
        # came before on that path has too (duplicates included).
        for client, to, name in ((alice, n1.jid("bob"), "bob"), (gina, n1.jid("hank"), "hank"),
                                 (bob, str(alice.boundjid), "alice"),
                                 (bob, str(alice_other.boundjid), "alice_other"),
                                 (hank, str(gina.boundjid), "gina")):
            marker = client.make_message(mto=to, mbody="marker", mtype="chat")
            marker["id"] = f"marker-{name}"
            marker.send()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline and not all(f"marker-{name}" in ids
                                                 for name, ids in got.items()):
            await asyncio.sleep(0.1)
        # The markers reached the cut-off node's sessions: they are live again.
        assert all(f"marker-{name}" in ids for name, ids in got.items()), got

        stored = {user: stored_ids(n1, user) for user in ("alice", "gina", "bob", "hank")}
        for (sender, recipient), ids in sent.items():
            arrived = Counter(i for name, received in got.items() for i in received
                              if name.startswith(recipient) and i.startswith(sender + "-"))
            arrived.update(i for i in stored[recipient] if i.startswith(sender + "-"))
            arrived.update(errors[sender])
            missing = set(ids) - set(arrived)
            twice = sorted(i for i, count in arrived.items() if count > 1)
            assert not missing, f"{sender} -> {recipient}: {len(missing)} lost, " \
                                f"e.g. {sorted(missing)[:5]}"
            where = {i: [place for place, ids in (*got.items(), *stored.items())
                         if i in ids] for i in twice[:5]}
            assert not twice, f"{sender} -> {recipient}: {len(twice)} twice, e.g. {where}"
        # Each way saw its part of the story: queued then delivered, or bounced
        # once the queue was full; reaped then stored, or sent to another resource.
        assert any(i.startswith("alice-") for i in got["bob"])
        assert len(errors["alice"]) + len(errors["gina"]) == 4 * MESSAGES - QUEUE_LIMIT
        assert any(i.startswith("hank-") for i in stored["gina"])
        assert any(i.startswith("bob-late") for i in got["alice_other"])
        await close(alice, alice_other, gina, jack, bob, hank)

    run(scenario(), timeout=180)
