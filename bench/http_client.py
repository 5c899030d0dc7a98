"""The JSON-RPC transport alone, before and after: its import cost and its local time per call.

    .venv/bin/python bench/http_client.py --before /tmp/base3/src [--runs 21] [--calls 300]

Issue 19: ``chain/jsonrpc.py`` spoke HTTP through ``http.client``, whose import (with ``ssl``
and the ``email`` package) every command paid; ``chain/http11.py`` is the project's own. Two
measures, each for the ``dtnsess_cli`` package in ``--before`` (an export of an earlier
commit's src/) and this checkout's, interleaved (before, after, after, before, ...):

1. start-up: a fresh interpreter imports the transport, builds the client as ``rpc.connect``
   does (``proxy_for`` included) and exits; the wall time of the process, median and min, and
   the modules it loaded (http.client, ssl, email).
2. per call: in a fresh interpreter, ``--calls`` ``eth_chainId`` calls and as many batches of
   50 ``eth_getBalance`` on one kept-alive connection to a local Anvil (no added latency: the
   time is the client's and Anvil's); the median per call.

Both trees are byte-compiled first (an installed wheel is). Only 127.0.0.1; Anvil stops in a
``finally``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, anvil, header, median, spread

STARTUP = (
    "from dtnsess_cli.chain.jsonrpc import JsonRpc, proxy_for\n"
    "u = 'http://127.0.0.1:8545'\n"
    "JsonRpc(u, proxy=proxy_for(u))\n"
    "import sys, json\n"
    "print(json.dumps(sorted(m for m in ('http.client', 'ssl', 'email', 'urllib.request')"
    " if m in sys.modules)))\n"
)

PER_CALL = (
    "import json, statistics, sys, time\n"
    "from dtnsess_cli.chain.jsonrpc import JsonRpc\n"
    "url, n = sys.argv[1], int(sys.argv[2])\n"
    "rpc = JsonRpc(url)\n"
    "rpc.call('eth_chainId')\n"
    "accounts = rpc.call('eth_accounts')\n"
    "batch = [('eth_getBalance', [accounts[i % len(accounts)], 'latest']) for i in range(50)]\n"
    "one, many = [], []\n"
    "for _ in range(n):\n"
    "    t = time.perf_counter(); rpc.call('eth_chainId'); one.append(time.perf_counter() - t)\n"
    "    t = time.perf_counter(); rpc.batch(batch); many.append(time.perf_counter() - t)\n"
    "print(json.dumps([statistics.median(one), statistics.median(many), rpc.round_trips]))\n"
)


def run(code: str, src: str, *argv: str) -> tuple:
    env = {**os.environ, "PYTHONPATH": src}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                       text=True, timeout=300)
    took = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(f"failed ({src}): {p.stderr[-500:]}")
    return took, json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, metavar="SRC")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    trees = {"before": str(Path(args.before).resolve()), "after": str(REPO / "src")}
    for src in trees.values():
        compileall.compile_dir(str(Path(src) / "dtnsess_cli"), quiet=1)
    print(header("http_client.py"))
    print(f"before: {trees['before']}\n")

    starts: dict = {k: [] for k in trees}
    loaded: dict = {}
    for i in range(args.runs):
        for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
            took, mods = run(STARTUP, trees[name])
            starts[name].append(took)
            loaded[name] = mods
    print(f"1. start-up: import the transport, build a client ({args.runs} fresh processes each)")
    print(f"{'':8} {'median s':>9} {'min s':>7}  {'noise':>13}  modules loaded")
    for name in trees:
        print(f"{name:8} {median(starts[name]):9.4f} {min(starts[name]):7.4f}  "
              f"{spread(starts[name]):>13}  {', '.join(loaded[name]) or '-'}")
    b, a = median(starts["before"]), median(starts["after"])
    print(f"after/before: median {a / b:.2f} ({(b - a) * 1000:+.0f} ms saved), "
          f"min {min(starts['after']) / min(starts['before']):.2f}\n")

    with anvil() as node:
        calls: dict = {k: [] for k in trees}
        for i in range(3):
            for name in (("before", "after") if i % 2 == 0 else ("after", "before")):
                calls[name].append(run(PER_CALL, trees[name], node.url, str(args.calls))[1])
    print(f"2. per call on one kept-alive connection to Anvil ({args.calls} of each, 3 processes"
          " each; median of the processes' medians)")
    print(f"{'':8} {'eth_chainId ms':>15} {'batch of 50 ms':>15}")
    per = {}
    for name in trees:
        one = median([c[0] for c in calls[name]]) * 1000
        many = median([c[1] for c in calls[name]]) * 1000
        per[name] = (one, many)
        print(f"{name:8} {one:15.3f} {many:15.3f}")
    print(f"after/before: eth_chainId {per['after'][0] / per['before'][0]:.2f}, "
          f"batch {per['after'][1] / per['before'][1]:.2f}")


if __name__ == "__main__":
    main()
