"""One cron run of `dtnsess cleanup` against a backlog of idle sessions.

    .venv/bin/python bench/cleanup_backlog.py [--sizes 1000,10000]

For each size: a fresh Anvil on 127.0.0.1 with the devnet-like deployment (6-decimal token),
N sessions of 10 tokens created by three owners, time moved past maxSessionAge, then ONE
`dtnsess cleanup --json` run (the installed console script, as cron runs it, with automine on as
usual) by an address that owns none of them. The backlog is built fast, since only the cleanup
run is measured: automine off, the owners' createSession sends (Anvil's unlocked dev accounts,
explicit nonces) are sent without waiting, SEND_BATCH at a time, and `evm_mine` packs them into
blocks of BLOCK_GAS_LIMIT (waiting for each transaction took more than 25 minutes for 10,000;
a JSON-RPC batch of sends stalled Anvil, which took them out of nonce order). Prints the transactions it
sent, the sessions closed, gas per session, the largest transaction against 2^24, and the run's
wall time. Before issue 14 one run closed at most 150 sessions (`--max` 1..150), so the same
backlog needed ceil(N / 150) runs.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import anvil, cli_env, header, rpc, web3_for

DTNSESS = Path(sys.executable).parent / "dtnsess"
TX_CAP = 2**24
OLD_MAX_PER_RUN = 150
SEND_BATCH = 500  # createSession sends mined together
# Room for a whole batch in one block while the backlog is built (each send reserves 600,000);
# the cleanup run's transactions stay under 2^24 by the contract's own budget.
BLOCK_GAS_LIMIT = 400_000_000


def make_backlog(url: str, w3, system, owners: list[str], n: int) -> None:
    from dtnsess_cli.devnet.localdtn import transact

    m, amount = system.manager, 10 * system.unit
    for o in owners:
        transact(w3, system.token.functions.mint(o, amount * (n // len(owners) + 1)), o)
        transact(w3, system.token.functions.approve(m.address, 2**256 - 1), o)
    data = m.encode_abi("createSession", [amount])
    # Explicit nonces and automine off: nothing races for a nonce, and a block holds a batch.
    nonces = {o: w3.eth.get_transaction_count(o) for o in owners}
    rpc(url, "evm_setAutomine", [False])
    try:
        for start in range(0, n, SEND_BATCH):
            for i in range(start, min(n, start + SEND_BATCH)):
                o = owners[i % len(owners)]
                rpc(url, "eth_sendTransaction", [{"from": o, "to": m.address, "data": data,
                                                  "gas": hex(600_000), "nonce": hex(nonces[o])}])
                nonces[o] += 1
            # mine until the pool is empty (a block holds what fits its gas limit)
            while int(rpc(url, "txpool_status")["pending"], 16):
                rpc(url, "evm_mine", timeout=600)
    finally:
        rpc(url, "evm_setAutomine", [True])
    made = m.functions.nextSessionId().call() - 1
    if made != n:
        raise SystemExit(f"only {made} of {n} sessions were created")


def run_size(n: int) -> dict:
    from dtnsess_cli.devnet.localdtn import deploy_system

    with anvil("--gas-limit", str(BLOCK_GAS_LIMIT)) as node, \
            tempfile.TemporaryDirectory(prefix="dtnsess-bench-cleanup-") as cwd:
        w3 = web3_for(node.url)
        accts = w3.eth.accounts
        system = deploy_system(w3, accts[0], 6)
        t0 = time.monotonic()
        make_backlog(node.url, w3, system, accts[2:5], n)
        built = time.monotonic() - t0
        age = system.manager.functions.maxSessionAge().call()
        rpc(node.url, "evm_increaseTime", [age + 1])
        rpc(node.url, "evm_mine")
        env = cli_env(node.url, system.manager.address)  # dev account 1: owns no session
        # this chain's own lock and journal: other local chains share its id and addresses
        env["DTNSESS_LOCK_DIR"] = env["DTNSESS_STATE_DIR"] = cwd
        t0 = time.monotonic()
        proc = subprocess.run([str(DTNSESS), "cleanup", "--json"], env=env, cwd=cwd,
                              capture_output=True, text=True, timeout=3600, check=False)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"cleanup failed (exit {proc.returncode}): {proc.stderr.strip()}")
        out = json.loads(proc.stdout)
        gas = [w3.eth.get_transaction_receipt(t["tx_hash"])["gasUsed"] for t in out["transactions"]]
        left = system.manager.functions.getIdleSessions(1).call()
        return {"n": n, "txs": len(gas), "closed": len(out["closed"]), "gas": sum(gas),
                "max_tx": max(gas) if gas else 0, "wall": wall, "left": len(left), "built": built}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    args = ap.parse_args(argv)
    print(header("cleanup_backlog.py"))
    if not DTNSESS.exists():
        print(f"{DTNSESS} not found (make install)")
        return 1
    rows = [run_size(int(s)) for s in args.sizes.split(",")]
    hdr = (f"{'idle':>6} {'txs':>4} {'closed':>6} {'left':>4} {'gas/session':>11} {'largest tx':>11} "
           f"{'of 2^24':>7} {'wall s':>7} {'runs before':>11} {'backlog built s':>15}")
    print("\nOne `dtnsess cleanup` run (cron) over N idle sessions")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['n']:>6} {r['txs']:>4} {r['closed']:>6} {r['left']:>4} {r['gas'] // max(r['closed'], 1):>11,} "
              f"{r['max_tx']:>11,} {r['max_tx'] / TX_CAP:>7.0%} {r['wall']:>7.1f} "
              f"{math.ceil(r['n'] / OLD_MAX_PER_RUN):>11} {r['built']:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
