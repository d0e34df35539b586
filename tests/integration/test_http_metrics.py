"""/metrics of a real Vireo server (mod_http_openmetrics): what each family counts.

Two slixmpp users exchange a message; /metrics must then show the c2s
connections and sessions, the stanzas in and out, the HTTP answers by status
and a storage failure (a table renamed under the running server), as
scraped over the server's own http port. The module is enabled globally on
two VirtualHosts, or on one VirtualHost only: either way /metrics is one
global app, served for any Host.
"""

from __future__ import annotations

import sqlite3
import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from slixmpp.exceptions import IqError

from tests.http_fixtures import connect, http_request
from tests.integration.clients import close, login, run
from tests.integration.server_fixture import make_server

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
STATISTICS = 'statistics = "internal"\n'


def start(directory, **options):
    server = make_server(directory, http=True, extra=STATISTICS, **options)
    server.create_users(USERS)
    server.start()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Global modules_enabled, loaded on two VirtualHosts: one /metrics app.
    server = start(tmp_path_factory.mktemp("metrics"), modules=("http_openmetrics",),
                   host_extra='VirtualHost "second.example"\n')
    yield server
    assert server.stop() == 0


def get(server, path, host="localhost"):
    with connect(server.ports["http"]) as sock:
        response = http_request(sock, "GET", path, host)
        return response.status, response.read().decode()


def scrape(server, host="localhost"):
    """{(sample name, sorted label pairs): value} of one /metrics answer."""
    status, text = get(server, "/metrics", host)
    assert status == 200, text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)




def test_connections_sessions_and_stanzas(server):
    async def scenario():
        before = scrape(server)
        alice = await login(server, "alice")
        bob = await login(server, "bob")
        try:
            alice.send_message(mto=server.jid("bob"), mbody="hello", mtype="chat")
            assert (await bob.next_message())["body"] == "hello"
            await alice.get_roster(timeout=10)
            return before, scrape(server)
        finally:
            await close(alice, bob)

    before, during = run(scenario())
    assert value(during, "vireo_connections", listener="c2s") == 2
    assert value(during, "vireo_connections", listener="c2s_direct_tls") == 0
    assert value(during, "vireo_connections", listener="component") == 0
    assert value(during, "vireo_connections", listener="http") >= 1  # the scrape itself
    assert value(during, "vireo_sessions", kind="c2s") == 2
    for direction in ("in", "out"):
        for kind in ("message", "presence", "iq"):
            name = "vireo_stanzas_total"
            assert value(during, name, direction=direction, kind=kind) > value(
                before, name, direction=direction, kind=kind), (direction, kind)
    assert value(during, "process_open_fds") > 0


def test_http_requests_by_status(server):
    before = scrape(server)
    assert get(server, "/")[0] == 404
    assert get(server, "/metrics", host="127.0.0.1")[0] == 200
    after = scrape(server)
    name = "vireo_http_requests_total"
    assert value(after, name, status="404") == value(before, name, status="404") + 1
    # The first scrape and the one on another Host; the last is counted once answered.
    assert value(after, name, status="200") == value(before, name, status="200") + 2


def test_served_for_every_host(server):
    for host in ("second.example", "unknown.example", "localhost:5280"):
        assert get(server, "/metrics", host)[0] == 200


def test_storage_errors(server):
    # Last in this file: the roster table disappears under the server, then comes back.
    database = sqlite3.connect(server.directory / "data" / "prosody.sqlite")

    async def scenario():
        alice = await login(server, "alice", presence=False)
        try:
            database.execute("ALTER TABLE roster_items RENAME TO roster_items_away")
            database.commit()
            try:
                with pytest.raises(IqError) as failure:
                    await alice.get_roster(timeout=10)
            finally:
                database.execute("ALTER TABLE roster_items_away RENAME TO roster_items")
                database.commit()
            assert failure.value.condition == "internal-server-error"
            await alice.get_roster(timeout=10)  # storage is back: so is the roster
        finally:
            await close(alice)

    before = scrape(server)
    try:
        run(scenario())
    finally:
        database.close()
    after = scrape(server)
    name = "vireo_storage_errors_total"
    assert value(after, name, store="sql") == value(before, name, store="sql") + 1


def test_enabled_on_one_virtual_host(tmp_path):
    server = start(tmp_path, host_extra='modules_enabled = { "http_openmetrics" }\n'
                                        'VirtualHost "second.example"\n')
    try:
        # The start-up check's connection to the c2s port is counted until the
        # server reads its close, which may come after this first scrape.
        deadline = time.monotonic() + 5
        while value(scrape(server), "vireo_connections", listener="c2s") and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        # Prosody's module is global: loaded by one host, it answers for every host.
        for host in ("localhost", "second.example", "unknown.example"):
            samples = scrape(server, host)
            assert value(samples, "vireo_connections", listener="c2s") == 0
        assert get(server, "/", "localhost")[0] == 404
    finally:
        assert server.stop() == 0
