"""Where a one-transaction command spends its local time: `request "hi"` and `close 1`.

    .venv/bin/python bench/profile_write.py [--delay-ms 50] [--top 25] [--only request,close]

The same system and user as bench/vs_cast.py (its ``prepare``), behind bench/latency_proxy.py
(+``--delay-ms`` per HTTP request), state in a temp dir. Each command runs as a fresh process:
1. ``python -X importtime``: the modules it imports, the costliest by cumulative time;
2. cProfile of the whole run (``dtnsess_cli.cli.main``), the top functions by own time
   (network waits show as ``select``/``recv_into``/``sleep``);
3. the wall time, the round trips, and what is left once the round trips' delay is taken off:
   the local time this benchmark is about.
Every write runs inside evm_snapshot / evm_revert. Only 127.0.0.1; Anvil and the proxy stop in
a ``finally``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _common import anvil, cli_env, header, rpc
from latency_proxy import LatencyProxy
from vs_cast import byte_compile, prepare

PROFILE = (
    "import cProfile, io, pstats, sys\n"
    "from dtnsess_cli.cli import main\n"
    "p = cProfile.Profile()\n"
    "p.enable()\n"
    "try:\n"
    "    sys.exit(main(sys.argv[3:]))\n"
    "finally:\n"
    "    p.disable()\n"
    "    s = io.StringIO()\n"
    "    pstats.Stats(p, stream=s).sort_stats('tottime').print_stats(int(sys.argv[1]))\n"
    "    sys.stderr.write('PROFILE\\n' + s.getvalue())\n"
)


def imports_top(stderr: str, top: int) -> list:
    """(cumulative us, depth, module) of the `-X importtime` lines, costliest first, at the top
    two levels of nesting (deeper ones are inside those)."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum, name = line.split("|")
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 1:
            rows.append((int(cum), depth, name.strip()))
    return sorted(rows, reverse=True)[:top]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--only", default="request,close")
    args = ap.parse_args(argv)
    print(header("profile_write.py"))
    byte_compile()
    cmds = {"request": ["request", "hi", "--yes"], "close": ["close", "1", "--yes"]}
    with anvil() as node, tempfile.TemporaryDirectory(prefix="dtnsess-bench-prof-") as cwd:
        s = prepare(node.url, 1)
        with LatencyProxy(node.url, args.delay_ms) as proxy:
            env = cli_env(proxy.url, s.mgr)
            env["HOME"] = cwd  # a state dir of its own
            # a first read fills the token cache, as any earlier command of a user does
            subprocess.run([sys.executable, "-m", "dtnsess_cli.cli", "stats", "1"], env=env,
                           cwd=cwd, capture_output=True, check=True)
            for name in [n.strip() for n in args.only.split(",") if n.strip()]:
                argv_ = cmds[name]
                for mode in ("importtime", "profile", "wall"):
                    snap = rpc(node.url, "evm_snapshot")
                    try:
                        if mode == "importtime":
                            cmd = [sys.executable, "-X", "importtime", "-m", "dtnsess_cli.cli", *argv_]
                        elif mode == "profile":
                            cmd = [sys.executable, "-c", PROFILE, str(args.top), "dtnsess", *argv_]
                        else:
                            cmd = [sys.executable, "-m", "dtnsess_cli.cli", *argv_]
                        proxy.take()
                        t = time.perf_counter()
                        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                                           timeout=300)
                        wall = time.perf_counter() - t
                        trips = proxy.take().round_trips
                    finally:
                        rpc(node.url, "evm_revert", [snap])
                    if p.returncode != 0:
                        print(f"{name} ({mode}) failed: exit {p.returncode}: {p.stderr[-500:]}")
                        return 1
                    if mode == "importtime":
                        print(f"\n## {' '.join(argv_)}: imports, costliest first (cumulative ms)")
                        for cum, depth, mod in imports_top(p.stderr, args.top):
                            print(f"  {cum / 1000:7.1f}  {'  ' * depth}{mod}")
                    elif mode == "profile":
                        print(f"\n## {' '.join(argv_)}: cProfile, top {args.top} by own time (tottime)")
                        prof = p.stderr.split("PROFILE\n", 1)[-1].splitlines()
                        start = next(i for i, ln in enumerate(prof) if "ncalls" in ln)
                        print("\n".join(prof[start:start + args.top + 1]))
                    else:
                        local = wall - trips * args.delay_ms / 1000
                        print(f"\n## {' '.join(argv_)}: wall {wall:.3f} s, {trips} round trips, "
                              f"local (wall - trips x delay) {local:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
