"""What one node of a cluster holds and the others reach there (issue 21): an
external component connected to one node, a BOSH session whose requests land on
every node, an upload slot asked for on one node, filled through a second and
fetched from a third (a shared `http_file_share_path`), and the one s2s link to
a remote domain that users on two nodes share."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from tests.integration.bosh_client import BoshClient, local
from tests.integration.clients import TIMEOUT, close, login, run
from tests.integration.server_fixture import Databases, ServerProcess
from tests.integration.test_cluster import (
    NODE_TIMEOUT,
    REDIS_ENV,
    Cluster,
    from_,
    seed,
    three_nodes,
)
from tests.integration.test_components import connect, disconnect, try_connect
from tests.integration.test_s2s import federated
from tests.integration.websocket_client import WsClient
from tests.unit.storage_fixtures import POSTGRES_ENV

SECRETS = {"comp.localhost": "comp-secret", "kicknew.localhost": "kicknew-secret",
           "kickold.localhost": "kickold-secret", "dying.localhost": "dying-secret"}
UPLOAD = "upload.localhost"


def sections(shared: str) -> str:
    components = "".join(
        f'Component "{domain}"\n    component_secret = "{secret}"\n'
        + ('    component_conflict_resolve = "kick_old"\n' if domain.startswith("kickold")
           else "")
        for domain, secret in SECRETS.items())
    return components + f"""
Component "{UPLOAD}" "http_file_share"
    http_host = "127.0.0.1"
    http_file_share_path = "{shared}"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster-owned")
    with three_nodes(root, modules=("bosh", "websocket"),
                     host_extra=sections(str(root / "uploads"))) as cluster:
        yield cluster


def component_secrets(monkeypatch) -> None:
    """test_components' helpers connect with the secrets of its own table."""
    monkeypatch.setattr("tests.integration.test_components.SECRETS", SECRETS)


# -- external components --------------------------------------------------------------

def test_a_component_on_one_node_talks_with_users_on_the_others(cluster, monkeypatch):
    component_secrets(monkeypatch)
    n1, n2, n3 = (cluster.nodes[name] for name in ("n1", "n2", "n3"))

    async def scenario():
        component = await connect(n1, "comp.localhost")
        alice = await login(n2, "alice")
        bob = await login(n3, "bob")
        # n2 has no connection of the component: it passes the message on to n1.
        alice.send_message(mto="echo@comp.localhost", mbody="hello component", mtype="chat")
        got = await component.next_message()
        assert got["body"] == "hello component" and got["from"] == alice.boundjid
        # The component's stanzas reach users on n2 and n3 through the cluster.
        for user in (alice, bob):
            component.send_message(mto=str(user.boundjid), mfrom="echo@comp.localhost",
                                   mbody=f"hello {user.boundjid.user}", mtype="chat")
            answer = await user.next_message()
            assert answer["body"] == f"hello {user.boundjid.user}"
            assert str(answer["from"]) == "echo@comp.localhost"
        await disconnect(component)
        await close(alice, bob)

    run(scenario())


def test_a_second_connection_on_another_node_follows_the_conflict_policy(cluster, monkeypatch):
    component_secrets(monkeypatch)
    n1, n2, n3 = (cluster.nodes[name] for name in ("n1", "n2", "n3"))

    async def scenario():
        # kick_new (the default): the connection on n2 is refused.
        first = await connect(n1, "kicknew.localhost")
        second = await try_connect(n2, "kicknew.localhost")
        assert not second.started.result() and second.stream_errors == ["conflict"]
        assert not first.ended.done()
        # kick_old: the connection on n2 replaces the one on n1...
        old = await connect(n1, "kickold.localhost")
        new = await connect(n2, "kickold.localhost")
        await asyncio.wait_for(old.ended, TIMEOUT)
        assert old.stream_errors == ["conflict"]
        # ...and n3 passes stanzas for the domain on to n2 now.
        carol = await login(n3, "carol")
        carol.send_message(mto="kickold.localhost", mbody="to the new one", mtype="chat")
        assert (await new.next_message())["body"] == "to the new one"
        await disconnect(first, new)
        await close(carol)

    run(scenario())


def test_a_dead_nodes_component_claim_expires(cluster, monkeypatch):
    component_secrets(monkeypatch)
    n1 = cluster.nodes["n1"]
    victim = cluster.start_node("n4")
    assert victim.process is not None

    async def scenario():
        doomed = await connect(victim, "dying.localhost")
        refused = await try_connect(n1, "dying.localhost")
        assert refused.stream_errors == ["conflict"]
        os.kill(victim.process.pid, signal.SIGKILL)
        await asyncio.wait_for(doomed.ended, TIMEOUT)
        # The claim lives as long as n4's heartbeat: then n1 takes the component.
        deadline = time.monotonic() + 2 * NODE_TIMEOUT + 10
        while not (again := await try_connect(n1, "dying.localhost")).started.result():
            assert time.monotonic() < deadline, "the dead node's claim never expired"
            await asyncio.sleep(0.5)
        await disconnect(again)

    run(scenario())


# -- BOSH -------------------------------------------------------------------------------

@dataclass
class RoamingBosh(BoshClient):
    """A BOSH client whose every request after the first goes to the next node."""

    ports: Iterator[int] = field(default_factory=lambda: iter(()))

    def post(self, *args, **kwargs):
        if self.sid is not None:
            self.port = next(self.ports)
        return super().post(*args, **kwargs)


def test_a_bosh_sessions_requests_may_land_on_any_node(cluster):
    n1, n2, n3 = (cluster.nodes[name] for name in ("n1", "n2", "n3"))

    async def scenario():
        tcp = await login(n3, "hank", resource="desk")
        web = RoamingBosh(n1.ports["https"], n1.domain, https=True, ports=itertools.cycle(
            [n2.ports["https"], n3.ports["https"], n1.ports["https"]]))
        await asyncio.to_thread(web.login, "gina", "pw-gina", "browser", 60)
        await asyncio.to_thread(web.send, "<presence xmlns='jabber:client'/>")
        await tcp.next_presence(from_(f"{n1.jid('gina')}/browser"))
        # A request held on its way through another node returns with the message.
        held = asyncio.create_task(asyncio.to_thread(
            web.post, f"<message xmlns='jabber:client' to='{n1.jid('hank')}' type='chat'>"
                      "<body>from the browser</body></message>"))
        assert (await tcp.next_message())["body"] == "from the browser"
        tcp.send_message(mto=f"{n1.jid('gina')}/browser", mbody="from tcp", mtype="chat")
        response = await asyncio.wait_for(held, TIMEOUT)
        messages = [child for child in response.body if local(child) == "message"]
        assert [m.findtext("{jabber:client}body") for m in messages] == ["from tcp"]
        ended = await asyncio.to_thread(web.send, "<presence xmlns='jabber:client' "
                                        "type='unavailable'/>", type="terminate")
        assert ended.get("type") == "terminate" and ended.get("condition") is None
        await tcp.next_presence(from_(f"{n1.jid('gina')}/browser", "unavailable"))
        await close(tcp)

    run(scenario())


def test_a_websocket_user_on_one_node_talks_with_a_user_on_another(cluster):
    """One TCP connection, so one node: nothing cluster-specific, and it works."""
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]

    async def scenario():
        leo = await login(n1, "leo")
        web = await WsClient.connect(n2, https=True)
        try:
            bound = await web.login("kate", "pw-kate")
            await web.send(f"<message xmlns='jabber:client' to='{n1.jid('leo')}' type='chat'>"
                           "<body>over a websocket</body></message>")
            assert (await leo.next_message())["body"] == "over a websocket"
            leo.send_message(mto=bound, mbody="over tcp", mtype="chat")
            got = await web.until(lambda element: local(element) == "message")
            assert got.findtext("{jabber:client}body") == "over tcp"
        finally:
            await web.close()
        await close(leo)

    run(scenario())


# -- file share -----------------------------------------------------------------------------

def on_node(url: str, node) -> str:
    """The slot URL with another node's port (one machine, ports of its own each)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{node.ports[parts.scheme]}"))


async def put_then_get(slot: dict, put_url: str, get_url: str, body: bytes) -> None:
    """Fill upload `slot` with `body` at `put_url` (its headers sent), then
    read it back whole from `get_url`."""
    headers = {h["name"]: h["value"] for h in slot["put"]["headers"]}
    # The nodes' certificates are self-signed.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:
        async with session.put(put_url, data=io.BytesIO(body),
                               headers={**headers, "Content-Type": "application/octet-stream"}
                               ) as response:
            assert response.status == 201, await response.text()
        async with session.get(get_url) as response:
            assert response.status == 200
            assert await response.read() == body


def test_a_slot_from_one_node_is_filled_through_a_second_and_served_by_a_third(cluster):
    n1, n2, n3 = (cluster.nodes[name] for name in ("n1", "n2", "n3"))
    body = bytes(range(256)) * 40

    async def scenario():
        client = await login(n1, "ivy", plugins=("xep_0030", "xep_0363"))
        slot = (await client["xep_0363"].request_slot(
            UPLOAD, "cluster.bin", len(body), "application/octet-stream",
            timeout=TIMEOUT))["http_upload_slot"]
        await put_then_get(slot, on_node(slot["put"]["url"], n2),
                           on_node(slot["get"]["url"], n3), body)
        await close(client)

    run(scenario())


# -- s2s ----------------------------------------------------------------------------------

@contextmanager
def federating_cluster(root: Path, dns, *, extra: str, remote_extra: str,
                       published: tuple[int, ...]) -> Iterator[tuple[ServerProcess, ...]]:
    """c.example as two nodes (one certificate; an SRV record for each node
    numbered in `published`) and d.example a lone server, all started; the
    nodes trust what `root/trusted.pem` holds (their certificate and d's)."""
    postgres, redis_url = os.environ.get(POSTGRES_ENV), os.environ.get(REDIS_ENV)
    if not postgres or not redis_url:
        pytest.skip(f"{POSTGRES_ENV} and {REDIS_ENV} are needed")
    databases = Databases("postgresql", postgres)
    cluster = Cluster(root, redis_url, databases.config(), domain="c.example",
                      address="127.0.0.5", s2s=True,
                      extra=f'unbound = {{ forward = "{dns.forward}" }}\n{extra}')
    remote = federated(root / "d", dns, "d.example", "127.0.0.6", extra=remote_extra)
    remote.create_users({"dave": "pw-dave"})
    try:
        first = cluster.configure("c1")
        second = cluster.configure("c2")
        for mine, shared in ((second.cert, first.cert), (second.key, first.key)):
            shutil.copyfile(shared, mine)
        (root / "trusted.pem").write_text(first.cert.read_text() + remote.cert.read_text())
        for number in published:
            node = (first, second)[number]
            dns.add_srv("c.example", f"xmpp{number}.c.example", node.ports["s2s"])
            dns.add_address(f"xmpp{number}.c.example", "127.0.0.5")
        first.start()
        seed(first)
        second.start()
        remote.start()
        cluster.wait_joined()
        yield first, second, remote
    finally:
        cluster.stop()
        remote.stop()
        databases.drop_all()


def exchange_with_dave(first: ServerProcess, second: ServerProcess,
                       remote: ServerProcess) -> None:
    """alice (on the first node), then bob (on the second) write to dave, who answers."""
    async def scenario():
        dave = await login(remote, "dave")
        alice = await login(first, "alice")
        bob = await login(second, "bob")
        for user in (alice, bob):
            user.send_message(mto="dave@d.example", mbody=f"from {user.boundjid.user}",
                              mtype="chat")
            got = await dave.next_message(TIMEOUT)
            assert got["body"] == f"from {user.boundjid.user}"
            assert got["from"] == user.boundjid
            # The answer comes in on whichever node d.example reached.
            dave.send_message(mto=str(user.boundjid), mbody="back", mtype="chat")
            assert (await user.next_message(TIMEOUT))["body"] == "back"
        await close(dave, alice, bob)

    run(scenario(), timeout=90)


def assert_one_link(first: ServerProcess, second: ServerProcess,
                    remote: ServerProcess) -> None:
    incoming = [s for s in remote.sessions() if s["kind"] == "s2sin"]
    assert len(incoming) == 1, incoming
    assert incoming[0]["id"] == "c.example", incoming
    outgoing = [node for node in (first, second)
                for s in node.sessions() if s["kind"] == "s2sout"
                and s["id"] == "d.example"]
    assert outgoing == [first], "the first node to route there holds the link"


def test_users_on_two_nodes_reach_a_remote_server_over_one_link(tmp_path, dns):
    """Both sides trust the two certificates, so links use SASL EXTERNAL."""
    trust = f's2s_ssl = {{ cafile = "{tmp_path / "trusted.pem"}" }}\ns2s_secure_auth = true\n'
    with federating_cluster(tmp_path, dns, extra=trust, remote_extra=trust,
                            published=(0, 1)) as (first, second, remote):
        exchange_with_dave(first, second, remote)
        assert_one_link(first, second, remote)


@pytest.mark.parametrize("secret", ['dialback_secret = "shared-by-nodes"\n', ""],
                         ids=["configured", "kept-in-the-database"])
def test_dialback_verifications_go_over_the_link_another_node_holds(tmp_path, dns, secret):
    """No certificate is trusted, so links use dialback (the nodes share their
    secret: configured, or made by the first and kept in the database).
    d.example reaches c.example on the second node only: to verify d's key
    there, the second node asks the first, which holds the link to d, to send
    the <db:verify/> and hand back the answer. The key d checks so on c2 (for
    c's stream to d) is one c1 made."""
    with federating_cluster(tmp_path, dns, extra=secret,
                            remote_extra="", published=(1,)) as (first, second, remote):
        exchange_with_dave(first, second, remote)
        assert_one_link(first, second, remote)


def test_a_node_with_another_dialback_secret_refuses_to_start(tmp_path):
    postgres, redis_url = os.environ.get(POSTGRES_ENV), os.environ.get(REDIS_ENV)
    if not postgres or not redis_url:
        pytest.skip(f"{POSTGRES_ENV} and {REDIS_ENV} are needed")
    databases = Databases("postgresql", postgres)
    cluster = Cluster(tmp_path, redis_url, databases.config(), s2s=True,
                      extra='dialback_secret = "secret-of-c1"\n')
    try:
        cluster.start_node("c1")
        # Another secret, or none (the database's then): refused, the option named.
        for name, extra in (("c2", 'dialback_secret = "secret-of-c2"\n'), ("c3", "")):
            cluster.extra = extra
            node = cluster.configure(name)
            with pytest.raises(RuntimeError, match="exited with 1"):
                node.start()
            output = (node.directory / "stderr.log").read_text()
            assert "option 'dialback_secret' differs from that of node(s) c1" in output
            assert "secret-of" not in output
        cluster.extra = 'dialback_secret = "secret-of-c1"\n'
        cluster.start_node("c4")
    finally:
        cluster.stop()
        databases.drop_all()
