"""XEP-0045 section 10.2 room configuration: the settings of a room, their
defaults (Prosody's muc_room_default_* options) and the owner's form
(the muc#roomconfig_* fields Prosody 0.12 offers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.muc.names import MUC_ROOMCONFIG, ROLES

X = f"{{{ns.DATA_FORMS}}}x"
FIELD = f"{{{ns.DATA_FORMS}}}field"
VALUE = f"{{{ns.DATA_FORMS}}}value"

DEFAULT_HISTORY_LENGTH = 20  # Prosody's history.lib default
WHOIS = ("moderators", "anyone")
BROADCAST_ROLES = ("moderator", "participant", "visitor")
ALLOW_MEMBER_INVITES = "{http://prosody.im/protocol/muc}roomconfig_allowmemberinvites"
ENABLE_ARCHIVING = "muc#roomconfig_enablearchiving"  # mod_muc_mam's field
# Longest text a text field may hold: a room name or description is no document.
MAX_TEXT = 1024


@dataclass(slots=True)
class RoomConfig:
    """One room's settings, as stored."""

    name: str = ""
    description: str = ""
    language: str = ""
    persistent: bool = False
    public: bool = False
    changesubject: bool = False
    members_only: bool = False
    allow_member_invites: bool = False
    moderated: bool = False
    whois: str = "moderators"
    password: str = ""
    history_length: int = DEFAULT_HISTORY_LENGTH
    default_history_messages: int = DEFAULT_HISTORY_LENGTH
    presence_broadcast: tuple[str, ...] = BROADCAST_ROLES
    archiving: bool | None = None  # None: muc_log_by_default decides

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["presence_broadcast"] = list(self.presence_broadcast)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoomConfig:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if "presence_broadcast" in values:
            values["presence_broadcast"] = tuple(values["presence_broadcast"])
        return cls(**values)


def defaults_from_options(options: Any) -> RoomConfig:
    """A new room's settings from Prosody's muc_room_default_* options."""
    get_bool = options.get_bool
    broadcast = options.get_list("muc_room_default_presence_broadcast", list(BROADCAST_ROLES))
    if isinstance(broadcast, list) and broadcast and isinstance(broadcast[0], dict):
        broadcast = [role for role, on in broadcast[0].items() if on]  # Lua table form
    return RoomConfig(
        public=get_bool("muc_room_default_public", False),
        persistent=get_bool("muc_room_default_persistent", False),
        members_only=get_bool("muc_room_default_members_only", False),
        allow_member_invites=get_bool("muc_room_default_allow_member_invites", False),
        moderated=get_bool("muc_room_default_moderated", False),
        whois="anyone" if get_bool("muc_room_default_public_jids", False) else "moderators",
        changesubject=get_bool("muc_room_default_change_subject", False),
        history_length=options.get_int("muc_room_default_history_length",
                                       DEFAULT_HISTORY_LENGTH, min=0),
        language=options.get_str("muc_room_default_language", None) or "",
        presence_broadcast=tuple(role for role in BROADCAST_ROLES if role in broadcast),
    )


# -- the owner's form ---------------------------------------------------------------

# (var, attribute, type, label) in Prosody's order.
FORM_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("muc#roomconfig_roomname", "name", "text-single", "Title"),
    ("muc#roomconfig_roomdesc", "description", "text-single", "Description"),
    ("muc#roomconfig_lang", "language", "text-single",
     "Language tag for room (e.g. 'en', 'de', 'fr' etc.)"),
    ("muc#roomconfig_persistentroom", "persistent", "boolean",
     "Persistent (room should remain even when it is empty)"),
    ("muc#roomconfig_publicroom", "public", "boolean",
     "Include room information in public lists"),
    ("muc#roomconfig_changesubject", "changesubject", "boolean",
     "Allow anyone to set the room's subject"),
    ("muc#roomconfig_membersonly", "members_only", "boolean", "Only allow members to join"),
    (ALLOW_MEMBER_INVITES, "allow_member_invites", "boolean",
     "Allow members to invite new members"),
    ("muc#roomconfig_moderatedroom", "moderated", "boolean",
     "Moderated (require permission to speak)"),
    ("muc#roomconfig_whois", "whois", "list-single",
     "Addresses (JIDs) of room occupants may be viewed by:"),
    ("muc#roomconfig_roomsecret", "password", "text-private", "Password"),
    ("muc#roomconfig_historylength", "history_length", "text-single",
     "Maximum number of history messages returned by room"),
    ("muc#roomconfig_defaulthistorymessages", "default_history_messages", "text-single",
     "Default number of history messages returned by room"),
    ("muc#roomconfig_presencebroadcast", "presence_broadcast", "list-multi",
     "Only show participants with roles:"),
    (ENABLE_ARCHIVING, "archiving", "boolean", "Enable archiving?"),
)
_BY_VAR = {var: (attr, kind) for var, attr, kind, _label in FORM_FIELDS}
INTEGER_FIELDS = frozenset({"history_length", "default_history_messages"})
CHOICES = {"whois": WHOIS, "presence_broadcast": BROADCAST_ROLES}
PRIVACY_FIELDS = frozenset({"whois", "archiving"})  # changes with codes of their own


def config_form(config: RoomConfig, *, archiving: bool | None, max_history: int) -> Element:
    """The form an owner fills in (XEP-0045 10.2); `archiving` is the value of
    the archiving switch, None when mod_muc_mam offers none."""
    form = Element(X, {"type": "form"})
    SubElement(form, f"{{{ns.DATA_FORMS}}}title").text = "Configuration for room"
    _field(form, "FORM_TYPE", "hidden", [MUC_ROOMCONFIG])
    for var, attr, kind, label in FORM_FIELDS:
        if attr == "archiving":
            if archiving is None:
                continue
            value: Any = archiving
        elif attr == "history_length":
            value = min(config.history_length, max_history)
        else:
            value = getattr(config, attr)
        node = _field(form, var, kind, _as_values(value), label)
        if attr in INTEGER_FIELDS:
            SubElement(node, "{http://jabber.org/protocol/xdata-validate}validate",
                       {"datatype": "xs:integer"})
        for option in CHOICES.get(attr, ()):
            SubElement(SubElement(node, f"{{{ns.DATA_FORMS}}}option", {"label": option}),
                       VALUE).text = option
    return form


def _as_values(value: Any) -> list[str]:
    if isinstance(value, bool):
        return ["1" if value else "0"]
    if isinstance(value, tuple | list):
        return list(value)
    return [str(value)]


def _field(form: Element, var: str, kind: str, values: list[str], label: str | None = None
           ) -> Element:
    node = SubElement(form, FIELD, {"var": var, "type": kind})
    if label:
        node.set("label", label)
    for value in values:
        SubElement(node, VALUE).text = value
    return node


def submitted_fields(form: Element) -> dict[str, list[str]]:
    """var -> values of a submitted form."""
    return {node.get("var", ""): [value.text or "" for value in node.findall(VALUE)]
            for node in form.findall(FIELD)}


def apply_form(config: RoomConfig, values: dict[str, list[str]], *, archiving_offered: bool,
               max_history: int) -> tuple[RoomConfig, set[str]]:
    """The settings after a submitted form, and the names of those that changed.

    Fields Prosody does not have are ignored (as Prosody does); a known field
    with a value of the wrong type is a `bad-request` naming it, and nothing
    is applied.
    """
    changes: dict[str, Any] = {}
    for var, raw in values.items():
        known = _BY_VAR.get(var)
        if known is None or (known[0] == "archiving" and not archiving_offered):
            continue
        attr, kind = known
        changes[attr] = _read(var, attr, kind, raw, max_history)
    if "default_history_messages" in changes or "history_length" in changes:
        length = changes.get("history_length", config.history_length)
        changes["default_history_messages"] = min(
            changes.get("default_history_messages", config.default_history_messages), length)
    new = replace(config, **changes)
    changed = {attr for attr in changes if getattr(config, attr) != getattr(new, attr)}
    return new, changed


def _read(var: str, attr: str, kind: str, raw: list[str], max_history: int) -> Any:
    if kind == "list-multi":
        unknown = [value for value in raw if value not in CHOICES[attr]]
        if unknown:
            raise StanzaError("bad-request", f"Field {var}: unknown value {unknown[0][:64]!r}")
        return tuple(role for role in ROLES if role in raw)
    if len(raw) > 1:
        raise StanzaError("bad-request", f"Field {var} takes one value")
    text = raw[0] if raw else ""
    if kind == "boolean":
        text = text.strip()
        if text in ("1", "true"):
            return True
        if text in ("0", "false", ""):
            return False
        raise StanzaError("bad-request", f"Field {var} must be a boolean")
    if attr in INTEGER_FIELDS:
        text = text.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 12:
            raise StanzaError("bad-request", f"Field {var} must be a non-negative integer")
        return min(int(text), max_history)
    if kind == "list-single" and text not in CHOICES[attr]:
        raise StanzaError("bad-request", f"Field {var}: unknown value {text[:64]!r}")
    if len(text) > MAX_TEXT:
        raise StanzaError("not-acceptable", f"Field {var} is longer than {MAX_TEXT} characters")
    return text
