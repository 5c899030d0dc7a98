"""JSON-RPC round trips and wall time per CLI command, through a proxy that adds remote latency.

    .venv/bin/python bench/rpc.py [--delay-ms 50] [--rounds 3] [--show-sequence]

A fresh Anvil on 127.0.0.1 gets a devnet-like deployment (localdtn.deploy_system: 6-decimal
MockUSDT, LocalDtnRouter, AdvancedSessionManager); the user is Anvil dev account 1 (a public
test key, given to the CLI through DTNSESS_PRIVATE_KEY and never printed). Each main command
runs as the installed console script (.venv/bin/dtnsess ... --json) with --rpc-url pointing at
bench/latency_proxy.py, in a temp working directory (no .env, no devnet file). The scenario
(balance, create, request, stats, sessions, close, cleanup, doctor) runs inside evm_snapshot /
evm_revert, `--rounds` times at 0 ms and at `--delay-ms` added latency per round trip. The
request is answered by the node between `request` and `stats` directly on Anvil (not counted).

Printed per command: median round trips (HTTP requests; a JSON-RPC batch is one), calls, new TCP
connections, median wall time at 0 ms and at the added latency, their ratio, and a floor: the
fewest round trips the command needs without batching (every fact fetched once; a transaction
costs chain id, nonce, fees, call, estimate, send, receipt = 7) and with JSON-RPC batching.
`--show-sequence` prints every round trip of one run, to see what is fetched twice.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import anvil, cli_env, header, median, rpc, spread, web3_for
from latency_proxy import LatencyProxy

DTNSESS = Path(sys.executable).parent / "dtnsess"

# (label, argv) in scenario order; the request is answered after "request".
SCENARIO = [
    ("balance", ["balance"]),
    ("create 50", ["create", "50", "--yes"]),
    ('request "hi"', ["request", "hi", "--yes"]),
    ("stats 1", ["stats", "1"]),
    ("sessions", ["sessions"]),
    ("close 1", ["close", "1", "--yes"]),
    ("cleanup", ["cleanup"]),
    ("doctor", ["doctor"]),
]

# Fewest round trips: (unbatched, batched, what they are). See the module docstring.
FLOORS = {
    "balance": (5, 2, "getConfig (token, decimals); ETH balance, balanceOf, allowance, claimableRefunds"),
    "create 50": (16, 7, "getConfig, balanceOf, allowance + approve tx (7) + create tx (7, chain id known)"),
    'request "hi"': (8, 3, "getConfig (model fees) + 1 tx (7); batched: [reads, nonce, fees, call, estimate], send, receipt"),
    "stats 1": (2, 1, "getConfig (decimals), getSession(1)"),
    "sessions": (3, 2, "getConfig, getUserSessions, getSessions(ids)"),
    "close 1": (8, 3, "getSession(1) (owner, pending) + 1 tx (7)"),
    "cleanup": (2, 1, "getConfig, getIdleSessions(max) -> nothing idle, no tx"),
    "doctor": (6, 2, "chainId, getCode(manager), getConfig, getCode(token), ETH balance, token balance"),
}


def selectors() -> dict[str, str]:
    """4-byte selector -> function name for every bundled ABI (labels eth_call in the proxy)."""
    from eth_utils import function_abi_to_4byte_selector

    from dtnsess_cli.artifacts import all_abis

    out = {}
    for abi in all_abis().values():
        for item in abi:
            if item.get("type") == "function":
                out["0x" + function_abi_to_4byte_selector(item).hex()] = item["name"]
    return out


def run_cli(argv: list[str], env: dict, cwd: str) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run([str(DTNSESS), *argv, "--json"], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    return time.perf_counter() - t, proc


def answer_latest_request(system, from_block: int) -> bool:
    """Answer the newest request as the devnet node would (straight to Anvil, not counted)."""
    from dtnsess_cli.devnet.localdtn import respond

    logs = system.router.events.RequestCreated.get_logs(from_block=from_block)
    if not logs:
        return False
    respond(system, logs[-1]["args"]["requestId"], worker=system.worker, node=system.node_id, text="hello")
    return True


def run_round(node_url, w3, system, proxy, env, cwd, delay_ms, results, sequences, failures):
    proxy.delay_ms = delay_ms
    snap = rpc(node_url, "evm_snapshot")
    try:
        for label, argv in SCENARIO:
            block = w3.eth.block_number
            proxy.take()
            wall, proc = run_cli(argv, env, cwd)
            st = proxy.take()
            if proc.returncode != 0:
                failures.setdefault(label, f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
            results.setdefault((label, delay_ms), []).append((wall, st))
            sequences.setdefault(label, st.sequence)
            if label.startswith("request") and proc.returncode == 0:
                answer_latest_request(system, block)
    finally:
        rpc(node_url, "evm_revert", [snap])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--show-sequence", action="store_true")
    args = ap.parse_args(argv)
    print(header("rpc.py"))
    if not DTNSESS.exists():
        print(f"{DTNSESS} not found (make install)")
        return 1

    from dtnsess_cli.devnet.localdtn import deploy_system, transact

    results: dict = {}
    sequences: dict = {}
    failures: dict = {}
    with anvil() as node, tempfile.TemporaryDirectory(prefix="dtnsess-bench-rpc-") as cwd:
        w3 = web3_for(node.url)
        deployer, user = w3.eth.accounts[0], w3.eth.accounts[1]
        system = deploy_system(w3, deployer, 6)
        transact(w3, system.token.functions.mint(user, 1_000 * system.unit), deployer)
        with LatencyProxy(node.url, 0, selectors=selectors()) as proxy:
            env = cli_env(proxy.url, system.manager.address)
            for r in range(args.rounds):
                for delay in (0.0, args.delay_ms):
                    run_round(node.url, w3, system, proxy, env, cwd, delay, results, sequences, failures)

    d = args.delay_ms
    print(f"\nPer command: {args.rounds} runs each at 0 ms and +{d:g} ms per round trip; medians "
          f"(min–max wall in brackets)")
    hdr = (f"{'command':14} {'trips':>5} {'calls':>5} {'conns':>5} {'floor':>5} {'batch':>5} {'x floor':>7} "
           f"{'wall 0ms':>9} {f'wall {d:g}ms':>10} {'ratio':>6}  {'noise 0ms / ' + f'{d:g}ms':>26}")
    print(hdr)
    print("-" * len(hdr))
    total_trips = total_floor = 0
    for label, _ in SCENARIO:
        r0 = results.get((label, 0.0), [])
        r1 = results.get((label, d), [])
        trips = median([s.round_trips for _, s in r0 + r1])
        calls = median([s.calls for _, s in r0 + r1])
        conns = median([s.connections for _, s in r0 + r1])
        w0 = median([w for w, _ in r0])
        w1 = median([w for w, _ in r1])
        floor, bfloor, _ = FLOORS[label]
        total_trips += trips
        total_floor += floor
        print(f"{label:14} {trips:5.0f} {calls:5.0f} {conns:5.0f} {floor:5d} {bfloor:5d} {trips / floor:7.2f} "
              f"{w0:9.2f} {w1:10.2f} {w1 / w0:6.2f}  {spread([w for w, _ in r0]):>12} / {spread([w for w, _ in r1]):<12}")
    print(f"{'all':14} {total_trips:5.0f} {'':5} {'':5} {total_floor:5d} {'':5} {total_trips / total_floor:7.2f}")
    print(f"\nadded wall time per round trip ~ {d:g} ms: a command's cost at remote latency is about "
          f"start-up + trips x latency (+ TCP/TLS per new connection on HTTPS, not simulated)")
    for label, why in ((k, v[2]) for k, v in FLOORS.items()):
        print(f"  floor {label}: {why}")

    print("\nRound trips by method (one run at 0 ms):")
    for label, _ in SCENARIO:
        seq = sequences.get(label, [])
        counts = Counter(seq)
        dup = {k: v for k, v in counts.items() if v > 1 and not k.startswith("eth_getTransactionReceipt")}
        print(f"  {label}: " + ", ".join(f"{k} x{v}" for k, v in counts.most_common()))
        if dup:
            print("    repeated: " + ", ".join(f"{k} x{v}" for k, v in dup.items()))
        if args.show_sequence:
            for i, s in enumerate(seq, 1):
                print(f"      {i:2}. {s}")
    if failures:
        print("\nFAILED commands (their numbers above are for the failing path):")
        for label, why in failures.items():
            print(f"  {label}: {why}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
