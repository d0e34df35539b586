"""Bookmarks with slixmpp: XEP-0402 in PEP, and the XEP-0048 views (xep_0048
over private XML, xep_0049, and over PEP, xep_0223) kept in sync."""

from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0048.stanza import Bookmarks
from slixmpp.plugins.xep_0402.stanza import Conference

from tests.integration.clients import close, login, run
from tests.integration.server_fixture import make_server
from xmpp.pubsub import PUBLISH_OPTIONS

PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0163", "xep_0049", "xep_0048",
           "xep_0223", "xep_0402")
USERS = {name: f"pw-{name}" for name in ("mark_a", "mark_b")}
NODE = "urn:xmpp:bookmarks:1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("bookmarks"),
                         modules=("pep", "private", "bookmarks"))
    server.create_users(USERS)
    server.start()
    yield server
    assert server.stop() == 0


def bookmarks2_options(client):
    form = client["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBLISH_OPTIONS)
    for var, value in (("pubsub#persist_items", "true"), ("pubsub#max_items", "max"),
                       ("pubsub#send_last_published_item", "never"),
                       ("pubsub#access_model", "whitelist")):
        form.add_field(var=var, value=value)
    return form


async def bookmarks2(client) -> dict[str, tuple[str, bool]]:
    result = await client["xep_0060"].get_items(None, NODE)
    return {item["id"]: (item["conference"]["name"], item["conference"]["autojoin"])
            for item in result["pubsub"]["items"]}


async def private_view(client) -> dict[str, str]:
    result = await client["xep_0048"].get_bookmarks(method="xep_0049")
    return {str(c["jid"]): c["name"] for c in result["private"]["bookmarks"]["conferences"]}


async def pep_view(client) -> dict[str, str]:
    result = await client["xep_0048"].get_bookmarks(method="xep_0223")
    conferences = result["pubsub"]["items"]["item"]["bookmarks"]["conferences"]
    return {str(c["jid"]): c["name"] for c in conferences}


def test_the_three_views_of_bookmarks_stay_in_sync(server):
    async def scenario():
        alice = await login(server, "mark_a", plugins=PLUGINS)
        info = await alice["xep_0030"].get_info(server.jid("mark_a"))
        assert f"{NODE}#compat" in info["disco_info"]["features"]

        # XEP-0048 in private XML becomes XEP-0402 items.
        legacy = Bookmarks()
        legacy.add_conference("tea@muc.example.org", "alice", name="Tea party", autojoin=True)
        legacy.add_conference("chess@muc.example.org", "alice", name="Chess")
        await alice["xep_0048"].set_bookmarks(legacy, method="xep_0049")
        assert await bookmarks2(alice) == {"tea@muc.example.org": ("Tea party", True),
                                           "chess@muc.example.org": ("Chess", False)}

        # A XEP-0402 publish and retract show in the private XML view.
        conference = Conference()
        conference["name"] = "Croquet"
        conference["autojoin"] = True
        await alice["xep_0060"].publish(None, NODE, id="croquet@muc.example.org",
                                        payload=conference, options=bookmarks2_options(alice))
        await alice["xep_0060"].retract(None, NODE, "chess@muc.example.org")
        assert await private_view(alice) == {"tea@muc.example.org": "Tea party",
                                             "croquet@muc.example.org": "Croquet"}

        # XEP-0048 over PEP (XEP-0223) rewrites them too, and then follows them.
        over_pep = Bookmarks()
        over_pep.add_conference("cards@muc.example.org", "alice", name="Cards")
        await alice["xep_0048"].set_bookmarks(over_pep, method="xep_0223")
        assert await bookmarks2(alice) == {"cards@muc.example.org": ("Cards", False)}
        await alice["xep_0060"].publish(None, NODE, id="tea@muc.example.org",
                                        payload=conference, options=bookmarks2_options(alice))
        assert await pep_view(alice) == {"cards@muc.example.org": "Cards",
                                         "tea@muc.example.org": "Croquet"}
        assert await private_view(alice) == await pep_view(alice)

        # Nobody else reads them (whitelist).
        bob = await login(server, "mark_b", plugins=PLUGINS)
        with pytest.raises(IqError) as refused:
            await bob["xep_0060"].get_items(server.jid("mark_a"), NODE)
        assert refused.value.condition == "not-allowed"
        await close(alice, bob)

    run(scenario())
