"""Prosody-style configuration loading: sections, Include, values, modules, errors, sandbox."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xmpp.config import Config, ConfigError, load_config
from xmpp.config_options import KNOWN_OPTIONS

CONFIGS = Path(__file__).parent / "configs"
REPO = Path(__file__).parents[2]
# The reference documents sit next to the project (`../shared/spec`).
SPEC = REPO.parent / "shared" / "spec"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, "prosody.cfg.lua", text))


def load_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value


# -- sections and lookup --------------------------------------------------------


def test_global_and_host_lookup_fall_back(tmp_path):
    config = load(tmp_path, """
        c2s_timeout = 120
        http_host = "global.example"
        VirtualHost "a.example"
            http_host = "a-http.example"
        VirtualHost "b.example"
    """)
    a, b = config.host("a.example"), config.host("b.example")
    assert config.get("c2s_timeout") == 120
    assert a.get("http_host") == "a-http.example"
    assert b.get("http_host") == "global.example"
    assert b.get_int("c2s_timeout", 300) == 120
    assert a.options == {"http_host": "a-http.example"}
    assert b.options == {}
    assert config.get("http_host") == "global.example"
    assert config.get("missing", "dflt") == "dflt"
    assert b.get("missing") is None


def test_options_after_a_section_line_belong_to_it_and_host_star_returns_to_global(tmp_path):
    config = load(tmp_path, """
        VirtualHost "a.example"
            c2s_timeout = 10
        Host "*"
            s2s_timeout = 20
        VirtualHost "b.example"
            c2s_timeout = 30
    """)
    assert config.host("a.example").options == {"c2s_timeout": 10}
    assert config.host("b.example").options == {"c2s_timeout": 30}
    assert config.globals == {"s2s_timeout": 20}
    assert list(config.hosts) == ["a.example", "b.example"]


def test_block_form_returns_to_global_and_sections_reopen(tmp_path):
    config = load(tmp_path, """
        VirtualHost "a.example" { c2s_timeout = 10, http_host = "h.example" }
        s2s_timeout = 5
        Component "c.example" "muc" { name = "Rooms" }
        VirtualHost "a.example"
            allow_registration = true
    """)
    a = config.host("a.example")
    assert a.options == {"c2s_timeout": 10, "http_host": "h.example", "allow_registration": True}
    assert config.globals == {"s2s_timeout": 5}
    assert config.host("c.example").module == "muc"
    assert config.host("c.example").options == {"name": "Rooms"}
    assert config.warnings == []


def test_host_names_are_normalised_and_checked(tmp_path):
    config = load(tmp_path, 'VirtualHost "Example.COM"\n')
    assert list(config.hosts) == ["example.com"]
    assert config.host("EXAMPLE.com.") is config.hosts["example.com"]
    assert config.host("other.example") is None
    error = load_error(tmp_path, 'admins = {}\nVirtualHost "user@example.com"\n')
    assert (error.line, "forbidden characters" in error.message) == (2, True)


def test_host_and_component_names_cannot_clash(tmp_path):
    error = load_error(tmp_path, 'VirtualHost "x.example"\nComponent "x.example" "muc"\n')
    assert error.line == 2 and "clashes" in error.message
    error = load_error(tmp_path, 'Component "x.example"\n\nVirtualHost "x.example"\n')
    assert error.line == 3 and "clashes" in error.message


def test_components_with_and_without_module(tmp_path):
    config = load(tmp_path, """
        VirtualHost "example.com"
        Component "upload.example.com" "http_file_share"
            http_file_share_size_limit = 1024
        Component "gateway.example.com"
            component_secret = "s3cret"
        Component "legacy.example.com" "component"
    """)
    upload = config.host("upload.example.com")
    gateway = config.host("gateway.example.com")
    assert (upload.kind, upload.module) == ("Component", "http_file_share")
    assert (gateway.kind, gateway.module) == ("Component", None)
    assert config.host("legacy.example.com").module is None
    assert gateway.options == {"component_secret": "s3cret"}
    assert [h.name for h in config.components()] == [
        "upload.example.com", "gateway.example.com", "legacy.example.com"]
    assert [h.name for h in config.virtual_hosts()] == ["example.com"]
    assert config.host("example.com").module is None


# -- Include ------------------------------------------------------------------------


def test_include_with_glob_relative_to_the_config_directory(tmp_path):
    write(tmp_path, "conf.d/b.cfg.lua", 'VirtualHost "b.example"\nc2s_timeout = 2\n')
    write(tmp_path, "conf.d/a.cfg.lua",
          'http_default_host = "a.example"\nVirtualHost "a.example"\n')
    write(tmp_path, "conf.d/ignored.txt", "this is not lua")
    write(tmp_path, "conf.d/.hidden.cfg.lua", "syntax error here")
    write(tmp_path, "extra.lua", "s2s_timeout = 7\n")
    config = load(tmp_path, """
        VirtualHost "main.example"
        Include "conf.d/*.cfg.lua"
        c2s_timeout = 1 -- still main.example: an Include does not change this file's section
        include "extra.lua"
        Include "nothing/*.lua" -- a glob matching nothing is fine
    """)
    assert list(config.hosts) == ["main.example", "a.example", "b.example"]
    assert config.host("main.example").options == {"c2s_timeout": 1}
    assert config.host("b.example").options == {"c2s_timeout": 2}
    # Each included file starts in the global section.
    assert config.globals == {"http_default_host": "a.example", "s2s_timeout": 7}


def test_missing_include_is_an_error_at_the_include_line(tmp_path):
    error = load_error(tmp_path, 'admins = {}\nInclude "absent.cfg.lua"\n')
    assert error.file.endswith("prosody.cfg.lua") and error.line == 2
    assert "absent.cfg.lua" in error.message


def test_self_include_is_stopped(tmp_path):
    error = load_error(tmp_path, 'Include "prosody.cfg.lua"\n')
    assert "nested" in error.message


# -- values ---------------------------------------------------------------------------


def test_arithmetic_and_reading_options_already_set(tmp_path):
    config = load(tmp_path, """
        c2s_timeout = 5
        s2s_timeout = c2s_timeout * 2
        http_file_share_size_limit = 16*1024*1024
        bosh_max_inactivity = 1.5 * 2
        bosh_max_wait = 7 / 2
        VirtualHost "a.example"
            c2s_timeout = s2s_timeout + 1
            http_host = "files." .. "a.example"
    """)
    assert config.get("s2s_timeout") == 10
    assert config.get("http_file_share_size_limit") == 16777216
    assert config.get("bosh_max_inactivity") == 3 and type(config.get("bosh_max_inactivity")) is int
    assert config.get("bosh_max_wait") == 3.5
    assert config.host("a.example").options == {"c2s_timeout": 11, "http_host": "files.a.example"}


def test_tables_become_lists_or_dicts(tmp_path):
    config = load(tmp_path, """
        admins = { "a@x", "b@x"; }
        modules_disabled = {}
        proxy_port_mappings = { [15222] = "c2s", [15269] = "s2s" }
        http_cors_override = { bosh = { enabled = false }, file_share = { credentials = true } }
        limits = { c2s = { rate = "10kb/s", burst = "2s" } }
        log = { info = "x.log"; "*syslog" }
        disco_items = { { "upload.x", "uploads" } }
        s2s_secure_domains = { [1] = "a", [3] = "c" }
    """)
    g = config.globals
    assert g["admins"] == ["a@x", "b@x"]
    assert g["modules_disabled"] == []
    assert g["proxy_port_mappings"] == {15222: "c2s", 15269: "s2s"}
    assert g["http_cors_override"] == {"bosh": {"enabled": False},
                                       "file_share": {"credentials": True}}
    assert g["limits"] == {"c2s": {"rate": "10kb/s", "burst": "2s"}}
    assert g["log"] == {"info": "x.log", 1: "*syslog"}
    assert g["disco_items"] == [["upload.x", "uploads"]]
    assert g["s2s_secure_domains"] == {1: "a", 3: "c"}


def test_environment_variables_through_env_names(tmp_path, monkeypatch):
    monkeypatch.setenv("VIREO_TEST_SECRET", "from-env")
    config = load(tmp_path, "component_secret = ENV_VIREO_TEST_SECRET\n"
                            "dialback_secret = ENV_VIREO_TEST_UNSET_VARIABLE\n")
    assert config.globals == {"component_secret": "from-env"}


def test_unconvertible_values_are_dropped_with_a_warning(tmp_path):
    config = load(tmp_path, "admins = function() end\nlimits = {}\nlimits.self = limits\n")
    assert config.globals == {}
    assert any("prosody.cfg.lua:1: option 'admins'" in w and "function" in w
               for w in config.warnings)
    assert any("option 'limits'" in w for w in config.warnings)


# -- modules and enabled ---------------------------------------------------------


def test_modules_for_virtual_hosts_and_components(tmp_path):
    config = load(tmp_path, """
        modules_enabled = { "roster", "ping", "tls", "version" }
        modules_disabled = { "version" }
        VirtualHost "a.example"
            modules_enabled = { "bosh", "ping" }
            modules_disabled = { "tls" }
        VirtualHost "b.example"
        Component "muc.example" "muc"
            modules_enabled = { "muc_mam", "ping" }
            modules_disabled = { "ping" }
        Component "ext.example"
        Component "http.example" "http"
            modules_enabled = { "bosh" }
    """)
    assert config.host("a.example").modules() == ["roster", "ping", "bosh"]
    assert config.host("b.example").modules() == ["roster", "ping", "tls"]
    assert config.host("muc.example").modules() == ["muc", "muc_mam"]
    assert config.host("ext.example").modules() == []
    assert config.host("http.example").modules() == ["http", "bosh"]


def test_a_lone_module_string_and_a_malformed_list(tmp_path):
    config = load(tmp_path, """
        modules_enabled = "ping"
        VirtualHost "a.example"
            modules_enabled = { x = "y" }
    """)
    assert config.host("a.example").modules() == ["ping"]
    assert any("modules_enabled" in w and 'VirtualHost "a.example"' in w
               for w in config.warnings)


def test_enabled_false_disables_a_host(tmp_path):
    config = load(tmp_path, """
        VirtualHost "on.example"
        VirtualHost "off.example"
            enabled = false
        Component "c.example" "muc"
            enabled = false
    """)
    assert config.host("on.example").enabled is True
    assert config.host("off.example").enabled is False
    assert [h.name for h in config.virtual_hosts()] == ["on.example"]
    assert config.components() == []
    assert set(config.hosts) == {"on.example", "off.example", "c.example"}


def test_global_enabled_false_disables_hosts_unless_they_enable_themselves(tmp_path):
    config = load(tmp_path, 'enabled = false\nVirtualHost "a.example"\n'
                            'VirtualHost "b.example"\nenabled = true\n')
    assert [h.name for h in config.virtual_hosts()] == ["b.example"]


# -- errors ----------------------------------------------------------------------------


def test_syntax_error_names_file_and_line(tmp_path):
    error = load_error(tmp_path, 'admins = {}\n\nc2s_timeout = = 3\n')
    assert Path(error.file) == tmp_path / "prosody.cfg.lua"
    assert error.line == 3
    assert "near '='" in error.message
    assert str(error) == f"{error.file}:3: {error.message}"


def test_syntax_error_inside_an_included_file(tmp_path):
    deep = "very/long/directory/name/so/that/lua/would/truncate/the/chunk/name"
    write(tmp_path, f"{deep}/host.cfg.lua", 'VirtualHost "x.example"\n\n\nhttp_host = "x" "\n')
    error = load_error(tmp_path, f'admins = {{}}\nInclude "{deep}/*.cfg.lua"\n')
    assert Path(error.file) == tmp_path / deep / "host.cfg.lua"
    assert error.line == 4


def test_runtime_errors_name_the_line(tmp_path):
    error = load_error(tmp_path, "admins = {}\nc2s_timeout = undefined_thing * 2\n")
    assert error.line == 2 and "arithmetic" in error.message
    error = load_error(tmp_path, '\n\nerror("stop here")\n')
    assert (error.line, error.message) == (3, "stop here")
    error = load_error(tmp_path, 'VirtualHost "a.example" "module"\n')
    assert error.line == 1 and "do not accept a module name" in error.message
    error = load_error(tmp_path, "VirtualHost()\n")
    assert error.line == 1 and "must have a name" in error.message


def test_unreadable_or_undecodable_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.cfg.lua")
    assert info.value.line is None and "cannot read" in info.value.message
    path = tmp_path / "latin1.cfg.lua"
    path.write_bytes(b'admins = {}\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 2 and "UTF-8" in info.value.message


# -- sandbox -------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    'os.execute("touch pwned")',
    'io.open("/etc/passwd")',
    'require("os")',
    'dofile("/etc/passwd")',
    'load("return 1")()',
    'package.loaded.os.exit()',
    'debug.getinfo(1)',
    'string.dump(print)',
    'getmetatable("").__index.rep("x", 2)',
    'python.eval("1")',
    'print("hello")',
    'RunScript("x.lua")',
])
def test_sandbox_refuses_dangerous_calls(tmp_path, statement):
    error = load_error(tmp_path, f"admins = {{}}\n{statement}\n")
    assert error.line == 2
    assert not (tmp_path / "pwned").exists()


def test_safe_builtins_are_available(tmp_path):
    config = load(tmp_path, """
        http_host = string.format("%s.%s", "files", ("EXAMPLE"):lower())
        c2s_timeout = math.floor(7.9) + #{ 1, 2 } + tonumber("1")
        admins = {}
        table.insert(admins, "a@x")
    """)
    assert config.globals == {"http_host": "files.example", "c2s_timeout": 10, "admins": ["a@x"]}


def test_endless_loops_and_memory_bombs_are_stopped(tmp_path):
    error = load_error(tmp_path, "admins = {}\nwhile true do end\n")
    assert error.line == 2 and "too long" in error.message
    error = load_error(tmp_path, 'x = {}\nfor i = 1, 1e9 do x[i] = ("x"):rep(4096) .. i end\n')
    assert "memory" in error.message


# -- warnings ------------------------------------------------------------------------


def test_unknown_and_duplicate_options_warn_with_section(tmp_path):
    config = load(tmp_path, """admins = {}
c2s_timout = 10
VirtualHost "a.example"
    htpp_host = "x"
    http_host = "a"
    http_host = "b"
""")
    assert config.globals == {"admins": [], "c2s_timout": 10}
    assert config.host("a.example").options == {"htpp_host": "x", "http_host": "b"}
    path = tmp_path / "prosody.cfg.lua"
    assert config.warnings == [
        f"{path}:2: unknown option 'c2s_timout' in the global section",
        f'{path}:4: unknown option \'htpp_host\' in VirtualHost "a.example"',
        f'{path}:6: duplicate option \'http_host\' in VirtualHost "a.example"',
    ]


# -- typed getters ------------------------------------------------------------------


def test_typed_getters_clamp_and_warn(tmp_path, caplog):
    config = load(tmp_path, """
        c2s_timeout = 5
        s2s_timeout = 100000
        bosh_max_wait = "30"
        bosh_max_inactivity = "soon"
        http_file_share_size_limit = 2.5
        http_file_share_global_quota = math.huge
        VirtualHost "a.example"
            c2s_timeout = 50
    """)
    assert config.warnings == []
    assert config.get_int("c2s_timeout", 300, min=10) == 10
    assert config.get_int("s2s_timeout", 90, max=3600) == 3600
    assert config.get_int("bosh_max_wait", 120) == 30
    assert config.get_int("bosh_max_inactivity", 60) == 60
    assert config.get_int("http_file_share_size_limit", 1) == 2
    assert config.get_int("http_file_share_global_quota", None) is None
    assert config.get_int("unset_option", 7, min=10) == 7
    assert config.get_number("http_file_share_size_limit", 1) == 2.5
    assert config.get_number("http_file_share_global_quota", None) == float("inf")
    assert config.get_number("bosh_max_wait", 1.0, max=20) == 20
    assert config.host("a.example").get_int("c2s_timeout", 300, min=10, max=60) == 50
    assert len(config.warnings) == 6
    assert "'c2s_timeout' in the global section: 5 is below the minimum 10" in config.warnings[0]
    assert "above the maximum 3600" in config.warnings[1]
    assert "expected an integer" in config.warnings[2]
    assert any("below the minimum" in r.message for r in caplog.records)


def test_bool_str_and_list_getters(tmp_path):
    config = load(tmp_path, """
        allow_registration = "yes"
        c2s_require_encryption = false
        s2s_secure_auth = 1
        consider_bosh_secure = "maybe"
        http_host = { "only.example" }
        http_default_host = 42
        pidfile = { a = 1 }
        admins = "root@example.com"
        trusted_proxies = { "127.0.0.1", "::1" }
        http_paths = { bosh = "/bosh" }
        VirtualHost "a.example"
            allow_registration = "off"
    """)
    assert config.get_bool("allow_registration", False) is True
    assert config.get_bool("c2s_require_encryption", True) is False
    assert config.get_bool("s2s_secure_auth", False) is True
    assert config.get_bool("consider_bosh_secure", False) is False
    assert config.get_bool("unset_option", True) is True
    assert config.host("a.example").get_bool("allow_registration", True) is False
    assert config.get_str("http_host", None) == "only.example"
    assert config.get_str("http_default_host", None) == "42"
    assert config.get_str("pidfile", "vireo.pid") == "vireo.pid"
    assert config.get_str("unset_option", None) is None
    assert config.get_list("admins") == ["root@example.com"]
    assert config.get_list("trusted_proxies") == ["127.0.0.1", "::1"]
    assert config.get_list("unset_option", ("a",)) == ["a"]
    assert config.get_list("http_paths", ()) == []
    assert len(config.warnings) == 3


def test_resolve_path_is_relative_to_the_config_directory(tmp_path):
    config = load(tmp_path, 'data_path = "data"\n')
    assert config.path == tmp_path / "prosody.cfg.lua"
    assert config.base_dir == tmp_path
    assert config.resolve_path(config.get_str("data_path", ".")) == tmp_path / "data"
    assert config.resolve_path("/var/lib/vireo") == Path("/var/lib/vireo")


# -- real configurations -----------------------------------------------------------


def test_a_debian_style_prosody_config_loads_without_warnings():
    config = load_config(CONFIGS / "debian" / "prosody.cfg.lua")
    assert config.warnings == []
    assert [h.name for h in config.virtual_hosts()] == ["localhost", "example.com"]
    assert [h.name for h in config.components()] == [
        "upload.example.com", "conference.example.com", "gateway.example.com"]
    assert "posix" in config.host("example.com").modules()
    assert config.host("conference.example.com").modules() == ["muc", "muc_mam"]
    upload = config.host("upload.example.com")
    assert upload.modules() == ["http_file_share"]
    assert upload.get_int("http_file_share_size_limit", 0) == 16 * 1024 * 1024
    assert upload.get_int("http_file_share_expires_after", 0) == 31 * 86400
    assert config.get("proxy_port_mappings") == {15222: "c2s", 15269: "s2s"}
    assert config.get("log") == {"info": "/var/log/prosody/prosody.log",
                                 "error": "/var/log/prosody/prosody.err"}


def test_the_example_config_loads_without_warnings():
    config = load_config(REPO / "config.example.lua")
    assert config.warnings == []
    localhost = config.host("localhost")
    assert [h.name for h in config.virtual_hosts()] == ["localhost"]
    assert config.get_str("data_path", None) == "data"
    assert localhost.get_bool("c2s_require_encryption", True) is False
    assert {"roster", "saslauth", "tls", "disco", "ping"} <= set(localhost.modules())


def test_options_commented_out_in_the_example_are_known():
    text = (REPO / "config.example.lua").read_text()
    names = set(re.findall(r"^--\t?([a-z][a-z0-9_]*) =", text, re.M)) - {"info", "error"}
    assert names and names <= KNOWN_OPTIONS, names - KNOWN_OPTIONS


@pytest.mark.skipif(not SPEC.is_dir(), reason=f"reference documents not found at {SPEC}")
def test_every_option_of_the_reference_documents_is_known():
    names: set[str] = set()
    for doc in SPEC.glob("*.md"):
        text = doc.read_text()
        names |= set(re.findall(r"^\s*([a-z][a-z0-9_]*)\s*=", text, re.M))
        names |= set(re.findall(r"^([a-z][a-z0-9]*_[a-z0-9_]+) ", text, re.M))
    # Keys nested inside option tables in the examples, and module names.
    nested = {"bosh", "files", "websocket", "register_web", "certificate", "key", "enabled"}
    modules = {"mod_bosh", "mod_http", "mod_http_file_share", "net_multiplex"}
    assert names - nested - modules - KNOWN_OPTIONS == set()


# -- found by fuzzing (tests/fuzz/fuzz_config.py) and its review ---------------------


@pytest.mark.parametrize("statement", [
    'x = ("a"):rep(5000):match("(.-)(.-)(.-)b")',
    'x = string.find(("a"):rep(30), ".-.-.-.-.-.-.-.-b")',
    'for w in ("a b"):gmatch("%a") do end',
    'x = string.gsub("x", "x", "y")',
])
def test_lua_patterns_are_refused_clearly(tmp_path, statement):
    # A backtracking pattern runs inside one C call, where the instruction hook never fires.
    error = load_error(tmp_path, f"admins = {{}}\n{statement}\n")
    assert error.line == 2 and "not available in the configuration" in error.message


def test_tables_sharing_subtables_cannot_expand_without_bound(tmp_path):
    # 3^30 values once converted: this used to run for ever.
    error = load_error(tmp_path, "local a = {1}\nfor d = 1, 30 do a = {a, a, a} end\nadmins = a\n")
    assert error.line == 3 and "more than 200000 values" in error.message
