"""XEP-0227 (Portable Import/Export Format for XMPP-IM Servers), to and from
`UserData` (storage.userdata), as Prosody's mod_storage_xep0227 writes it:
SCRAM material (`urn:xmpp:pie:0#scram`, SHA-1 and, when known, SHA-256),
roster with pending subscription requests, vCard, private XML, offline
messages, block list, message archive (`urn:xmpp:pie:0#mam`) and PEP nodes
(XEP-0227's PEP form: `<pubsub xmlns='...pubsub#owner'>` with each node's
configuration form, affiliations and subscriptions, `<pubsub
xmlns='...pubsub'>` with its items).

XEP-0227 has no form for MUC rooms. They go through its extension point (any
namespace under `<host/>`) as `<room xmlns='urn:xmpp:pie:0#muc' name=NODE/>`
(the namespace style of the #scram and #mam extensions), holding what the
proposal for MUC in XEP-0227 (xsf/xeps#1320) lists, each in its XEP-0045 wire
form: the configuration as a submitted muc#roomconfig form, the affiliations
as a muc#admin query, the subject as a groupchat message, the room's vCard
and its archive (as a user's). Other stores are not written; `server_data`
names them.
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
from xmpp.errors import StanzaError
from xmpp.jid import InvalidJID, nodeprep, parse_jid
from xmpp.modules.pep import archive_key
from xmpp.muc.names import MUC_ADMIN, MUC_OWNER
from xmpp.muc.roomconfig import RoomConfig, apply_form, config_form, submitted_fields
from xmpp.pubsub import DEFAULT_CONFIG, NODE_CONFIG, Limits, parse_form
from xmpp.pubsub import NS as PUBSUB
from xmpp.pubsub import config_form as node_config_form
from xmpp.stanza import serialize
from xmpp.stream import parse_stanza

PIE = "urn:xmpp:pie:0"
SCRAM = "urn:xmpp:pie:0#scram"
PIE_MAM = "urn:xmpp:pie:0#mam"
MAM = "urn:xmpp:mam:2"
FORWARD = "urn:xmpp:forward:0"
PRIVATE = "jabber:iq:private"
BLOCKING = "urn:xmpp:blocking"
PIE_MUC = "urn:xmpp:pie:0#muc"
PUBSUB_OWNER = PUBSUB + "#owner"
WITH = f"{{{PIE_MUC}}}with"
VCARD = "vcard-temp"
EXPORTED_KEYVAL = {"vcard", "blocklist"}
EXPORTED_MAPS = {"private", "pep"}
EXPORTED_ARCHIVES = {"archive"}
ROOM_KEYVAL = {"config", "vcard_muc"}
ROOM_ARCHIVES = {"muc_log"}
# What an import takes: whatever the exporting server kept (its own limits then apply).
UNBOUNDED = 10**9
IMPORT_LIMITS = Limits(max_items=UNBOUNDED, affiliations=UNBOUNDED)


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
    _archive_element(user, data.archives.get("archive"))
    pep = _pep_elements(user, data)
    left = sorted((set(data.keyval) - EXPORTED_KEYVAL) | (set(data.maps) - EXPORTED_MAPS)
                  | (set(data.archives) - EXPORTED_ARCHIVES - pep))
    return user, left


def _archive_element(parent: Element, records: list[ArchiveRecord] | None,
                     keep_with: bool = False) -> None:
    """`keep_with`: each item's `with` (for a room, the sender's real JID, which the
    message from the room does not show) in an attribute of the #muc extension."""
    if not records:
        return
    archive = SubElement(parent, f"{{{PIE_MAM}}}archive")
    for record in records:
        result = SubElement(archive, f"{{{MAM}}}result", {"id": record.key})
        if keep_with and record.with_:
            result.set(WITH, record.with_)
        forwarded = SubElement(result, f"{{{FORWARD}}}forwarded")
        SubElement(forwarded, f"{{{ns.DELAY}}}delay", {"stamp": _stamp(record.when)})
        if isinstance(record.value, Element):
            forwarded.append(record.value)


def _pep_elements(user: Element, data: UserData) -> set[str]:
    """The account's PEP nodes in XEP-0227's form; the item stores it wrote."""
    nodes = data.maps.get("pep") or {}
    if not nodes:
        return set()
    owner = SubElement(user, f"{{{PUBSUB_OWNER}}}pubsub")
    contents = SubElement(user, f"{{{PUBSUB}}}pubsub")
    for name, node in sorted(nodes.items()):
        node = node if isinstance(node, dict) else {}
        form = _submitted(node_config_form(dict(DEFAULT_CONFIG, **node.get("config", {})),
                                           Limits()))
        SubElement(owner, f"{{{PUBSUB_OWNER}}}configure", {"node": name}).append(form)
        if node.get("affiliations"):
            listed = SubElement(owner, f"{{{PUBSUB_OWNER}}}affiliations", {"node": name})
            for jid, affiliation in sorted(node["affiliations"].items()):
                SubElement(listed, f"{{{PUBSUB_OWNER}}}affiliation",
                           {"jid": jid, "affiliation": affiliation})
        if node.get("subscribers"):
            listed = SubElement(owner, f"{{{PUBSUB_OWNER}}}subscriptions", {"node": name})
            for jid in node["subscribers"]:
                SubElement(listed, f"{{{PUBSUB_OWNER}}}subscription",
                           {"jid": jid, "subscription": "subscribed"})
        items = SubElement(contents, f"{{{PUBSUB}}}items", {"node": name})
        items.extend(record.value for record in data.archives.get(f"pep_{name}", [])
                     if isinstance(record.value, Element))
    return {f"pep_{name}" for name in nodes}


def _submitted(form: Element) -> Element:
    """A configuration form as submitted: each field's var, type and values only."""
    submitted = Element(form.tag, {"type": "submit"})
    for field in form.iterfind(f"{{{ns.DATA_FORMS}}}field"):
        copy = SubElement(submitted, field.tag, {"var": field.get("var", ""),
                                                  "type": field.get("type", "text-single")})
        copy.extend(field.findall(f"{{{ns.DATA_FORMS}}}value"))
    return submitted


def room_element(data: UserData) -> tuple[Element, list[str]]:
    """The <room/> of one MUC room (see the module's docstring), and the stores
    it could not carry."""
    stored = data.keyval["config"]
    room = Element(f"{{{PIE_MUC}}}room", {"name": data.username})
    config = RoomConfig.from_json(stored.get("config", {}))
    form = config_form(config, archiving=config.archiving, max_history=UNBOUNDED)
    SubElement(room, f"{{{MUC_OWNER}}}query").append(_submitted(form))
    admin = SubElement(room, f"{{{MUC_ADMIN}}}query")
    for jid, affiliation in sorted((stored.get("affiliations") or {}).items()):
        SubElement(admin, f"{{{MUC_ADMIN}}}item", {"affiliation": affiliation, "jid": jid})
    if stored.get("subject"):
        text, nick = stored["subject"]
        room_jid = f"{data.username}@{data.host}"
        subject = SubElement(room, f"{{{ns.CLIENT}}}message", {
            "type": "groupchat", "from": f"{room_jid}/{nick}" if nick else room_jid})
        SubElement(subject, f"{{{ns.CLIENT}}}subject").text = text
    if isinstance(data.keyval.get("vcard_muc"), Element):
        room.append(data.keyval["vcard_muc"])
    _archive_element(room, data.archives.get("muc_log"), keep_with=True)
    left = sorted((set(data.keyval) - ROOM_KEYVAL) | set(data.maps)
                  | (set(data.archives) - ROOM_ARCHIVES))
    return room, left


def is_room(data: UserData) -> bool:
    """Whether `data` is a MUC room's (no account; the room's settings in `config`)."""
    stored = data.keyval.get("config")
    return data.material is None and isinstance(stored, dict) and "config" in stored \
        and "destroyed" not in stored


def server_data(hosts: dict[str, list[UserData]]) -> tuple[str, dict[str, set[str]]]:
    """The XEP-0227 document of these hosts' users, and what it left out, by store."""
    root = Element(f"{{{PIE}}}server-data")
    left_out: dict[str, set[str]] = {}
    for host, users in hosts.items():
        host_element = SubElement(root, f"{{{PIE}}}host", {"jid": host})
        for data in users:
            if is_room(data):
                element, left = room_element(data)
            elif data.material is not None:
                element, left = user_element(data)
            else:
                continue  # the host's own data (e.g. its list of rooms, rebuilt on import)
            host_element.append(element)
            for store in left:
                left_out.setdefault(store, set()).add(f"{data.username}@{host}")
    return "<?xml version='1.0' encoding='UTF-8'?>\n" + serialize(root, "", {}) + "\n", left_out


# -- import -------------------------------------------------------------------------


def read_server_data(path: Any) -> Iterator[tuple[str, str, UserData | Exception]]:
    """(host, username or room node, data or the error) for each <user/> and
    <room/>, one at a time."""
    host = ""
    readers = {f"{{{PIE}}}user": user_data, f"{{{PIE_MUC}}}room": room_data}
    for event, element in iterparse(path, events=("start", "end")):
        if element.tag == f"{{{PIE}}}host" and event == "start":
            host = element.get("jid", "")
        elif element.tag in readers and event == "end":
            name = element.get("name", "")
            try:
                yield host, name, readers[element.tag](host, element)
            except (ValueError, InvalidJID, binascii.Error, StanzaError) as error:
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
    records = _records(user, username, host)
    if records:
        data.archives["archive"] = records
    _read_pep(user, data)
    return data


def _records(parent: Element, username: str, host: str) -> list[ArchiveRecord]:
    records = []
    for result in parent.iterfind(f"{{{PIE_MAM}}}archive/{{{MAM}}}result"):
        forwarded = result.find(f"{{{FORWARD}}}forwarded")
        delay = forwarded.find(f"{{{ns.DELAY}}}delay") if forwarded is not None else None
        message = forwarded.find(f"{{{ns.CLIENT}}}message") if forwarded is not None else None
        if delay is None or message is None:
            raise ValueError("an archived message without its stamp or message")
        with_ = message.get("to") if message.get("from", "").startswith(
            f"{username}@{host}") else message.get("from")
        kept = result.get(WITH)
        records.append(ArchiveRecord(result.get("id", ""), _parse_stamp(delay.get("stamp", "")),
                                     kept or str(parse_jid(with_ or host).bare), message))
    return records


def _read_pep(user: Element, data: UserData) -> None:
    nodes: dict[str, dict[str, Any]] = {}

    def node(name: str | None) -> dict[str, Any]:
        if not name:
            raise ValueError("a PEP node without a name")
        return nodes.setdefault(name, {"name": name, "config": {}, "affiliations": {},
                                       "subscribers": []})

    for configure in user.iterfind(f"{{{PUBSUB_OWNER}}}pubsub/{{{PUBSUB_OWNER}}}configure"):
        form = configure.find(f"{{{ns.DATA_FORMS}}}x")
        config = parse_form(form, NODE_CONFIG, IMPORT_LIMITS) if form is not None else {}
        node(configure.get("node"))["config"] = dict(DEFAULT_CONFIG, **config)
    owner = f"{{{PUBSUB_OWNER}}}pubsub/{{{PUBSUB_OWNER}}}"
    for listed in user.iterfind(f"{owner}affiliations"):
        node(listed.get("node"))["affiliations"] = {
            str(parse_jid(item.get("jid", "")).bare): item.get("affiliation", "none")
            for item in listed.findall(f"{{{PUBSUB_OWNER}}}affiliation")}
    for listed in user.iterfind(f"{owner}subscriptions"):
        node(listed.get("node"))["subscribers"] = sorted(
            str(parse_jid(item.get("jid", ""))) for item in
            listed.findall(f"{{{PUBSUB_OWNER}}}subscription")
            if item.get("subscription") == "subscribed")
    now = datetime.now(UTC)
    for items in user.iterfind(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}items"):
        name = items.get("node")
        node(name)
        data.archives[f"pep_{name}"] = [
            ArchiveRecord(archive_key(item.get("id", "")), now, "", item)
            for item in items.findall(f"{{{PUBSUB}}}item") if item.get("id")]
    if nodes:
        data.maps["pep"] = nodes


def room_data(host: str, room: Element) -> UserData:
    """A <room/> (see the module's docstring) as the room's stores hold it."""
    node = nodeprep(room.get("name", ""))
    if not node:
        raise ValueError("a room without a name")
    data = UserData(host, node)
    form = room.find(f"{{{MUC_OWNER}}}query/{{{ns.DATA_FORMS}}}x")
    config, _changed = apply_form(RoomConfig(), submitted_fields(form) if form is not None
                                  else {}, archiving_offered=True, max_history=UNBOUNDED)
    affiliations = {str(parse_jid(item.get("jid", "")).bare): item.get("affiliation", "none")
                    for item in room.iterfind(f"{{{MUC_ADMIN}}}query/{{{MUC_ADMIN}}}item")}
    message = room.find(f"{{{ns.CLIENT}}}message")
    text = message.findtext(f"{{{ns.CLIENT}}}subject") if message is not None else None
    subject = [text, parse_jid(message.get("from", host)).resource or ""] \
        if message is not None and text else None
    data.keyval["config"] = {"config": config.to_json(), "affiliations": affiliations,
                             "subject": subject}
    vcard = room.find(f"{{{VCARD}}}vCard")
    if vcard is not None:
        data.keyval["vcard_muc"] = vcard
    records = _records(room, node, host)
    if records:
        data.archives["muc_log"] = records
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
