"""Prosody's `log` option mapped onto Python logging handlers."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from xmpp import logconfig
from xmpp.config import Config, load_config
from xmpp.logconfig import LevelSet, configure_logging, levels_from, parse_sinks

ALL = frozenset(logconfig.LEVELS)


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    logconfig.remove_handlers()
    root.handlers[:] = handlers
    root.setLevel(level)


def config_with(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "prosody.cfg.lua"
    path.write_text(text)
    return load_config(path)


def ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, logconfig._MARK, False)]


def passes(handler: logging.Handler, levelno: int) -> bool:
    record = logging.LogRecord("x", levelno, __file__, 1, "m", None, None)
    return levelno >= handler.level and bool(handler.filter(record))


# -- parsing ----------------------------------------------------------------------------


def test_levels_forms():
    assert levels_from(None) == ALL
    assert levels_from("warn") == {"warn"}
    assert levels_from(["error"]) == {"error"}
    assert levels_from(["debug", "error", "bogus"]) == {"debug", "error"}
    assert levels_from({"min": "info"}) == {"info", "warn", "error"}
    assert levels_from({"min": "info", "max": "warn"}) == {"info", "warn"}
    assert levels_from({"max": "info"}) == {"debug", "info"}


def test_parse_sink_forms():
    assert [(s.to, s.levels) for s in parse_sinks(None)] == [("console", ALL - {"debug"})]
    assert [(s.to, s.levels) for s in parse_sinks(None, debug=True)] == [("console", ALL)]
    assert [(s.to, s.levels) for s in parse_sinks("*syslog")] == [("syslog", ALL)]
    [file_sink] = parse_sinks("prosody.log")
    assert (file_sink.to, file_sink.options["filename"]) == ("file", "prosody.log")
    assert file_sink.levels == ALL - {"debug"}
    sinks = parse_sinks({"debug": "all.log", "error": "*console", 1: "*syslog"})
    assert [(s.to, s.levels) for s in sinks] == [
        ("file", ALL), ("console", {"error"}), ("syslog", ALL)]
    sinks = parse_sinks([{"levels": {"min": "info"}, "to": "file", "filename": "x.log"},
                         {"levels": ["error"], "to": "console"}])
    assert [(s.to, s.levels, s.options) for s in sinks] == [
        ("file", ALL - {"debug"}, {"filename": "x.log"}), ("console", {"error"}, {})]
    with pytest.raises(ValueError):
        parse_sinks(42)
    with pytest.raises(ValueError):
        parse_sinks([{"levels": ["error"]}])


def test_level_set_filter_passes_only_its_levels():
    only_warn = LevelSet(frozenset({"warn"}))
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "m", None, None)
    assert only_warn.filter(record)
    record.levelno = logging.CRITICAL
    assert not only_warn.filter(record)
    assert LevelSet(frozenset({"error"})).filter(record)


# -- installing handlers -------------------------------------------------------------


def test_unset_logs_info_to_stderr(tmp_path):
    configure_logging(config_with(tmp_path, "admins = {}\n"))
    [handler] = ours()
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
    assert handler.level == logging.INFO
    assert logging.getLogger().level == logging.INFO


def test_debug_option_lowers_the_default(tmp_path):
    configure_logging(config_with(tmp_path, "debug = true\n"))
    assert [h.level for h in ours()] == [logging.DEBUG]


def test_console_strings(tmp_path):
    configure_logging(config_with(tmp_path, 'log = "*stdout"\n'))
    [handler] = ours()
    assert handler.stream is sys.stdout and handler.level == logging.DEBUG
    configure_logging(config_with(tmp_path, 'log = "*console"\n'))
    [handler] = ours()
    assert handler.stream is sys.stderr


def test_file_path_relative_to_config_with_prosody_layout(tmp_path):
    configure_logging(config_with(tmp_path, 'log = "vireo.log"\n'))
    [handler] = ours()
    assert Path(handler.baseFilename) == tmp_path / "vireo.log"
    logging.getLogger("example.com").info("hello %s", "world")
    logging.getLogger("example.com").debug("not at info")
    handler.flush()
    [line] = (tmp_path / "vireo.log").read_text().splitlines()
    stamp, rest = line[:15], line[16:]
    assert stamp[3] == " " and stamp[6] == " " and stamp[9] == ":"  # "Jan 02 15:04:05"
    assert rest == "example.com\tinfo\thello world"


def test_level_table_means_that_level_and_above(tmp_path):
    config = config_with(tmp_path, 'log = { debug = "debug.log", error = "*stderr" }\n')
    configure_logging(config)
    file_handler, console = ours()
    assert isinstance(file_handler, logging.FileHandler)
    assert file_handler.level == logging.DEBUG
    assert console.stream is sys.stderr and console.level == logging.ERROR
    assert logging.getLogger().level == logging.DEBUG
    assert passes(console, logging.CRITICAL) and not passes(console, logging.WARNING)


def test_list_of_sink_tables(tmp_path):
    configure_logging(config_with(tmp_path, """log = {
        { levels = { min = "info", max = "warn" }, to = "file", filename = "x.log" },
        { levels = { "error" }, to = "stdout", timestamps = true },
    }"""))
    file_handler, stdout = ours()
    assert Path(file_handler.baseFilename) == tmp_path / "x.log"
    assert passes(file_handler, logging.INFO) and passes(file_handler, logging.WARNING)
    assert not passes(file_handler, logging.ERROR) and not passes(file_handler, logging.DEBUG)
    assert stdout.stream is sys.stdout
    assert passes(stdout, logging.ERROR) and not passes(stdout, logging.WARNING)
    record = logging.LogRecord("general", logging.ERROR, __file__, 1, "boom", None, None)
    text = stdout.format(record)
    assert text.endswith("general             error\tboom") and text[9] == ":"


def test_reconfiguring_replaces_only_our_handlers(tmp_path):
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    config = config_with(tmp_path, 'log = { info = "a.log", error = "*console" }\n')
    configure_logging(config)
    first = ours()
    configure_logging(config)
    assert len(ours()) == 2 and not set(ours()) & set(first)
    assert all(h.stream is None or h.stream.closed for h in first
               if isinstance(h, logging.FileHandler))
    assert foreign in logging.getLogger().handlers


def test_unusable_sinks_warn_and_fall_back_to_stderr(tmp_path, monkeypatch):
    monkeypatch.setattr(logconfig, "SYSLOG_SOCKET", str(tmp_path / "no-such-socket"))
    config = config_with(tmp_path, 'log = { "*syslog", { to = "carrier_pigeon" } }\n')
    configure_logging(config)
    [handler] = ours()
    assert handler.stream is sys.stderr and handler.level == logging.INFO
    assert len(config.warnings) == 2
    assert "syslog" in config.warnings[0] and "carrier_pigeon" in config.warnings[1]


def test_a_malformed_log_option_warns_and_uses_the_default(tmp_path):
    config = config_with(tmp_path, "log = 42\n")
    configure_logging(config)
    assert [h.level for h in ours()] == [logging.INFO]
    assert "option 'log'" in config.warnings[0]


def test_nowhere_silences_everything(tmp_path):
    configure_logging(config_with(tmp_path, 'log = { { to = "nowhere" } }\n'))
    [handler] = ours()
    assert isinstance(handler, logging.NullHandler)
    assert logging.getLogger().level > logging.CRITICAL


def test_syslog_sink_when_available(tmp_path, monkeypatch):
    created = []

    class FakeSysLog(logging.Handler):
        def __init__(self, address, facility):
            super().__init__()
            created.append((address, facility))

    monkeypatch.setattr(logconfig, "SYSLOG_SOCKET", str(tmp_path))
    monkeypatch.setattr(logging.handlers, "SysLogHandler", FakeSysLog)
    FakeSysLog.facility_names = {"daemon": 3, "local0": 16}
    configure_logging(config_with(tmp_path, 'syslog_facility = "local0"\nlog = "*syslog"\n'))
    assert created == [(str(tmp_path), "local0")]
    [handler] = ours()
    assert handler.level == logging.DEBUG
