"""XEP-0163 Personal Eventing Protocol (Prosody's mod_pep): a pubsub service
(xmpp.pubsub) on every account, notifications to explicit subscribers and to
the contacts whose entity capabilities (XEP-0115) ask for `NODE+notify`, and
the last item of a node sent when a contact's interest starts.

Who wants what is learnt from presence, on the node of a cluster that routes
it (the sender's); so the nodes a bound resource wants are also kept on its
session, shared with the other nodes, where a publisher's contacts' sessions
(and the publisher's own) say it.

Storage as mod_pep's: node configurations in the map store "pep", items in
the archive store "pep_<node>", all rows of the account (they go with it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import caps
from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.lru import LRUCache
from xmpp.moduleapi import ModuleContext
from xmpp.pubsub import (
    NS,
    NS_OWNER,
    Contacts,
    Limits,
    Node,
    Notification,
    Service,
    event_message,
    handle_request,
)
from xmpp.stanza import SharedElement

# What the account's disco#info says it supports (XEP-0060 features).
FEATURES = (
    "access-open", "access-presence", "access-roster", "access-whitelist", "auto-create",
    "auto-subscribe", "config-node", "create-and-configure", "create-nodes", "delete-items",
    "delete-nodes", "filtered-notifications", "item-ids", "last-published",
    "modify-affiliations", "persistent-items", "presence-notifications",
    "presence-subscribe", "publish", "publish-options", "purge-nodes", "retract-items",
    "retrieve-affiliations", "retrieve-items", "subscribe",
)
ARCHIVE_KEY_LENGTH = 64  # the archive table's key column
DISCO_ID = "disco"  # mod_pep's id for caps queries, so results find their event


def setup(m: ModuleContext) -> None:
    pep = m.shared(f"pep:{m.host.name}", lambda: Pep(m))
    m.share_session_data(sorted, frozenset)
    for iq_type in ("get", "set"):
        for namespace in (NS, NS_OWNER):
            m.hook_iq(iq_type, f"{{{namespace}}}pubsub", pep.answer, target="bare")
    # Before mod_presence (priority 0), which ends these events.
    m.hook("presence/bare", lambda event: pep.contact_presence(event.stanza, event.to), 10)
    m.hook("pre-presence/bare", lambda event: pep.own_presence(event), 10)
    for target in ("bare", "self"):
        m.hook(f"iq-result/{target}/{DISCO_ID}", lambda event: pep.disco_result(event.stanza))
    m.hook("pre-resource-unbind", lambda event: pep.forget_recipient(event.session.jid))
    m.hook("account-disco-info", lambda event: pep.disco_info(event.reply))
    m.hook("account-disco-items", lambda event: pep.disco_items(event.stanza, event.reply))
    m.hook("account-disco-info-node", lambda event: pep.disco_node(event.stanza, event.node,
                                                                   event.reply))
    m.hook("user-deleted", lambda event: pep.forget_account(event.username))
    # Another node of a cluster wrote an account's nodes (before its notifications
    # of the change, which travel after this on the same stream).
    m.hook("cached-data-stale", pep.cache_stale)


def pep_of(m: ModuleContext) -> Pep:
    """The PEP services of this host, for modules built on them (bookmarks, vCard)."""
    m.depends("pep")
    return m.shared(f"pep:{m.host.name}", lambda: Pep(m))


class StoredNodes:
    """A pubsub NodeStore on the account's module stores (Prosody's layout)."""

    def __init__(self, m: ModuleContext, username: str) -> None:
        self._m = m
        self._user = username
        self._configs = m.open_store("pep", "map")

    def _items(self, name: str) -> Any:
        return self._m.open_store("pep_" + name, "archive")

    def load_nodes(self) -> dict[str, dict[str, Any]]:
        return self._configs.get_all(self._user)

    def save_node(self, name: str, data: dict[str, Any]) -> None:
        self._configs.set(self._user, name, data)

    def delete_node(self, name: str) -> None:
        self._configs.set(self._user, name, None)
        self._items(name).delete(self._user)

    def load_items(self, name: str, limit: int) -> list[Element]:
        records = self._items(name).find(self._user, limit=limit, reverse=True)
        return [record.value for record in reversed(records)]

    def add_item(self, name: str, item_id: str, item: Element,
                 evicted: Iterable[str] = ()) -> None:
        self._items(name).replace(self._user, item, datetime.fromtimestamp(self._m.now(), UTC),
                                  archive_key(item_id), [archive_key(old) for old in evicted])

    def remove_items(self, name: str, ids: Iterable[str] | None) -> None:
        archive = self._items(name)
        if ids is None:
            archive.delete(self._user)
        else:
            archive.delete(self._user, ids=[archive_key(item_id) for item_id in ids])


def archive_key(item_id: str) -> str:
    """The archive key of an item id (ids longer than the column are hashed)."""
    if len(item_id) <= ARCHIVE_KEY_LENGTH:
        return item_id
    return "sha1:" + hashlib.sha1(item_id.encode()).hexdigest()


class Pep:
    """Every account's service on one host, and who wants which notifications."""

    def __init__(self, m: ModuleContext) -> None:
        self.m = m
        config = m.config
        self.limits = Limits(
            max_items=config.get_int("pep_max_items", 256, min=1),
            max_nodes=config.get_int("pep_max_nodes", 256, min=1),
            item_size=config.get_int("pep_max_item_size", 128 * 1024, min=1024),
            affiliations=config.get_int("pep_max_affiliations", 1000, min=1))
        service_cache_size = config.get_int("pep_service_cache_size", 1000, min=1)
        self.services: LRUCache[str, Service] = LRUCache(service_cache_size)
        # username -> (roster version, contact -> roster item): a broadcast reads the
        # version, not the whole roster, while no write (each bumps it) has changed it.
        self.rosters: LRUCache[str, tuple[int, dict[str, Any]]] = LRUCache(service_cache_size)
        info_size = config.get_int("pep_info_cache_size", 10000, min=1)
        # username -> recipient (full JID) -> the nodes it wants notifications of
        self.recipients: LRUCache[str, dict[str, frozenset[str]]] = LRUCache(info_size)
        # caps hash -> the nodes its +notify features name
        self.hash_map: LRUCache[str, frozenset[str]] = LRUCache(info_size)

    # -- services -----------------------------------------------------------------------

    def service(self, username: str) -> Service:
        """The account's service; service-unavailable when there is no such account."""
        service = self.services.get(username)
        if service is None:
            if not self.m.users.exists(username):
                raise StanzaError("service-unavailable")
            service = Service(f"{username}@{self.m.host.name}", StoredNodes(self.m, username),
                              self._contacts(username), self.limits)
            self.services.set(username, service)
        return service

    def _contacts(self, username: str) -> Contacts:
        """Contacts read from the owner's roster one item at a time."""
        rosters = self.m.typed_store("rosters")
        host = self.m.host.name
        return _contacts_of(lambda bare: rosters.get_item(host, username, bare))

    def _roster(self, username: str) -> dict[str, Any]:
        """The owner's roster, loaded again only when its version has moved (any
        writer, in any process, bumps it). The version is read first, so a write
        between the two reads leaves a cache that the next version tells apart."""
        rosters = self.m.typed_store("rosters")
        host = self.m.host.name
        version = rosters.version(host, username)
        cached = self.rosters.get(username)
        if cached is not None and cached[0] == version:
            return cached[1]
        roster = rosters.get_roster(host, username)
        self.rosters.set(username, (version, roster))
        return roster

    def answer(self, request: IqRequest) -> Element | None:
        stanza = request.stanza
        username = _local(stanza.get("to", ""))
        service = self.service(username)
        result, notifications = handle_request(service, stanza.get("from", ""),
                                               request.type, request.payload)
        if request.type == "set":
            self.m.cached_data_changed(username)
        for notification in notifications:
            self.broadcast(username, service, notification)
        return result

    def publish(self, username: str, node: str, item_id: str, payload: Element,
                defaults: dict[str, Any] | None = None) -> None:
        """Publish as the account itself (for modules that keep data in PEP);
        `defaults` configure the node if it is new (mod_pep's _defaults_only)."""
        service = self.service(username)
        if node not in service.nodes:
            service.create(service.owner, node, defaults)
        item = Element(f"{{{NS}}}item", {"id": item_id})
        item.append(payload)
        notification = service.publish(service.owner, node, item)
        self.m.cached_data_changed(username)
        self.broadcast(username, service, notification)

    def retract(self, username: str, node: str, item_id: str) -> None:
        service = self.service(username)
        notification = service.retract(service.owner, node, item_id)
        self.m.cached_data_changed(username)
        if notification.node.config["notify_retract"]:
            self.broadcast(username, service, notification)

    def purge(self, username: str, node: str) -> None:
        service = self.service(username)
        if node in service.nodes:
            notification = service.purge(service.owner, node)
            self.m.cached_data_changed(username)
            self.broadcast(username, service, notification)

    def payload(self, username: str, node: str, actor: str,
                item_id: str | None = None) -> Element | None:
        """The payload of an item (by id, else the last one) that `actor` may
        read; None when there is none or it may not."""
        service = self.service(username)
        found = service.nodes.get(node)
        if found is None or not service.may_read(actor, found):
            return None
        items = service.items_of(found)
        item = items.get(item_id) if item_id else service.last_item(node)
        return item[0] if item is not None and len(item) else None

    def items(self, username: str, node: str) -> list[Element]:
        """Every item of the account's node, oldest first (for its own modules)."""
        service = self.service(username)
        found = service.nodes.get(node)
        return list(service.items_of(found).values()) if found is not None else []

    def broadcast(self, username: str, service: Service, notification: Notification) -> None:
        node = notification.node
        if notification.to is not None:
            self.m.route(event_message(service.owner, notification.to, notification))
            return
        interested = [jid for jid, nodes in (self.recipients.get(username) or {}).items()
                      if node.name in nodes]
        # One roster load for a broadcast to many.
        roster = self._roster(username)
        interested += self._sessions_wanting(username, node.name, roster)
        recipients = service.recipients(node, interested, _contacts_of(roster.get))
        if recipients:
            # One message, readdressed for each recipient (as Prosody's broadcaster).
            message = event_message(service.owner, recipients[0], notification)
            # The <event/> is serialized once for all of them.
            body = [SharedElement(child) for child in message]
            for jid in recipients:
                copy = Element(message.tag, dict(message.attrib, to=jid))
                copy[:] = body
                self.m.route(copy)
        if notification.kind in ("items", "retract"):
            # Prosody's service events, for modules that mirror a node (bookmarks).
            kind = "published" if notification.kind == "items" else "retracted"
            self.m.fire(f"item-{kind}/{node.name}", username=username, node=node.name,
                        item=notification.item, item_id=notification.item_id)

    def _sessions_wanting(self, username: str, node: str, roster: dict[str, Any]) -> list[str]:
        """The bound resources of the owner and of the contacts it lets see its
        presence whose sessions want `node`: with several nodes, also those on
        other nodes, whose presence went elsewhere."""
        contacts = [bare for bare, item in roster.items()
                    if item.subscription in ("from", "both")]
        wanting = []
        for bare in (f"{username}@{self.m.host.name}", *contacts):
            try:
                sessions = self.m.sessions(parse_jid(bare))
            except InvalidJID:
                continue
            wanting += [str(session.jid) for session in sessions.values()
                        if node in session.module_data.get(self.m.name, ())]
        return wanting

    # -- who wants notifications (XEP-0163 4.3, XEP-0115) ------------------------------

    def contact_presence(self, stanza: Element, user: JID) -> None:
        sender = stanza.get("from", "")
        username = user.local or ""
        kind = stanza.get("type")
        if kind is None:
            try:
                contact = str(parse_jid(sender).bare)
            except InvalidJID:
                return
            if self.m.users.exists(username) and self._contacts(username).subscribed(contact):
                self._caps_presence(stanza, username, sender, str(user))
        elif kind == "unavailable":
            self.update_interest(sender, username, frozenset())
        elif kind == "unsubscribe":
            self._forget_contact(username, sender)

    def own_presence(self, event: Any) -> None:
        if not event.to_self:
            return
        jid: JID = event.origin.jid
        kind = event.stanza.get("type")
        if kind is None:
            self._caps_presence(event.stanza, jid.local or "", str(jid), str(jid.bare))
        elif kind == "unavailable":
            self.update_interest(str(jid), jid.local or "", frozenset())

    def _caps_presence(self, stanza: Element, username: str, recipient: str,
                       user_bare: str) -> None:
        claim = caps.claimed(stanza)
        if claim is None:
            self.update_interest(recipient, username, frozenset())
            return
        key, query_node = claim
        nodes = self.hash_map.get(key)
        if nodes is not None:
            self.update_interest(recipient, username, nodes)
            return
        query = Element(f"{{{ns.CLIENT}}}iq", {"type": "get", "id": DISCO_ID,
                                               "from": user_bare, "to": recipient})
        SubElement(query, f"{{{ns.DISCO_INFO}}}query", {"node": query_node})
        self.m.route(query)

    def disco_result(self, stanza: Element) -> bool:
        query = stanza.find(f"{{{ns.DISCO_INFO}}}query")
        if query is None:
            return False
        try:
            user = parse_jid(stanza.get("to", "")).bare
            contact = parse_jid(stanza.get("from", ""))
        except InvalidJID:
            return True
        username = user.local or ""
        if contact.bare != user and not (self.m.users.exists(username) and self._contacts(
                username).subscribed(str(contact.bare))):
            return True  # nobody we asked
        nodes = caps.notify_nodes(query)
        self.hash_map.set(caps.verification_hash(query), nodes)
        self.update_interest(str(contact), username, nodes)
        return True

    def update_interest(self, recipient: str, username: str, nodes: frozenset[str], *,
                        session_too: bool = True) -> None:
        """Record which nodes `recipient` wants (and, `session_too`, on its session
        when it is bound); the last item of each new one goes to it at once
        (send_last_published_item = on_sub_and_presence)."""
        if session_too:
            self._note_on_session(recipient, nodes)
        by_recipient = self.recipients.get(username)
        current = by_recipient.get(recipient, frozenset()) if by_recipient else frozenset()
        if not nodes and not current:
            return
        if nodes:
            if by_recipient is None:
                by_recipient = {}
                self.recipients.set(username, by_recipient)
            by_recipient[recipient] = nodes
        elif by_recipient is not None:
            by_recipient.pop(recipient, None)
        fresh = nodes - current
        if not fresh:
            return
        service = self.service(username)
        for name in fresh:
            node = service.nodes.get(name)
            if node is not None and node.config["send_last_published_item"] == \
                    "on_sub_and_presence" and service.may_read(recipient, node):
                self._send_last(service, node, recipient)

    def _note_on_session(self, recipient: str, nodes: frozenset[str]) -> None:
        try:
            jid = parse_jid(recipient)
        except InvalidJID:
            return
        session = self.m.sessions(jid.bare).get(jid.resource) if jid.resource else None
        if session is None or session.module_data.get(self.m.name, frozenset()) == nodes:
            return
        session.module_data[self.m.name] = nodes
        self.m.session_data_changed(session)

    def _send_last(self, service: Service, node: Node, recipient: str) -> None:
        last = service.last_item(node.name)
        if last is not None:
            self.m.route(event_message(service.owner, recipient, Notification(
                "items", node, item=last, item_id=last.get("id"))))

    def forget_recipient(self, jid: JID | None) -> None:
        if jid is not None and jid.local:
            # Its session is going: nothing to tell the other nodes.
            self.update_interest(str(jid), jid.local, frozenset(), session_too=False)

    def _forget_contact(self, username: str, contact: str) -> None:
        by_recipient = self.recipients.get(username)
        if by_recipient:
            bare = _bare(contact)
            for recipient in [r for r in by_recipient if _bare(r) == bare]:
                del by_recipient[recipient]

    def cache_stale(self, event: Any) -> None:
        """`cached-data-stale`: another node wrote the account's nodes, read them
        afresh (`self.m` is whichever module made the shared Pep, and the one
        that announces changes)."""
        if event.module == self.m.name:
            self.services.pop(event.key)

    def forget_account(self, username: str) -> None:
        """The account is gone (its rows went with it): so are its services."""
        self.services.pop(username)
        self.recipients.pop(username)
        self.rosters.pop(username)

    # -- disco (XEP-0163 section 6) --------------------------------------------------------

    def disco_info(self, reply: Element) -> None:
        SubElement(reply, f"{{{ns.DISCO_INFO}}}identity", {"category": "pubsub", "type": "pep"})
        SubElement(reply, f"{{{ns.DISCO_INFO}}}feature", {"var": NS})
        for feature in FEATURES:
            SubElement(reply, f"{{{ns.DISCO_INFO}}}feature", {"var": f"{NS}#{feature}"})

    def disco_node(self, stanza: Element, name: str, reply: Element) -> bool:
        """disco#info of a node the asker may read: a pubsub leaf (XEP-0060 5.3)."""
        service = self.service(_local(stanza.get("to", "")))
        node = service.nodes.get(name)
        if node is None or not service.may_read(stanza.get("from", ""), node):
            return False
        SubElement(reply, f"{{{ns.DISCO_INFO}}}identity", {"category": "pubsub",
                                                           "type": "leaf"})
        SubElement(reply, f"{{{ns.DISCO_INFO}}}feature", {"var": NS})
        return True

    def disco_items(self, stanza: Element, reply: Element) -> None:
        username = _local(stanza.get("to", ""))
        service = self.service(username)
        asker = stanza.get("from", "")
        for name, node in service.nodes.items():
            if service.may_read(asker, node):
                attrs = {"jid": service.owner, "node": name}
                if node.config["title"]:
                    attrs["name"] = node.config["title"]
                SubElement(reply, f"{{{ns.DISCO_ITEMS}}}item", attrs)


def _contacts_of(item_of: Callable[[str], Any]) -> Contacts:
    """The access models' view of a roster, given how to find one item."""
    def subscribed(bare: str) -> bool:
        item = item_of(bare)
        return item is not None and item.subscription in ("from", "both")

    def groups(bare: str) -> list[str]:
        item = item_of(bare)
        return item.groups if item is not None else []

    return Contacts(subscribed, groups)


def _local(jid: str) -> str:
    try:
        return parse_jid(jid).local or ""
    except InvalidJID as error:
        raise StanzaError("jid-malformed") from error


def _bare(jid: str) -> str:
    return jid.partition("/")[0]
