"""XEP-0060 publish-subscribe as pure rules: the nodes, items, configuration,
access models and affiliations of one service (the idea of Prosody's
util/pubsub, as mod_pep uses it).

No sockets and no storage engine: a `Service` keeps its nodes in memory and
writes through a `NodeStore`; `handle_request` turns a <pubsub/> payload into
a result and the notifications it calls for, which the caller addresses and
sends. Every input a client controls is bounded by a named limit (`Limits`).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.jid import InvalidJID, parse_jid
from xmpp.stanza import serialize

NS = "http://jabber.org/protocol/pubsub"
NS_OWNER = NS + "#owner"
NS_EVENT = NS + "#event"
NS_ERRORS = NS + "#errors"
NODE_CONFIG = NS + "#node_config"
PUBLISH_OPTIONS = NS + "#publish-options"
FORM = f"{{{ns.DATA_FORMS}}}x"
FIELD = f"{{{ns.DATA_FORMS}}}field"
VALUE = f"{{{ns.DATA_FORMS}}}value"

# Longest node name: the archive of a node's items is the store "pep_<node>"
# (a 255-character column).
MAX_NODE_NAME_LENGTH = 250
# Longest item id (a JID, for XEP-0402 bookmarks).
MAX_ITEM_ID_LENGTH = 3071

ACCESS_MODELS = ("open", "presence", "roster", "whitelist")
AFFILIATIONS = ("owner", "publisher", "member", "none", "outcast")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one service accepts (options pep_max_items, pep_max_nodes,
    pep_max_item_size, pep_max_affiliations)."""

    max_items: int = 256  # items a node keeps; also what max_items="max" means
    max_nodes: int = 256  # nodes per service
    item_size: int = 128 * 1024  # bytes of one serialized <item/>
    affiliations: int = 1000  # affiliations (a whitelist) and subscriptions per node


# mod_pep's node_defaults, on top of util/pubsub's defaults.
DEFAULT_CONFIG: dict[str, Any] = {
    "title": "",
    "max_items": 1,
    "persist_items": True,
    "access_model": "presence",
    "roster_groups_allowed": [],
    "send_last_published_item": "on_sub_and_presence",
    "notify_retract": True,
    "notify_delete": True,
    "deliver_payloads": True,
    "publish_model": "publishers",
    "notification_type": "headline",
}


def _boolean(text: str) -> bool:
    # XEP-0004 says "1"/"true"; some clients (slixmpp's XEP-0223) send "True".
    if text.lower() in ("1", "true"):
        return True
    if text.lower() in ("0", "false"):
        return False
    raise ValueError("not a boolean")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"one of {', '.join(allowed)}")
        return text
    return parse


def _max_items(text: str) -> int | str:
    if text == "max":
        return "max"
    number = int(text)
    if number < 1:
        raise ValueError("at least 1")
    return number


# form field -> (config key, parser of one value or None for a list of texts)
CONFIG_FIELDS: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "pubsub#title": ("title", str),
    "pubsub#max_items": ("max_items", _max_items),
    "pubsub#persist_items": ("persist_items", _boolean),
    "pubsub#access_model": ("access_model", _choice(*ACCESS_MODELS)),
    "pubsub#roster_groups_allowed": ("roster_groups_allowed", None),
    "pubsub#send_last_published_item": ("send_last_published_item", _choice(*SEND_LAST)),
    "pubsub#notify_retract": ("notify_retract", _boolean),
    "pubsub#notify_delete": ("notify_delete", _boolean),
    "pubsub#deliver_payloads": ("deliver_payloads", _boolean),
    "pubsub#publish_model": ("publish_model", _choice("publishers")),
    "pubsub#notification_type": ("notification_type", _choice("headline", "normal")),
}
FIELD_OF = {key: var for var, (key, _parse) in CONFIG_FIELDS.items()}


def pubsub_error(condition: str, pubsub_condition: str | None = None,
                 text: str | None = None, **attrs: str) -> StanzaError:
    """A stanza error with XEP-0060's application condition."""
    extra = Element(f"{{{NS_ERRORS}}}{pubsub_condition}", attrs) if pubsub_condition else None
    return StanzaError(condition, text, extra=extra)


def parse_form(form: Element, form_type: str, limits: Limits) -> dict[str, Any]:
    """The config keys a submitted form sets. Unknown fields and bad values are
    refused with not-acceptable (XEP-0060 8.2.5: invalid-options)."""
    if form.get("type", "submit") not in ("submit", "result"):
        raise pubsub_error("bad-request", "invalid-options", "The form must be submitted")
    values: dict[str, Any] = {}
    for child in form.findall(FIELD):
        var = child.get("var", "")
        texts = [value.text or "" for value in child.findall(VALUE)]
        if var == "FORM_TYPE":
            if texts and texts[0] != form_type:
                raise pubsub_error("not-acceptable", "invalid-options",
                                   f"FORM_TYPE must be {form_type}")
            continue
        known = CONFIG_FIELDS.get(var)
        if known is None:
            raise pubsub_error("not-acceptable", "invalid-options", f"Unknown field {var[:100]}")
        key, parse = known
        try:
            if parse is None:
                if len(texts) > limits.affiliations:
                    raise ValueError(f"at most {limits.affiliations} values")
                values[key] = texts
            else:
                if len(texts) != 1:
                    raise ValueError("exactly one value")
                values[key] = parse(texts[0])
        except ValueError as error:
            raise pubsub_error("not-acceptable", "invalid-options",
                               f"{var}: {error}") from error
    if "max_items" in values and values["max_items"] != "max" \
            and values["max_items"] > limits.max_items:
        raise pubsub_error("not-acceptable", "invalid-options",
                           f"pubsub#max_items: at most {limits.max_items}")
    return values


def config_form(config: dict[str, Any], limits: Limits) -> Element:
    """The node configuration form (XEP-0060 8.2.1)."""
    form = Element(FORM, {"type": "form"})
    _form_field(form, "FORM_TYPE", [NODE_CONFIG], "hidden")
    for var, (key, parse) in CONFIG_FIELDS.items():
        value = config[key]
        if parse is None:
            _form_field(form, var, list(value), "text-multi")
        elif isinstance(value, bool):
            _form_field(form, var, ["1" if value else "0"], "boolean")
        else:
            _form_field(form, var, [str(value)], "text-single")
    return form


def _form_field(form: Element, var: str, values: list[str], kind: str) -> None:
    element = SubElement(form, FIELD, {"var": var, "type": kind})
    for value in values:
        SubElement(element, VALUE).text = value


@dataclass(slots=True)
class Node:
    name: str
    config: dict[str, Any]
    affiliations: dict[str, str] = field(default_factory=dict)  # bare JID -> affiliation
    subscribers: set[str] = field(default_factory=set)  # JIDs with a subscription
    # id -> item, oldest first; None until read from the store.
    items: OrderedDict[str, Element] | None = None

    def data(self) -> dict[str, Any]:
        """What the NodeStore keeps (Prosody's shape)."""
        return {"name": self.name, "config": self.config, "affiliations": self.affiliations,
                "subscribers": sorted(self.subscribers)}


class NodeStore(Protocol):
    """Where a service keeps its nodes and their items."""

    def load_nodes(self) -> dict[str, dict[str, Any]]: ...
    def save_node(self, name: str, data: dict[str, Any]) -> None: ...
    def delete_node(self, name: str) -> None: ...
    def load_items(self, name: str, limit: int) -> list[Element]: ...  # oldest first
    # Add (or replace) an item and drop the `evicted` ones, as one write.
    def add_item(self, name: str, item_id: str, item: Element,
                 evicted: Iterable[str] = ()) -> None: ...
    def remove_items(self, name: str, ids: Iterable[str] | None) -> None: ...  # None: all


class MemoryNodeStore:
    """A NodeStore in dicts (unit tests, and nodes that do not persist items)."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.items: dict[str, OrderedDict[str, Element]] = {}

    def load_nodes(self) -> dict[str, dict[str, Any]]:
        return dict(self.nodes)

    def save_node(self, name: str, data: dict[str, Any]) -> None:
        self.nodes[name] = data

    def delete_node(self, name: str) -> None:
        self.nodes.pop(name, None)
        self.items.pop(name, None)

    def load_items(self, name: str, limit: int) -> list[Element]:
        return list(self.items.get(name, {}).values())[-limit:]

    def add_item(self, name: str, item_id: str, item: Element,
                 evicted: Iterable[str] = ()) -> None:
        items = self.items.setdefault(name, OrderedDict())
        items.pop(item_id, None)
        items[item_id] = item
        for old_id in evicted:
            items.pop(old_id, None)

    def remove_items(self, name: str, ids: Iterable[str] | None) -> None:
        if ids is None:
            self.items.pop(name, None)
            return
        for item_id in ids:
            self.items.get(name, {}).pop(item_id, None)


@dataclass(frozen=True, slots=True)
class Contacts:
    """What the owner's roster says of another JID, for the access models."""

    subscribed: Callable[[str], bool]  # has a presence subscription to the owner
    groups: Callable[[str], Iterable[str]]  # the roster groups the owner put it in


@dataclass(frozen=True, slots=True)
class Notification:
    """An event to send to those who may read `node`: "items" (with `item`),
    "retract" (with `item_id`), "purge" or "delete"."""

    kind: str
    node: Node
    item: Element | None = None
    item_id: str | None = None
    to: str | None = None  # for this JID only (the last item for a new subscriber)


def bare_of(jid: str) -> str:
    try:
        return str(parse_jid(jid).bare)
    except InvalidJID as error:
        raise StanzaError("jid-malformed") from error


class Service:
    """The nodes of one owner (a PEP account)."""

    def __init__(self, owner: str, store: NodeStore, contacts: Contacts,
                 limits: Limits | None = None) -> None:
        self.owner = owner  # bare JID
        self.store = store
        self.contacts = contacts
        self.limits = limits or Limits()
        self.nodes: dict[str, Node] = {}
        for name, data in store.load_nodes().items():
            config = dict(DEFAULT_CONFIG, **data.get("config", {}))
            self.nodes[name] = Node(name, config, dict(data.get("affiliations", {})),
                                    set(data.get("subscribers", ())))

    # -- who may do what ------------------------------------------------------------

    def affiliation(self, jid: str, node: Node | None) -> str:
        return self._affiliation(bare_of(jid), node)

    def _affiliation(self, bare: str, node: Node | None) -> str:
        if bare == self.owner:
            return "owner"
        return node.affiliations.get(bare, "none") if node is not None else "none"

    def may_read(self, jid: str, node: Node, contacts: Contacts | None = None) -> bool:
        """Whether `jid` may see the node's items (XEP-0060 4.5 access models);
        `contacts` stands in for the service's own (e.g. one roster snapshot)."""
        bare = bare_of(jid)  # once: a broadcast asks this for every recipient
        affiliation = self._affiliation(bare, node)
        if affiliation == "outcast":
            return False
        if affiliation != "none":
            return True
        model = node.config["access_model"]
        if model == "open":
            return True
        contacts = contacts or self.contacts
        if model == "presence":
            return contacts.subscribed(bare)
        if model == "roster":
            allowed = set(node.config["roster_groups_allowed"])
            return bool(allowed.intersection(contacts.groups(bare)))
        return False

    def _may_publish(self, jid: str, node: Node | None) -> bool:
        return self.affiliation(jid, node) in ("owner", "publisher")

    def _node(self, name: str | None) -> Node:
        if not name:
            raise pubsub_error("bad-request", "nodeid-required")
        node = self.nodes.get(name)
        if node is None:
            raise StanzaError("item-not-found")
        return node

    def _readable(self, actor: str, name: str | None) -> Node:
        node = self._node(name)
        if not self.may_read(actor, node):
            # XEP-0060 6.5.9: not subscribed or not allowed.
            model = node.config["access_model"]
            if model == "presence":
                raise pubsub_error("not-authorized", "presence-subscription-required")
            if model == "roster":
                raise pubsub_error("not-authorized", "not-in-roster-group")
            raise pubsub_error("not-allowed", "closed-node")
        return node

    def owned(self, actor: str, name: str | None) -> Node:
        node = self._node(name)
        if self.affiliation(actor, node) != "owner":
            raise StanzaError("forbidden")
        return node

    # -- nodes -------------------------------------------------------------------------

    def _check_name(self, name: str | None) -> str:
        if not name:
            raise pubsub_error("bad-request", "nodeid-required")
        if len(name) > MAX_NODE_NAME_LENGTH:
            raise StanzaError("not-acceptable",
                              f"Node names are at most {MAX_NODE_NAME_LENGTH} characters")
        return name

    def create(self, actor: str, name: str | None, config: dict[str, Any] | None = None) -> Node:
        name = self._check_name(name)
        if self.affiliation(actor, None) != "owner":
            raise StanzaError("forbidden")
        if name in self.nodes:
            raise StanzaError("conflict", "The node exists")
        if len(self.nodes) >= self.limits.max_nodes:
            raise StanzaError("resource-constraint",
                              f"At most {self.limits.max_nodes} nodes per account")
        node = Node(name, dict(DEFAULT_CONFIG, **(config or {})), items=OrderedDict())
        self.nodes[name] = node
        self.store.save_node(name, node.data())
        return node

    def delete(self, actor: str, name: str | None) -> Notification:
        node = self.owned(actor, name)
        del self.nodes[node.name]
        self.store.delete_node(node.name)
        return Notification("delete", node)

    def configure(self, actor: str, name: str | None, values: dict[str, Any]) -> None:
        node = self.owned(actor, name)
        node.config.update(values)
        self._trim(node)
        self.store.save_node(node.name, node.data())

    def max_items(self, node: Node) -> int:
        value = node.config["max_items"]
        return self.limits.max_items if value == "max" else min(value, self.limits.max_items)

    # -- items ---------------------------------------------------------------------

    def items_of(self, node: Node) -> OrderedDict[str, Element]:
        if node.items is None:
            loaded = self.store.load_items(node.name, self.max_items(node)) \
                if node.config["persist_items"] else []
            node.items = OrderedDict((item.get("id", ""), item) for item in loaded)
        return node.items

    def publish(self, actor: str, name: str | None, item: Element,
                options: dict[str, Any] | None = None) -> Notification:
        """Add or replace an item, creating the node (with `options` as its
        configuration) if need be (XEP-0060 7.1, 7.1.5)."""
        name = self._check_name(name)
        node = self.nodes.get(name)
        if not self._may_publish(actor, node):
            raise StanzaError("forbidden")
        if len(item) == 0:
            raise pubsub_error("bad-request", "payload-required")  # XEP-0060 7.1.3.6
        if len(item) > 1:
            raise pubsub_error("bad-request", "invalid-payload", "One payload per item")
        item_id = item.get("id") or secrets.token_hex(8)
        if len(item_id) > MAX_ITEM_ID_LENGTH:
            raise StanzaError("not-acceptable",
                              f"Item ids are at most {MAX_ITEM_ID_LENGTH} characters")
        stored = Element(f"{{{NS}}}item", {"id": item_id})
        stored.extend(list(item))
        size = len(serialize(stored, NS).encode())
        if size > self.limits.item_size:
            raise pubsub_error("not-acceptable", "payload-too-big",
                               f"Items are at most {self.limits.item_size} bytes")
        if node is None:
            node = self.create(actor, name, options)
        elif options:
            self._check_preconditions(node, options)
        items = self.items_of(node)
        items.pop(item_id, None)
        items[item_id] = stored
        evicted = self._evict(node)
        if node.config["persist_items"]:
            self.store.add_item(node.name, item_id, stored, evicted)
        return Notification("items", node, item=stored, item_id=item_id)

    def _check_preconditions(self, node: Node, options: dict[str, Any]) -> None:
        for key, wanted in options.items():
            have = node.config[key]
            if key == "max_items":
                have, wanted = (self.limits.max_items if value == "max" else value
                                for value in (have, wanted))
            if have != wanted:
                raise pubsub_error("conflict", "precondition-not-met",
                                   f"{FIELD_OF[key]} is {node.config[key]}")

    def _evict(self, node: Node) -> list[str]:
        """Drop the oldest items beyond max_items from memory; their ids."""
        items = self.items_of(node)
        excess = len(items) - self.max_items(node)
        return [items.popitem(last=False)[0] for _ in range(excess)]

    def _trim(self, node: Node) -> None:
        evicted = self._evict(node)
        if evicted and node.config["persist_items"]:
            self.store.remove_items(node.name, evicted)

    def retract(self, actor: str, name: str | None, item_id: str | None) -> Notification:
        node = self._node(name)
        if not self._may_publish(actor, node):
            raise StanzaError("forbidden")
        if not item_id:
            raise pubsub_error("bad-request", "item-required")
        items = self.items_of(node)
        if item_id not in items:
            raise StanzaError("item-not-found")
        del items[item_id]
        self.store.remove_items(node.name, [item_id])
        return Notification("retract", node, item_id=item_id)

    def purge(self, actor: str, name: str | None) -> Notification:
        node = self.owned(actor, name)
        self.items_of(node).clear()
        self.store.remove_items(node.name, None)
        return Notification("purge", node)

    def get_items(self, actor: str, name: str | None, ids: list[str] | None = None,
                  max_items: int | None = None) -> list[Element]:
        """Items by id, else the newest `max_items` (all kept), newest first."""
        node = self._readable(actor, name)
        items = self.items_of(node)
        if ids:
            return [items[item_id] for item_id in ids if item_id in items]
        newest = list(reversed(items.values()))
        return newest if max_items is None else newest[:max_items]

    def last_item(self, name: str) -> Element | None:
        node = self.nodes.get(name)
        if node is None:
            return None
        items = self.items_of(node)
        return next(reversed(items.values())) if items else None

    # -- affiliations and subscriptions ---------------------------------------------

    def set_affiliations(self, actor: str, name: str | None,
                         changes: dict[str, str]) -> None:
        node = self.owned(actor, name)
        updated = dict(node.affiliations)
        for jid, affiliation in changes.items():
            if affiliation not in AFFILIATIONS:
                raise StanzaError("bad-request", f"Unknown affiliation {affiliation[:20]}")
            if jid == self.owner:
                if affiliation != "owner":
                    raise StanzaError("not-acceptable", "The owner stays the owner")
                continue
            if affiliation == "none":
                updated.pop(jid, None)
            else:
                updated[jid] = affiliation
        if len(updated) > self.limits.affiliations:
            raise StanzaError("resource-constraint",
                              f"At most {self.limits.affiliations} affiliations per node")
        node.affiliations = updated
        self.store.save_node(node.name, node.data())

    def subscribe(self, actor: str, name: str | None, jid: str) -> list[Notification]:
        """Subscribe `jid`; the node's last item for it, if the node sends it on
        subscription (send_last_published_item)."""
        node = self._readable(actor, name)
        if bare_of(jid) != bare_of(actor):
            raise pubsub_error("bad-request", "invalid-jid")
        if jid not in node.subscribers:
            if len(node.subscribers) >= self.limits.affiliations:
                raise StanzaError("resource-constraint",
                                  f"At most {self.limits.affiliations} subscriptions per node")
            node.subscribers.add(jid)
            self.store.save_node(node.name, node.data())
        last = self.last_item(node.name)
        if last is None or node.config["send_last_published_item"] == "never":
            return []
        return [Notification("items", node, item=last, item_id=last.get("id"), to=jid)]

    def unsubscribe(self, actor: str, name: str | None, jid: str) -> None:
        node = self._node(name)
        if bare_of(jid) != bare_of(actor) and self.affiliation(actor, node) != "owner":
            raise pubsub_error("bad-request", "invalid-jid")
        if jid not in node.subscribers:
            raise pubsub_error("unexpected-request", "not-subscribed")
        node.subscribers.discard(jid)
        self.store.save_node(node.name, node.data())

    def recipients(self, node: Node, candidates: Iterable[str],
                   contacts: Contacts | None = None) -> list[str]:
        """Of `candidates` and the node's subscribers, those who may read it."""
        wanted = dict.fromkeys([*node.subscribers, *candidates])
        return [jid for jid in wanted if self.may_read(jid, node, contacts)]


# -- the wire --------------------------------------------------------------------------

def _tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def _options(parent: Element, child: str, form_type: str, limits: Limits) -> dict[str, Any]:
    element = parent.find(_tag(NS, child)) if parent.tag == _tag(NS, "pubsub") else None
    form = element.find(FORM) if element is not None else None
    return parse_form(form, form_type, limits) if form is not None else {}


def handle_request(service: Service, actor: str, iq_type: str,
                   payload: Element) -> tuple[Element | None, list[Notification]]:
    """Answer one <pubsub/> (or <pubsub xmlns='#owner'/>) request from `actor`:
    the result payload (or None) and the notifications it calls for.
    Raises StanzaError for an error reply."""
    if len(payload) == 0:
        raise StanzaError("bad-request", "An empty pubsub request")
    action = payload[0]
    verb = action.tag
    name = action.get("node")
    owner_ns = payload.tag == _tag(NS_OWNER, "pubsub")
    if iq_type == "set" and verb == _tag(NS, "publish"):
        items = action.findall(_tag(NS, "item"))
        if len(items) != 1:
            raise pubsub_error("bad-request", "invalid-payload", "Publish exactly one item")
        options = _options(payload, "publish-options", PUBLISH_OPTIONS, service.limits)
        notification = service.publish(actor, name, items[0], options)
        result = Element(_tag(NS, "pubsub"))
        published = SubElement(result, _tag(NS, "publish"), {"node": notification.node.name})
        SubElement(published, _tag(NS, "item"), {"id": notification.item_id or ""})
        return result, [notification]
    if iq_type == "set" and verb == _tag(NS, "retract"):
        item = action.find(_tag(NS, "item"))
        notification = service.retract(actor, name, item.get("id") if item is not None else None)
        notify = action.get("notify") in ("1", "true") or notification.node.config["notify_retract"]
        return None, [notification] if notify else []
    if iq_type == "get" and verb == _tag(NS, "items"):
        ids = [item.get("id", "") for item in action.findall(_tag(NS, "item"))]
        limit = action.get("max_items")
        try:
            max_items = int(limit) if limit is not None else None
        except ValueError as error:
            raise StanzaError("bad-request", "max_items must be a number") from error
        if max_items is not None and max_items < 1:
            raise StanzaError("bad-request", "max_items must be at least 1")
        items = service.get_items(actor, name, ids or None, max_items)
        result = Element(_tag(NS, "pubsub"))
        SubElement(result, _tag(NS, "items"), {"node": name or ""}).extend(items)
        return result, []
    if iq_type == "set" and verb == _tag(NS, "create"):
        options = _options(payload, "configure", NODE_CONFIG, service.limits)
        service.create(actor, name, options)
        return None, []
    if iq_type == "set" and verb == _tag(NS, "subscribe"):
        last = service.subscribe(actor, name, action.get("jid", ""))
        result = Element(_tag(NS, "pubsub"))
        SubElement(result, _tag(NS, "subscription"), {
            "node": name or "", "jid": action.get("jid", ""), "subscription": "subscribed"})
        return result, last
    if iq_type == "set" and verb == _tag(NS, "unsubscribe"):
        service.unsubscribe(actor, name, action.get("jid", ""))
        return None, []
    if owner_ns:
        return _owner_request(service, actor, iq_type, action, name)
    raise pubsub_error("feature-not-implemented", "unsupported",
                       feature=verb.rpartition("}")[2])


def _owner_request(service: Service, actor: str, iq_type: str, action: Element,
                   name: str | None) -> tuple[Element | None, list[Notification]]:
    verb = action.tag
    if verb == _tag(NS_OWNER, "configure"):
        if iq_type == "get":
            node = service.owned(actor, name)
            result = Element(_tag(NS_OWNER, "pubsub"))
            SubElement(result, _tag(NS_OWNER, "configure"), {"node": node.name}).append(
                config_form(node.config, service.limits))
            return result, []
        form = action.find(FORM)
        if form is None:
            raise StanzaError("bad-request", "A configuration form is missing")
        if form.get("type") == "cancel":
            return None, []
        service.configure(actor, name, parse_form(form, NODE_CONFIG, service.limits))
        return None, []
    if verb == _tag(NS_OWNER, "default") and iq_type == "get":
        result = Element(_tag(NS_OWNER, "pubsub"))
        SubElement(result, _tag(NS_OWNER, "default")).append(
            config_form(DEFAULT_CONFIG, service.limits))
        return result, []
    if verb == _tag(NS_OWNER, "delete") and iq_type == "set":
        notification = service.delete(actor, name)
        return None, [notification] if notification.node.config["notify_delete"] else []
    if verb == _tag(NS_OWNER, "purge") and iq_type == "set":
        return None, [service.purge(actor, name)]
    if verb == _tag(NS_OWNER, "affiliations"):
        if iq_type == "get":
            node = service.owned(actor, name)
            result = Element(_tag(NS_OWNER, "pubsub"))
            listing = SubElement(result, _tag(NS_OWNER, "affiliations"), {"node": node.name})
            SubElement(listing, _tag(NS_OWNER, "affiliation"),
                       {"jid": service.owner, "affiliation": "owner"})
            for jid, affiliation in node.affiliations.items():
                SubElement(listing, _tag(NS_OWNER, "affiliation"),
                           {"jid": jid, "affiliation": affiliation})
            return result, []
        entries = action.findall(_tag(NS_OWNER, "affiliation"))
        if len(entries) > service.limits.affiliations:
            raise StanzaError("resource-constraint",
                              f"At most {service.limits.affiliations} affiliations per node")
        changes = {bare_of(entry.get("jid", "")): entry.get("affiliation", "")
                   for entry in entries}
        service.set_affiliations(actor, name, changes)
        return None, []
    raise pubsub_error("feature-not-implemented", "unsupported",
                       feature=verb.rpartition("}")[2])


def event_message(sender: str, to: str, notification: Notification) -> Element:
    """The <message/> carrying `notification` (XEP-0060 7.1.2, 7.2.2, 8.4, 8.5)."""
    node = notification.node
    message = Element(f"{{{ns.CLIENT}}}message", {
        "from": sender, "to": to, "type": node.config["notification_type"],
        "id": secrets.token_hex(8)})
    event = SubElement(message, _tag(NS_EVENT, "event"))
    if notification.kind == "items":
        items = SubElement(event, _tag(NS_EVENT, "items"), {"node": node.name})
        assert notification.item is not None
        item = SubElement(items, _tag(NS_EVENT, "item"), {"id": notification.item_id or ""})
        if node.config["deliver_payloads"]:
            item.extend(list(notification.item))
    elif notification.kind == "retract":
        items = SubElement(event, _tag(NS_EVENT, "items"), {"node": node.name})
        SubElement(items, _tag(NS_EVENT, "retract"), {"id": notification.item_id or ""})
    else:
        SubElement(event, _tag(NS_EVENT, notification.kind), {"node": node.name})
    return message
