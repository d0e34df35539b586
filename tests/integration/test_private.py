"""XEP-0049 private XML storage with slixmpp (xep_0049)."""

from __future__ import annotations

from xml.etree.ElementTree import SubElement

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase

from tests.integration.clients import close, login, run
from tests.integration.server_fixture import make_server

PLUGINS = ("xep_0030", "xep_0049")
USERS = {name: f"pw-{name}" for name in ("priv_a", "priv_b")}


class Settings(ElementBase):
    name = "settings"
    namespace = "urn:example:settings"
    plugin_attrib = "settings"
    interfaces = {"theme"}
    sub_interfaces = interfaces


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("private"), modules=("private",),
                         extra="private_max_entries = 3\n")
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


async def private_login(server, user: str):
    client = await login(server, user, plugins=PLUGINS)
    client["xep_0049"].register(Settings)
    return client


def test_private_xml_is_stored_for_its_owner_only(server):
    async def scenario():
        alice = await private_login(server, "priv_a")
        empty = await alice["xep_0049"].retrieve("settings")
        assert empty["private"]["settings"]["theme"] == ""
        settings = Settings()
        settings["theme"] = "dark"
        await alice["xep_0049"].store(settings)
        stored = await alice["xep_0049"].retrieve("settings")
        assert stored["private"]["settings"]["theme"] == "dark"

        bob = await private_login(server, "priv_b")
        theirs = await bob["xep_0049"].retrieve("settings")
        assert theirs["private"]["settings"]["theme"] == ""
        peek = bob.make_iq_get(queryxmlns="jabber:iq:private", ito=server.jid("priv_a"))
        peek["private"].append(Settings())
        with pytest.raises(IqError) as refused:
            await peek.send(timeout=10)
        assert refused.value.condition == "service-unavailable"
        await close(alice, bob)

    run(scenario())


def test_reserved_namespaces_and_the_entry_limit_are_refused(server):
    async def scenario():
        bob = await private_login(server, "priv_b")
        for namespace in ("jabber:iq:roster", "urn:example:a", "urn:example:b",
                          "urn:example:c", "urn:example:d"):
            iq = bob.make_iq_set()
            query = iq["private"].xml
            SubElement(query, f"{{{namespace}}}data").text = "x"
            if namespace in ("jabber:iq:roster", "urn:example:d"):
                with pytest.raises(IqError) as refused:
                    await iq.send(timeout=10)
                assert refused.value.condition == (
                    "not-acceptable" if namespace.startswith("jabber:") else
                    "resource-constraint")
            else:
                await iq.send(timeout=10)
        await close(bob)

    run(scenario())
