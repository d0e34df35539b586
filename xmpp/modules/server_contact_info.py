"""XEP-0157 contact addresses in the server's disco#info (Prosody's
mod_server_contact_info): `contact_info = { abuse = { "mailto:..." }, ... }`,
by default the `admins` as xmpp: URIs."""

from __future__ import annotations

from xmpp.dataforms import Field, build_form
from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext

FORM_TYPE = "http://jabber.org/network/serverinfo"
KINDS = ("abuse", "admin", "feedback", "sales", "security", "status", "support")


def setup(m: ModuleContext) -> None:
    contact_info = m.config.get("contact_info", None)
    if contact_info is None:
        admins = []
        for entry in m.config.get_list("admins", []):
            try:
                admins.append(f"xmpp:{parse_jid(str(entry))}")
            except InvalidJID:
                m.log.warning("admins: %r is not a JID", entry)
        contact_info = {"admin": admins}
    if not isinstance(contact_info, dict):
        m.log.error("contact_info must be a table of address lists")
        return
    fields = []
    for kind in KINDS:
        addresses = contact_info.get(kind, [])
        if isinstance(addresses, str):
            addresses = [addresses]
        fields.append(Field(f"{kind}-addresses", "list-multi",
                            values=[str(address) for address in addresses]))
    m.add_extension(build_form("result", fields, form_type_ns=FORM_TYPE))
