"""`dtnsess tx speedup` / `dtnsess tx cancel` on the devnet, automine off (issue 19, item 1).

A stuck transaction (sent while nothing is mined: the write exits 10 naming it) is replaced at
its nonce with both fees raised by at least 10%; the journal keeps both as one family. Every
outcome: the replacement mined, the original mined first (nothing sent), the replacement refused
as underpriced, the node lost both (the next write re-broadcasts the newest and a rerun of the
intent is not repeated), a cancel mined (nothing of the intent done). Never two mined.
"""

from __future__ import annotations

import threading
import time

from cli_helpers import load_json
from helpers import fund, mine, rpc
from test_faults_send import HASH, env, one_error  # noqa: F401 - env is a fixture


def allowance(env) -> int:
    return env.system.token.functions.allowance(env.user, env.system.manager.address).call()


def journal_status(tx_hash: str) -> str:
    from dtnsess_cli.chain.journal import Journal

    j = Journal()
    try:
        return j.find(tx_hash).status
    finally:
        j.close()


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


def _replace_a_stuck_approve(env, verb: str) -> tuple:
    """A stuck `approve 10` replaced by `tx VERB` (speedup or cancel), the replacement mined
    as soon as it took the original's place: (original hash, original tx, --json output,
    replacement hash, the nonce before)."""
    fund(env.system, env.user, 100, approve=False)
    start = env.nonce()
    rpc(env.w3, "evm_setAutomine", False)
    try:
        h = _stuck_approve(env)
        old = env.w3.eth.get_transaction(h)
        miner = _when_replaced(env, h, lambda: mine(env.w3))
        res = env.cli("tx", verb, h, "--yes", "--json")
        miner.join()
    finally:
        rpc(env.w3, "evm_setAutomine", True)
    assert res.exit_code == 0, res.output
    out = load_json(res)
    return h, old, out, out["transactions"][0]["tx_hash"], start


def test_speedup_mines_the_replacement_not_both(env):
    h, old, out, new, start = _replace_a_stuck_approve(env, "speedup")
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
    rpc(env.w3, "evm_setAutomine", False)
    try:
        h = _stuck_approve(env)
        mine(env.w3)  # the original is mined first
        before = env.nonce()
        res = env.cli("tx", "speedup", h, "--yes")
        dry = env.cli("tx", "cancel", h, "--dry-run")
    finally:
        rpc(env.w3, "evm_setAutomine", True)
    assert res.exit_code == 4, res.output
    assert "already mined in block" in one_error(res) and "nothing sent" in res.stderr
    assert dry.exit_code == 4, dry.output  # mined: its journal entry now says so
    assert env.nonce() == before and journal_status(h) == "mined"


def test_a_replacement_refused_as_underpriced_leaves_the_original(env):
    fund(env.system, env.user, 100, approve=False)
    start = env.nonce()
    rpc(env.w3, "evm_setAutomine", False)
    try:
        h = _stuck_approve(env)
        env.proxy.fault("eth_sendRawTransaction", "rpcerror_before",
                        message="replacement transaction underpriced")
        res = env.cli("tx", "cancel", h, "--yes")
        assert env.w3.eth.get_transaction(h)  # still pending in the node
        mine(env.w3)
    finally:
        rpc(env.w3, "evm_setAutomine", True)
    assert res.exit_code == 5, res.output
    assert "underpriced" in one_error(res) and f"original tx {h} stays pending" in res.stderr
    assert env.nonce() == start + 1 and allowance(env) == 10 * env.system.unit
    dropped = [e for e in _family(h) if e.tx_hash != h]
    assert len(dropped) == 1 and dropped[0].status == "dropped"


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
    rpc(env.w3, "evm_setAutomine", False)
    try:
        h = _stuck_approve(env)
        dropper = _when_replaced(env, h, lambda: rpc(env.w3, "anvil_dropAllTransactions"))
        res = env.cli("tx", "speedup", h, "--yes")
        dropper.join()
    finally:
        rpc(env.w3, "evm_setAutomine", True)
    assert res.exit_code == 10, res.output  # neither is in the node: the outcome is open
    new = [x for x in HASH.findall(one_error(res)) if x != h][0]
    assert env.nonce() == start
    rerun = env.cli("approve", "10", "--yes")  # the same intent: found done, not repeated
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {new}" in rerun.stderr and "pending; waiting" in rerun.stderr
    assert env.nonce() == start + 1 and allowance(env) == 10 * env.system.unit
    assert journal_status(new) == "mined" and journal_status(h) == "replaced"


def test_cancel_mined_means_nothing_of_the_intent_was_done(env):
    h, _, out, new, start = _replace_a_stuck_approve(env, "cancel")
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
    rpc(env.w3, "evm_setAutomine", False)
    try:
        h = _stuck_approve(env)
        old = env.w3.eth.get_transaction(h)
        res = env.cli("tx", "speedup", h, "--dry-run", "--json")
        assert env.w3.eth.get_transaction(h)  # still the one in the node
        mine(env.w3)
    finally:
        rpc(env.w3, "evm_setAutomine", True)
    assert res.exit_code == 0, res.output
    out = load_json(res)
    assert out["dry_run"] is True and out["mined"] is None and out["replaces"] == h
    (t,) = out["transactions"]
    assert t["gas_estimate"] == old["gas"] and "tx_hash" not in t
    assert [e.tx_hash for e in _family(h)] == [h]  # nothing new journaled
