"""A server with a MUC component, and slixmpp clients with the MUC plugins, for the MUC tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from slixmpp import JID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.clients import DEFAULT_PLUGINS, TestClient, login
from tests.integration.server_fixture import ServerProcess, make_server

CLIENT = "jabber:client"
DATA_FORMS = "jabber:x:data"
MUC_USER = "http://jabber.org/protocol/muc#user"
MUC_HOST = "conference.localhost"
MUC_PLUGINS = (*DEFAULT_PLUGINS, "xep_0045", "xep_0004", "xep_0059", "xep_0249", "xep_0410",
               "xep_0421", "xep_0359", "xep_0313", "xep_0425")
USERS = {name: f"{name}-pw" for name in ("alice", "bob", "carol", "dave", "admin")}


def muc_server(directory: Path, options: str = "", *, modules: str = "", extra: str = ""
               ) -> ServerProcess:
    """`Component "conference.localhost" "muc"` with `options` in its section
    (`modules` in its modules_enabled); admin@localhost is a server admin."""
    server = make_server(directory, extra=f'admins = {{ "admin@localhost" }}\n{extra}',
                         host_extra=f"""
Component "{MUC_HOST}" "muc"
    modules_enabled = {{ {modules} }}
{options}
""")
    server.create_users(USERS)
    return server


async def muc_login(server: ServerProcess, user: str, resource: str = "test") -> TestClient:
    """A logged-in client whose `all_messages` and `all_presences` queues get
    every message and presence, those slixmpp's `message` and `presence`
    events leave out too (subjects, status codes, forms, MUC presences)."""
    client = await login(server, user, resource=resource, plugins=MUC_PLUGINS)
    client.all_messages = asyncio.Queue()
    client.all_presences = asyncio.Queue()
    for kind, queue in (("message", client.all_messages), ("presence", client.all_presences)):
        client.register_handler(Callback(f"all {kind}s", MatchXPath(f"{{{CLIENT}}}{kind}"),
                                         queue.put_nowait))
    return client


def room_jid(name: str) -> JID:
    return JID(f"{name}@{MUC_HOST}")


async def join(client: TestClient, room: str, nick: str, **options):
    """Join and wait for the self-presence and subject: (presence, subject, occupants, history)."""
    # COMPAT: slixmpp 1.11 waits for nothing unless the join names its sender
    # (an empty JID is truthy there, so every answer looks like someone else's).
    return await client.plugin["xep_0045"].join_muc_wait(
        room_jid(room), nick, timeout=10, presence_options={"pfrom": client.boundjid},
        **options)


async def instant_room(client: TestClient, room: str, nick: str, **config: object):
    """Create `room` as `nick` and submit its configuration (empty: an instant room)."""
    result = await join(client, room, nick)
    muc = client.plugin["xep_0045"]
    form = await muc.get_room_config(room_jid(room))
    for var, value in config.items():
        form.field[var]["value"] = value
    await muc.set_room_config(room_jid(room), form)
    return result


async def next_matching(queue: asyncio.Queue, predicate, timeout: float = 10.0):
    """The next item in `queue` for which `predicate` holds, skipping others."""
    async with asyncio.timeout(timeout):
        while True:
            item = await queue.get()
            if predicate(item):
                return item


def status_codes(stanza) -> set[int]:
    return set(stanza["muc"]["status_codes"])


def muc_user(stanza, path: str):
    """The element at `path` (names without namespace) in the stanza's muc#user <x/>."""
    return stanza.xml.find("/".join(f"{{{MUC_USER}}}{name}" for name in ("x", *path.split("/"))))


def form_value(stanza, var: str) -> str | None:
    """The value of field `var` in the stanza's data form, if any."""
    for field in stanza.xml.iter(f"{{{DATA_FORMS}}}field"):
        if field.get("var") == var:
            return field.findtext(f"{{{DATA_FORMS}}}value")
    return None
