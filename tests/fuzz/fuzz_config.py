"""Fuzz target: the Lua config loader's sandbox (xmpp/config.py) fed hostile config text.

Documented refusal: ConfigError. Anything else is a finding, and so is a load
that outlives libFuzzer's -timeout (the pytest run and `make fuzz` set one) or a
file the config manages to write.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import atheris

from tests.fuzz.harness import INSTRUMENTED, run

with atheris.instrument_imports(include=INSTRUMENTED):
    from xmpp.config import ConfigError, load_config

REFUSALS = (ConfigError,)
# One directory per process; the config is rewritten for each input.
_DIRECTORY = Path(tempfile.mkdtemp(prefix="vireo-fuzz-config-"))
_CONFIG = _DIRECTORY / "prosody.cfg.lua"


def one_input(data: bytes) -> None:
    _CONFIG.write_bytes(data)
    try:
        config = load_config(_CONFIG)
        for host in config.hosts.values():
            host.modules()
    finally:
        assert os.listdir(_DIRECTORY) == [_CONFIG.name], os.listdir(_DIRECTORY)


if __name__ == "__main__":
    run(one_input, REFUSALS, name="config", dictionary="lua.dict")
