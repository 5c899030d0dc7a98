"""Faults around chain identity and what happens after a send (issue 15).

- Two chains with one chain id (two Anvils, both 31337, one key, one state dir): an open
  journal entry of chain A is never re-broadcast on, nor resolved against, chain B; the write on
  B names the entry's chain; the rerun on A does not pay twice; `dtnsess tx` names the chain;
  `dtnsess journal forget` forgets a gone chain's entries (and refuses the node's own chain).
- `devnet reset` forgets the open entries of its old chain.
- Every paid transaction is named: Ctrl-C in the batched receipt wait (also while sleeping
  between polls), SIGTERM, a node gone after a batched send (both hashes), a journal that cannot
  be written after the send; a journal truncated to 0 bytes is noticed.

Each case failed on main 5e555a9 (see each test's docstring for what it did there).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import Cli, isolate_env, load_json
from faultproxy import FaultProxy
from helpers import chain_of, create, fund, next_second

SCRIPT = Path(sys.executable).parent / "dtnsess"
HASH = re.compile(r"0x[0-9a-f]{64}")


def one_error(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def genesis_of(w3) -> str:
    return chain_of(w3)[1]


def open_entries(sender: str, chain_id: int = 31337, genesis=None) -> list:
    from dtnsess_cli.chain.journal import Journal

    j = Journal()
    try:
        return j.open_entries(chain_id, sender, genesis)
    finally:
        j.close()


def requests_of(system, user) -> int:
    return system.manager.functions.getUserRequests(user, 0, 100).call()[1]


@pytest.fixture(scope="module")
def chain_b(tmp_path_factory, accounts):
    """A second Anvil with the same chain id (31337) and its own deployment: another chain."""
    from web3 import Web3

    from dtnsess_cli.devnet import localdtn
    from dtnsess_cli.devnet.anvil import AnvilProcess

    node = AnvilProcess()
    try:
        node.start(log_path=tmp_path_factory.mktemp("anvil-b") / "anvil.log")
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        system = localdtn.deploy_system(w3, accounts[0], decimals=6, worker=accounts[3])
        yield node, w3, system
    finally:
        node.stop()


@pytest.fixture
def env(anvil, w3, system6, private_keys, monkeypatch, tmp_path):
    isolate_env(monkeypatch, tmp_path)
    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DTNSESS_RPC_TIMEOUT", "1")
    monkeypatch.setenv("DTNSESS_RECEIPT_TIMEOUT", "3")
    monkeypatch.setenv("DTNSESS_MODEL", system6.model)
    with FaultProxy(anvil.url) as proxy:
        yield proxy, Cli(system6, private_keys, monkeypatch, proxy.url)


def _lost_request_on_a(env, system6, w3, user) -> str:
    """`request` on chain A whose outcome is lost (the node took it, then no lookup answers):
    exit 10, the entry stays open. Returns its hash."""
    proxy, cli = env
    fund(system6, user, 100)
    create(system6, user, 50)
    next_second(w3)
    proxy.fault("eth_sendRawTransactionSync", "drop_after")
    proxy.fault("eth_getTransactionByHash", "drop_before", times=10_000)
    res = cli("request", "what is 2+2?", "--yes")
    proxy.clear()
    assert res.exit_code == 10, res.output
    h = HASH.findall(one_error(res.stderr))[-1]
    assert requests_of(system6, user) == 1  # A did it
    return h


# ----------------------------------------------------------------------------- item 1


def test_two_chains_with_one_id_never_share_an_entry(env, chain_b, system6, w3, user,
                                                     private_keys, monkeypatch):
    """On main 5e555a9 the write on B re-broadcast A's open entry there (and waited for it),
    and the rerun on A then paid a second time. Now: B leaves it alone and says whose it is; B's
    own request is made once; A's rerun finds its entry mined and pays nothing."""
    node_b, w3_b, system_b = chain_b
    # NOTE: two Anvils started in the same second even share their genesis hash (as a fork
    # shares its origin's): then the entry's anchor block tells the chains apart
    ga = genesis_of(w3)
    assert w3_b.eth.chain_id == w3.eth.chain_id == 31337
    h = _lost_request_on_a(env, system6, w3, user)
    (entry,) = open_entries(sender=user, genesis=ga)
    assert entry.tx_hash == h and entry.genesis == ga  # the journal knows A's genesis

    fund(system_b, user, 100)
    create(system_b, user, 50)
    next_second(w3_b)
    snap = w3_b.provider.make_request("evm_snapshot", [])["result"]
    try:
        before_b = w3_b.eth.get_transaction_count(user)
        # NOTE: another prompt: the same one, at the same nonce and fees, signs to the same
        # bytes (B deployed the same contracts at the same addresses): A's hash itself
        on_b = Cli(system_b, private_keys, monkeypatch, node_b.url)("request", "what is 3+3?",
                                                                   "--yes", "--json")
        assert on_b.exit_code == 0, on_b.output
        assert f"open tx {h}" in on_b.stderr and f"another chain 31337 (genesis {ga})" \
            in on_b.stderr and f"dtnsess journal forget {ga}" in on_b.stderr
        assert w3_b.eth.get_transaction_count(user) == before_b + 1  # its own request only
        assert requests_of(system_b, user) == 1
        with pytest.raises(Exception):
            w3_b.eth.get_transaction(h)  # A's transaction never reached B
        assert [e.tx_hash for e in open_entries(sender=user, genesis=ga)] == [h]  # still open

        shown = load_json(Cli(system_b, private_keys, monkeypatch, node_b.url)("tx", h,
                                                                               "--json"))
        assert shown["journal"] == "open" and shown["other_chain"] is True
        assert shown["journal_chain"] == f"chain 31337 (genesis {ga})"
    finally:
        w3_b.provider.make_request("evm_revert", [snap])

    _, cli = env
    rerun = cli("request", "what is 2+2?", "--yes")
    assert rerun.exit_code == 13, rerun.output  # not repeated: A paid once
    assert f"earlier tx {h}" in rerun.stderr and requests_of(system6, user) == 1


def test_journal_forget_a_gone_chain(env, chain_b, system6, w3, user, private_keys,
                                     monkeypatch):
    """`dtnsess journal forget GENESIS` marks a gone chain's entries forgotten (no such
    command on main 5e555a9); an entry the node shows to be of its own chain is kept."""
    node_b, _, system_b = chain_b
    ga = genesis_of(w3)
    h = _lost_request_on_a(env, system6, w3, user)
    _, cli = env
    on_a = cli.json("journal", "forget", ga)
    assert on_a["forgotten"] == [] and [e["tx_hash"] for e in on_a["kept"]] == [h]
    assert cli("journal", "forget", "0x1234").exit_code == 4
    on_b = Cli(system_b, private_keys, monkeypatch, node_b.url)
    out = on_b.json("journal", "forget", ga)
    assert [e["tx_hash"] for e in out["forgotten"]] == [h]
    assert open_entries(sender=user, genesis=ga) == []
    assert load_json(cli("tx", h, "--json"))["journal"] == "forgotten"


def test_devnet_reset_forgets_its_old_chains_entries(monkeypatch, tmp_path):
    """`devnet reset` forgets the open entries of the chain it throws away (on main 5e555a9
    they blocked every write on the new chain for the receipt timeout)."""
    from dtnsess_cli.chain.journal import Journal
    from dtnsess_cli.devnet.stack import Paths, _write_state, forget_journal

    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "state"))
    paths = Paths(tmp_path)
    paths.log_dir.mkdir(parents=True)
    old, other = "0x" + "11" * 32, "0x" + "22" * 32
    _write_state(paths, {"genesis": old, "chain_id": 31337, "manager": "0x" + "33" * 20})
    j = Journal()
    for i, g in enumerate((old, other)):
        j.record(31337, "0x" + "aa" * 20, f"0x{i:064x}", i, "0x00", "a request", {}, genesis=g)
    j.close()
    gone = forget_journal(paths)
    assert [e.tx_hash for e in gone] == [f"0x{0:064x}"]
    j = Journal()
    assert [e.tx_hash for e in j.open_entries(31337, "0x" + "aa" * 20, other)] == \
        [f"0x{1:064x}"]
    j.close()


def test_an_old_journal_gets_the_genesis_column(tmp_path):
    """A journal written before genesis hashes: migrated in place; its entries (genesis and
    anchor unknown) are legacy: of no chain, only named (issue 19; they were of every chain
    with their id, and so re-broadcast on the wrong one)."""
    import sqlite3

    from dtnsess_cli.chain.journal import Journal

    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE txs (tx_hash TEXT PRIMARY KEY, chain_id INTEGER NOT NULL,
        sender TEXT NOT NULL, nonce INTEGER NOT NULL, raw TEXT NOT NULL, description TEXT NOT
        NULL, intent TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL, updated_at
        REAL NOT NULL, block INTEGER, note TEXT);""")
    db.execute("INSERT INTO txs VALUES ('0xab', 1, '0xcd', 0, '0x', 'd', '{}', 'open', 0, 0, "
               "NULL, NULL)")
    db.commit()
    db.close()
    j = Journal(path)
    assert j.open_entries(1, "0xcd", "0x" + "11" * 32) == []
    (e,) = j.open_legacy("0xcd", 1)
    assert e.legacy and e.genesis is None and "older dtnsess" in e.chain_label()
    j.close()


# ----------------------------------------------------------------------------- item 2


def test_ctrl_c_between_batched_receipt_polls_names_both(env, system6, user, monkeypatch):
    """Ctrl-C while `create` (approval + create, sent together) sleeps between receipt polls:
    on main 5e555a9 "error: interrupted", exit 130, no hash. Now both hashes are named and stay
    open; the rerun finds them mined and does not pay again."""
    from dtnsess_cli.chain import send

    _, cli = env
    fund(system6, user, 100, approve=False)
    real = _ctrl_c_at_first_receipt_poll(monkeypatch, send)
    res = cli("create", "20", "--yes")
    monkeypatch.setattr(send.time, "sleep", real)
    assert res.exit_code == 130, res.output
    line = one_error(res.stderr)
    hashes = HASH.findall(line)
    assert len(set(hashes)) == 2 and "interrupted while waiting for the receipt" in line
    assert sorted(e.tx_hash for e in open_entries(sender=user)) == sorted(set(hashes))
    bal = system6.token.functions.balanceOf(user).call()
    rerun = cli("create", "20", "--yes")
    assert rerun.exit_code == 13, rerun.output
    assert system6.token.functions.balanceOf(user).call() == bal  # paid once


def test_sigterm_in_the_receipt_wait_names_the_hashes(env, system6, user, private_keys,
                                                      tmp_path):
    """SIGTERM (a supervisor, `timeout`) while `create` waits for its receipts: on main
    5e555a9 the process died silently (no hash). Now exit 130 naming both transactions."""
    proxy, _ = env
    fund(system6, user, 100, approve=False)
    proxy.fault("eth_getTransactionReceipt", "hang_before", times=1000, hang=20)
    import os

    p = subprocess.Popen([str(SCRIPT), "create", "20", "--yes"],
                         env=dict(os.environ, DTNSESS_RPC_URL=proxy.url,
                                  DTNSESS_CONTRACT=system6.manager.address,
                                  DTNSESS_PRIVATE_KEY=private_keys[1], DTNSESS_RPC_TIMEOUT="30",
                                  DTNSESS_RECEIPT_TIMEOUT="60"),
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proxy.wait_fired(1, timeout=30), "no receipt wait seen"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    line = one_error(err)
    assert len(set(HASH.findall(line))) == 2 and "interrupted" in line


def test_node_gone_after_a_batched_send_names_every_hash(env, system6, user):
    """approve + create sent together, then no receipt comes: exit 10 names both hashes (on
    main 5e555a9 only the approval's)."""
    proxy, cli = env
    fund(system6, user, 100, approve=False)
    proxy.fault("eth_getTransactionReceipt", "http_before", times=10_000, status=503)
    res = cli("create", "20", "--yes")
    proxy.clear()
    assert res.exit_code == 10, res.output
    line = one_error(res.stderr)
    assert len(set(HASH.findall(line))) == 2 and "create" in line.split("also")[-1], line


def test_journal_unwritable_after_the_send_still_names_the_result(env, system6, user,
                                                                  monkeypatch):
    """The journal cannot note the outcome after the send (database locked, disk full): on
    main 5e555a9 exit 3 and no hash although the request was mined. Now the result is shown
    (exit 0) with a warning; the entry stays open and the rerun does not repeat it."""
    from dtnsess_cli.chain.journal import Journal
    from dtnsess_cli.errors import ConfigError

    _, cli = env
    fund(system6, user, 100)
    create(system6, user, 50)

    def locked(self, *a, **k):
        raise ConfigError(f"transaction journal {self.path}: database is locked")

    with monkeypatch.context() as mp:
        mp.setattr(Journal, "resolve", locked)
        res = cli("request", "hello", "--yes", "--json")
    assert res.exit_code == 0, res.output
    out = load_json(res)
    h = out["transactions"][0]["tx_hash"]
    assert HASH.fullmatch(h) and "could not note it" in res.stderr and h in res.stderr
    assert [e.tx_hash for e in open_entries(sender=user)] == [h]
    rerun = cli("request", "hello", "--yes")
    assert rerun.exit_code == 13 and requests_of(system6, user) == 1


def test_a_journal_truncated_to_zero_bytes_is_noticed(env, system6, user, tmp_path):
    """A journal emptied to 0 bytes: on main 5e555a9 taken as empty without a word (and the
    rerun paid again); now the next write warns before it sends."""
    _, cli = env
    fund(system6, user, 100)
    create(system6, user, 50)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "journal.sqlite3").write_bytes(b"")
    res = cli("request", "hello", "--yes")
    assert res.exit_code == 0, res.output
    assert "was an empty file" in res.stderr


def test_deploy_write_env_to_a_directory_is_refused_before_paying(env, system6, w3, accounts,
                                                                  tmp_path):
    """On main 5e555a9 it deployed, paid, then died with "internal error: IsADirectoryError"
    and printed neither address nor hash."""
    _, cli = env
    (tmp_path / ".env").mkdir()
    before = w3.eth.get_transaction_count(accounts[0])
    res = cli("deploy", "--ai", system6.router.address, "--write-env", "--yes", role="deployer")
    assert res.exit_code == 4, res.output
    assert "is a directory" in one_error(res.stderr)
    assert w3.eth.get_transaction_count(accounts[0]) == before


def test_transactions_the_journal_does_not_know_are_named(env, system6, user):
    """A journal replaced by an older copy no longer holds the entry of a run whose outcome was
    lost (on main 5e555a9 the rerun paid again without a word). The key's nonce is then ahead
    of what the journal knows: the next write says so before it sends."""
    from dtnsess_cli.devnet.localdtn import transact

    _, cli = env
    fund(system6, user, 100)
    create(system6, user, 50)
    first = cli("request", "hello", "--yes")
    assert first.exit_code == 0 and "not in the journal" not in first.stderr, first.output
    next_second(system6.w3)
    # what the lost run sent (its entry gone with the replaced journal)
    transact(system6.w3, system6.token.functions.approve(system6.manager.address, 1), user)
    again = cli("request", "hello again", "--yes")
    assert again.exit_code == 0, again.output
    assert "warning: 1 transaction from" in again.stderr and "not in the journal" in again.stderr
    next_second(system6.w3)
    quiet = cli("request", "and again", "--yes")
    assert quiet.exit_code == 0 and "not in the journal" not in quiet.stderr


def test_ctrl_c_in_a_request_file_wave_reports_every_row(env, system6, user, monkeypatch,
                                                         tmp_path):
    """Ctrl-C while `request --file` waits for a wave's receipts: on main 5e555a9 "error:
    interrupted", exit 130, no hash. Now the report names every row's hash (exit 130) and the
    rerun does not repeat them."""
    from dtnsess_cli.chain import send

    _, cli = env
    fund(system6, user, 200)
    for _ in range(2):
        create(system6, user, 50)
    next_second(system6.w3)
    f = tmp_path / "prompts.txt"
    f.write_text("first prompt\nsecond prompt\n")
    real = _ctrl_c_at_first_receipt_poll(monkeypatch, send)
    res = cli("request", "--file", str(f), "--yes", "--json")
    monkeypatch.setattr(send.time, "sleep", real)
    assert res.exit_code == 130, res.output
    rows = load_json(res)["requests"]
    assert [r["status"] for r in rows] == ["unknown", "unknown"]
    assert all(HASH.fullmatch(r["tx_hash"]) for r in rows)
    rerun = cli("request", "--file", str(f), "--yes")
    assert rerun.exit_code == 13, rerun.output
    assert requests_of(system6, user) == 2


def test_deploy_names_its_result_when_env_cannot_be_written_after(env, system6, w3,
                                                                   monkeypatch):
    """.env fails only after the deployment (disk full): the address and the hash are shown,
    then the error (exit 3); on main 5e555a9 an internal error hid both."""
    import dtnsess_cli.config as config

    _, cli = env

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config, "write_env_value", full)
    res = cli("deploy", "--ai", system6.router.address, "--write-env", "--yes", role="deployer")
    assert res.exit_code == 3, res.output
    addr = re.search(r"deployed at (0x[0-9a-fA-F]{40})", res.stdout).group(1)
    assert w3.eth.get_code(addr) and HASH.search(res.stdout)
    assert f"set DTNSESS_CONTRACT={addr}" in res.stderr and "No space left" in res.stderr


def _ctrl_c_at_first_receipt_poll(monkeypatch, send):
    """Ctrl-C in the sleep before the first receipt poll (after the send); returns the real
    sleep, to put back."""
    from dtnsess_cli.chain import broadcast, pipeline

    # one send's wait (broadcast) and a batch's (pipeline) each read their own copy
    for mod in (broadcast, pipeline):
        monkeypatch.setattr(mod, "RECEIPT_FIRST_WAIT", 0.00123)
    real = send.time.sleep

    def sleep(s):
        if s == 0.00123:
            raise KeyboardInterrupt
        real(s)

    monkeypatch.setattr(send.time, "sleep", sleep)
    return real
