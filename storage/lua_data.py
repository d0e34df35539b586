"""Prosody's internal storage files, read in a Lua sandbox with limits.

Prosody's datamanager writes `.dat` files as `return { ... };` and `.list`
files as one `item({ ... });` per line. Both are Lua, so they are run, not
parsed by hand: each in a fresh runtime with no libraries reachable from the
chunk (its environment is empty but for `item`), a memory ceiling and an
instruction budget, so a hostile file can neither reach the host nor spin.

Values come back as `LuaValue`: None, bool, int, float, bytes (Lua strings are
bytes; callers decide what must be UTF-8) or `LuaTable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

try:
    import lupa.lua54 as lupa
except ImportError:  # pragma: no cover - lupa built without a bundled Lua 5.4
    import lupa  # type: ignore[no-redef]

MAX_FILE_SIZE = 64 * 1024 * 1024
MEMORY_LIMIT = 256 * 1024 * 1024
INSTRUCTION_LIMIT = 200_000_000
MAX_DEPTH = 64  # stanzas and tables nest no deeper in real data
XML_NS = "http://www.w3.org/XML/1998/namespace"

_RUNNER = """
local load, pcall, error, sethook = load, pcall, error, debug.sethook
return function (text, chunkname, limit, collect)
    local env = {}
    if collect then env.item = function (value) collect(value) end end
    local chunk, err = load(text, chunkname, "t", env)
    if not chunk then return false, err end
    sethook(function () error("the file runs too long", 2) end, "", limit)
    local ok, result = pcall(chunk)
    sethook()
    return ok, result
end
"""


class DataFileError(Exception):
    """A data file that cannot be read: names the file and what is wrong."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class LuaTable(dict):
    """A Lua table: its keys as they were (bytes, numbers, booleans)."""

    def sequence(self) -> list[Any]:
        """The array part, 1..n, in order."""
        return [self[index] for index in range(1, len(self) + 1) if index in self]


LuaValue = None | bool | int | float | bytes | LuaTable


def _convert(value: Any, depth: int = 0) -> LuaValue:
    kind = lupa.lua_type(value)
    if kind is None:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
    if kind != "table":
        raise ValueError(f"a Lua {kind} is not data")
    if depth >= MAX_DEPTH:
        raise ValueError("tables nested too deeply")
    return LuaTable((_convert(k, depth + 1), _convert(v, depth + 1)) for k, v in value.items())


class LuaDataReader:
    """Runs Prosody data files; one runtime per file, so nothing leaks between them."""

    def _run(self, path: Path, collect: Any = None) -> Any:
        try:
            size = path.stat().st_size
            if size > MAX_FILE_SIZE:
                raise DataFileError(path, f"{size} bytes, more than the {MAX_FILE_SIZE} read")
            text = path.read_bytes()
        except OSError as error:
            raise DataFileError(path, error.strerror or str(error)) from error
        runtime = lupa.LuaRuntime(register_eval=False, register_builtins=False,
                                  encoding=None, max_memory=MEMORY_LIMIT)
        run = runtime.execute(_RUNNER)
        try:
            ok, result = run(text, b"=" + path.name.encode(), INSTRUCTION_LIMIT, collect)
        except lupa.LuaMemoryError as error:
            raise DataFileError(path, "the file needs too much memory") from error
        except lupa.LuaError as error:
            raise DataFileError(path, _message(error)) from error
        if not ok:
            raise DataFileError(path, _message(result))
        return result

    def load(self, path: Path) -> LuaValue:
        """A `.dat` file's value."""
        result = self._run(path)
        try:
            return _convert(result)
        except ValueError as error:
            raise DataFileError(path, str(error)) from error

    def load_list(self, path: Path) -> list[LuaValue]:
        """A `.list` file's items, in order."""
        items: list[LuaValue] = []
        errors: list[str] = []

        def collect(value: Any) -> None:
            try:
                items.append(_convert(value))
            except ValueError as error:
                errors.append(str(error))
                raise

        self._run(path, collect)
        if errors:
            raise DataFileError(path, errors[0])
        return items


def _message(error: Any) -> str:
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return text.strip().splitlines()[0] if text.strip() else "error"


def text(value: LuaValue, what: str) -> str:
    """A Lua string that must be UTF-8 text; ValueError naming `what` otherwise."""
    if not isinstance(value, bytes):
        raise ValueError(f"{what} is not a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} is not UTF-8") from error


def to_json(value: LuaValue, depth: int = 0) -> Any:
    """A table of plain data as JSON-compatible Python: a 1..n table is a list,
    other tables objects with text keys."""
    if isinstance(value, bytes):
        return text(value, "a string")
    if not isinstance(value, LuaTable):
        return value
    if depth >= MAX_DEPTH:
        raise ValueError("tables nested too deeply")
    if value and all(isinstance(key, int) for key in value) \
            and sorted(value) == list(range(1, len(value) + 1)):
        return [to_json(item, depth + 1) for item in value.sequence()]
    result = {}
    for key, item in value.items():
        if not isinstance(key, bytes):
            raise ValueError(f"a table key {key!r} that is not a string")
        result[text(key, "a table key")] = to_json(item, depth + 1)
    return result


def to_element(value: LuaValue, parent_ns: str = "jabber:client", depth: int = 0) -> Element:
    """A stanza as Prosody preserializes it ({name=, attr={}, children...})."""
    if not isinstance(value, LuaTable) or not isinstance(value.get(b"name"), bytes):
        raise ValueError("not a serialized XML element")
    if depth >= MAX_DEPTH:
        raise ValueError("elements nested too deeply")
    attrs = value.get(b"attr") or LuaTable()
    if not isinstance(attrs, LuaTable):
        raise ValueError("element attributes are not a table")
    namespace = parent_ns
    plain: dict[str, str] = {}
    for key, item in attrs.items():
        name = text(key, "an attribute name")
        if name == "xmlns":
            namespace = text(item, "a namespace")
            continue
        # Prosody writes a namespaced attribute as "namespace\1name".
        ns_part, sep, local = name.rpartition("\1")
        if sep:
            name = f"{{{ns_part}}}{local}"
        elif name.startswith("xml:"):
            name = f"{{{XML_NS}}}{name[4:]}"
        plain[name] = text(item, f"attribute {name}")
    element = Element(f"{{{namespace}}}{text(value[b'name'], 'an element name')}", plain)
    last: Element | None = None
    for child in value.sequence():
        if isinstance(child, bytes):
            content = text(child, "element text")
            if last is None:
                element.text = (element.text or "") + content
            else:
                last.tail = (last.tail or "") + content
        else:
            last = to_element(child, namespace, depth + 1)
            element.append(last)
    return element


def decode_name(encoded: str) -> str:
    """Prosody's datamanager file name decoding (%xx for every non-alphanumeric byte).

    ValueError when the name is not UTF-8."""
    raw = bytearray()
    index = 0
    data = encoded.encode("utf-8", "surrogateescape")
    while index < len(data):
        if data[index:index + 1] == b"%" and index + 3 <= len(data):
            try:
                raw.append(int(data[index + 1:index + 3], 16))
                index += 3
                continue
            except ValueError:
                pass
        raw.append(data[index])
        index += 1
    return bytes(raw).decode("utf-8")


def encode_name(name: str) -> str:
    """Prosody's datamanager file name encoding."""
    return "".join(c if c.isascii() and c.isalnum() else
                   "".join(f"%{b:02x}" for b in c.encode("utf-8")) for c in name)


def data_files(directory: Path, extension: str) -> Iterator[tuple[str, Path]]:
    """(encoded name, path) of the `.extension` files of a store directory."""
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        if path.suffix == f".{extension}" and path.is_file():
            yield path.stem, path
