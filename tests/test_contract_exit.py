"""Issue 14: the owner's exit holds against everyone; beginClose can be undone.

Each test fails on the contract at 5e555a9 and passes now.
"""

from __future__ import annotations

import pytest

from dtnsess_cli.devnet.localdtn import deploy, transact
from helpers import (
    CALLBACK_GAS,
    answer,
    ask,
    assert_reverts,
    bal,
    call_from,
    create,
    default_routing,
    events,
    fund,
    increase_time,
    latest_ts,
    mine,
    next_second,
    no_automine,
    one_event,
    receipt,
    send,
    session,
)

pytestmark = pytest.mark.usefixtures("conserved")


def _attacked_session(system, owner, attacker_eoa):
    """`owner` pools a session; a StreakAttacker contract takes it. Returns (session id, attacker)."""
    w3, m = system.w3, system.manager.functions
    fund(system, owner, 200)
    sid, _ = create(system, owner, 50)
    transact(w3, m.addToPoolWithLimit(sid, 40 * system.unit, False), owner)
    attacker = deploy(w3, "StreakAttacker", attacker_eoa, system.manager.address)
    transact(w3, attacker.functions.take(), attacker_eoa)
    return sid, attacker


def _settle_and_request(system, attacker, attacker_eoa, sid):
    """One atomic settle + request by the attacker contract; the node answers the new request
    (its callback starves: no callback gas), so only a settle can uncount it."""
    r = transact(system.w3, attacker.functions.settleAndRequest(sid, system.model, default_routing()),
                 attacker_eoa)
    rid = attacker.functions.last().call()
    answer(system, rid)
    assert session(system, sid)["pendingRequests"] == 1
    return r


def test_settle_and_request_streak_cannot_hold_plain_close(system, user, stranger):
    """Measured on 5e555a9: close blocked 3,340 s with 3 resets (requestTimeout 900 s). Now the
    streak keeps the first deadline: the owner's plain closeSession succeeds at it, at most
    requestTimeout after the owner's first attempt, while the attacker keeps resetting."""
    w3, m = system.w3, system.manager.functions
    timeout = m.requestTimeout().call()
    sid, attacker = _attacked_session(system, user, stranger)
    _settle_and_request(system, attacker, stranger, sid)
    first_attempt = latest_ts(w3)
    dec = assert_reverts(call_from(m.closeSession(sid), user), "RequestsPending", sid, 1)
    deadline = dec.args[2]
    assert deadline <= first_attempt + timeout
    # the attacker resets the streak four times before the deadline, always in one transaction
    for _ in range(4):
        increase_time(w3, timeout // 5)
        _settle_and_request(system, attacker, stranger, sid)
        assert session(system, sid)["closableAt"] == deadline
    # and once more at the deadline itself, in the same block as the owner's close, ahead of it
    before = bal(system, user)
    with no_automine(w3):
        send(attacker.functions.settleAndRequest(sid, system.model, default_routing()), stranger,
             gas=1_500_000)
        h = send(m.closeSession(sid), user, gas=1_000_000)
        mine(w3, deadline)
    r = receipt(w3, h)
    assert r["status"] == 1
    assert w3.eth.get_block(r["blockNumber"])["timestamp"] - first_attempt <= timeout
    refund = one_event(system.manager, "SessionClosed", r)["refund"]
    assert refund > 0 and bal(system, user) - before == refund
    assert not session(system, sid)["active"]


def test_streak_after_the_window_starts_a_new_deadline(system, user, stranger):
    """Restarts within requestTimeout of the deadline keep it (the owner may close all that
    while); one requestTimeout or more after it, a streak is new, with its own deadline."""
    w3, m = system.w3, system.manager.functions
    timeout = m.requestTimeout().call()
    sid, attacker = _attacked_session(system, user, stranger)
    _settle_and_request(system, attacker, stranger, sid)
    deadline = session(system, sid)["closableAt"]
    increase_time(w3, deadline + timeout - latest_ts(w3) - 2)
    _settle_and_request(system, attacker, stranger, sid)
    assert session(system, sid)["closableAt"] == deadline
    m.closeSession(sid).call({"from": user})  # closable now, with a request pending
    increase_time(w3, 2)
    r = _settle_and_request(system, attacker, stranger, sid)
    started = w3.eth.get_block(r["blockNumber"])["timestamp"]
    assert started >= deadline + timeout
    s = session(system, sid)
    assert (s["pendingSince"], s["closableAt"]) == (started, started + timeout)
    assert_reverts(call_from(m.closeSession(sid), user), "RequestsPending", sid, 1, started + timeout)


def test_cancel_close_and_renew_after_begin_close(system, user, stranger):
    """beginClose could not be undone, and renew after it kept the session "closing" (out of the
    pool and of automatic selection) with the new money in it. Now renew refuses a closing
    session, and the owner can cancel the close."""
    w3, m = system.w3, system.manager.functions
    fund(system, user, 200)
    sid, _ = create(system, user, 20)
    ask_rid = m.makeAIRequestInSession(sid, "pending", system.model, default_routing())
    transact(w3, ask_rid, user, value=CALLBACK_GAS)
    transact(w3, m.beginClose(sid), user)
    assert session(system, sid)["closing"]
    assert_reverts(call_from(m.renewSession(sid, 10 * system.unit), user), "SessionIsClosing", sid)
    assert_reverts(call_from(m.cancelClose(sid), stranger), "NotSessionOwner", sid, stranger)
    r = transact(w3, m.cancelClose(sid), user)
    assert one_event(system.manager, "SessionCloseCancelled", r) == {"sessionId": sid}
    assert not session(system, sid)["closing"]
    assert_reverts(call_from(m.cancelClose(sid), user), "NotClosing", sid)
    # open again: it may be offered and it is the owner's current session again
    transact(w3, m.addToPool(sid), user)
    assert sid in m.getPoolSessions().call()
    assert events(system.manager, "SessionCloseCancelled", r)


def test_offer_budget_spans_every_grant_and_re_take(system, user, stranger):
    """On 5e555a9 releaseGrant then getFromPool started a fresh limit (one address spent 30
    tokens of a session pooled with a limit of 10). Now the limit is the offer's budget: what
    every grant spends comes out of it, and a spent offer leaves the pool."""
    w3, m = system.w3, system.manager.functions
    fee = m.totalFeePerRes().call()
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    transact(w3, m.addToPoolWithLimit(sid, 3 * fee, False), user)

    def ask_taker(prompt):
        next_second(w3)
        fn = m.makeAIRequestInSession(sid, prompt, system.model, default_routing())
        return transact(w3, fn, stranger, value=CALLBACK_GAS)

    transact(w3, m.getFromPool(), stranger)
    ask_taker("one")
    ask_taker("two")
    assert m.getGrant(stranger).call()[:3] == [sid, fee, False]
    transact(w3, m.releaseGrant(), stranger)
    assert m.getPoolOffer(sid).call()[2] == fee and sid in m.getPoolSessions().call()
    transact(w3, m.getFromPool(), stranger)
    assert m.getGrant(stranger).call()[1] == fee  # the re-take does not refill it
    r = ask_taker("three")
    assert one_event(system.manager, "GrantEnded", r) == {"sessionId": sid, "user": stranger, "reason": 2}
    assert m.getPoolOffer(sid).call()[:3] == [False, "0x" + "0" * 40, 0]
    assert_reverts(call_from(m.getFromPool(), stranger), "PoolEmpty")
    assert session(system, sid)["requestCount"] == 3


def test_a_lowered_timeout_does_not_grow_back_when_raised(system, deployer, user):
    """Seen in issue 14: lowering requestTimeout shortened a pending deadline, and raising it again
    gave the longer deadline back (min(closableAt, pendingSince + requestTimeout)). The owner's
    exit keeps the shortest timeout in force since the streak began."""
    w3, m = system.w3, system.manager.functions
    timeout = m.requestTimeout().call()
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    _, r = ask(system, user, sid=sid, route=default_routing(), value=CALLBACK_GAS)
    since = w3.eth.get_block(r["blockNumber"])["timestamp"]
    assert session(system, sid)["closableAt"] == since + timeout
    next_second(w3)  # a streak begun in the second of a raise counts as after it
    transact(w3, m.setRequestTimeout(60), deployer)
    assert session(system, sid)["closableAt"] == since + 60
    transact(w3, m.setRequestTimeout(timeout), deployer)
    assert session(system, sid)["closableAt"] == since + 60  # was since + timeout again
    transact(w3, m.setRequestTimeout(2 * timeout), deployer)
    assert session(system, sid)["closableAt"] == since + 60
    mine(w3, since + 60)
    transact(w3, m.closeSession(sid), user)
    assert not session(system, sid)["active"]
    # a streak that begins after the raise has the raised timeout
    sid2, _ = create(system, user, 20)
    _, r = ask(system, user, sid=sid2, route=default_routing(), value=CALLBACK_GAS)
    since2 = w3.eth.get_block(r["blockNumber"])["timestamp"]
    assert session(system, sid2)["closableAt"] == since2 + 2 * timeout
