"""dtnsess against the Foundry `cast` commands a user would type by hand for the same result.

    .venv/bin/python bench/vs_cast.py [--runs 5] [--delay-ms 50] [--sessions 200] [--only stats,create]
                                      [--before /tmp/base/src]

A fresh Anvil on 127.0.0.1 gets a devnet-like deployment (localdtn.deploy_system: 6-decimal
MockUSDT, LocalDtnRouter, AdvancedSessionManager). The user is Anvil dev account 1 (a public
test key: DTNSESS_PRIVATE_KEY for dtnsess, `--private-key` for cast, never printed); it owns
session 1 and has made a few requests; dev account 2 owns `--sessions` active sessions (the
`sessions` scenario). Both tools talk to Anvil through bench/latency_proxy.py, which adds
`--delay-ms` per HTTP request like a remote RPC and counts round trips.

dtnsess runs from byte code, as a wheel installed by pip does (pip byte-compiles at install):
the package is compiled (`compileall`) before measuring. NOTE: a source checkout run with
PYTHONDONTWRITEBYTECODE set (this machine's default) would otherwise compile every module of
the command path at each start, ~0.05-0.2 s that no installed copy pays.

cast is the native binary from node_modules (`@foundry-rs/cast`, pinned in package.json; the
npm `.bin/cast` shim is a node script that adds ~0.15 s per call). Its sequences are the fewest
cast invocations that give the same information or the same chain change (listed in the
output); their signatures come from the bundled ABIs, so they follow the contract.

Each scenario runs `--runs` times per tool, interleaved (dtnsess, cast, cast, dtnsess, ...), every
write inside evm_snapshot / evm_revert so both tools start from the same chain. Printed per
scenario: median wall time of each, the ratio dtnsess / cast (below 1: dtnsess is faster),
min–max as the noise, and median round trips of each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, anvil, cli_env, header, median, rpc, spread, web3_for
from latency_proxy import LatencyProxy

DTNSESS = Path(sys.executable).parent / "dtnsess"
CAST = REPO / "node_modules" / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast"
from dtnsess_cli.models import DEFAULT_TEXT_MODEL as MODEL  # what the devnet registers
CALLBACK_VALUE = 300_000
# the earlier package (--before) run as pip's console script runs it (which imports re); through
# ``console`` where it has one (the script's entry point since issue 19's third round), else ``main``
BEFORE = [sys.executable, "-c", "import re, sys\nfrom dtnsess_cli import cli\n"
          "sys.exit(cli.console() if hasattr(cli, 'console') else cli.main())"]


def _sig(abi: list, name: str) -> str:
    """A cast signature `name(inputs)(outputs)` from the ABI entry (tuples spelled out)."""
    def t(p: dict) -> str:
        if p["type"].startswith("tuple"):
            return "(" + ",".join(t(c) for c in p["components"]) + ")" + p["type"][len("tuple"):]
        return p["type"]

    entry = next(e for e in abi if e.get("type") == "function" and e["name"] == name)
    outs = ",".join(t(o) for o in entry.get("outputs", []))
    return f"{name}({','.join(t(i) for i in entry['inputs'])})" + (f"({outs})" if outs else "")


class Setup:
    """The deployed system and the facts the scenarios need."""

    def __init__(self, w3, system, user: str, other: str, key: str) -> None:
        self.w3, self.system, self.user, self.other, self.key = w3, system, user, other, key
        self.mgr = system.manager.address
        self.token = system.token.address
        self.abi = system.manager.abi
        self.unit = system.unit
        self.request_ids: list[str] = []
        self.other_ids: list[int] = []


def scenarios(s: Setup) -> dict:
    """label -> (dtnsess argv, [cast argv...], is_write)."""
    sig = lambda name: _sig(s.abi, name)  # noqa: E731
    ids = "[" + ",".join(str(i) for i in s.other_ids) + "]"
    dec = ["call", s.token, "decimals()(uint8)"]
    allowance = ["call", s.token, "allowance(address,address)(uint256)", s.user, s.mgr]
    send = ["send", "--private-key", s.key]
    return {
        "balance": (["balance"], [
            ["balance", s.user], ["call", s.token, "balanceOf(address)(uint256)", s.user], allowance,
            ["call", s.mgr, sig("claimableRefunds"), s.user], dec], False),
        "stats 1": (["stats", "1"], [["call", s.mgr, sig("getSessionStats"), "1"], dec], False),
        f"sessions ({len(s.other_ids)})": (["sessions", "--user", s.other], [
            ["call", s.mgr, sig("getUserSessions"), s.other],
            ["call", s.mgr, sig("getSessions"), ids], dec], False),
        f"requests ({len(s.request_ids)})": (["requests"], [
            ["call", s.mgr, sig("getUserRequests"), s.user, "0", "100"],
            *[["call", s.mgr, sig("requests"), rid] for rid in s.request_ids]], False),
        "create 50": (["create", "50", "--yes"], [
            allowance, [*send, s.token, "approve(address,uint256)", s.mgr, str(50 * s.unit)],
            [*send, s.mgr, "createSession(uint256)", str(50 * s.unit)]], True),
        'request "hi"': (["request", "hi", "--yes"], [
            [*send, "--value", str(CALLBACK_VALUE), s.mgr, "makeAIRequest(string,string,bytes32[])", "hi",
             MODEL, "[]"]], True),
        "renew 1 25": (["renew", "1", "25", "--yes"], [
            allowance, [*send, s.token, "approve(address,uint256)", s.mgr, str(25 * s.unit)],
            [*send, s.mgr, "renewSession(uint256,uint256)", "1", str(25 * s.unit)]], True),
        "close 1": (["close", "1", "--yes"], [[*send, s.mgr, "closeSession(uint256)", "1"]], True),
    }


def prepare(node_url: str, n_other: int) -> Setup:
    from dtnsess_cli.devnet.anvil import dev_private_keys
    from dtnsess_cli.devnet.localdtn import deploy_system, respond, transact

    w3 = web3_for(node_url)
    deployer, user, other = w3.eth.accounts[0], w3.eth.accounts[1], w3.eth.accounts[2]
    system = deploy_system(w3, deployer, 6)
    s = Setup(w3, system, user, other, dev_private_keys(2)[1])
    mgr, tok = system.manager, system.token
    for who, amount in ((user, 1_000), (other, 20 * n_other + 100)):
        transact(w3, tok.functions.mint(who, amount * s.unit), deployer)
    # NOTE: the user's allowance is used up by its first session, so `create` and `renew` include
    # their approval on both sides (issue 9: "create (approve included)")
    transact(w3, tok.functions.approve(mgr.address, 100 * s.unit), user)
    transact(w3, tok.functions.approve(mgr.address, 2**255), other)
    transact(w3, mgr.functions.createSession(100 * s.unit), user)
    for _ in range(n_other):
        transact(w3, mgr.functions.createSession(10 * s.unit), other)
    s.other_ids = list(mgr.functions.getUserSessions(other).call())
    # A few answered requests of the user, one per second (DTN ids have one-second resolution).
    for i in range(3):
        rpc(node_url, "evm_increaseTime", [2])
        rpc(node_url, "evm_mine")  # estimation runs on the latest block: move its timestamp too
        transact(w3, mgr.functions.makeAIRequest(f"question {i}", MODEL, []), user, value=CALLBACK_VALUE)
        rid = mgr.events.AIRequestSubmitted.get_logs(from_block=w3.eth.block_number)[-1]["args"]["requestId"]
        respond(system, rid, worker=system.worker, node=system.node_id, text=f"answer {i}")
        s.request_ids.append("0x" + bytes(rid).hex())
    rpc(node_url, "evm_increaseTime", [2])
    rpc(node_url, "evm_mine")
    return s


def byte_compile() -> None:
    """Compile the dtnsess_cli package the console script imports (see the module's NOTE)."""
    import compileall

    import dtnsess_cli

    compileall.compile_dir(str(Path(dtnsess_cli.__file__).parent), quiet=1)


def run(cmd: list[str], env: dict, cwd: str) -> tuple[float, int, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t, proc.returncode, (proc.stderr or proc.stdout).strip()[-300:]


def measure(tool_cmds: list[list[str]], env, cwd, proxy, node_url, is_write) -> tuple[float, int, str]:
    """Wall time and round trips of a sequence of commands; writes are reverted afterwards."""
    snap = rpc(node_url, "evm_snapshot") if is_write else None
    try:
        proxy.take()
        wall, fail = 0.0, ""
        for cmd in tool_cmds:
            w, code, out = run(cmd, env, cwd)
            wall += w
            if code != 0 and not fail:
                fail = f"exit {code}: {out}"
        return wall, proxy.take().round_trips, fail
    finally:
        if snap is not None:
            rpc(node_url, "evm_revert", [snap])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--sessions", type=int, default=200, help="active sessions of the `sessions` scenario")
    ap.add_argument("--only", default="", help="comma-separated label prefixes to run")
    ap.add_argument("--before", metavar="SRC", help="also run the dtnsess_cli package in SRC (an "
                    "export of an earlier commit's src/) in the same rotation: before/after side by "
                    "side under the same load")
    args = ap.parse_args(argv)
    print(header("vs_cast.py"))
    for exe in (DTNSESS, CAST):
        if not exe.exists():
            print(f"{exe} not found (make install; npm ci)")
            return 1
    print(f"# cast: {subprocess.run([str(CAST), '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
    byte_compile()
    if args.before:
        import compileall

        compileall.compile_dir(str(Path(args.before) / "dtnsess_cli"), quiet=1)

    rows, failures = [], {}
    with anvil() as node, tempfile.TemporaryDirectory(prefix="dtnsess-bench-cast-") as cwd:
        s = prepare(node.url, args.sessions)
        with LatencyProxy(node.url, args.delay_ms) as proxy:
            env = cli_env(proxy.url, s.mgr)
            env["ETH_RPC_URL"] = proxy.url  # cast's RPC (cli_env drops the caller's)
            env["HOME"] = cwd  # a state dir (journal, token cache) of this run only
            # the same console script importing the earlier package (PYTHONPATH before the .pth)
            env_before = {**env, "PYTHONPATH": str(Path(args.before).resolve())} if args.before else None
            cases = {"--help": (["--help"], [["--help"]], False), **scenarios(s)}
            only = [p.strip() for p in args.only.split(",") if p.strip()]
            for label, (dargv, cast_seq, is_write) in cases.items():
                if only and not any(label.startswith(p) for p in only):
                    continue
                d_walls, c_walls, d_trips, c_trips, b_walls, b_trips = [], [], [], [], [], []
                tools = ["d", "c"] + (["b"] if args.before else [])
                for i in range(args.runs):
                    order = tools[i % len(tools):] + tools[:i % len(tools)]
                    for tool in order if i % 2 == 0 else reversed(order):
                        if tool in "db":
                            cmd = [str(DTNSESS), *dargv] if tool == "d" else [*BEFORE, *dargv]
                            w, t, fail = measure([cmd], env if tool == "d" else env_before,
                                                 cwd, proxy, node.url, is_write)
                            (d_walls if tool == "d" else b_walls).append(w)
                            (d_trips if tool == "d" else b_trips).append(t)
                        else:
                            w, t, fail = measure([[str(CAST), *c] for c in cast_seq], env, cwd, proxy, node.url,
                                                 is_write)
                            c_walls.append(w), c_trips.append(t)
                        if fail:
                            name = {"d": "dtnsess", "c": "cast", "b": "dtnsess before"}[tool]
                            failures.setdefault(f"{label} ({name})", fail)
                rows.append((label, d_walls, c_walls, d_trips, c_trips, len(cast_seq), b_walls, b_trips))

    d = args.delay_ms
    print(f"\n{args.runs} runs per tool, interleaved, +{d:g} ms per round trip; medians (min–max)")
    hdr = (f"{'scenario':16} {'dtnsess s':>9} {'cast s':>7} {'ratio':>6} {'trips d/c':>9} {'cast cmds':>9}"
           f"  {'noise dtnsess / cast':>28}")
    print(hdr)
    print("-" * len(hdr))
    for label, dw, cw, dt, ct, n, _, _ in rows:
        md, mc = median(dw), median(cw)
        print(f"{label:16} {md:9.3f} {mc:7.3f} {md / mc:6.2f} {median(dt):4.0f}/{median(ct):<4.0f} {n:9d}"
              f"  {spread(dw):>13} / {spread(cw):<13}")
    if args.before:
        print(f"\nbefore ({args.before}) and after, in the same rotation:")
        hdr = (f"{'scenario':16} {'before s':>8} {'ratio':>6} {'trips':>5}   {'after s':>7} {'ratio':>6} {'trips':>5}"
               f"  {'after/before':>12}  {'noise before':>13}")
        print(hdr)
        print("-" * len(hdr))
        for label, dw, cw, dt, ct, n, bw, bt in rows:
            md, mc, mb = median(dw), median(cw), median(bw)
            print(f"{label:16} {mb:8.3f} {mb / mc:6.2f} {median(bt):5.0f}   {md:7.3f} {md / mc:6.2f} {median(dt):5.0f}"
                  f"  {md / mb:12.2f}  {spread(bw):>13}")
    print("\nratio = dtnsess / cast: below 1.0 dtnsess is faster; the target (issue 9) is <= 0.7.")
    if failures:
        print("\nFAILED (numbers above include the failing path):")
        for label, why in failures.items():
            print(f"  {label}: {why}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
