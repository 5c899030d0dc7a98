"""Writes over a faulty node (tests/faultproxy.py): never pay twice.

For create (approve + create), request, close and renew, each fault on the send (before or
after the node got it: dropped connection, HTTP 502, a hang past the RPC timeout, a body cut
mid-reply, bad JSON) and during the receipt wait; Ctrl-C during the wait (a real
process); three parallel creates from one key. Each case checks the exit code and message, the
hash when a transaction was signed, the chain (sessions, requests, tokens, nonce), and that a
rerun does not repeat a mined intent unknowingly.

The send of a single transaction is eth_sendRawTransactionSync (its reply is the receipt);
create's approval and create go out together with eth_sendRawTransaction; the tests of the
receipt wait use a node without the sync method (``FaultProxy.lacking``), as many are.

Short waits keep this quick: DTNSESS_RPC_TIMEOUT=1 (per HTTP request), DTNSESS_RECEIPT_TIMEOUT=3
(also the sync send's own timeout).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import Cli, isolate_env, load_json
from faultproxy import FaultProxy
from helpers import bal, create, fund, mine, next_second, session

SCRIPT = Path(sys.executable).parent / "dtnsess"
HASH = re.compile(r"0x[0-9a-f]{64}")

# what reaches the node: "_before" faults never reach it, "_after" ones were executed
SEND_FAULTS = ["drop_before", "drop_after", "http_before", "http_after", "hang_after",
               "cut_after", "badjson_after"]
SYNC, PLAIN = "eth_sendRawTransactionSync", "eth_sendRawTransaction"


class Env:
    def __init__(self, system, user, key, proxy, cli, w3):
        self.system, self.user, self.key, self.proxy, self.cli, self.w3 = (
            system, user, key, proxy, cli, w3)

    # the chain's truth
    def sessions(self) -> list:
        return list(self.system.manager.functions.getUserSessions(self.user).call())

    def active(self) -> list:
        return list(self.system.manager.functions.getUserActiveSessions(self.user).call())

    def requests(self) -> int:
        return self.system.manager.functions.getUserRequests(self.user, 0, 100).call()[1]

    def tokens(self) -> int:
        return bal(self.system, self.user)

    def nonce(self) -> int:
        return self.w3.eth.get_transaction_count(self.user, "latest")

    def truth(self) -> tuple:
        return (len(self.sessions()), len(self.active()), self.requests(), self.tokens(),
                self.nonce())


@pytest.fixture
def env(anvil, w3, system6, accounts, private_keys, monkeypatch, tmp_path):
    isolate_env(monkeypatch, tmp_path)
    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DTNSESS_RPC_TIMEOUT", "1")
    monkeypatch.setenv("DTNSESS_RECEIPT_TIMEOUT", "3")
    monkeypatch.setenv("DTNSESS_MODEL", system6.model)
    user = accounts[1]
    with FaultProxy(anvil.url) as proxy:
        cli = Cli(system6, private_keys, monkeypatch, proxy.url)
        yield Env(system6, user, private_keys[1], proxy, cli, w3)


def unit(system) -> int:
    return 10 ** system.decimals


def open_entries(env) -> list:
    from dtnsess_cli.chain.journal import Journal

    j = Journal()
    try:
        return j.open_entries(31337, env.user)
    finally:
        j.close()


def one_by_one(monkeypatch) -> None:
    """approve, then create, each sent and waited for on its own (what happens when the token's
    allowance slot is unknown): a token layout the state override does not match."""
    from dtnsess_cli.manager import base

    monkeypatch.setattr(base, "ALLOWANCE_SLOTS", (7,))


def one_error(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.output
    return lines[0]


# ----------------------------------------------------------------------------- the commands
# Each: (prepare the chain -> args, the send to fault (skip N sends), check the chain after
# exactly one success against the truth before).


def _create(env):
    fund(env.system, env.user, 100, approve=False)  # create must approve first
    # the approval and the create go in one batch of sends (chain.send.send_together): the
    # fault hits that batch, and both are looked up by hash (or their own bytes sent again)
    return ("create", "20"), 0


def _create_ok(env, before, after):
    assert after[0] == before[0] + 1 and after[1] == before[1] + 1  # one session
    assert after[3] == before[3] - 20 * unit(env.system)  # paid once
    assert after[4] == before[4] + 2  # approve + create


def _request(env):
    fund(env.system, env.user, 100)
    create(env.system, env.user, 50)
    next_second(env.w3)
    return ("request", "what is 2+2?"), 0


def _request_ok(env, before, after):
    assert after[2] == before[2] + 1 and after[4] == before[4] + 1


def _close(env):
    fund(env.system, env.user, 100)
    sid, _ = create(env.system, env.user, 50)
    return ("close", str(sid)), 0


def _close_ok(env, before, after):
    assert after[1] == before[1] - 1 and after[3] == before[3] + 50 * unit(env.system)
    assert after[4] == before[4] + 1


def _renew(env):
    fund(env.system, env.user, 100)
    sid, _ = create(env.system, env.user, 50)
    env.renew_sid = sid
    return ("renew", str(sid), "10"), 0


def _renew_ok(env, before, after):
    assert after[3] == before[3] - 10 * unit(env.system) and after[4] == before[4] + 1
    assert session(env.system, env.renew_sid)["balance"] == 60 * unit(env.system)


COMMANDS = {"create": (_create, _create_ok), "request": (_request, _request_ok),
            "close": (_close, _close_ok), "renew": (_renew, _renew_ok)}
# the method of the faulted send: create's two transactions go together with the plain method
SEND_OF = {"create": PLAIN, "request": SYNC, "close": SYNC, "renew": SYNC}


@pytest.mark.parametrize("kind", SEND_FAULTS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_lost_send_reply_is_looked_up_and_succeeds(env, command, kind):
    """The send's reply is lost (or the node never got it): the transaction is found by hash
    (or its own bytes sent again), mined once, and the command succeeds; nothing stays open."""
    prepare, check = COMMANDS[command]
    args, skip = prepare(env)
    before = env.truth()
    env.proxy.fault(SEND_OF[command], kind, skip=skip, hang=3)
    res = env.cli(*args, "--yes")
    assert env.proxy.fired == [(SEND_OF[command], kind)]
    assert res.exit_code == 0, res.output
    # a sync send's hang past the receipt timeout (3 s, its own timeout) is its wait for the
    # block ending, not a lost reply: only the outcome is shown
    lost = (SEND_OF[command], kind) != (SYNC, "hang_after")
    assert ("reply to the send was lost" in res.stderr) == lost and HASH.search(res.output)
    check(env, before, env.truth())
    assert open_entries(env) == []


@pytest.mark.parametrize("kind", SEND_FAULTS)
def test_lost_plain_send_reply_is_looked_up_and_succeeds(env, kind):
    """The same on a node without eth_sendRawTransactionSync (the plain send, then polls)."""
    env.proxy.lacking.add(SYNC)
    args, _ = _request(env)
    before = env.truth()
    env.proxy.fault(PLAIN, kind, hang=3)
    res = env.cli(*args, "--yes")
    assert env.proxy.fired == [(PLAIN, kind)]
    assert res.exit_code == 0, res.output
    assert "reply to the send was lost" in res.stderr and HASH.search(res.stderr)
    _request_ok(env, before, env.truth())
    assert open_entries(env) == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_node_gone_after_send_exits_10_and_rerun_does_not_repeat(env, command, monkeypatch):
    """The node took the transaction, then nothing answers: exit 10 naming the hash, the nonce
    and `dtnsess tx`; the chain did it once. The rerun reports the earlier transaction as mined
    and does not do it again (exit 13, nothing sent); `dtnsess tx` shows what it did; a third
    run (knowingly) does it again."""
    prepare, check = COMMANDS[command]
    args, skip = prepare(env)
    if command == "create":  # the approval mined first, then the create's send is faulted
        one_by_one(monkeypatch)
        skip = 1
    before = env.truth()
    env.proxy.fault(SYNC, "drop_after", skip=skip)  # create: one by one, each on its own
    # every lookup fails (reads retry: so each of their attempts)
    env.proxy.fault("eth_getTransactionByHash", "drop_before", times=10_000)
    res = env.cli(*args, "--yes")
    env.proxy.clear()
    assert res.exit_code == 10, res.output
    line = one_error(res)
    h = HASH.findall(line)[-1]  # create: after the mined approval's hash
    assert "may still be mined" in line and "nonce" in line
    assert f"dtnsess tx {h}" in res.stderr
    after = env.truth()
    check(env, before, after)  # the node did it, once
    assert [e.tx_hash for e in open_entries(env)] == [h]

    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {h}" in rerun.stderr and "mined in block" in rerun.stderr
    assert "not repeated" in one_error(rerun)
    assert env.truth() == after  # nothing sent
    assert open_entries(env) == []

    shown = load_json(env.cli("tx", h, "--json"))
    assert shown["status"] == "mined" and shown["journal"] == "mined"
    assert shown["command"] == "dtnsess " + shlex.join(args)
    assert shown["events"] and shown["fee_eth"]

    third = env.cli(*args, "--yes")  # now knowingly: done once more (close: already closed)
    if command == "close":
        assert third.exit_code == 4 and "closed" in third.stderr
    else:
        assert third.exit_code == 0, third.output


@pytest.mark.parametrize("kind", ["http_after", "drop_before", "hang_before", "badjson_after"])
def test_receipt_wait_tolerates_transient_errors(env, kind):
    env.proxy.lacking.add(SYNC)
    args, skip = _request(env)
    before = env.truth()
    env.proxy.fault("eth_getTransactionReceipt", kind, times=2, status=502, hang=3)
    res = env.cli(*args, "--yes", "--json")
    assert res.exit_code == 0, res.output
    assert len(env.proxy.fired) == 2
    assert load_json(res)["request_id"]
    _request_ok(env, before, env.truth())


def test_receipt_wait_deadline_exits_10_with_hash(env):
    env.proxy.lacking.add(SYNC)
    args, _ = _renew(env)
    before = env.truth()
    env.proxy.fault("eth_getTransactionReceipt", "http_before", times=1000, status=503)
    res = env.cli(*args, "--yes")
    assert res.exit_code == 10, res.output
    line = one_error(res)
    h = HASH.search(line).group(0)
    assert "failed while waiting for the receipt" in line and "nonce" in line
    env.proxy.clear()
    after = env.truth()
    _renew_ok(env, before, after)
    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 13 and f"earlier tx {h}" in rerun.stderr
    assert env.truth() == after


def test_refused_second_step_names_the_mined_first(env, monkeypatch):
    """create = approve + create, one by one: the approval is mined, the create is refused by the
    node; the error says what was done (the approval, its hash) before what failed."""
    one_by_one(monkeypatch)
    fund(env.system, env.user, 100, approve=False)
    before = env.truth()
    env.proxy.fault(SYNC, "rpcerror_before", skip=1, message="txpool is full")
    res = env.cli("create", "20", "--yes")
    assert res.exit_code == 5, res.output
    line = one_error(res)
    assert re.search(r"approve 20 USDT for the session manager: mined in tx 0x[0-9a-f]{64} "
                     r"\(block \d+\); then .*txpool is full", line), line
    after = env.truth()
    assert after[:4] == before[:4] and after[4] == before[4] + 1  # only the approval
    assert open_entries(env) == []  # refused: dropped, not open
    assert env.cli("create", "20", "--yes").exit_code == 0  # the rerun needs no approval
    assert env.truth()[4] == before[4] + 2


def test_pending_earlier_transaction_is_waited_for(env):
    """An open entry that the node still holds (unmined): the next write waits for it first
    and says so; here it never gets mined (automine off), so nothing new is sent: exit 10."""
    from helpers import no_automine

    env.proxy.lacking.add(SYNC)
    args, _ = _request(env)
    with no_automine(env.w3):
        env.proxy.fault("eth_getTransactionReceipt", "http_before", times=1000)
        res = env.cli(*args, "--yes")
        assert res.exit_code == 10
        h = HASH.search(one_error(res)).group(0)
        env.proxy.clear()
        n = env.w3.eth.get_transaction_count(env.user, "pending")
        again = env.cli("create", "20", "--yes")
        assert again.exit_code == 10, again.output
        assert "still pending" in one_error(again) and h in again.stderr
        assert env.w3.eth.get_transaction_count(env.user, "pending") == n  # nothing new
    mine(env.w3)
    # mined now: the next command reports it and goes on
    creating = env.cli("create", "20", "--yes")
    assert creating.exit_code == 0, creating.output
    assert f"earlier tx {h}" in creating.stderr and "mined in block" in creating.stderr
    assert env.requests() == 1 and len(env.sessions()) == 2


def test_sigint_during_receipt_wait_prints_hash_and_rerun_resolves(env, tmp_path):
    """Ctrl-C while waiting for the receipt (a real process): exit 130, the hash is printed, the
    journal entry stays open; the next command finds it mined and does not repeat it."""
    assert SCRIPT.is_file()
    args, _ = _create(env)
    before = env.truth()
    # approve and create were sent together; the wait for their receipts hangs
    env.proxy.fault("eth_getTransactionReceipt", "hang_before", times=1000, hang=20)
    p = subprocess.Popen([str(SCRIPT), *args, "--yes"], env=script_env(env), cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert env.proxy.wait_fired(1, timeout=30), "no receipt wait seen"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert "Traceback" not in err and env.key[2:] not in out + err
    line = one_error_text(err)
    h, first = HASH.findall(line)[:2]  # "also still open:" the create's, then the approval's
    assert "interrupted while waiting for the receipt" in line and f"dtnsess tx {first}" in err
    assert [e.tx_hash for e in open_entries(env)] == [first, h]
    env.proxy.clear()
    after = env.truth()
    _create_ok(env, before, after)  # mined (automine) while we were interrupted
    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {h}" in rerun.stderr and "mined in block" in rerun.stderr
    assert env.truth() == after


def test_sigint_in_an_approval_wait_lets_the_rerun_go_on(env, monkeypatch):
    """Ctrl-C while waiting for the approval of `create` (sent one by one: the token's allowance
    slot is unknown to the override): the open entry is a preliminary step, so the rerun reports
    it mined and goes on with the create only (no second approval). In process: the receipt wait
    is interrupted the way Ctrl-C interrupts it."""
    from dtnsess_cli.chain import send
    from dtnsess_cli.errors import TxPendingError

    one_by_one(monkeypatch)
    env.proxy.lacking.add(SYNC)  # the receipt is waited for
    args, _ = _create(env)
    before = env.truth()
    with monkeypatch.context() as mp:
        def interrupted(ctx, tx_hash, description, nonce, timeout=None, since=None):
            raise TxPendingError(description, tx_hash, nonce,
                                 "interrupted while waiting for the receipt", interrupted=True)

        mp.setattr(send, "wait_for_receipt", interrupted)
        res = env.cli(*args, "--yes")
    assert res.exit_code == 130, res.output
    h = HASH.search(one_error(res)).group(0)
    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 0, rerun.output
    assert f"earlier tx {h}" in rerun.stderr and "mined in block" in rerun.stderr
    final = env.truth()
    assert final[0] == before[0] + 1 and final[3] == before[3] - 20 * unit(env.system)
    assert final[4] == before[4] + 2  # no second approval: the first one is used


def one_error_text(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def script_env(env) -> dict:
    return dict(os.environ, DTNSESS_RPC_URL=env.proxy.url,
                DTNSESS_CONTRACT=env.system.manager.address, DTNSESS_CHAIN_ID="31337",
                DTNSESS_PRIVATE_KEY=env.key, DTNSESS_RPC_TIMEOUT="30",
                DTNSESS_RECEIPT_TIMEOUT="60", PYTHONUNBUFFERED="1")


def test_three_parallel_creates_from_one_key(env, tmp_path):
    """Three `create 20 --yes` at once from one key, each needing an approval: all succeed, each
    with its own session, paid once each; no nonce or allowance errors."""
    fund(env.system, env.user, 100, approve=False)
    before = env.truth()
    procs = [subprocess.Popen([str(SCRIPT), "create", "20", "--yes", "--json"],
                              env=script_env(env),
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "nonce" not in err.lower() and "allowance" not in err.lower(), err
    ids = {json.loads(out)["session_id"] for out, _ in outs}
    assert len(ids) == 3
    after = env.truth()
    assert after[0] == before[0] + 3 and after[3] == before[3] - 60 * unit(env.system)
    assert after[4] == before[4] + 6  # three approvals, three creates


# ----------------------------------------------------------------------------- dtnsess tx


def test_tx_shows_a_transaction_not_in_the_journal(env):
    fund(env.system, env.user, 100)
    sid, rcpt = create(env.system, env.user, 50)
    h = "0x" + bytes(rcpt["transactionHash"]).hex()
    shown = load_json(env.cli("tx", h, "--json"))
    assert shown["status"] == "mined" and shown["block"] == rcpt["blockNumber"]
    assert shown["what"] is None and shown["journal"] is None
    created = [e for e in shown["events"] if e["name"] == "SessionCreated"]
    assert created and created[0]["args"]["sessionId"] == sid
    human = env.cli("tx", h)
    assert human.exit_code == 0 and f"tx {h}: mined in block" in human.stdout
    assert "event SessionCreated(sessionId=" in human.stdout


def test_tx_unknown_and_malformed_hashes(env):
    res = env.cli("tx", "0x" + "ab" * 32, "--json")
    assert res.exit_code == 1 and load_json(res)["status"] == "unknown"
    bad = env.cli("tx", "0x1234")
    assert bad.exit_code == 4 and "transaction hash" in one_error(bad)


# ----------------------------------------------------------------------------- the node forgets


def _pending_request_then_forgotten(env):
    """A request sent while nothing is mined, its receipt wait ends in exit 10, then the node
    forgets it (what a restart does to its mempool): returns (args, hash)."""
    from helpers import rpc

    args, _ = _request(env)
    rpc(env.w3, "evm_setAutomine", False)
    try:
        res = env.cli(*args, "--yes")
        assert res.exit_code == 10, res.output
        h = HASH.search(one_error(res)).group(0)
        assert env.w3.eth.get_transaction(h)  # pending in the node
        rpc(env.w3, "anvil_dropTransaction", h)
    finally:
        rpc(env.w3, "evm_setAutomine", True)
    return args, h


def test_lost_by_the_node_is_rebroadcast_by_the_next_command(env):
    """The node lost the open transaction: the next command sends its own signed bytes again
    (not a new transaction), reports it mined, and does not repeat the request."""
    args, h = _pending_request_then_forgotten(env)
    assert env.requests() == 0
    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 13, rerun.output
    assert f"earlier tx {h}" in rerun.stderr and "mined in block" in rerun.stderr
    assert env.requests() == 1  # exactly once, by the original hash
    assert env.w3.eth.get_transaction_receipt(h)["status"] == 1


def test_nonce_taken_by_another_transaction_is_reported_replaced(env):
    """The node lost the open transaction and another wallet used its nonce: the next command
    says it was never mined, and then does what it was asked (the request once)."""
    from dtnsess_cli.devnet.localdtn import transact

    args, h = _pending_request_then_forgotten(env)
    transact(env.w3, env.system.token.functions.approve(env.system.manager.address, 1), env.user)
    rerun = env.cli(*args, "--yes", "--json")
    assert rerun.exit_code == 0, rerun.output
    assert f"earlier tx {h}" in rerun.stderr and "never mined" in rerun.stderr
    assert env.requests() == 1
    assert open_entries(env) == []


def test_request_file_receipt_deadline_reports_every_hash_and_rerun_does_not_repeat(env,
                                                                                    tmp_path):
    fund(env.system, env.user, 200)
    for _ in range(2):
        create(env.system, env.user, 50)
    next_second(env.w3)
    f = tmp_path / "prompts.txt"
    f.write_text("first prompt\nsecond prompt\n")
    env.proxy.fault("eth_getTransactionReceipt", "http_before", times=1000, status=502)
    res = env.cli("request", "--file", str(f), "--yes", "--json")
    assert res.exit_code == 10, res.output
    rows = load_json(res)["requests"]
    assert [r["status"] for r in rows] == ["unknown", "unknown"]
    assert all(HASH.fullmatch(r["tx_hash"]) for r in rows)
    assert "the batch stopped" in res.stderr
    env.proxy.clear()
    assert env.requests() == 2  # both made it
    rerun = env.cli("request", "--file", str(f), "--yes")
    assert rerun.exit_code == 13, rerun.output
    assert all(f"earlier tx {r['tx_hash']}" in rerun.stderr for r in rows)
    assert env.requests() == 2
