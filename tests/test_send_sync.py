"""The send answered with its receipt: eth_sendRawTransactionSync (EIP-7966), issue 19 item 4.

Anvil (node_modules) has the method: it answers with the receipt once the transaction is mined,
holds the request until the block with a block time, and answers -32603 "Transaction
confirmation timeout" after 30 s when nothing is mined. Each outcome of the send, through
tests/faultproxy.py where a reply is injected: the receipt (no poll), a node without the method
(the same bytes sent plainly at once, and the URL remembered), the node's own wait ending (the
receipt polled), a refusal, Ctrl-C, a block time, no mining under a short receipt timeout.
The lost replies are in tests/test_faults_send.py.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import pytest

from cli_helpers import count_round_trips, load_json
from helpers import journal_status, mine, no_automine, rpc
from test_faults_send import (HASH, PLAIN, SYNC, _request, _request_ok, env,  # noqa: F401
                              one_error, open_entries)


def tx_hash_of(res) -> str:
    return load_json(res)["transactions"][0]["tx_hash"]


@contextmanager
def block_time(w3, seconds: int):
    """Anvil's --block-time: a block every ``seconds``, not one per transaction."""
    rpc(w3, "evm_setAutomine", False)
    rpc(w3, "evm_setIntervalMining", seconds)
    try:
        yield
    finally:
        rpc(w3, "evm_setIntervalMining", 0)
        rpc(w3, "evm_setAutomine", True)


def test_the_receipt_comes_with_the_send(env, monkeypatch):
    """(a) One round trip for the send and its receipt; the journal says mined."""
    args, _ = _request(env)
    before = env.truth()
    with count_round_trips(monkeypatch) as rt:
        res = env.cli(*args, "--yes", "--json")
    assert res.exit_code == 0, res.output
    h = tx_hash_of(res)
    assert rt.methods[-1] == SYNC and PLAIN not in rt.methods, rt
    assert not any("eth_getTransactionReceipt" in m for m in rt.methods), rt
    _request_ok(env, before, env.truth())
    assert journal_status(h) == "mined" and open_entries(env) == []


@pytest.mark.parametrize("answer", [
    "lacking",  # -32601, as most nodes without the method
    "Unsupported method: eth_sendRawTransactionSync",  # the words, under another code
])
def test_a_node_without_the_method_gets_the_same_bytes_at_once(env, tmp_path, answer):
    """(b) The node did nothing: the same signed transaction goes out with
    eth_sendRawTransaction at once (one transaction, one hash), its receipt is polled; the URL
    is remembered as lacking the method (chains.json, with the chain; never the URL itself),
    so the next command does not ask."""
    if answer == "lacking":
        env.proxy.lacking.add(SYNC)
    else:
        env.proxy.fault(SYNC, "rpcerror_before", code=-32000, message=answer, times=100)
    args, _ = _request(env)
    before = env.truth()
    res = env.cli(*args, "--yes", "--json")
    assert res.exit_code == 0, res.output
    h = tx_hash_of(res)
    assert env.proxy.seen.count(SYNC) == 1
    sync_at = env.proxy.seen.index(SYNC)
    assert env.proxy.seen[sync_at + 1] == PLAIN
    assert "eth_getTransactionReceipt" in env.proxy.seen[sync_at + 2:]
    _request_ok(env, before, env.truth())  # once
    assert journal_status(h) == "mined"
    text = (tmp_path / "state" / "chains.json").read_text()
    assert SYNC in text and env.proxy.url not in text and "127.0.0.1" not in text
    (entry,) = json.loads(text).values()
    assert entry[0] == 31337 and entry[1].startswith("0x") and entry[2:] == [SYNC]

    approve = env.cli("approve", "10", "--yes")
    assert approve.exit_code == 0, approve.output
    assert env.proxy.seen.count(SYNC) == 1  # remembered: not asked again
    assert env.proxy.seen.count(PLAIN) == 2


def test_method_not_found_after_the_node_ran_it_is_still_one_transaction(env):
    """A "method not found" that is not true (a gateway's, after the node ran the send): the
    plain resend of the same bytes meets the mined transaction (nonce too low, found by its
    hash): one transaction, the command succeeds."""
    args, _ = _request(env)
    before = env.truth()
    env.proxy.fault(SYNC, "method_error", message="Method not found")
    res = env.cli(*args, "--yes", "--json")
    assert res.exit_code == 0, res.output
    assert env.proxy.fired == [(SYNC, "method_error")] and env.proxy.seen.count(PLAIN) == 1
    _request_ok(env, before, env.truth())
    assert journal_status(tx_hash_of(res)) == "mined"


def test_the_memory_goes_with_the_chain(env, tmp_path):
    """What is noted as lacking is of the chain behind the URL: another chain there (a node
    restarted, a new devnet) is asked again."""
    from dtnsess_cli.chain.journal import lacking, remember_chain

    state = tmp_path / "state"
    url, chain = env.proxy.url, (31337, "0x" + "11" * 32)
    remember_chain(url, chain, state, lacks=SYNC)
    assert lacking(url, chain, state) == {SYNC}
    remember_chain(url, chain, state)  # the same chain seen again: still known
    assert lacking(url, chain, state) == {SYNC}
    assert lacking(url, (31337, "0x" + "22" * 32), state) == frozenset()
    remember_chain(url, (31337, "0x" + "22" * 32), state)
    assert lacking(url, chain, state) == frozenset()
    assert lacking("http://other:8545", chain, state) == frozenset()


@pytest.mark.parametrize("code,message", [
    (4, "The transaction was added to the mempool but wasn't processed in 2s."),  # EIP-7966
    (-32603, "Transaction confirmation timeout"),  # Anvil's, after its 30 s
])
def test_the_nodes_own_wait_ending_is_polled(env, monkeypatch, code, message):
    """(c) The node took the transaction but ended its wait before a receipt: the receipt is
    polled (nothing is sent again), and the command succeeds."""
    args, _ = _request(env)
    before = env.truth()
    env.proxy.fault(SYNC, "rpcerror_after", code=code, message=message)
    with count_round_trips(monkeypatch) as rt:
        res = env.cli(*args, "--yes", "--json")
    assert res.exit_code == 0, res.output
    assert env.proxy.fired == [(SYNC, "rpcerror_after")]
    assert PLAIN not in rt.methods and rt.methods.count(SYNC) == 1, rt
    assert rt.methods[-1] == "eth_getTransactionReceipt", rt
    _request_ok(env, before, env.truth())
    assert journal_status(tx_hash_of(res)) == "mined"


@pytest.mark.parametrize("message,code,said", [
    ("insufficient funds for gas * price + value", 8, "not enough ETH for gas"),
    ("transaction type not supported", 5, "transaction type not supported"),  # not the method
])
def test_a_refusal_is_not_sent_again(env, message, code, said):
    """(e) The node refused the transaction: the error is shown, the journal says dropped,
    nothing else is sent (the plain method neither)."""
    args, _ = _request(env)
    before = env.truth()
    env.proxy.fault(SYNC, "rpcerror_before", message=message)
    res = env.cli(*args, "--yes")
    assert res.exit_code == code, res.output
    assert said in one_error(res)
    assert PLAIN not in env.proxy.seen
    assert env.truth() == before and open_entries(env) == []


def test_a_receipt_that_reverted_is_reported_with_its_reason(env, monkeypatch):
    """The sync send's receipt says status 0 (the chain changed between the simulation and the
    block: the owner raised the minimum balance): exit 7 with the decoded reason and the hash,
    the journal says failed, nothing is sent again."""
    from dtnsess_cli.chain import jsonrpc
    from helpers import fund

    m = env.system.manager.functions
    fund(env.system, env.user, 100)
    before = env.truth()
    real = jsonrpc.JsonRpc.call

    def call(self, method, params=()):
        if method == SYNC:  # the owner's transaction gets in first
            m.updateConfig(30 * 10 ** env.system.decimals, m.maxSessionAge().call(),
                           m.sessionPoolSize().call()).transact({"from": env.system.deployer})
        return real(self, method, params)

    with monkeypatch.context() as mp:
        mp.setattr(jsonrpc.JsonRpc, "call", call)
        res = env.cli("create", "20", "--yes")
    assert res.exit_code == 7, res.output
    line = one_error(res)
    h = HASH.search(line).group(0)
    assert "BalanceTooLow" in line or "minimum" in line.lower(), line
    assert env.w3.eth.get_transaction_receipt(h)["status"] == 0
    assert journal_status(h) == "failed"
    after = env.truth()
    assert after[:4] == before[:4] and after[4] == before[4] + 1  # one transaction, reverted
    assert env.proxy.seen.count(SYNC) == 1 and PLAIN not in env.proxy.seen


def test_not_ready_is_pending_not_dropped(env):
    """EIP-7966's code 5: the node holds the transaction but cannot run it yet. Exit 10 naming
    the hash, the journal entry open (never "dropped"); here the node never got it, so the
    rerun sends its own bytes again and does not repeat the request."""
    args, _ = _request(env)
    before = env.truth()
    env.proxy.fault(SYNC, "rpcerror_before", code=5, message=(
        "The transaction was added to the mempool but wasn't processed due to a missing nonce "
        "or insufficient funds."))
    res = env.cli(*args, "--yes")
    assert res.exit_code == 10, res.output
    line = one_error(res)
    h = HASH.search(line).group(0)
    assert "cannot run it yet" in line and "missing nonce" in line
    assert [e.tx_hash for e in open_entries(env)] == [h] and PLAIN not in env.proxy.seen
    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {h}" in rerun.stderr and "mined in block" in rerun.stderr
    _request_ok(env, before, env.truth())


def test_ctrl_c_during_the_sync_send_names_the_hash(env, monkeypatch):
    """(f) Ctrl-C while the send waits: exit 130 naming the hash, the journal entry open; the
    rerun sends that transaction's own bytes (not a new one) and does not repeat the request."""
    from dtnsess_cli.chain import jsonrpc

    args, _ = _request(env)
    before = env.truth()
    real = jsonrpc.JsonRpc.call

    def call(self, method, params=()):
        if method == SYNC:
            raise KeyboardInterrupt
        return real(self, method, params)

    with monkeypatch.context() as mp:
        mp.setattr(jsonrpc.JsonRpc, "call", call)
        res = env.cli(*args, "--yes")
    assert res.exit_code == 130, res.output
    line = one_error(res)
    h = HASH.search(line).group(0)
    assert "interrupted while sending it and waiting for its block" in line
    assert [e.tx_hash for e in open_entries(env)] == [h]
    assert env.truth() == before
    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {h}" in rerun.stderr and "mined in block" in rerun.stderr
    _request_ok(env, before, env.truth())


def test_with_a_block_time_the_send_holds_until_the_block(env, monkeypatch):
    """With a block every 2 s the sync send waits for the block (longer than the RPC timeout
    of 1 s: its own timeout is the receipt timeout), and no receipt is polled."""
    args, _ = _request(env)
    before = env.truth()
    with block_time(env.w3, 2), count_round_trips(monkeypatch) as rt:
        start = time.monotonic()
        res = env.cli(*args, "--yes", "--json")
        took = time.monotonic() - start
    assert res.exit_code == 0, res.output
    assert rt.methods[-1] == SYNC and rt.methods.count(SYNC) == 1, rt
    assert not any("eth_getTransactionReceipt" in m for m in rt.methods), rt
    assert "reply to the send was lost" not in res.stderr
    assert took < 3.5
    _request_ok(env, before, env.truth())
    assert journal_status(tx_hash_of(res)) == "mined"


def test_over_ipc_the_send_waits_for_the_block_too(env, anvil, private_keys, monkeypatch):
    """The IPC transport's per-request timeout (1 s here) is raised for the sync send as the
    HTTP one is: the send waits for the 2 s block instead of being taken for a lost reply."""
    from cli_helpers import Cli

    args, _ = _request(env)
    before = env.truth()
    cli = Cli(env.system, private_keys, monkeypatch, anvil.ipc_path)
    with block_time(env.w3, 2):
        res = cli(*args, "--yes")
    assert res.exit_code == 0, res.output
    assert "reply to the send was lost" not in res.stderr
    _request_ok(env, before, env.truth())


def test_no_mining_our_deadline_names_the_hash_and_nothing_is_sent_twice(env):
    """Nothing mined, the node's wait (30 s) longer than the receipt timeout (3 s): the send
    ends at ours; the transaction is found in the node; exit 10 names the hash, the entry stays
    open. A rerun waits for it and sends nothing; once mined, the rerun reports it and does
    not repeat the request."""
    args, _ = _request(env)
    before = env.truth()
    with no_automine(env.w3):
        start = time.monotonic()
        res = env.cli(*args, "--yes")
        took = time.monotonic() - start
        assert res.exit_code == 10, res.output
        line = one_error(res)
        h = HASH.search(line).group(0)
        assert "nonce" in line and f"dtnsess tx {h}" in res.stderr
        assert "not mined after 3s" in line and "reply to the send was lost" not in res.stderr
        assert took < 10  # ours, not the node's 30 s
        assert env.w3.eth.get_transaction(h)  # the node holds it
        assert [e.tx_hash for e in open_entries(env)] == [h]
        assert env.proxy.seen.count(SYNC) == 1 and PLAIN not in env.proxy.seen
        pending = env.w3.eth.get_transaction_count(env.user, "pending")
        again = env.cli(*args, "--yes")
        assert again.exit_code == 10, again.output
        assert "still pending" in one_error(again) and h in again.stderr
        assert env.w3.eth.get_transaction_count(env.user, "pending") == pending  # nothing new
    mine(env.w3)
    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {h}" in rerun.stderr and "mined in block" in rerun.stderr
    _request_ok(env, before, env.truth())
    assert open_entries(env) == []


def test_the_async_client_waits_for_the_block_in_the_send(anvil, w3, system6, private_keys,
                                                           user, tmp_path, monkeypatch):
    """The async client's HTTP transport: the sync send waits for the 2 s block past its RPC
    timeout of 1 s (the receipt timeout is the send's), on the loop; no lookup, no poll."""
    import asyncio

    from dtnsess_cli import AsyncClient, signer_from_key

    async def main():
        async with AsyncClient(anvil.url, system6.manager.address,
                               signer=signer_from_key(private_keys[1]),
                               state_dir=tmp_path / "state", rpc_timeout=1,
                               receipt_timeout=5) as client:
            return await client.approve("10")

    with block_time(w3, 2), count_round_trips(monkeypatch) as rt:
        res = asyncio.run(main())
    assert res.tx_hashes and w3.eth.get_transaction_receipt(res.tx_hashes[-1])["status"] == 1
    assert rt.methods.count(SYNC) == 1 and PLAIN not in rt.methods, rt
    assert not any(m.startswith(("eth_getTransactionByHash", "eth_getTransactionReceipt"))
                   for m in rt.methods), rt
    assert system6.token.functions.allowance(user, system6.manager.address).call() \
        == 10 * 10 ** system6.decimals
