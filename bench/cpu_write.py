"""CPU time (user + sys) of `request "hi"` and `close 1`, before and after, side by side.

    .venv/bin/python bench/cpu_write.py --before /tmp/base/src [--runs 9] [--only request,close]

On a shared, loaded machine wall time is mostly waiting for a core; the CPU time a command's
process spends (start-up, imports, encoding, rendering) is what this round's changes cut, and it
is far less noisy. The same system and user as bench/vs_cast.py (its ``prepare``), talking to
Anvil directly (round trips cost no CPU of ours), human output as a person sees it, state in a
temp dir. Runs alternate before/after; each write runs inside evm_snapshot / evm_revert.
Prints medians, min–max and the ratio after/before. Only 127.0.0.1; Anvil stops in a ``finally``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import anvil, cli_env, header, median, rpc
from vs_cast import byte_compile, prepare

CMDS = {"request": ["request", "hi", "--yes"], "close": ["close", "1", "--yes"]}


def cpu_of(cmd: list, env: dict, cwd: str) -> float:
    """CPU seconds (user + sys) of one child process; raises when it fails."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed: exit {p.returncode}: {p.stderr[-300:]}")
    return r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, metavar="SRC",
                    help="an export of an earlier commit's src/ (git archive REV src | tar -x)")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--only", default="request,close")
    args = ap.parse_args(argv)
    print(header("cpu_write.py"))
    byte_compile()
    import compileall

    compileall.compile_dir(str(Path(args.before) / "dtnsess_cli"), quiet=1)
    with anvil() as node, tempfile.TemporaryDirectory(prefix="dtnsess-bench-cpu-") as cwd:
        s = prepare(node.url, 1)
        env = dict(cli_env(node.url, s.mgr), HOME=cwd)
        env.pop("PYTHONPATH", None)  # "after" is the package this checkout installs
        envs = {"after": env, "before": {**env, "PYTHONPATH": str(Path(args.before).resolve())}}
        # a first read fills the token cache, as any earlier command of a user does
        subprocess.run([sys.executable, "-m", "dtnsess_cli.cli", "stats", "1"], env=env,
                       cwd=cwd, capture_output=True, check=True)
        print(f"\n{args.runs} runs each, alternating; CPU ms (user + sys), median (min–max)")
        print(f"{'command':10} {'before':>22} {'after':>22}  after/before")
        for name in [n.strip() for n in args.only.split(",") if n.strip()]:
            got: dict = {"before": [], "after": []}
            for i in range(args.runs):
                for side in (("before", "after") if i % 2 == 0 else ("after", "before")):
                    snap = rpc(node.url, "evm_snapshot")
                    try:
                        cmd = [sys.executable, "-m", "dtnsess_cli.cli", *CMDS[name]]
                        got[side].append(cpu_of(cmd, envs[side], cwd) * 1000)
                    finally:
                        rpc(node.url, "evm_revert", [snap])
            b, a = median(got["before"]), median(got["after"])
            rng = {k: f"{min(v):.0f}–{max(v):.0f}" for k, v in got.items()}
            print(f"{name:10} {b:7.0f} ({rng['before']:>13}) {a:7.0f} ({rng['after']:>13})  "
                  f"{a / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
