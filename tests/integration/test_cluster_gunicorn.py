"""A cluster node under gunicorn (issue 21): `gunicorn -k gevent -w 1 -c
gunicorn.conf.py` as a member of a cluster whose other node runs `app.py run`.
BOSH requests landing on the port gunicorn binds are passed on to the node
holding their session, and those for a session held under gunicorn reach it
from the other node (through the cluster's own listener, which the gunicorn
worker opens too); an upload slot asked for on one node is filled through the
gunicorn port and served by the other node."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.integration.bosh_client import local
from tests.integration.clients import TIMEOUT, close, login, run
from tests.integration.server_fixture import Databases, ServerProcess
from tests.integration.test_cluster import REDIS_ENV, Cluster, from_, seed
from tests.integration.test_cluster_owned import UPLOAD, RoamingBosh, put_then_get
from tests.integration.test_http_gunicorn import start_gunicorn
from tests.unit.storage_fixtures import POSTGRES_ENV


@pytest.fixture(scope="module")
def nodes(tmp_path_factory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Node "plain" (`app.py run`) and node "unicorn" (gunicorn), joined."""
    postgres, redis_url = os.environ.get(POSTGRES_ENV), os.environ.get(REDIS_ENV)
    if not postgres or not redis_url:
        pytest.skip(f"{POSTGRES_ENV} and {REDIS_ENV} are needed")
    root = tmp_path_factory.mktemp("cluster-gunicorn")
    databases = Databases("postgresql", postgres)
    # Plain http on both nodes' public ports: gunicorn serves those.
    cluster = Cluster(root, redis_url, databases.config(), modules=("bosh",),
                      extra="consider_bosh_secure = true\n",
                      host_extra=(f'Component "{UPLOAD}" "http_file_share"\n'
                                  '    http_host = "127.0.0.1"\n'
                                  f'    http_file_share_path = "{root / "uploads"}"\n'))
    try:
        plain = cluster.start_node("plain")
        seed(plain)
        unicorn = cluster.configure("unicorn")
        # Stopped with the cluster's nodes (SIGTERM, gunicorn's graceful stop).
        unicorn.process = start_gunicorn(unicorn, unicorn.ports["http"])
        cluster.wait_joined()
        yield plain, unicorn
    finally:
        cluster.stop()
        databases.drop_all()


def test_bosh_sessions_move_between_the_gunicorn_node_and_the_plain_one(nodes):
    plain, unicorn = nodes

    async def scenario():
        # Each session is created on one node, its later requests land on both.
        for (user, contact), first, other in ((("gina", "hank"), unicorn, plain),
                                              (("jack", "ivy"), plain, unicorn)):
            tcp = await login(plain, contact, resource="desk")
            web = RoamingBosh(first.ports["http"], first.domain, ports=itertools.cycle(
                [other.ports["http"], first.ports["http"]]))
            await asyncio.to_thread(web.login, user, f"pw-{user}", "browser", 60)
            await asyncio.to_thread(web.send, "<presence xmlns='jabber:client'/>")
            await tcp.next_presence(from_(f"{plain.jid(user)}/browser"))
            held = asyncio.create_task(asyncio.to_thread(
                web.post, f"<message xmlns='jabber:client' to='{plain.jid(contact)}' "
                          f"type='chat'><body>from {user}</body></message>"))
            assert (await tcp.next_message())["body"] == f"from {user}"
            tcp.send_message(mto=f"{plain.jid(user)}/browser", mbody=f"to {user}",
                             mtype="chat")
            response = await asyncio.wait_for(held, TIMEOUT)
            messages = [child for child in response.body if local(child) == "message"]
            assert [m.findtext("{jabber:client}body") for m in messages] == [f"to {user}"]
            ended = await asyncio.to_thread(web.send, "<presence xmlns='jabber:client' "
                                            "type='unavailable'/>", type="terminate")
            assert ended.get("type") == "terminate" and ended.get("condition") is None
            await tcp.next_presence(from_(f"{plain.jid(user)}/browser", "unavailable"))
            await close(tcp)

    run(scenario())


def over_http(url: str, node: ServerProcess) -> str:
    """The slot URL on `node`'s plain http port (the one gunicorn binds there)."""
    return urlunsplit(urlsplit(url)._replace(scheme="http",
                                             netloc=f"127.0.0.1:{node.ports['http']}"))


def test_an_upload_through_the_gunicorn_node_is_served_by_the_plain_one(nodes):
    plain, unicorn = nodes
    body = bytes(range(256)) * 40

    async def scenario():
        client = await login(plain, "kate", plugins=("xep_0030", "xep_0363"))
        slot = (await client["xep_0363"].request_slot(
            UPLOAD, "gunicorn.bin", len(body), "application/octet-stream",
            timeout=TIMEOUT))["http_upload_slot"]
        await put_then_get(slot, over_http(slot["put"]["url"], unicorn),
                           over_http(slot["get"]["url"], plain), body)
        await close(client)

    run(scenario())
