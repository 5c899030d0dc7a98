"""Helpers shared by the benchmarks: Anvil, the documented example, raw JSON-RPC, stats.

Benchmarks are scripts (`.venv/bin/python bench/<name>.py`), not tests: they print a comparison
and a ratio. Everything listens on 127.0.0.1 and every process started here is stopped in a
`finally`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
EXAMPLE_SOL = BENCH / "example" / "DocumentedExample.sol"
sys.path.insert(0, str(REPO / "src"))


def machine() -> str:
    cpus = os.cpu_count()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpus} CPUs ({model}), Python {platform.python_version()}"


def revision() -> str:
    """The commit measured, flagging uncommitted changes to the code under test (the tree is shared)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  check=False).stdout.strip()
        except OSError:
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src", "contracts", "abi")
    if dirty:
        head += f" + uncommitted changes in {len(dirty.splitlines())} file(s) of src/ contracts/ abi/"
    try:
        art = json.loads((REPO / "abi" / "AdvancedSessionManager.json").read_text())
        head += f"; abi/AdvancedSessionManager.json {art.get('sourcesHash', '?')[:19]}"
    except (OSError, ValueError):
        pass
    return head


def header(name: str) -> str:
    import datetime as dt

    return (f"# bench/{name}  {dt.datetime.now().isoformat(timespec='seconds')}\n"
            f"# machine: {machine()}\n# code: {revision()}")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs) -> str:
    """min–max as a short string, for the noise note."""
    if not xs:
        return "-"
    return f"{min(xs):.3f}–{max(xs):.3f}"


@contextmanager
def anvil(*extra_args: str, **start_kwargs):
    """A fresh Anvil on 127.0.0.1 (stopped on exit, also on error)."""
    from dtnsess_cli.devnet.anvil import AnvilProcess

    node = AnvilProcess()
    try:
        node.start(extra_args=list(extra_args), **start_kwargs)
        yield node
    finally:
        node.stop()


def rpc(url: str, method: str, params: list | None = None, timeout: float = 60.0):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def rpc_batch(url: str, calls: list[tuple[str, list]], timeout: float = 120.0) -> list:
    """One HTTP round trip with a JSON-RPC batch; results in call order, errors raised."""
    body = json.dumps(
        [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    )
    req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        replies = json.loads(resp.read())
    by_id = {r["id"]: r for r in replies}
    out = []
    for i, (m, _) in enumerate(calls):
        r = by_id[i]
        if "error" in r:
            raise RuntimeError(f"{m}: {r['error']}")
        out.append(r["result"])
    return out


def web3_for(url: str):
    from web3 import Web3

    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 120}))


def compile_example() -> dict:
    """Compile bench/example/DocumentedExample.sol with the project's compile module.

    The example imports ./dtn/*.sol, so it is compiled from a temp dir holding it and a copy of
    contracts/dtn/. Output goes to another temp dir: the repository's abi/ is never written.
    Returns the artifact (abi, bytecode) of its contract AdvancedSessionManager.
    """
    with tempfile.TemporaryDirectory(prefix="dtnsess-bench-") as tmp:
        src = Path(tmp) / "src"
        out = Path(tmp) / "out"
        src.mkdir()
        shutil.copy(EXAMPLE_SOL, src / EXAMPLE_SOL.name)
        shutil.copytree(REPO / "contracts" / "dtn", src / "dtn")
        proc = subprocess.run(
            [sys.executable, "-m", "dtnsess_cli.compile", "--contracts", str(src), "--out", str(out)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"compiling the documented example failed:\n{proc.stderr}")
        return json.loads((out / "AdvancedSessionManager.json").read_text())


def deploy_artifact(w3, artifact: dict, sender: str, *args):
    from dtnsess_cli.devnet.localdtn import transact

    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = transact(w3, factory.constructor(*args), sender)
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def cli_env(rpc_url: str, manager: str) -> dict:
    """Environment for the dtnsess script as Anvil dev account 1 (a public test key, never printed)."""
    import os

    from dtnsess_cli.devnet.anvil import dev_private_keys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DTNSESS_", "ETH_RPC_URL"))}
    env.update({
        "DTNSESS_RPC_URL": rpc_url,
        "DTNSESS_CONTRACT": manager,
        "DTNSESS_PRIVATE_KEY": dev_private_keys(2)[1],
        "NO_COLOR": "1",
    })
    return env
