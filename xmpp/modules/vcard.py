"""XEP-0054 vcard-temp (Prosody's mod_vcard): the account's own vCard in the
keyval store "vcard"; anyone may read it, only the account may change it."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.vcard import TEMP

VCARD = f"{{{TEMP}}}vCard"


def setup(m: ModuleContext) -> None:
    m.add_feature(TEMP)
    store = m.open_store("vcard", "keyval")

    def get(request: IqRequest) -> Element:
        username = parse_jid(request.stanza.get("to", "")).local
        vcard = store.get(username) if username and m.users.exists(username) else None
        if vcard is None:
            raise StanzaError("item-not-found")
        return vcard

    def set_own(request: IqRequest) -> None:
        vcard = request.payload
        store.set(request.origin.username, vcard if len(vcard) else None)

    def set_other(request: IqRequest) -> None:
        raise StanzaError("forbidden", "You can only change your own vCard")

    m.hook_iq("get", VCARD, get, target="bare")
    m.hook_iq("set", VCARD, set_own, target="self")
    m.hook_iq("set", VCARD, set_other, target="bare")
