"""Test-session setup: the fixture plugins (by layer), each test's own state directory, and the
terminal summary of recorded properties.

Fixtures live in tests/fixtures/ and are registered here as plugins, so a test module names a
fixture as an argument and never imports it; plain helper functions stay importable modules
(tests/helpers.py, tests/cli_helpers.py, tests/faultproxy.py).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["fixtures.chain", "fixtures.cli"]


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    """Each test's own dtnsess state directory (the transaction journal, the sender locks):
    never the developer's, and no open entry of one test (on a reverted chain) in the next."""
    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "dtnsess-state"))


def pytest_terminal_summary(terminalreporter):
    """Print what tests recorded as `*_summary` properties (the fuzz run's step counts)."""
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name.endswith("_summary") and report.when == "call":
                    terminalreporter.write_line(str(value))
