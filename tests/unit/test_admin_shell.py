"""The admin shell's line parser: Prosody shell calls read, never run as Lua."""

from __future__ import annotations

import pytest

from xmpp.modules.admin_shell import ShellError, parse_line


@pytest.mark.parametrize(("line", "parsed"), [
    ("c2s:show()", ("c2s", "show", [])),
    ('user:create("a@b.example", \'p,w"\')', ("user", "create", ["a@b.example", 'p,w"'])),
    (r'user:password("a@b", "x\"y\\z")', ("user", "password", ["a@b", 'x"y\\z'])),
    ("server:shutdown(nil, 2, true);", ("server", "shutdown", [None, 2, True])),
    ("  module : list ( 'x' ) ", ("module", "list", ["x"])),
])
def test_parse(line, parsed):
    assert parse_line(line) == parsed


@pytest.mark.parametrize("line", [
    "os.execute", "user:list(host)", 'user:list("a" "b")', "c2s:show(",
    "print(1)", 'user:list("unterminated)', "user:list(1,)",
])
def test_refused(line):
    with pytest.raises(ShellError):
        parse_line(line)
