"""Issue 14: maintenance bounded by gas, and the CLI pages through a backlog.

On 5e555a9 `dtnsess cleanup` closed at most 150 sessions per run (`--max` 1..150), and
closeAllSessions had no bound (300 sessions estimated 23.4M gas, over the 2^24 transaction cap).
Now one run sends as many transactions as the backlog needs, each under 2^24 gas.
"""

from __future__ import annotations

import pytest

from helpers import MAX_TX_GAS, fund, increase_time, no_automine, rpc, send, session

pytestmark = [pytest.mark.usefixtures("conserved"), pytest.mark.slow]


def _many_sessions(system, owner, n, tokens=10):
    w3, m = system.w3, system.manager.functions
    fund(system, owner, n * tokens + 10)
    first = m.nextSessionId().call()
    with no_automine(w3):
        for _ in range(n):
            send(m.createSession(tokens * system.unit), owner, gas=600_000)
        while int(rpc(w3, "txpool_status")["pending"], 16) > 0:
            rpc(w3, "evm_mine")
    assert m.nextSessionId().call() == first + n
    return list(range(first, first + n))


def _gas_of(w3, out):
    return [w3.eth.get_transaction_receipt(t["tx_hash"])["gasUsed"] for t in out["transactions"]]


def test_one_cleanup_run_clears_a_backlog_in_several_transactions(make_cli, system6, user, w3):
    cli = make_cli(system6)
    ids = _many_sessions(system6, user, 260)
    increase_time(w3, system6.manager.functions.maxSessionAge().call() + 1)

    out = cli.json("cleanup", role="stranger")

    gas = _gas_of(w3, out)
    assert len(gas) >= 2 and all(g < MAX_TX_GAS for g in gas), gas
    assert sorted(c["session_id"] for c in out["closed"]) == ids
    assert out["gas_used"] == sum(gas)
    assert system6.manager.functions.getIdleSessions(1).call() == []
    assert cli.json("cleanup", role="stranger")["transactions"] == []


def test_cleanup_budget_flags_stop_the_run(make_cli, system6, user, w3):
    cli = make_cli(system6)
    _many_sessions(system6, user, 12)
    increase_time(w3, system6.manager.functions.maxSessionAge().call() + 1)
    out = cli.json("cleanup", "--max", "5", role="stranger")
    assert len(out["closed"]) == 5 and len(out["transactions"]) == 1
    out = cli.json("cleanup", "--max-gas", "1", role="stranger")  # one transaction, then stop
    assert len(out["transactions"]) == 1 and len(out["closed"]) == 7


def test_close_all_pages_through_hundreds_of_sessions(make_cli, system6, user, w3):
    cli = make_cli(system6)
    ids = _many_sessions(system6, user, 200)

    out = cli.json("close", "--all")

    gas = _gas_of(w3, out)
    assert len(gas) >= 2 and all(g < MAX_TX_GAS for g in gas), gas
    assert sorted(c["session_id"] for c in out["closed"]) == ids
    assert not any(session(system6, i)["active"] for i in (ids[0], ids[-1]))


@pytest.fixture
def small_blocks(w3):
    """A node whose blocks hold 3,000,000 gas (some chains' limit is under 2^24); restored after."""
    limit = w3.eth.get_block("latest")["gasLimit"]
    rpc(w3, "evm_setBlockGasLimit", hex(3_000_000))
    rpc(w3, "evm_mine")
    try:
        yield 3_000_000
    finally:
        rpc(w3, "evm_setBlockGasLimit", hex(limit))
        rpc(w3, "evm_mine")


def test_cleanup_and_close_all_page_under_a_small_block_gas_limit(make_cli, system6, user, w3,
                                                                  small_blocks):
    """Seen in issue 14: each cleanup and close-all transaction was sized for 2^24 only (up to
    ~12.3M gas); under a smaller block gas limit the node refused it. Now every transaction's
    gas limit fits the block, and a step that cannot fit is refused in words, nothing sent."""
    from cli_helpers import nonce
    from dtnsess_cli.errors import ExitCode
    from test_cli_errors import fails

    cli = make_cli(system6)
    ids = _many_sessions(system6, user, 60)
    increase_time(w3, system6.manager.functions.maxSessionAge().call() + 1)

    out = cli.json("cleanup", role="stranger")

    limits = [w3.eth.get_transaction(t["tx_hash"])["gas"] for t in out["transactions"]]
    assert len(limits) >= 2 and all(g <= small_blocks for g in limits), limits
    assert sorted(c["session_id"] for c in out["closed"]) == ids

    # close --all: one closeAllSessions step would not fit; it closes one session at a time
    more = _many_sessions(system6, user, 45)  # ~3.6M gas in one closeAllSessions
    out = cli.json("close", "--all")
    limits = [w3.eth.get_transaction(t["tx_hash"])["gas"] for t in out["transactions"]]
    assert len(limits) == len(more) and all(g <= small_blocks for g in limits), limits
    assert sorted(c["session_id"] for c in out["closed"]) == more

    # a block too small for even one step: said so, nothing sent
    idle = _many_sessions(system6, user, 2)
    increase_time(w3, system6.manager.functions.maxSessionAge().call() + 1)
    rpc(w3, "evm_setBlockGasLimit", hex(250_000))
    rpc(w3, "evm_mine")
    fails(cli, ["cleanup"], ExitCode.CHAIN, "one cleanup step", "250,000 gas", role="stranger")
    assert all(session(system6, i)["active"] for i in idle)
