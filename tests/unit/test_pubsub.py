"""The XEP-0060 rules of xmpp.pubsub, without sockets or storage engines."""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement

import pytest

from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.pubsub import (
    MAX_NODE_NAME_LENGTH,
    NODE_CONFIG,
    NS,
    NS_ERRORS,
    NS_EVENT,
    NS_OWNER,
    PUBLISH_OPTIONS,
    Contacts,
    Limits,
    MemoryNodeStore,
    Service,
    event_message,
    handle_request,
)

OWNER = "juliet@example.org"
FRIEND = "romeo@example.org"  # subscribed to the owner's presence, in group "family"
STRANGER = "iago@example.org"


def service(store: MemoryNodeStore | None = None, **limits: int) -> Service:
    contacts = Contacts(subscribed=lambda jid: jid == FRIEND,
                        groups=lambda jid: ["family"] if jid == FRIEND else [])
    return Service(OWNER, store or MemoryNodeStore(), contacts, Limits(**limits))


def item(item_id: str | None = None, text: str = "x") -> Element:
    element = Element(f"{{{NS}}}item", {"id": item_id} if item_id else {})
    SubElement(element, "{urn:example}payload").text = text
    return element


def form(form_type: str, **fields: str | list[str]) -> Element:
    x = Element(f"{{{ns.DATA_FORMS}}}x", {"type": "submit"})
    for var, value in {"FORM_TYPE": form_type, **fields}.items():
        field = SubElement(x, f"{{{ns.DATA_FORMS}}}field", {"var": var})
        for text in value if isinstance(value, list) else [value]:
            SubElement(field, f"{{{ns.DATA_FORMS}}}value").text = text
    return x


def publish_request(node: str, *items: Element, options: Element | None = None) -> Element:
    pubsub = Element(f"{{{NS}}}pubsub")
    SubElement(pubsub, f"{{{NS}}}publish", {"node": node}).extend(items)
    if options is not None:
        SubElement(pubsub, f"{{{NS}}}publish-options").append(options)
    return pubsub


def items_request(node: str, *ids: str, max_items: int | None = None) -> Element:
    pubsub = Element(f"{{{NS}}}pubsub")
    items = SubElement(pubsub, f"{{{NS}}}items", {"node": node})
    if max_items is not None:
        items.set("max_items", str(max_items))
    for item_id in ids:
        SubElement(items, f"{{{NS}}}item", {"id": item_id})
    return pubsub


def conditions(error: StanzaError) -> tuple[str, str | None]:
    extra = error.extra
    return error.condition, (extra.tag.rpartition("}")[2] if extra is not None else None)


def test_publish_creates_the_node_with_mod_peps_defaults_and_keeps_one_item():
    pep = service()
    result, notifications = handle_request(pep, OWNER + "/phone", "set",
                                           publish_request("tune", item("a")))
    assert result.find(f"{{{NS}}}publish/{{{NS}}}item").get("id") == "a"
    node = pep.nodes["tune"]
    assert node.config["access_model"] == "presence" and node.config["max_items"] == 1
    assert [n.kind for n in notifications] == ["items"]
    pep.publish(OWNER, "tune", item("b"))
    assert [i.get("id") for i in pep.get_items(OWNER, "tune")] == ["b"]
    assert list(pep.store.items["tune"]) == ["b"]  # the evicted item left the store too


def test_an_item_without_id_gets_one_and_a_republished_id_replaces_its_item():
    pep = service()
    pep.publish(OWNER, "n", item(), {"max_items": 5})
    pep.publish(OWNER, "n", item("same", "1"))
    pep.publish(OWNER, "n", item("same", "2"))
    items = pep.get_items(OWNER, "n")
    assert len(items) == 2 and items[0].get("id") == "same"
    assert items[0][0].text == "2" and items[1].get("id")


def test_max_items_max_means_pep_max_items_and_more_is_refused():
    pep = service(max_items=3)
    pep.publish(OWNER, "n", item("0"), {"max_items": "max"})
    for number in range(1, 10):
        pep.publish(OWNER, "n", item(str(number)))
    assert [i.get("id") for i in pep.get_items(OWNER, "n")] == ["9", "8", "7"]
    with pytest.raises(StanzaError) as refused:
        handle_request(pep, OWNER, "set", publish_request(
            "m", item("a"), options=form(PUBLISH_OPTIONS, **{"pubsub#max_items": "4"})))
    assert conditions(refused.value) == ("not-acceptable", "invalid-options")
    # "max" and the number it stands for are the same precondition.
    pep.publish(OWNER, "n", item("x"), {"max_items": 3})


def test_items_by_id_and_by_max_items_newest_first():
    pep = service()
    pep.publish(OWNER, "n", item("a"), {"max_items": 10})
    pep.publish(OWNER, "n", item("b"))
    pep.publish(OWNER, "n", item("c"))
    result, _ = handle_request(pep, OWNER, "get", items_request("n", max_items=2))
    assert [i.get("id") for i in result.find(f"{{{NS}}}items")] == ["c", "b"]
    result, _ = handle_request(pep, OWNER, "get", items_request("n", "a", "gone"))
    assert [i.get("id") for i in result.find(f"{{{NS}}}items")] == ["a"]
    with pytest.raises(StanzaError) as missing:
        handle_request(pep, OWNER, "get", items_request("nothing"))
    assert missing.value.condition == "item-not-found"
    for bad in (0, -1):
        with pytest.raises(StanzaError) as refused:
            handle_request(pep, OWNER, "get", items_request("n", max_items=bad))
        assert refused.value.condition == "bad-request"


def test_publish_options_that_disagree_are_precondition_not_met():
    pep = service()
    pep.publish(OWNER, "bundle", item("1"), {"access_model": "open"})
    with pytest.raises(StanzaError) as refused:
        handle_request(pep, OWNER, "set", publish_request(
            "bundle", item("1"), options=form(PUBLISH_OPTIONS,
                                              **{"pubsub#access_model": "whitelist"})))
    assert conditions(refused.value) == ("conflict", "precondition-not-met")
    assert refused.value.extra.tag == f"{{{NS_ERRORS}}}precondition-not-met"
    handle_request(pep, OWNER, "set", publish_request(
        "bundle", item("2"), options=form(PUBLISH_OPTIONS, **{"pubsub#access_model": "open"})))
    assert pep.last_item("bundle").get("id") == "2"


@pytest.mark.parametrize("fields", [
    {"pubsub#no_such_option": "1"},
    {"pubsub#access_model": "everyone"},
    {"pubsub#persist_items": "maybe"},
    {"pubsub#max_items": "-1"},
    {"FORM_TYPE": NODE_CONFIG},
])
def test_bad_publish_options_are_refused_and_publish_nothing(fields):
    pep = service()
    with pytest.raises(StanzaError) as refused:
        handle_request(pep, OWNER, "set", publish_request(
            "n", item("a"), options=form(PUBLISH_OPTIONS, **fields)))
    assert conditions(refused.value) == ("not-acceptable", "invalid-options")
    assert pep.nodes == {}


def test_an_item_carries_exactly_one_payload():
    pep = service()
    for children in (0, 2):
        element = Element(f"{{{NS}}}item", {"id": "a"})
        for _ in range(children):
            SubElement(element, "{urn:example}x")
        with pytest.raises(StanzaError) as refused:
            pep.publish(OWNER, "n", element)
        assert conditions(refused.value) == (
            "bad-request", "payload-required" if children == 0 else "invalid-payload")
    assert pep.nodes == {}


def test_named_limits_refuse_large_items_long_names_and_too_many_nodes():
    pep = service(item_size=1000, max_nodes=2)
    with pytest.raises(StanzaError) as big:
        pep.publish(OWNER, "n", item("a", "x" * 1000))
    assert conditions(big.value) == ("not-acceptable", "payload-too-big")
    with pytest.raises(StanzaError) as long_name:
        pep.publish(OWNER, "n" * (MAX_NODE_NAME_LENGTH + 1), item("a"))
    assert long_name.value.condition == "not-acceptable"
    pep.publish(OWNER, "one", item("a"))
    pep.publish(OWNER, "two", item("a"))
    with pytest.raises(StanzaError) as many:
        pep.publish(OWNER, "three", item("a"))
    assert many.value.condition == "resource-constraint"
    assert set(pep.nodes) == {"one", "two"}


def test_access_models():
    pep = service()
    pep.publish(OWNER, "presence", item("a"))
    pep.publish(OWNER, "open", item("a"), {"access_model": "open"})
    pep.publish(OWNER, "roster", item("a"), {"access_model": "roster",
                                             "roster_groups_allowed": ["family"]})
    pep.publish(OWNER, "whitelist", item("a"), {"access_model": "whitelist"})
    readable = {name: [who for who in (OWNER, FRIEND + "/r", STRANGER)
                       if pep.may_read(who, pep.nodes[name])] for name in pep.nodes}
    assert readable == {"presence": [OWNER, FRIEND + "/r"],
                        "open": [OWNER, FRIEND + "/r", STRANGER],
                        "roster": [OWNER, FRIEND + "/r"],
                        "whitelist": [OWNER]}
    with pytest.raises(StanzaError) as closed:
        pep.get_items(STRANGER, "whitelist")
    assert conditions(closed.value) == ("not-allowed", "closed-node")
    with pytest.raises(StanzaError) as presence:
        pep.get_items(STRANGER, "presence")
    assert conditions(presence.value) == ("not-authorized", "presence-subscription-required")


def test_only_the_owner_publishes_configures_and_sets_affiliations():
    pep = service()
    pep.publish(OWNER, "n", item("a"), {"access_model": "whitelist"})
    for attempt in (lambda: pep.publish(FRIEND, "n", item("b")),
                    lambda: pep.publish(FRIEND, "new", item("b")),
                    lambda: pep.configure(FRIEND, "n", {"access_model": "open"}),
                    lambda: pep.set_affiliations(FRIEND, "n", {FRIEND: "member"}),
                    lambda: pep.retract(FRIEND, "n", "a")):
        with pytest.raises(StanzaError) as refused:
            attempt()
        assert refused.value.condition == "forbidden"
    pep.set_affiliations(OWNER, "n", {STRANGER: "member"})
    assert pep.get_items(STRANGER + "/x", "n")[0].get("id") == "a"
    pep.set_affiliations(OWNER, "n", {STRANGER: "outcast"})
    assert not pep.may_read(STRANGER, pep.nodes["n"])
    pep.set_affiliations(OWNER, "n", {STRANGER: "publisher"})
    pep.publish(STRANGER, "n", item("b"))


def test_a_whitelist_is_bounded_over_many_requests():
    pep = service(affiliations=100)
    pep.publish(OWNER, "n", item("a"), {"access_model": "whitelist"})
    pubsub = Element(f"{{{NS_OWNER}}}pubsub")
    batch = SubElement(pubsub, f"{{{NS_OWNER}}}affiliations", {"node": "n"})
    for number in range(60):
        SubElement(batch, f"{{{NS_OWNER}}}affiliation",
                   {"jid": f"user{number}@example.net", "affiliation": "member"})
    handle_request(pep, OWNER, "set", pubsub)
    for entry in batch:
        entry.set("jid", "other-" + entry.get("jid"))
    with pytest.raises(StanzaError) as refused:
        handle_request(pep, OWNER, "set", pubsub)
    assert refused.value.condition == "resource-constraint"
    assert len(pep.nodes["n"].affiliations) == 60


def test_retract_purge_and_delete_notify_and_persist():
    store = MemoryNodeStore()
    pep = service(store)
    pep.publish(OWNER, "n", item("a"), {"max_items": 5})
    pep.publish(OWNER, "n", item("b"))
    retract = Element(f"{{{NS}}}pubsub")
    SubElement(SubElement(retract, f"{{{NS}}}retract", {"node": "n"}), f"{{{NS}}}item",
               {"id": "a"})
    _, notifications = handle_request(pep, OWNER, "set", retract)
    message = event_message(OWNER, FRIEND, notifications[0])
    assert message.find(f".//{{{NS_EVENT}}}retract").get("id") == "a"
    reloaded = service(store)
    assert [i.get("id") for i in reloaded.get_items(OWNER, "n")] == ["b"]
    assert reloaded.nodes["n"].config["max_items"] == 5
    purge = Element(f"{{{NS_OWNER}}}pubsub")
    SubElement(purge, f"{{{NS_OWNER}}}purge", {"node": "n"})
    _, notifications = handle_request(pep, OWNER, "set", purge)
    assert notifications[0].kind == "purge" and store.items.get("n") is None
    delete = Element(f"{{{NS_OWNER}}}pubsub")
    SubElement(delete, f"{{{NS_OWNER}}}delete", {"node": "n"})
    _, notifications = handle_request(pep, OWNER, "set", delete)
    assert notifications[0].kind == "delete" and store.nodes == {} and pep.nodes == {}


def test_configure_round_trip_and_unknown_fields():
    pep = service()
    pep.publish(OWNER, "n", item("a"))
    get = Element(f"{{{NS_OWNER}}}pubsub")
    SubElement(get, f"{{{NS_OWNER}}}configure", {"node": "n"})
    result, _ = handle_request(pep, OWNER, "get", get)
    fields = {f.get("var") for f in result.iter(f"{{{ns.DATA_FORMS}}}field")}
    assert {"pubsub#access_model", "pubsub#max_items", "pubsub#persist_items"} <= fields
    get[0].append(form(NODE_CONFIG, **{"pubsub#access_model": "open"}))
    handle_request(pep, OWNER, "set", get)
    assert pep.nodes["n"].config["access_model"] == "open"
    get[0][0].append(form(NODE_CONFIG, **{"pubsub#whatever": "1"})[1])
    with pytest.raises(StanzaError) as refused:
        handle_request(pep, OWNER, "set", get)
    assert conditions(refused.value) == ("not-acceptable", "invalid-options")


def test_recipients_are_subscribers_and_interested_contacts_who_may_read():
    pep = service()
    pep.publish(OWNER, "n", item("a"))
    [last] = pep.subscribe(FRIEND, "n", FRIEND)  # the last item, for the new subscriber
    assert (last.to, last.item_id) == (FRIEND, "a")
    interested = [OWNER + "/phone", STRANGER + "/pc", FRIEND + "/laptop"]
    assert pep.recipients(pep.nodes["n"], interested) == [
        FRIEND, OWNER + "/phone", FRIEND + "/laptop"]
    with pytest.raises(StanzaError):
        pep.subscribe(STRANGER, "n", STRANGER)
