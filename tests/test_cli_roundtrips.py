"""Upper bounds on JSON-RPC round trips per command (what a remote node's latency is paid for).

The main flow of bench/rpc.py (balance, create with an approval, request, stats, sessions, close,
cleanup, doctor) runs in process against Anvil (automine: a receipt is ready at the first poll)
with round trips counted by ``cli_helpers.count_round_trips``. A transaction costs three: one
JSON-RPC batch (simulate, estimate, fees, ETH balance, nonce), the send, the receipt.
"""

from __future__ import annotations

import pytest

from cli_helpers import assert_error, assert_ok, count_round_trips, load_json
from dtnsess_cli.errors import ExitCode
from helpers import answer, fund

# command -> most round trips allowed (bench/RESULTS.md §2 has the sequences)
BOUNDS = {
    "balance": 2,      # [chain id, getConfig, ETH, refunds], [symbol, balanceOf, allowance]
    "create 50": 8,    # connect, [symbol, balanceOf, allowance], approve (3), create (3)
    "request hi": 4,   # connect, the transaction (3)
    "stats 1": 2,      # [chain id, getConfig, getSession], [symbol]
    "sessions": 2,     # [chain id, getConfig, getUserSessions], [getSessions, symbol]
    "close 1": 4,      # [chain id, getConfig, getSession], the transaction (3, symbol rides)
    "cleanup": 1,      # [chain id, getConfig, getIdleSessions] (nothing idle: no transaction)
    "doctor": 2,       # [block, chain id, getConfig, ETH], [symbol, balanceOf, allowance]
}


def trips(rt) -> int:
    """Round trips, not counting receipt polls after the first per transaction (a block that is
    not mined yet at the first poll is the node's timing, not the client's)."""
    polls = rt.methods.count("eth_getTransactionReceipt")
    return rt.posts - max(0, polls - rt.methods.count("eth_sendRawTransaction"))


SCENARIO = [
    ("balance", ["balance"]),
    ("create 50", ["create", "50", "--yes"]),
    ("request hi", ["request", "hi", "--yes"]),
    ("stats 1", ["stats", "1"]),
    ("sessions", ["sessions"]),
    ("close 1", ["close", "1", "--yes"]),
    ("cleanup", ["cleanup"]),
    ("doctor", ["doctor"]),
]


def test_round_trips_per_command(make_cli, system6, user, monkeypatch):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)  # create approves first: two transactions
    counts = {}
    for label, args in SCENARIO:
        with count_round_trips(monkeypatch) as rt:
            r = cli(*args, "--json")
        assert_ok(r)
        counts[label] = rt
        print(f"{label}: {rt}")
        if label == "request hi":  # a DTN node answers (not counted), so close 1 may close
            answer(system6, bytes.fromhex(load_json(r)["request_id"][2:]))
    assert system6.manager.functions.getSession(1).call()[4] is False  # closed
    over = {k: v for k, v in counts.items() if trips(v) > BOUNDS[k]}
    assert not over, over


def test_a_transaction_is_one_batch_a_send_and_a_receipt(make_cli, system6, user, monkeypatch):
    cli = make_cli(system6)
    fund(system6, user, 100)
    with count_round_trips(monkeypatch) as rt:
        assert_ok(cli("request", "hi", "--yes", "--json"))
    send = rt.methods.index("eth_sendRawTransaction")
    batch = rt.methods[send - 1]
    for m in ("eth_call", "eth_estimateGas", "eth_getBlockByNumber", "eth_maxPriorityFeePerGas",
              "eth_getBalance", "eth_getTransactionCount"):
        assert m in batch, rt
    after = rt.methods[send + 1:]  # receipt polls only (more than one if not mined yet)
    assert after and set(after) == {"eth_getTransactionReceipt"}, rt


def test_create_after_an_approval_reuses_nonce_and_fees(make_cli, system6, user, monkeypatch):
    """The create's batch still simulates (after the approval is mined) but reads neither the
    nonce nor the fees again."""
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    with count_round_trips(monkeypatch) as rt:
        out = load_json(cli("create", "50", "--yes", "--json"))
    assert [t["description"].split()[0] for t in out["transactions"]] == ["approve", "create"]
    first, second = [m for m in rt.methods if "eth_estimateGas" in m]
    assert "eth_getTransactionCount" in first and "eth_getBlockByNumber" in first
    assert second == "batch[eth_call,eth_estimateGas,eth_getBalance]", rt


@pytest.fixture
def no_batches(monkeypatch):
    """A node that refuses JSON-RPC batches (it answers a batch with one error object)."""
    from web3 import HTTPProvider

    def refuse(self, requests):
        return {"jsonrpc": "2.0", "id": None,
                "error": {"code": -32600, "message": "batch requests are not supported"}}

    monkeypatch.setattr(HTTPProvider, "make_batch_request", refuse)


def test_a_node_without_batches_gets_the_requests_one_by_one(make_cli, system6, user, no_batches):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    out = load_json(cli("create", "50", "--yes", "--json"))
    assert out["session_id"] == 1 and len(out["transactions"]) == 2
    assert load_json(cli("balance", "--json"))["token"] == "50"
    # a revert is still decoded by selector (ERC20InsufficientBalance -> FUNDS) and nothing sent
    r = cli("create", "60", "--yes")
    assert_error(r, ExitCode.FUNDS, "have 50", "need 60")
