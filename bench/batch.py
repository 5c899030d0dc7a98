"""Batch throughput: `dtnsess request --file PROMPTS` over K sessions vs N single invocations.

    .venv/bin/python bench/batch.py [--n 20] [--sessions 1,4] [--delay-ms 0,50] [--block-time 0,2]

Same devnet-like setup as bench/rpc.py (fresh Anvil on 127.0.0.1, localdtn.deploy_system with a
6-decimal token, user = Anvil dev account 1 via DTNSESS_PRIVATE_KEY, never printed), the CLI
reached through bench/latency_proxy.py. The user's K sessions are created directly on Anvil
before each measurement; each measurement runs inside evm_snapshot/evm_revert.

  sequential: N processes `dtnsess request "prompt i" --yes --json`, one after the other
  file:       one process `dtnsess request --file prompts.txt --yes --json` (fans out over K)
  cast:       N `cast send ... makeAIRequest(prompt, model, [])` on one session, one after the
              other, as a user's shell loop would (native cast from node_modules, pinned); a send
              that collides with the previous request's second (RequestIdCollision: DTN ids have
              one-second resolution) is sent again in the next second, as such a loop must

Requests are not answered (pending requests do not block new ones). Printed: wall time,
requests per second, round trips, and the ratio file/sequential in requests per second. DTN ids
have one-second resolution per session and user, so K sessions allow at most K requests/s.
`--block-time 0` is Anvil's automine (a receipt is ready at once); `2` mines every 2 s like Base,
which shows whether the client pipelines (sends the next request before the last is mined).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import anvil, cli_env, header, median, rpc, web3_for
from latency_proxy import LatencyProxy

DTNSESS = Path(sys.executable).parent / "dtnsess"
CAST = Path(__file__).resolve().parent.parent / "node_modules" / "@foundry-rs" / "cast-linux-amd64" / "bin" / "cast"
from dtnsess_cli.models import DEFAULT_TEXT_MODEL as MODEL  # what the devnet registers


def cast_request(url: str, manager: str, key: str, prompt: str, cwd: str):
    """One `cast send` of makeAIRequest; a same-second collision is retried in the next second."""
    cmd = [str(CAST), "send", "--rpc-url", url, "--private-key", key, "--value", "300000", manager,
           "makeAIRequest(string,string,bytes32[])", prompt, MODEL, "[]"]
    for _ in range(5):
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
        if p.returncode == 0 or "revert" not in (p.stderr + p.stdout).lower():
            return p
        time.sleep(1.0 - time.time() % 1.0 + 0.01)  # the next second
    return p


def cli(argv, env, cwd):
    return subprocess.run([str(DTNSESS), *argv, "--json"], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=900)


def count_requests(system, from_block: int) -> int:
    return len(system.router.events.RequestCreated.get_logs(from_block=from_block))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--sessions", default="1,4")
    ap.add_argument("--delay-ms", default="0,50")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--block-time", default="0,2", help="0 = automine; else seconds per block")
    ap.add_argument("--modes", default="sequential,file,cast",
                    help="comma-separated: sequential, file, cast (the first listed is the base)")
    args = ap.parse_args(argv)
    block_times = [float(x) for x in args.block_time.split(",")]
    ks = [int(x) for x in args.sessions.split(",")]
    delays = [float(x) for x in args.delay_ms.split(",")]
    print(header("batch.py"))
    rows = []
    failures = []
    for bt in block_times:
        measure(args, bt, ks, delays, rows, failures)
    report(args, block_times, ks, delays, rows, failures)
    return 1 if failures else 0


def measure(args, bt, ks, delays, rows, failures) -> None:
    from dtnsess_cli.devnet.localdtn import deploy_system, transact

    kw = {"block_time": bt} if bt > 0 else {}
    with anvil(**kw) as node, tempfile.TemporaryDirectory(prefix="dtnsess-bench-batch-") as cwd:
        w3 = web3_for(node.url)
        deployer, user = w3.eth.accounts[0], w3.eth.accounts[1]
        system = deploy_system(w3, deployer, 6)
        unit = system.unit
        transact(w3, system.token.functions.mint(user, 100_000 * unit), deployer)
        transact(w3, system.token.functions.approve(system.manager.address, 2**256 - 1), user)
        prompts = [f"prompt number {i + 1}: what is {i + 1} + {i + 1}?" for i in range(args.n)]
        pfile = Path(cwd) / "prompts.txt"
        pfile.write_text("\n".join(prompts) + "\n")
        with LatencyProxy(node.url, 0) as proxy:
            env = cli_env(proxy.url, system.manager.address)
            for _ in range(args.rounds):
                for delay in delays:
                    proxy.delay_ms = delay
                    for k in ks:
                        for mode in args.modes.split(","):
                            if mode != "file" and k != ks[0]:
                                continue  # a single request always uses the newest session
                            snap = rpc(node.url, "evm_snapshot")
                            try:
                                for _ in range(1 if mode == "cast" else k):
                                    transact(w3, system.manager.functions.createSession(50 * unit), user)
                                block = w3.eth.block_number
                                proxy.take()
                                t = time.perf_counter()
                                if mode == "sequential":
                                    codes = [cli(["request", p, "--yes"], env, cwd) for p in prompts]
                                elif mode == "cast":
                                    codes = [cast_request(proxy.url, system.manager.address,
                                                          env["DTNSESS_PRIVATE_KEY"], p, cwd)
                                             for p in prompts]
                                else:
                                    codes = [cli(["request", "--file", str(pfile), "--yes"], env, cwd)]
                                wall = time.perf_counter() - t
                                st = proxy.take()
                                sent = count_requests(system, block)
                                bad = [c for c in codes if c.returncode != 0]
                                if bad:
                                    failures.append(f"{mode} k={k} +{delay:g}ms block {bt:g}s: exit {bad[0].returncode}: "
                                                    f"{(bad[0].stderr or bad[0].stdout).strip()[-300:]}")
                                rows.append({"mode": mode, "k": k, "delay": delay, "bt": bt, "wall": wall,
                                             "sent": sent, "trips": st.round_trips})
                            finally:
                                rpc(node.url, "evm_revert", [snap])



def report(args, block_times, ks, delays, rows, failures) -> None:
    print(f"\nN = {args.n} prompts; medians over {args.rounds} round(s); block 0 = automine")
    hdr = f"{'block s':>7} {'mode':11} {'K':>2} {'+ms':>4} {'sent':>4} {'wall s':>7} {'req/s':>6} {'trips':>6} {'trips/req':>9} {'vs ' + args.modes.split(',')[0]:>13}"
    print(hdr)
    print("-" * len(hdr))

    def agg(mode, k, delay, bt):
        rs = [r for r in rows if r["mode"] == mode and r["k"] == k and r["delay"] == delay and r["bt"] == bt]
        if not rs:
            return None
        return {"wall": median([r["wall"] for r in rs]), "sent": median([r["sent"] for r in rs]),
                "trips": median([r["trips"] for r in rs])}

    modes = args.modes.split(",")
    for bt, delay in ((b, d) for b in block_times for d in delays):
        seq = agg(modes[0], ks[0], delay, bt)  # the base of the ratio: the first mode listed
        seq_rate = seq["sent"] / seq["wall"] if seq else None
        for mode, k in [(m, ks[0]) for m in modes if m != "file"] + [("file", k) for k in ks]:
            a = agg(mode, k, delay, bt)
            if a is None:
                continue
            rate = a["sent"] / a["wall"]
            ratio = f"{rate / seq_rate:.2f}" if seq_rate else "-"
            kk = "-" if mode != "file" else str(k)
            print(f"{bt:7.0f} {mode:11} {kk:>2} {delay:4.0f} {a['sent']:4.0f} {a['wall']:7.2f} {rate:6.2f} {a['trips']:6.0f} "
                  f"{a['trips'] / max(a['sent'], 1):9.1f} {ratio:>13}")
    if failures:
        print("\nFAILED runs:")
        for f in failures:
            print("  " + f)


if __name__ == "__main__":
    sys.exit(main())
