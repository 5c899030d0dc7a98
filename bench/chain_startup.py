"""Start-up of the lean chain layer (src/dtnsess_cli/chain/) vs web3 and its libraries, and one
`stats`-like read end to end in a fresh process vs the `cast call`s a user would type.

    .venv/bin/python bench/chain_startup.py [--runs 7] [--delay-ms 50]

1. Import times: each statement runs `--runs` times as a fresh `python -c`, the cases
   interleaved round-robin (so machine load hits all alike); median, min–max, and the cost above
   a bare interpreter.
2. A `stats`-like read: a fresh Anvil with the local DTN system and one session, behind
   bench/latency_proxy.py adding `--delay-ms` per HTTP request. Compared, each as fresh
   processes, interleaved:
   - lean: one Python process that imports the chain layer, encodes getConfig() and
     getSession(id), sends them with eth_chainId in ONE batch, decodes and prints JSON
     (what `dtnsess stats` becomes once rewired, minus Typer/rich: see the import table);
   - cast: `cast call getConfig()` + `cast call getSession(uint256)` with their return types,
     the native binary (node_modules/@foundry-rs/cast-linux-amd64; `npm install --no-save
     @foundry-rs/cast@1.7.1` when missing);
   - today: `dtnsess --json stats ID` (web3 on the command path).
   Round trips per run come from the proxy.
3. In-process costs once imported: signing a transaction, decoding 200 session structs
   (lean vs eth-account / eth-abi; web3's return normalizers would add to the latter).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, anvil, cli_env, header, median, spread, web3_for
from latency_proxy import LatencyProxy

VENV_BIN = Path(sys.executable).parent
PY = str(VENV_BIN / "python")
DTNSESS = VENV_BIN / "dtnsess"
CAST = REPO / "node_modules" / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast"

IMPORTS = [
    ("python -c pass", "pass"),
    ("chain: abi+contract+jsonrpc (reads)",
     "import dtnsess_cli.chain.abi, dtnsess_cli.chain.contract, dtnsess_cli.chain.jsonrpc"),
    ("chain: + signing (writes)",
     "import dtnsess_cli.chain.abi, dtnsess_cli.chain.contract, dtnsess_cli.chain.jsonrpc, "
     "dtnsess_cli.chain.signing"),
    ("typer + rich.console", "import typer, rich.console"),
    ("typer + rich.console + chain reads",
     "import typer, rich.console, dtnsess_cli.chain.abi, dtnsess_cli.chain.contract, "
     "dtnsess_cli.chain.jsonrpc"),
    ("typer + rich.console + chain reads+signing",
     "import typer, rich.console, dtnsess_cli.chain.abi, dtnsess_cli.chain.contract, "
     "dtnsess_cli.chain.jsonrpc, dtnsess_cli.chain.signing"),
    ("eth_abi", "import eth_abi"),
    ("eth_utils", "import eth_utils"),
    ("eth_account", "import eth_account"),
    ("eth_abi + eth_account + eth_utils", "import eth_abi, eth_account, eth_utils"),
    ("requests", "import requests"),
    ("web3", "import web3"),
]

# What the rewired `stats` does, without the CLI around it.
LEAN_STATS = r"""
import json, sys
from dtnsess_cli.artifacts import load_artifact
from dtnsess_cli.chain.contract import Contract, read
from dtnsess_cli.chain.jsonrpc import JsonRpc

url, manager, sid = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = Contract(manager, load_artifact("AdvancedSessionManager")["abi"])
rpc = JsonRpc(url)
(cfg, s), (cid,) = read(rpc, [m.call("getConfig"), m.call("getSession", sid)],
                        extra=[("eth_chainId", [])])
assert int(cid["result"], 16) == 31337
print(json.dumps({"session": s.sessionId, "owner": s.owner, "balance": s.balance,
                  "active": s.active, "decimals": cfg[2], "round_trips": rpc.round_trips}))
"""


def run(cmd: list, env: dict | None = None) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} exited {proc.returncode}: {proc.stderr.decode()[-400:]}")
    return dt


def bench_imports(runs: int) -> dict:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    times: dict = {label: [] for label, _ in IMPORTS}
    for _, stmt in IMPORTS:  # warm the page cache and .pyc files
        run([PY, "-c", stmt], env)
    for _ in range(runs):
        for label, stmt in IMPORTS:
            times[label].append(run([PY, "-c", stmt], env))
    base = median(times["python -c pass"])
    web3_t = median(times["web3"])
    print(f"\nImport time, fresh processes, {runs} runs each, interleaved")
    print(f"{'import':44} {'median s':>9} {'min–max s':>13} {'- python':>9} {'/ web3':>7}")
    for label, _ in IMPORTS:
        m = median(times[label])
        print(f"{label:44} {m:9.3f} {spread(times[label]):>13} {m - base:9.3f} {m / web3_t:7.2f}")
    return times


def cast_sig(fn) -> str:
    return f"{fn.signature}({','.join(c.canonical for c in fn.outputs.components)})"


def bench_stats(runs: int, delay_ms: float) -> None:
    from dtnsess_cli.artifacts import load_artifact
    from dtnsess_cli.chain.abi import ContractAbi
    from dtnsess_cli.devnet.localdtn import deploy_system, transact

    have_cast = CAST.exists()
    if not have_cast:
        print(f"\n{CAST} not found: `npm install --no-save @foundry-rs/cast@1.7.1` for the cast side")
    mabi = ContractAbi(load_artifact("AdvancedSessionManager")["abi"])
    with anvil() as node, tempfile.TemporaryDirectory(prefix="dtnsess-bench-lean-") as cwd:
        w3 = web3_for(node.url)
        deployer, user = w3.eth.accounts[0], w3.eth.accounts[1]
        system = deploy_system(w3, deployer, 6)
        transact(w3, system.token.functions.mint(user, 1_000 * system.unit), deployer)
        transact(w3, system.token.functions.approve(system.manager.address, 2**256 - 1), user)
        transact(w3, system.manager.functions.createSession(50 * system.unit), user)
        sid = 1
        with LatencyProxy(node.url, delay_ms) as proxy:
            mgr = system.manager.address
            env = cli_env(proxy.url, mgr)
            cases = {"lean (chain layer, 1 process)": [[PY, "-c", LEAN_STATS, proxy.url, mgr, str(sid)]]}
            if have_cast:
                cases["cast call x2 (native)"] = [
                    [str(CAST), "call", "--rpc-url", proxy.url, mgr, cast_sig(mabi.function("getConfig"))],
                    [str(CAST), "call", "--rpc-url", proxy.url, mgr,
                     cast_sig(mabi.function("getSession")), str(sid)]]
            if DTNSESS.exists():
                cases["dtnsess --json stats (today, web3)"] = [[str(DTNSESS), "--json", "stats", str(sid)]]
            times: dict = {k: [] for k in cases}
            trips: dict = {k: [] for k in cases}
            for label, cmds in cases.items():  # warm-up
                for c in cmds:
                    run(c, env)
            proxy.take()
            for _ in range(runs):
                for label, cmds in cases.items():
                    t = 0.0
                    for c in cmds:
                        t += run(c, env)
                    times[label].append(t)
                    trips[label].append(proxy.take().round_trips)
            out = subprocess.run(cases["lean (chain layer, 1 process)"][0], capture_output=True,
                                 text=True, env=env, cwd=cwd, check=True).stdout.strip()
    print(f"\nA `stats`-like read, +{delay_ms:g} ms per HTTP request, fresh processes, {runs} runs, "
          f"interleaved")
    print(f"  lean output: {out}")
    ref = median(times.get("cast call x2 (native)", [float("nan")]))
    print(f"{'command':44} {'median s':>9} {'min–max s':>13} {'trips':>6} {'/ cast':>7}")
    for label in cases:
        m = median(times[label])
        print(f"{label:44} {m:9.3f} {spread(times[label]):>13} {median(trips[label]):6.0f} "
              f"{m / ref:7.2f}")


def bench_inprocess() -> None:
    """Per-operation costs once imported: signing (request --file signs one tx per prompt) and
    decoding 200 session structs (`sessions`), lean vs the reference libraries."""
    import eth_abi
    from eth_account import Account

    from dtnsess_cli.chain import abi
    from dtnsess_cli.chain.signing import LocalSigner

    key = "0x" + "11" * 32
    lean, ref = LocalSigner(key), Account.from_key(key)
    tx = {"to": lean.address, "value": 0, "data": "0x" + "12" * 400, "nonce": 0, "gas": 300_000,
          "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "chainId": 31337, "type": 2}
    sess = "(uint256,address,uint256,uint256,bool,uint256,uint256,uint256,uint256,bool,bool,uint256)[]"
    data = eth_abi.encode([sess], [[(i, lean.address, i, i, True, i, i, i, i, False, True, i)
                                    for i in range(200)]])

    def per_call(fn, n):
        fn()
        t = time.perf_counter()
        for i in range(n):
            fn()
        return (time.perf_counter() - t) / n * 1000

    print("\nIn-process, per operation (ms)")
    print(f"{'operation':44} {'lean':>9} {'reference':>10} {'ratio':>7}")
    for label, a, b in (
        ("sign an EIP-1559 tx (400 B data)", lambda: lean.sign_transaction(tx),
         lambda: ref.sign_transaction(tx)),
        ("decode 200 Session structs", lambda: abi.decode([sess], data),
         lambda: eth_abi.decode([sess], data)),
    ):
        x, y = per_call(a, 100), per_call(b, 100)
        print(f"{label:44} {x:9.3f} {y:10.3f} {x / y:7.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--skip-read", action="store_true", help="only the import table")
    args = ap.parse_args(argv)
    print(header("chain_startup.py"))
    bench_imports(args.runs)
    bench_inprocess()
    if not args.skip_read:
        bench_stats(args.runs, args.delay_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
