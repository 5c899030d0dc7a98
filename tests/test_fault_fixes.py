"""What the fault run found besides faults: bad configuration that ended in "internal error",
oversized prompts the node refused after the user confirmed, exit codes that disagreed with
README, a cleanup lock shared across chains, callback values that guarantee a failed callback,
requests that pay the node nothing, a namespace name that never routes to system trust, and a
`response` that read two blocks."""

from __future__ import annotations

import time

import pytest

from cli_helpers import (
    assert_error,
    assert_ok,
    create_via_cli,
    load_json,
    nonce,
)
from dtnsess_cli.errors import ExitCode
from helpers import answer, chain_of, fund, lock_held_elsewhere


def _requests(system, user) -> list:
    ids, _ = system.manager.functions.getUserRequests(user, 0, 100).call()
    return [bytes(i) for i in ids]


# ------------------------------------------------------------------------ configuration

def test_rpc_url_with_a_bad_port_is_a_config_error(make_cli, system6):
    cli = make_cli(system6)
    for url in ("http://127.0.0.1:99999", "http://127.0.0.1:abc", "ftp://127.0.0.1:8545",
                "http://:8545"):
        r = cli("balance", env={"DTNSESS_RPC_URL": url})
        assert_error(r, ExitCode.CONFIG, "RPC URL")
        assert "internal error" not in r.stderr


def test_non_utf8_env_file_names_the_file(make_cli, system6, tmp_path):
    cli = make_cli(system6)
    (tmp_path / ".env").write_bytes(b"DTNSESS_MODEL=caf\xe9\n")
    assert_error(cli("config", "show"), ExitCode.CONFIG, str(tmp_path / ".env"), "UTF-8")


def test_garbage_env_line_warns_naming_the_file_and_line(make_cli, system6, tmp_path):
    cli = make_cli(system6)
    (tmp_path / ".env").write_text("DTNSESS_MODEL=model.x\nthis is not an assignment\n")
    r = cli("config", "show", "--json")
    assert_ok(r)
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == [f"warning: {tmp_path / '.env'} line 2: not KEY=VALUE; ignored"]
    rows = {row["name"]: row["value"] for row in load_json(r)["config"]}
    assert rows["model"] == "model.x"


def test_bad_chain_id_setting_is_a_config_error(make_cli, system6):
    cli = make_cli(system6)
    r = cli("balance", env={"DTNSESS_CHAIN_ID": "base"})
    assert_error(r, ExitCode.CONFIG, "chain id", "DTNSESS_CHAIN_ID")


def test_missing_keystore_is_a_config_error(make_cli, system6, tmp_path):
    cli = make_cli(system6)
    r = cli("balance", "--keystore", str(tmp_path / "nope.json"), role=None)
    assert_error(r, ExitCode.CONFIG, "file not found")


def test_doctor_on_a_dead_rpc_exits_5(make_cli, system6):
    from dtnsess_cli.devnet.anvil import free_port

    cli = make_cli(system6)
    r = cli("doctor", env={"DTNSESS_RPC_URL": f"http://127.0.0.1:{free_port()}"})
    assert r.exit_code == int(ExitCode.RPC), r.output
    assert "cannot connect" in r.stdout
    r = cli("doctor", "--json", env={"DTNSESS_RPC_URL": f"http://127.0.0.1:{free_port()}"})
    assert r.exit_code == int(ExitCode.RPC)
    doc = load_json(r)
    assert doc["ok"] is False and doc["checks"][0]["code"] == 5


def test_doctor_on_the_wrong_chain_exits_6(make_cli, system6):
    cli = make_cli(system6)
    r = cli("doctor", env={"DTNSESS_CHAIN_ID": "8453"})
    assert r.exit_code == int(ExitCode.CHAIN), r.output


# ------------------------------------------------------------------------ --json errors

def test_json_errors_are_one_document_on_stdout(make_cli, system6, user):
    cli = make_cli(system6)
    r = cli("stats", "999", "--json")
    assert r.exit_code == int(ExitCode.INPUT)
    doc = load_json(r)
    assert doc["error"] is True and doc["code"] == 4 and doc["name"] == "INPUT"
    assert "no such session" in doc["message"] and "hint" in doc
    assert r.stderr.startswith("error: ")
    # a revert in simulation: nothing sent, so no tx hash
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    r = cli("request", "hi", "--model", "model.nobody", "--json", "--yes")
    doc = load_json(r)
    assert doc["code"] == 7 and doc["name"] == "REVERTED" and "tx_hash" not in doc
    # a usage error with --json too
    from dtnsess_cli.cli import main

    rc = main(["stats", "--json", "--bogus-flag"])
    assert rc == int(ExitCode.USAGE)


def test_json_error_of_a_wait_after_a_sent_request_is_in_the_one_document(make_cli, system6,
                                                                           user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    r = cli("request", "nobody answers", "--wait", "--timeout", "1", "--json", "--yes")
    assert r.exit_code == int(ExitCode.TIMEOUT)
    doc = load_json(r)  # exactly one document: the request, and the error within it
    assert doc["request_id"] and doc["error"]["code"] == 10 and doc["error"]["name"] == "TIMEOUT"


# ------------------------------------------------------------------------ prompts and sessions

@pytest.mark.parametrize("size", [100 * 1024, 1024 * 1024])
def test_oversized_prompt_is_refused_before_sending(make_cli, system6, user, w3, size):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    before = nonce(w3, user)
    r = cli("request", "x" * size, "--yes")
    line = assert_error(r, ExitCode.INPUT, f"{size} bytes", "gas per byte", "per byte",
                        f"session {sid} holds")
    assert "16384" in line
    assert nonce(w3, user) == before and _requests(system6, user) == []


def test_oversized_prompt_in_a_file_is_refused_before_sending(make_cli, system6, user, w3,
                                                              tmp_path):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    f = tmp_path / "p.txt"
    f.write_text("short\n" + "y" * 20000 + "\n")
    before = nonce(w3, user)
    assert_error(cli("request", "--file", str(f), "--yes"), ExitCode.INPUT, "line 2",
                 "20000 bytes")
    assert nonce(w3, user) == before


def test_a_16k_prompt_still_goes_out(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    out = cli.json("request", "z" * 16384, "--yes")
    assert out["request_id"]


def _drain_session(cli, system, user) -> int:
    """A session whose DTN balance the first answer takes entirely."""
    assert_ok(cli("config", "update", "--fee-per-byte-res", "1", "--max-fee-per-response", "100",
                  "--yes", role="deployer"))
    fund(system, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    out = cli.json("request", "x", "--yes")
    answer(system, bytes.fromhex(out["request_id"][2:]), text="a" * 200)
    view = system.manager.functions.getSession(sid).call()
    assert view[10] is True and view[11] == 0  # hasDtnBalance, dtnBalance
    return sid


def test_a_session_without_dtn_balance_is_refused(make_cli, system6, user, w3):
    cli = make_cli(system6)
    sid = _drain_session(cli, system6, user)
    before = nonce(w3, user)
    for args in (["request", "again", "--yes"], ["request", "again", "--session", str(sid),
                                                 "--yes"]):
        r = cli(*args)
        assert_error(r, ExitCode.FUNDS, f"DTN balance in session {sid}", "have 0")
        assert f"dtnsess renew {sid}" in r.stderr
    assert nonce(w3, user) == before and len(_requests(system6, user)) == 1


def test_request_file_skips_sessions_without_dtn_balance(make_cli, system6, user, w3,
                                                         tmp_path):
    cli = make_cli(system6)
    empty = _drain_session(cli, system6, user)
    f = tmp_path / "p.txt"
    f.write_text("one\ntwo\n")
    before = nonce(w3, user)
    r = cli("request", "--file", str(f), "--yes")  # every session empty: nothing sent
    assert_error(r, ExitCode.FUNDS, f"DTN balance in session {empty}")
    assert nonce(w3, user) == before
    full = create_via_cli(cli, "20")
    r = cli("request", "--file", str(f), "--yes", "--json")
    assert_ok(r)
    assert f"skipping session {empty}" in r.stderr
    assert {row["session_id"] for row in load_json(r)["requests"]} == {full}


def test_value_below_a_callbacks_needs_is_refused(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    before = nonce(w3, user)
    for value in ("1000", "26999", "1000wei", "0x3e8"):
        r = cli("request", "hi", "--value", value, "--yes")
        assert_error(r, ExitCode.INPUT, "--value", "callback", "27,000")
    assert nonce(w3, user) == before


@pytest.mark.parametrize("value,wei", [("1e5", 100_000), ("0x493e0", 300_000),
                                       ("3.5e5wei", 350_000), ("0.0004gwei", 400_000)])
def test_cast_style_values(make_cli, system6, user, value, wei):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    out = cli.json("request", "hi", "--value", value, "--yes")
    assert out["value_wei"] == str(wei)
    tx = system6.w3.eth.get_transaction(out["transactions"][0]["tx_hash"])
    assert tx["value"] == wei


def test_namespace_system_trust_routes_to_system_trust(make_cli, system6, user):
    """`--namespace trust.system.authored` is the router's abi.encode hash: the system-trust node
    can answer it. Another name (encodePacked) is not served by that node."""
    from dtnsess_cli.manager import system_trust_id

    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    out = cli.json("request", "hi", "--namespace", "trust.system.authored", "--session",
                   str(sid), "--yes")
    answer(system6, bytes.fromhex(out["request_id"][2:]))  # the system-trust node may answer
    time.sleep(1.1)
    out = cli.json("request", "hi", "--namespace", "trust.other", "--session", str(sid), "--yes")
    with pytest.raises(Exception, match="not eligible"):  # a packed hash nobody serves here
        answer(system6, bytes.fromhex(out["request_id"][2:]))
    # the same id given raw
    time.sleep(1.1)
    out = cli.json("request", "hi", "--namespace", "0x" + system_trust_id().hex(), "--session",
                   str(sid), "--yes")
    assert out["request_id"]
    for bad in ("0x1234", "0x" + "zz" * 32):
        assert_error(cli("request", "hi", "--namespace", bad, "--yes"), ExitCode.INPUT,
                     "routing id")


def test_response_reads_both_records_at_one_block(make_cli, system6, user, monkeypatch):
    """An answer mined between the manager's read and the router's read used to look like a
    callback that did not run. Both are now read at one block: pending, no note."""
    from dtnsess_cli import manager as client_mod

    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    rid = bytes.fromhex(cli.json("request", "hi", "--yes")["request_id"][2:])
    original = client_mod.Client._batch
    state = {"answered": False}

    def batch(self, reads, what, block="latest"):
        if block != "latest" and not state["answered"]:
            state["answered"] = True
            answer(system6, rid, text="mined in between")  # a block after the one pinned
        return original(self, reads, what, block)

    monkeypatch.setattr(client_mod.Client, "_batch", batch)
    out = cli.json("response", "0x" + rid.hex())
    assert state["answered"]
    assert out["status"] == "pending" and out["note"] is None
    out = cli.json("response", "0x" + rid.hex())
    assert out["status"] == "succeeded" and out["manager_status"] == "succeeded"
    assert out["note"] is None


def test_cleanup_lock_is_per_chain(make_cli, system6, w3, tmp_path):
    cli = make_cli(system6)
    genesis = chain_of(w3)[1][2:]
    name = f"{genesis}-{system6.manager.address.lower()}.lock"
    with lock_held_elsewhere(tmp_path / "locks" / f"dtnsess-cleanup-8453-{name}"):
        assert_ok(cli("cleanup"))  # the same address on another chain does not block this one
        # unpinned chain id: the node is asked, the lock is the same per-chain file
        assert_ok(cli("cleanup", env={"DTNSESS_CHAIN_ID": None}))
        assert (tmp_path / "locks" / f"dtnsess-cleanup-31337-{name}").exists()


def test_doctor_runs_every_check(make_cli, system6):
    """doctor stopped at the first failed check (issue 15); now every check is reported: those
    a dead node makes impossible as skipped, the key (which needs no node) as checked; a passing
    check has code 0 (it was 1)."""
    from dtnsess_cli.devnet.anvil import free_port

    cli = make_cli(system6)
    doc = load_json(cli("doctor", "--json",
                        env={"DTNSESS_RPC_URL": f"http://127.0.0.1:{free_port()}"}))
    by = {c["name"]: c for c in doc["checks"]}
    assert by["rpc"]["ok"] is False and by["key"]["ok"] is True and by["key"]["code"] == 0
    for name in ("chain id", "contract", "fee token", "model", "ETH for gas"):
        assert by[name]["ok"] is None and by[name]["detail"].startswith("skipped"), name
    wrong = cli("doctor", "--json", env={"DTNSESS_CHAIN_ID": "8453"})
    assert wrong.exit_code == int(ExitCode.CHAIN)
    by = {c["name"]: c for c in load_json(wrong)["checks"]}
    assert by["chain id"]["ok"] is False and by["contract"]["ok"] is True
    assert by["ETH for gas"]["ok"] is True and by["ETH for gas"]["code"] == 0
