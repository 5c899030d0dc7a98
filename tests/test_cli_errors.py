"""Every error class through the CLI: one `error:` line, its exit code, no traceback, no key in
the output, and nothing sent (the account's nonce is unchanged)."""

from __future__ import annotations

import json
from pathlib import Path
import time

import pytest
from eth_account import Account

from cli_helpers import assert_error, create_via_cli, nonce
from dtnsess_cli.devnet.anvil import free_port
from dtnsess_cli.errors import ExitCode
from helpers import bal, fund, increase_time, session

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")


class Sent:
    """Asserts that ``address`` sent nothing between construction and ``check()``."""

    def __init__(self, w3, address: str) -> None:
        self.w3, self.address, self.before = w3, address, nonce(w3, address)

    def nothing(self) -> None:
        assert nonce(self.w3, self.address) == self.before, "a transaction was sent"


def fails(cli, args, code, *fragments, role="user", key=None, env=None, w3=None, sender=None):
    """Run, assert the error contract (one line, exit code, no traceback, no key) and that the
    sender's nonce did not move."""
    k = key or (cli.key(role) if role else None)
    addr = sender or (Account.from_key(k).address if k else None)
    sent = Sent(w3 or cli.system.w3, addr) if addr else None
    r = cli(*args, role=role, key=key, env=env)
    line = assert_error(r, code, *fragments, secrets=(k,) if k else ())
    if sent:
        sent.nothing()
    return line


# ----------------------------------------------------------------------------- chain and contract


def test_wrong_chain(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    for args in (["balance", "--chain-id", "1"], ["create", "50", "--chain-id", "1"],
                 ["--chain-id", "1", "request", "hi"]):
        fails(cli, args, ExitCode.CHAIN, "chain 31337", "chain 1")
    # the same from the environment
    fails(cli, ["create", "50"], ExitCode.CHAIN, "chain 1", env={"DTNSESS_CHAIN_ID": "1"})
    assert system6.manager.functions.getUserSessions(user).call() == []


def test_no_code_at_the_contract_address(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    empty = "0x" + "12" * 20
    for args in (["balance"], ["create", "50"], ["stats", "1"], ["cleanup"]):
        fails(cli, args, ExitCode.CHAIN, "no contract code", env={"DTNSESS_CONTRACT": empty})
    # code, but not an AdvancedSessionManager (the token)
    fails(cli, ["create", "50"], ExitCode.CHAIN, "not an AdvancedSessionManager",
          env={"DTNSESS_CONTRACT": system6.token.address})


def test_rpc_unreachable(make_cli, system6):
    cli = make_cli(system6)
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["balance"], ["create", "50"], ["request", "hi"]):
        started = time.monotonic()
        r = cli(*args, env={"DTNSESS_RPC_URL": url})
        assert_error(r, ExitCode.RPC, "cannot connect", secrets=(cli.key(),))
        assert time.monotonic() - started < 10
    r = cli("doctor", env={"DTNSESS_RPC_URL": url})
    assert r.exit_code != 0 and "Traceback" not in r.output


# ----------------------------------------------------------------------------- who may do it


def test_not_the_session_owner(make_cli, system, user, stranger):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    fund(system, stranger, 100, approve=False)
    sid = create_via_cli(cli, "20")
    for args in (["close", str(sid)], ["renew", str(sid), "5"], ["pool", "add", str(sid)],
                 ["request", "hi", "--session", str(sid)]):
        fails(cli, args, ExitCode.AUTH, f"session {sid}", role="stranger")
    assert session(system, sid)["active"] is True


def test_not_the_contract_owner(make_cli, system6, stranger, user):
    cli = make_cli(system6)
    for role in ("stranger", "user"):
        fails(cli, ["config", "update", "--pool-size", "9"], ExitCode.AUTH,
              "not the contract owner", role=role)
        fails(cli, ["config", "update", "--fee-per-byte-req", "0"], ExitCode.AUTH,
              "not the contract owner", role=role)
    assert system6.manager.functions.sessionPoolSize().call() == 5


# ----------------------------------------------------------------------------- funds


def test_token_balance_too_low(make_cli, system, user):
    cli = make_cli(system)
    fund(system, user, 5, approve=False)
    fails(cli, ["create", "50"], ExitCode.FUNDS, "not enough", "have 5", "need 50")
    fund(system, user, 20, approve=False)
    sid = create_via_cli(cli, "20")
    fails(cli, ["renew", str(sid), "5.5"], ExitCode.FUNDS, "have 5", "need 5.5")
    assert bal(system, user) == 5 * 10**system.decimals


def test_no_eth_for_gas(make_cli, system, deployer, w3):
    cli = make_cli(system)
    fresh = Account.create()
    key = "0x" + bytes(fresh.key).hex()
    assert w3.eth.get_balance(fresh.address) == 0
    fails(cli, ["approve", "10"], ExitCode.FUNDS, "ETH for gas", "have 0 ETH", key=key)
    # with tokens but no ETH: create stops at its first transaction
    from dtnsess_cli.devnet.localdtn import transact

    transact(w3, system.token.functions.mint(fresh.address, 100 * 10**system.decimals), deployer)
    try:
        fails(cli, ["create", "50"], ExitCode.FUNDS, "ETH for gas", key=key)
        fails(cli, ["request", "hi"], ExitCode.FUNDS, "ETH for gas", key=key)
        assert nonce(w3, fresh.address) == 0
        assert bal(system, fresh.address) == 100 * 10**system.decimals
    finally:
        # hand the tokens to a known account (the conservation check counts known holders)
        w3.provider.make_request("anvil_setBalance", [fresh.address, hex(10**18)])
        w3.provider.make_request("anvil_impersonateAccount", [fresh.address])
        try:
            transact(w3, system.token.functions.transfer(deployer, bal(system, fresh.address)),
                     fresh.address)
        finally:
            w3.provider.make_request("anvil_stopImpersonatingAccount", [fresh.address])


# ----------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize("args,what", [
    (["balance", "--user", "0x123"], "address"),
    (["sessions", "--user", "alice"], "user address"),
    (["requests", "--user", "0x" + "g" * 40], "user address"),
    # mixed case that is not the EIP-55 checksum
    (["balance", "--user", "0x70997970c51812dc3a010C7d01b50e0d17dc79c8"], "checksum"),
    (["deploy", "--ai", "0x1234"], "--ai"),
])
def test_malformed_address(make_cli, system6, args, what):
    fails(make_cli(system6), args, ExitCode.INPUT, what)


def test_malformed_contract_address_in_config(make_cli, system6):
    cli = make_cli(system6)
    fails(cli, ["balance"], ExitCode.INPUT, "contract address", env={"DTNSESS_CONTRACT": "0xnope"})


BAD_AMOUNTS = [("0", "greater than zero"), ("NaN", "not a plain decimal"),
               ("nan", "not a plain decimal"), ("inf", "not a plain decimal"),
               ("abc", "not a plain decimal"), ("1e3", "not a plain decimal"),
               ("1,5", "not a plain decimal"), ("", "empty"), ("0x10", "not a plain decimal"),
               ("١٢", "not a plain decimal")]


@pytest.mark.parametrize("amount,reason", BAD_AMOUNTS)
def test_bad_amount(make_cli, system6, user, amount, reason):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    fails(cli, ["create", amount], ExitCode.INPUT, reason)
    if amount != "0":  # `approve 0` is allowed: it revokes the allowance
        fails(cli, ["approve", amount], ExitCode.INPUT, reason)


def test_bad_amount_negative_and_too_many_decimals(make_cli, system, user):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    too_precise = "1." + "0" * system.decimals + "1"
    for args in (["create", "--", "-5"], ["approve", "--", "-5"], ["renew", str(sid), "--", "-5"]):
        fails(cli, args, ExitCode.INPUT, "negative")
    for args in (["create", too_precise], ["approve", too_precise], ["renew", str(sid), too_precise]):
        fails(cli, args, ExitCode.INPUT, f"more than {system.decimals} fractional digits")
    # below the contract's minimum session balance: refused before sending
    fails(cli, ["create", "9.99"], ExitCode.INPUT, "minimum session balance")
    # `-5` without `--` is an unknown option to Click: a usage error, still no traceback
    r = cli("create", "-5")
    assert r.exit_code == int(ExitCode.USAGE) and "Traceback" not in r.output


def test_bad_request_value(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    for value, reason in (("abc", "unknown unit"), ("1.2.3", "not a plain decimal"), ("-1", "negative"),
                          ("1furlong", "unknown unit"), ("0.5wei", "fractional")):
        fails(cli, ["request", "hi", f"--value={value}"], ExitCode.INPUT, "--value", reason)
    # the value is the callback gas (1 wei per gas unit): 1 gwei asks for 10^9 gas, more than
    # any answer transaction may carry; 0 leaves the callback no gas at all
    for value in ("1gwei", "0.0001ether", "0"):
        fails(cli, ["request", "hi", "--value", value], ExitCode.INPUT, "--value", "callback")
    assert system6.manager.functions.getUserRequests(user, 0, 0).call()[1] == 0


def test_bad_model_reverts_in_simulation(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    r_line = fails(cli, ["request", "hi", "--model", "gpt-3.5-turbo"], ExitCode.REVERTED,
                   "would revert", "Model does not exist")
    assert "mined" not in r_line


@pytest.mark.parametrize("rid", ["0x12", "hello", "0x" + "zz" * 32])
def test_malformed_request_id(make_cli, system6, rid):
    fails(make_cli(system6), ["response", rid], ExitCode.INPUT, "request id")


def test_unknown_request_id(make_cli, system6):
    fails(make_cli(system6), ["response", "0x" + "ab" * 32], ExitCode.INPUT, "unknown")


# ----------------------------------------------------------------------------- sessions


def test_unknown_session(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    for args in (["stats", "999"], ["close", "999"], ["renew", "999", "5"], ["pool", "add", "999"],
                 ["request", "hi", "--session", "999"]):
        fails(cli, args, ExitCode.INPUT, "999", "no such session")
    for sid in ("0", "abc", "1.5"):
        fails(cli, ["stats", sid], ExitCode.INPUT, "session id")


def test_closed_session(make_cli, system, user):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("close", str(sid))
    for args in (["close", str(sid)], ["renew", str(sid), "5"], ["pool", "add", str(sid)],
                 ["request", "hi", "--session", str(sid)]):
        fails(cli, args, ExitCode.INPUT, "closed")


def test_renew_after_the_request_timeout_goes_by_chain_time(make_cli, system6, user, w3):
    """The pending guard follows the chain's clock: after requestTimeout on chain, renew works
    even though hardly any wall-clock time has passed."""
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("request", "pending")
    increase_time(w3, system6.manager.functions.requestTimeout().call() + 1)
    before = bal(system6, user)
    out = cli.json("renew", str(sid), "5")
    assert out["session_id"] == sid and before - bal(system6, user) == 5 * system6.unit


def test_close_with_pending_requests(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("request", "pending")
    for args in (["close", "--all"], ["renew", str(sid), "5"]):
        fails(cli, args, ExitCode.REVERTED, "pending request" if args[0] == "renew"
              else "no session can close yet")
    assert session(system6, sid)["active"] is True
    # `close ID` marks the session closing (one transaction, tests/test_cli_settle.py); once
    # closing, it is refused like the others, nothing sent
    r = cli("close", str(sid))
    assert r.exit_code == int(ExitCode.REVERTED) and "is closing" in r.stderr
    fails(cli, ["close", str(sid)], ExitCode.REVERTED, "is closing")
    assert session(system6, sid)["active"] is True


def test_pool_errors(make_cli, system6, user):
    cli = make_cli(system6)
    fails(cli, ["pool", "get"], ExitCode.INPUT, "pool is empty")
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("pool", "add", str(sid))
    fails(cli, ["pool", "add", str(sid)], ExitCode.INPUT, "already in the pool")


# ----------------------------------------------------------------------------- keys


def _keystore(tmp_path, key: str, password: str = "right horse battery") -> str:
    ks = Account.encrypt(key, password, kdf="pbkdf2", iterations=1000)
    path = tmp_path / "keystore.json"
    path.write_text(json.dumps(ks))
    return str(path)


def test_keystore_wrong_password(make_cli, system6, user, tmp_path):
    cli = make_cli(system6)
    key = cli.key("user")
    path = _keystore(tmp_path, key)
    (tmp_path / "wrong").write_text("wrong password\n")
    (tmp_path / "right").write_text("right horse battery\n")
    for args in (["balance", "--keystore", path], ["approve", "1", "--keystore", path]):
        fails(cli, args, ExitCode.AUTH, "wrong password", role=None, sender=user,
              env={"DTNSESS_PASSWORD_FILE": str(tmp_path / "wrong")})
        r = cli(*args, role=None, env={"DTNSESS_PASSWORD_FILE": str(tmp_path / "wrong")})
        assert key[2:] not in r.output and "right horse" not in r.output
    # no password file and no terminal: refuses instead of hanging
    fails(cli, ["balance", "--keystore", path], ExitCode.CONFIG, "password is needed",
          role=None, sender=user)
    fails(cli, ["balance", "--keystore", str(tmp_path / "missing.json")], ExitCode.CONFIG,
          "file not found", role=None, sender=user)
    # the right password works, and a keystore flag beats a key in the environment
    out = cli.json("balance", "--keystore", path, role="stranger",
                   env={"DTNSESS_PASSWORD_FILE": str(tmp_path / "right")})
    assert out["address"] == user


def test_account_name_reads_the_foundry_keystore(make_cli, system6, user, tmp_path):
    """`--account NAME` is ~/.foundry/keystores/NAME, as Foundry's cast uses it."""
    cli = make_cli(system6)  # HOME is tmp_path
    store = tmp_path / ".foundry" / "keystores"
    store.mkdir(parents=True)
    (store / "alice").write_text(Path(_keystore(tmp_path, cli.key("user"))).read_text())
    (tmp_path / "right").write_text("right horse battery\n")
    out = cli.json("balance", "--account", "alice", role=None,
                   env={"DTNSESS_PASSWORD_FILE": str(tmp_path / "right")})
    assert out["address"] == user
    fails(cli, ["balance", "--account", "bob"], ExitCode.CONFIG, "not found", role=None,
          sender=user, env={"DTNSESS_PASSWORD_FILE": str(tmp_path / "right")})


def test_bad_or_missing_private_key(make_cli, system6, user):
    cli = make_cli(system6)
    bad = "0x" + "zz" * 32
    fails(cli, ["create", "50"], ExitCode.CONFIG, "not valid hex", key=bad, sender=user)
    short = "0x1234abcd"
    line = fails(cli, ["approve", "1"], ExitCode.CONFIG, "not 32 bytes", key=short, sender=user)
    assert "1234abcd" not in line
    fails(cli, ["create", "50"], ExitCode.CONFIG, "no signing key", role=None, sender=user)
