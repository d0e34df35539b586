"""Suite-wide rule: under CI (`CI=true`) a skipped test is a failed test.

CI installs every tool and runs every service the suite uses (haproxy, nginx,
chromium, node, prosody, PostgreSQL at $VIREO_TEST_POSTGRES_URL), so a skip
there means something is missing, and a green run must not hide it. Locally a
skip stays a skip (`-rs` lists the reasons).
"""

from __future__ import annotations

import os

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and under_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may be missing: {reason}"
    return report
