"""XEP-0115 entity capabilities: the hash a presence claims, and the one a
disco#info result gives (section 5.1), so a server can learn what a client
wants notifications for (`+notify` features, XEP-0163) once per hash."""

from __future__ import annotations

import base64
import hashlib
from xml.etree.ElementTree import Element

from xmpp import namespaces as ns

CAPS = "http://jabber.org/protocol/caps"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
NOTIFY_SUFFIX = "+notify"


def claimed(presence: Element) -> tuple[str, str] | None:
    """(hash key, disco node to query) from an available presence's <c/>, as
    Prosody's mod_pep reads it; None without a usable one."""
    c = presence.find(f"{{{CAPS}}}c")
    if c is None:
        return None
    node, ver = c.get("node"), c.get("ver")
    if not node or not ver:
        return None
    if c.get("hash") is None:  # legacy caps (before version 1.4)
        return f"{node}#{ver}#{c.get('ext', '')}", f"{node}#{ver}"
    if c.get("hash") == "sha-1":
        return ver, f"{node}#{ver}"
    return None


def verification_hash(query: Element) -> str:
    """The sha-1 `ver` of a disco#info result (XEP-0115 5.1)."""
    identities = sorted(
        "/".join((i.get("category", ""), i.get("type", ""), i.get(XML_LANG, ""),
                  i.get("name", "")))
        for i in query.findall(f"{{{ns.DISCO_INFO}}}identity"))
    features = sorted(f.get("var", "") for f in query.findall(f"{{{ns.DISCO_INFO}}}feature"))
    forms = []
    for form in query.findall(f"{{{ns.DATA_FORMS}}}x"):
        form_type = ""
        fields = []
        for field in form.findall(f"{{{ns.DATA_FORMS}}}field"):
            values = sorted(v.text or "" for v in field.findall(f"{{{ns.DATA_FORMS}}}value"))
            if field.get("var") == "FORM_TYPE":
                form_type = values[0] if values else ""
            else:
                fields.append((field.get("var", ""), values))
        forms.append((form_type, sorted(fields)))
    text = "".join(part + "<" for part in (*identities, *features))
    for form_type, fields in sorted(forms):
        text += form_type + "<"
        for var, values in fields:
            text += var + "<" + "".join(value + "<" for value in values)
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


def notify_nodes(query: Element) -> frozenset[str]:
    """The nodes a disco#info result asks notifications for (`NODE+notify`)."""
    return frozenset(
        var.removesuffix(NOTIFY_SUFFIX)
        for var in (f.get("var", "") for f in query.findall(f"{{{ns.DISCO_INFO}}}feature"))
        if var.endswith(NOTIFY_SUFFIX) and len(var) > len(NOTIFY_SUFFIX))
