"""mod_pep's NodeStore on the module stores (SQLite, and PostgreSQL when set):
nodes and items survive a restart, long item ids and node names fit."""

from __future__ import annotations

from types import SimpleNamespace
from xml.etree.ElementTree import Element, SubElement

import pytest

from storage.stores import StoreFactory
from tests.unit import storage_fixtures
from xmpp.modules.pep import StoredNodes
from xmpp.pubsub import MAX_NODE_NAME_LENGTH, NS, Contacts, Service

db_url = storage_fixtures.db_url
db = storage_fixtures.db

HOST = "example.org"
OWNER = f"juliet@{HOST}"
NOBODY = Contacts(subscribed=lambda jid: False, groups=lambda jid: [])


@pytest.fixture
def module(db):
    db.migrate()
    stores = StoreFactory(db)
    return SimpleNamespace(open_store=lambda name, kind: stores.open(HOST, name, kind),
                           now=lambda: 1.8e9)


def service(module) -> Service:
    return Service(OWNER, StoredNodes(module, "juliet"), NOBODY)


def item(item_id: str, text: str) -> Element:
    element = Element(f"{{{NS}}}item", {"id": item_id})
    SubElement(element, "{urn:example}x").text = text
    return element


def test_nodes_and_items_survive_a_restart(module):
    pep = service(module)
    long_id = "room-with-a-long-name@" + "m" * 100 + ".example.org"
    node = "n" * MAX_NODE_NAME_LENGTH
    pep.publish(OWNER, node, item("a", "1"), {"max_items": 2, "access_model": "open"})
    pep.publish(OWNER, node, item(long_id, "2"))
    pep.publish(OWNER, node, item("c", "3"))  # evicts "a"
    pep.publish(OWNER, node, item(long_id, "4"))  # replaces, now the newest
    pep.publish(OWNER, "gone", item("x", "x"))
    pep.delete(OWNER, "gone")

    again = service(module)
    assert set(again.nodes) == {node}
    assert again.nodes[node].config["access_model"] == "open"
    items = again.get_items(OWNER, node)
    assert [(i.get("id"), i.findtext("{urn:example}x")) for i in items] == [
        (long_id, "4"), ("c", "3")]
    again.retract(OWNER, node, long_id)
    assert [i.get("id") for i in service(module).get_items(OWNER, node)] == ["c"]
