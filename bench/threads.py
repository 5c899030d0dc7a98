"""One Python API Client shared by a thread pool, or one AsyncClient by asyncio tasks: AI
requests over K sessions, vs one thread.

    .venv/bin/python bench/threads.py [--n 24] [--sessions 8] [--threads 1,4,8] [--tasks 4,8]
                                      [--delay-ms 0,50]

A fresh Anvil on 127.0.0.1 (automine) with the local DTN (6-decimal token); the user (Anvil dev
account 1) owns K sessions. N prompts, prompt i on session i % K, are sent with
``Client.make_ai_request(prompt, session_id=...)``:

  threads=1:  one thread, one request after the other (what a plain loop does)
  threads=T:  T threads share ONE Client (each thread its own node connection; writes take turns
              on the sender lock, so nonces never clash; reads and pacing waits overlap)
  async=T:    T asyncio tasks share ONE AsyncClient (one thread: the sync send path in
              greenlets on the event loop, JSON-RPC over asyncio streams; writes take turns on
              the loop, reads and pacing waits overlap)
  batch:      ``Client.request_batch(prompts)`` in one thread (pipelined: a wave of K sends in
              one round trip), for reference

The node is reached through bench/latency_proxy.py (+delay ms per round trip, like a remote
node). DTN takes one request per session and second, so K sessions allow at most K requests/s.
Each run checks that N requests were made and that every transaction is in the journal, mined.
Then each mode's workers read the N requests back (``response(request_id)``, a read of two
calls in one round trip), to show what concurrency buys where nothing waits for a turn.
Printed: wall time, requests/s, and the ratio to threads=1, for the requests and the reads.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import anvil, header, median, rpc, web3_for
from latency_proxy import LatencyProxy


async def run_async(tasks: int, url: str, system, key: str, sids: list, prompts: list,
                    state: Path) -> tuple:
    from dtnsess_cli import AsyncClient, signer_from_key

    async with AsyncClient(url, system.manager.address, signer=signer_from_key(key),
                           state_dir=state) as client:
        await client.config()  # connect first: the measurement is the requests
        t = time.perf_counter()
        queue = list(range(len(prompts)))
        ids: list = []

        async def worker() -> None:  # as a thread of the pool: one prompt after the other
            while queue:
                i = queue.pop(0)
                r = await client.make_ai_request(prompts[i], session_id=sids[i % len(sids)])
                ids.append(r.request_id)

        await asyncio.gather(*(worker() for _ in range(tasks)))
        wall = time.perf_counter() - t
        assert len(set(ids)) == len(prompts)
        t = time.perf_counter()
        queue = list(ids)

        async def reader() -> None:
            while queue:
                await client.response(queue.pop(0))

        await asyncio.gather(*(reader() for _ in range(tasks)))
        return wall, time.perf_counter() - t


def run_once(mode: str, threads: int, url: str, system, key: str, sids: list, prompts: list,
             state: Path) -> tuple:
    """(seconds for the requests, seconds for reading back each one's ``response``)."""
    from dtnsess_cli import Client, signer_from_key

    if mode == "async":
        return asyncio.run(run_async(threads, url, system, key, sids, prompts, state))
    client = Client(url, system.manager.address, signer=signer_from_key(key), state_dir=state)
    try:
        client.config()  # connect first: the measurement is the requests
        t = time.perf_counter()
        if mode == "batch":
            out = client.request_batch(prompts)
            assert all(e["status"] == "sent" for e in out["requests"]), out["error"]
            return time.perf_counter() - t, None
        def one(i: int):
            return client.make_ai_request(prompts[i], session_id=sids[i % len(sids)])

        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(one, range(len(prompts))))
            wall = time.perf_counter() - t
            assert len({r.request_id for r in results}) == len(prompts)
            t = time.perf_counter()
            list(pool.map(client.response, [r.request_id for r in results]))
        return wall, time.perf_counter() - t
    finally:
        client.close()


def main(argv=None) -> int:
    from dtnsess_cli.devnet.localdtn import deploy_system, transact

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--threads", default="1,4,8")
    ap.add_argument("--tasks", default="4,8")
    ap.add_argument("--delay-ms", default="0,50")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)
    pools = [int(x) for x in args.threads.split(",")]
    delays = [float(x) for x in args.delay_ms.split(",")]
    print(header("threads.py"))
    rows = []
    with anvil() as node, tempfile.TemporaryDirectory(prefix="dtnsess-bench-threads-") as tmp:
        from dtnsess_cli.devnet.anvil import dev_private_keys

        w3 = web3_for(node.url)
        deployer, user = w3.eth.accounts[0], w3.eth.accounts[1]
        key = dev_private_keys(2)[1]
        system = deploy_system(w3, deployer, 6)
        transact(w3, system.token.functions.mint(user, 100_000 * system.unit), deployer)
        transact(w3, system.token.functions.approve(system.manager.address, 2**256 - 1), user)
        for _ in range(args.sessions):
            transact(w3, system.manager.functions.createSession(50 * system.unit), user)
        sids = [int(s) for s in system.manager.functions.getUserActiveSessions(user).call()]
        prompts = [f"prompt {i + 1}: what is {i + 1} + {i + 1}?" for i in range(args.n)]
        tasks = [int(x) for x in args.tasks.split(",") if x]
        modes = [("threads", t) for t in pools] + [("async", t) for t in tasks] + [("batch", 1)]
        with LatencyProxy(node.url, 0) as proxy:
            for r in range(args.rounds):
                for delay in delays:
                    proxy.delay_ms = delay
                    for mode, t in modes:
                        snap = rpc(node.url, "evm_snapshot")
                        state = Path(tmp) / f"state-{r}-{delay:g}-{mode}-{t}"
                        try:
                            time.sleep(1.1)  # every session free again (one request a second)
                            block = w3.eth.block_number
                            wall, reads = run_once(mode, t, proxy.url, system, key, sids,
                                                   prompts, state)
                            made = len(system.router.events.RequestCreated.get_logs(
                                from_block=block + 1))
                            db = sqlite3.connect(str(state / "journal.sqlite3"))
                            journaled = db.execute(
                                "SELECT COUNT(*), SUM(status = 'mined') FROM txs").fetchone()
                            db.close()
                            assert made == args.n, (mode, t, made)
                            assert journaled[0] == journaled[1] >= args.n, journaled
                            rows.append((delay, mode, t, wall, reads))
                        finally:
                            rpc(node.url, "evm_revert", [snap])
    print(f"\nN = {args.n} requests over K = {args.sessions} sessions, one shared Client; "
          f"medians over {args.rounds} round(s); at most K = {args.sessions} requests/s")
    print("then the N requests' response() read back by the same workers (batch: -)")
    hdr = (f"{'+ms':>4} {'mode':8} {'workers':>7} {'wall s':>7} {'req/s':>6} {'vs 1 thread':>11}"
           f" {'reads s':>7} {'vs 1 thread':>11}")
    print(hdr)
    print("-" * len(hdr))
    for delay in delays:
        base = median([w for d, m, t, w, _ in rows if d == delay and m == "threads" and t == 1])
        base_r = median([r for d, m, t, _, r in rows
                         if d == delay and m == "threads" and t == 1])
        for mode, t in modes:
            sel = [(w, r) for d, m, tt, w, r in rows if d == delay and m == mode and tt == t]
            wall = median([w for w, _ in sel])
            reads = median([r for _, r in sel]) if sel[0][1] is not None else None
            tail = (f" {reads:>7.2f} {base_r / reads:>10.2f}x" if reads is not None
                    else f" {'-':>7} {'-':>11}")
            print(f"{delay:>4g} {mode:8} {t:>7} {wall:>7.2f} {args.n / wall:>6.2f} "
                  f"{base / wall:>10.2f}x" + tail)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
