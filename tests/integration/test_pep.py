"""XEP-0163 PEP over real sockets with slixmpp (xep_0060, xep_0163, xep_0115):
OMEMO keys fetched by a stranger, notifications by entity capabilities, the
last item on presence, and hostile publishes refused by named limits."""

from __future__ import annotations

import asyncio
from xml.etree.ElementTree import Element, SubElement

import pytest
from slixmpp.exceptions import IqError

from tests.integration.clients import close, login, run
from tests.integration.raw_client import RawClient
from tests.integration.server_fixture import make_server
from tests.integration.test_presence import seed_mutual
from xmpp.pubsub import PUBLISH_OPTIONS

PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163")
USERS = {name: f"pw-{name}" for name in (
    "omemo_a", "omemo_b", "caps_a", "caps_b", "limit_a", "storm_a", "roster_a", "roster_b")}
AXOLOTL = "eu.siacs.conversations.axolotl"
MOOD = "urn:example:mood"
ITEM_SIZE = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory, databases):
    server = make_server(tmp_path_factory.mktemp("pep"), modules=("pep",),
                         extra=f"pep_max_item_size = {ITEM_SIZE}\npep_max_nodes = 20\n",
                         database=databases.config())
    server.create_users(USERS)
    seed_mutual(server, [("caps_a", "caps_b"), ("roster_a", "roster_b")])
    server.start()
    yield server
    assert server.stop() == 0


def payload(tag: str, text: str = "", **attrs: str) -> Element:
    element = Element(tag, attrs)
    element.text = text or None
    return element


def options(client, **fields: str):
    form = client["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=PUBLISH_OPTIONS)
    for var, value in fields.items():
        form.add_field(var=var, value=value)
    return form


async def refused(call) -> tuple[str, str | None]:
    """The condition (and pubsub condition) of an IQ error."""
    with pytest.raises(IqError) as raised:
        await call
    iq = raised.value.iq
    specific = [child.tag.rpartition("}")[2] for child in iq["error"].xml
                if child.tag.startswith("{http://jabber.org/protocol/pubsub#errors}")]
    return raised.value.condition, specific[0] if specific else None


def test_omemo_device_list_and_bundle_are_fetched_by_a_contact_without_subscription(server):
    async def scenario():
        alice = await login(server, "omemo_a", plugins=PLUGINS)
        bob = await login(server, "omemo_b", plugins=PLUGINS)
        device_list = payload(f"{{{AXOLOTL}}}list")
        SubElement(device_list, f"{{{AXOLOTL}}}device", {"id": "1234"})
        bundle = payload(f"{{{AXOLOTL}}}bundle")
        SubElement(bundle, f"{{{AXOLOTL}}}signedPreKeyPublic",
                   {"signedPreKeyId": "1"}).text = "BQ=="
        open_access = options(alice, **{"pubsub#access_model": "open"})
        await alice["xep_0060"].publish(None, f"{AXOLOTL}.devicelist", id="current",
                                        payload=device_list, options=open_access)
        await alice["xep_0060"].publish(None, f"{AXOLOTL}.bundles:1234", id="current",
                                        payload=bundle, options=open_access)
        alice_jid = server.jid("omemo_a")
        fetched = await bob["xep_0060"].get_items(alice_jid, f"{AXOLOTL}.devicelist")
        devices = fetched.xml.findall(f".//{{{AXOLOTL}}}device")
        assert [device.get("id") for device in devices] == ["1234"]
        fetched = await bob["xep_0060"].get_item(alice_jid, f"{AXOLOTL}.bundles:1234", "current")
        assert fetched.xml.find(f".//{{{AXOLOTL}}}signedPreKeyPublic").text == "BQ=="

        # Default access is "presence": a stranger may not read it.
        await alice["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood", "ok"))
        assert await refused(bob["xep_0060"].get_items(alice_jid, MOOD)) == (
            "not-authorized", "presence-subscription-required")
        # Publish options that disagree with the node are a precondition not met.
        assert await refused(alice["xep_0060"].publish(
            None, f"{AXOLOTL}.devicelist", id="current", payload=device_list,
            options=options(alice, **{"pubsub#access_model": "whitelist"}))) == (
            "conflict", "precondition-not-met")
        # The account's disco#info says it is a PEP service.
        info = await bob["xep_0030"].get_info(alice_jid)
        assert ("pubsub", "pep", None, None) in info["disco_info"]["identities"]
        assert "http://jabber.org/protocol/pubsub#publish-options" in \
            info["disco_info"]["features"]
        leaf = await bob["xep_0030"].get_info(alice_jid, node=f"{AXOLOTL}.devicelist")
        assert ("pubsub", "leaf", None, None) in leaf["disco_info"]["identities"]
        with pytest.raises(IqError) as hidden:
            await bob["xep_0030"].get_info(alice_jid, node=MOOD)
        assert hidden.value.condition == "item-not-found"
        await close(alice, bob)

    run(scenario())


async def interested_login(server, user: str, node: str, resource: str = "test"):
    """Log in announcing `node+notify` in entity capabilities (XEP-0115)."""
    client = await login(server, user, plugins=PLUGINS, presence=False, resource=resource)
    events: asyncio.Queue = asyncio.Queue()
    client.add_event_handler("pubsub_publish", events.put_nowait)
    client["xep_0163"].add_interest(node)
    await client["xep_0115"].update_caps(broadcast=False)
    client.send_presence()
    return client, events


def published_text(message) -> str:
    return message.xml.find(".//{urn:example}mood").text


def test_notifications_go_by_caps_and_the_last_item_comes_with_presence(server):
    async def scenario():
        alice = await login(server, "caps_a", plugins=PLUGINS)
        await alice["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood", "early"))
        bob, bob_events = await interested_login(server, "caps_b", MOOD)
        # The last item arrives once the server learnt bob's caps by disco#info.
        first = await asyncio.wait_for(bob_events.get(), 10)
        assert published_text(first) == "early"
        assert first["from"] == server.jid("caps_a")
        # Alice's own other resource is interested too.
        mine, mine_events = await interested_login(server, "caps_a", MOOD, "second")
        assert published_text(await asyncio.wait_for(mine_events.get(), 10)) == "early"
        await alice["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood", "later"))
        for events in (bob_events, mine_events):
            assert published_text(await asyncio.wait_for(events.get(), 10)) == "later"
        await close(alice, bob, mine)

    run(scenario())


def test_a_contact_removed_from_the_roster_gets_no_more_notifications(server):
    """Broadcasts keep the owner's roster between publishes; a roster change must show."""
    async def scenario():
        alice = await login(server, "roster_a", plugins=PLUGINS)
        bob = await login(server, "roster_b", plugins=PLUGINS)
        events: asyncio.Queue = asyncio.Queue()
        bob.add_event_handler("pubsub_publish", events.put_nowait)
        alice_jid, bob_jid = server.jid("roster_a"), server.jid("roster_b")
        open_access = options(alice, **{"pubsub#access_model": "open"})
        await alice["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood", "1"))
        await alice["xep_0060"].publish(None, "urn:example:open", options=open_access,
                                        payload=payload("{urn:example}mood", "open"))
        for node in (MOOD, "urn:example:open"):
            await bob["xep_0060"].subscribe(alice_jid, node, subscribee=bob.boundjid.full)
        while not events.empty():  # the last items, sent on subscription
            events.get_nowait()
        await alice["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood", "2"))
        assert published_text(await asyncio.wait_for(events.get(), 10)) == "2"
        await alice.del_roster_item(bob_jid)
        await alice["xep_0060"].publish(None, MOOD, payload=payload("{urn:example}mood", "3"))
        # The open node's item goes out after "3" would have: bob gets it, not "3".
        await alice["xep_0060"].publish(None, "urn:example:open", options=open_access,
                                        payload=payload("{urn:example}mood", "after"))
        assert published_text(await asyncio.wait_for(events.get(), 10)) == "after"
        await close(alice, bob)

    run(scenario())


def test_oversized_items_long_node_names_and_unknown_options_are_refused(server):
    async def scenario():
        alice = await login(server, "limit_a", plugins=PLUGINS)
        pep = alice["xep_0060"]
        big = payload("{urn:example}blob", "x" * ITEM_SIZE)
        assert await refused(pep.publish(None, "blob", payload=big)) == (
            "not-acceptable", "payload-too-big")
        assert (await refused(pep.publish(None, "n" * 10240, payload=payload(
            "{urn:example}x"))))[0] == "not-acceptable"
        assert await refused(pep.publish(None, "opts", payload=payload("{urn:example}x"),
                                         options=options(alice, **{"pubsub#bogus": "1"}))) == (
            "not-acceptable", "invalid-options")
        # 100,000 JIDs for a whitelist, in stanzas under the size limit: refused.
        await pep.publish(None, "secret", payload=payload("{urn:example}x"),
                          options=options(alice, **{"pubsub#access_model": "whitelist"}))
        # pep_max_affiliations (1000) takes the first two batches of 500, no more.
        for batch in range(200):
            affiliations = [(f"u{batch}-{n}@example.net", "member") for n in range(500)]
            if batch < 2:
                await pep.modify_affiliations(None, "secret", affiliations)
            else:
                assert (await refused(pep.modify_affiliations(
                    None, "secret", affiliations)))[0] == "resource-constraint"
        listed = await pep.get_node_affiliations(None, "secret")
        assert len(listed["pubsub_owner"]["affiliations"]) == 1001  # and the owner
        nodes = await alice["xep_0030"].get_items(server.jid("limit_a"))
        assert {item[1] for item in nodes["disco_items"]["items"]} == {"secret"}
        await close(alice)

    run(scenario(), timeout=120)


def test_a_publish_storm_is_bounded_by_the_node_limit(server):
    raw = RawClient(server.c2s_port)
    raw.login(server.domain, server.cert, "storm_a", server.users["storm_a"])
    storm = 10000
    raw.send("".join(
        f"<iq type='set' id='p{n}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        f"<publish node='storm{n}'><item><x xmlns='urn:example'>{n}</x></item></publish>"
        "</pubsub></iq>" for n in range(storm)))
    answers = raw.read_until(f"id='p{storm - 1}'".encode(), timeout=120)
    assert answers.count(b"type='result'") == 20
    assert answers.count(b"<resource-constraint") == storm - 20
    # Still serving: the item of an accepted node.
    raw.send("<iq type='get' id='get'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
             "<items node='storm0'/></pubsub></iq>")
    assert b"<x xmlns='urn:example'>0</x>" in raw.read_until(b"id='get'.*</iq>")
    raw.close()
