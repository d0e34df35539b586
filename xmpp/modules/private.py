"""XEP-0049 private XML storage (Prosody's mod_private): one element per
name and namespace, kept in the map store "private" under `name:namespace`,
for the account itself only."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.moduleapi import ModuleContext
from xmpp.stanza import local_name, namespace

NS = "jabber:iq:private"
QUERY = f"{{{NS}}}query"
DEFAULT_MAX_ENTRIES = 1000


def setup(m: ModuleContext) -> None:
    m.add_feature(NS)
    store = m.open_store("private", "map")
    max_entries = m.config.get_int("private_max_entries", DEFAULT_MAX_ENTRIES, min=1)

    def answer(request: IqRequest) -> Element:
        element = stored_element(request.payload)
        username = request.origin.username
        key = storage_key(element)
        if request.type == "get":
            query = Element(QUERY)
            query.append(store.get(username, key) or element)
            return query
        if len(element) == 0 and not (element.text or "").strip():
            store.set(username, key, None)  # an empty element clears the entry
        else:
            if store.get(username, key) is None and len(store.get_all(username)) >= max_entries:
                raise StanzaError("resource-constraint",
                                  f"At most {max_entries} private XML entries")
            store.set(username, key, element)
        return Element(QUERY)

    for iq_type in ("get", "set"):
        m.hook_iq(iq_type, QUERY, answer, target="self")


def stored_element(query: Element) -> Element:
    """The one child of a private XML query, in a namespace clients may use."""
    if len(query) != 1:
        raise StanzaError("bad-request", "Exactly one child element")
    element = query[0]
    uri = namespace(element.tag)
    # XEP-0049 section 3: jabber:* namespaces (and none at all) are not for clients.
    if not uri or uri.startswith("jabber:"):
        raise StanzaError("not-acceptable", "Not a namespace for private XML")
    return element


def storage_key(element: Element) -> str:
    """mod_private's key: `name:namespace`."""
    return f"{local_name(element.tag)}:{namespace(element.tag)}"
