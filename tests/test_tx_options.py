"""--nonce, --gas-limit, --priority-gas-price, --max-fee (cast's names, and its ETH_* variables)
on every write (issue 19, item 2), with the checks that keep them safe: a nonce below the
chain's next is refused before signing, one above warns that the transaction will wait; a gas
limit below the estimate is refused; a max fee under the base fee warns; a tip above the max
fee is refused; approve + create take consecutive nonces from --nonce."""

from __future__ import annotations

from helpers import fund, rpc
from test_faults_send import HASH, env, one_error  # noqa: F401 - env is a fixture


def tx_of(env, res):
    return env.w3.eth.get_transaction(HASH.findall(res.stdout)[-1])


def test_fees_and_gas_limit_are_the_users(env):
    fund(env.system, env.user, 100, approve=False)
    res = env.cli("approve", "1", "--yes", "--gas-limit", "90000",
                  "--priority-gas-price", "3gwei", "--max-fee", "50gwei")
    assert res.exit_code == 0, res.output
    t = tx_of(env, res)
    assert (t["gas"], t["maxPriorityFeePerGas"], t["maxFeePerGas"]) == (90000, 3 * 10**9,
                                                                        50 * 10**9)
    # cast's variables: ETH_GAS_PRICE is the max fee, ETH_GAS_LIMIT the gas limit
    res = env.cli("approve", "2", "--yes", env={"ETH_GAS_PRICE": "40gwei",
                                               "ETH_GAS_LIMIT": "80000"})
    assert res.exit_code == 0, res.output
    t = tx_of(env, res)
    assert (t["gas"], t["maxFeePerGas"]) == (80000, 40 * 10**9)


def test_unsafe_values_are_refused_before_signing(env):
    fund(env.system, env.user, 100, approve=False)
    assert env.cli("approve", "1", "--yes").exit_code == 0  # nonce 0 is used now
    before = env.nonce()
    low = env.cli("approve", "1", "--yes", "--gas-limit", "21000")
    assert low.exit_code == 4 and "below the estimate" in one_error(low), low.output
    used = env.cli("approve", "1", "--yes", "--nonce", str(before - 1))
    assert used.exit_code == 4 and "below the next nonce" in one_error(used), used.output
    tip = env.cli("approve", "1", "--yes", "--priority-gas-price", "5gwei", "--max-fee", "1gwei")
    assert tip.exit_code == 4 and "above the max fee" in one_error(tip), tip.output
    bad = env.cli("approve", "1", "--yes", env={"ETH_NONCE": "soon"})
    assert bad.exit_code == 4 and "ETH_NONCE" in one_error(bad), bad.output
    cheap = env.cli("approve", "1", "--dry-run", "--max-fee", "1wei")
    assert cheap.exit_code == 0 and "below the base fee" in cheap.stderr, cheap.output
    assert env.nonce() == before


def test_a_nonce_above_the_chains_warns_and_waits(env):
    fund(env.system, env.user, 100, approve=False)
    n = env.nonce()
    try:
        res = env.cli("approve", "1", "--yes", "--nonce", str(n + 1))
        assert res.exit_code == 10, res.output  # it waits in the node for nonce n
        assert f"above the next nonce of {env.user} ({n})" in res.stderr
        assert env.nonce() == n
    finally:
        rpc(env.w3, "anvil_dropAllTransactions")


def test_approve_and_create_take_consecutive_nonces_from_nonce(env):
    fund(env.system, env.user, 100, approve=False)
    n = env.nonce()
    res = env.cli("create", "20", "--yes", "--json", "--nonce", str(n))
    assert res.exit_code == 0, res.output
    hashes = HASH.findall(res.stdout)
    nonces = sorted({env.w3.eth.get_transaction(h)["nonce"] for h in hashes})
    assert nonces == [n, n + 1] and env.nonce() == n + 2


def test_unlocked_sends_from_a_node_held_account_journaled_by_hash(env):
    """--unlocked --from (or ETH_FROM): eth_sendTransaction from Anvil's dev account, no key
    here; every transaction journaled by hash; approve + create one by one."""
    from dtnsess_cli.chain.journal import Journal

    fund(env.system, env.user, 100, approve=False)
    n = env.nonce()
    res = env.cli("approve", "1", "--yes", "--unlocked", "--from", env.user, role=None)
    assert res.exit_code == 0, res.output
    t = tx_of(env, res)
    assert t["from"] == env.user and env.nonce() == n + 1
    made = env.cli("create", "20", "--yes", "--json", "--unlocked", role=None,
                   env={"ETH_FROM": env.user})
    assert made.exit_code == 0, made.output
    assert env.nonce() == n + 3 and len(env.system.manager.functions.getUserSessions(
        env.user).call()) == 1
    j = Journal()
    try:
        for h in HASH.findall(res.stdout) + HASH.findall(made.stdout):
            e = j.find(h)
            assert e is not None and e.status == "mined" and e.raw == ""
    finally:
        j.close()
    bare = env.cli("approve", "1", "--yes", "--unlocked", role=None)
    assert bare.exit_code == 3 and "pass --from" in bare.stderr, bare.output
