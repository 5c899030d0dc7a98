"""Issue 7: no third party can lock, drain or strand an owner's funds.

One test (or more) per numbered finding, each failing on the contract at 327b226 and passing now,
plus the starved-callback -> settle path. Named test_f<N>_... after the finding.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak

from dtnsess_cli.devnet.localdtn import SYSTEM_TRUST_NAMESPACE, deploy, transact
from helpers import (
    routing_problem,
    config_problem,
    CALLBACK_GAS,
    REQ_FAILED,
    REQ_PENDING,
    REQ_SUCCEEDED,
    answer,
    ask,
    assert_reverts,
    bal,
    call_from,
    create,
    default_routing,
    dtn_balance,
    events,
    fail,
    fund,
    increase_time,
    latest_ts,
    mine,
    next_second,
    no_automine,
    one_event,
    receipt,
    request_status,
    routing,
    send,
    session,
)

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")

RELEASED, REVOKED, EXHAUSTED, REMOVED = 0, 1, 2, 3  # GrantEnded reasons


def _pool(system):
    return system.manager.functions.getPoolSessions().call()


def _pooled_session(system, owner, taker, tokens=50, limit=None, node_routing=False):
    """`owner` creates and pools a session, `taker` takes it; returns the session id."""
    m = system.manager.functions
    fund(system, owner, tokens + 100)
    sid, _ = create(system, owner, tokens)
    if limit is None and not node_routing:
        transact(system.w3, m.addToPool(sid), owner)
    else:
        lim = limit if limit is not None else 10 * m.totalFeePerRes().call()
        transact(system.w3, m.addToPoolWithLimit(sid, lim, node_routing), owner)
    r = transact(system.w3, m.getFromPool(), taker)
    assert one_event(system.manager, "SessionTakenFromPool", r) == {"sessionId": sid, "user": taker}
    return sid


def _ask_in(system, who, sid, route=None, value=CALLBACK_GAS, prompt="hi"):
    return ask(system, who, prompt, sid=sid, route=route or default_routing(), value=value)


# ----------------------------------------------------------------------------- finding 1


def test_f1_pool_taker_cannot_lock_owner_funds(system, user, stranger):
    """A taker sends unanswerable requests every requestTimeout - 60 s: the owner still closes
    requestTimeout after the oldest unanswered one and gets everything back."""
    w3 = system.w3
    m = system.manager.functions
    sid = _pooled_session(system, user, stranger, 50)  # plain addToPool: default limit, 10 answers
    timeout = m.requestTimeout().call()
    _, r = ask(system, stranger, "nobody answers this", value=0)
    first = w3.eth.get_block(r["blockNumber"])["timestamp"]
    for n in range(2, 8):  # six more rounds, each just before the deadline the old contract used
        increase_time(w3, timeout - 60)
        ask(system, stranger, f"round {n}", value=0)
        assert session(system, sid)["pendingRequests"] == n
    assert latest_ts(w3) > first + timeout
    before = bal(system, user)
    r = transact(w3, m.closeSession(sid), user)
    assert one_event(system.manager, "SessionClosed", r)["refund"] == 50 * system.unit
    assert bal(system, user) - before == 50 * system.unit
    assert m.poolGrant(stranger).call() == 0
    assert one_event(system.manager, "GrantEnded", r) == {"sessionId": sid, "user": stranger, "reason": REMOVED}


def test_f1_deadline_is_fixed_by_the_oldest_unanswered_request(system, user, stranger):
    w3 = system.w3
    m = system.manager.functions
    sid = _pooled_session(system, user, stranger, 50, limit=100 * system.unit)
    timeout = m.requestTimeout().call()
    _, r = ask(system, stranger, "first", value=0)
    first = w3.eth.get_block(r["blockNumber"])["timestamp"]
    increase_time(w3, timeout - 60)
    ask(system, stranger, "second", value=0)
    s = session(system, sid)
    assert (s["pendingSince"], s["closableAt"]) == (first, first + timeout)
    # the deadline is the first request's, not the newest one's
    assert_reverts(call_from(m.closeSession(sid), user), "RequestsPending", sid, 2, first + timeout)
    with no_automine(w3):
        h = send(m.closeSession(sid), user, gas=1_000_000)
        mine(w3, first + timeout)
    assert receipt(w3, h)["status"] == 1


def test_f1_begin_close_shuts_other_users_out(system, user, stranger):
    w3 = system.w3
    m = system.manager.functions
    sid = _pooled_session(system, user, stranger, 50)
    _, r = ask(system, stranger, "pending", value=0)
    first = w3.eth.get_block(r["blockNumber"])["timestamp"]
    timeout = m.requestTimeout().call()

    assert_reverts(call_from(m.beginClose(sid), stranger), "NotSessionOwner")
    r = transact(w3, m.beginClose(sid), user)

    assert one_event(system.manager, "SessionClosing", r) == {"sessionId": sid, "closableAt": first + timeout}
    assert one_event(system.manager, "GrantEnded", r) == {"sessionId": sid, "user": stranger, "reason": REMOVED}
    assert m.poolGrant(stranger).call() == 0 and sid not in _pool(system)
    assert session(system, sid)["closing"]
    next_second(w3)
    req = m.makeAIRequestInSession(sid, "more", system.model, default_routing())
    assert_reverts(call_from(req, stranger, CALLBACK_GAS), "NotAllowedToUseSession", sid, stranger)
    assert_reverts(call_from(m.beginClose(sid), user), "AlreadyClosing")
    assert_reverts(call_from(m.addToPool(sid), user), "SessionIsClosing")
    # the taker cannot take it back from the pool: it is not there
    assert_reverts(call_from(m.getFromPool(), stranger), "PoolEmpty")
    # the owner may still use it, and closes at the first request's deadline
    _ask_in(system, user, sid)
    increase_time(w3, first + timeout - latest_ts(w3))
    transact(w3, m.closeSession(sid), user)
    assert not session(system, sid)["active"]


# ----------------------------------------------------------------------------- finding 2


def test_f2_spent_offer_ends_the_grant_and_leaves_the_pool(system, user, stranger):
    """The limit is the offer's budget (issue 14): spent, the grant ends and the session leaves
    the pool (before, it went back with a fresh limit for the next taker)."""
    w3 = system.w3
    m = system.manager.functions
    fee = m.totalFeePerRes().call()
    sid = _pooled_session(system, user, stranger, 50, limit=3 * fee)
    assert m.getGrant(stranger).call()[:3] == [sid, 3 * fee, False]
    assert m.getPoolOffer(sid).call()[:4] == [True, stranger, 3 * fee, False]
    for left in (2, 1):
        ask(system, stranger, f"{left} left")
        assert m.getGrant(stranger).call()[:3] == [sid, left * fee, False]
        next_second(w3)
    _, r = ask(system, stranger, "the last one")  # reserves the last answer's worth: the grant ends

    assert one_event(system.manager, "GrantEnded", r) == {"sessionId": sid, "user": stranger, "reason": EXHAUSTED}
    assert m.getGrant(stranger).call() == [0, 0, False, 0]
    assert _pool(system) == [] and m.getPoolOffer(sid).call() == [False, "0x" + "0" * 40, 0, False, 0]
    next_second(w3)
    req = m.makeAIRequestInSession(sid, "more", system.model, default_routing())
    assert_reverts(call_from(req, stranger, CALLBACK_GAS), "NotAllowedToUseSession", sid, stranger)
    assert session(system, sid)["requestCount"] == 3


def test_f2_grant_exhausted_when_fees_rise(system, deployer, user, stranger):
    m = system.manager.functions
    fee = m.totalFeePerRes().call()
    sid = _pooled_session(system, user, stranger, 50, limit=2 * fee)
    transact(system.w3, m.setFees(m.feePerByteReq().call(), m.feePerByteRes().call(), 3 * fee), deployer)
    req = m.makeAIRequestInSession(sid, "hi", system.model, default_routing())
    assert_reverts(call_from(req, stranger, CALLBACK_GAS), "GrantExhausted", sid, stranger, 2 * fee)


def test_f2_taker_may_not_route_to_its_own_node(system, deployer, user, stranger):
    w3 = system.w3
    m = system.manager.functions
    own_node = keccak(text="node.stranger.own")
    transact(w3, system.router.functions.registerNode("node.stranger.own", stranger), deployer)
    sid = _pooled_session(system, user, stranger, 50)
    for fn in (m.makeAIRequestInSession(sid, "x" * 4000, system.model, routing(nodes=[own_node])),
               m.makeAIRequestWithRouting("x" * 4000, system.model, routing(nodes=[own_node])),
               m.makeAIRequestWithRouting("x", system.model, routing([SYSTEM_TRUST_NAMESPACE], [own_node]))):
        assert_reverts(call_from(fn, stranger, CALLBACK_GAS), "RoutingNotAllowed", sid)
    assert session(system, sid)["requestCount"] == 0
    # trust-namespace routing is allowed; the owner itself may name nodes
    ask(system, stranger)
    _ask_in(system, user, sid, route=routing(nodes=[system.node_id]))


def test_f2_owner_may_allow_node_routing(system, user, stranger):
    sid = _pooled_session(system, user, stranger, 50, node_routing=True)
    assert system.manager.functions.getGrant(stranger).call()[2] is True
    rid, _ = _ask_in(system, stranger, sid, route=routing(nodes=[system.node_id]))
    answer(system, rid)
    assert request_status(system, rid) == REQ_SUCCEEDED


def test_f2_owner_revokes_a_grant(system, user, stranger, accounts):
    w3 = system.w3
    m = system.manager.functions
    sid = _pooled_session(system, user, stranger, 50)
    assert_reverts(call_from(m.revokeGrant(sid, stranger), accounts[4]), "NotSessionOwner")
    assert_reverts(call_from(m.revokeGrant(sid, accounts[4]), user), "NoSuchGrant")

    r = transact(w3, m.revokeGrant(sid, stranger), user)

    assert one_event(system.manager, "GrantEnded", r) == {"sessionId": sid, "user": stranger, "reason": REVOKED}
    # The session stays out of the pool: the revoked taker cannot take it straight back.
    assert m.poolGrant(stranger).call() == 0 and _pool(system) == []
    assert m.getPoolOffer(sid).call()[:2] == [False, "0x" + "0" * 40]
    assert_reverts(call_from(m.getFromPool(), stranger), "PoolEmpty")
    req = m.makeAIRequestInSession(sid, "hi", system.model, default_routing())
    assert_reverts(call_from(req, stranger, CALLBACK_GAS), "NotAllowedToUseSession", sid, stranger)
    assert m.getGrant(stranger).call() == [0, 0, False, 0]
    transact(w3, m.addToPool(sid), user)  # the owner may offer it again
    assert _pool(system) == [sid]


def test_f2_owner_removes_from_pool_and_ends_the_grant(system, user, stranger, accounts):
    w3 = system.w3
    m = system.manager.functions
    sid = _pooled_session(system, user, stranger, 50)
    other, _ = create(system, user, 10)
    transact(w3, m.addToPool(other), user)
    assert_reverts(call_from(m.removeFromPool(sid), stranger), "NotSessionOwner")

    r = transact(w3, m.removeFromPool(sid), user)  # granted, not in the pool: the grant ends
    assert one_event(system.manager, "SessionRemovedFromPool", r) == {"sessionId": sid}
    assert one_event(system.manager, "GrantEnded", r) == {"sessionId": sid, "user": stranger, "reason": REMOVED}
    assert m.getPoolOffer(sid).call()[:2] == [False, "0x" + "0" * 40]
    assert _pool(system) == [other]
    r = transact(w3, m.removeFromPool(other), user)  # in the pool, no grant
    assert events(system.manager, "GrantEnded", r) == [] and _pool(system) == []
    assert_reverts(call_from(m.removeFromPool(other), user), "NotPooled")
    assert_reverts(call_from(m.getFromPool(), accounts[4]), "PoolEmpty")


# ----------------------------------------------------------------------------- finding 3


def test_f3_one_grant_per_address_and_release(system, user, stranger, accounts):
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 200)
    ids = [create(system, user, 20)[0] for _ in range(3)]
    for sid in ids:
        transact(w3, m.addToPool(sid), user)

    transact(w3, m.getFromPool(), stranger)
    assert_reverts(call_from(m.getFromPool(), stranger), "AlreadyHoldsGrant", stranger, ids[2])
    assert _pool(system) == ids[:2]  # one address cannot empty the pool

    assert_reverts(call_from(m.releaseGrant(), accounts[4]), "NoGrant")
    r = transact(w3, m.releaseGrant(), stranger)
    assert one_event(system.manager, "GrantEnded", r) == {"sessionId": ids[2], "user": stranger, "reason": RELEASED}
    assert m.getGrant(stranger).call() == [0, 0, False, 0]
    assert sorted(_pool(system)) == ids
    # released: it may take one again
    r = transact(w3, m.getFromPool(), stranger)
    assert one_event(system.manager, "SessionTakenFromPool", r)["user"] == stranger


def test_f3_released_session_stays_out_when_the_pool_is_full(system, deployer, user, stranger):
    w3 = system.w3
    m = system.manager.functions
    sid = _pooled_session(system, user, stranger, 20)
    transact(w3, m.updateConfig(m.minSessionBalance().call(), m.maxSessionAge().call(), 1), deployer)
    other, _ = create(system, user, 10)
    transact(w3, m.addToPool(other), user)
    transact(w3, m.releaseGrant(), stranger)
    assert _pool(system) == [other]
    assert m.getPoolOffer(sid).call()[0] is False


# ----------------------------------------------------------------------------- finding 4


def test_f4_config_upper_bounds(system, deployer):
    m = system.manager.functions
    unit = system.unit
    huge = 2**256 - 1
    assert (m.MAX_SESSION_AGE().call(), m.MAX_REQUEST_TIMEOUT().call(), m.MAX_POOL_SIZE().call()) == (
        365 * 86400, 7 * 86400, 100)
    assert m.MAX_MIN_SESSION_BALANCE().call() == 10**6 * unit
    assert m.MAX_TOTAL_FEE_PER_RES().call() == 1000 * unit
    bad = [
        (m.updateConfig(unit, huge, 5), "max session age too high"),
        (m.updateConfig(unit, 365 * 86400 + 1, 5), "max session age too high"),
        (m.updateConfig(10**6 * unit + 1, 3600, 5), "minimum session balance too high"),
        (m.updateConfig(unit, 3600, 101), "pool size too high"),
        (m.setRequestTimeout(huge), "request timeout too high"),
        (m.setRequestTimeout(7 * 86400 + 1), "request timeout too high"),
        (m.setFees(2**255, 2**255, 2**255), "max fee per response too high"),
        (m.setFees(unit + 1, 0, unit), "fee per byte above max fee per response"),
        (m.setFees(0, unit + 1, unit), "fee per byte above max fee per response"),
    ]
    for fn, reason in bad:
        assert_reverts(call_from(fn, deployer), "InvalidConfig", config_problem(reason))
    # the bounds themselves are accepted
    transact(system.w3, m.updateConfig(10**6 * unit, 365 * 86400, 100), deployer)
    transact(system.w3, m.setRequestTimeout(7 * 86400), deployer)
    transact(system.w3, m.setFees(1000 * unit, 1000 * unit, 1000 * unit), deployer)


def test_f4_saturated_longest_timeout_still_closes(system, deployer, user):
    w3 = system.w3
    m = system.manager.functions
    transact(w3, m.updateConfig(m.minSessionBalance().call(), 365 * 86400, 5), deployer)
    transact(w3, m.setRequestTimeout(7 * 86400), deployer)
    fund(system, user, 100)
    sid, _ = create(system, user, 20)
    _, r = ask(system, user, value=0)
    t0 = w3.eth.get_block(r["blockNumber"])["timestamp"]
    assert session(system, sid)["closableAt"] == t0 + 7 * 86400
    increase_time(w3, 7 * 86400)
    transact(w3, m.closeSession(sid), user)  # no overflow anywhere


def test_f4_timeout_changes_never_extend_a_pending_deadline(system, deployer, user):
    w3 = system.w3
    m = system.manager.functions
    transact(w3, m.updateConfig(m.minSessionBalance().call(), 30 * 86400, 5), deployer)
    fund(system, user, 100)
    sid, _ = create(system, user, 20)
    timeout = m.requestTimeout().call()
    _, r = ask(system, user, value=0)
    t0 = w3.eth.get_block(r["blockNumber"])["timestamp"]
    assert session(system, sid)["closableAt"] == t0 + timeout

    next_second(w3)  # changes in the second the streak began count as before it
    transact(w3, m.setRequestTimeout(7 * 86400), deployer)  # raising: the deadline stays
    assert session(system, sid)["closableAt"] == t0 + timeout
    assert_reverts(call_from(m.closeSession(sid), user), "RequestsPending", sid, 1, t0 + timeout)
    transact(w3, m.setRequestTimeout(60), deployer)  # lowering: it comes closer
    assert session(system, sid)["closableAt"] == t0 + 60
    # and raising again never moves it back out, not even to where it was (issue 14, second session)
    transact(w3, m.setRequestTimeout(7 * 86400), deployer)
    assert session(system, sid)["closableAt"] == t0 + 60
    mine(w3, max(t0 + 60, latest_ts(w3) + 1))
    transact(w3, m.closeSession(sid), user)
    assert not session(system, sid)["active"]


# ----------------------------------------------------------------------------- finding 5


def test_f5_fee_on_transfer_token_is_refused(system, deployer, user):
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 200)
    sid, _ = create(system, user, 20)
    transact(w3, system.token.functions.setTransferFeeBps(100), deployer)  # 1 %
    amount = 20 * system.unit
    assert_reverts(call_from(m.createSession(amount), user), "FeeOnTransferToken", amount, amount * 99 // 100)
    assert_reverts(call_from(m.renewSession(sid, amount), user), "FeeOnTransferToken", amount, amount * 99 // 100)
    # what DTN refunds is measured where it arrives: the owner gets what arrived, nothing is owed
    before = bal(system, user)
    r = transact(w3, m.closeSession(sid), user)
    refund = one_event(system.manager, "SessionClosed", r)["refund"]
    assert refund == amount * 99 // 100
    assert bal(system, user) - before == refund * 99 // 100
    assert bal(system, system.manager.address) >= m.totalClaimable().call()


# ----------------------------------------------------------------------------- finding 6


def test_f6_drained_session_is_skipped_and_views_show_what_remains(system, deployer, user):
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 200)
    funded, _ = create(system, user, 20)
    drained, _ = create(system, user, 10)
    transact(w3, m.setFees(system.unit, system.unit, 10 * system.unit), deployer)
    rid, _ = _ask_in(system, user, drained, prompt="x" * 50)
    answer(system, rid, "y" * 50)
    assert dtn_balance(system, drained) == 0
    assert m.getSessionStats(drained).call()[1] == 0 and m.sessions(drained).call()[2] == 0
    assert session(system, drained)["balance"] == 10 * system.unit  # funded stays in getSession
    next_second(w3)

    _, r = ask(system, user, "x")
    assert one_event(system.manager, "AIRequestSubmitted", r)["sessionId"] == funded
    req = m.makeAIRequestInSession(drained, "x", system.model, default_routing())
    dec = assert_reverts(call_from(req, user, CALLBACK_GAS), "SessionBalanceTooLow", drained, 0)
    assert dec.args[2] == 10 * system.unit  # min(request bytes * fee per byte, max fee)


# ----------------------------------------------------------------------------- finding 7


REDUNDANCY = "redundancy must be 1 (the DTN router cannot complete more)"


def test_f7_invalid_routing_is_refused_before_paying(system, user):
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 100)
    sid, _ = create(system, user, 20)
    ns, node = [SYSTEM_TRUST_NAMESPACE], [system.node_id]
    bad = [
        ((ns, [], 1, 8, 1), "aggregation must be ANY"),
        ((ns, [], 1, 8, 4), "aggregation must be ANY"),
        (([], [], 1, 8, 0), "no namespace and no node"),
        ((ns, [], 0, 8, 0), REDUNDANCY),
        ((ns, [], 2, 8, 0), REDUNDANCY),
        ((ns, node, 2, 8, 0), REDUNDANCY),
        ((ns, node + [keccak(text="node.x.y")], 2, 10, 0), REDUNDANCY),
        ((ns, [], 1, 11, 0), "confidence level above 10"),
    ]
    eth = w3.eth.get_balance(system.router.address)
    for route, reason in bad:
        for fn in (m.makeAIRequestInSession(sid, "hi", system.model, route),
                   m.makeAIRequestWithRouting("hi", system.model, route)):
            assert_reverts(call_from(fn, user, CALLBACK_GAS), "InvalidRouting", routing_problem(reason))
    assert w3.eth.get_balance(system.router.address) == eth
    assert session(system, sid)["requestCount"] == 0
    # named nodes with redundancy 1: accepted
    _ask_in(system, user, sid, route=(ns, node + [keccak(text="node.x.y")], 1, 10, 0))


# ----------------------------------------------------------------------------- finding 8


def test_f8_failing_cleanup_session_is_retried_first(system6, deployer, user, stranger, accounts):
    """The session DTN cannot close keeps its place: it is not hidden behind fresh sessions."""
    system = system6
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 100)
    fund(system, accounts[4], 100)
    stuck, _ = create(system, user, 10)
    increase_time(w3, m.maxSessionAge().call() + 1)
    fresh, _ = create(system, accounts[4], 10)
    transact(w3, system.token.functions.setBlocked(system.manager.address, True), deployer)
    r = transact(w3, m.cleanupOldSessions(), stranger)
    assert [e["sessionId"] for e in events(system.manager, "CleanupFailed", r)] == [stuck]
    assert m.getIdleSessions(5).call() == [stuck]
    transact(w3, system.token.functions.setBlocked(system.manager.address, False), deployer)

    r = transact(w3, m.cleanupOldSessions(), stranger)

    assert [e["sessionId"] for e in events(system.manager, "SessionClosed", r)] == [stuck]
    assert m.claimableRefunds(user).call() == 10 * system.unit
    assert session(system, fresh)["active"]
    transact(w3, m.withdrawRefunds(), user)


# ----------------------------------------------------------------------------- finding 9


def test_f9_current_session_is_the_highest_usable_id(system, user):
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 200)
    a, b, c = (create(system, user, 10)[0] for _ in range(3))
    transact(w3, m.closeSession(a), user)  # swap-and-pop used to put c before b
    assert m.getUserActiveSessions(user).call() == [b, c]
    assert m.getOrCreateSession().call({"from": user}) == c
    _, r = ask(system, user)
    assert one_event(system.manager, "AIRequestSubmitted", r)["sessionId"] == c
    transact(w3, m.beginClose(c), user)  # a closing session is not chosen
    assert m.getOrCreateSession().call({"from": user}) == b


# ----------------------------------------------------------------------------- finding 10


def test_f10_close_all_sessions_closes_what_it_can(system, user):
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 200)
    busy, _ = create(system, user, 10)
    idle, _ = create(system, user, 20)
    _, r = _ask_in(system, user, busy, value=0)
    deadline = w3.eth.get_block(r["blockNumber"])["timestamp"] + m.requestTimeout().call()
    before = bal(system, user)

    r = transact(w3, m.closeAllSessions(), user)

    assert [e["sessionId"] for e in events(system.manager, "SessionClosed", r)] == [idle]
    assert one_event(system.manager, "SessionCloseSkipped", r) == {"sessionId": busy, "retryAfter": deadline}
    assert bal(system, user) - before == 20 * system.unit
    assert m.getUserActiveSessions(user).call() == [busy]


def test_f10_sweep_takes_only_what_is_not_owed(system, deployer, user, stranger, accounts):
    w3 = system.w3
    m = system.manager.functions
    blocked = accounts[4]
    fund(system, blocked, 100)
    fund(system, stranger, 100)
    create(system, blocked, 10)
    transact(w3, system.token.functions.setBlocked(blocked, True), deployer)
    increase_time(w3, m.maxSessionAge().call() + 1)
    transact(w3, m.cleanupOldSessions(), stranger)  # the blocked owner's refund is credited
    owed = m.totalClaimable().call()
    assert owed == 10 * system.unit
    assert_reverts(call_from(m.sweep(system.token.address, deployer), deployer), "NothingToWithdraw")
    transact(w3, system.token.functions.transfer(system.manager.address, 7 * system.unit), stranger)
    assert_reverts(call_from(m.sweep(system.token.address, stranger), stranger),
                   "OwnableUnauthorizedAccount", stranger)

    before = bal(system, deployer)
    r = transact(w3, m.sweep(system.token.address, deployer), deployer)

    assert one_event(system.manager, "Swept", r) == {
        "token": system.token.address, "to": deployer, "amount": 7 * system.unit}
    assert bal(system, deployer) - before == 7 * system.unit
    assert bal(system, system.manager.address) == owed == m.totalClaimable().call()
    # any other token: all of it
    other = deploy(w3, "MockUSDT", deployer, "Other", "OTH", 6)
    transact(w3, other.functions.mint(system.manager.address, 5), deployer)
    transact(w3, m.sweep(other.address, user), deployer)
    assert other.functions.balanceOf(user).call() == 5
    transact(w3, system.token.functions.setBlocked(blocked, False), deployer)
    transact(w3, m.withdrawRefunds(), blocked)


def test_f10_ownership_is_two_step_and_cannot_be_renounced(system, deployer, stranger, accounts):
    w3 = system.w3
    m = system.manager.functions
    assert_reverts(call_from(m.renounceOwnership(), deployer), "InvalidConfig", config_problem("renounce disabled"))
    assert m.owner().call() == deployer
    transact(w3, m.transferOwnership(stranger), deployer)
    assert m.owner().call() == deployer and m.pendingOwner().call() == stranger
    assert_reverts(call_from(m.acceptOwnership(), accounts[4]), "OwnableUnauthorizedAccount", accounts[4])
    transact(w3, m.acceptOwnership(), stranger)
    assert m.owner().call() == stranger
    assert_reverts(call_from(m.renounceOwnership(), stranger), "InvalidConfig", config_problem("renounce disabled"))


# ----------------------------------------------------------------------------- starved callbacks


# Callback gas is msg.value: 2,000 starves the manager's callback (it needs ~26k and more).
STARVED = 2_000


def test_starved_callback_answer_stands_and_settle_records_it(system, user, stranger):
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    ok, _ = ask(system, user, "one", value=STARVED)
    next_second(w3)
    bad, _ = ask(system, user, "two", value=STARVED)
    next_second(w3)
    unanswered, _ = ask(system, user, "three")

    r1 = answer(system, ok)
    r2 = fail(system, bad, "overloaded")
    assert [e["requestId"] for e in events(system.router, "SuccessCallbackFailed", r1)] == [ok]
    assert [e["requestId"] for e in events(system.router, "FailureCallbackFailed", r2)] == [bad]
    assert events(system.manager, "AIRequestCompleted", r1) == []
    assert request_status(system, ok) == REQ_PENDING and session(system, sid)["pendingRequests"] == 3

    ids = [ok, unanswered, b"\x02" * 32, bad]
    assert m.settleRequests(ids).call({"from": stranger}) == 2
    r = transact(w3, m.settleRequests(ids), stranger)

    assert [(e["requestId"], e["status"]) for e in events(system.manager, "AIRequestCompleted", r)] == [
        (ok, 1), (bad, 2)]
    assert (request_status(system, ok), request_status(system, bad)) == (REQ_SUCCEEDED, REQ_FAILED)
    assert request_status(system, unanswered) == REQ_PENDING
    assert session(system, sid)["pendingRequests"] == 1
    assert m.settleRequests(ids).call({"from": stranger}) == 0
    answer(system, unanswered)  # with the default gas the callback runs
    s = session(system, sid)
    assert (s["pendingRequests"], s["closableAt"], s["pendingSince"]) == (0, 0, 0)
    transact(w3, m.closeSession(sid), user)


def test_respond_default_gas_leaves_the_callback_its_allowance(system, user):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    rid, _ = ask(system, user, "long answer please")
    r = answer(system, rid, "z" * 8000)
    assert events(system.router, "SuccessCallbackFailed", r) == []
    assert request_status(system, rid) == REQ_SUCCEEDED
