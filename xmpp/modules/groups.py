"""Shared roster groups from a file (Prosody's mod_groups): every member of a
group sees the other members in their roster, subscription "both", under the
group's name. `groups_file` (relative to the config file):

    [Friends]
    alice@example.com=Alice
    bob@example.com
    [+Everyone]          ; "+": public, shown to every user of the host
    helpdesk@example.com=Help desk

The contacts are added when the roster is read and never stored; members
exchange presence as mutual subscribers do.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.roster import RosterItem
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules import presence

_SECTION = re.compile(r"^\s*\[(.*)\]\s*$")


@dataclass
class SharedGroups:
    groups: dict[str, dict[str, str | None]] = field(default_factory=dict)  # name -> jid -> label
    members: dict[str, list[str]] = field(default_factory=dict)  # jid -> groups
    public: list[str] = field(default_factory=list)

    def groups_of(self, jid: str) -> list[str]:
        return self.members.get(jid, []) + [g for g in self.public if g not in self.members.get(
            jid, [])]


def parse_groups(text: str, warn: Any = None) -> SharedGroups:
    """The groups of a groups_file (Prosody's format)."""
    shared = SharedGroups(groups={"default": {}})
    current = "default"
    for line in text.splitlines():
        section = _SECTION.match(line)
        if section:
            current = section.group(1)
            if current.startswith("+"):
                current = current[1:]
                shared.public.append(current)
            shared.groups.setdefault(current, {})
            continue
        entry, _, label = line.partition("=")
        if not entry.strip():
            continue
        try:
            jid = str(parse_jid(entry.split()[0]))
        except InvalidJID:
            if warn:
                warn("Invalid JID: %r", entry)
            continue
        shared.groups[current][jid] = label.strip() or None
        shared.members.setdefault(jid, []).append(current)
    return shared


def setup(m: ModuleContext) -> None:
    path_text = m.config.get_str("groups_file", None)
    if not path_text:
        return
    path = m.global_config.resolve_path(path_text)
    try:
        shared = parse_groups(Path(path).read_text(encoding="utf-8"), m.log.warning)
    except (OSError, UnicodeDecodeError) as error:
        m.log.error("groups_file %s cannot be read: %s", path, error)
        return

    def on_roster_load(event: Any) -> None:
        me = f"{event.username}@{event.host}"
        roster: dict[str, RosterItem] = event.roster
        for group in shared.groups_of(me):
            for jid, label in shared.groups.get(group, {}).items():
                if jid == me:
                    continue
                item = roster.get(jid)
                if item is None:
                    item = roster[jid] = RosterItem(jid, label)
                item.subscription = "both"
                if label and not item.name:
                    item.name = label
                if group not in item.groups:
                    item.groups = [*item.groups, group]

    def contacts(user: JID) -> set[str]:
        """The user's fellow group members."""
        me = str(user.bare)
        return {jid for group in shared.groups_of(me)
                for jid in shared.groups.get(group, {}) if jid != me}

    def stored(user: JID, *states: str) -> set[str]:
        return {jid for jid, item in m.typed_store("rosters").get_roster(
            user.domain, user.local).items() if item.subscription in states}

    def on_outbound(event: Any) -> None:
        """Broadcast presence also goes to group members (those the stored
        roster does not already cover)."""
        stanza, session = event.stanza, event.origin
        if stanza.get("to") or stanza.get("type") not in (None, "unavailable") \
                or getattr(session, "jid", None) is None:
            return
        user = session.jid
        for jid in contacts(user) - stored(user, "from", "both"):
            copied = copy.copy(stanza)
            copied.attrib = {**stanza.attrib, "from": str(user), "to": jid}
            m.route(copied)

    def on_unbind(event: Any) -> None:
        """A member who leaves without saying so is gone for the others too."""
        session = event.session
        if presence.presence_of(session).available:
            user = session.jid
            for jid in contacts(user) - stored(user, "from", "both"):
                m.route(presence.presence("unavailable", str(user), jid))

    def on_initial(event: Any) -> None:
        user = event.origin.jid
        for jid in contacts(user) - stored(user, "to", "both"):
            m.route(presence.presence("probe", str(user.bare), jid))

    def on_probe(event: Any) -> bool | None:
        """A group member's probe is answered as a subscriber's would be."""
        stanza = event.stanza
        if stanza.get("type") != "probe":
            return None
        try:
            prober = parse_jid(stanza.get("from", ""))
        except InvalidJID:
            return None
        if str(prober.bare) not in contacts(event.to):
            return None
        sessions = presence.available_sessions(m, event.to.bare)
        for session in sessions:
            last = presence.presence_of(session).presence
            if last is not None:
                copied = copy.copy(last)
                copied.attrib = {**last.attrib, "from": str(session.jid), "to": str(prober)}
                m.route(copied)
        if not sessions:
            m.route(presence.presence("unavailable", str(event.to.bare), str(prober)))
        return True

    m.hook("roster-load", on_roster_load)
    m.hook("pre-presence/bare", on_outbound, 1)  # broadcast presence has no `to`
    m.hook("presence/initial", on_initial)
    m.hook("pre-resource-unbind", on_unbind, 1)  # before mod_presence forgets the state
    m.hook("presence/bare", on_probe, 1)
