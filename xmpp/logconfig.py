"""Prosody 0.12 logging configuration (the `log` option) mapped onto Python logging.

Forms understood, as in Prosody:

- unset: the console (stderr) at info, or debug when ``debug = true``;
- a string: ``"*console"``, ``"*stdout"``, ``"*stderr"``, ``"*syslog"`` (all
  levels), or a file name (info and above; relative to the config directory);
- a table of ``level = sink`` pairs (that level and above), for example
  ``{ info = "prosody.log", error = "*syslog" }``;
- a list of sink tables ``{ to = ..., levels = ..., filename = ... }`` where
  ``levels`` is ``{ min = ..., max = ... }`` or a list of level names; a list
  item may also be a plain ``"*sink"`` string (all levels).

The console is stderr, like Python's own default. Reconfiguring replaces the
handlers installed before, and only those.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from xmpp.config import Config

LEVELS = ("debug", "info", "warn", "error")
_PYTHON_LEVEL = {
    "debug": logging.DEBUG, "info": logging.INFO,
    "warn": logging.WARNING, "error": logging.ERROR,
}
DEFAULT_TIMESTAMP = "%b %d %H:%M:%S"
CONSOLE_SOURCE_WIDTH = 20
SYSLOG_SOCKET = "/dev/log"
# Marks the handlers this module installed, so reconfiguring removes only those.
_MARK = "_vireo_log_sink"


def prosody_level(levelno: int) -> str:
    """Prosody's name for a Python log level (critical counts as error)."""
    if levelno < logging.INFO:
        return "debug"
    if levelno < logging.WARNING:
        return "info"
    if levelno < logging.ERROR:
        return "warn"
    return "error"


class ProsodyFormatter(logging.Formatter):
    """Prosody's line layout: [time] source, level, message, tab separated."""

    def __init__(self, timestamps: str | None, source_width: int | None) -> None:
        super().__init__()
        self.timestamps = timestamps
        self.source_width = source_width

    def format(self, record: logging.LogRecord) -> str:
        name = record.name
        name = name.ljust(self.source_width - 1) + " " if self.source_width else name + "\t"
        text = f"{name}{prosody_level(record.levelno)}\t{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        if self.timestamps:
            text = time.strftime(self.timestamps, self.converter(record.created)) + " " + text
        return text


class LevelSet(logging.Filter):
    """Pass only records whose Prosody level is in the set (levels need not be contiguous)."""

    def __init__(self, levels: frozenset[str]) -> None:
        super().__init__()
        self.levels = levels

    def filter(self, record: logging.LogRecord) -> bool:
        return prosody_level(record.levelno) in self.levels


@dataclass
class Sink:
    """One parsed sink rule: where to write and which levels."""

    to: str
    levels: frozenset[str]
    options: dict[str, Any] = field(default_factory=dict)


def levels_from(criteria: Any) -> frozenset[str]:
    """Prosody's `levels` forms: a name, a list of names, or {min=..., max=...}."""
    if criteria is None:
        return frozenset(LEVELS)
    if isinstance(criteria, str):
        return frozenset({criteria}) & frozenset(LEVELS)
    chosen: set[str] = set()
    if isinstance(criteria, dict):
        low, high = criteria.get("min"), criteria.get("max")
        if low is not None or high is not None:
            lo = LEVELS.index(low) if low in LEVELS else 0
            hi = LEVELS.index(high) if high in LEVELS else len(LEVELS) - 1
            chosen.update(LEVELS[lo:hi + 1])
        listed = [v for k, v in criteria.items() if isinstance(k, int)]
    else:
        listed = list(criteria)
    chosen.update(level for level in listed if level in LEVELS)
    return frozenset(chosen)


def _from_min(level: str) -> frozenset[str]:
    return frozenset(LEVELS[LEVELS.index(level):])


def _sink_for(target: str, levels: frozenset[str]) -> Sink:
    """A `level = target` or plain string target: "*name" is a sink type, else a file."""
    if target.startswith("*"):
        return Sink(target[1:], levels)
    return Sink("file", levels, {"filename": target, "timestamps": True})


def parse_sinks(value: Any, debug: bool = False) -> list[Sink]:
    """Turn the `log` option's value into sink rules; raise ValueError when malformed."""
    default_min = "debug" if debug else "info"
    if value is None:
        return [Sink("console", _from_min(default_min))]
    if isinstance(value, str):
        if value.startswith("*"):
            return [Sink(value[1:], frozenset(LEVELS))]
        return [_sink_for(value, _from_min(default_min))]
    if isinstance(value, dict):
        sinks = [_sink_for(value[level], _from_min(level))
                 for level in LEVELS if isinstance(value.get(level), str)]
        items = [value[k] for k in sorted(k for k in value if isinstance(k, int))]
    elif isinstance(value, list):
        sinks, items = [], value
    else:
        raise ValueError(f"expected a string or a table, got {value!r}")
    for item in items:
        if isinstance(item, str) and item.startswith("*"):
            sinks.append(Sink(item[1:], frozenset(LEVELS)))
        elif isinstance(item, dict) and isinstance(item.get("to"), str):
            options = {k: v for k, v in item.items() if k not in ("to", "levels")}
            sinks.append(Sink(item["to"], levels_from(item.get("levels")), options))
        else:
            raise ValueError(f"cannot understand the sink {item!r}")
    return sinks


def _timestamps(options: dict[str, Any], default: bool) -> str | None:
    value = options.get("timestamps", default)
    if value is True:
        return DEFAULT_TIMESTAMP
    return value if isinstance(value, str) else None


def _handler_for(sink: Sink, config: Config) -> logging.Handler | None:
    """Build the handler of one sink; None for the null sink. Raises OSError or ValueError."""
    opts = sink.options
    width = opts.get("source_width", CONSOLE_SOURCE_WIDTH)
    width = width if isinstance(width, int) and not isinstance(width, bool) else None
    if sink.to in ("console", "stderr", "stdout"):
        stream = sys.stdout if sink.to == "stdout" else sys.stderr
        handler: logging.Handler = logging.StreamHandler(stream)
        formatter = ProsodyFormatter(_timestamps(opts, False), width)
    elif sink.to == "file":
        filename = opts.get("filename")
        if not isinstance(filename, str):
            raise ValueError("a file sink needs a filename")
        path = config.resolve_path(filename)
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        formatter = ProsodyFormatter(_timestamps(opts, True), None)
    elif sink.to == "syslog":
        if not os.path.exists(SYSLOG_SOCKET):
            raise ValueError(f"no syslog socket at {SYSLOG_SOCKET}")
        facility = config.get_str("syslog_facility", "daemon") or "daemon"
        if facility not in logging.handlers.SysLogHandler.facility_names:
            raise ValueError(f"unknown syslog_facility {facility!r}")
        handler = logging.handlers.SysLogHandler(SYSLOG_SOCKET, facility=facility)
        handler.ident = "vireo: "
        formatter = ProsodyFormatter(None, None)
    elif sink.to == "nowhere":
        return None
    else:
        raise ValueError(f"unknown sink type {sink.to!r}")
    handler.setFormatter(formatter)
    handler.setLevel(min(_PYTHON_LEVEL[level] for level in sink.levels))
    handler.addFilter(LevelSet(sink.levels))
    return handler


def remove_handlers() -> None:
    """Remove and close the handlers a previous configure_logging installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()


def _release_handlers() -> None:
    """Flush and close every handler, then forget logging's weak references to them.

    Handlers still alive at interpreter teardown (ours on the root logger,
    Flask's module-level default handler, logging's last resort) die there,
    and each death runs logging's weakref callback, which takes logging's
    module lock. Under gevent's monkey-patching that lock asks greenlet for the
    current greenlet, which greenlet 3.5 refuses during finalization: every
    command printed "Exception ignored ... greenlet is being finalized" on exit.
    With the list empty the callback takes no lock (logging._removeHandlerRef).
    """
    logging.shutdown()
    del logging._handlerList[:]


# Registered after logging's own atexit hook, so it runs before it (LIFO).
atexit.register(_release_handlers)


def configure_logging(config: Config) -> None:
    """Install root-logger handlers for the config's `log` option, replacing earlier ones."""
    remove_handlers()
    problems: list[str] = []
    debug = bool(config.get_bool("debug", False))
    try:
        sinks = parse_sinks(config.get("log"), debug)
    except ValueError as e:
        problems.append(f"option 'log' in the global section: {e}; logging to the console")
        sinks = parse_sinks(None, debug)
    handlers: list[logging.Handler] = []
    for sink in sinks:
        if not sink.levels:
            continue
        try:
            handler = _handler_for(sink, config)
        except (OSError, ValueError) as e:
            problems.append(f"option 'log': cannot log to {sink.to}: {e}")
            continue
        if handler is not None:
            handlers.append(handler)
    if not handlers and any(sink.to != "nowhere" for sink in sinks):
        # Every sink the operator asked for failed: keep errors visible somewhere.
        fallback = parse_sinks(None, debug)[0]
        handler = _handler_for(fallback, config)
        assert handler is not None
        handlers.append(handler)
    if not handlers:
        # Only null sinks: keep Python's last-resort handler from printing anyway.
        handlers.append(logging.NullHandler())
    root = logging.getLogger()
    for handler in handlers:
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    levels = [h.level for h in handlers if h.level]
    root.setLevel(min(levels) if levels else logging.CRITICAL + 1)
    for problem in problems:
        config.warn(problem)
