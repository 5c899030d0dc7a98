"""Issue 15's leftovers in the send path (issue 19, item 2):

- a journal entry an older dtnsess wrote (no genesis, no anchor) is of a chain that cannot be
  told: never re-broadcast on, nor resolved against, this one; `dtnsess tx` and `journal list`
  name it (a write does not: nothing it does changes the entry); a rerun of its command is
  refused; `dtnsess journal forget --legacy` clears it;
- the sender lock is per (chain, key): one key writes on two chains at once, and two writes on
  one chain still take turns;
- Ctrl-C between the broadcasts of a batched send names every hash that may have been sent.

Each test failed before its fix (see the docstrings).
"""

from __future__ import annotations

import sqlite3

import pytest

from cli_helpers import Cli, load_json
from helpers import create, fund, next_second
from test_faults_chains import (  # noqa: F401 - env is a fixture
    HASH, _lost_request_on_a, env, genesis_of, one_error, open_entries, requests_of)


@pytest.fixture(scope="module")
def chain_c(tmp_path_factory, accounts):
    """A second Anvil with the same chain id (31337), its own deployment, and a genesis of its
    own (another genesis timestamp: two Anvils started in one second share their genesis)."""
    from web3 import Web3

    from dtnsess_cli.devnet import localdtn
    from dtnsess_cli.devnet.anvil import AnvilProcess

    node = AnvilProcess()
    try:
        node.start(log_path=tmp_path_factory.mktemp("anvil-c") / "anvil.log",
                   extra_args=["--timestamp", "1700000000"])
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        system = localdtn.deploy_system(w3, accounts[0], decimals=6, worker=accounts[3])
        yield node, w3, system
    finally:
        node.stop()


def _make_legacy(tx_hash: str) -> None:
    """Turn a journal entry into one an older dtnsess wrote: no genesis, no anchor."""
    from dtnsess_cli.chain.journal import state_dir

    db = sqlite3.connect(str(state_dir() / "journal.sqlite3"))
    try:
        db.execute("UPDATE txs SET genesis = NULL, anchor_block = NULL, anchor_hash = NULL "
                   "WHERE tx_hash = ?", (tx_hash,))
        db.commit()
    finally:
        db.close()


def _legacy_open(sender: str) -> list:
    from dtnsess_cli.chain.journal import Journal

    j = Journal()
    try:
        return [e.tx_hash for e in j.open_legacy(sender)]
    finally:
        j.close()


def test_a_legacy_entry_is_never_rebroadcast_nor_resolved(env, chain_c, system6, w3, user,
                                                          private_keys, monkeypatch):
    """Before: an entry without genesis and anchor was of every chain with its id: the write on
    another chain (same id) re-broadcast it there, or resolved it against that chain. Now it is
    left alone on both chains; a rerun of its command is refused; `journal forget --legacy`
    forgets it."""
    node_c, w3_c, system_c = chain_c
    assert genesis_of(w3_c) != genesis_of(w3)
    h = _lost_request_on_a(env, system6, w3, user)
    _make_legacy(h)

    fund(system_c, user, 100)
    create(system_c, user, 50)
    next_second(w3_c)
    snap = w3_c.provider.make_request("evm_snapshot", [])["result"]
    try:
        before_c = w3_c.eth.get_transaction_count(user)
        on_c = Cli(system_c, private_keys, monkeypatch, node_c.url)
        res = on_c("request", "what is 3+3?", "--yes", "--json")
        assert res.exit_code == 0, res.output
        assert h not in res.stderr and "older dtnsess" not in res.stderr  # not named
        assert w3_c.eth.get_transaction_count(user) == before_c + 1  # its own request only
        with pytest.raises(Exception):
            w3_c.eth.get_transaction(h)  # never re-broadcast here
        shown = load_json(on_c("tx", h, "--json"))
        assert shown["journal"] == "open" and shown["other_chain"] is False
        assert "older dtnsess" in shown["journal_chain"]
    finally:
        w3_c.provider.make_request("evm_revert", [snap])

    _, cli = env
    # on its own chain too: the node has it mined, but a legacy entry's chain cannot be told
    shown = cli.json("tx", h)
    assert shown["status"] == "mined" and shown["journal"] == "open"
    rerun = cli("request", "what is 2+2?", "--yes")
    assert rerun.exit_code == 13, rerun.output  # refused: its earlier run's outcome is unknown
    assert h in one_error(rerun.stderr) and "journal forget --legacy" in rerun.stderr
    assert requests_of(system6, user) == 1 and _legacy_open(user) == [h]

    assert cli("journal", "forget").exit_code == 2  # GENESIS or --legacy
    out = cli.json("journal", "forget", "--legacy")
    assert [e["tx_hash"] for e in out["forgotten"]] == [h] and _legacy_open(user) == []
    assert cli.json("tx", h)["journal"] == "forgotten"
    again = cli("request", "what is 2+2?", "--yes")
    assert again.exit_code == 0 and "older dtnsess" not in again.stderr, again.output


def test_a_legacy_entry_does_not_hold_up_every_write(env, system6, w3, user):
    """Before: an open legacy entry counted as open (``Journal.has_open``), so every write
    looked up the chain for it and named it, until `journal forget --legacy`. Now a write
    neither names it nor makes a round trip for it; `dtnsess tx` and `journal list` show it,
    `journal forget --legacy` still clears it."""
    proxy, cli = env
    h = _lost_request_on_a(env, system6, w3, user)
    _make_legacy(h)
    proxy.seen.clear()
    res = cli("approve", "1", "--yes")
    assert res.exit_code == 0, res.output
    assert h not in res.stderr and "older dtnsess" not in res.stderr, res.stderr
    with_legacy = len(proxy.seen)
    shown = cli.json("tx", h)
    assert shown["journal"] == "open" and "older dtnsess" in shown["journal_chain"]
    listed = cli("journal", "list")
    assert listed.exit_code == 0 and h in listed.stdout, listed.output
    assert "journal forget --legacy" in listed.stdout
    assert [(e["tx_hash"], e["legacy"]) for e in cli.json("journal", "list")["open"]] == [
        (h, True)]
    out = cli.json("journal", "forget", "--legacy")
    assert [e["tx_hash"] for e in out["forgotten"]] == [h] and _legacy_open(user) == []
    assert cli.json("journal", "list")["open"] == []
    proxy.seen.clear()
    assert cli("approve", "2", "--yes").exit_code == 0
    assert with_legacy == len(proxy.seen), proxy.seen  # the same trips as without it


def test_one_key_writes_on_two_chains_at_once(env, chain_c, anvil, system6, user, private_keys,
                                              monkeypatch):
    """Before: one lock per key whatever the chain, so a write on chain C waited for a write
    from the same key on chain A. Now C goes on at once, and a second write on A still waits
    for A's lock (here: gives up after SENDER_LOCK_WAIT, exit 12)."""
    from dtnsess_cli.config import Settings
    from dtnsess_cli.manager import Client as ManagerClient
    from dtnsess_cli.manager import writes

    node_c, _, system_c = chain_c
    monkeypatch.setattr(writes, "SENDER_LOCK_WAIT", 1.0)
    _, cli = env
    holder = ManagerClient(Settings(rpc_url=anvil.url, contract=system6.manager.address,
                                    private_key=private_keys[1], key_kind="private_key"), None)
    with holder._sender_locked():  # a dtnsess process writing from this key on chain A
        on_c = Cli(system_c, private_keys, monkeypatch, node_c.url)("approve", "10", "--yes")
        assert on_c.exit_code == 0, on_c.output
        assert "waiting for another dtnsess" not in on_c.stderr
        on_a = cli("approve", "10", "--yes")
        assert on_a.exit_code == 12, on_a.output
        assert "waiting for another dtnsess process" in on_a.stderr
    assert system6.token.functions.allowance(user, system6.manager.address).call() == 0
    assert system_c.token.functions.allowance(user, system_c.manager.address).call() \
        == 10 * system_c.unit
    after = cli("approve", "10", "--yes")  # A's lock is free again
    assert after.exit_code == 0, after.output


def test_ctrl_c_between_the_broadcasts_of_a_batch_names_every_hash(env, system6, user,
                                                                   monkeypatch):
    """approve + create sent together to a node that refuses batches (so one by one), Ctrl-C
    while the second is being sent: before, only the approval's hash was named. Now both are
    (the second may have arrived); the rerun does not pay twice."""
    from dtnsess_cli.chain import jsonrpc

    proxy, cli = env
    fund(system6, user, 100, approve=False)
    before = system6.token.functions.balanceOf(user).call()
    proxy.fault("eth_sendRawTransaction", "rpcerror_before",
                message="batch requests are not supported")
    real, sends = jsonrpc.JsonRpc.call, []

    def call(self, method, params=()):
        if method == "eth_sendRawTransaction":
            sends.append(params)
            if len(sends) == 2:
                raise KeyboardInterrupt
        return real(self, method, params)

    with monkeypatch.context() as mp:
        mp.setattr(jsonrpc.JsonRpc, "call", call)
        res = cli("create", "20", "--yes")
    assert res.exit_code == 130, res.output
    line = one_error(res.stderr)
    hashes = set(HASH.findall(line))
    assert len(hashes) == 2 and "interrupted while sending" in line, line
    assert {e.tx_hash for e in open_entries(sender=user)} == hashes
    rerun = cli("create", "20", "--yes")
    assert rerun.exit_code == 13, rerun.output  # the create went out now, once
    assert system6.token.functions.balanceOf(user).call() == before - 20 * system6.unit


def test_a_url_whose_chain_changed_is_refused_before_signing(env, system6, w3, user):
    """The sender lock is taken for the chain last seen behind the URL (no round trip); when the
    node turns out to be another chain (a devnet restarted on its port), nothing is signed and
    the rerun locks for the right one."""
    from dtnsess_cli.chain.journal import known_chain, remember_chain, state_dir

    proxy, cli = env
    fund(system6, user, 100, approve=False)
    before = w3.eth.get_transaction_count(user)
    remember_chain(proxy.url, (31337, "0x" + "11" * 32), state_dir())
    res = cli("approve", "1", "--yes")
    assert res.exit_code == 6, res.output
    assert "another chain than the last time" in one_error(res.stderr)
    assert w3.eth.get_transaction_count(user) == before and known_chain(proxy.url) is None
    again = cli("approve", "1", "--yes")
    assert again.exit_code == 0, again.output
    assert known_chain(proxy.url) == (31337, genesis_of(w3))
