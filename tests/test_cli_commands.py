"""Every dtnsess command end to end against Anvil, in process (typer's CliRunner).

Amounts are checked against the chain in base units, with a 6- and an 18-decimal fee token.
Configuration comes from DTNSESS_* environment variables only (cli_helpers.Cli).
"""

from __future__ import annotations


import pytest

from cli_helpers import (
    answer_later,
    assert_error,
    assert_ok,
    create_via_cli,
    load_json,
    nonce,
    token_units,
)
from dtnsess_cli.errors import ExitCode
from dtnsess_cli.devnet.localdtn import SYSTEM_TRUST_NAMESPACE, respond
from helpers import (
    CALLBACK_GAS,
    bal,
    chain_of,
    dtn_balance,
    fund,
    increase_time,
    lock_held_elsewhere,
    next_second,
    session,
)

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")

MAX = 2**256 - 1


def allowance(system, who: str) -> int:
    return system.token.functions.allowance(who, system.manager.address).call()


def req_bytes(request_id: str) -> bytes:
    return bytes.fromhex(request_id[2:])


def answer(system, request_id: str, text: str = "an answer", failure=None) -> None:
    respond(system, req_bytes(request_id), worker=system.worker, node=system.node_id, text=text,
            failure=failure)


# ----------------------------------------------------------------------------- balance, approve


def test_balance(make_cli, system, user):
    cli = make_cli(system)
    fund(system, user, 1234, approve=False)
    out = cli.json("balance")
    assert out["address"] == user
    assert out["token_units"] == str(bal(system, user)) == str(token_units(system, 1234))
    assert out["token"] == "1234"
    assert out["allowance_units"] == "0" and out["claimable_refunds_units"] == "0"
    assert int(out["eth_units"]) == system.w3.eth.get_balance(user)
    r = cli("balance")
    assert_ok(r)
    assert "USDT" in r.stdout and user in r.stdout


def test_approve_amount_then_max(make_cli, system, user, w3):
    cli = make_cli(system)
    out = cli.json("approve", "12.5")
    assert allowance(system, user) == token_units(system, "12.5")
    assert out["allowance"] == "12.5" and out["allowance_units"] == str(token_units(system, "12.5"))
    assert len(out["transactions"]) == 1 and out["transactions"][0]["tx_hash"]
    r = cli("approve", "--max")
    assert_ok(r)
    assert "unlimited" in r.stdout
    assert allowance(system, user) == MAX
    assert "unlimited" in cli("balance").stdout


def test_approve_needs_amount_or_max(make_cli, system6, user, w3):
    cli = make_cli(system6)
    before = nonce(w3, user)
    for args in (["approve"], ["approve", "50", "--max"]):  # a usage error: nothing sent
        r = cli(*args)
        assert r.exit_code == int(ExitCode.USAGE) and "AMOUNT or --max" in r.output, r.output
    assert nonce(w3, user) == before


# ----------------------------------------------------------------------------- create


def test_create_approves_exactly_what_is_short(make_cli, system, user, w3):
    cli = make_cli(system)
    fund(system, user, 1000, approve=False)
    amount = "10.5" if system.decimals == 6 else "10.000000000000000001"
    units = token_units(system, amount)
    before = bal(system, user)
    out = cli.json("create", amount)
    sid = out["session_id"]
    # the id printed is the id of the event, and the session holds exactly the amount
    assert system.manager.functions.getUserSessions(user).call() == [sid]
    assert session(system, sid)["balance"] == units == int(out["amount_units"])
    assert dtn_balance(system, sid) == units
    assert before - bal(system, user) == units
    # allowance was 0: one approval of exactly the amount, used up by the create
    descs = [t["description"] for t in out["transactions"]]
    assert len(descs) == 2 and descs[0].startswith("approve")
    assert allowance(system, user) == 0

    # an allowance that covers the amount: no approval, the rest stays
    cli.json("approve", "100")
    out = cli.json("create", "20")
    assert [t["description"].startswith("approve") for t in out["transactions"]] == [False]
    assert allowance(system, user) == token_units(system, 80)

    # an allowance that falls short: approve (only) the amount, not unlimited
    cli.json("approve", "5")
    out = cli.json("create", "30")
    assert len(out["transactions"]) == 2
    assert allowance(system, user) == 0


def test_create_approve_max_and_human_output(make_cli, system, user):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    before = bal(system, user)
    r = cli("create", "50", "--approve-max")
    assert_ok(r)
    sid = system.manager.functions.getUserSessions(user).call()[-1]
    assert f"session {sid} created with 50 USDT" in r.stdout
    assert allowance(system, user) == MAX
    assert before - bal(system, user) == token_units(system, 50)
    assert r.stderr == ""  # not a terminal: no prompt, no spinner


def test_create_dry_run_sends_nothing(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    before_n, before_b = nonce(w3, user), bal(system6, user)
    out = cli.json("create", "50", "--dry-run")
    assert out["dry_run"] is True
    assert all(t["dry_run"] and "tx_hash" not in t for t in out["transactions"])
    cli.json("approve", "50")
    before_n = nonce(w3, user)
    out = cli.json("create", "50", "--dry-run")
    assert out["dry_run"] is True and out["transactions"][0]["description"].startswith("create")
    assert nonce(w3, user) == before_n and bal(system6, user) == before_b
    assert system6.manager.functions.getUserSessions(user).call() == []


# ----------------------------------------------------------------------------- renew, close


def test_renew_adds_to_the_dtn_balance_and_keeps_the_id(make_cli, system, user):
    cli = make_cli(system)
    fund(system, user, 1000, approve=False)
    sid = create_via_cli(cli, "50")
    before_dtn, before_tok = dtn_balance(system, sid), bal(system, user)
    amount = "25.25"
    out = cli.json("renew", str(sid), amount)
    units = token_units(system, amount)
    assert dtn_balance(system, sid) == before_dtn + units
    assert before_tok - bal(system, user) == units
    assert system.manager.functions.getUserSessions(user).call() == [sid]
    assert int(out["new_balance_units"]) == before_dtn + units
    r = cli("renew", str(sid), "1")
    assert_ok(r)
    assert f"session {sid} renewed: balance 76.25 USDT" in r.stdout


def test_close_one_refunds_what_dtn_holds(make_cli, system, user):
    cli = make_cli(system)
    fund(system, user, 1000, approve=False)
    s1 = create_via_cli(cli, "50")
    s2 = create_via_cli(cli, "30")
    # spend some of s1 on an answer, so the refund is not simply the funded amount
    rid = cli.json("request", "hello", "--session", str(s1))["request_id"]
    answer(system, rid)
    remaining = dtn_balance(system, s1)
    assert 0 < remaining < token_units(system, 50)
    before = bal(system, user)
    out = cli.json("close", str(s1))
    assert bal(system, user) - before == remaining
    assert out["closed"] == [{"session_id": s1, "refund": out["closed"][0]["refund"],
                              "refund_units": str(remaining), "credited": False}]
    assert session(system, s1)["active"] is False and session(system, s2)["active"] is True
    r = cli("close", str(s2))
    assert_ok(r)
    assert "closed 1 session" in r.stdout and "refund 30 USDT" in r.stdout


def test_close_all(make_cli, system, user):
    cli = make_cli(system)
    fund(system, user, 1000, approve=False)
    ids = [create_via_cli(cli, a) for a in ("10", "20", "30.5")]
    expected = sum(dtn_balance(system, i) for i in ids)
    before = bal(system, user)
    r = cli("close", "--all")
    assert_ok(r)
    assert "closed 3 sessions" in r.stdout
    assert bal(system, user) - before == expected == token_units(system, "60.5")
    assert system.manager.functions.getUserActiveSessions(user).call() == []
    # nothing left: exit 0, nothing sent
    out = cli.json("close", "--all")
    assert out["closed"] == [] and out["transactions"] == []


def test_close_needs_one_of_session_or_all(make_cli, system6):
    cli = make_cli(system6)
    for args in (["close"], ["close", "1", "--all"]):  # usage errors, as Click's own
        assert cli(*args).exit_code == int(ExitCode.USAGE)


# ----------------------------------------------------------------------------- requests


def _stored(system, rid: str):
    return system.router.functions.getRequest(req_bytes(rid)).call()


def test_request_default_routing_and_value(make_cli, system, user, w3):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    out = cli.json("request", "What is DTN?")
    assert out["session_id"] == sid and out["routing"] == "system"
    assert out["model"] == system.model
    tx = w3.eth.get_transaction(out["transactions"][0]["tx_hash"])
    # the default --value is the callback gas in wei, not 0.1 ether
    assert tx["value"] == CALLBACK_GAS == int(out["value_wei"])
    stored = _stored(system, out["request_id"])
    assert stored[4] == CALLBACK_GAS
    assert list(stored[7][0]) == [SYSTEM_TRUST_NAMESPACE] and list(stored[7][1]) == []
    # the node serving system trust can answer it
    answer(system, out["request_id"], "forty-two")
    assert cli.json("response", out["request_id"])["answer"] == "forty-two"


def test_request_without_a_session_says_create_first(make_cli, system6, user, w3):
    """No session and no allowance: the contract would open one; the hint says `create`."""
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    before = nonce(w3, user)
    res = cli("request", "hello")
    assert_error(res, ExitCode.FUNDS, "allowance")
    assert "no active session" in res.stderr and "dtnsess create" in res.stderr
    assert nonce(w3, user) == before


def test_request_node_namespace_and_value_routing(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    node = system6.node.removeprefix("node.")  # node.devnet.responder -> devnet.responder
    out = cli.json("request", "via node", "--node", node, "--value", "400000wei")
    assert out["routing"] == "nodes"
    stored = _stored(system6, out["request_id"])
    assert list(stored[7][1]) == [system6.node_id] and list(stored[7][0]) == []
    assert w3.eth.get_transaction(out["transactions"][0]["tx_hash"])["value"] == 400_000
    assert stored[4] == 400_000  # the value is the callback gas
    answer(system6, out["request_id"], "from the node")
    assert cli.json("response", out["request_id"])["status"] == "succeeded"

    next_second(w3)
    ns = "0x" + SYSTEM_TRUST_NAMESPACE.hex()
    out = cli.json("request", "via namespace", "--namespace", ns, "--session", str(sid))
    assert out["routing"] == "namespaces"
    assert list(_stored(system6, out["request_id"])[7][0]) == [SYSTEM_TRUST_NAMESPACE]
    answer(system6, out["request_id"], "from the namespace")

    next_second(w3)
    out = cli.json("request", "named namespace", "--namespace", "trust.acme")
    from eth_utils import keccak

    assert list(_stored(system6, out["request_id"])[7][0]) == [keccak(text="trust.acme")]


def test_request_wait_answer_arrives_during_the_wait(make_cli, system, user, w3):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    create_via_cli(cli, "20")
    # the node answers ~1 s after the request is mined, while the CLI is waiting
    m = system.manager.functions
    count_before = m.getUserRequests(user, 0, 0).call()[1]
    import threading
    import time

    done: list = []

    def node():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ids, total = m.getUserRequests(user, 0, 100).call()
            if total > count_before:
                time.sleep(1.0)
                respond(system, bytes(ids[-1]), worker=system.worker, node=system.node_id,
                        text="answered while you waited")
                done.append(bytes(ids[-1]))
                return
            time.sleep(0.1)

    t = threading.Thread(target=node, daemon=True)
    t.start()
    started = time.monotonic()
    r = cli("request", "wait for me", "--wait", "--timeout", "30", "--json")
    t.join(25)
    assert_ok(r)
    out = load_json(r)
    assert done and out["request_id"] == "0x" + done[0].hex()
    assert out["response"]["status"] == "succeeded"
    assert out["response"]["answer"] == "answered while you waited"
    assert time.monotonic() - started < 15


def test_request_wait_when_answered_before_waiting(make_cli, system6, user, monkeypatch):
    """The answer is mined between the request's receipt and the first look: no wait."""
    from dtnsess_cli import manager as client_mod

    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    original = client_mod.Client.wait_for_answer

    def answered_first(self, request_id, timeout, from_block=None, poll=1.0):
        rid = request_id if isinstance(request_id, bytes) else req_bytes(request_id)
        respond(system6, rid, worker=system6.worker, node=system6.node_id, text="already here")
        return original(self, request_id, timeout, from_block=from_block, poll=poll)

    monkeypatch.setattr(client_mod.Client, "wait_for_answer", answered_first)
    r = cli("request", "quick", "--wait", "--timeout", "5")
    assert_ok(r)
    assert "succeeded" in r.stdout and "already here" in r.stdout
    # and `response` on the answered id
    rid = system6.manager.functions.getUserRequests(user, 0, 10).call()[0][0]
    out = cli.json("response", "0x" + bytes(rid).hex())
    assert out["status"] == "succeeded" and out["manager_status"] == "succeeded"


def test_request_wait_timeout(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    r = cli("request", "nobody answers", "--wait", "--timeout", "1")
    line = assert_error(r, ExitCode.TIMEOUT, "timed out", "request 0x")
    # the request was sent once, and it is still pending
    ids, total = system6.manager.functions.getUserRequests(user, 0, 10).call()
    assert total == 1 and ("0x" + bytes(ids[0]).hex()) in line
    assert "dtnsess response" in r.stderr  # the hint says how to look later


def test_request_wait_timeout_json_still_gives_the_request_id(make_cli, system6, user):
    """The request is sent and paid for: a script must get its id on stdout, or it may resend."""
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    r = cli("request", "nobody answers", "--wait", "--timeout", "1", "--json")
    assert r.exit_code == int(ExitCode.TIMEOUT)
    out = load_json(r)
    ids, total = system6.manager.functions.getUserRequests(user, 0, 10).call()
    assert total == 1 and out["request_id"] == "0x" + bytes(ids[0]).hex()
    assert out["response"] is None and out["transactions"][0]["tx_hash"]
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error:")][0].startswith(
        "error: timed out")


def test_request_wait_failed_answer(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    m = system6.manager.functions
    import threading
    import time

    def node():
        for _ in range(200):
            ids, total = m.getUserRequests(user, 0, 10).call()
            if total:
                respond(system6, bytes(ids[0]), worker=system6.worker, node=system6.node_id,
                        failure="model overloaded")
                return
            time.sleep(0.05)

    t = threading.Thread(target=node, daemon=True)
    t.start()
    r = cli("request", "fail me", "--wait", "--timeout", "20", "--json")
    t.join(10)
    assert r.exit_code == int(ExitCode.ERROR)
    out = load_json(r)
    assert out["response"]["status"] == "failed" and out["response"]["message"] == "model overloaded"


def test_response_pending_success_failure(make_cli, system, user, w3):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    s1, s2 = create_via_cli(cli, "20"), create_via_cli(cli, "20")
    r1 = cli.json("request", "one", "--session", str(s1))["request_id"]
    r2 = cli.json("request", "two", "--session", str(s2))["request_id"]
    out = cli.json("response", r1)
    assert out["status"] == "pending" and out["answer"] is None
    assert "pending" in cli("response", r1).stdout
    answer(system, r1, "the answer")
    answer(system, r2, failure="bad prompt")
    out = cli.json("response", r1)
    assert (out["status"], out["answer"], out["session_id"]) == ("succeeded", "the answer", s1)
    r = cli("response", r1)
    assert_ok(r)
    assert "the answer" in r.stdout
    out = cli.json("response", r2)
    assert (out["status"], out["message"]) == ("failed", "bad prompt")
    # requests and requests --pending
    next_second(w3)
    r3 = cli.json("request", "three", "--session", str(s1))["request_id"]
    rows = cli.json("requests")["requests"]
    assert {x["request_id"]: x["status"] for x in rows} == {
        r1: "succeeded", r2: "failed", r3: "pending"}
    pend = cli.json("requests", "--pending")["requests"]
    assert [x["request_id"] for x in pend] == [r3] and pend[0]["session_id"] == s1
    r = cli("requests", "--pending")
    assert_ok(r)
    assert r3 in r.stdout and r1 not in r.stdout
    # another user's requests, read by a stranger
    assert len(cli.json("requests", "--user", user, role="stranger")["requests"]) == 3


def test_request_dry_run_sends_nothing(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    before = nonce(w3, user)
    out = cli.json("request", "simulated", "--dry-run")
    assert out["dry_run"] is True and out["transactions"][0]["dry_run"] is True
    assert nonce(w3, user) == before
    assert system6.manager.functions.getUserRequests(user, 0, 0).call()[1] == 0


# ----------------------------------------------------------------------------- pool, stats, sessions


def test_pool_add_get_status(make_cli, system, user, stranger, w3):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    assert cli.json("pool", "status") == {"pool_size": 0, "max_size": 5, "sessions": [],
                                          "offers": [], "grant": None}
    r = cli("pool", "add", str(sid))
    assert_ok(r)
    assert f"session {sid} added to the pool" in r.stdout
    assert cli.json("pool", "status")["sessions"] == [sid]
    out = cli.json("pool", "get", role="stranger")
    assert out["session_id"] == sid
    assert system.manager.functions.poolGrant(stranger).call() == sid
    # the taker's requests use the pooled session; its funds stay the owner's
    out = cli.json("request", "pooled", role="stranger")
    assert out["session_id"] == sid
    assert cli.json("stats", str(sid))["owner"] == user
    r = cli("pool", "status")
    assert_ok(r)
    assert "0 / 5" in r.stdout


def test_stats_and_sessions(make_cli, system, user, stranger):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    sid = create_via_cli(cli, "12.5")
    out = cli.json("stats", str(sid))
    assert out["session_id"] == sid and out["owner"] == user and out["active"] is True
    assert out["balance_units"] == str(token_units(system, "12.5"))
    assert out["dtn_balance_units"] == str(dtn_balance(system, sid))
    assert out["pending_requests"] == 0 and out["pooled"] is False
    r = cli("stats", str(sid))
    assert_ok(r)
    assert "12.5 USDT" in r.stdout
    mine = cli.json("sessions")["sessions"]
    assert [s["session_id"] for s in mine] == [sid]
    assert cli.json("sessions", role="stranger")["sessions"] == []
    theirs = cli.json("sessions", "--user", user, role="stranger")["sessions"]
    assert [s["session_id"] for s in theirs] == [sid]
    r = cli("sessions", "--user", user, role="stranger")
    assert_ok(r)
    assert "1 session" in r.stdout


# ----------------------------------------------------------------------------- cleanup, refunds


def _idle_sessions(cli, system, user, w3, amounts=("10", "20.5")) -> list:
    fund(system, user, 1000, approve=False)
    ids = [create_via_cli(cli, a) for a in amounts]
    age = system.manager.functions.maxSessionAge().call()
    increase_time(w3, age + 1)
    return ids


def test_cleanup_nothing_to_do(make_cli, system6, user, deployer, w3):
    cli = make_cli(system6)
    before = nonce(w3, deployer)
    r = cli("cleanup", role="deployer")
    assert_ok(r)
    assert r.stdout.strip() == "cleanup: nothing to do" and r.stderr == ""
    out = cli.json("cleanup", role="deployer")
    assert out["idle"] == [] and out["transactions"] == []
    assert nonce(w3, deployer) == before


def test_cleanup_closes_idle_sessions_and_credits_refunds(make_cli, system, user, stranger, w3):
    cli = make_cli(system)
    ids = _idle_sessions(cli, system, user, w3)
    expected = sum(dtn_balance(system, i) for i in ids)
    r = cli("cleanup", role="stranger")  # anyone may run it
    assert_ok(r)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    assert lines[0].startswith("cleanup: closed 2 sessions") and "refunds credited 30.5 USDT" in lines[0]
    assert all(session(system, i)["active"] is False for i in ids)
    assert system.manager.functions.claimableRefunds(user).call() == expected
    # the refunds are the owner's to withdraw
    assert cli.json("balance")["claimable_refunds_units"] == str(expected)
    before = bal(system, user)
    out = cli.json("refunds", "withdraw")
    assert out["amount_units"] == str(expected)
    assert bal(system, user) - before == expected
    assert system.manager.functions.claimableRefunds(user).call() == 0


def test_cleanup_json_is_one_object(make_cli, system6, user, w3):
    cli = make_cli(system6)
    ids = _idle_sessions(cli, system6, user, w3)
    out = cli.json("cleanup", "--max", "1")
    assert isinstance(out, dict) and out["action"] == "cleanup"
    assert [c["session_id"] for c in out["closed"]] == ids[:1]
    assert out["refunds_credited_units"] == str(token_units(system6, "10"))


def test_cleanup_dry_run(make_cli, system6, user, w3):
    cli = make_cli(system6)
    ids = _idle_sessions(cli, system6, user, w3)
    before = nonce(w3, user)
    r = cli("cleanup", "--dry-run")
    assert_ok(r)
    assert "would close 2 idle sessions" in r.stdout
    assert nonce(w3, user) == before and all(session(system6, i)["active"] for i in ids)


def test_cleanup_gas_price_above_limit(make_cli, system6, user, w3):
    cli = make_cli(system6)
    ids = _idle_sessions(cli, system6, user, w3)
    before = nonce(w3, user)
    assert w3.eth.gas_price > 1
    r = cli("cleanup", "--max-gas-price", "0.000000001")  # 1 wei
    assert_error(r, ExitCode.GAS_PRICE, "nothing sent")
    assert nonce(w3, user) == before and all(session(system6, i)["active"] for i in ids)
    # a limit above the price: it runs
    assert_ok(cli("cleanup", "--max-gas-price", "1000000"))
    assert nonce(w3, user) == before + 1


def test_cleanup_lock_held_by_another_process(make_cli, system6, user, w3, tmp_path):
    cli = make_cli(system6)
    ids = _idle_sessions(cli, system6, user, w3)
    cid, genesis = chain_of(w3)
    lock = (tmp_path / "locks" /
            f"dtnsess-cleanup-{cid}-{genesis[2:]}-{system6.manager.address.lower()}.lock")
    with lock_held_elsewhere(lock):
        before = nonce(w3, user)
        assert_error(cli("cleanup"), ExitCode.LOCKED, "another cleanup is running")
        assert nonce(w3, user) == before and all(session(system6, i)["active"] for i in ids)
    assert_ok(cli("cleanup"))
    assert not any(session(system6, i)["active"] for i in ids)


def test_refunds_withdraw_nothing(make_cli, system6, user, w3):
    cli = make_cli(system6)
    before = nonce(w3, user)
    res = cli("refunds", "withdraw")
    assert_ok(res)
    assert res.stdout.strip() == "nothing to withdraw"
    data = load_json(cli("refunds", "withdraw", "--json"))
    assert data["amount_units"] == "0" and data["transactions"] == []
    assert nonce(w3, user) == before


# ----------------------------------------------------------------------------- config


def test_config_show_redacts_the_key(make_cli, system6):
    cli = make_cli(system6)
    key = cli.key("user")
    for args in (("config", "show"), ("config", "show", "--json")):
        r = cli(*args)
        assert_ok(r)
        for form in (key, key[2:], key.lower()):
            assert form not in r.output
    rows = {row["name"]: row for row in cli.json("config", "show")["config"]}
    assert rows["key"]["value"] == "private key (redacted)"
    assert rows["key"]["source"] == "env DTNSESS_PRIVATE_KEY"
    assert rows["contract"]["value"] == system6.manager.address


def test_config_update_as_owner(make_cli, system, deployer):
    cli = make_cli(system)
    m = system.manager.functions
    out = cli.json("config", "update", "--min-balance", "12.5", "--max-age", "7200",
                   "--pool-size", "7", "--fee-per-byte-req", "0.002", "--request-timeout", "600",
                   role="deployer")
    assert m.minSessionBalance().call() == token_units(system, "12.5")
    assert m.maxSessionAge().call() == 7200 and m.sessionPoolSize().call() == 7
    assert m.feePerByteReq().call() == token_units(system, "0.002")
    assert m.feePerByteRes().call() == token_units(system, "0.001")  # unchanged
    assert m.requestTimeout().call() == 600
    assert out["config"]["min_session_balance_units"] == str(token_units(system, "12.5"))
    contract = cli.json("config", "contract")
    assert contract["max_session_age"] == 7200 and contract["owner"] == deployer


def test_config_update_as_stranger_is_refused_before_sending(make_cli, system6, stranger, w3):
    cli = make_cli(system6)
    before = nonce(w3, stranger)
    r = cli("config", "update", "--max-age", "1", role="stranger")
    assert_error(r, ExitCode.AUTH, "not the contract owner", secrets=(cli.key("stranger"),))
    assert nonce(w3, stranger) == before
    assert system6.manager.functions.maxSessionAge().call() == 24 * 3600


# ----------------------------------------------------------------------------- deploy, doctor


def test_deploy_and_write_env(make_cli, system6, deployer, w3, tmp_path):
    cli = make_cli(system6)
    r = cli("deploy", "--ai", system6.router.address, "--write-env", role="deployer")
    assert_ok(r)
    env_text = (tmp_path / ".env").read_text()
    addr = env_text.split("DTNSESS_CONTRACT=", 1)[1].split()[0]
    assert f"deployed at {addr}" in r.stdout
    assert w3.eth.get_code(addr) and addr != system6.manager.address
    assert cli.key("deployer")[2:] not in env_text
    # the next command picks the contract up from ./.env
    out = cli.json("config", "show", env={"DTNSESS_CONTRACT": None})
    rows = {row["name"]: row for row in out["config"]}
    assert rows["contract"]["value"] == addr and rows["contract"]["source"] == ".env DTNSESS_CONTRACT"
    cfg = cli.json("config", "contract", role="deployer", env={"DTNSESS_CONTRACT": None})
    assert cfg["manager"] == addr and cfg["owner"] == deployer and cfg["ai"] == system6.router.address


def test_deploy_json(make_cli, system18, w3):
    cli = make_cli(system18)
    out = cli.json("deploy", "--ai", system18.router.address)
    assert w3.eth.get_code(out["contract"])
    assert out["fee_token"] == system18.token.address


def test_doctor(make_cli, system6, w3):
    cli = make_cli(system6)
    r = cli("doctor")
    assert_ok(r)
    assert "FAIL" not in r.stdout
    out = cli.json("doctor")
    assert out["ok"] is True
    # the token's address: code, but not an AdvancedSessionManager
    r = cli("doctor", env={"DTNSESS_CONTRACT": system6.token.address})
    assert r.exit_code != 0 and "FAIL" in r.stdout
    no_code = "0x" + "12" * 20
    r = cli("doctor", "--json", env={"DTNSESS_CONTRACT": no_code})
    assert r.exit_code != 0
    out = load_json(r)
    assert out["ok"] is False
    assert any(c["name"] == "contract" and c["ok"] is False for c in out["checks"])


# ----------------------------------------------------------------------------- confirmation


def test_not_a_terminal_does_not_ask(make_cli, system6, user, w3):
    cli = make_cli(system6)
    before = nonce(w3, user)
    r = cli("approve", "1", input="n\n")  # stdin is not a terminal: the "n" is never read
    assert_ok(r)
    assert nonce(w3, user) == before + 1 and "Send this transaction" not in r.output


@pytest.fixture
def terminal(monkeypatch):
    """Pretend stdin/stderr are a terminal (CliRunner's streams are not)."""
    from dtnsess_cli.render import Renderer

    monkeypatch.setattr(Renderer, "interactive", property(lambda self: True))


def test_confirmation_no_sends_nothing(make_cli, system6, user, w3, terminal):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    before, tokens = nonce(w3, user), bal(system6, user)
    r = cli("create", "50", input="n\n")
    assert r.exit_code == int(ExitCode.ABORTED), r.stderr
    # NOTE: CliRunner does not echo the typed answer, so the error follows the prompt on its line
    assert "Send this transaction? [y/N]:" in r.stderr
    assert r.stderr.rstrip().endswith("error: aborted: approve 50 USDT for the session manager not sent")
    assert r.stdout.strip() == "n" and "Traceback" not in r.output  # the runner echoes input to stdout
    assert "gas: ~" in r.stderr and "ETH" in r.stderr
    assert nonce(w3, user) == before and bal(system6, user) == tokens
    # yes: sent; --yes: not asked
    r = cli("approve", "1", input="y\n")
    assert_ok(r)
    assert nonce(w3, user) == before + 1
    r = cli("approve", "2", "--yes")
    assert_ok(r)
    assert "Send this transaction?" not in r.stderr and nonce(w3, user) == before + 2


# ----------------------------------------------------------------------------- --json everywhere


def test_every_read_command_prints_one_json_document(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    rid = cli.json("request", "json")["request_id"]
    for args in (["balance"], ["sessions"], ["stats", str(sid)], ["requests"],
                 ["requests", "--pending"], ["response", rid], ["pool", "status"],
                 ["config", "show"], ["config", "contract"], ["doctor"], ["cleanup"]):
        r = cli(*args, "--json")
        assert_ok(r)
        load_json(r)
    # global options also work before the command
    r = cli("--json", "balance")
    assert_ok(r)
    assert load_json(r)["address"] == user


def test_dry_run_sends_nothing_for_every_write(make_cli, system6, user, deployer, w3):
    cli = make_cli(system6)
    fund(system6, user, 1000, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("approve", "--max")
    before = {a: nonce(w3, a) for a in (user, deployer)}
    tokens = bal(system6, user)
    writes = [(["approve", "5"], "user"), (["create", "20"], "user"), (["renew", str(sid), "5"], "user"),
              (["close", str(sid)], "user"), (["close", "--all"], "user"), (["request", "hi"], "user"),
              (["pool", "add", str(sid)], "user"),
              (["config", "update", "--pool-size", "6"], "deployer"),
              (["deploy", "--ai", system6.router.address], "deployer")]
    for args, role in writes:
        out = cli.json(*args, "--dry-run", role=role)
        assert out["dry_run"] is True, args
        assert out["transactions"] and all(t["dry_run"] and "tx_hash" not in t
                                           for t in out["transactions"]), args
    assert {a: nonce(w3, a) for a in (user, deployer)} == before
    assert bal(system6, user) == tokens and session(system6, sid)["active"] is True
    assert system6.manager.functions.sessionPoolSize().call() == 5
    r = cli("close", str(sid), "--dry-run")
    assert_ok(r)
    assert r.stdout.startswith("[dry run]") and "would send: close session" in r.stdout
