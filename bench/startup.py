"""Start-up time: `dtnsess --help` and a command vs `python -c "import web3"` vs `python -c pass`.

    .venv/bin/python bench/startup.py [--runs 10]

Each command runs `--runs` times as a fresh process (the installed console script
.venv/bin/dtnsess, and the venv's python); the median wall time is reported with min–max as
the noise. `dtnsess stats 1` runs against a closed local port (no node, no retries: it fails
at once with exit 5), so it measures what a command pays before its first round trip: the
interpreter, Typer, the command path and the chain layer. Then, in fresh interpreters, `--help`
and that `stats 1` are run in-process and `sys.modules` is checked: neither may import web3,
eth-abi, eth-account, eth-utils or requests (issue 9; STYLE.md item 6).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import header, REPO, median, spread

VENV_BIN = Path(sys.executable).parent
DTNSESS = VENV_BIN / "dtnsess"
PY = VENV_BIN / "python"

PROBE = r"""
import io, json, sys, contextlib
from dtnsess_cli import cli
buf = io.StringIO()
code = 0
with contextlib.redirect_stdout(buf):
    try:
        cli.app(sys.argv[1:], prog_name="dtnsess", standalone_mode=True)
    except SystemExit as e:
        code = e.code or 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"web3", "eth_account", "eth_abi", "eth_utils", "aiohttp", "requests", "websockets", "solcx"})
print(json.dumps({"exit": code, "heavy": heavy, "modules": len(sys.modules)}))
"""


# Target (issue 9): `--help` and completion at most 0.12 s (medians).
TARGET_S = 0.12
COMPLETION_ENV = {"_DTNSESS_COMPLETE": "complete_bash", "COMP_WORDS": "dtnsess pool a",
                  "COMP_CWORD": "2"}

# a command with nowhere to go: connection refused at once, no retries (exit 5)
NO_NODE = {"DTNSESS_RPC_URL": "http://127.0.0.1:9", "DTNSESS_CONTRACT": "0x" + "12" * 20,
           "DTNSESS_RPC_RETRY_SECONDS": "0", "DTNSESS_PRIVATE_KEY": "", "NO_COLOR": "1"}


def time_cmd(cmd: list[str], runs: int, extra_env: dict | None = None,
             ok_codes: tuple = (0,)) -> list[float]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0", **(extra_env or {})}
    subprocess.run(cmd, capture_output=True, env=env, check=False)  # warm the page cache / .pyc
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
        out.append(time.perf_counter() - t)
        if proc.returncode not in ok_codes:
            raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)
    print(header("startup.py"))
    if not DTNSESS.exists():
        print(f"{DTNSESS} not found: install the package into this venv (make install)")
        return 1
    cases = [
        ("python -c pass", [str(PY), "-c", "pass"], None, (0,)),
        ('python -c "import web3"', [str(PY), "-c", "import web3"], None, (0,)),
        ("dtnsess --help", [str(DTNSESS), "--help"], None, (0,)),
        ("dtnsess create --help", [str(DTNSESS), "create", "--help"], None, (0,)),
        ("completion (dtnsess pool a<TAB>)", [str(DTNSESS)], COMPLETION_ENV, (0,)),
        ("dtnsess stats 1 (no node)", [str(DTNSESS), "stats", "1"], NO_NODE, (5,)),
    ]
    results = {}
    for label, cmd, extra, ok in cases:
        try:
            results[label] = time_cmd(cmd, args.runs, extra, ok)
        except RuntimeError as exc:
            print(f"{label}: failed: {exc}")
    base = median(results.get("python -c pass", [float("nan")]))
    web3_t = median(results.get('python -c "import web3"', [float("nan")]))
    print(f"\n{'command':34} {'median s':>9} {'min–max s':>13} {'- python':>9} {'vs import web3':>15}")
    for label, xs in results.items():
        m = median(xs)
        print(f"{label:34} {m:9.3f} {spread(xs):>13} {m - base:9.3f} {m / web3_t:15.2f}")

    ok = True
    for argv, extra in ((["--help"], None), (["stats", "1"], NO_NODE)):
        probe = subprocess.run([str(PY), "-c", PROBE, *argv], capture_output=True, text=True,
                               cwd=REPO, check=False, env={**os.environ, **(extra or {})})
        try:
            info = json.loads(probe.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            print(f"\nsys.modules probe failed: {probe.stderr[-500:]}")
            return 1
        clean = not info["heavy"]
        ok = ok and clean
        print(f"\n{' '.join(argv)} in-process: exit {info['exit']}, {info['modules']} modules loaded, "
              f"heavy modules: {info['heavy'] or 'none'} -> "
              f"{'none of web3/eth-*/requests (ok)' if clean else 'IMPORTED (regression)'}", end="")
    print()
    helpt = median(results.get("dtnsess --help", [float("nan")]))
    print(f"ratio dtnsess --help / import web3 = {helpt / web3_t:.2f}; "
          f"--help costs {helpt - base:.3f}s above a bare interpreter")
    for label in ("dtnsess --help", "dtnsess create --help", "completion (dtnsess pool a<TAB>)"):
        m = median(results.get(label, [float("nan")]))
        print(f"target {label}: {m:.3f} s (at most {TARGET_S} s): "
              f"{'met' if m <= TARGET_S else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
