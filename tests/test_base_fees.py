"""Base as it is (issue 10, section 4): the OP-stack L1 data fee and the node's priority fee.

The L1 data fee comes from the GasPriceOracle predeploy (0x42..0F); on Anvil a stand-in
(contracts/dev/DevGasPriceOracle.sol: a fixed fee per byte) is placed there with anvil_setCode.
It is asked in the batch the send already makes; without code at that address nothing changes.
The tip comes from the node: eth_maxPriorityFeePerGas, else eth_feeHistory (same batch).
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from cli_helpers import assert_error, assert_ok, count_round_trips, load_json
from dtnsess_cli.artifacts import load_artifact
from dtnsess_cli.chain.send import (L1_GAS_PRICE_ORACLE, TxResult, cost_line, gas_limit_for,
                                    receipt_l1_fee)
from dtnsess_cli.errors import ExitCode
from faultproxy import FaultProxy
from helpers import SAME_SECOND_GAS, create, fund, rpc

FEE_PER_BYTE = 10**12  # DevGasPriceOracle.FEE_PER_BYTE


def wei(eth: str) -> int:
    return int(Decimal(eth) * 10**18)


@pytest.fixture
def oracle(w3):
    """The stand-in oracle at the predeploy address (the snapshot revert removes it)."""
    rpc(w3, "anvil_setCode", L1_GAS_PRICE_ORACLE, load_artifact("DevGasPriceOracle")["deployedBytecode"])
    return w3.eth.contract(address=L1_GAS_PRICE_ORACLE,
                           abi=load_artifact("DevGasPriceOracle")["abi"])


@pytest.fixture
def ready(system6, user):
    """The user has tokens and one session: `request hi` is one transaction."""
    fund(system6, user, 100)
    create(system6, user, 50)
    return system6


def dry_request(cli) -> dict:
    (t,) = cli.json("request", "hi", "--dry-run")["transactions"]
    return t


def test_the_stand_in_oracle_charges_per_byte(oracle):
    assert oracle.functions.getL1Fee(b"\x01" * 100).call() == 168 * FEE_PER_BYTE
    assert oracle.functions.getL1FeeUpperBound(200).call() == 268 * FEE_PER_BYTE


def test_without_the_oracle_nothing_changes(make_cli, ready, monkeypatch):
    cli = make_cli(ready)
    t = dry_request(cli)
    assert "l1_fee_eth" not in t
    r = cli("request", "hi", "--dry-run")
    assert_ok(r)
    assert "L1" not in r.stdout
    with count_round_trips(monkeypatch) as rt:
        sent = cli.json("request", "hi", "--yes")
    (tx,) = sent["transactions"]
    assert "l1_fee_eth" not in tx
    assert trips_before_send(rt) == 2, rt  # connect, the one batch (the oracle rides in it)


def trips_before_send(rt) -> int:
    return next(i for i, m in enumerate(rt.methods) if m.startswith("eth_sendRawTransaction"))


def test_the_cost_includes_the_l1_fee(make_cli, ready, oracle, monkeypatch):
    cli = make_cli(ready)
    with count_round_trips(monkeypatch) as rt:
        t = dry_request(cli)
    l1 = wei(t["l1_fee_eth"])
    # the unsigned transaction is a few hundred bytes; the oracle charged it per byte
    assert 200 * FEE_PER_BYTE < l1 < 2000 * FEE_PER_BYTE and l1 % FEE_PER_BYTE == 0
    # asked in the batch the send already makes: no round trip more (connect, the batch)
    assert rt.posts == 2, rt
    # --json: the cost at the most includes it
    rpc(ready.w3, "anvil_setCode", L1_GAS_PRICE_ORACLE, "0x")
    plain = dry_request(cli)
    rpc(ready.w3, "anvil_setCode", L1_GAS_PRICE_ORACLE,
        load_artifact("DevGasPriceOracle")["deployedBytecode"])
    # (the same gas but for the clock: SAME_SECOND_GAS; Anvil's base fee may move by a hair
    # between runs, l1 // 20 at most: neither by the L1 fee, which must show whole, once)
    assert abs(t["gas_estimate"] - plain["gas_estimate"]) <= SAME_SECOND_GAS
    per_gas = wei(plain["max_fee_eth"]) // gas_limit_for(plain["gas_estimate"])
    moved = gas_limit_for(SAME_SECOND_GAS) * per_gas + l1 // 20
    assert moved < l1 // 2, (moved, l1)  # so the L1 fee missing or twice still fails
    assert abs(wei(t["max_fee_eth"]) - (wei(plain["max_fee_eth"]) + l1)) < moved
    # the human cost line too
    r = cli("request", "hi", "--dry-run")
    assert_ok(r)
    # (another run: the base fee may have moved by a hair again, the L1 fee not)
    shown = re.search(r"at most ([0-9.]+) ETH incl\. L1 data fee ([0-9.]+) ETH", r.stdout)
    assert shown and shown.group(2) == t["l1_fee_eth"], r.stdout
    assert abs(wei(shown.group(1)) - wei(t["max_fee_eth"])) < moved, r.stdout


def test_eth_for_l2_gas_but_not_the_l1_fee_is_refused(make_cli, ready, oracle, user, w3):
    cli = make_cli(ready)
    t = dry_request(cli)
    l1 = wei(t["l1_fee_eth"])
    l2 = wei(t["max_fee_eth"]) - l1 + 300_000  # gas at the most + the callback value
    rpc(w3, "anvil_setBalance", user, hex(l2 + l1 // 2))
    nonce = w3.eth.get_transaction_count(user)
    r = cli("request", "hi", "--yes")
    assert_error(r, ExitCode.FUNDS, "ETH", "L1 data fee")
    assert w3.eth.get_transaction_count(user) == nonce  # nothing sent
    # the same balance pays for L2 gas alone: without the oracle it is sent
    rpc(w3, "anvil_setCode", L1_GAS_PRICE_ORACLE, "0x")
    assert_ok(cli("request", "hi", "--yes"))
    assert w3.eth.get_transaction_count(user) == nonce + 1


def test_a_batch_counts_the_l1_fee_of_every_transaction(make_cli, system6, user, oracle, w3):
    """create = approve + create, sent together (send_together): the check sums both L1 fees."""
    import re

    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    (approve,) = cli.json("create", "50", "--dry-run")["transactions"]  # simulates the first
    rpc(w3, "anvil_setBalance", user, hex(10**12))
    nonce = w3.eth.get_transaction_count(user)
    line = assert_error(cli("create", "50", "--yes"), ExitCode.FUNDS, "for 2 transactions",
                        "L1 data fee")
    l1 = wei(re.search(r"\+ ([0-9.]+) ETH L1 data fee", line).group(1))
    # the approval's and the create's (a signed transaction is more than 68 + 40 bytes)
    assert l1 > wei(approve["l1_fee_eth"]) + 108 * FEE_PER_BYTE and l1 % FEE_PER_BYTE == 0
    assert w3.eth.get_transaction_count(user) == nonce


def test_the_reported_fee_adds_the_receipts_l1_fee():
    """After mining the fee is the receipt's: gas used at the effective price + ``l1Fee``."""
    res = TxResult(description="x", dry_run=False, sender="0x", to=None, value=0,
                   gas_estimate=100, gas_limit=120, max_fee_per_gas=10, tx_hash="0x1",
                   gas_used=90, effective_gas_price=7, l1_fee=receipt_l1_fee({"l1Fee": "0x64"}))
    assert res.fee_wei == 90 * 7 + 100
    assert res.summary()["fee_eth"] == "0.00000000000000073"
    assert receipt_l1_fee({"gasUsed": 1}) == 0  # not an OP-stack receipt


def test_the_cost_line_names_the_l1_fee():
    assert cost_line("~100 (limit 120)", 120, 10**9) == \
        "gas: ~100 (limit 120) at up to 1 gwei = at most 0.00000012 ETH"
    assert cost_line("~100 (limit 120)", 120, 10**9, 10**12) == \
        "gas: ~100 (limit 120) at up to 1 gwei + L1 data fee ~0.000001 ETH = at most 0.00000112 ETH"


def test_after_a_send_the_fee_is_what_the_balance_lost(make_cli, ready, oracle, user, w3):
    """Anvil charges no L1 fee (its receipts have no l1Fee): the reported fee is the gas paid,
    not the oracle's estimate."""
    cli = make_cli(ready)
    before = w3.eth.get_balance(user)
    out = cli.json("request", "hi", "--yes")
    (t,) = out["transactions"]
    assert "l1_fee_eth" not in t
    assert before - w3.eth.get_balance(user) == wei(t["fee_eth"]) + 300_000


# --------------------------------------------------------------------------- priority fee

def sent_tip(w3, out) -> int:
    return w3.eth.get_transaction(out["transactions"][-1]["tx_hash"])["maxPriorityFeePerGas"]


def push_tips(w3, sender: str, tip: int, blocks: int = 5) -> None:
    """Mine ``blocks`` blocks each holding one transaction that tips ``tip``."""
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    for _ in range(blocks):
        h = w3.eth.send_transaction({"from": sender, "to": sender, "value": 0, "gas": 21000,
                                     "maxPriorityFeePerGas": tip,
                                     "maxFeePerGas": 4 * base + tip})
        w3.eth.wait_for_transaction_receipt(h)


def test_the_tip_is_what_the_node_suggests(make_cli, ready, user, stranger, w3):
    push_tips(w3, stranger, 3 * 10**9)  # Anvil then suggests 3 gwei (never less than 1)
    suggested = int(rpc(w3, "eth_maxPriorityFeePerGas"), 16)
    assert suggested == 3 * 10**9
    out = make_cli(ready).json("request", "hi", "--yes")
    assert sent_tip(w3, out) == suggested


def test_a_node_without_max_priority_fee_falls_back_to_fee_history(
        anvil, ready, user, stranger, w3, private_keys, monkeypatch, tmp_path):
    from cli_helpers import Cli, isolate_env

    tip = 3 * 10**6  # 0.003 gwei: a Base-sized tip, not the 1 gwei of a fixed fallback
    push_tips(w3, stranger, tip)
    isolate_env(monkeypatch, tmp_path)
    with FaultProxy(anvil.url) as proxy:
        proxy.fault("eth_maxPriorityFeePerGas", "method_error", times=10,
                    message="the method eth_maxPriorityFeePerGas does not exist")
        cli = Cli(ready, private_keys, monkeypatch, proxy.url)
        out = cli.json("request", "hi", "--yes")
        assert ("eth_maxPriorityFeePerGas", "method_error") in proxy.fired
    assert sent_tip(w3, out) == tip
