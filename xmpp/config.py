"""Prosody 0.12 configuration files: real Lua, run in a sandbox, read through typed getters.

A config file is a Lua chunk. Assignments land in the current section (the
global one, a ``VirtualHost`` or a ``Component``) through the environment's
``__newindex``; section lines switch the current section; ``Include`` runs
other files, each starting in the global section as Prosody's do. The chunk
sees only a few harmless builtins (string, table, math, ...), never os, io,
require, load or debug, and runs under a memory and instruction budget.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

try:
    import lupa.lua54 as lupa
except ImportError:  # pragma: no cover - lupa built without a bundled Lua 5.4
    import lupa  # type: ignore[no-redef]

from xmpp.config_options import KNOWN_OPTIONS
from xmpp.jid import InvalidJID, parse_jid

log = logging.getLogger("config")

GLOBAL = "*"
MAX_INCLUDE_DEPTH = 16
# A config runs in well under a million instructions; this only stops endless loops.
INSTRUCTION_LIMIT = 50_000_000
MEMORY_LIMIT = 64 * 1024 * 1024
MAX_VALUE_DEPTH = 32
# Values (table keys and values counted one by one) one config may hold: tables
# sharing subtables would otherwise expand exponentially into Python.
MAX_VALUE_ITEMS = 200_000

_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0"})
# Chunks are named "=cfg#N" rather than by path: Lua truncates long chunk names
# in messages, which would lose the file a syntax error points at.
_CHUNK_POSITION = re.compile(r"cfg#(\d+):(\d+):")
_ERROR_AT = re.compile(r"\Acfg#(\d+):(\d+): ?(.*)\Z", re.S)

_SANDBOX_LUA = r"""
local hooks, store, max_depth, instruction_limit = ...
local getinfo, sethook = debug.getinfo, debug.sethook
local load, pcall, error, type, pairs, setmetatable = load, pcall, error, type, pairs, setmetatable

local function copy(library)
    local result = {}
    for k, v in pairs(library) do result[k] = v end
    return result
end

-- Lua patterns backtrack inside one C call, out of reach of the instruction hook:
-- string.rep("a", 5000):match("(.-)(.-)(.-)b") would run for hours.
local safe_string = copy(string)
safe_string.dump = nil
for _, name in ipairs({ "find", "match", "gmatch", "gsub" }) do
    safe_string[name] = function ()
        error("string." .. name .. " is not available in the configuration "
            .. "(Lua patterns can run without bound)", 2)
    end
end
-- Methods of strings, ("x"):find(...), go through this metatable.
getmetatable("").__index = safe_string

local builtins = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    select = select, tonumber = tonumber, tostring = tostring, type = type,
    rawequal = rawequal, rawlen = rawlen, _VERSION = _VERSION,
    string = safe_string, table = copy(table), math = copy(math), utf8 = copy(utf8),
}

local run_file

local function new_env(file_id, depth)
    local current = "*"
    local api = {}

    local function set_option(section, name, value, level)
        local info = getinfo(level + 1, "Sl")
        hooks.option(section, name, info.source, info.currentline)
        store[section][name] = value
    end

    local function enter(kind, name, level)
        if type(name) ~= "string" then
            error(kind .. " must have a name", level + 1)
        end
        local key, err = hooks.section(kind, name)
        if not key then error(err, level + 1) end
        store[key] = store[key] or {}
        current = key
        return key
    end

    -- The block form, VirtualHost "x" { ... }: set the options, then back to global.
    local function apply_block(key, options, level)
        current = "*"
        if type(options) ~= "table" then
            error("expected a table of options after the section line, got a " .. type(options),
                level + 1)
        end
        for name, value in pairs(options) do
            set_option(key, name, value, level + 1)
        end
    end

    function api.VirtualHost(name)
        local key = enter("VirtualHost", name, 2)
        return function (options)
            if type(options) == "string" then
                error(("VirtualHost entries do not accept a module name (module '%s' provided "
                    .. "for host '%s')"):format(options, key), 2)
            end
            apply_block(key, options, 2)
        end
    end

    function api.Component(name)
        local key = enter("Component", name, 2)
        return function (module_or_options)
            if type(module_or_options) == "string" then
                hooks.component_module(key, module_or_options)
                return function (options) apply_block(key, options, 2) end
            end
            apply_block(key, module_or_options, 2)
        end
    end

    function api.Include(pattern)
        if type(pattern) ~= "string" then error("Include expects a file name", 2) end
        if depth >= max_depth then
            error("Include nested more than " .. max_depth .. " levels deep", 2)
        end
        local ids, err = hooks.include(pattern, file_id)
        if not ids then error(err, 2) end
        for i = 1, #ids do run_file(ids[i], depth + 1) end
    end

    function api.RunScript()
        error("RunScript is not supported: the configuration runs in a sandbox", 2)
    end

    api.Host, api.host, api.component, api.include =
        api.VirtualHost, api.VirtualHost, api.Component, api.Include

    return setmetatable({}, {
        __index = function (_, name)
            local value = builtins[name]
            if value ~= nil then return value end
            value = api[name]
            if value ~= nil then return value end
            if type(name) == "string" and name:sub(1, 4) == "ENV_" then
                return hooks.getenv(name:sub(5))
            end
            value = store[current][name]
            if value == nil then value = store["*"][name] end
            return value
        end,
        __newindex = function (_, name, value)
            set_option(current, name, value, 2)
        end,
    })
end

function run_file(file_id, depth)
    local chunkname, text = hooks.source(file_id)
    local chunk, err = load(text, chunkname, "t", new_env(file_id, depth))
    if not chunk then error(err, 0) end
    chunk()
end

return function (file_id)
    sethook(function ()
        error("the configuration runs too long (an endless loop?)", 2)
    end, "", instruction_limit)
    local ok, err = pcall(run_file, file_id, 0)
    sethook()
    if not ok and type(err) ~= "string" then err = "error: " .. tostring(err) end
    return ok, err
end
"""


class ConfigError(Exception):
    """A config file that cannot be loaded: unreadable, bad Lua, or a failing statement."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")


class _Unconvertible(Exception):
    """A Lua value with no Python counterpart (function, userdata, a cycle)."""


class _TooManyValues(Exception):
    """The config's values, converted, would pass MAX_VALUE_ITEMS."""


def _deny_attributes(obj: object, name: str, is_setting: bool) -> str:
    # Config code never receives Python objects; refuse attribute access anyway.
    raise AttributeError(name)


def _number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _to_python(value: Any, budget: list[int], depth: int = 0) -> Any:
    """The Python value of a Lua value; budget[0] is how many more values may be converted."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooManyValues(f"the configuration holds more than {MAX_VALUE_ITEMS} values")
    kind = lupa.lua_type(value)
    if kind is None:
        return _number(value)
    if kind != "table":
        raise _Unconvertible(f"a Lua {kind} cannot be a configuration value")
    if depth >= MAX_VALUE_DEPTH:
        raise _Unconvertible("tables nested too deeply (does a table contain itself?)")
    items = [(_to_python(k, budget, depth + 1), _to_python(v, budget, depth + 1))
             for k, v in value.items()]
    keys = [k for k, _ in items]
    if all(type(k) is int for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
        return [v for _, v in sorted(items, key=lambda item: item[0])]
    return dict(items)


class _Section:
    def __init__(self, kind: str, name: str | None) -> None:
        self.kind = kind
        self.name = name
        self.module: str | None = None
        # Option name -> (file, line) of its first assignment; insertion order is file order.
        self.origin: dict[str, tuple[str, int]] = {}

    @property
    def label(self) -> str:
        return "the global section" if self.name is None else f'{self.kind} "{self.name}"'


class _Loader:
    """Runs the sandboxed Lua and records sections, files and warnings as it goes."""

    def __init__(self) -> None:
        self.files: list[Path] = []
        self.texts: list[str] = []
        self.sections: dict[str, _Section] = {GLOBAL: _Section("global", None)}
        self.warnings: list[str] = []
        self.values_left = [MAX_VALUE_ITEMS]  # shared by every option's conversion
        self.lua = lupa.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_deny_attributes,
            max_memory=MEMORY_LIMIT,
        )
        self.store = self.lua.table_from({GLOBAL: self.lua.table()})
        hooks = self.lua.table_from({
            "option": self._on_option,
            "section": self._on_section,
            "component_module": self._on_component_module,
            "include": self._on_include,
            "source": self._on_source,
            "getenv": os.environ.get,
        })
        self.run = self.lua.execute(
            _SANDBOX_LUA, hooks, self.store, MAX_INCLUDE_DEPTH, INSTRUCTION_LIMIT
        )

    # -- files ---------------------------------------------------------------

    def add_file(self, path: Path) -> int:
        """Read a config file; return its id or raise ConfigError."""
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ConfigError(str(path), None, f"cannot read: {e.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise ConfigError(str(path), line, "not valid UTF-8") from None
        self.files.append(path)
        self.texts.append(text)
        return len(self.files) - 1

    def _file_of(self, source: str) -> str:
        match = re.fullmatch(r"=cfg#(\d+)", source or "")
        return str(self.files[int(match.group(1))]) if match else "?"

    def error_from_lua(self, message: str) -> ConfigError:
        """Turn a Lua error message into a ConfigError naming the file and line."""
        match = _ERROR_AT.match(message)
        if not match:
            return ConfigError(str(self.files[0]), None, message)
        file_id, line, text = int(match.group(1)), int(match.group(2)), match.group(3)
        text = _CHUNK_POSITION.sub(lambda m: f"{self.files[int(m.group(1))]}:{m.group(2)}:", text)
        return ConfigError(str(self.files[file_id]), line, text)

    # -- hooks called from Lua -------------------------------------------------

    def _on_source(self, file_id: int) -> tuple[str, str]:
        return f"=cfg#{file_id}", self.texts[file_id]

    def _on_section(self, kind: str, name: str) -> tuple[str | None, str | None]:
        if name == GLOBAL:
            if kind == "Component":
                return None, 'a Component cannot be named "*"'
            return GLOBAL, None
        try:
            jid = parse_jid(name)
        except InvalidJID:
            jid = None
        if jid is None or jid.local is not None or jid.resource is not None:
            return None, f"Name of {kind} {name!r} contains forbidden characters"
        key = jid.domain
        section = self.sections.get(key)
        if section is not None and section.kind != kind:
            return None, (
                f'{kind} "{key}" clashes with the {section.kind} of the same name defined '
                f"earlier; for services use a sub-domain like conference.{key}"
            )
        if section is None:
            section = self.sections[key] = _Section(kind, key)
        if kind == "Component":
            # Prosody: a bare `Component "x"` line makes x an external component again.
            section.module = None
        return key, None

    def _on_component_module(self, key: str, module: str) -> None:
        # "component" is Prosody's own name for the external-component module.
        self.sections[key].module = None if module == "component" else module

    def _on_option(self, key: str, name: Any, source: str, line: int) -> None:
        section = self.sections[key]
        file = self._file_of(source)
        where = f"{file}:{line}"
        if not isinstance(name, str):
            self.warnings.append(f"{where}: ignoring a value without an option name "
                                 f"({name!r}) in {section.label}")
            return
        if name in section.origin:
            self.warnings.append(f"{where}: duplicate option '{name}' in {section.label}")
            return
        if name not in KNOWN_OPTIONS:
            self.warnings.append(f"{where}: unknown option '{name}' in {section.label}")
        section.origin[name] = (file, line)

    def _on_include(self, pattern: str, file_id: int) -> Any:
        target = self.files[file_id].parent / pattern
        try:
            if any(c in pattern for c in "*?["):
                paths = [Path(p) for p in sorted(glob.glob(str(target))) if Path(p).is_file()]
            else:
                paths = [target]
            ids = [self.add_file(path) for path in paths]
        except ConfigError as e:
            return None, f"Error loading included {e}"
        return self.lua.table_from(ids), None

    # -- results -----------------------------------------------------------------

    def options_of(self, key: str) -> dict[str, Any]:
        """The Python values of one section's options, in file order."""
        section = self.sections[key]
        values = self.store[key]
        result: dict[str, Any] = {}
        for name, (file, line) in section.origin.items():
            try:
                value = _to_python(values[name], self.values_left)
            except _Unconvertible as e:
                problem = str(e)
            except UnicodeDecodeError:
                problem = "a string in it is not valid UTF-8"
            except _TooManyValues as e:
                raise ConfigError(file, line, str(e)) from None
            else:
                if value is not None:
                    result[name] = value
                continue
            self.warnings.append(
                f"{file}:{line}: option '{name}' in {section.label} ignored: {problem}"
            )
        return result


class _Options:
    """Typed, bounded option getters shared by the global section and the hosts."""

    config: Config

    def _lookup(self, name: str) -> tuple[bool, Any, str]:
        """Return (found, value, label of the section that supplied it)."""
        raise NotImplementedError

    def _invalid(self, name: str, label: str, value: Any, expected: str, default: Any) -> Any:
        self.config.warn(f"option '{name}' in {label}: expected {expected}, got {value!r}; "
                         f"using the default {default!r}")
        return default

    def get(self, name: str, default: Any = None) -> Any:
        """The option's value, or default when it is not set."""
        found, value, _ = self._lookup(name)
        return value if found else default

    def _bounded(self, name: str, label: str, value: Any, lo: Any, hi: Any) -> Any:
        if lo is not None and value < lo:
            self.config.warn(f"option '{name}' in {label}: {value} is below the minimum "
                             f"{lo}; using {lo}")
            return lo
        if hi is not None and value > hi:
            self.config.warn(f"option '{name}' in {label}: {value} is above the maximum "
                             f"{hi}; using {hi}")
            return hi
        return value

    def _as_number(self, value: Any) -> int | float | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return value
        if isinstance(value, str):
            for parse in (int, float):
                try:
                    return parse(value)
                except ValueError:
                    pass
        return None

    def get_number(self, name: str, default: Any, *, min: Any = None, max: Any = None) -> Any:
        """A number (an int when integral); warns and clamps when out of [min, max]."""
        found, value, label = self._lookup(name)
        if not found:
            return default
        number = self._as_number(value)
        if number is None or math.isnan(number):
            return self._invalid(name, label, value, "a number", default)
        return self._bounded(name, label, _number(number), min, max)

    def get_int(self, name: str, default: Any, *, min: int | None = None,
                max: int | None = None) -> Any:
        """An integer; warns and clamps when out of [min, max]."""
        found, value, label = self._lookup(name)
        if not found:
            return default
        number = self._as_number(value)
        if number is None or not math.isfinite(number):
            return self._invalid(name, label, value, "an integer", default)
        if isinstance(number, float):
            self.config.warn(f"option '{name}' in {label}: {value!r} is not an integer; "
                             f"using {int(number)}")
        return self._bounded(name, label, int(number), min, max)

    def get_bool(self, name: str, default: Any) -> Any:
        """A boolean; also accepts Prosody's "yes"/"no", "true"/"false", 1/0."""
        found, value, label = self._lookup(name)
        if not found:
            return default
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower() if isinstance(value, str | int) else None
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        return self._invalid(name, label, value, "true or false", default)

    def get_str(self, name: str, default: str | None) -> str | None:
        """A string; numbers are turned into their text, a one-item list into its item."""
        found, value, label = self._lookup(name)
        if not found:
            return default
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return self._invalid(name, label, value, "a string", default)

    def get_list(self, name: str, default: Any = ()) -> list:
        """A list; a lone value (such as a string) becomes a one-item list."""
        found, value, label = self._lookup(name)
        if not found:
            return list(default)
        if isinstance(value, list):
            return list(value)
        if isinstance(value, dict):
            return list(self._invalid(name, label, value, "a list", default))
        return [value]


class Config(_Options):
    """A loaded config file: the global section and every host, in file order.

    Warnings found while loading (unknown or duplicate options, ignored values)
    are in ``warnings`` for the caller to report; warnings raised later by the
    getters are appended there too and logged.
    """

    def __init__(self, path: Path, globals: dict[str, Any]) -> None:
        self.config = self
        self.path = path
        self.base_dir = path.parent
        self.globals = globals
        self.hosts: dict[str, HostConfig] = {}
        self.warnings: list[str] = []
        self._loading = True

    def __repr__(self) -> str:
        return f"<Config {self.path} hosts={list(self.hosts)}>"

    def _lookup(self, name: str) -> tuple[bool, Any, str]:
        return name in self.globals, self.globals.get(name), "the global section"

    def warn(self, message: str) -> None:
        """Record a configuration warning (and log it once the server is running)."""
        self.warnings.append(message)
        if not self._loading:
            log.warning("%s", message)

    def resolve_path(self, value: str) -> Path:
        """A path from the config: relative ones are relative to the config file's directory."""
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path

    def host(self, name: str) -> HostConfig | None:
        """The VirtualHost or Component of that name (enabled or not), or None."""
        return self.hosts.get(name.rstrip(".").lower())

    def virtual_hosts(self) -> list[HostConfig]:
        """The enabled VirtualHosts, in file order (``hosts`` also has the disabled ones)."""
        return [h for h in self.hosts.values() if h.kind == "VirtualHost" and h.enabled]

    def components(self) -> list[HostConfig]:
        """The enabled Components, in file order (``hosts`` also has the disabled ones)."""
        return [h for h in self.hosts.values() if h.kind == "Component" and h.enabled]


class HostConfig(_Options):
    """One VirtualHost or Component section; its lookups fall back to the global section."""

    def __init__(self, config: Config, name: str, kind: Literal["VirtualHost", "Component"],
                 module: str | None, options: dict[str, Any]) -> None:
        self.config = config
        self.name = name
        self.kind = kind
        self.module = module
        self.options = options
        self.enabled: bool = bool(self.get_bool("enabled", True))

    def __repr__(self) -> str:
        module = f" {self.module!r}" if self.module else ""
        return f"<HostConfig {self.kind} {self.name!r}{module}>"

    @property
    def label(self) -> str:
        return f'{self.kind} "{self.name}"'

    def _lookup(self, name: str) -> tuple[bool, Any, str]:
        if name in self.options:
            return True, self.options[name], self.label
        return self.config._lookup(name)

    def _own_list(self, options: dict[str, Any], name: str, label: str) -> list[str]:
        value = options.get(name, [])
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(m, str) for m in items):
            self.config.warn(f"option '{name}' in {label}: expected a list of module names, "
                             f"got {value!r}; ignoring it")
            return []
        return items

    def modules(self) -> list[str]:
        """The modules to load on this host, in order, without duplicates.

        A VirtualHost gets the global modules_enabled plus its own, minus the
        global and its own modules_disabled. A Component gets its module (if
        internal) plus its own modules_enabled minus its own modules_disabled:
        global modules are not loaded onto components.
        """
        glob_opts, glob_label = self.config.globals, "the global section"
        if self.kind == "Component":
            enabled = [self.module] if self.module else []
            disabled: list[str] = []
        else:
            enabled = self._own_list(glob_opts, "modules_enabled", glob_label)
            disabled = self._own_list(glob_opts, "modules_disabled", glob_label)
        enabled = enabled + self._own_list(self.options, "modules_enabled", self.label)
        disabled = set(disabled + self._own_list(self.options, "modules_disabled", self.label))
        return [m for m in dict.fromkeys(enabled) if m not in disabled]


def load_config(path: str | os.PathLike) -> Config:
    """Load a Prosody-style config file (and its Includes); raise ConfigError on failure."""
    loader = _Loader()
    main = loader.add_file(Path(path).absolute())
    ok, message = loader.run(main)
    if not ok:
        raise loader.error_from_lua(message)
    config = Config(loader.files[main], loader.options_of(GLOBAL))
    for key, section in loader.sections.items():
        if key != GLOBAL:
            options = loader.options_of(key)
            config.hosts[key] = HostConfig(config, key, section.kind, section.module, options)
    config.warnings[:0] = loader.warnings
    config._loading = False
    return config


#: The `authentication` providers Vireo has: the internal ones (both keep SCRAM
#: material only) and "anonymous" (xmpp.modules.auth_anonymous).
AUTHENTICATION_PROVIDERS = ("internal_hashed", "internal_plain", "anonymous")


def check_authentication(config: Config) -> None:
    """Raise ConfigError when an enabled VirtualHost names an `authentication`
    provider Vireo does not have: serving it with password logins in its place
    would run the host in a way its operator did not choose (anonymous, LDAP...)."""
    problems = [f"{host.label}: authentication = {provider!r} is not available in Vireo"
                for host in config.virtual_hosts()
                if (provider := host.get("authentication", "internal_hashed"))
                not in AUTHENTICATION_PROVIDERS]
    if problems:
        known = " or ".join(f'"{name}"' for name in AUTHENTICATION_PROVIDERS)
        raise ConfigError(str(config.path), None, "; ".join(problems) + f" (use {known})")
