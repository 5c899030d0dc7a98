"""`dtnsess tx speedup` / `dtnsess tx cancel` on the devnet, automine off (issue 19, item 1).

A stuck transaction (sent while nothing is mined: the write exits 10 naming it) is replaced at
its nonce with both fees raised by at least 10% (or set by --priority-gas-price / --max-fee,
refused below that minimum); the journal keeps both as one family. Every outcome: the
replacement mined, the original mined first (nothing sent), the replacement refused as
underpriced (signed again +10%, asked again, and mined; or beyond --max-fee or the tries: a
clear error, nothing more sent), the node lost both (the next write re-broadcasts the newest and
a rerun of the intent is not repeated), a cancel mined (nothing of the intent done). Never two
mined.
"""

from __future__ import annotations

import threading
import time

import pytest

from cli_helpers import load_json
from helpers import fund, journal_status, mine, no_automine, rpc
from test_faults_send import HASH, env, one_error  # noqa: F401 - env is a fixture


def allowance(env) -> int:
    return env.system.token.functions.allowance(env.user, env.system.manager.address).call()


def _stuck_approve(env, amount: str = "10") -> str:
    """`approve AMOUNT` while nothing is mined (automine off): exit 10, the hash named and
    pending in the node. Returns the hash."""
    res = env.cli("approve", amount, "--yes")
    assert res.exit_code == 10, res.output
    h = HASH.search(one_error(res)).group(0)
    assert env.w3.eth.get_transaction(h)
    return h


def _when_replaced(env, h: str, then) -> threading.Thread:
    """In the background: once the node no longer holds ``h`` (a replacement took its place in
    the pool), call ``then()``."""
    def run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                env.w3.eth.get_transaction(h)
            except Exception:
                then()
                return
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _replace_a_stuck_approve(env, verb: str, flags=lambda old: (), refusals: int = 0) -> tuple:
    """A stuck `approve 10` replaced by `tx VERB` (speedup or cancel) with ``flags(old tx)``
    and the node refusing the first ``refusals`` sends as underpriced, the replacement mined as
    soon as it took the original's place: (original hash, original tx, --json output,
    replacement hash, the nonce before, the result)."""
    fund(env.system, env.user, 100, approve=False)
    start = env.nonce()
    with no_automine(env.w3):
        h = _stuck_approve(env)
        old = env.w3.eth.get_transaction(h)
        if refusals:
            env.proxy.fault("eth_sendRawTransaction", "rpcerror_before", times=refusals,
                            message="replacement transaction underpriced")
        miner = _when_replaced(env, h, lambda: mine(env.w3))
        res = env.cli("tx", verb, h, *flags(old), "--yes", "--json")
        miner.join()
    assert res.exit_code == 0, res.output
    out = load_json(res)
    return h, old, out, out["transactions"][0]["tx_hash"], start, res


def test_speedup_mines_the_replacement_not_both(env):
    h, old, out, new, start, res = _replace_a_stuck_approve(env, "speedup")
    assert out["mined"] == "replacement" and out["replaces"] == h and new != h
    got = env.w3.eth.get_transaction(new)
    assert got["nonce"] == old["nonce"]
    assert got["maxPriorityFeePerGas"] * 10 >= old["maxPriorityFeePerGas"] * 11
    assert got["maxFeePerGas"] * 10 >= old["maxFeePerGas"] * 11
    assert env.nonce() == start + 1 and allowance(env) == 10 * env.system.unit
    assert journal_status(h) == "replaced" and journal_status(new) == "mined"
    shown = env.cli("tx", h, "--json")
    view = load_json(shown)
    assert shown.exit_code == 1 and view["status"] == "unknown"  # the node dropped it
    assert view["journal"] == "replaced"
    assert [(m["tx_hash"], m["variant"], m["journal"]) for m in view["family"]] == [
        (h, "original", "replaced"), (new, "speedup", "mined")]


def test_speedup_after_the_original_was_mined_sends_nothing(env):
    fund(env.system, env.user, 100, approve=False)
    with no_automine(env.w3):
        h = _stuck_approve(env)
        mine(env.w3)  # the original is mined first
        before = env.nonce()
        res = env.cli("tx", "speedup", h, "--yes")
        dry = env.cli("tx", "cancel", h, "--dry-run")
    assert res.exit_code == 4, res.output
    assert "already mined in block" in one_error(res) and "nothing sent" in res.stderr
    assert dry.exit_code == 4, dry.output  # mined: its journal entry now says so
    assert env.nonce() == before and journal_status(h) == "mined"


def test_fee_flags_set_the_replacements_fees(env):
    """--priority-gas-price and --max-fee were ignored by speedup/cancel (always +10%)."""
    h, old, out, new, start, res = _replace_a_stuck_approve(env, "speedup", lambda old: (
        "--priority-gas-price", str(old["maxPriorityFeePerGas"] * 2),
        "--max-fee", str(old["maxFeePerGas"] * 3)))
    got = env.w3.eth.get_transaction(new)
    assert out["mined"] == "replacement" and got["nonce"] == old["nonce"]
    assert got["maxPriorityFeePerGas"] == old["maxPriorityFeePerGas"] * 2
    assert got["maxFeePerGas"] == old["maxFeePerGas"] * 3
    assert env.nonce() == start + 1 and allowance(env) == 10 * env.system.unit


def test_fee_flags_below_the_replacement_minimum_are_refused_and_nothing_sent(env):
    from dtnsess_cli.chain.replace import bump
    from dtnsess_cli.units import format_gwei

    fund(env.system, env.user, 100, approve=False)
    with no_automine(env.w3):
        h = _stuck_approve(env)
        old = env.w3.eth.get_transaction(h)
        tip, mx = old["maxPriorityFeePerGas"], old["maxFeePerGas"]
        env.proxy.seen.clear()
        low_max = env.cli("tx", "speedup", h, "--max-fee", str(bump(mx, 0) - 1), "--yes")
        low_tip = env.cli("tx", "cancel", h, "--priority-gas-price", str(tip),
                          "--max-fee", str(2 * mx), "--yes")
        dry = env.cli("tx", "speedup", h, "--max-fee", str(mx), "--dry-run")
        sent = env.proxy.seen.count("eth_sendRawTransaction")
        assert env.w3.eth.get_transaction(h)  # still the one in the node
        mine(env.w3)
    for res, flag, least in ((low_max, "--max-fee", bump(mx, 0)),
                             (low_tip, "--priority-gas-price", bump(tip, 0)),
                             (dry, "--max-fee", bump(mx, 0))):
        assert res.exit_code == 4, res.output
        line = one_error(res)
        assert flag in line and "below the replacement minimum" in line, line
        assert f"{format_gwei(least)} gwei" in line and "nothing sent" in line
    assert sent == 0 and [e.tx_hash for e in _family(h)] == [h]  # nothing signed, nothing sent


def test_underpriced_is_retried_higher_and_mined(env):
    """Before: the node's "replacement transaction underpriced" ended the command. Now the
    replacement is signed again +10% on both fees, journaled, sent, and mined."""
    h, old, out, new, start, res = _replace_a_stuck_approve(env, "cancel", refusals=2)
    assert out["mined"] == "replacement", out
    got = env.w3.eth.get_transaction(new)
    # the third try: +10% three times over the original (rounded up each time)
    assert got["maxPriorityFeePerGas"] * 1000 >= old["maxPriorityFeePerGas"] * 1331
    assert got["maxFeePerGas"] * 1000 >= old["maxFeePerGas"] * 1331
    said = "as underpriced (it wants more over what it holds at nonce"
    assert res.stderr.count(said) == 2 and res.stderr.count("; trying ") == 2, res.stderr
    assert env.nonce() == start + 1 and allowance(env) == 0  # the cancel, once
    family = _family(h)
    assert [e.status for e in family] == ["replaced", "dropped", "dropped", "mined"]
    assert family[-1].tx_hash == new and len({e.tx_hash for e in family}) == 4


def _refused_for_good(env, flags=lambda old: ("--yes",), tty_input=None) -> tuple:
    """A stuck approve, then `tx cancel HASH flags(its tx)` while the node refuses every
    replacement as underpriced; then the original is mined: (original hash, the result, the
    replacements sent)."""
    fund(env.system, env.user, 100, approve=False)
    start = env.nonce()
    with no_automine(env.w3):
        h = _stuck_approve(env)
        old = env.w3.eth.get_transaction(h)
        env.proxy.seen.clear()
        env.proxy.fault("eth_sendRawTransaction", "rpcerror_before", times=100,
                        message="replacement transaction underpriced")
        res = env.cli("tx", "cancel", h, *flags(old), input=tty_input)
        sends = env.proxy.seen.count("eth_sendRawTransaction")
        env.proxy.clear()
        assert env.w3.eth.get_transaction(h)  # still pending in the node
        mine(env.w3)
    assert env.nonce() == start + 1 and allowance(env) == 10 * env.system.unit  # the original
    return h, res, sends


def test_underpriced_beyond_max_fee_is_a_clear_error_and_nothing_more_is_sent(env):
    from dtnsess_cli.chain.replace import bump

    h, res, sends = _refused_for_good(env, lambda old: (
        "--max-fee", str(bump(old["maxFeePerGas"], 0)), "--yes"))
    assert res.exit_code == 5, res.output
    line = one_error(res)
    assert "underpriced" in line and "+10% on both fees" in line, line
    assert "above --max-fee" in res.stderr and f"original tx {h} stays pending" in res.stderr
    assert sends == 1  # the one at --max-fee; the next would be above it
    assert [e.status for e in _family(h)] == ["open", "dropped"]


def test_underpriced_is_retried_a_few_times_at_most(env):
    from dtnsess_cli.chain.replace import MAX_TRIES

    h, res, sends = _refused_for_good(env)
    assert res.exit_code == 5, res.output
    assert sends == MAX_TRIES and f"{MAX_TRIES} tries" in res.stderr, res.stderr
    family = _family(h)
    assert [e.status for e in family] == ["open"] + ["dropped"] * MAX_TRIES


def test_every_retry_asks_again_with_its_cost(env, monkeypatch):
    from dtnsess_cli.render import Renderer

    monkeypatch.setattr(Renderer, "interactive", property(lambda self: True))
    h, res, sends = _refused_for_good(env, lambda old: (), tty_input="y\nn\n")
    assert res.exit_code == 13, res.output  # aborted at the second question
    assert res.stderr.count("Send the replacement?") == 2 and sends == 1, res.stderr
    costs = [ln for ln in res.stderr.splitlines() if ln.startswith("  fees (tip / max, gwei)")]
    assert len(costs) == 2 and costs[0] != costs[1], costs
    assert [e.status for e in _family(h)] == ["open", "dropped"]


def _family(h: str) -> list:
    from dtnsess_cli.chain.journal import Journal

    j = Journal()
    try:
        return j.members(h)
    finally:
        j.close()


def test_node_lost_both_the_next_write_sends_the_newest_and_never_repeats(env):
    fund(env.system, env.user, 100, approve=False)
    start = env.nonce()
    with no_automine(env.w3):
        h = _stuck_approve(env)
        dropper = _when_replaced(env, h, lambda: rpc(env.w3, "anvil_dropAllTransactions"))
        res = env.cli("tx", "speedup", h, "--yes")
        dropper.join()
    assert res.exit_code == 10, res.output  # neither is in the node: the outcome is open
    new = [x for x in HASH.findall(one_error(res)) if x != h][0]
    assert env.nonce() == start
    rerun = env.cli("approve", "10", "--yes")  # the same intent: found done, not repeated
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {new}" in rerun.stderr and "pending; waiting" in rerun.stderr
    assert env.nonce() == start + 1 and allowance(env) == 10 * env.system.unit
    assert journal_status(new) == "mined" and journal_status(h) == "replaced"


def test_cancel_mined_means_nothing_of_the_intent_was_done(env):
    h, _, out, new, start, _ = _replace_a_stuck_approve(env, "cancel")
    t = env.w3.eth.get_transaction(new)
    assert t["to"] == env.user and t["value"] == 0 and t["input"] in (b"", "0x", bytes())
    assert env.nonce() == start + 1 and allowance(env) == 0  # the approval never happened
    assert journal_status(h) == "replaced" and journal_status(new) == "mined"
    again = env.cli("approve", "10", "--yes")  # a rerun does it (once)
    assert again.exit_code == 0 and allowance(env) == 10 * env.system.unit, again.output


def test_replace_refuses_what_it_cannot_replace(env):
    assert env.cli("tx", "speedup", "0x1234").exit_code == 4
    res = env.cli("tx", "speedup", "0x" + "ab" * 32, "--yes")
    assert res.exit_code == 4 and "not in this machine's journal" in one_error(res)


def test_a_dry_run_shows_the_replacement_and_sends_nothing(env):
    fund(env.system, env.user, 100, approve=False)
    with no_automine(env.w3):
        h = _stuck_approve(env)
        old = env.w3.eth.get_transaction(h)
        res = env.cli("tx", "speedup", h, "--dry-run", "--json")
        assert env.w3.eth.get_transaction(h)  # still the one in the node
        mine(env.w3)
    assert res.exit_code == 0, res.output
    out = load_json(res)
    assert out["dry_run"] is True and out["mined"] is None and out["replaces"] == h
    (t,) = out["transactions"]
    assert t["gas_estimate"] == old["gas"] and "tx_hash" not in t
    assert [e.tx_hash for e in _family(h)] == [h]  # nothing new journaled


def test_the_fees_of_a_replacement_without_eip1559():
    """A gasPrice transaction (a chain without EIP-1559): --max-fee (--gas-price) sets the
    price, never below +10%; without it +10%, or the chain's price when higher."""
    from dtnsess_cli.chain.context import TxOverrides
    from dtnsess_cli.chain.replace import replacement_fields
    from dtnsess_cli.errors import InputError

    old = {"type": 0, "gasPrice": 100, "gas": 50_000, "value": 0, "data": "0x", "to": "0x1"}
    assert replacement_fields(old, {"gasPrice": 90}, "0x2", False)["gasPrice"] == 110
    assert replacement_fields(old, {"gasPrice": 150}, "0x2", False)["gasPrice"] == 150
    fixed = replacement_fields(old, {"gasPrice": 150}, "0x2", True, TxOverrides(max_fee=120))
    assert (fixed["gasPrice"], fixed["to"], fixed["gas"]) == (120, "0x2", 21_000)
    with pytest.raises(InputError, match="below the replacement minimum"):
        replacement_fields(old, {}, "0x2", False, TxOverrides(max_fee=109))
