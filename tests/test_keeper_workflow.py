"""The CRE workflow's handler (keepers/cre/cleanup/workflow.ts) run on the test chain: the SDK's
test runtime with its EVM client mock wired to Anvil and the LocalForwarder stand-in
(keepers/cre/cleanup/devnet.test.ts, under `bun test`). One run closes the idle sessions
`dtnsess cleanup --check` reported; a receiver set up for another workflow refuses the report and
the run fails. Needs `npm ci` in keepers/cre (`make test` runs it)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from eth_utils import keccak

from cli_helpers import assert_ok, load_json
from dtnsess_cli.devnet.localdtn import deploy
from helpers import events, fund, increase_time, latest_ts, rpc, session

pytestmark = pytest.mark.usefixtures("conserved")

CRE_DIR = Path(__file__).resolve().parents[1] / "keepers" / "cre"
BUN = CRE_DIR / "node_modules" / ".bin" / "bun"
WORKFLOW_ID = "0x" + keccak(text="dtnsess-cleanup on the devnet").hex()
WORKFLOW_NAME = "dtnsess-cleanup"


def run_handler(anvil, system, receiver: str, forwarder: str, slot: int, *, owner: str,
                transmitter: str) -> subprocess.CompletedProcess:
    import hashlib

    if not BUN.exists():
        pytest.fail(f"{BUN} is missing: run `npm ci` in keepers/cre (make test does)")
    env = dict(os.environ,
               DTNSESS_KEEPER_RPC=anvil.url, DTNSESS_KEEPER_MANAGER=system.manager.address,
               DTNSESS_KEEPER_RECEIVER=receiver, DTNSESS_KEEPER_FORWARDER=forwarder,
               DTNSESS_KEEPER_TRANSMITTER=transmitter, DTNSESS_KEEPER_SLOT=str(slot),
               DTNSESS_KEEPER_WORKFLOW_ID=WORKFLOW_ID, DTNSESS_KEEPER_WORKFLOW_OWNER=owner,
               DTNSESS_KEEPER_WORKFLOW_NAME="0x" + hashlib.sha256(
                   WORKFLOW_NAME.encode()).hexdigest()[:10].encode().hex())
    return subprocess.run([str(BUN), "test", "cleanup/devnet.test.ts"], cwd=CRE_DIR, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def result_of(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    found = re.findall(r"DTNSESS_KEEPER_RESULT (\S+(?: \S+)*)", out)
    assert len(found) == 1, out
    return found[0]


@pytest.fixture
def keeper(system6, make_cli, deployer, accounts):
    """A LocalForwarder and a CleanupReceiver deployed with `dtnsess keeper deploy`, for the
    workflow WORKFLOW_ID of accounts[8]."""
    forwarder = deploy(system6.w3, "LocalForwarder", deployer)
    cli = make_cli(system6)
    out = cli.json("keeper", "deploy", "--forwarder", forwarder.address, "--workflow-id",
                   WORKFLOW_ID, "--workflow-owner", accounts[8], "--workflow-name",
                   WORKFLOW_NAME, "--yes", role="deployer")
    return cli, forwarder.address, out["receiver"], accounts[8]


def finalize(w3):
    """Anvil's finalized block is 64 behind the latest: what the workflow reads catches up."""
    rpc(w3, "anvil_mine", "0x40")


def idle(system, owner, n):
    m = system.manager.functions
    fund(system, owner, 10 * n)
    first = m.nextSessionId().call()
    for _ in range(n):
        system.manager.functions.createSession(10 * system.unit).transact({"from": owner})
    increase_time(system.w3, m.maxSessionAge().call() + 1)
    finalize(system.w3)
    return list(range(first, first + n))


def test_one_run_closes_the_sessions_cleanup_check_reported(anvil, system6, keeper, deployer, user):
    cli, forwarder, receiver, owner = keeper
    ids = idle(system6, user, 3)
    r = cli("cleanup", "--check", "--json", role=None)
    assert r.exit_code == 14
    reported = load_json(r)["would_close"]
    assert reported == ids

    tx = result_of(run_handler(anvil, system6, receiver, forwarder, latest_ts(system6.w3),
                               owner=owner, transmitter=deployer))

    assert re.fullmatch(r"0x[0-9a-f]{64}", tx)
    rcpt = system6.w3.eth.get_transaction_receipt(tx)
    assert [e["sessionId"] for e in events(system6.manager, "SessionClosed", rcpt)] == reported
    assert not any(session(system6, s)["active"] for s in ids)
    r = cli("cleanup", "--check", role=None)
    assert_ok(r)
    # once that is final, the next slot finds nothing idle and sends nothing
    finalize(system6.w3)
    block = system6.w3.eth.block_number
    assert result_of(run_handler(anvil, system6, receiver, forwarder, latest_ts(system6.w3),
                                 owner=owner, transmitter=deployer)) == "no idle session"
    assert system6.w3.eth.block_number == block


def test_a_receiver_of_another_workflow_refuses_and_the_run_fails(anvil, system6, keeper, deployer,
                                                                  user, stranger):
    cli, forwarder, receiver, _ = keeper
    ids = idle(system6, user, 2)
    proc = run_handler(anvil, system6, receiver, forwarder, latest_ts(system6.w3),
                       owner=stranger, transmitter=deployer)  # the DON signed another owner's
    assert proc.returncode != 0
    assert "refused by the receiver" in proc.stdout + proc.stderr
    assert all(session(system6, s)["active"] for s in ids)
