"""Several Vireo nodes as one server (issue 21): three node processes on loopback
share PostgreSQL and Redis; slixmpp users on different nodes talk, subscribe and
see presence, get carbons, roster pushes and PEP notifications from other
nodes, share MUC rooms and fresh PEP items, and a node killed with SIGKILL loses
no accepted message, nor their order, and leaves its persistent rooms to the others."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from storage.offline import OfflineStore
from storage.roster import RosterItem, RosterStore
from tests.integration.clients import TIMEOUT, attempt_login, close, login, run
from tests.integration.muc_fixtures import (
    MUC_HOST,
    instant_room,
    join,
    muc_login,
    next_matching,
    status_codes,
)
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import (
    ROOT,
    Databases,
    ServerProcess,
    free_port,
    make_server,
    spawn_logged,
    stop_process,
    wait_for_port,
)
from tests.integration.test_http_metrics import STATISTICS, scrape
from tests.integration.test_pep import MOOD, interested_login, payload, published_text
from tests.integration.test_pep import PLUGINS as PEP_PLUGINS
from tests.unit.storage_fixtures import POSTGRES_ENV
from xmpp.stream import parse_stanza

REDIS_ENV = "VIREO_TEST_REDIS_URL"
NODE_TIMEOUT = 3  # seconds without a heartbeat before the others reap a node
WORKER_PAIRS = [(f"w{n}a", f"w{n}b") for n in range(6)]
USERS = {name: f"pw-{name}" for name in (
    "alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivy", "jack",
    "kate", "leo", "mia", "nick", "olga", "pam", "pat", "quinn", "rosa", "sven", "tina",
    "uma", "vic", "rita",
    *(user for pair in WORKER_PAIRS for user in pair))}
MUTUAL = [("alice", "bob"), ("erin", "frank"), ("gina", "hank"), ("ivy", "jack"),
          ("kate", "leo"), ("mia", "nick"), ("pam", "pat"), ("uma", "vic"),
          *WORKER_PAIRS]
BURST = 2000
CARBONS = ("xep_0030", "xep_0280")


class Cluster:
    """Node processes of one cluster: one database, one Redis key prefix."""

    def __init__(self, root: Path, redis_url: str, database_lines: str, *,
                 modules: tuple[str, ...] = ("http_openmetrics", "carbons", "pep"),
                 extra: str = "", host_extra: str = f'Component "{MUC_HOST}" "muc"\n',
                 node_timeout: int = NODE_TIMEOUT, **server_options: Any) -> None:
        self.root = root
        self.node_timeout = node_timeout
        self.redis_url = redis_url
        self.database_lines = database_lines
        self.modules = modules
        self.extra = extra  # more global options, and a VirtualHost's or sections after it
        self.host_extra = host_extra
        self.server_options = server_options  # more make_server arguments (domain, s2s ...)
        self.prefix = f"vireo-test-{uuid.uuid4().hex[:12]}:"
        self.nodes: dict[str, ServerProcess] = {}

    def option(self, name: str, redis_url: str | None = None, *more: str) -> str:
        """The `cluster` option line of node `name` (reaching Redis at `redis_url`,
        by default the cluster's), with `more` fields."""
        fields = ", ".join((f'redis = "{redis_url or self.redis_url}"', f'node = "{name}"',
                            f"node_timeout = {self.node_timeout}", f'prefix = "{self.prefix}"',
                            *more))
        return f"cluster = {{ {fields} }}\n"

    def configure(self, name: str) -> ServerProcess:
        node = make_server(self.root / name, database=self.database_lines,
                           extra=self.option(name) + STATISTICS + self.extra, http=True,
                           modules=self.modules, host_extra=self.host_extra,
                           **self.server_options)
        node.users.update(USERS)
        self.nodes[name] = node
        return node

    def start_node(self, name: str) -> ServerProcess:
        node = self.configure(name)
        node.start()
        return node

    def start_workers(self, name: str, count: int) -> ServerProcess:
        """`app.py run --workers count`: one port set, `count` nodes behind it."""
        node = self.configure(name)
        node.process = spawn_logged([sys.executable, str(ROOT / "app.py"), "-c",
                                     str(node.config_path), "run", "--workers", str(count)],
                                    node.directory, cwd=ROOT)
        wait_for_port(node.c2s_port, node.process)
        return node

    def wait_joined(self, *names: str) -> None:
        """Until each of the nodes `names` (by default all) counts each other one
        as a peer: a node learns of a new one at its next watch, and what it
        announces before that reaches the new node only by a resync seconds later."""
        deadline = time.monotonic() + 3 * NODE_TIMEOUT + 10
        live = set(names or self.nodes)
        for name in sorted(live):
            node = self.nodes[name]
            peers = "Cluster peers: " + ", ".join(sorted(live - {name}))
            while peers not in node.log_path.read_text():
                assert time.monotonic() < deadline, f"node {name} never saw its peers"
                time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        client = redis.Redis.from_url(self.redis_url)
        keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def seed(node: ServerProcess) -> None:
    """The test accounts and mutual subscriptions, in the cluster's database."""
    node.create_users(USERS)
    with node.database() as database:
        store = RosterStore(database)
        for one, other in MUTUAL:
            store.put_item(node.domain, one, RosterItem(node.jid(other), subscription="both"))
            store.put_item(node.domain, other, RosterItem(node.jid(one), subscription="both"))


@contextlib.contextmanager
def three_nodes(root: Path, **options: Any) -> Iterator[Cluster]:
    """Nodes n1, n2 and n3 on the CI machine's PostgreSQL and Redis, the test
    accounts seeded through n1; stopped, and their tables dropped, after."""
    postgres, redis_url = os.environ.get(POSTGRES_ENV), os.environ.get(REDIS_ENV)
    if not postgres or not redis_url:
        pytest.skip(f"{POSTGRES_ENV} and {REDIS_ENV} are needed")
    databases = Databases("postgresql", postgres)
    cluster = Cluster(root, redis_url, databases.config(), **options)
    try:
        seed(cluster.start_node("n1"))
        cluster.start_node("n2")
        cluster.start_node("n3")
        cluster.wait_joined()
        yield cluster
    finally:
        cluster.stop()
        databases.drop_all()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with three_nodes(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


def from_(jid: str, kind: str = "available"):
    kinds = ("available", "away", "chat", "dnd", "xa") if kind == "available" else (kind,)
    return lambda p: str(p["from"]) == jid and p["type"] in kinds


async def available_from(client, *jids: str) -> None:
    """Available presence from each of `jids`, in whatever order it comes (a
    node answers a probe in the order it learnt of the resources)."""
    waiting = set(jids)
    while waiting:
        presence = await client.next_presence(lambda p: any(from_(jid)(p) for jid in waiting))
        waiting.discard(str(presence["from"]))


def test_users_on_different_nodes_exchange_messages(cluster):
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]

    async def scenario():
        alice = await login(n1, "alice", resource="a")
        bob = await login(n2, "bob", resource="b")
        # Bob's presence reaching Alice means n1 knows his session.
        await alice.next_presence(from_(str(bob.boundjid)))
        alice.send_message(mto=str(bob.boundjid), mbody="to your resource", mtype="chat")
        got = await bob.next_message()
        assert got["body"] == "to your resource" and got["from"] == alice.boundjid
        alice.send_message(mto=n1.jid("bob"), mbody="to your bare JID", mtype="chat")
        assert (await bob.next_message())["body"] == "to your bare JID"
        bob.send_message(mto=n1.jid("alice"), mbody="and back", mtype="chat")
        assert (await alice.next_message())["body"] == "and back"
        await close(alice, bob)

    run(scenario())


def test_subscription_and_presence_across_nodes(cluster):
    n1, n3 = cluster.nodes["n1"], cluster.nodes["n3"]

    async def scenario():
        dave = await login(n1, "dave", resource="d")
        carol = await login(n3, "carol", resource="c")
        # slixmpp approves the request itself (auto_authorize); the approval and
        # Dave's presence travel from n1 to Carol on n3.
        carol.send_presence(pto=n1.jid("dave"), ptype="subscribe")
        await carol.next_presence(lambda p: p["type"] == "subscribed")
        await carol.next_presence(from_(str(dave.boundjid)))
        dave.send_presence(pstatus="gone fishing")
        await carol.next_presence(lambda p: from_(str(dave.boundjid))(p)
                                  and p["status"] == "gone fishing")
        await close(dave)
        await carol.next_presence(from_(str(dave.boundjid), "unavailable"))
        await close(carol)

    run(scenario())


def test_a_users_resources_on_two_nodes_see_each_other_and_share_by_priority(cluster):
    n1, n2, n3 = (cluster.nodes[name] for name in ("n1", "n2", "n3"))

    async def scenario():
        high = await login(n1, "erin", resource="high", presence=False)
        high.send_presence(ppriority=5)
        low = await login(n2, "erin", resource="low", presence=False)
        low.send_presence(ppriority=1)
        await high.next_presence(from_(str(low.boundjid)))
        await low.next_presence(from_(str(high.boundjid)))
        frank = await login(n3, "frank")
        await available_from(frank, str(high.boundjid), str(low.boundjid))
        frank.send_message(mto=n1.jid("erin"), mbody="first", mtype="chat")
        assert (await high.next_message())["body"] == "first"
        await close(high)
        await low.next_presence(from_(str(high.boundjid), "unavailable"))
        await frank.next_presence(from_(str(high.boundjid), "unavailable"))
        frank.send_message(mto=n1.jid("erin"), mbody="second", mtype="chat")
        # The higher-priority resource had the first one alone.
        assert (await low.next_message())["body"] == "second"
        await close(low, frank)

    run(scenario())


def test_same_full_jid_on_another_node_replaces_the_first(cluster):
    n1, n2, n3 = (cluster.nodes[name] for name in ("n1", "n2", "n3"))

    async def scenario():
        ivy = await login(n2, "ivy")
        first = await login(n1, "jack", resource="desk")
        await ivy.next_presence(from_(str(first.boundjid)))
        second = await login(n3, "jack", resource="desk")
        await asyncio.wait_for(first.ended, 10)
        assert first.stream_errors == ["conflict"]
        ivy.send_message(mto=str(second.boundjid), mbody="which desk?", mtype="chat")
        assert (await second.next_message())["body"] == "which desk?"
        await close(second, ivy)

    run(scenario())


def test_failed_logins_on_one_node_slow_down_the_next_on_another(cluster):
    """vireo_auth_failure_limit (5) wrong passwords from one address on n1; the
    right one from there on n2 is refused at once with the wait (the failures
    are counted in Redis, not per process)."""
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    guesser = RawClient(n1.c2s_port, source_address="127.0.0.9")
    try:
        guesser.starttls(n1.domain, n1.cert)
        for _ in range(5):
            assert b"<not-authorized/>" in guesser.auth_plain("carol", "nope")
    finally:
        guesser.close()
    again = RawClient(n2.c2s_port, source_address="127.0.0.9")
    try:
        again.starttls(n2.domain, n2.cert)
        answer = again.auth_plain("carol", USERS["carol"])
    finally:
        again.close()
    assert b"<temporary-auth-failure/>" in answer and re.search(rb"wait \d+ s", answer)


def test_a_burst_of_logins_from_one_address_over_two_nodes_is_not_refused(cluster):
    """Twenty SCRAM logins at once from 127.0.0.1, ten on n1 and ten on n2, past
    vireo_auth_failure_limit (5): each check reads the failures shared in Redis
    and waits on the client, so they overlap; they take turns, none is refused."""
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]

    async def scenario():
        clients = await asyncio.gather(*(
            attempt_login((n1, n2)[i % 2], "tina", USERS["tina"], mech="SCRAM-SHA-256",
                          resource=f"burst-{i}")
            for i in range(20)))
        assert [client.sasl_failures for client in clients] == [[]] * 20
        assert all(client.started.result() for client in clients)
        await close(*clients)

    run(scenario())


def test_metrics_of_every_node_on_any_nodes_scrape(cluster):
    """/metrics on n1 shows each node's families once, samples labelled by node:
    here a session bound on n2 counted with node="n2"."""
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]

    def sessions_on_n2() -> float:
        return sum(value for (name, labels), value in scrape(n1).items()
                   if name == "vireo_sessions" and ("node", "n2") in labels
                   and ("kind", "c2s") in labels)

    async def scenario():
        dave = await login(n2, "dave", resource="metrics")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * NODE_TIMEOUT  # n2 publishes every NODE_TIMEOUT / 3
        while (counted := sessions_on_n2()) < 1 and loop.time() < deadline:
            await asyncio.sleep(0.2)
        await close(dave)
        assert counted >= 1

    run(scenario())
    samples = scrape(n1)
    nodes = {dict(labels).get("node") for (name, labels) in samples
             if name == "process_resident_memory_bytes"}
    assert nodes == {"n1", "n2", "n3"}


def test_carbons_reach_a_resource_on_another_node(cluster):
    n1, n2, n3 = (cluster.nodes[name] for name in ("n1", "n2", "n3"))

    async def scenario():
        one = await login(n1, "mia", resource="one", plugins=CARBONS)
        two = await login(n2, "mia", resource="two")
        nick = await login(n3, "nick")
        await one.plugin["xep_0280"].enable(timeout=TIMEOUT)
        # Sent after enabling, this presence reaches n2 and n3 behind the news
        # that carbons are on (each node's stream keeps n1's order).
        one.send_presence(pstatus="carbons on")
        def carbons_on(presence) -> bool:
            return from_(str(one.boundjid))(presence) and presence["status"] == "carbons on"

        await two.next_presence(carbons_on)
        await nick.next_presence(carbons_on)
        # n2 routes what the resource on n2 sends: a <sent/> copy to n1.
        two.send_message(mto=n1.jid("nick"), mbody="sent from two", mtype="chat")
        sent = await asyncio.wait_for(one.carbons_sent.get(), TIMEOUT)
        assert sent["carbon_sent"]["body"] == "sent from two"
        assert sent["carbon_sent"]["from"] == two.boundjid
        # n3 routes what Nick sends to the resource on n2: a <received/> copy to n1.
        nick.send_message(mto=str(two.boundjid), mbody="to two", mtype="chat")
        assert (await two.next_message())["body"] == "to two"
        received = await asyncio.wait_for(one.carbons_received.get(), TIMEOUT)
        assert received["carbon_received"]["body"] == "to two"
        await close(one, two, nick)

    run(scenario())


def test_roster_pushes_reach_a_resource_on_another_node(cluster):
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]

    async def scenario():
        one = await login(n1, "olga", resource="one")
        two = await login(n2, "olga", resource="two", presence=False)
        await two.get_roster()  # from now on it gets pushes
        pushes: asyncio.Queue = asyncio.Queue()  # (slixmpp's event for the result, too)
        two.add_event_handler("roster_update", pushes.put_nowait)
        two.send_presence()
        # The presence reaches n1 behind the news that the resource asked.
        await one.next_presence(from_(str(two.boundjid)))
        contact = n1.jid("quinn")
        await one.update_roster(contact, name="Quinn")
        push = await asyncio.wait_for(pushes.get(), TIMEOUT)
        assert [(str(jid), item["name"]) for jid, item in push["roster"]["items"].items()] == \
            [(contact, "Quinn")]
        await close(one, two)

    run(scenario())


def test_pep_notifications_reach_a_contact_on_another_node(cluster):
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]

    async def scenario():
        pam = await login(n1, "pam", plugins=PEP_PLUGINS)
        await pam["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood", "first"))
        # n2 sees Pat's caps and sends him the last item once it has noted what
        # he wants on his session (which n1 then learns).
        pat, events = await interested_login(n2, "pat", MOOD)
        assert published_text(await asyncio.wait_for(events.get(), TIMEOUT)) == "first"
        pat.send_presence(pstatus="ready")
        await pam.next_presence(lambda p: from_(str(pat.boundjid))(p)
                                and p["status"] == "ready")
        await pam["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood", "second"))
        assert published_text(await asyncio.wait_for(events.get(), TIMEOUT)) == "second"
        await close(pam, pat)

    run(scenario())


def groupchat(body: str):
    return lambda m: m["type"] == "groupchat" and m["body"] == body


def occupant_presence(room: str, nick: str, kind: str = "available"):
    return lambda p: str(p["from"]) == f"{room}@{MUC_HOST}/{nick}" and \
        (p["type"] == "unavailable") == (kind == "unavailable")


def test_occupants_joined_through_three_nodes_share_one_room(cluster):
    n1, n2, n3 = (cluster.nodes[name] for name in ("n1", "n2", "n3"))

    async def scenario():
        quinn = await muc_login(n1, "quinn")
        rosa = await muc_login(n2, "rosa")
        sven = await muc_login(n3, "sven")
        await instant_room(quinn, "across", "Quinn")
        _self, _subject, occupants, _history = await join(rosa, "across", "Rosa")
        assert sorted(p["from"].resource for p in occupants) == ["Quinn", "Rosa"]
        _self, _subject, occupants, _history = await join(sven, "across", "Sven")
        assert sorted(p["from"].resource for p in occupants) == ["Quinn", "Rosa", "Sven"]
        for client in (quinn, rosa):
            await next_matching(client.all_presences, occupant_presence("across", "Sven"))
        for sender, others in ((rosa, (quinn, sven)), (sven, (quinn, rosa)),
                               (quinn, (rosa, sven))):
            body = f"from {sender.boundjid.user}"
            sender.send_message(mto=f"across@{MUC_HOST}", mbody=body, mtype="groupchat")
            for client in (sender, *others):  # the sender gets its echo too
                await next_matching(client.all_messages, groupchat(body))
        await close(rosa)
        for client in (quinn, sven):
            await next_matching(client.all_presences,
                                occupant_presence("across", "Rosa", "unavailable"))
        await close(quinn, sven)

    run(scenario())


def test_pep_items_read_through_another_node_are_fresh(cluster):
    """n3 answers a read of Rita's items from what it cached; a publish through
    n1 must make it read them again."""
    n1, n3 = cluster.nodes["n1"], cluster.nodes["n3"]

    def texts(iq) -> list[str]:
        return [mood.text for mood in iq.xml.iter("{urn:example}mood")]

    async def scenario():
        writer = await login(n1, "rita", resource="writer", plugins=PEP_PLUGINS)
        await writer["xep_0060"].publish(None, MOOD, id="current",
                                         payload=payload("{urn:example}mood", "first"))
        reader, events = await interested_login(n3, "rita", MOOD, resource="reader")
        owner = n1.jid("rita")
        assert texts(await reader["xep_0060"].get_items(owner, MOOD)) == ["first"]
        reader.send_presence(pstatus="reading")
        await writer.next_presence(lambda p: from_(str(reader.boundjid))(p)
                                   and p["status"] == "reading")
        await writer["xep_0060"].publish(None, MOOD, id="current",
                                         payload=payload("{urn:example}mood", "second"))
        # The notification travels behind n1's word that n3's copy is stale.
        while published_text(await asyncio.wait_for(events.get(), TIMEOUT)) != "second":
            pass
        assert texts(await reader["xep_0060"].get_items(owner, MOOD)) == ["second"]
        await close(writer, reader)

    run(scenario())


def test_a_killed_node_loses_no_accepted_message_and_keeps_their_order(cluster):
    """Hank (on n1) writes to Gina on n4 and n4 is killed mid-burst; he goes on
    writing through the failover, before and after he hears that she left.
    Each message reaches her, live or from offline storage, and in the order
    sent: those n1 routes once it knows her gone come after those that waited
    in n4's inbox."""
    n1 = cluster.nodes["n1"]
    victim = cluster.start_node("n4")
    assert victim.process is not None

    async def scenario():
        gina = await login(victim, "gina", resource="doomed")
        hank = await login(n1, "hank")
        await hank.next_presence(from_(str(gina.boundjid)))
        received: list[str] = []

        def count(message) -> None:
            received.append(message["id"])
            if len(received) == BURST // 5:
                os.kill(victim.process.pid, signal.SIGKILL)

        gina.add_event_handler("message", count)
        sent = 0

        def send() -> None:
            nonlocal sent
            message = hank.make_message(mto=n1.jid("gina"), mbody=str(sent), mtype="chat")
            message["id"] = f"burst-{sent}"
            message.send()
            sent += 1

        for _ in range(BURST):
            send()
            if sent % 20 == 0:
                await asyncio.sleep(0)  # let the clients read meanwhile
        # The survivors mark the session gone once they have handed on what
        # was queued for it; until then, and for a while after, Hank writes on.
        gone = asyncio.ensure_future(hank.next_presence(
            from_(str(gina.boundjid), "unavailable"), timeout=4 * NODE_TIMEOUT + 60))
        while not gone.done():
            send()
            await asyncio.sleep(0.05)
        await gone
        for _ in range(20):
            send()
            await asyncio.sleep(0.05)
        assert victim.process.poll() == -signal.SIGKILL
        expected = [f"burst-{number}" for number in range(sent)]
        stored = [stored_id for stored_id in await offline_ids(
            n1, "gina", lambda ids: set(expected) <= set(received + ids))
            if stored_id.startswith("burst-")]
        missing = set(expected) - set(received) - set(stored)
        assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
        assert received and stored  # the kill fell mid-burst
        # At least once: one she got may be stored too, never after a later one.
        assert list(dict.fromkeys(received + stored)) == expected
        await close(hank)

    run(scenario(), timeout=300)


async def offline_ids(node: ServerProcess, user: str,
                      enough: Callable[[list[str]], bool]) -> list[str]:
    """The ids of the messages stored offline for `user`, in storage order, as
    they come until `enough` of them are there. The survivors store what a dead
    node held one offline message at a time: a loaded machine takes a while, so
    the wait lasts while they progress."""
    stored: list[str] = []
    loop = asyncio.get_running_loop()
    give_up, progressed = loop.time() + 150, loop.time()
    while not enough(stored) and loop.time() - progressed < 20 and loop.time() < give_up:
        with node.database() as database:
            for xml, _stamp in OfflineStore(database).pop_all(node.domain, user):
                stored.append(parse_stanza(xml).get("id", ""))
                progressed = loop.time()
        await asyncio.sleep(0.2)
    return stored


def test_a_dead_nodes_inbox_reaches_its_users_in_the_order_sent(cluster):
    """Jack (on n1) writes to Olga on n6 while n6 is frozen: his messages wait in
    n6's inbox, over many stream entries. Once n6 is killed the survivors drain
    its inbox, and Olga's offline storage holds the messages in the order Jack
    sent them (every survivor taking a few entries at a time swapped them)."""
    n1 = cluster.nodes["n1"]
    victim = cluster.start_node("n6")
    assert victim.process is not None
    count = 400

    async def scenario():
        olga = await login(victim, "olga", resource="doomed")
        jack = await login(n1, "jack")
        ready = jack.make_message(mto=olga.boundjid, mbody="ready", mtype="chat")
        ready["id"] = "ready"
        ready.send()
        assert (await olga.next_message())["body"] == "ready"  # n1 routes to n6
        os.kill(victim.process.pid, signal.SIGSTOP)
        for number in range(count):
            message = jack.make_message(mto=olga.boundjid, mbody=str(number), mtype="chat")
            message["id"] = f"ordered-{number}"
            message.send()
            if number % 4 == 3:
                # n1 has routed them: the next ones go in another stream entry.
                await jack.plugin["xep_0199"].ping(n1.domain)
        os.kill(victim.process.pid, signal.SIGKILL)
        ordered = [f"ordered-{number}" for number in range(count)]
        stored = await offline_ids(n1, "olga", lambda ids: set(ordered) <= set(ids))
        # "ready" may come again: n6 may have died before it acknowledged it.
        assert [stored_id for stored_id in stored if stored_id != "ready"] == ordered
        await close(jack)

    run(scenario(), timeout=240)


def test_workers_share_the_ports_and_talk_across_processes(cluster):
    workers = cluster.start_workers("w", 2)

    async def scenario():
        # SO_REUSEPORT spreads the twelve connections over both workers.
        clients = []
        for one, other in WORKER_PAIRS:
            first = await login(workers, one)
            second = await login(workers, other)
            await first.next_presence(from_(str(second.boundjid)))
            first.send_message(mto=str(second.boundjid), mbody=f"hello {other}", mtype="chat")
            assert (await second.next_message())["body"] == f"hello {other}"
            clients += [first, second]
        listed = await asyncio.to_thread(workers.sessions)  # worker 0's admin socket
        kinds = {(row["kind"], row.get("node")) for row in listed}
        assert ("c2s", None) in kinds and ("c2s_remote", "w-1") in kinds, kinds
        await close(*clients)

    run(scenario())
    assert workers.stop() == 0


class PrivateRedis:
    """A redis-server of the test's own, writing every change to its append-only
    file, to be restarted at will."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = spawn_logged(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)],
            self.directory, cwd=ROOT)
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> None:
        self.stop()
        self.start()


def test_a_redis_restart_mid_burst_loses_no_message(tmp_path):
    postgres = os.environ.get(POSTGRES_ENV)
    if not postgres or not os.environ.get(REDIS_ENV):
        pytest.skip(f"{POSTGRES_ENV} and {REDIS_ENV} are needed")
    store = PrivateRedis(tmp_path)
    store.start()
    databases = Databases("postgresql", postgres)
    cluster = Cluster(tmp_path, store.url, databases.config())
    try:
        first = cluster.start_node("r1")
        seed(first)
        second = cluster.start_node("r2")
        restarted = asyncio.Event()

        async def scenario():
            leo = await login(second, "leo")
            kate = await login(first, "kate")
            await kate.next_presence(from_(str(leo.boundjid)))
            received: set[str] = set()

            def count(message) -> None:
                received.add(message["body"])
                if len(received) == BURST // 10 and not restarted.is_set():
                    restarted.set()
                    store.restart()

            leo.add_event_handler("message", count)
            for number in range(BURST // 2):
                kate.send_message(mto=first.jid("leo"), mbody=str(number), mtype="chat")
                if number % 20 == 0:
                    await asyncio.sleep(0)
            expected = {str(number) for number in range(BURST // 2)}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not expected <= received and loop.time() < deadline:
                await leo.plugin["xep_0199"].ping(second.domain)  # a round trip, then look
            assert restarted.is_set()
            missing = expected - received
            assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
            await close(kate, leo)

        run(scenario(), timeout=120)
    finally:
        cluster.stop()
        store.stop()
        databases.drop_all()


def test_a_just_started_node_reaches_a_resource_bound_on_a_peer_since(tmp_path):
    """Node s1 learns of s2 at its next watch (a third of a 30 s timeout), and s2
    reads s1's entries again 21 s after it started: a resource bound on s1 in
    between is announced to nobody on s2, yet presence to its full JID from s2
    reaches it (the router asks `session-missing` for presence too)."""
    postgres = os.environ.get(POSTGRES_ENV)
    if not postgres or not os.environ.get(REDIS_ENV):
        pytest.skip(f"{POSTGRES_ENV} and {REDIS_ENV} are needed")
    databases = Databases("postgresql", postgres)
    cluster = Cluster(tmp_path, os.environ[REDIS_ENV], databases.config(), node_timeout=30)
    try:
        first = cluster.start_node("s1")
        seed(first)
        second = cluster.start_node("s2")

        async def scenario():
            quinn = await login(first, "quinn", resource="q")
            rosa = await login(second, "rosa")
            rosa.send_presence(pto=str(quinn.boundjid), pstatus="directed")
            got = await quinn.next_presence(lambda p: p["status"] == "directed")
            assert got["from"] == rosa.boundjid
            await close(quinn, rosa)

        run(scenario())
    finally:
        cluster.stop()
        databases.drop_all()


def test_a_persistent_room_outlives_the_node_it_lived_on(cluster):
    """The room lives on n5 (its first joiner's node); n5 is killed, and the
    next join through a survivor brings the room back from the database there.
    Uma, joined through n5 to a room on n2 too, leaves that room with n5."""
    n2, n3 = cluster.nodes["n2"], cluster.nodes["n3"]
    victim = cluster.start_node("n5")
    assert victim.process is not None
    cluster.wait_joined("n1", "n2", "n3", "n5")

    async def scenario():
        uma = await muc_login(victim, "uma")
        await instant_room(uma, "lasting", "Uma", **{"muc#roomconfig_persistentroom": True})
        uma["xep_0045"].set_subject(f"lasting@{MUC_HOST}", "Before the crash")
        vic = await muc_login(n2, "vic")
        tina = await muc_login(n3, "tina")
        _self, subject, _occupants, _history = await join(vic, "lasting", "Vic")
        assert subject["subject"] == "Before the crash"
        await join(tina, "lasting", "Tina")
        uma.send_message(mto=f"lasting@{MUC_HOST}", mbody="still here", mtype="groupchat")
        for client in (vic, tina):
            await next_matching(client.all_messages, groupchat("still here"))
        await vic.next_presence(from_(str(uma.boundjid)))
        await instant_room(vic, "elsewhere", "Vic")
        await join(uma, "elsewhere", "Uma")
        await next_matching(vic.all_presences, occupant_presence("elsewhere", "Uma"))
        os.kill(victim.process.pid, signal.SIGKILL)
        # The survivors reap n5 within the heartbeat timeout: Uma's contacts and
        # the room she joined from there learn that she left.
        await vic.next_presence(from_(str(uma.boundjid), "unavailable"),
                                timeout=4 * NODE_TIMEOUT + 10)
        await next_matching(vic.all_presences,
                            occupant_presence("elsewhere", "Uma", "unavailable"))
        # As after a restart: the occupants join again, the room is as stored.
        own, subject, occupants, _history = await join(vic, "lasting", "Vic")
        assert subject["subject"] == "Before the crash"
        assert [p["from"].resource for p in occupants] == ["Vic"]
        assert 201 not in status_codes(own)  # restored, not created anew
        await join(tina, "lasting", "Tina")
        await next_matching(vic.all_presences, occupant_presence("lasting", "Tina"))
        tina.send_message(mto=f"lasting@{MUC_HOST}", mbody="after the crash",
                          mtype="groupchat")
        await next_matching(vic.all_messages, groupchat("after the crash"))
        await close(vic, tina)

    run(scenario(), timeout=120)


def test_a_node_back_from_a_freeze_tells_its_clients_which_rooms_they_left(cluster):
    """n7 is frozen longer than the heartbeat's timeout: a survivor reaps
    Rita's session there, and the room she joined through n7 (living on n2)
    takes her out. Once n7 runs again it rejoins, and Rita hears that she is
    out of the room (XEP-0045: self-presence, 110 and 333, removed for a
    technical problem), so she joins again; she thought she was in before."""
    n2 = cluster.nodes["n2"]
    victim = cluster.start_node("n7")
    assert victim.process is not None
    cluster.wait_joined("n1", "n2", "n3", "n7")

    async def scenario():
        sven = await muc_login(n2, "sven")
        await instant_room(sven, "thawed", "Sven")
        rita = await muc_login(victim, "rita")
        await join(rita, "thawed", "Rita")
        await next_matching(sven.all_presences, occupant_presence("thawed", "Rita"))
        os.kill(victim.process.pid, signal.SIGSTOP)
        try:
            await next_matching(sven.all_presences,
                                occupant_presence("thawed", "Rita", "unavailable"),
                                timeout=4 * NODE_TIMEOUT + 10)
        finally:
            os.kill(victim.process.pid, signal.SIGCONT)
        left = await next_matching(rita.all_presences,
                                   occupant_presence("thawed", "Rita", "unavailable"),
                                   timeout=30)
        assert {110, 333} <= status_codes(left)
        await join(rita, "thawed", "Rita")
        await next_matching(sven.all_presences, occupant_presence("thawed", "Rita"))
        await close(sven, rita)

    run(scenario(), timeout=120)
