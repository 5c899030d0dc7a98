"""`dtnsess cleanup --check`: what a keeper's performUpkeep would do now, read-only, without a
key; exit 14 (UPKEEP_NEEDED) when an upkeep is needed, 0 when not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import assert_error, assert_ok, count_round_trips, load_json
from dtnsess_cli.devnet.localdtn import transact
from dtnsess_cli.errors import ExitCode
from helpers import create, fund, increase_time, no_automine, rpc, send, session

pytestmark = pytest.mark.usefixtures("conserved")


def _age_out(system):
    increase_time(system.w3, system.manager.functions.maxSessionAge().call() + 1)


def _head(w3) -> tuple:
    return w3.eth.block_number, w3.eth.get_transaction_count(w3.eth.accounts[1])


def test_check_nothing_to_do_exits_0_without_a_key(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100)
    sid, _ = create(system6, user, 10)
    before = _head(w3)
    r = cli("cleanup", "--check", role=None)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == "upkeep not needed: no idle session" and r.stderr == ""
    r = cli("cleanup", "--check", "--json", role=None)
    assert r.exit_code == 0
    assert load_json(r) == {"action": "cleanup-check", "upkeep_needed": False, "idle": [], "would_close": [],
                            "count": 0, "more_idle": False, "batch": 50, "estimated_gas": None,
                            "perform_reverts": "nothing closed: no session is idle, or DTN refused every close"}
    assert _head(w3) == before and session(system6, sid)["active"]


def test_check_upkeep_needed_exits_14_and_sends_nothing(make_cli, system, user, stranger, w3):
    cli = make_cli(system)
    fund(system, user, 100)
    ids = [create(system, user, 10)[0] for _ in range(3)]
    _age_out(system)
    before = _head(w3)

    r = cli("cleanup", "--check", role=None)
    assert r.exit_code == ExitCode.UPKEEP_NEEDED == 14, r.stderr
    line = r.stdout.strip()
    assert line.startswith(f"upkeep needed: performUpkeep would close 3 idle sessions "
                           f"[{','.join(map(str, ids))}], ~") and line.endswith(" gas"), line
    r = cli("cleanup", "--check", "--json", role="stranger")
    assert r.exit_code == 14
    out = load_json(r)
    assert (out["upkeep_needed"], out["would_close"], out["count"], out["more_idle"]) == (
        True, ids, 3, False)
    assert out["perform_reverts"] is None and out["estimated_gas"] > 100_000
    assert _head(w3) == before and all(session(system, i)["active"] for i in ids)

    # the estimate covers what the perform then uses
    r = transact(w3, system.manager.functions.performUpkeep(b""), stranger, gas=out["estimated_gas"])
    assert r["gasUsed"] <= out["estimated_gas"]
    assert not any(session(system, i)["active"] for i in ids)
    assert cli("cleanup", "--check", role=None).exit_code == 0


def test_check_with_more_idle_than_one_batch(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 10 * 52)
    m = system6.manager.functions
    with no_automine(w3):
        for _ in range(52):
            send(m.createSession(10 * system6.unit), user, gas=600_000)
        while int(rpc(w3, "txpool_status")["pending"], 16) > 0:
            rpc(w3, "evm_mine")
    _age_out(system6)
    r = cli("cleanup", "--check", "--json", role=None)
    assert r.exit_code == 14
    out = load_json(r)
    assert out["count"] == 50 and out["would_close"] == list(range(1, 51)) and out["more_idle"]
    assert out["estimated_gas"] < 5_000_000
    assert "more wait for the next one" in cli("cleanup", "--check", role=None).stdout


def test_check_when_every_close_would_fail_says_so(make_cli, system6, deployer, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100)
    sid, _ = create(system6, user, 10)
    _age_out(system6)
    transact(w3, system6.token.functions.setBlocked(system6.manager.address, True), deployer)
    r = cli("cleanup", "--check", role=None)
    assert r.exit_code == 14
    # it said "would close 1 idle session" and then "it would revert": it closes none
    assert r.stdout.strip() == (f"upkeep needed: 1 idle session [{sid}], but performUpkeep would "
                                "revert: nothing closed: no session is idle, or DTN refused every close")
    out = load_json(cli("cleanup", "--check", "--json", role=None))
    assert (out["count"], out["would_close"], out["idle"]) == (0, [], [sid])
    transact(w3, system6.token.functions.setBlocked(system6.manager.address, False), deployer)


def test_check_refuses_cron_options_and_sends_nothing(make_cli, system6, user, w3):
    cli = make_cli(system6)
    before = _head(w3)
    for extra in (["--max", "10"], ["--max-gas-price", "1"]):
        assert_error(cli("cleanup", "--check", *extra), ExitCode.INPUT, "--check")
    assert _head(w3) == before
    # the cron form is unchanged: nothing idle is exit 0
    assert_ok(cli("cleanup"))


def test_check_is_one_round_trip(make_cli, system6, user, monkeypatch):
    cli = make_cli(system6)
    fund(system6, user, 100)
    create(system6, user, 10)
    _age_out(system6)
    with count_round_trips(monkeypatch) as rt:
        r = cli("cleanup", "--check", "--json", role=None)
    assert r.exit_code == 14
    assert rt.posts == 1, rt  # [chain id, getConfig, checkUpkeep, getIdleSessions, estimate]


def test_check_exit_code_through_the_console_script(anvil, system6, user, tmp_path):
    script = Path(sys.executable).parent / "dtnsess"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DTNSESS_RPC_URL": anvil.url,
           "DTNSESS_CONTRACT": system6.manager.address, "DTNSESS_CHAIN_ID": "31337"}
    run = lambda: subprocess.run([str(script), "cleanup", "--check"], cwd=tmp_path, env=env,  # noqa: E731
                                 capture_output=True, text=True, timeout=60)
    p = run()
    assert (p.returncode, p.stdout.strip(), p.stderr) == (0, "upkeep not needed: no idle session", "")
    fund(system6, user, 100)
    create(system6, user, 10)
    _age_out(system6)
    p = run()
    assert p.returncode == 14 and p.stdout.startswith("upkeep needed:") and p.stderr == ""
