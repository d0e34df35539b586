"""XEP-0030 service discovery on the server, its users and its components (mod_disco)."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest, LocalHost
from xmpp.moduleapi import ModuleContext

INFO = f"{{{ns.DISCO_INFO}}}query"
ITEMS = f"{{{ns.DISCO_ITEMS}}}query"


def setup(m: ModuleContext) -> None:
    m.add_feature(ns.DISCO_INFO)
    m.add_feature(ns.DISCO_ITEMS)
    m.hook_iq("get", INFO, lambda request: host_info(request))
    extra_items = configured_items(m)
    m.hook_iq("get", ITEMS, lambda request: host_items(m, request, extra_items))
    m.hook_iq("get", INFO, lambda request: account_info(m, request), target="bare")
    m.hook_iq("get", ITEMS, lambda request: account_items(m, request), target="bare")


def info_query(host: LocalHost, node: str | None = None) -> Element:
    """disco#info of a host: its identities, features and XEP-0128 forms."""
    query = Element(INFO)
    if node:
        query.set("node", node)
    if not host.is_component:
        SubElement(query, f"{{{ns.DISCO_INFO}}}identity",
                   {"category": "server", "type": "im", "name": "Vireo"})
    for identity in host.identities:
        attrs = {"category": identity.category, "type": identity.type}
        if identity.name:
            attrs["name"] = identity.name
        SubElement(query, f"{{{ns.DISCO_INFO}}}identity", attrs)
    for var in host.features:
        SubElement(query, f"{{{ns.DISCO_INFO}}}feature", {"var": var})
    query.extend(host.extensions)
    return query


def host_info(request: IqRequest) -> Element:
    if request.payload.get("node"):
        raise StanzaError("item-not-found")
    return info_query(request.host)


def configured_items(m: ModuleContext) -> list[tuple[str, str | None]]:
    """`disco_items = { { "jid", "name" }, ... }`; like Prosody, one malformed
    entry voids the whole option (with an error in the log)."""
    items: list[tuple[str, str | None]] = []
    for entry in m.config.get_list("disco_items", []):
        if not isinstance(entry, list) or not entry or not isinstance(entry[0], str) \
                or (len(entry) > 1 and not isinstance(entry[1], str)):
            m.log.error("option disco_items is malformed: %r", entry)
            return []
        items.append((entry[0], entry[1] if len(entry) > 1 else None))
    return items


def host_items(m: ModuleContext, request: IqRequest,
               extra_items: list[tuple[str, str | None]]) -> Element:
    if request.payload.get("node"):
        raise StanzaError("item-not-found")
    host = request.host
    query = Element(ITEMS)
    for name, other in m.hosts().items():
        # As in Prosody, every host (components included) whose name is this
        # host's with one more label in front is listed, unless disco_hidden.
        if name.partition(".")[2] == host.name \
                and other.config.options.get("disco_hidden") in (None, False):
            item = SubElement(query, f"{{{ns.DISCO_ITEMS}}}item", {"jid": name})
            title = other.config.options.get("name")
            if title:
                item.set("name", str(title))
    for jid, title in extra_items:
        item = SubElement(query, f"{{{ns.DISCO_ITEMS}}}item", {"jid": jid})
        if title:
            item.set("name", title)
    return query


def account_info(m: ModuleContext, request: IqRequest) -> Element:
    to = request.stanza.get("to", "")
    local = to.split("@", 1)[0]
    if not m.users.exists(local):
        raise StanzaError("service-unavailable")
    node = request.payload.get("node")
    if node:
        # Prosody's event: a module that knows the node (PEP) fills the answer.
        query = Element(INFO, {"node": node})
        if not m.fire("account-disco-info-node", origin=request.origin,
                      stanza=request.stanza, node=node, reply=query):
            raise StanzaError("item-not-found")
        return query
    query = Element(INFO)
    SubElement(query, f"{{{ns.DISCO_INFO}}}identity",
               {"category": "account", "type": "registered"})
    for feature in (ns.DISCO_INFO, ns.DISCO_ITEMS):  # account_items answers the latter
        SubElement(query, f"{{{ns.DISCO_INFO}}}feature", {"var": feature})
    # Prosody's account-disco-info: modules add what accounts offer (MAM, PEP, push...).
    m.fire("account-disco-info", origin=request.origin, stanza=request.stanza, reply=query)
    return query


def add_account_feature(m: ModuleContext, var: str) -> None:
    """Advertise `var` in the disco#info of every account of the host."""
    def add(event: Any) -> None:
        SubElement(event.reply, f"{{{ns.DISCO_INFO}}}feature", {"var": var})

    m.hook("account-disco-info", add)


def account_items(m: ModuleContext, request: IqRequest) -> Element:
    if request.payload.get("node"):
        raise StanzaError("item-not-found")
    query = Element(ITEMS)
    m.fire("account-disco-items", origin=request.origin, stanza=request.stanza, reply=query)
    return query
