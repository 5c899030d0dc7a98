"""Owner commands after issue 7: `dtnsess config update` checks the contract's documented bounds
first (finding 4: one clear line, exit 4, nothing sent; the contract enforces them too with
InvalidConfig), and `dtnsess sweep` sends only what nobody is owed (finding 10)."""

from __future__ import annotations

import pytest

from dtnsess_cli.errors import ExitCode
from test_cli_errors import fails

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")


@pytest.mark.parametrize("args, fragments", [
    (["--max-age", str(365 * 86400 + 1)], ["--max-age", "at most 31536000"]),
    (["--request-timeout", str(7 * 86400 + 1)], ["--request-timeout", "at most 604800"]),
    (["--max-age", "7200", "--request-timeout", "7201"], ["--request-timeout", "max session age"]),
    (["--max-age", "10"], ["--max-age", "below the request timeout"]),
    (["--pool-size", "101"], ["--pool-size", "at most 100"]),
    (["--min-balance", "1000000.000001"], ["--min-balance", "at most 1000000"]),
    (["--max-fee-per-response", "1000.5"], ["--max-fee-per-response", "at most 1000"]),
    (["--fee-per-byte-req", "2"], ["--fee-per-byte-req", "may not exceed the max fee per response"]),
    (["--max-fee-per-response", "0.0001"], ["--max-fee-per-response", "may not exceed"]),
])
def test_config_update_out_of_bounds_is_refused_before_sending(make_cli, system6, args, fragments):
    cli = make_cli(system6)
    before = system6.manager.functions.getConfig().call()
    fails(cli, ["config", "update", *args], ExitCode.INPUT, *fragments, role="deployer")
    assert system6.manager.functions.getConfig().call() == before


def test_config_update_at_the_bounds_is_sent(make_cli, system6):
    cli = make_cli(system6)
    out = cli.json("config", "update", "--max-age", str(365 * 86400), "--request-timeout",
                   str(7 * 86400), "--pool-size", "100", role="deployer")
    cfg = out["config"]
    assert (cfg["max_session_age"], cfg["request_timeout"], cfg["session_pool_size"]) == (
        365 * 86400, 7 * 86400, 100)


def test_sweep_sends_only_what_nobody_is_owed(make_cli, system6, user, stranger, deployer, w3):
    from cli_helpers import assert_ok, nonce
    from helpers import bal, events, fund, transact

    cli = make_cli(system6)
    m = system6.manager
    # nothing stray: nothing sent
    before = nonce(w3, deployer)
    r = cli("sweep", stranger, role="deployer")
    assert_ok(r)
    assert "nothing to sweep" in r.stdout and nonce(w3, deployer) == before
    # tokens sent straight to the manager are stray; the owner sweeps exactly them
    fund(system6, user, 10, approve=False)
    transact(w3, system6.token.functions.transfer(m.address, 3 * system6.unit), user)
    fails(cli, ["sweep", stranger], ExitCode.AUTH, "not the contract owner", role="user")
    out = cli.json("sweep", stranger, "--dry-run", role="deployer")
    assert out["amount_units"] == str(3 * system6.unit) and nonce(w3, deployer) == before
    got = bal(system6, stranger)
    out = cli.json("sweep", stranger, role="deployer")
    assert bal(system6, stranger) - got == 3 * system6.unit
    assert bal(system6, m.address) == m.functions.totalClaimable().call()
    rcpt = w3.eth.get_transaction_receipt(out["transactions"][0]["tx_hash"])
    assert [(e["to"], e["amount"]) for e in events(m, "Swept", rcpt)] == [(stranger, 3 * system6.unit)]
