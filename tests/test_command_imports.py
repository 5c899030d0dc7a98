"""No command imports web3 or the libraries it is built on (issue 9): each command runs in a
fresh interpreter against Anvil, and afterwards ``sys.modules`` must hold none of them. They
cost ~1.5 s of start-up per command; the chain layer (``dtnsess_cli.chain``) replaces them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import fund

HEAVY = ("web3", "eth_abi", "eth_account", "eth_utils", "eth_keys", "eth_keyfile", "eth_typing",
         "hexbytes", "rlp", "requests", "urllib3", "pydantic", "aiohttp", "tenacity")

# run one command in process, then report which heavy modules it loaded (on stderr's last line)
PROBE_OF = (
    "import json, sys\n"
    "from dtnsess_cli.cli import main\n"
    "try:\n"
    "    rc = main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    rc = exc.code\n"
    "heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))\n"
    "sys.stderr.write('\\nHEAVY ' + json.dumps({'rc': rc, 'heavy': heavy}) + '\\n')\n"
)
PROBE = PROBE_OF % (HEAVY,)


@pytest.fixture
def run(anvil, system6, private_keys, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DTNSESS_") and k not in ("ETH_RPC_URL", "FOUNDRY_DIR")}
    env.update(HOME=str(tmp_path), DTNSESS_LOCK_DIR=str(tmp_path), DTNSESS_RPC_URL=anvil.url,
               DTNSESS_CONTRACT=system6.manager.address, DTNSESS_CHAIN_ID="31337",
               DTNSESS_PRIVATE_KEY=private_keys[1])

    def go(*args: str, ok: bool = True, heavy: tuple = HEAVY) -> dict:
        p = subprocess.run([sys.executable, "-c", PROBE_OF % (heavy,), *args, "--json"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
        report = json.loads(p.stderr.strip().splitlines()[-1].split("HEAVY ", 1)[1])
        assert (report["rc"] in (0, None)) == ok, (args, p.stderr)
        assert report["heavy"] == [], f"dtnsess {' '.join(args)} imported {report['heavy']}"
        return json.loads(p.stdout)

    return go


def test_commands_never_import_web3(run, system6, user):
    fund(system6, user, 100, approve=False)
    created = run("create", "20", "--yes")  # approve + create: signing, journal, receipts
    sid = str(created["session_id"])
    run("stats", sid)
    assert any(int(s["session_id"]) == int(sid) for s in run("sessions")["sessions"])
    run("balance")
    tx_hash = created["transactions"][-1]["tx_hash"]
    assert run("tx", tx_hash)["status"] == "mined"  # events decoded
    # issue 19: a write's JSON result needs no rich (its consoles are made when first used)
    run("close", sid, "--yes", heavy=HEAVY + ("rich",))
    other = str(run("create", "20", "--yes")["session_id"])
    assert run("request", "hello", "--session", other, "--yes")["request_id"].startswith("0x")
    assert run("request", "again", "--yes", heavy=HEAVY + ("rich",))["request_id"]
    run("requests")
    run("cleanup")
    # a revert decoded from the ABI (a stranger's session): an error, still nothing heavy
    err = run("close", "999999", "--yes", ok=False)
    assert err["error"]


def test_image_ipfs_and_model_commands_never_import_web3(run, system6, user):
    """Images, IPFS answers, models and doctor's model check: the chain layer and the stdlib."""
    from dtnsess_cli.chain.abi import encode
    from dtnsess_cli.devnet.localdtn import make_png, respond

    fund(system6, user, 100, approve=False)
    run("create", "20", "--yes")
    rid = run("request", "a cat", "--image", "64x48", "--yes")["request_id"]
    respond(system6, bytes.fromhex(rid[2:]), worker=system6.worker, node=system6.node_id,
            payload=encode(["bytes"], [make_png(64, 48)]))
    assert run("response", rid)["kind"] == "image"
    run("models")
    run("doctor")


def test_request_and_close_import_no_lock_library_nor_cffi(run, system6, user):
    """Issue 19, item 4: filelock (27-95 ms of import, measured) gave way to
    the OS's own lock (chain/oslock.py), and keccak binds pycryptodome's C code with ctypes, not
    through cffi (whose ABI mode parses C declarations with pycparser, ~50-85 ms)."""
    light = ("filelock", "asyncio", "cffi", "pycparser")
    fund(system6, user, 100, approve=False)
    asked, closed = (str(run("create", "20", "--yes")["session_id"]) for _ in range(2))
    assert run("request", "hi", "--session", asked, "--yes", heavy=light)["request_id"]
    run("close", closed, "--yes", heavy=light)  # (one with a pending request may not close)


def test_commands_on_an_http_node_import_no_http_client_email_or_ssl(run, system6, user):
    """issue 19: JSON-RPC speaks the project's own HTTP/1.1 (chain/http11.py): http.client
    (which imports email, and ssl) cost ~55 ms of import per command; an http:// node needs
    no ssl either (https:// imports it when connecting)."""
    fund(system6, user, 100, approve=False)
    lean = HEAVY + ("http", "email", "ssl")
    sid = str(run("create", "20", "--yes", heavy=lean)["session_id"])
    run("close", sid, "--yes", heavy=lean)
    other = str(run("create", "20", "--yes", heavy=lean)["session_id"])
    assert run("request", "hello", "--session", other, "--yes", heavy=lean)["request_id"]
    run("balance", heavy=lean)
    run("stats", other, heavy=lean)
