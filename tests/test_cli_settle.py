"""Answers whose callback failed (issue 7): `requests` shows them, `settle` records them, and
`close`/`renew` settle them by themselves; a close blocked by genuinely unanswered requests marks
the session closing and says when to retry; `close --all` closes what it can.

A starved callback: the request's --value is the callback gas (1 wei per gas unit), so the
value 30000 (above the CLI's floor, 27000; the CLI warns) with a long answer (~4 KB needs ~48000 gas) makes the
router's call of the manager's onSuccess run out of gas. The router keeps the
SUCCESS answer (SuccessCallbackFailed) while the manager still counts the request pending, as on
the deployed DTN.
"""

from __future__ import annotations

import pytest

from cli_helpers import assert_error, assert_ok, create_via_cli, load_json, nonce, token_units
from dtnsess_cli.errors import ExitCode
from dtnsess_cli.devnet.localdtn import respond
from helpers import (
    REQ_PENDING,
    REQ_SUCCEEDED,
    bal,
    dtn_balance,
    events,
    fund,
    increase_time,
    latest_ts,
    next_second,
    request_status,
    session,
)
from test_cli_errors import fails

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")

STARVED = "30000"  # wei = callback gas: the CLI takes it (warning), too little for a long answer
LONG_ANSWER = "an answer " * 400  # 4000 bytes


def rid_bytes(rid: str) -> bytes:
    return bytes.fromhex(rid[2:])


def answer(system, rid: str, text: str = "an answer") -> dict:
    return respond(system, rid_bytes(rid), worker=system.worker, node=system.node_id, text=text)


def starved(cli, system, *args: str, role: str = "user") -> str:
    """A request whose answer arrives but whose callback runs out of gas; its id."""
    rid = cli.json("request", "starve me", "--value", STARVED, *args, role=role)["request_id"]
    rcpt = answer(system, rid, LONG_ANSWER)
    assert events(system.router, "SuccessCallbackFailed", rcpt), "the callback did not fail"
    assert request_status(system, rid_bytes(rid)) == REQ_PENDING
    next_second(system.w3)
    return rid


def pending(cli, system, *args: str, role: str = "user") -> str:
    """A request nobody answers; its id."""
    rid = cli.json("request", "nobody answers", *args, role=role)["request_id"]
    next_second(system.w3)
    return rid


def closing_fields(system, sid: int) -> dict:
    names = [c["name"] for c in next(e for e in system.manager.abi if e.get("name") == "getSession")
             ["outputs"][0]["components"]]
    return dict(zip(names, system.manager.functions.getSession(sid).call()))


# ----------------------------------------------------------------------------- requests, response


def test_requests_and_response_show_answered_callback_failed(make_cli, system, user):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    create_via_cli(cli, "20")
    rid = starved(cli, system)
    waiting = pending(cli, system)
    rows = {r["request_id"]: r["status"] for r in cli.json("requests")["requests"]}
    assert rows == {rid: "answered, callback failed", waiting: "pending"}
    # both still block a close: both are "pending" work
    assert {r["request_id"] for r in cli.json("requests", "--pending")["requests"]} == {rid, waiting}
    r = cli("requests")
    assert_ok(r)
    assert "answered, callback failed" in r.stdout and "dtnsess settle --all" in r.stdout
    out = cli.json("response", rid)
    assert out["status"] == "succeeded" and out["manager_status"] == "pending"
    assert f"dtnsess settle {rid}" in out["note"]
    assert out["answer"] == LONG_ANSWER


# ----------------------------------------------------------------------------- settle


def test_settle_one(make_cli, system, user, w3):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    rid = starved(cli, system)
    waiting = pending(cli, system)
    assert session(system, sid)["pendingRequests"] == 2
    # dry run: nothing sent
    before = nonce(w3, user)
    out = cli.json("settle", rid, "--dry-run")
    assert out["settled"] == [{"request_id": rid, "session_id": sid, "status": "succeeded"}]
    assert nonce(w3, user) == before and request_status(system, rid_bytes(rid)) == REQ_PENDING

    out = cli.json("settle", rid)
    assert out["settled"] == [{"request_id": rid, "session_id": sid, "status": "succeeded"}]
    assert len(out["transactions"]) == 1
    assert request_status(system, rid_bytes(rid)) == REQ_SUCCEEDED
    assert session(system, sid)["pendingRequests"] == 1
    assert cli.json("response", rid)["manager_status"] == "succeeded"

    # already settled: exit 0, nothing sent; not answered yet: refused, nothing sent
    before = nonce(w3, user)
    r = cli("settle", rid)
    assert_ok(r)
    assert "already settled (succeeded)" in r.stdout and nonce(w3, user) == before
    fails(cli, ["settle", waiting], ExitCode.REVERTED, "no answer yet")
    fails(cli, ["settle", "0x" + "ab" * 32], ExitCode.INPUT, "unknown")
    fails(cli, ["settle", "0x12"], ExitCode.INPUT, "64 hex digits")
    for args in (["settle"], ["settle", rid, "--all"]):  # usage errors (issue 15), nothing sent
        r = cli(*args)
        assert r.exit_code == int(ExitCode.USAGE) and "REQUEST_ID or --all" in r.output
    assert nonce(w3, user) == before


def test_settle_all_finds_own_and_takers_requests(make_cli, system6, user, stranger, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    own = [starved(cli, system6), starved(cli, system6)]
    cli.json("pool", "add", str(sid))
    cli.json("pool", "get", role="stranger")
    taker = starved(cli, system6, role="stranger")
    waiting = pending(cli, system6)
    assert session(system6, sid)["pendingRequests"] == 4

    before = nonce(w3, user)
    out = cli.json("settle", "--all", "--dry-run")
    assert {x["request_id"] for x in out["settled"]} == set(own) | {taker}
    assert nonce(w3, user) == before

    r = cli("settle", "--all")
    assert_ok(r)
    assert "settled 3 requests" in r.stdout and nonce(w3, user) == before + 1  # one transaction
    for rid in own + [taker]:
        assert request_status(system6, rid_bytes(rid)) == REQ_SUCCEEDED
        assert rid in r.stdout
    assert request_status(system6, rid_bytes(waiting)) == REQ_PENDING
    assert session(system6, sid)["pendingRequests"] == 1

    # nothing left to settle: exit 0, nothing sent
    out = cli.json("settle", "--all")
    assert out["settled"] == [] and out["transactions"] == [] and out["note"] == "nothing to settle"
    assert nonce(w3, user) == before + 1


def test_settle_all_as_a_taker_finds_its_own(make_cli, system6, user, stranger, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("pool", "add", str(sid))
    cli.json("pool", "get", role="stranger")
    rid = starved(cli, system6, role="stranger")
    out = cli.json("settle", "--all", role="stranger")
    assert [x["request_id"] for x in out["settled"]] == [rid]
    assert session(system6, sid)["pendingRequests"] == 0


# ----------------------------------------------------------------------------- close, renew


def test_close_settles_answered_requests_then_closes(make_cli, system, user, w3):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    rid = starved(cli, system)
    remaining = dtn_balance(system, sid)

    before = nonce(w3, user)
    out = cli.json("close", str(sid), "--dry-run")
    assert out["settled"][0]["request_id"] == rid and out["closed"] == []
    assert "only after the settle" in out["note"]
    assert nonce(w3, user) == before

    tokens = bal(system, user)
    out = cli.json("close", str(sid))
    assert [t["description"].split()[0] for t in out["transactions"]] == ["settle", "close"]
    assert out["settled"] == [{"request_id": rid, "session_id": sid, "status": "succeeded"}]
    assert out["closed"][0]["session_id"] == sid
    assert out["closed"][0]["refund_units"] == str(remaining)
    assert bal(system, user) - tokens == remaining
    assert session(system, sid)["active"] is False
    assert request_status(system, rid_bytes(rid)) == REQ_SUCCEEDED


def test_renew_settles_answered_requests_then_renews(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    rid = starved(cli, system6)
    out = cli.json("renew", str(sid), "5")
    assert out["settled"][0]["request_id"] == rid
    assert out["new_balance_units"]
    assert request_status(system6, rid_bytes(rid)) == REQ_SUCCEEDED
    assert session(system6, sid)["pendingRequests"] == 0


def test_close_blocked_marks_the_session_closing_and_says_when(make_cli, system6, user, stranger,
                                                                w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("pool", "add", str(sid))
    cli.json("pool", "get", role="stranger")
    answered = starved(cli, system6)
    pending(cli, system6)
    deadline = closing_fields(system6, sid)["closableAt"]
    assert deadline

    # dry run: the settle is simulated, nothing sent
    before = nonce(w3, user)
    out = cli.json("close", str(sid), "--dry-run")
    assert nonce(w3, user) == before and out["dry_run"] is True

    r = cli("close", str(sid), "--json")
    assert r.exit_code == int(ExitCode.REVERTED), r.output
    assert "Traceback" not in r.output
    out = load_json(r)
    assert [t["description"].split()[0] for t in out["transactions"]] == ["settle", "begin"]
    assert out["closing"] == {"session_id": sid, "pending": 1, "closable_at": deadline,
                              "began": True}
    assert out["error"]["revert"] == "RequestsPending"
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and f"session {sid} is closing" in err[0]
    assert "no new requests from others" in err[0] and "close it after" in err[0]
    assert request_status(system6, rid_bytes(answered)) == REQ_SUCCEEDED
    st = closing_fields(system6, sid)
    assert st["closing"] is True and st["active"] is True and st["pendingRequests"] == 1
    # others can no longer add requests; the taker's grant ended, the pool no longer has it
    assert system6.manager.functions.getGrant(stranger).call()[0] == 0
    assert system6.manager.functions.getPoolSessions().call() == []

    # again, before the deadline: one error line, nothing sent
    before = nonce(w3, user)
    line = fails(cli, ["close", str(sid)], ExitCode.REVERTED, "is closing", "close it after")
    assert "1 unanswered request" in line and nonce(w3, user) == before
    r = cli("stats", str(sid))
    assert_ok(r)
    assert "closing" in r.stdout

    # after the deadline the close works: the refund is what DTN still holds
    increase_time(w3, deadline - latest_ts(w3) + 1)
    remaining = dtn_balance(system6, sid)
    tokens = bal(system6, user)
    out = cli.json("close", str(sid))
    assert out["closed"][0]["refund_units"] == str(remaining)
    assert bal(system6, user) - tokens == remaining


def test_close_all_partial_then_nothing_closable(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    busy = create_via_cli(cli, "20")
    free = create_via_cli(cli, "30")
    pending(cli, system6, "--session", str(busy))
    deadline = closing_fields(system6, busy)["closableAt"]

    r = cli("close", "--all")
    assert_ok(r)
    assert "closed 1 session" in r.stdout and f"session {busy}: skipped" in r.stdout
    assert session(system6, free)["active"] is False and session(system6, busy)["active"] is True

    # the skipped one is reported with its retry time by the contract's SessionCloseSkipped
    fund(system6, user, 100, approve=False)
    free2 = create_via_cli(cli, "20")
    out = cli.json("close", "--all")
    assert [c["session_id"] for c in out["closed"]] == [free2]
    assert out["skipped"] == [{"session_id": busy, "pending": 1, "retry_after": deadline}]

    # nothing closable: one error line with the retry time, exit 7, nothing sent
    before = nonce(w3, user)
    fails(cli, ["close", "--all"], ExitCode.REVERTED, "no session can close yet",
          f"session {busy} has unanswered requests until")
    assert nonce(w3, user) == before


def test_sessions_show_remaining_and_closable(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    pending(cli, system6)
    s = cli.json("stats", str(sid))
    deadline = closing_fields(system6, sid)["closableAt"]
    assert s["closable_at"] == deadline and s["closing"] is False and s["pending_since"] > 0
    r = cli("sessions")
    assert_ok(r)
    assert "remaining (DTN)" in r.stdout and "closable" in r.stdout


def test_renew_settles_then_refuses_while_others_are_unanswered(make_cli, system6, user, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    rid = starved(cli, system6)
    pending(cli, system6)
    deadline = closing_fields(system6, sid)["closableAt"]
    tokens = bal(system6, user)
    r = cli("renew", str(sid), "5", "--json")
    assert r.exit_code == int(ExitCode.REVERTED), r.output
    out = load_json(r)  # what was sent (the settle), then the refusal on stderr
    assert [x["request_id"] for x in out["settled"]] == [rid] and len(out["transactions"]) == 1
    assert out["error"]["revert"] == "RequestsPending"
    assert "pending request" in r.stderr and "retry after" in r.stderr
    assert bal(system6, user) == tokens and session(system6, sid)["pendingRequests"] == 1
    # nothing left to settle: refused before anything is sent, with the same deadline
    before = nonce(w3, user)
    fails(cli, ["renew", str(sid), "5"], ExitCode.REVERTED, "retry after")
    assert nonce(w3, user) == before and closing_fields(system6, sid)["closableAt"] == deadline


def test_close_cancel_reopens_and_renew_of_a_closing_session_is_refused(make_cli, system6, user, w3):
    """Issue 14: beginClose can be undone (`close ID --cancel`); renew refuses a closing session
    before sending anything."""
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    pending(cli, system6, "--session", str(sid))
    r = cli("close", str(sid))
    assert r.exit_code == int(ExitCode.REVERTED)
    assert closing_fields(system6, sid)["closing"] is True

    before = nonce(w3, user)
    fails(cli, ["renew", str(sid), "5"], ExitCode.INPUT, "is closing", "--cancel")

    out = cli.json("close", str(sid), "--cancel")
    assert out["session_id"] == sid and len(out["transactions"]) == 1
    assert closing_fields(system6, sid)["closing"] is False
    fails(cli, ["close", str(sid), "--cancel"], ExitCode.INPUT, "not closing")
    assert nonce(w3, user) == before + 1
    # open again: renew is refused only by the pending request now, as for any session
    fails(cli, ["renew", str(sid), "5"], ExitCode.REVERTED, "1 pending request")
