"""XEP-0292 vCard4 (Prosody's mod_vcard4): the vCard lives in the account's
PEP node urn:xmpp:vcard4 (clients publish and fetch it there); an IQ get of
<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'/> answers from that node,
with its access model."""

from __future__ import annotations

from xml.etree.ElementTree import Element

from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.disco import add_account_feature
from xmpp.modules.pep import pep_of
from xmpp.vcard import VCARD4, VCARD4_NODE


def setup(m: ModuleContext) -> None:
    pep = pep_of(m)

    def get(request: IqRequest) -> Element:
        stanza = request.stanza
        username = parse_jid(stanza.get("to", "")).local or ""
        vcard = pep.payload(username, VCARD4_NODE, stanza.get("from", ""))
        if vcard is None:
            raise StanzaError("item-not-found")
        return vcard

    add_account_feature(m, VCARD4)
    m.hook_iq("get", f"{{{VCARD4}}}vcard", get, target="bare")
