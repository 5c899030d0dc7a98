"""`dtnsess tx speedup` / `dtnsess tx cancel` on a chain with block times (issue 19, item 1).

tests/test_tx_replace.py covers the outcomes with automine off; here a block is mined every
second (Anvil's interval mining: what `dtnsess devnet up --block-time 1` runs) and a
transaction gets stuck the way it does on a real chain: the blocks are full of a rival's
dearer transactions, so ours waits in the pool while blocks go by and the base fee climbs.
Once on `dtnsess devnet up --block-time 1` itself, the rest on the session's Anvil.

NOTE: how to keep a transaction pending on Anvil (measured, Anvil of node_modules): it takes a
transaction against the NEXT block's base fee, and when a block's base fee rises above a pending
transaction's max fee (anvil_setNextBlockBaseFeePerGas) it DROPS that transaction at once
(geth would keep it). Full blocks keep it: the block gas limit is lowered to just above what one
rival transaction uses (a transfer with a large calldata), so nothing of ours fits beside it,
and the rival's transactions, paying more than ours, go first while they last.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

from cli_helpers import load_json
from helpers import create, fund, next_second, rpc
from test_devnet import devnet_dir  # noqa: F401 - a fixture
from test_faults_send import HASH, PLAIN, SYNC, env, one_error  # noqa: F401 - env is a fixture

GWEI = 10**9
# NOTE: Anvil orders its pool by max fee per gas (measured: a replacement with a tip and max
# fee of 10 gwei waited behind a rival tipping 5 under 100): one over RIVAL_MAX_FEE goes first
RIVAL_TIP, RIVAL_MAX_FEE = 5 * GWEI, 6 * GWEI
# a rival transfer's calldata (non-zero bytes): its gas (~1 to 2.5 million with the calldata
# floor of newer forks) is more than any write of ours needs, so the block limit set just above
# it fits one rival transaction, or one of ours
RIVAL_DATA = "0x" + "01" * 60_000


class Chain:
    """The congested chain: ``.rivals(n)`` queues n more full blocks, ``.clear()`` lets ours in."""

    def __init__(self, w3, rival: str):
        self.w3, self.rival = w3, rival
        self.rival_gas = w3.eth.estimate_gas({"from": rival, "to": rival, "data": RIVAL_DATA})

    def rivals(self, n: int) -> None:
        nonce = self.w3.eth.get_transaction_count(self.rival, "pending")
        for i in range(n):
            self.w3.eth.send_transaction({
                "from": self.rival, "to": self.rival, "data": RIVAL_DATA, "nonce": nonce + i,
                "gas": self.rival_gas, "maxPriorityFeePerGas": RIVAL_TIP,
                "maxFeePerGas": RIVAL_MAX_FEE})

    def clear(self) -> None:
        """The rush is over: the rival's queued transactions leave the pool."""
        rpc(self.w3, "anvil_removePoolTransactions", self.rival)

    def next_block(self) -> int:
        """Wait for the next block; its number."""
        n = self.w3.eth.block_number
        deadline = time.monotonic() + 5
        while self.w3.eth.block_number == n:
            assert time.monotonic() < deadline, "no block mined"
            time.sleep(0.05)
        return n + 1


@contextmanager
def congested(env, blocks: int = 12, w3=None, rival=None):
    """A block every second, each of the next ``blocks`` full with a rival's transaction
    (``env``'s chain, or the devnet's ``w3`` with its dev account ``rival``)."""
    w3 = w3 or env.w3
    chain = Chain(w3, rival or env.system.w3.eth.accounts[2])
    latest = w3.eth.get_block("latest")
    rpc(w3, "evm_setAutomine", False)
    try:
        # NOTE: room for one rival (or one of ours), never for a second transaction of 21,000
        rpc(w3, "anvil_setBlockGasLimit", hex(chain.rival_gas + 15_000))
        chain.rivals(blocks)
        rpc(w3, "evm_setIntervalMining", 1)
        yield chain
    finally:
        rpc(w3, "evm_setIntervalMining", 0)
        rpc(w3, "anvil_dropAllTransactions")
        rpc(w3, "anvil_setBlockGasLimit", hex(latest["gasLimit"]))
        _base_fee_back(w3, latest)
        rpc(w3, "evm_setAutomine", True)


def _base_fee_back(w3, block) -> None:
    """The base fee of ``block`` for the next block again. NOTE: Anvil's evm_revert does not
    restore it (measured: the pending block keeps the spiked base fee after the revert, and
    the next test's sends were refused under it)."""
    rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(block["baseFeePerGas"]))


def _session(env) -> list:
    """A funded session to make requests from; the request's command line."""
    fund(env.system, env.user, 100)
    create(env.system, env.user, 50)
    next_second(env.w3)
    return ["request", "what is 2+2?"]


def _stuck(env, args, pending: bool = True) -> str:
    """Run ``dtnsess ARGS --yes`` on the congested chain: it waits for its receipt, then exits
    10 naming the hash, which the node still holds (``pending``). Returns the hash."""
    env.proxy.seen.clear()
    res = env.cli(*args, "--yes")
    assert res.exit_code == 10, res.output
    # its wait for the block: the sync send's own, then ours (or polls, without the method)
    assert (PLAIN if SYNC in env.proxy.lacking else SYNC) in env.proxy.seen
    line = one_error(res)
    assert "not mined after" in line, line
    h = HASH.search(line).group(0)
    if pending:
        assert env.w3.eth.get_transaction(h)["blockNumber"] is None
    else:
        _never_mined(env, h)
    return h


def _family(h: str) -> list:
    from dtnsess_cli.chain.journal import Journal

    j = Journal()
    try:
        return [(e.tx_hash, e.status) for e in j.members(h)]
    finally:
        j.close()


def _never_mined(env, h: str) -> None:
    from web3.exceptions import TransactionNotFound

    try:
        got = env.w3.eth.get_transaction(h)
    except TransactionNotFound:
        return
    assert got["blockNumber"] is None, got


def test_speedup_on_a_full_chain_mines_the_replacement_not_both(env):
    args = _session(env)
    start, requests = env.nonce(), env.requests()
    with congested(env) as chain:
        h = _stuck(env, args)
        old = env.w3.eth.get_transaction(h)
        res = env.cli("tx", "speedup", h, "--priority-gas-price", "10gwei", "--yes", "--json")
        assert res.exit_code == 0, res.output
        out = load_json(res)
        new = out["transactions"][0]["tx_hash"]
        chain.next_block()
        chain.next_block()
    assert out["mined"] == "replacement" and out["replaces"] == h and new != h
    got = env.w3.eth.get_transaction(new)
    assert got["nonce"] == old["nonce"] and got["maxPriorityFeePerGas"] == 10 * GWEI
    assert env.w3.eth.get_transaction_receipt(new)["status"] == 1
    assert env.nonce() == start + 1 and env.requests() == requests + 1  # once
    _never_mined(env, h)
    assert _family(h) == [(h, "replaced"), (new, "mined")]
    view = load_json(env.cli("tx", new, "--json"))
    assert [(m["tx_hash"], m["journal"]) for m in view["family"]] == [
        (h, "replaced"), (new, "mined")]


def test_a_speedup_still_waiting_then_mined_is_not_repeated_by_a_rerun(env):
    """A speedup capped by --max-fee 1 wei below the replacement minimum is refused before
    signing. One at the minimum (+10%: less than the rival pays) is sent, but its wait for
    either variant ends with exit 10 naming both. Then the rush ends and the replacement is
    mined: a rerun of the original command finds it and sends nothing (exit 13)."""
    from dtnsess_cli.chain.replace import bump

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    with congested(env) as chain:
        h = _stuck(env, args)
        cap = bump(env.w3.eth.get_transaction(h)["maxFeePerGas"], 0)
        env.proxy.seen.clear()
        low = env.cli("tx", "speedup", h, "--max-fee", str(cap - 1), "--yes")
        assert low.exit_code == 4 and "below the replacement minimum" in one_error(low)
        assert PLAIN not in env.proxy.seen and _family(h) == [(h, "open")]  # nothing signed
        res = env.cli("tx", "speedup", h, "--max-fee", str(cap), "--yes")
        assert res.exit_code == 10, res.output
        line = one_error(res)
        new = next(x for x in HASH.findall(line) if x != h)
        assert "not mined after" in line and h in line, line
        assert env.w3.eth.get_transaction(new)["blockNumber"] is None
        chain.clear()
        chain.next_block()
        rerun = env.cli(*args, "--yes")
        chain.next_block()
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {new}" in rerun.stderr and "mined in block" in rerun.stderr
    assert env.w3.eth.get_transaction_receipt(new)["status"] == 1
    assert env.nonce() == start + 1 and env.requests() == requests + 1
    _never_mined(env, h)
    assert _family(h) == [(h, "replaced"), (new, "mined")]


def test_the_original_mined_before_the_speedup_sends_nothing(env):
    args = _session(env)
    start, requests = env.nonce(), env.requests()
    with congested(env) as chain:
        h = _stuck(env, args)
        chain.clear()  # the rush ends: the original is mined in the next block
        chain.next_block()
        env.proxy.seen.clear()
        res = env.cli("tx", "speedup", h, "--priority-gas-price", "10gwei", "--yes")
        cancel = env.cli("tx", "cancel", h, "--yes")
        sent = [m for m in env.proxy.seen if m in (PLAIN, SYNC)]
    assert res.exit_code == 4, res.output
    assert "already mined in block" in one_error(res) and "nothing sent" in res.stderr
    assert cancel.exit_code == 4 and "journal entry is mined" in one_error(cancel)
    assert sent == [] and _family(h) == [(h, "mined")]
    assert env.nonce() == start + 1 and env.requests() == requests + 1


def test_the_original_mined_while_the_replacement_goes_out(env, monkeypatch):
    """The original is mined after the speedup looked (not mined yet) and before its
    replacement reaches the node, which refuses it (nonce too low). Before: exit 5, "nonce ...
    already used by another transaction ... another wallet or program sends from this key", the
    original's entry left open. Now: the original was mined first, said so, nothing more sent."""
    from dtnsess_cli.chain import jsonrpc

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    real = jsonrpc.JsonRpc.call
    with congested(env) as chain:
        h = _stuck(env, args)

        def call(self, method, params=()):
            if method == PLAIN:  # the replacement: the block with the original comes first
                chain.clear()
                deadline = time.monotonic() + 10
                while env.w3.eth.get_transaction(h)["blockNumber"] is None:
                    assert time.monotonic() < deadline, "the original was not mined"
                    time.sleep(0.05)
            return real(self, method, params)

        env.proxy.seen.clear()
        with monkeypatch.context() as mp:
            mp.setattr(jsonrpc.JsonRpc, "call", call)
            res = env.cli("tx", "speedup", h, "--priority-gas-price", "10gwei", "--yes",
                          "--json")
        sends = env.proxy.seen.count(PLAIN) + env.proxy.seen.count(SYNC)
        chain.next_block()
    assert res.exit_code == 0, res.output
    out = load_json(res)
    assert out["mined"] == "original" and out["transactions"][0]["tx_hash"] == h
    assert sends == 1 and "another wallet" not in res.stderr
    fam = _family(h)
    assert fam[0] == (h, "mined") and [s for _, s in fam[1:]] == ["replaced"], fam
    _never_mined(env, fam[1][0])
    assert env.nonce() == start + 1 and env.requests() == requests + 1
    human = env.cli("tx", h)
    assert human.exit_code == 0 and "mined" in human.stdout


def test_cancel_with_a_max_fee_on_a_full_chain(env):
    """`tx cancel HASH --max-fee 20gwei`: the 0-value transfer to the sender is mined at the
    nonce, nothing of the request is done; the rerun of the request then does it, once."""
    args = _session(env)
    start, requests = env.nonce(), env.requests()
    with congested(env) as chain:
        h = _stuck(env, args)
        res = env.cli("tx", "cancel", h, "--max-fee", "20gwei", "--yes", "--json")
        assert res.exit_code == 0, res.output
        chain.next_block()
    out = load_json(res)
    new = out["transactions"][0]["tx_hash"]
    assert out["mined"] == "replacement" and out["replaces"] == h
    t = env.w3.eth.get_transaction(new)
    assert t["to"] == env.user and t["value"] == 0 and t["maxFeePerGas"] == 20 * GWEI
    assert env.w3.eth.get_transaction_receipt(new)["status"] == 1
    assert env.nonce() == start + 1 and env.requests() == requests  # nothing of the request
    _never_mined(env, h)
    assert _family(h) == [(h, "replaced"), (new, "mined")]
    again = env.cli(*args, "--yes")  # automine again: the rerun does it, once
    assert again.exit_code == 0, again.output
    assert env.requests() == requests + 1 and env.nonce() == start + 2


# the other wallet's fees: above what the chain asks (its tip: the rival's), under the rival's
THEIRS = RIVAL_MAX_FEE - GWEI // 10


def test_a_dearer_transaction_at_the_nonce_is_outbid_not_doubled(env):
    """Another wallet with this key holds the nonce with a dearer transaction (more than the
    chain asks now, still behind the rival): the node refuses the speedup as underpriced, for
    real; it is signed again +10% until taken, and mined (ahead of the rival, or once the rush
    is over); neither the original nor the other wallet's transaction is."""
    from eth_account import Account

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    with congested(env) as chain:
        h = _stuck(env, args)
        old = env.w3.eth.get_transaction(h)
        theirs = Account.from_key(env.key).sign_transaction({
            "to": env.user, "value": 0, "gas": 21_000, "nonce": old["nonce"], "chainId": 31337,
            "maxPriorityFeePerGas": THEIRS, "maxFeePerGas": THEIRS})
        other = env.w3.eth.send_raw_transaction(theirs.raw_transaction).hex()
        other = other if other.startswith("0x") else "0x" + other
        chain.next_block()
        assert env.w3.eth.get_transaction(other)["blockNumber"] is None

        def over() -> None:  # once ours took the other's place in the pool, the rush ends
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if rpc(env.w3, "eth_getTransactionByHash", other) is None:
                    chain.clear()
                    return
                time.sleep(0.05)

        import threading

        t = threading.Thread(target=over, daemon=True)
        t.start()
        res = env.cli("tx", "speedup", h, "--yes", "--json")
        t.join()
        chain.next_block()
    assert res.exit_code == 0, res.output
    out = load_json(res)
    new = out["transactions"][0]["tx_hash"]
    assert out["mined"] == "replacement"
    refused = res.stderr.count("as underpriced")
    assert 1 <= refused == res.stderr.count("; trying "), res.stderr
    got = env.w3.eth.get_transaction(new)
    assert got["maxFeePerGas"] > THEIRS  # what Anvil compares (measured: not the tip)
    assert env.w3.eth.get_transaction_receipt(new)["status"] == 1
    assert env.nonce() == start + 1 and env.requests() == requests + 1
    _never_mined(env, h)
    _never_mined(env, other)
    fam = _family(h)
    assert [s for _, s in fam] == ["replaced"] + ["dropped"] * refused + ["mined"], fam
    assert fam[-1][0] == new


def test_ctrl_c_while_the_send_waits_for_the_block_then_speedup(env, tmp_path):
    """A user's Ctrl-C while `dtnsess request` waits for its block (a real process; the sync
    send holds the reply until the block): exit 130 naming the hash, the journal entry open.
    `tx speedup` then gets it mined, once."""
    import signal
    import subprocess

    from test_faults_send import SCRIPT, one_error_text, script_env

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    with congested(env) as chain:
        p = subprocess.Popen([str(SCRIPT), *args, "--yes"], env=script_env(env), cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while env.w3.eth.get_transaction_count(env.user, "pending") == start:
                assert time.monotonic() < deadline and p.poll() is None, "nothing sent"
                time.sleep(0.05)
            chain.next_block()  # a block went by without it
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 130, err
        assert "Traceback" not in err and env.key[2:] not in out + err
        line = one_error_text(err)
        h = HASH.search(line).group(0)
        assert "interrupted" in line and f"dtnsess tx {h}" in err
        assert _family(h) == [(h, "open")]
        res = env.cli("tx", "speedup", h, "--priority-gas-price", "10gwei", "--yes", "--json")
        assert res.exit_code == 0, res.output
    new = load_json(res)["transactions"][0]["tx_hash"]
    assert env.w3.eth.get_transaction_receipt(new)["status"] == 1
    assert env.nonce() == start + 1 and env.requests() == requests + 1
    _never_mined(env, h)
    assert _family(h) == [(h, "replaced"), (new, "mined")]


def test_speeding_up_the_second_of_two_stuck_transactions(env):
    """`create` on a full chain: its approval (nonce N) and create (N+1) both wait. A speedup
    of the create alone cannot be mined before the approval: it says so before it is sent.
    The approval sped up too, both are mined; the rerun of `create` repeats nothing."""
    fund(env.system, env.user, 100, approve=False)
    start, sessions = env.nonce(), len(env.sessions())
    with congested(env) as chain:
        res = env.cli("create", "20", "--yes")
        assert res.exit_code == 10, res.output
        line = one_error(res)
        h_approve, h_create = HASH.findall(line)[:2]  # the approval's wait, "also" the create
        assert env.w3.eth.get_transaction(h_approve)["nonce"] == start
        second = env.cli("tx", "speedup", h_create, "--priority-gas-price", "10gwei", "--yes")
        assert second.exit_code == 10, second.output
        assert (f"nonce {start} of" in second.stderr and h_approve in second.stderr
                and "cannot be mined before" in second.stderr), second.stderr
        first = env.cli("tx", "speedup", h_approve, "--priority-gas-price", "10gwei", "--yes")
        assert first.exit_code == 0, first.output
        assert "cannot be mined before" not in first.stderr
        rerun = env.cli("create", "20", "--yes")
        chain.next_block()
    assert rerun.exit_code == 13, rerun.output
    assert env.nonce() == start + 2 and len(env.sessions()) == sessions + 1
    _never_mined(env, h_create)
    _never_mined(env, h_approve)
    assert [s for _, s in _family(h_create)] == ["replaced", "mined"]
    assert [s for _, s in _family(h_approve)] == ["replaced", "mined"]


def test_replaced_by_another_wallet_while_the_sync_send_waits(env):
    """While `dtnsess request` waits in the sync send for its block, another wallet with this
    key replaces it (a dearer transfer at its nonce, mined ahead of the rival). The send's
    wait ends; the node no longer knows ours, its own bytes are refused (nonce used): the
    command says another transaction took the nonce and the request is not found mined; the
    entry stays open (after a lost reply the nonce's transaction may be ours, on a node whose
    lookups lag), and a rerun looks it up again, finds it replaced and sends the request, once."""
    import threading

    from eth_account import Account

    from dtnsess_cli.chain.broadcast import LOOKUP_BACKOFF

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    theirs: list = []

    def other_wallet() -> None:
        deadline = time.monotonic() + 20
        while env.w3.eth.get_transaction_count(env.user, "pending") == start:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        signed = Account.from_key(env.key).sign_transaction({
            "to": env.user, "value": 0, "gas": 21_000, "nonce": start, "chainId": 31337,
            "maxPriorityFeePerGas": 10 * GWEI, "maxFeePerGas": 20 * GWEI})
        theirs.append(env.w3.eth.send_raw_transaction(signed.raw_transaction))

    env.proxy.seen.clear()
    with congested(env) as chain:
        t = threading.Thread(target=other_wallet, daemon=True)
        t.start()
        res = env.cli(*args, "--yes")
        t.join()
        chain.clear()
    assert theirs and env.w3.eth.get_transaction_receipt(theirs[0])["status"] == 1
    assert res.exit_code == 5, res.output
    line = one_error(res)
    assert f"nonce {start} of" in line and "already used by another transaction" in line, line
    assert "not found mined" in line and "another wallet or program" in res.stderr
    assert "reply to the send was lost" not in res.stderr
    h = HASH.search(line).group(0)
    # its own bytes when the node lost them, and again while the node says the nonce is used
    # (in case it was ours, mined meanwhile: looked up each time)
    assert env.proxy.seen.count(PLAIN) == len(LOOKUP_BACKOFF)
    assert env.nonce() == start + 1 and env.requests() == requests  # theirs, not ours
    assert _family(h) == [(h, "open")]
    again = env.cli(*args, "--yes")
    assert again.exit_code == 0, again.output
    assert "never mined, its nonce went to another transaction" in again.stderr
    assert _family(h) == [(h, "replaced")]
    assert env.requests() == requests + 1 and env.nonce() == start + 2


def test_ctrl_c_while_the_speedup_waits_names_the_family(env, monkeypatch):
    """Ctrl-C while the speedup waits for either variant: exit 130 naming both (before: only
    the replacement); both stay open. The rerun of the request waits for the family, finds
    the replacement mined and sends nothing."""
    from dtnsess_cli.chain import jsonrpc

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    real = jsonrpc.JsonRpc.batch

    def batch(self, calls):
        if len(calls) == 2 and all(m == "eth_getTransactionReceipt" for m, _ in calls):
            raise KeyboardInterrupt  # the family's receipt poll
        return real(self, calls)

    with congested(env) as chain:
        h = _stuck(env, args)
        with monkeypatch.context() as mp:
            mp.setattr(jsonrpc.JsonRpc, "batch", batch)
            res = env.cli("tx", "speedup", h, "--priority-gas-price", "10gwei", "--yes")
        assert res.exit_code == 130, res.output
        line = one_error(res)
        new = next(x for x in HASH.findall(line) if x != h)
        assert f"(of it or {h}, at the same nonce)" in line and "interrupted while" in line
        assert _family(h) == [(h, "open"), (new, "open")]
        rerun = env.cli(*args, "--yes")
        chain.next_block()
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {new}" in rerun.stderr and "mined in block" in rerun.stderr
    assert env.nonce() == start + 1 and env.requests() == requests + 1
    _never_mined(env, h)
    assert _family(h) == [(h, "replaced"), (new, "mined")]


@contextmanager
def fee_spike(env, send: str = SYNC):
    """A block every second, and the base fee x100 in the block after our send: Anvil drops our
    transaction then (its max fee is under the base fee; measured: it never keeps it pending).
    NOTE: Anvil checks a send against the next block's base fee, so the raise comes after it,
    the miner paused meanwhile (no block may come between them)."""
    import threading

    from dtnsess_cli.chain import jsonrpc
    from web3 import Web3

    w3 = env.w3
    real = jsonrpc.JsonRpc.call
    latest = w3.eth.get_block("latest")

    def spike(h: str) -> None:
        deadline = time.monotonic() + 10
        while rpc(w3, "eth_getTransactionByHash", h) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        base = w3.eth.get_block("latest")["baseFeePerGas"]
        rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(100 * max(base, GWEI)))
        rpc(w3, "evm_setIntervalMining", 1)

    def call(self, method, params=()):
        if method == send:
            rpc(w3, "evm_setIntervalMining", 0)
            threading.Thread(target=spike, args=(Web3.keccak(hexstr=params[0]).hex(),),
                             daemon=True).start()
        return real(self, method, params)

    rpc(w3, "evm_setAutomine", False)
    try:
        rpc(w3, "evm_setIntervalMining", 1)
        yield call
    finally:
        rpc(w3, "evm_setIntervalMining", 0)
        rpc(w3, "anvil_dropAllTransactions")
        _base_fee_back(w3, latest)
        rpc(w3, "evm_setAutomine", True)


def test_a_fee_spike_that_makes_the_node_drop_it(env, monkeypatch):
    """The base fee jumps above the request's max fee in the next block: Anvil drops it. The
    send's wait ends, its own bytes are refused (under the base fee): a one-line error, the
    entry dropped; `tx speedup` has nothing to replace; the rerun sends it at today's fees,
    once. Before: exit 10, "the node's reply to the send was lost ... may still be mined",
    after sending its refused bytes three times."""
    from dtnsess_cli.chain import jsonrpc

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    with fee_spike(env) as call:
        with monkeypatch.context() as mp:
            mp.setattr(jsonrpc.JsonRpc, "call", call)
            res = env.cli(*args, "--yes")
        assert res.exit_code == 5, res.output
        line = one_error(res)
        h = HASH.search(line).group(0)
        assert "max fee per gas less than block base fee" in line, line
        assert "nothing of it was done" in line and "run the command again" in res.stderr
        assert _family(h) == [(h, "dropped")]
        speed = env.cli("tx", "speedup", h, "--yes")
        assert speed.exit_code == 4 and "journal entry is dropped" in one_error(speed)
        again = env.cli(*args, "--yes", "--json")
        assert again.exit_code == 0, again.output
    new = load_json(again)["transactions"][0]["tx_hash"]
    assert env.w3.eth.get_transaction(new)["nonce"] == start  # the nonce the dropped one had
    assert env.nonce() == start + 1 and env.requests() == requests + 1
    _never_mined(env, h)


def test_on_a_devnet_up_with_block_time(devnet_dir):
    """The same on `dtnsess devnet up --block-time 1` (its Anvil, its responder, its state
    file), as a user runs it: a request stuck on the full chain, `tx speedup` mines it once."""
    import os
    import subprocess

    from test_devnet import DTNSESS
    from test_devnet import Chain as Devnet
    from test_devnet import devnet_up

    def run(*args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("DTNSESS_") and k != "ETH_RPC_URL"}
        env.update(DTNSESS_STATE_DIR=os.environ["DTNSESS_STATE_DIR"],
                   DTNSESS_RECEIPT_TIMEOUT="3")
        return subprocess.run([DTNSESS, *args], cwd=devnet_dir, env=env, capture_output=True,
                              text=True, timeout=60)

    state = devnet_up(devnet_dir, "--block-time", "1")
    net = Devnet(state)
    user = net.account(1)  # the devnet's default key
    made = run("create", "50", "--yes")
    assert made.returncode == 0, made.stderr
    start = net.w3.eth.get_transaction_count(user)
    requests = net.manager.functions.getUserRequests(user, 0, 100).call()[1]
    with congested(None, w3=net.w3, rival=net.account(2)):
        stuck = run("request", "what is 2+2?", "--yes")
        assert stuck.returncode == 10, stuck.stderr
        h = HASH.search(stuck.stderr).group(0)
        res = run("tx", "speedup", h, "--priority-gas-price", "10gwei", "--yes", "--json")
        assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    new = out["transactions"][0]["tx_hash"]
    assert out["mined"] == "replacement" and out["replaces"] == h
    assert net.w3.eth.get_transaction_receipt(new)["status"] == 1
    assert net.w3.eth.get_transaction_count(user) == start + 1
    assert net.manager.functions.getUserRequests(user, 0, 100).call()[1] == requests + 1
    view = json.loads(run("tx", h, "--json").stdout)
    assert [(m["tx_hash"], m["journal"]) for m in view["family"]] == [
        (h, "replaced"), (new, "mined")]


def test_a_fee_spike_on_a_node_without_the_sync_send_then_cancel(env, monkeypatch):
    """The same spike where the node lacks eth_sendRawTransactionSync: the receipt is polled
    until the deadline (exit 10, the entry open: nothing tells the poll that the node dropped
    it). `tx cancel` then goes out at the fees the chain asks now and is mined; the original,
    which the node no longer holds, never is."""
    from dtnsess_cli.chain import jsonrpc

    env.proxy.lacking.add(SYNC)
    args = _session(env)
    start, requests = env.nonce(), env.requests()
    with fee_spike(env, PLAIN) as call:
        with monkeypatch.context() as mp:
            mp.setattr(jsonrpc.JsonRpc, "call", call)
            h = _stuck(env, args, pending=False)
        base = env.w3.eth.get_block("latest")["baseFeePerGas"]
        res = env.cli("tx", "cancel", h, "--yes", "--json")
        assert res.exit_code == 0, res.output
    out = load_json(res)
    new = out["transactions"][0]["tx_hash"]
    assert out["mined"] == "replacement"
    assert env.w3.eth.get_transaction(new)["maxFeePerGas"] > base  # today's fees, not +10%
    assert env.w3.eth.get_transaction_receipt(new)["status"] == 1
    assert env.nonce() == start + 1 and env.requests() == requests
    _never_mined(env, h)
    assert _family(h) == [(h, "replaced"), (new, "mined")]



def test_a_speedup_while_the_command_still_waits_takes_its_turn(env, tmp_path):
    """`dtnsess tx speedup HASH` from a second terminal while `dtnsess request` still waits for
    its block (real processes, one key): the speedup waits for the sender lock, says so, and
    goes once the request's wait ends (exit 10); its replacement is mined, once."""
    import subprocess

    from dtnsess_cli.chain.journal import Journal
    from test_faults_send import SCRIPT, script_env

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    penv = dict(script_env(env), DTNSESS_RECEIPT_TIMEOUT="4")
    with congested(env):
        first = subprocess.Popen([str(SCRIPT), *args, "--yes"], env=penv, cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            h = None
            while h is None:  # journaled before it is sent
                assert time.monotonic() < deadline and first.poll() is None, "nothing sent"
                j = Journal()
                try:
                    h = next((e.tx_hash for e in j.open_all()), None)
                finally:
                    j.close()
                time.sleep(0.05)
            second = subprocess.run(
                [str(SCRIPT), "tx", "speedup", h, "--priority-gas-price", "10gwei", "--yes",
                 "--json"], env=penv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
            err = first.communicate(timeout=30)[1]
        finally:
            if first.poll() is None:
                first.kill()
    assert first.returncode == 10 and h in err, err
    assert second.returncode == 0, second.stderr
    assert "waiting for another dtnsess process" in second.stderr
    new = json.loads(second.stdout)["transactions"][0]["tx_hash"]
    assert env.w3.eth.get_transaction_receipt(new)["status"] == 1
    assert env.nonce() == start + 1 and env.requests() == requests + 1
    _never_mined(env, h)
    assert _family(h) == [(h, "replaced"), (new, "mined")]


def test_a_lagging_lookup_after_a_lost_reply_is_not_a_taken_nonce(env, monkeypatch):
    """The send's reply is lost after the node mined the request, and the lookups by hash hit
    a node that has not seen it yet (a lagging backend behind a load balancer): its own bytes
    are refused (nonce too low), and it is looked up again before the nonce is called taken;
    found, the command succeeds, once. (With the first refusal taken as final, the journal
    said "replaced" and the rerun would have sent the request again.)"""
    from dtnsess_cli.chain import jsonrpc

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    real = jsonrpc.JsonRpc.call
    lagging = [2]

    def call(self, method, params=()):
        if method == "eth_getTransactionByHash" and lagging[0]:
            lagging[0] -= 1
            return None
        return real(self, method, params)

    env.proxy.fault(SYNC, "drop_after")
    with monkeypatch.context() as mp:
        mp.setattr(jsonrpc.JsonRpc, "call", call)
        res = env.cli(*args, "--yes", "--json")
    assert res.exit_code == 0, res.output
    h = load_json(res)["transactions"][0]["tx_hash"]
    assert env.proxy.seen.count(PLAIN) == 2 and lagging == [0]
    assert env.nonce() == start + 1 and env.requests() == requests + 1
    assert _family(h) == [(h, "mined")]


def test_a_lookup_lagging_past_every_retry_leaves_the_entry_open(env, monkeypatch):
    """As above, but the node's lookups lag past every retry: the command cannot tell its own
    mined request from another wallet's transaction at the nonce. The entry stays open (taken
    as replaced, the rerun would have sent the request a second time); the rerun looks it up
    again, finds it mined and does not repeat it."""
    from dtnsess_cli.chain import jsonrpc

    args = _session(env)
    start, requests = env.nonce(), env.requests()
    real = jsonrpc.JsonRpc.call

    def call(self, method, params=()):
        if method == "eth_getTransactionByHash":
            return None
        return real(self, method, params)

    env.proxy.fault(SYNC, "drop_after")
    with monkeypatch.context() as mp:
        mp.setattr(jsonrpc.JsonRpc, "call", call)
        res = env.cli(*args, "--yes")
    assert res.exit_code == 5, res.output
    line = one_error(res)
    h = HASH.search(line).group(0)
    assert "as far as the node shows" in line and "not found mined" in line, line
    assert env.nonce() == start + 1 and env.requests() == requests + 1  # ours was mined
    assert _family(h) == [(h, "open")]
    again = env.cli(*args, "--yes")
    assert again.exit_code != 0 and "not repeated" in again.stderr, again.output
    assert env.nonce() == start + 1 and env.requests() == requests + 1  # not sent again
    assert _family(h) == [(h, "mined")]
