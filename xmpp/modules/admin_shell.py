"""Prosody's mod_admin_shell: the console `prosodyctl shell` talks to, here
`app.py shell`, over the admin socket (xmpp/admin.py, root or the server's
user only).

A line is one call as operators type it into Prosody's shell,
`section:command(arguments)` with Lua literal arguments (strings, numbers,
true, false, nil): `c2s:show()`, `user:create("a@example.com", "pw")`.
It is parsed, never run as Lua. The answer is what the command prints and
its result, "OK: ..." or "! ..." as Prosody writes them.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storage.accounts import AccountExists
from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.version import SERVER_VERSION

_CALL = re.compile(r"\s*([A-Za-z_]\w*)\s*[:.]\s*([A-Za-z_]\w*)\s*\((.*)\)\s*;?\s*\Z", re.S)
_TOKEN = re.compile(r"""\s*(?:
    "(?P<dq>(?:[^"\\\n]|\\.)*)"
  | '(?P<sq>(?:[^'\\\n]|\\.)*)'
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<word>nil|true|false)
)\s*(?P<sep>,|\Z)""", re.X | re.S)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


class ShellError(Exception):
    """A line the shell cannot run: the "! ..." answer."""


@dataclass
class Output:
    """What one command printed, and its result."""

    lines: list[str] = field(default_factory=list)

    def print(self, *parts: Any) -> None:
        self.lines.append(" ".join(str(part) for part in parts))


def parse_line(line: str) -> tuple[str, str, list[Any]]:
    """(section, command, arguments) of `section:command(args)`; ShellError otherwise."""
    match = _CALL.match(line)
    if match is None:
        raise ShellError("expected a command like c2s:show() or user:list(\"example.com\")")
    section, command, text = match.groups()
    args: list[Any] = []
    position = 0
    text = text.strip()
    while position < len(text):
        token = _TOKEN.match(text, position)
        if token is None:
            raise ShellError(f"cannot read the arguments at {text[position:]!r}: "
                             f"use quoted strings, numbers, true, false or nil")
        args.append(_value(token))
        position = token.end()
        if (token.group("sep") == "") != (position == len(text)):
            raise ShellError("arguments must be separated by commas")
    return section, command, args


def _value(token: re.Match[str]) -> Any:
    quoted = token.group("dq") if token.group("dq") is not None else token.group("sq")
    if quoted is not None:
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), quoted)
    if token.group("num") is not None:
        number = float(token.group("num"))
        return int(number) if number.is_integer() else number
    return {"nil": None, "true": True, "false": False}[token.group("word")]


Command = Callable[..., str]


class Shell:
    """The commands, on the module API and what the admin socket hands over."""

    def __init__(self, m: ModuleContext) -> None:
        self.m = m
        self.commands: dict[tuple[str, str], Command] = {
            ("c2s", "show"): self.c2s_show,
            ("s2s", "show"): self.s2s_show,
            ("module", "list"): self.module_list,
            ("user", "create"): self.user_create,
            ("user", "password"): self.user_password,
            ("user", "delete"): self.user_delete,
            ("user", "list"): self.user_list,
            ("server", "version"): lambda out, event: SERVER_VERSION,
            ("server", "uptime"): self.server_uptime,
            ("server", "shutdown"): self.server_shutdown,
        }

    def run(self, line: str, event: Any) -> dict[str, Any]:
        """The answer to one line: {"output": [...], "result": "OK: ..." | "! ..."}."""
        out = Output()
        try:
            if line.strip() in ("help", "help()"):
                out.lines += [f"{section}:{command}()" for section, command in
                              sorted(self.commands)]
                result = f"OK: {len(self.commands)} commands"
            else:
                section, command, args = parse_line(line)
                handler = self.commands.get((section, command))
                if handler is None:
                    raise ShellError(f"unknown command {section}:{command}() (try help)")
                try:
                    inspect.signature(handler).bind(out, event, *args)
                except TypeError as error:
                    raise ShellError(f"wrong arguments for {section}:{command}()") from error
                result = f"OK: {handler(out, event, *args)}"
        except ShellError as error:
            result = f"! {error}"
        return {"output": out.lines, "result": result}

    # -- sessions -------------------------------------------------------------------

    def _show(self, out: Output, event: Any, kinds: tuple[str, ...], label: str,
              match: str | None = None) -> str:
        rows = [row for row in event.sessions() if row.get("kind", "").startswith(kinds)]
        total = len(rows)
        if match is not None:
            rows = [row for row in rows if row.get("id") == match]
        rows.sort(key=lambda row: str(row.get("id")))
        for row in rows:
            peer = f"{row.get('address')}:{row.get('port')}"
            secure = "(secure)" if row.get("secure") else "(insecure)"
            out.print(f"{row.get('kind'):<8} {row.get('id') or '-':<40} {peer:<24} {secure}")
        if match is not None:
            return f"{len(rows)} out of {total} {label} sessions shown"
        return f"{total} {label} sessions shown"

    def c2s_show(self, out: Output, event: Any, match: str | None = None) -> str:
        return self._show(out, event, ("c2s",), "c2s", match)

    def s2s_show(self, out: Output, event: Any, match: str | None = None) -> str:
        return self._show(out, event, ("s2s",), "s2s", match)

    # -- modules and server ---------------------------------------------------------

    def module_list(self, out: Output, event: Any, host: str | None = None) -> str:
        hosts = self.m.hosts()
        names = [host] if host else ["*", *sorted(hosts)]
        for name in names:
            out.print("Global:" if name == "*" else f"{name}:")
            modules = (self.m.host.modules if name == "*" else
                       hosts[name].modules if name in hosts else None)
            if modules is None:
                out.print("    Host not found")
            for module in sorted(modules or ()):
                out.print(f"    {module}")
        return f"{len(names)} host(s)"

    def server_uptime(self, out: Output, event: Any) -> str:
        seconds = int(self.m.now() - self.m.process_started)
        minutes, hours, days = seconds // 60 % 60, seconds // 3600 % 24, seconds // 86400
        since = time.strftime("%c", time.localtime(self.m.process_started))
        return (f"This server has been running for {days} day{_s(days)}, {hours} hour"
                f"{_s(hours)} and {minutes} minute{_s(minutes)} (since {since})")

    def server_shutdown(self, out: Output, event: Any, reason: str | None = None) -> str:
        event.shutdown(reason)
        return "Shutdown initiated"

    # -- accounts ---------------------------------------------------------------------

    def _account(self, jid_text: Any) -> tuple[Any, str]:
        if not isinstance(jid_text, str):
            raise ShellError("expected a JID string")
        try:
            jid = parse_jid(jid_text)
        except InvalidJID as error:
            raise ShellError(f"invalid JID {jid_text!r}: {error}") from error
        users = self.m.users_of(jid.domain)
        if users is None:
            raise ShellError(f"No such host: {jid.domain}")
        if not jid.local or jid.resource:
            raise ShellError(f"expected user@host, got {jid_text!r}")
        return users, jid.local

    def user_create(self, out: Output, event: Any, jid: Any, password: Any,
                    _roles: Any = None) -> str:
        users, username = self._account(jid)
        if not isinstance(password, str) or not password:
            raise ShellError("expected a password")
        try:
            users.create(username, password)
        except AccountExists as error:
            raise ShellError("User exists") from error
        return "User created"

    def user_password(self, out: Output, event: Any, jid: Any, password: Any) -> str:
        users, username = self._account(jid)
        if not isinstance(password, str) or not password:
            raise ShellError("expected a password")
        if not users.set_password(username, password):
            raise ShellError("No such user")
        return "User password changed"

    def user_delete(self, out: Output, event: Any, jid: Any) -> str:
        users, username = self._account(jid)
        if not users.exists(username):
            raise ShellError("No such user")
        users.delete(username)
        return "User deleted"

    def user_list(self, out: Output, event: Any, host: Any = None,
                  pattern: Any = None) -> str:
        if not isinstance(host, str):
            raise ShellError("No host given")
        users = self.m.users_of(host)
        if users is None:
            raise ShellError("No such host")
        names = users.list()
        try:
            shown = [name for name in names
                     if pattern is None or re.search(str(pattern), name)]
        except re.error as error:
            raise ShellError(f"bad pattern: {error}") from error
        for name in shown:
            out.print(f"{name}@{host}")
        if pattern is None:
            return f"Showing all {len(names)} users"
        return f"Showing {len(shown)} of {len(names)} users"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def setup(m: ModuleContext) -> None:
    shell = Shell(m)

    def on_shell(event: Any) -> dict[str, Any]:
        line = event.request.get("line")
        if not isinstance(line, str):
            return {"output": [], "result": "! expected a line"}
        return shell.run(line, event)

    m.hook("admin/shell", on_shell)
