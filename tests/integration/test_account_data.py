"""An account's own data (PEP nodes and items, vCard, private XML, block list)
goes with the account: the rows in the database, and what the server keeps
in memory for it (slixmpp xep_0077 removes the account in band)."""

from __future__ import annotations

import asyncio
import contextlib
from xml.etree.ElementTree import Element, SubElement

import pytest
from slixmpp.exceptions import IqError
from sqlalchemy import func, select

from storage.db import Database, database_url
from storage.models import archive, keyval
from storage.stores import StoreFactory
from tests.integration.clients import TIMEOUT, close, login, run
from tests.integration.server_fixture import make_server
from xmpp.config import load_config
from xmpp.stream import parse_stanza

PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0163", "xep_0049", "xep_0054",
           "xep_0077", "xep_0191")
STORES = {"pep", "pep_urn:example:mood", "pep_urn:xmpp:vcard4", "private", "blocklist",
          "vcard"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, databases):
    server = make_server(tmp_path_factory.mktemp("account_data"),
                         modules=("register", "pep", "private", "blocklist", "vcard_legacy"),
                         database=databases.config())
    server.create_users({"leaver": "pw-leaver", "stays": "pw-stays"})
    server.start()
    yield server
    assert server.stop() == 0


@contextlib.contextmanager
def database(server):
    db = Database(database_url(load_config(server.config_path)))
    try:
        yield db
    finally:
        db.close()


def stores_of(server, username: str) -> set[str]:
    """The module stores holding rows of `username`."""
    with database(server) as db, db.engine.connect() as connection:
        names = set()
        for table in (keyval, archive):
            names.update(connection.scalars(select(table.c.store).distinct().where(
                table.c.host == server.domain, table.c.username == username)))
        return names


def row_count(server, username: str) -> int:
    with database(server) as db, db.engine.connect() as connection:
        return sum(connection.scalar(select(func.count()).select_from(table).where(
            table.c.host == server.domain, table.c.username == username)) or 0
            for table in (keyval, archive))


def mood() -> Element:
    element = Element("{urn:example}mood")
    element.text = "leaving"
    return element


def test_an_accounts_data_goes_with_it(server):
    async def scenario():
        leaver = await login(server, "leaver", plugins=PLUGINS)
        await leaver["xep_0060"].publish(None, "urn:example:mood", payload=mood())
        private = leaver.make_iq_set()
        SubElement(private["private"].xml, "{urn:example:notes}notes").text = "secret"
        await private.send(timeout=TIMEOUT)
        await leaver["xep_0191"].block(["spammer@example.net"])
        vcard = leaver["xep_0054"].make_vcard()
        vcard["FN"] = "Leaving Soon"
        await leaver["xep_0054"].publish_vcard(vcard)
        # And a vCard as mod_vcard kept it.
        with database(server) as db:
            StoreFactory(db).open(server.domain, "vcard").set("leaver", parse_stanza(
                "<vCard xmlns='vcard-temp'><FN>Old</FN></vCard>"))
        assert stores_of(server, "leaver") == STORES
        others = row_count(server, "stays")

        await leaver["xep_0077"].cancel_registration(timeout=TIMEOUT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(leaver.ended, TIMEOUT)
        assert row_count(server, "leaver") == 0
        assert row_count(server, "stays") == others

        # A new account of the same name starts empty, in memory too.
        server.create_users({"leaver": "pw-new"})
        server.users["leaver"] = "pw-new"
        again = await login(server, "leaver", plugins=PLUGINS)
        with pytest.raises(IqError) as gone:
            await again["xep_0060"].get_items(None, "urn:example:mood")
        assert gone.value.condition == "item-not-found"
        assert await again["xep_0191"].get_blocked_jids() == set()
        card = (await again["xep_0054"].get_vcard(server.jid("leaver")))["vcard_temp"]
        assert card["FN"] == ""
        await close(again)

    run(scenario())
