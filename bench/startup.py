"""Start-up time: `dtnsess --help` vs `python -c "import web3"` vs `python -c pass`.

    .venv/bin/python bench/startup.py [--runs 10]

Each command runs `--runs` times as a fresh process (the installed console script
.venv/bin/dtnsess, and the venv's python); the median wall time is reported with min–max as
the noise. Then, in a fresh interpreter, the CLI's `--help` path is run in-process and
`sys.modules` is checked: web3 (and eth_account, rich's heavy parts are allowed) must not be
imported by `--help` (STYLE.md item 6).
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
        cli.app(["--help"], prog_name="dtnsess", standalone_mode=True)
    except SystemExit as e:
        code = e.code or 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"web3", "eth_account", "eth_abi", "aiohttp", "requests", "websockets", "solcx"})
print(json.dumps({"exit": code, "heavy": heavy, "modules": len(sys.modules)}))
"""


# Target (issue 9): `--help` and completion at most 0.12 s (medians).
TARGET_S = 0.12
COMPLETION_ENV = {"_DTNSESS_COMPLETE": "complete_bash", "COMP_WORDS": "dtnsess pool a",
                  "COMP_CWORD": "2"}


def time_cmd(cmd: list[str], runs: int, extra_env: dict | None = None) -> list[float]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0", **(extra_env or {})}
    subprocess.run(cmd, capture_output=True, env=env, check=False)  # warm the page cache / .pyc
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
        out.append(time.perf_counter() - t)
        if proc.returncode != 0:
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
        ("python -c pass", [str(PY), "-c", "pass"]),
        ('python -c "import web3"', [str(PY), "-c", "import web3"]),
        ("dtnsess --help", [str(DTNSESS), "--help"]),
        ("dtnsess create --help", [str(DTNSESS), "create", "--help"]),
        ("completion (dtnsess pool a<TAB>)", [str(DTNSESS)], COMPLETION_ENV),
    ]
    results = {}
    for label, cmd, *extra in cases:
        try:
            results[label] = time_cmd(cmd, args.runs, *extra)
        except RuntimeError as exc:
            print(f"{label}: failed: {exc}")
    base = median(results.get("python -c pass", [float("nan")]))
    web3_t = median(results.get('python -c "import web3"', [float("nan")]))
    print(f"\n{'command':34} {'median s':>9} {'min–max s':>13} {'- python':>9} {'vs import web3':>15}")
    for label, xs in results.items():
        m = median(xs)
        print(f"{label:34} {m:9.3f} {spread(xs):>13} {m - base:9.3f} {m / web3_t:15.2f}")

    probe = subprocess.run([str(PY), "-c", PROBE], capture_output=True, text=True, cwd=REPO, check=False)
    try:
        info = json.loads(probe.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"\nsys.modules probe failed: {probe.stderr[-500:]}")
        return 1
    ok = "web3" not in info["heavy"]
    print(f"\n--help in-process: exit {info['exit']}, {info['modules']} modules loaded, heavy modules: "
          f"{info['heavy'] or 'none'} -> web3 {'NOT imported (ok)' if ok else 'IMPORTED (regression)'}")
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
