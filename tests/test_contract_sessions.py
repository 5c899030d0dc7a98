"""AdvancedSessionManager: create, renew, close, closeAll, getOrCreate, pending-request guard."""

from __future__ import annotations

import pytest

from dtnsess_cli.devnet.localdtn import transact
from helpers import (
    answer,
    ask,
    assert_reverts,
    bal,
    call_from,
    create,
    dtn_balance,
    events,
    fund,
    increase_time,
    mine,
    no_automine,
    one_event,
    send,
    receipt,
    session,
    tx_revert,
)

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")


def test_create_moves_tokens_to_dtn_session(system, user):
    fund(system, user, 100)
    before = bal(system, user)
    sid, r = create(system, user, 50)
    amount = 50 * system.unit
    assert one_event(system.manager, "SessionCreated", r) == {"sessionId": sid, "owner": user, "balance": amount}
    started = one_event(system.router, "SessionStarted", r)
    assert started["owner"] == system.manager.address and started["balance"] == amount
    assert bal(system, user) == before - amount
    s = session(system, sid)
    assert s["dtnSessionId"] == started["sessionId"]
    assert (s["owner"], s["balance"], s["active"], s["hasDtnBalance"], s["dtnBalance"]) == (
        user, amount, True, True, amount)
    assert system.router.functions.getSessionBalance(s["dtnSessionId"]).call() == amount
    assert bal(system, system.manager.address) == 0


def test_renew_raises_dtn_balance_and_keeps_id(system, user, stranger):
    fund(system, user, 200)
    sid, _ = create(system, user, 50)
    old_dtn = session(system, sid)["dtnSessionId"]
    user_before = bal(system, user)

    r = transact(system.w3, system.manager.functions.renewSession(sid, 25 * system.unit), user)

    assert one_event(system.manager, "SessionRenewed", r) == {"sessionId": sid, "newBalance": 75 * system.unit}
    s = session(system, sid)
    assert s["sessionId"] == sid and s["active"]
    assert s["dtnSessionId"] != old_dtn
    assert system.router.functions.getSessionBalance(s["dtnSessionId"]).call() == 75 * system.unit
    assert s["dtnBalance"] == 75 * system.unit and s["balance"] == 75 * system.unit
    assert system.router.functions.getSessionBalance(old_dtn).call() == 0
    assert bal(system, user) == user_before - 25 * system.unit
    assert system.manager.functions.getUserSessionCount(user).call() == 1
    assert system.manager.functions.nextSessionId().call() == sid + 1

    # The documented example lost the renewal to the next startUserSession caller: nothing is left to claim.
    stranger_before = bal(system, stranger)
    assert_reverts(call_from(system.router.functions.startUserSession(), stranger), "InvalidAmount")
    assert bal(system, stranger) == stranger_before
    assert bal(system, system.router.address) == system.router.functions.accountedBalance().call()


def test_renew_after_a_charge_carries_the_remaining_balance(system, user):
    fund(system, user, 200)
    sid, _ = create(system, user, 50)
    rid, _ = ask(system, user)
    answer(system, rid, "x" * 100)
    remaining = dtn_balance(system, sid)
    assert remaining < 50 * system.unit

    transact(system.w3, system.manager.functions.renewSession(sid, 25 * system.unit), user)

    assert dtn_balance(system, sid) == remaining + 25 * system.unit
    assert session(system, sid)["balance"] == remaining + 25 * system.unit
    # the renewed session still answers requests
    rid2, r = ask(system, user, "again")
    assert one_event(system.manager, "AIRequestSubmitted", r)["sessionId"] == sid
    answer(system, rid2)
    assert system.manager.functions.requests(rid2).call()[3] == 2


def test_renew_rejects(system, user, stranger):
    fund(system, user, 200)
    fund(system, stranger, 100)
    sid, _ = create(system, user, 50)
    m = system.manager.functions
    assert_reverts(call_from(m.renewSession(sid, system.unit), stranger), "NotSessionOwner")
    assert_reverts(call_from(m.renewSession(sid, 0), user), "ZeroAmount")
    transact(system.w3, m.closeSession(sid), user)
    assert_reverts(call_from(m.renewSession(sid, system.unit), user), "SessionNotActive")


def test_close_returns_exactly_dtn_remaining_balance(system, user, worker):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    rid, _ = ask(system, user, "p" * 300)
    worker_before = bal(system, worker)
    answer(system, rid, "a" * 500)
    charged = bal(system, worker) - worker_before
    assert 0 < charged <= system.unit
    remaining = dtn_balance(system, sid)
    assert remaining == 50 * system.unit - charged
    assert session(system, sid)["dtnBalance"] == remaining

    before = bal(system, user)
    r = transact(system.w3, system.manager.functions.closeSession(sid), user)

    assert bal(system, user) - before == remaining
    assert one_event(system.manager, "SessionClosed", r) == {"sessionId": sid, "owner": user, "refund": remaining}
    assert one_event(system.router, "SessionClosed", r)["remainingBalance"] == remaining
    assert bal(system, system.manager.address) == 0
    assert system.manager.functions.claimableRefunds(user).call() == 0
    s = session(system, sid)
    assert (s["active"], s["balance"], s["dtnBalance"]) == (False, 0, 0)
    assert system.manager.functions.getUserActiveSessions(user).call() == []
    assert system.manager.functions.getActiveSessions(0, 10).call() == [[], 0]


def test_close_rejects(system, user, stranger):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    m = system.manager.functions
    assert_reverts(call_from(m.closeSession(sid), stranger), "NotSessionOwner")
    assert_reverts(call_from(m.closeSession(sid + 1), user), "NotSessionOwner")
    transact(system.w3, m.closeSession(sid), user)
    assert_reverts(call_from(m.closeSession(sid), user), "SessionNotActive")


def test_close_by_blocked_owner_credits_the_refund(system, deployer, user):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    transact(system.w3, system.token.functions.setBlocked(user, True), deployer)
    before = bal(system, user)

    r = transact(system.w3, system.manager.functions.closeSession(sid), user)

    amount = 50 * system.unit
    assert one_event(system.manager, "RefundCredited", r) == {"sessionId": sid, "owner": user, "amount": amount}
    assert one_event(system.manager, "SessionClosed", r)["refund"] == amount
    assert bal(system, user) == before
    assert system.manager.functions.claimableRefunds(user).call() == amount
    assert bal(system, system.manager.address) == amount
    assert_reverts(call_from(system.manager.functions.withdrawRefunds(), user), "AddressBlocked", user)

    transact(system.w3, system.token.functions.setBlocked(user, False), deployer)
    r = transact(system.w3, system.manager.functions.withdrawRefunds(), user)
    assert one_event(system.manager, "RefundWithdrawn", r) == {"owner": user, "amount": amount}
    assert bal(system, user) == before + amount
    assert system.manager.functions.claimableRefunds(user).call() == 0
    assert_reverts(call_from(system.manager.functions.withdrawRefunds(), user), "NothingToWithdraw")


def test_close_all_sessions_refunds_each(system, user, accounts):
    other = accounts[4]
    fund(system, user, 200)
    fund(system, other, 100)
    ids = [create(system, user, n)[0] for n in (10, 20, 30)]
    other_sid, _ = create(system, other, 10)
    rid, _ = ask(system, user, sid=ids[1])
    answer(system, rid, "y" * 200)
    expected = {sid: dtn_balance(system, sid) for sid in ids}
    assert expected[ids[1]] < 20 * system.unit
    before = bal(system, user)

    r = transact(system.w3, system.manager.functions.closeAllSessions(), user)

    closed = {e["sessionId"]: e["refund"] for e in events(system.manager, "SessionClosed", r)}
    assert closed == expected
    assert all(e["owner"] == user for e in events(system.manager, "SessionClosed", r))
    assert bal(system, user) - before == sum(expected.values())
    assert system.manager.functions.getUserActiveSessions(user).call() == []
    assert session(system, other_sid)["active"]  # someone else's session is untouched
    assert system.manager.functions.getActiveSessions(0, 10).call() == [[other_sid], 1]
    # nothing left: a second call is a no-op
    r = transact(system.w3, system.manager.functions.closeAllSessions(), user)
    assert events(system.manager, "SessionClosed", r) == []


def test_get_or_create_session(system, user):
    fund(system, user, 100)
    m = system.manager.functions
    minimum = m.minSessionBalance().call()
    before = bal(system, user)

    r = transact(system.w3, m.getOrCreateSession(), user)
    created = one_event(system.manager, "SessionCreated", r)
    assert created["balance"] == minimum == 10 * system.unit and created["owner"] == user
    assert bal(system, user) == before - minimum
    sid = created["sessionId"]
    assert dtn_balance(system, sid) == minimum

    increase_time(system.w3, 100)
    r = transact(system.w3, m.getOrCreateSession(), user)
    assert events(system.manager, "SessionCreated", r) == []
    assert m.getUserSessionCount(user).call() == 1
    assert bal(system, user) == before - minimum
    assert session(system, sid)["lastUsed"] == system.w3.eth.get_block(r["blockNumber"])["timestamp"]
    assert m.getOrCreateSession().call({"from": user}) == sid


# ----------------------------------------------------------------------------- pending guard


@pytest.mark.parametrize("op", ["close", "renew"])
def test_pending_request_blocks_close_and_renew_until_timeout(system, user, op):
    w3 = system.w3
    fund(system, user, 200)
    sid, _ = create(system, user, 50)
    rid, r = ask(system, user)
    m = system.manager.functions
    fn = m.closeSession(sid) if op == "close" else m.renewSession(sid, 5 * system.unit)
    requested_at = w3.eth.get_block(r["blockNumber"])["timestamp"]
    timeout = m.requestTimeout().call()
    retry_after = requested_at + timeout

    assert_reverts(call_from(fn, user), "RequestsPending", sid, 1, retry_after)

    # one second before the timeout: still refused (a mined transaction, not just a simulation)
    with no_automine(w3):
        h = send(fn, user, gas=1_000_000)
        mine(w3, retry_after - 1)
    rc = receipt(w3, h)
    assert rc["status"] == 0
    assert tx_revert(w3, h).name == "RequestsPending"
    assert session(system, sid)["active"] and session(system, sid)["pendingRequests"] == 1

    before = bal(system, user)
    with no_automine(w3):
        h = send(fn, user, gas=1_000_000)
        mine(w3, retry_after)
    assert receipt(w3, h)["status"] == 1
    if op == "close":
        assert not session(system, sid)["active"]
        assert bal(system, user) - before == 50 * system.unit
    else:
        assert session(system, sid)["dtnBalance"] == 55 * system.unit
        assert session(system, sid)["pendingRequests"] == 0
    # the old request is stranded: its DTN session is gone, the node cannot answer
    assert_reverts(lambda: answer(system, rid), "InvalidSession")


def test_answered_request_does_not_block_close(system, user):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    rid, _ = ask(system, user)
    assert session(system, sid)["pendingRequests"] == 1
    answer(system, rid)
    assert session(system, sid)["pendingRequests"] == 0
    transact(system.w3, system.manager.functions.closeSession(sid), user)
    assert not session(system, sid)["active"]
