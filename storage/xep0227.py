"""XEP-0227 (Portable Import/Export Format for XMPP-IM Servers), to and from
`UserData` (storage.userdata), as Prosody's mod_storage_xep0227 writes it:
SCRAM material (`urn:xmpp:pie:0#scram`, SHA-1 and, when known, SHA-256),
roster with pending subscription requests, vCard, private XML, offline
messages, block list and message archive (`urn:xmpp:pie:0#mam`).

Other stores (PEP, MUC rooms, ...) are not written; `export_host` names them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement, iterparse

from storage.accounts import scram_material
from storage.roster import RosterItem
from storage.stores import ArchiveRecord
from storage.userdata import ScramMaterial, UserData
from xmpp import namespaces as ns
from xmpp.jid import InvalidJID, nodeprep, parse_jid
from xmpp.stanza import serialize
from xmpp.stream import parse_stanza

PIE = "urn:xmpp:pie:0"
SCRAM = "urn:xmpp:pie:0#scram"
PIE_MAM = "urn:xmpp:pie:0#mam"
MAM = "urn:xmpp:mam:2"
FORWARD = "urn:xmpp:forward:0"
PRIVATE = "jabber:iq:private"
BLOCKING = "urn:xmpp:blocking"
VCARD = "vcard-temp"
EXPORTED_KEYVAL = {"vcard", "blocklist"}
EXPORTED_MAPS = {"private"}
EXPORTED_ARCHIVES = {"archive"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# -- export -------------------------------------------------------------------------


def user_element(data: UserData) -> tuple[Element, list[str]]:
    """The <user/> of one account, and the stores it could not carry."""
    user = Element(f"{{{PIE}}}user", {"name": data.username})
    material = data.material
    if material is not None:
        hashes = [("SHA-1", material.sha1_stored_key, material.sha1_server_key)]
        if material.sha256_stored_key and material.sha256_server_key:
            hashes.append(("SHA-256", material.sha256_stored_key, material.sha256_server_key))
        for name, stored, server in hashes:
            scram = SubElement(user, f"{{{SCRAM}}}scram-credentials",
                               {"mechanism": f"SCRAM-{name}"})
            SubElement(scram, f"{{{SCRAM}}}iter-count").text = str(material.iterations)
            SubElement(scram, f"{{{SCRAM}}}salt").text = _b64(material.salt)
            SubElement(scram, f"{{{SCRAM}}}server-key").text = _b64(server)
            SubElement(scram, f"{{{SCRAM}}}stored-key").text = _b64(stored)
    if data.roster:
        query = SubElement(user, f"{{{ns.ROSTER}}}query")
        for item in data.roster:
            attrs = {"jid": item.jid, "subscription": item.subscription}
            if item.name:
                attrs["name"] = item.name
            if item.ask:
                attrs["ask"] = "subscribe"
            element = SubElement(query, f"{{{ns.ROSTER}}}item", attrs)
            for group in item.groups:
                SubElement(element, f"{{{ns.ROSTER}}}group").text = group
    for contact, stanza in data.pending_in.items():
        user.append(parse_stanza(stanza) if stanza else Element(
            f"{{{ns.CLIENT}}}presence", {"type": "subscribe", "from": contact}))
    if isinstance(data.keyval.get("vcard"), Element):
        user.append(data.keyval["vcard"])
    if data.maps.get("private"):
        private = SubElement(user, f"{{{PRIVATE}}}query")
        private.extend(value for value in data.maps["private"].values()
                       if isinstance(value, Element))
    if data.offline:
        offline = SubElement(user, f"{{{PIE}}}offline-messages")
        offline.extend(parse_stanza(xml) for xml, _stamp in data.offline)
    blocked = data.keyval.get("blocklist")
    if isinstance(blocked, dict) and blocked:
        blocklist = SubElement(user, f"{{{BLOCKING}}}blocklist")
        for jid in blocked:
            SubElement(blocklist, f"{{{BLOCKING}}}item", {"jid": jid})
    if data.archives.get("archive"):
        archive = SubElement(user, f"{{{PIE_MAM}}}archive")
        for record in data.archives["archive"]:
            result = SubElement(archive, f"{{{MAM}}}result", {"id": record.key})
            forwarded = SubElement(result, f"{{{FORWARD}}}forwarded")
            SubElement(forwarded, f"{{{ns.DELAY}}}delay", {"stamp": _stamp(record.when)})
            if isinstance(record.value, Element):
                forwarded.append(record.value)
    left = sorted((set(data.keyval) - EXPORTED_KEYVAL) | (set(data.maps) - EXPORTED_MAPS)
                  | (set(data.archives) - EXPORTED_ARCHIVES))
    return user, left


def server_data(hosts: dict[str, list[UserData]]) -> tuple[str, dict[str, set[str]]]:
    """The XEP-0227 document of these hosts' users, and what it left out, by store."""
    root = Element(f"{{{PIE}}}server-data")
    left_out: dict[str, set[str]] = {}
    for host, users in hosts.items():
        host_element = SubElement(root, f"{{{PIE}}}host", {"jid": host})
        for data in users:
            if data.material is None:
                continue  # no account: a room's or the host's own data
            element, left = user_element(data)
            host_element.append(element)
            for store in left:
                left_out.setdefault(store, set()).add(f"{data.username}@{host}")
    return "<?xml version='1.0' encoding='UTF-8'?>\n" + serialize(root, "", {}) + "\n", left_out


# -- import -------------------------------------------------------------------------


def read_server_data(path: Any) -> Iterator[tuple[str, str, UserData | Exception]]:
    """(host, username, data or the error) for each <user/>, one at a time."""
    host = ""
    for event, element in iterparse(path, events=("start", "end")):
        if element.tag == f"{{{PIE}}}host" and event == "start":
            host = element.get("jid", "")
        elif element.tag == f"{{{PIE}}}user" and event == "end":
            name = element.get("name", "")
            try:
                yield host, name, user_data(host, element)
            except (ValueError, InvalidJID, binascii.Error) as error:
                yield host, name, error
            element.clear()


def user_data(host: str, user: Element) -> UserData:
    username = nodeprep(user.get("name", ""))
    data = UserData(host, username)
    scram: dict[str, Element] = {child.get("mechanism", ""): child
                                 for child in user.findall(f"{{{SCRAM}}}scram-credentials")}
    if "SCRAM-SHA-1" in scram:
        sha1 = _keys(scram["SCRAM-SHA-1"])
        data.material = ScramMaterial(sha1["salt"], sha1["iterations"], sha1["stored"],
                                      sha1["server"])
        sha256 = _keys(scram["SCRAM-SHA-256"]) if "SCRAM-SHA-256" in scram else None
        if sha256 and (sha256["salt"], sha256["iterations"]) == (sha1["salt"],
                                                                 sha1["iterations"]):
            data.material.sha256_stored_key = sha256["stored"]
            data.material.sha256_server_key = sha256["server"]
    elif user.get("password"):
        data.material = ScramMaterial(**scram_material(user.get("password", "")))
    else:
        raise ValueError("no SCRAM-SHA-1 credentials and no password")
    for item in user.iterfind(f"{{{ns.ROSTER}}}query/{{{ns.ROSTER}}}item"):
        data.roster.append(RosterItem(
            jid=str(parse_jid(item.get("jid", "")).bare), name=item.get("name"),
            subscription=item.get("subscription", "none"), ask=item.get("ask") == "subscribe",
            groups=[group.text or "" for group in item.findall(f"{{{ns.ROSTER}}}group")]))
    for presence in user.findall(f"{{{ns.CLIENT}}}presence"):
        if presence.get("type") == "subscribe" and presence.get("from"):
            contact = str(parse_jid(presence.get("from", "")).bare)
            data.pending_in[contact] = serialize(presence, prefixes={})
    vcard = user.find(f"{{{VCARD}}}vCard")
    if vcard is not None:
        data.keyval["vcard"] = vcard
    private = user.find(f"{{{PRIVATE}}}query")
    if private is not None and len(private):
        data.maps["private"] = {f"{child.tag.partition('}')[2]}:{child.tag[1:].partition('}')[0]}":
                                child for child in private}
    for message in user.iterfind(f"{{{PIE}}}offline-messages/*"):
        delay = message.find(f"{{{ns.DELAY}}}delay")
        stamp = _parse_stamp(delay.get("stamp", "")) if delay is not None else datetime.now(UTC)
        data.offline.append((serialize(message), stamp))
    blocked = [item.get("jid", "") for item in
               user.iterfind(f"{{{BLOCKING}}}blocklist/{{{BLOCKING}}}item")]
    if blocked:
        data.keyval["blocklist"] = {str(parse_jid(jid)): True for jid in blocked}
    records = []
    for result in user.iterfind(f"{{{PIE_MAM}}}archive/{{{MAM}}}result"):
        forwarded = result.find(f"{{{FORWARD}}}forwarded")
        delay = forwarded.find(f"{{{ns.DELAY}}}delay") if forwarded is not None else None
        message = forwarded.find(f"{{{ns.CLIENT}}}message") if forwarded is not None else None
        if delay is None or message is None:
            raise ValueError("an archived message without its stamp or message")
        with_ = message.get("to") if message.get("from", "").startswith(
            f"{username}@{host}") else message.get("from")
        records.append(ArchiveRecord(result.get("id", ""), _parse_stamp(delay.get("stamp", "")),
                                     str(parse_jid(with_ or host).bare), message))
    if records:
        data.archives["archive"] = records
    return data


def _keys(scram: Element) -> dict[str, Any]:
    def field(name: str) -> str:
        text = scram.findtext(f"{{{SCRAM}}}{name}")
        if not text:
            raise ValueError(f"{scram.get('mechanism')}: {name} missing")
        return text.strip()

    iterations = int(field("iter-count"))
    if not 1 <= iterations <= 10_000_000:
        raise ValueError("iteration count out of range")
    return {"iterations": iterations, "salt": base64.b64decode(field("salt"), validate=True),
            "stored": base64.b64decode(field("stored-key"), validate=True),
            "server": base64.b64decode(field("server-key"), validate=True)}
