"""mod_muc under hostile input over real sockets: a full room, a flood of
10,000 joins and nick changes from one connection; other rooms go on."""

from __future__ import annotations

import asyncio
import time

import pytest
from slixmpp.exceptions import PresenceError

from tests.integration.bench_s2s import C2S_PLAIN, PASSWORD
from tests.integration.bench_s2s import login as raw_login
from tests.integration.clients import close, run
from tests.integration.muc_fixtures import (
    MUC_HOST,
    instant_room,
    join,
    muc_login,
    muc_server,
    next_matching,
    room_jid,
)

MAX_OCCUPANTS = 20
FLOOD = 10_000
JOIN = "<presence to='busy@{host}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = muc_server(tmp_path_factory.mktemp("muc_bad"),
                        f"    muc_max_occupants = {MAX_OCCUPANTS}", extra=C2S_PLAIN)
    server.create_users({f"flood{i}": PASSWORD for i in range(MAX_OCCUPANTS + 5)})
    server.start()
    yield server
    server.stop()


async def drain(conn) -> None:
    """Read and forget what the server sends a raw connection."""
    while await conn.reader.read(65536):
        pass


def test_full_room_and_join_flood_leave_other_rooms_alone(server):
    async def scenario():
        alice = await muc_login(server, "alice")
        bob = await muc_login(server, "bob")
        await instant_room(alice, "quiet", "Alice")
        await join(bob, "quiet", "Bob")
        # The room fills up: joins past muc_max_occupants get the XEP's error.
        conns = [await raw_login(server.address, server.c2s_port, server.domain, f"flood{i}")
                 for i in range(MAX_OCCUPANTS + 5)]
        for index, conn in enumerate(conns):
            conn.writer.write(JOIN.format(host=MUC_HOST, nick=f"f{index}").encode())
            if index < MAX_OCCUPANTS:
                await conn.until(b"</message>")  # the subject ends a join
            else:
                await conn.until(b"service-unavailable")
            if index == 0:  # the creator unlocks the room
                conn.writer.write(f"<iq type='set' id='c' to='busy@{MUC_HOST}'><query xmlns="
                                  f"'http://jabber.org/protocol/muc#owner'><x xmlns="
                                  f"'jabber:x:data' type='submit'/></query></iq>".encode())
                await conn.until(b"id='c'")
        with pytest.raises(PresenceError) as full:
            await join(alice, "busy", "Alice")
        assert full.value.condition == "service-unavailable"
        # One connection floods the room with 10,000 joins under new nicks.
        flooder = conns[1]
        readers = [asyncio.create_task(drain(conn)) for conn in conns]
        flooder.writer.write("".join(JOIN.format(host=MUC_HOST, nick=f"x{n}")
                                     for n in range(FLOOD)).encode())
        started = time.monotonic()
        for number in range(5):
            alice.send_message(mto=room_jid("quiet"), mbody=f"still {number}",
                               mtype="groupchat")
            await next_matching(bob.all_messages,
                                lambda m, number=number: m["body"] == f"still {number}")
        assert time.monotonic() - started < 10
        await flooder.writer.drain()
        # The flood left one occupant under the last nick: the room is still full.
        with pytest.raises(PresenceError) as full:
            await join(alice, "busy", "Alice")
        assert full.value.condition == "service-unavailable"
        for task in readers:
            task.cancel()
        for conn in conns:
            conn.writer.close()
        await close(alice, bob)

    run(scenario())
