"""`app.py import-prosody`: Prosody's internal storage (its data_path) moved in.

Prosody keeps DATA/<host>/<store>/<user>.dat (a keyval value) and .list (an
archive's items), names %-encoded. Each user of each configured host is read
whole (every store), converted, then written in one transaction
(storage.userdata), so a bad file costs that user only, with an error naming
the file and the account, and nothing half-imported. A user whose account or
data is already here is left as it is: a second run changes nothing.

Accounts keep their SCRAM material as Prosody made it (internal_hashed), so
every user logs in with the old password; internal_plain passwords are
hashed on the way in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import SubElement

from storage.accounts import scram_material
from storage.db import Database
from storage.lua_data import (
    DataFileError,
    LuaDataReader,
    LuaTable,
    LuaValue,
    data_files,
    decode_name,
    text,
    to_element,
    to_json,
)
from storage.roster import RosterItem
from storage.stores import ArchiveRecord
from storage.userdata import ScramMaterial, UserData, write_user
from xmpp import namespaces as ns
from xmpp.jid import InvalidJID, nodeprep, parse_jid
from xmpp.muc.names import ROLES
from xmpp.scram import DEFAULT_ITERATIONS
from xmpp.stanza import serialize

# Prosody's clients receive the whole roster at login; a roster beyond this
# is refused rather than moved (it would stall every login of that user).
MAX_ROSTER_ITEMS = 20_000
HOST_DATA = ""  # the "username" of a host's own data (DATA/<host>/<store>.dat)


@dataclass
class ImportReport:
    """What moved and what did not, for the operator."""

    imported: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Imported {len(self.imported)}, already present {len(self.present)}, "
               f"failed {len(self.failed)}"]
        for owner, counts in self.imported:
            detail = ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))
            out.append(f"  imported {owner}" + (f": {detail}" if detail else ""))
        out += [f"  already present, left as it is: {owner}" for owner in self.present]
        out += [f"  FAILED {owner}: {message}" for owner, message in self.failed]
        out += [f"  skipped {owner}: {what}" for owner, what in self.skipped]
        return out


class _Owner:
    """The files of one user (or room, or the host itself) across stores."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], Path] = {}


# -- conversions of one store's value into UserData ------------------------------------


def _account(data: UserData, value: LuaValue) -> None:
    if not isinstance(value, LuaTable):
        raise ValueError("the account is not a table")
    if b"stored_key" in value:
        try:
            data.material = ScramMaterial(
                salt=_bytes(value.get(b"salt"), "salt"),
                iterations=_int(value.get(b"iteration_count"), "iteration_count"),
                sha1_stored_key=bytes.fromhex(text(value.get(b"stored_key"), "stored_key")),
                sha1_server_key=bytes.fromhex(text(value.get(b"server_key"), "server_key")))
        except ValueError as error:
            raise ValueError(f"bad SCRAM material: {error}") from error
        if len(data.material.sha1_stored_key) != 20 or len(data.material.sha1_server_key) != 20:
            raise ValueError("bad SCRAM material: SHA-1 keys are 20 bytes")
    elif b"password" in value:
        data.material = ScramMaterial(**scram_material(text(value[b"password"], "password"),
                                                       DEFAULT_ITERATIONS))
    else:
        raise ValueError("the account has neither SCRAM material nor a password")


def _bytes(value: LuaValue, what: str) -> bytes:
    if not isinstance(value, bytes) or not value:
        raise ValueError(f"{what} missing")
    return value


def _int(value: LuaValue, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000_000:
        raise ValueError(f"{what} is not a sane number")
    return value


def _bare_jid(value: LuaValue) -> str:
    jid = parse_jid(text(value, "a contact JID"))
    if jid.resource:
        raise ValueError(f"contact {jid} is not a bare JID")
    return str(jid)


def _roster(data: UserData, value: LuaValue) -> None:
    if not isinstance(value, LuaTable):
        raise ValueError("the roster is not a table")
    items = [(key, item) for key, item in value.items() if key is not False]
    if len(items) > MAX_ROSTER_ITEMS:
        raise ValueError(f"the roster has {len(items)} items, more than the "
                         f"{MAX_ROSTER_ITEMS} an import takes")
    for key, item in items:
        if not isinstance(item, LuaTable):
            raise ValueError("a roster item is not a table")
        groups = item.get(b"groups") or LuaTable()
        data.roster.append(RosterItem(
            jid=_bare_jid(key),
            name=text(item[b"name"], "a roster name") if item.get(b"name") else None,
            subscription=text(item.get(b"subscription", b"none"), "a subscription"),
            ask=item.get(b"ask") == b"subscribe",
            groups=[text(group, "a group name") for group in groups]))
    metadata = value.get(False)
    if isinstance(metadata, LuaTable):
        version = metadata.get(b"version")
        data.roster_version = version if isinstance(version, int) else None
        for contact, request in (metadata.get(b"pending") or LuaTable()).items():
            data.pending_in[_bare_jid(contact)] = (
                serialize(to_element(request), prefixes={})
                if isinstance(request, LuaTable) else None)


def _stanza(item: LuaValue) -> Any:
    """An archived stanza without the attributes Prosody's storage added."""
    element = to_element(item)
    element.attrib.pop("stamp", None)
    return element


def _when(item: LuaTable) -> datetime:
    when = item.get(b"when")
    if not isinstance(when, int | float) or isinstance(when, bool):
        raise ValueError("an archived item without a time")
    return datetime.fromtimestamp(when, UTC)


def _records(items: list[LuaValue]) -> list[ArchiveRecord]:
    records = []
    for item in items:
        if not isinstance(item, LuaTable):
            raise ValueError("an archived item is not a table")
        records.append(ArchiveRecord(
            key=text(item.get(b"key"), "an item key"), when=_when(item),
            with_=text(item[b"with"], "an item's JID") if item.get(b"with") else "",
            value=_stanza(item)))
    return records


def _offline(data: UserData, items: list[LuaValue]) -> None:
    for record in _records(items):
        stanza = record.value
        if stanza.find(f"{{{ns.DELAY}}}delay") is None:
            SubElement(stanza, f"{{{ns.DELAY}}}delay", {
                "from": data.host, "stamp": record.when.strftime("%Y-%m-%dT%H:%M:%SZ")})
        data.offline.append((serialize(stanza), record.when))


def _blocklist(data: UserData, value: LuaValue) -> None:
    if not isinstance(value, LuaTable):
        raise ValueError("the block list is not a table")
    # Prosody: {[jid] = true, [false] = {created = ...}}; the metadata stays behind.
    data.keyval["blocklist"] = {text(jid, "a blocked JID"): True
                                for jid, flag in value.items() if jid is not False and flag}


def _keyval_xml(name: str) -> Callable[[UserData, LuaValue], None]:
    def place(data: UserData, value: LuaValue) -> None:
        data.keyval[name] = to_element(value)
    return place


def _keyval_json(name: str) -> Callable[[UserData, LuaValue], None]:
    def place(data: UserData, value: LuaValue) -> None:
        data.keyval[name] = to_json(value)
    return place


def _map(name: str, convert: Callable[[LuaValue], Any]) -> Callable[[UserData, LuaValue], None]:
    def place(data: UserData, value: LuaValue) -> None:
        if not isinstance(value, LuaTable):
            raise ValueError(f"{name} is not a table")
        data.maps[name] = {text(key, "a key"): convert(item) for key, item in value.items()}
    return place


# Prosody's room settings (room._data) that Vireo's RoomConfig has under the same name.
ROOM_SETTINGS = ("name", "description", "language", "password", "persistent", "members_only",
                 "moderated", "changesubject", "whois", "history_length",
                 "default_history_messages", "allow_member_invites", "archiving")


def _room(data: UserData, value: LuaValue) -> None:
    """A MUC room as Prosody saves it ({jid=, _data={...}, _affiliations={...}}),
    in the shape Vireo's rooms load (xmpp.muc.room.Room.from_json)."""
    room = to_json(value)
    if not isinstance(room, dict) or not isinstance(room.get("_data", {}), dict):
        raise ValueError("the room is not a table")
    settings = room.get("_data", {})
    config = {key: settings[key] for key in ROOM_SETTINGS if key in settings}
    config["public"] = not settings.get("hidden", False)  # Prosody: public unless hidden
    roles = settings.get("presence_broadcast")
    if isinstance(roles, dict):
        config["presence_broadcast"] = [role for role in ROLES if roles.get(role)]
    affiliations = room.get("_affiliations") or {}
    if not isinstance(affiliations, dict):
        raise ValueError("the room's affiliations are not a table")
    subject = settings.get("subject")
    nick = str(settings.get("subject_from") or "").partition("/")[2]
    data.keyval["config"] = {"config": config, "affiliations": affiliations,
                             "subject": [subject, nick] if subject else None}


def _rooms(data: UserData, value: LuaValue) -> None:
    """The host's list of persistent rooms: Prosody keys it by room JID, Vireo by node."""
    if not isinstance(value, LuaTable):
        raise ValueError("persistent is not a table")
    data.maps["persistent"] = {text(key, "a room JID").partition("@")[0]: True
                               for key, on in value.items() if on}


def _archive(name: str) -> Callable[[UserData, list[LuaValue]], None]:
    def place(data: UserData, items: list[LuaValue]) -> None:
        data.archives[name] = _records(items)
    return place


# Prosody's store names, as its modules open them, and where each goes: the
# same store names here (the modules that read them use Prosody's).
DAT_STORES: dict[str, Callable[[UserData, LuaValue], None]] = {
    "accounts": _account,
    "roster": _roster,
    "blocklist": _blocklist,
    "vcard": _keyval_xml("vcard"),
    "vcard_muc": _keyval_xml("vcard_muc"),
    "private": _map("private", to_element),
    "pep": _map("pep", to_json),
    "account_details": _keyval_json("account_details"),
    "roles": _keyval_json("roles"),          # 0.12's role set: {["prosody:admin"] = true}
    "config": _room,                         # MUC rooms: settings, affiliations
    "persistent": _rooms,                    # MUC: the host's list of rooms
}
LIST_STORES: dict[str, Callable[[UserData, list[LuaValue]], None]] = {
    "offline": _offline,
    "archive": _archive("archive"),
    "muc_log": _archive("muc_log"),
}


def _list_store(name: str) -> Callable[[UserData, list[LuaValue]], None] | None:
    if name in LIST_STORES:
        return LIST_STORES[name]
    if name.startswith("pep_"):  # a PEP node's items
        return _archive(name)
    return None


# -- the walk ---------------------------------------------------------------------------


class ProsodyImporter:
    """Reads a Prosody data directory for the hosts of a Vireo config."""

    def __init__(self, db: Database, hosts: dict[str, bool],
                 reader: LuaDataReader | None = None) -> None:
        """`hosts`: each enabled host's name -> whether it is a VirtualHost."""
        self.db = db
        self.hosts = hosts
        self.reader = reader or LuaDataReader()

    def run(self, data_path: Path) -> ImportReport:
        report = ImportReport()
        if not data_path.is_dir():
            raise FileNotFoundError(f"{data_path} is not a directory")
        for host_dir in sorted(data_path.iterdir()):
            if not host_dir.is_dir():
                continue
            try:
                host = decode_name(host_dir.name)
            except UnicodeDecodeError:
                report.skipped.append((str(host_dir), "a host name that is not UTF-8"))
                continue
            if host not in self.hosts:
                report.skipped.append((host, "not a host in the config"))
                continue
            self._import_host(host, host_dir, self.hosts[host], report)
        return report

    def _import_host(self, host: str, host_dir: Path, virtual: bool,
                     report: ImportReport) -> None:
        owners: dict[str, _Owner] = {}
        unplaced: dict[str, int] = {}
        for path in sorted(host_dir.iterdir()):
            if path.is_file() and path.suffix in (".dat", ".list"):
                try:
                    store = decode_name(path.stem)
                except UnicodeDecodeError:
                    report.skipped.append((f"{host}/{path.name}", "a name that is not UTF-8"))
                    continue
                owners.setdefault(HOST_DATA, _Owner()).files[(store, path.suffix[1:])] = path
                continue
            if not path.is_dir():
                continue
            try:
                store = decode_name(path.name)  # pep_<node> has its node %-encoded
            except UnicodeDecodeError:
                report.skipped.append((f"{host}/{path.name}", "a store name that is not UTF-8"))
                continue
            for ext in ("dat", "list"):
                for encoded, file in data_files(path, ext):
                    owners.setdefault(encoded, _Owner()).files[(store, ext)] = file
        for encoded, owner in sorted(owners.items()):
            self._import_owner(host, encoded, owner, virtual, report, unplaced)
        for what, count in sorted(unplaced.items()):
            report.skipped.append((host, f"{count} file(s) of {what}, which Vireo "
                                         f"does not place yet"))

    def _import_owner(self, host: str, encoded: str, owner: _Owner, virtual: bool,
                      report: ImportReport, unplaced: dict[str, int]) -> None:
        label = f"{encoded}@{host}" if encoded else host
        try:
            username = _username(encoded) if encoded else HOST_DATA
            label = f"{username}@{host}" if username else host
            if virtual and username and ("accounts", "dat") not in owner.files:
                report.skipped.append((label, "data without an account"))
                return
            data = UserData(host, username)
            for (store, ext), path in sorted(owner.files.items()):
                try:
                    if ext == "dat" and store in DAT_STORES:
                        DAT_STORES[store](data, self.reader.load(path))
                    elif ext == "list" and (place := _list_store(store)) is not None:
                        place(data, self.reader.load_list(path))
                    else:
                        unplaced[f"{store} ({ext})"] = unplaced.get(f"{store} ({ext})", 0) + 1
                except (ValueError, InvalidJID, KeyError) as error:
                    raise DataFileError(path, str(error) or type(error).__name__) from error
            written = write_user(self.db, data)
        except DataFileError as error:
            report.failed.append((label, str(error)))
            return
        except (ValueError, InvalidJID) as error:
            report.failed.append((label, f"{owner_path(owner)}: {error}"))
            return
        if written:
            report.imported.append((label, data.counts()))
        else:
            report.present.append(label)


def owner_path(owner: _Owner) -> Path:
    return next(iter(owner.files.values()))


def _username(encoded: str) -> str:
    try:
        name = decode_name(encoded)
    except UnicodeDecodeError as error:
        raise ValueError("the user name is not UTF-8") from error
    return nodeprep(name)


def hosts_of(config: Any) -> dict[str, bool]:
    """The enabled hosts of a config: name -> whether it is a VirtualHost."""
    return {name: host.kind == "VirtualHost" for name, host in config.hosts.items()
            if host.enabled}


def lacking_sha256(accounts: Any, hosts: Iterable[str]) -> dict[str, int]:
    """Accounts per host that have no SCRAM-SHA-256 material yet."""
    return {host: count for host in hosts if (count := accounts.lacking_sha256(host))}
