"""XEP-0050 Ad-Hoc Commands (Prosody's mod_adhoc): the commands other modules
offer, listed under the `http://jabber.org/protocol/commands` disco node and
run by `<command action='execute'/>`.

A module adds a command with `add_command(m, AdhocCommand(...))` (Prosody's
`module:provides("adhoc", ...)`). The handler gets the submitted form's values
(None on the first call) and returns an `AdhocResult`: a form to fill
("executing", the client submits it next) or the outcome ("completed").
Permissions are Prosody's: "any", "local_user", "admin" (`admins`, or a user
holding the role prosody:admin).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.dataforms import form_values
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest, iq_event
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.stanza import make_iq_result

NS = "http://jabber.org/protocol/commands"
COMMAND = f"{{{NS}}}command"
INFO = f"{{{ns.DISCO_INFO}}}query"
ITEMS = f"{{{ns.DISCO_ITEMS}}}query"
MAX_SESSIONS = 1000  # multi-step commands in progress per host
ADMIN_ROLE = "prosody:admin"
ROLES_STORE = "roles"  # Prosody 0.12's per-user role set (mod_authz_internal)


@dataclass
class AdhocRequest:
    sender: JID
    values: dict[str, list[str]] | None  # the submitted form, None on the first call
    origin: Any

    def value(self, var: str) -> str:
        values = (self.values or {}).get(var) or [""]
        return values[0].strip()


@dataclass
class AdhocResult:
    status: str = "completed"  # or "executing" with a form to fill
    form: Element | None = None
    note: str | None = None
    note_type: str = "info"  # info | warn | error


@dataclass
class AdhocCommand:
    node: str
    name: str
    handler: Callable[[AdhocRequest], AdhocResult]
    permission: str = "admin"  # any | local_user | admin


@dataclass
class _Registry:
    commands: dict[str, AdhocCommand] = field(default_factory=dict)
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (jid, node)


def _registry(m: ModuleContext) -> _Registry:
    return m.shared(f"adhoc:{m.host.name}", _Registry)


def add_command(m: ModuleContext, command: AdhocCommand) -> None:
    """Offer `command` on the module's host (loads mod_adhoc there)."""
    m.depends("adhoc")
    _registry(m).commands[command.node] = command


def is_admin(m: ModuleContext, jid: JID) -> bool:
    """Whether the bare JID is in the host's `admins` (or the global one), or is a
    user of this host holding the role prosody:admin (Prosody 0.12's "roles"
    store, which an invite made with `app.py invite generate --admin` fills)."""
    admins = set()
    for entry in m.config.get_list("admins", []):
        try:
            admins.add(parse_jid(str(entry)).bare)
        except InvalidJID:
            m.log.warning("admins: %r is not a JID", entry)
    if jid.bare in admins:
        return True
    return bool(jid.local and jid.domain == m.host.name
                and ADMIN_ROLE in user_roles(m, jid.local))



def user_roles(m: ModuleContext, username: str) -> set[str]:
    """The roles stored for a user of the host (Prosody 0.12: a set, role -> true)."""
    roles = m.open_store(ROLES_STORE).get(username)
    return {role for role, held in roles.items() if held} if isinstance(roles, dict) else set()


def permitted(m: ModuleContext, command: AdhocCommand, sender: JID) -> bool:
    if command.permission == "any":
        return True
    if command.permission == "local_user":
        return sender.domain == m.host.name or is_admin(m, sender)
    return is_admin(m, sender)


def setup(m: ModuleContext) -> None:
    registry = _registry(m)
    m.add_feature(NS)

    def sender_of(stanza: Element) -> JID:
        return parse_jid(stanza.get("from", ""))

    def on_items(event: Any) -> Any:
        stanza = event.stanza
        if stanza[0].get("node") != NS:
            return None
        query = Element(ITEMS, {"node": NS})
        sender = sender_of(stanza)
        for command in registry.commands.values():
            if permitted(m, command, sender):
                SubElement(query, f"{{{ns.DISCO_ITEMS}}}item",
                           {"jid": m.host.name, "node": command.node, "name": command.name})
        m.reply(event.origin, make_iq_result(stanza, query))
        return True

    def on_info(event: Any) -> Any:
        stanza = event.stanza
        node = stanza[0].get("node")
        command = registry.commands.get(node or "")
        if command is None:
            return None
        if not permitted(m, command, sender_of(stanza)):
            m.reply(event.origin, StanzaError("forbidden").to_reply(stanza))
            return True
        query = Element(INFO, {"node": command.node})
        SubElement(query, f"{{{ns.DISCO_INFO}}}identity",
                   {"category": "automation", "type": "command-node", "name": command.name})
        for var in (NS, ns.DATA_FORMS):
            SubElement(query, f"{{{ns.DISCO_INFO}}}feature", {"var": var})
        m.reply(event.origin, make_iq_result(stanza, query))
        return True

    # Before mod_disco, which knows no nodes.
    m.hook(iq_event("get", "host", ITEMS), on_items, 10)
    m.hook(iq_event("get", "host", INFO), on_info, 10)
    m.hook_iq("set", COMMAND, lambda request: execute(m, registry, request))


def execute(m: ModuleContext, registry: _Registry, request: IqRequest) -> Element:
    payload = request.payload
    node = payload.get("node", "")
    command = registry.commands.get(node)
    if command is None:
        raise StanzaError("item-not-found")
    sender = parse_jid(request.stanza.get("from", ""))
    if not permitted(m, command, sender):
        raise StanzaError("forbidden")
    action = payload.get("action", "execute")
    session_id = payload.get("sessionid")
    if session_id is not None:
        if registry.sessions.pop(session_id, None) != (str(sender), node):
            raise StanzaError("bad-request", "Unknown session")  # XEP-0050: bad-sessionid
        if action == "cancel":
            return _answer(node, session_id, AdhocResult("canceled"))
    elif action not in ("execute", "complete", "next"):
        raise StanzaError("bad-request")
    result = command.handler(AdhocRequest(sender, form_values(payload), request.origin))
    session_id = session_id or secrets.token_hex(8)
    if result.status == "executing":
        if len(registry.sessions) >= MAX_SESSIONS:
            registry.sessions.pop(next(iter(registry.sessions)))
        registry.sessions[session_id] = (str(sender), node)
    return _answer(node, session_id, result)


def _answer(node: str, session_id: str, result: AdhocResult) -> Element:
    answer = Element(COMMAND, {"node": node, "sessionid": session_id, "status": result.status})
    if result.status == "executing":
        actions = SubElement(answer, f"{{{NS}}}actions", {"execute": "complete"})
        SubElement(actions, f"{{{NS}}}complete")
    if result.note:
        SubElement(answer, f"{{{NS}}}note", {"type": result.note_type}).text = result.note
    if result.form is not None:
        answer.append(result.form)
    return answer
