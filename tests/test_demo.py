"""`make demo`: scripts/demo.sh through the installed `dtnsess` script, on a free port.

The demo stops its devnet on every exit; both tests check that the processes it started are gone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dtnsess_cli.devnet.anvil import dev_private_keys, free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scripts" / "demo.sh"
DTNSESS = Path(sys.executable).with_name("dtnsess")

pytestmark = pytest.mark.slow


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie waiting for init to reap it counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def run_demo(tmp_path: Path, dtnsess: Path = DTNSESS, **env_extra: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DTNSESS_", "DEMO_"))}
    env.update(DTNSESS=str(dtnsess), PYTHON=sys.executable, DEMO_PORT=str(free_port()),
               TMPDIR=str(tmp_path), **env_extra)
    # the test's own journal, never the user's (an older dtnsess's open entry there would be
    # resolved against the demo's devnet: one chain id, no genesis recorded)
    env["DTNSESS_STATE_DIR"] = str(tmp_path / "dtnsess-state")
    proc = subprocess.run(["bash", str(DEMO)], env=env, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    pids = [int(p) for p in re.findall(r"\b(?:anvil|responder)\s+pid (\d+)", proc.stdout)]
    return proc, out, pids


def _assert_stopped(pids: list[int]) -> None:
    assert len(pids) >= 2, "the demo's devnet up did not report its pids"
    end = time.monotonic() + 10
    while time.monotonic() < end and not all(_gone(p) for p in pids):
        time.sleep(0.05)
    assert all(_gone(p) for p in pids), f"demo left processes behind: {pids}"


def test_demo_runs_every_step(tmp_path):
    proc, out, pids = run_demo(tmp_path)
    assert proc.returncode == 0, out
    assert "[devnet answer] You asked: In one sentence, what does the Deep Trust Network do?" in out
    assert "[devnet answer] You asked: Who pays for this answer?" in out
    for expected in ("session 1 created", "added to the pool", "took session 1 from the pool",
                     "renewed", "refund", "cleanup", "devnet stopped", "demo: all steps passed"):
        assert expected in out, expected
    # the second account's key is used, never shown
    for key in dev_private_keys(3):
        assert key.removeprefix("0x") not in out
    assert "private_key" not in out
    assert not list(tmp_path.glob("dtnsess-demo.*")), "work dir not removed after success"
    _assert_stopped(pids)


def test_demo_fails_on_a_failing_step_and_still_stops_the_devnet(tmp_path):
    # a dtnsess that breaks one command: the demo must stop there, say so and exit non-zero
    fake = tmp_path / "bin" / "dtnsess"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nif [ "$1" = stats ]; then echo "error: broken" >&2; exit 7; fi\n'
                    f'exec "{DTNSESS}" "$@"\n')
    fake.chmod(0o755)
    proc, out, pids = run_demo(tmp_path, dtnsess=fake)
    assert proc.returncode == 7, out
    assert "FAILED at step 4 (session statistics)" in out
    assert "devnet stopped" in out
    _assert_stopped(pids)
