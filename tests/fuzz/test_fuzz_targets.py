"""Every fuzz target runs a few seconds from its seeds without a finding.

The bounded run of the normal suite: one test per target, each in its own
process (xdist spreads them). The long run is `make fuzz`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
TARGETS = sorted(path.stem.removeprefix("fuzz_") for path in HERE.glob("fuzz_*.py"))
SECONDS = 4


def test_every_target_has_seeds():
    assert len(TARGETS) == 8
    for name in TARGETS:
        assert any((HERE / "corpus" / name).iterdir()), name


@pytest.mark.parametrize("name", TARGETS)
def test_target_finds_nothing(name, tmp_path):
    new_inputs = tmp_path / "corpus"
    new_inputs.mkdir()
    command = [sys.executable, "-m", f"tests.fuzz.fuzz_{name}", f"-max_total_time={SECONDS}",
               "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/",
               str(new_inputs)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            timeout=SECONDS + 60, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    assert "DONE" in result.stderr, result.stderr[-2000:]
