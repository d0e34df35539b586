"""XEP-0398 (Prosody's mod_vcard_legacy): vcard-temp kept in PEP. A
vcard-temp get is built from the account's vCard4 node and XEP-0084 avatar
nodes (with their access models); a set publishes the vCard4 and the
avatar (nodes created `open`); available presence carries the XEP-0153
avatar hash; a vCard mod_vcard stored is moved to PEP at the next login
(`upgrade_legacy_vcards`)."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.disco import add_account_feature
from xmpp.modules.pep import Pep, pep_of
from xmpp.vcard import (
    AVATAR_DATA,
    AVATAR_METADATA,
    TEMP,
    UPDATE,
    VCARD4_NODE,
    add_photo,
    metadata_info,
    photo_of,
    temp_to_vcard4,
    vcard4_to_temp,
)

VCARD = f"{{{TEMP}}}vCard"
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
NODE_DEFAULTS = {"access_model": "open"}


def setup(m: ModuleContext) -> None:
    pep = pep_of(m)
    legacy = m.open_store("vcard", "keyval")
    m.add_feature(TEMP)
    add_account_feature(m, CONVERSION)

    def get(request: IqRequest) -> Element:
        stanza = request.stanza
        username = parse_jid(stanza.get("to", "")).local or ""
        return vcard_temp(pep, username, stanza.get("from", ""))

    def set_own(request: IqRequest) -> None:
        save(pep, request.origin.username, request.payload)

    # Above mod_vcard's handlers, should both be loaded.
    m.hook_iq("get", VCARD, get, target="bare", priority=1)
    m.hook_iq("set", VCARD, set_own, target="self", priority=1)
    for kind in ("bare", "full", "host"):
        m.hook(f"pre-presence/{kind}", lambda event: add_avatar_hash(pep, event), 1)
    if m.config.get_bool("upgrade_legacy_vcards", True):
        m.hook("resource-bind", lambda event: upgrade(pep, legacy, event.session.username))


def vcard_temp(pep: Pep, username: str, actor: str) -> Element:
    temp = vcard4_to_temp(pep.payload(username, VCARD4_NODE, actor))
    info = metadata_info(pep.payload(username, AVATAR_METADATA, actor))
    if info is not None:
        data = pep.payload(username, AVATAR_DATA, actor, info[0])
        if data is not None:
            add_photo(temp, info[1], data)
    return temp


def save(pep: Pep, username: str, temp: Element) -> None:
    try:
        avatar = photo_of(temp)
    except ValueError as error:
        raise StanzaError("bad-request", str(error)) from error
    for node in (AVATAR_METADATA, AVATAR_DATA):
        pep.purge(username, node)
    if avatar is not None:
        pep.publish(username, AVATAR_DATA, avatar.id, avatar.data_payload(), NODE_DEFAULTS)
        pep.publish(username, AVATAR_METADATA, avatar.id, avatar.metadata_payload(),
                    NODE_DEFAULTS)
    pep.publish(username, VCARD4_NODE, "current", temp_to_vcard4(temp), NODE_DEFAULTS)


def add_avatar_hash(pep: Pep, event: Any) -> None:
    """XEP-0153: the hash of the current avatar in available presence."""
    stanza = event.stanza
    if stanza.get("type") is not None:
        return
    for old in stanza.findall(f"{{{UPDATE}}}x"):
        stanza.remove(old)
    update = SubElement(stanza, f"{{{UPDATE}}}x")
    items = pep.items(event.origin.username, AVATAR_METADATA)
    if items:
        SubElement(update, f"{{{UPDATE}}}photo").text = items[-1].get("id")


def upgrade(pep: Pep, legacy: Any, username: str) -> None:
    temp = legacy.get(username)
    if temp is None:
        return
    if not any(pep.items(username, node) for node in (VCARD4_NODE, AVATAR_METADATA,
                                                      AVATAR_DATA)):
        save(pep, username, temp)
    legacy.set(username, None)
