"""Shared roster groups from a file (Prosody's mod_groups): every member of a
group sees the other members in their roster, subscription "both", under the
group's name. `groups_file` (relative to the config file):

    [Friends]
    alice@example.com=Alice
    bob@example.com
    [+Everyone]          ; "+": public, shown to every user of the host
    helpdesk@example.com=Help desk

The contacts are added when the roster is read and never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.roster import RosterItem
from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext

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

    m.hook("roster-load", on_roster_load)
