"""What a write pays for its sender lock and its first keccak, before and after (issue 19, item 4).

    .venv/bin/python bench/lock_keccak.py --before /tmp/base/src [--runs 15]

``--before``: an export of an earlier commit's src/ whose dependencies (filelock) are importable
with it on PYTHONPATH (e.g. ``pip install --no-deps --target /tmp/base/src filelock``).
Each run is a fresh interpreter that times the import of ``chain.abi`` and ``chain.journal``
and what a write does with them the first time: take and release the sender lock
(``journal.sender_lock``: filelock before, chain/oslock.py after) and hash once
(``abi.keccak``: Crypto.Hash.keccak through cffi before, ctypes after). Before and after alternate; medians with min–max, and the
ratio after/before. CPU-bound only: no node, no network.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, header, median, spread

PROBE = r"""
import sys, time
import dtnsess_cli.errors, dtnsess_cli.chain.errors
t = time.perf_counter()
from dtnsess_cli.chain import abi, journal
lock = journal.sender_lock("0x" + "11" * 20, sys.argv[1], (31337, "0x" + "22" * 32))
try:
    lock.acquire(timeout=0)  # filelock's signature (before)
except TypeError:
    lock.acquire()
lock.release()
abi.keccak(b"dtnsess")
print((time.perf_counter() - t) * 1000)
"""


def once(src: Path, state: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", PROBE, state], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return float(out.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, metavar="SRC")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args(argv)
    print(header("lock_keccak.py"))
    sides = {"before": Path(args.before).resolve(), "after": REPO / "src"}
    times: dict = {k: [] for k in sides}
    with tempfile.TemporaryDirectory() as state:
        for _ in range(args.runs):
            for name, src in sides.items():
                times[name].append(once(src, state))
    b, a = median(times["before"]), median(times["after"])
    print(f"\n{args.runs} runs each, interleaved; import chain.abi and chain.journal, take and "
          f"release the sender lock, hash once; in a fresh interpreter (ms)")
    print(f"{'':8} {'median':>8}  {'min–max':>14}")
    for name in sides:
        print(f"{name:8} {median(times[name]):8.1f}  {spread(times[name]):>14}")
    print(f"\nafter/before: {a / b:.2f}  ({b - a:.0f} ms less per write)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
