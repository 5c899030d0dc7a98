"""`dtnsess keeper deploy|configure|status|check` on Anvil: the receiver deployed and set up for
the configured manager, bad input refused in one line with nothing sent, a workflow config
checked against the chain."""

from __future__ import annotations

import hashlib
import json

import pytest
from eth_utils import keccak

from cli_helpers import assert_error, assert_ok, load_json, nonce
from dtnsess_cli.devnet.localdtn import contract, deploy
from dtnsess_cli.errors import ExitCode
from dtnsess_cli.manager.keeper import IRECEIVER_INTERFACE_ID, workflow_name_bytes

WORKFLOW_ID = "0x" + keccak(text="a workflow").hex()


@pytest.fixture
def forwarder(system6, deployer):
    return deploy(system6.w3, "LocalForwarder", deployer).address


def test_deploy_then_status(system6, make_cli, forwarder, deployer, accounts):
    cli = make_cli(system6)
    out = cli.json("keeper", "deploy", "--forwarder", forwarder, "--max-batch", "20",
                   "--workflow-owner", accounts[8], "--workflow-name", "dtnsess-cleanup", "--yes",
                   role="deployer")
    rc = contract(system6.w3, "CleanupReceiver", out["receiver"]).functions
    assert rc.manager().call() == system6.manager.address and rc.forwarder().call() == forwarder
    assert rc.owner().call() == deployer and rc.maxBatch().call() == 20
    assert rc.workflowOwner().call() == accounts[8]
    assert rc.workflowName().call() == workflow_name_bytes("dtnsess-cleanup") == \
        hashlib.sha256(b"dtnsess-cleanup").hexdigest()[:10].encode()
    assert len(out["transactions"]) == 2  # deploy, setWorkflow

    st = cli.json("keeper", "status", out["receiver"], role=None)
    assert st["accepts_reports"] is True and st["max_batch"] == 20 and st["ireceiver"] is True
    r = cli("keeper", "status", out["receiver"], role=None)
    assert_ok(r)
    assert "last report for" in r.stdout and "never" in r.stdout


def test_deploy_without_identity_says_it_refuses_reports(system6, make_cli, forwarder):
    cli = make_cli(system6)
    r = cli("keeper", "deploy", "--forwarder", forwarder, "--yes", role="deployer")
    assert_ok(r)
    assert "refuses every report" in r.stdout


@pytest.mark.parametrize("args, code, fragment", [
    ([], ExitCode.INPUT, "no known forwarder"),  # chain 31337: no CRE forwarder
    (["--forwarder", "0x" + "12" * 20], ExitCode.CHAIN, "no contract code"),
    (["--forwarder", "FORWARDER", "--workflow-name", "x"], ExitCode.INPUT, "--workflow-owner"),
    (["--forwarder", "FORWARDER", "--workflow-id", "0x1234"], ExitCode.INPUT, "64 hex digits"),
    (["--forwarder", "FORWARDER", "--workflow-owner", "0xnothex"], ExitCode.INPUT, "workflow owner"),
    (["--forwarder", "FORWARDER", "--max-batch", "41"], ExitCode.INPUT, "must be 1 to 40"),
    (["--forwarder", "FORWARDER", "--max-batch", "0"], ExitCode.INPUT, "must be 1 to 40"),
], ids=["no-forwarder", "forwarder-without-code", "name-without-owner", "short-id", "bad-owner",
        "batch-too-big", "batch-zero"])
def test_deploy_refuses_bad_input_and_sends_nothing(system6, make_cli, forwarder, deployer,
                                                    args, code, fragment):
    cli = make_cli(system6)
    before = nonce(system6.w3, deployer)
    args = [forwarder if a == "FORWARDER" else a for a in args]
    assert_error(cli("keeper", "deploy", *args, "--yes", role="deployer"), code, fragment)
    assert nonce(system6.w3, deployer) == before


def test_configure_is_for_the_owner(system6, make_cli, forwarder, accounts):
    cli = make_cli(system6)
    rcv = cli.json("keeper", "deploy", "--forwarder", forwarder, "--yes", role="deployer")["receiver"]
    assert_error(cli("keeper", "configure", rcv, "--max-batch", "3", "--yes", role="stranger"),
                 ExitCode.AUTH, "not the receiver's owner")
    assert_error(cli("keeper", "configure", rcv, "--yes", role="deployer"), ExitCode.INPUT,
                 "nothing to change")
    cli.json("keeper", "configure", rcv, "--workflow-id", WORKFLOW_ID, "--max-batch", "3", "--yes",
             role="deployer")
    rc = contract(system6.w3, "CleanupReceiver", rcv).functions
    assert rc.workflowId().call() == bytes.fromhex(WORKFLOW_ID[2:]) and rc.maxBatch().call() == 3
    # the fields not given are kept
    cli.json("keeper", "configure", rcv, "--workflow-owner", accounts[8], "--yes", role="deployer")
    assert rc.workflowId().call() == bytes.fromhex(WORKFLOW_ID[2:])
    assert rc.workflowOwner().call() == accounts[8]


def _config(tmp_path, **over):
    cfg = {"schedule": "0 */10 * * * *", "chainSelectorName": "anvil-devnet",
           "managerAddress": None, "receiverAddress": None, "maxSessions": 40,
           "writeGasLimit": "5000000", **over}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def test_check_a_workflow_config(system6, make_cli, forwarder, tmp_path, accounts):
    cli = make_cli(system6)
    rcv = cli.json("keeper", "deploy", "--forwarder", forwarder, "--workflow-owner", accounts[8],
                   "--yes", role="deployer")["receiver"]
    good = _config(tmp_path, managerAddress=system6.manager.address, receiverAddress=rcv)
    out = cli.json("keeper", "check", good, role=None)
    assert out["ok"] is True
    assert {c["name"]: c["ok"] for c in out["checks"]}["chain"] is True

    for bad, name in ((dict(chainSelectorName="ethereum-mainnet-base-1"), "chain"),
                      (dict(writeGasLimit="6000000"), "write gas"),
                      (dict(maxSessions=41), "max sessions"),
                      (dict(writeGasLimit="2000000"), "batch fits the gas"),
                      (dict(managerAddress=accounts[5]), "manager")):
        cfg = {"managerAddress": system6.manager.address, "receiverAddress": rcv, **bad}
        r = cli("keeper", "check", _config(tmp_path, **cfg), "--json", role=None)
        assert r.exit_code == int(ExitCode.CONFIG), r.output
        failed = [c["name"] for c in load_json(r)["checks"] if c["ok"] is False]
        assert failed == [name]


def test_check_refuses_a_missing_or_broken_file(system6, make_cli, tmp_path):
    cli = make_cli(system6)
    assert_error(cli("keeper", "check", str(tmp_path / "nope.json"), role=None), ExitCode.INPUT,
                 "not found")
    (tmp_path / "broken.json").write_text("{")
    assert_error(cli("keeper", "check", str(tmp_path / "broken.json"), role=None), ExitCode.INPUT,
                 "not readable JSON")


def test_the_interface_id_is_onreports_selector():
    assert IRECEIVER_INTERFACE_ID == keccak(text="onReport(bytes,bytes)")[:4]


def test_status_of_something_else_is_one_line(system6, make_cli):
    cli = make_cli(system6)
    assert_error(cli("keeper", "status", system6.manager.address, role=None), ExitCode.CHAIN,
                 "not a CleanupReceiver")
    assert_error(cli("keeper", "status", "0x" + "34" * 20, role=None), ExitCode.CHAIN,
                 "no contract code")
    assert_error(cli("keeper", "status", "0x1234", role=None), ExitCode.INPUT, "receiver address")
