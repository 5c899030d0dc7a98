"""Issue 14, item 4: pool grants expire (one owner-set, bounded duration for every grant), and an
expired grant's session goes back to the next taker without a keeper.

Before: five fresh addresses emptied a pool of five, and 30 days later a legitimate getFromPool
still got PoolEmpty; a grant could be used for ever.
"""

from __future__ import annotations

import pytest

from dtnsess_cli.devnet.localdtn import transact
from helpers import (
    REQ_SUCCEEDED,
    answer,
    assert_reverts,
    call_from,
    config_problem,
    create,
    default_routing,
    events,
    fund,
    latest_ts,
    mine,
    next_second,
    one_event,
    request_status,
    session,
    CALLBACK_GAS,
)

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")

EXPIRED = 4  # GrantEnded reason
DAY = 24 * 3600


def _take(system, taker) -> tuple[int, int]:
    """`taker` takes from the pool; returns (session id, when its grant expires)."""
    m = system.manager.functions
    r = transact(system.w3, m.getFromPool(), taker)
    sid = one_event(system.manager, "SessionTakenFromPool", r)["sessionId"]
    return sid, m.getGrant(taker).call()[3]


def _ask(system, who, sid, prompt="hi"):
    next_second(system.w3)
    fn = system.manager.functions.makeAIRequestInSession(sid, prompt, system.model, default_routing())
    r = transact(system.w3, fn, who, value=CALLBACK_GAS)
    return one_event(system.manager, "AIRequestSubmitted", r)["requestId"]


def _until(w3, ts: int) -> None:
    """Mine a block at `ts` (unless the chain is there already): calls then see that time."""
    if ts > latest_ts(w3):
        mine(w3, ts)


def test_grantee_spends_before_expiry_not_after_and_pending_requests_still_settle(system, user, stranger):
    w3, m = system.w3, system.manager.functions
    assert m.grantDuration().call() == DAY  # the default
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    transact(w3, m.addToPool(sid), user)
    taken, expires = _take(system, stranger)
    assert taken == sid and expires == latest_ts(w3) + DAY
    assert m.getPoolOffer(sid).call()[4] == expires

    rid = _ask(system, stranger, sid)  # live: allowed
    _until(w3, expires - 10)
    pending = _ask(system, stranger, sid, "the last one in time")
    _until(w3, expires)
    req = m.makeAIRequestInSession(sid, "too late", system.model, default_routing())
    assert_reverts(call_from(req, stranger, CALLBACK_GAS), "GrantExpired", sid, stranger, expires)
    assert m.poolGrant(stranger).call() == 0  # no live grant
    assert m.getGrant(stranger).call() == [sid, m.getPoolOffer(sid).call()[2], False, expires]

    # what was asked in time is answered and settles normally after expiry
    for r in (rid, pending):
        answer(system, r)
        assert request_status(system, r) == REQ_SUCCEEDED
    assert session(system, sid)["pendingRequests"] == 0
    assert session(system, sid)["requestCount"] == 2


def test_a_drained_pool_refills_for_the_next_taker_oldest_grant_first(system, user, accounts):
    """The issue's case: five addresses empty a pool of five; after the grant duration a
    legitimate getFromPool gets a session (the oldest grant's), lazily, without a keeper."""
    w3, m = system.w3, system.manager.functions
    fund(system, user, 200)
    ids = [create(system, user, 20)[0] for _ in range(5)]
    for sid in ids:
        transact(w3, m.addToPool(sid), user)
    sybils, honest = accounts[3:8], accounts[8]
    taken = [_take(system, a) for a in sybils]
    assert m.getPoolSessions().call() == []
    assert_reverts(call_from(m.getFromPool(), honest), "PoolEmpty")
    assert m.getExpiredGrants(10).call() == []

    _until(w3, taken[0][1] + 1)  # the first grant expired, the others (taken later) maybe too
    expired = m.getExpiredGrants(10).call()
    assert expired[0] == taken[0][0]
    r = transact(w3, m.getFromPool(), honest)
    assert one_event(system.manager, "GrantEnded", r) == {"sessionId": taken[0][0], "user": sybils[0], "reason": EXPIRED}
    assert one_event(system.manager, "SessionTakenFromPool", r) == {"sessionId": taken[0][0], "user": honest}
    assert m.poolGrant(honest).call() == taken[0][0]
    # the old grantee's grant is gone: it may not use the session, and may take again later
    assert m.getGrant(sybils[0]).call() == [0, 0, False, 0]
    req = m.makeAIRequestInSession(taken[0][0], "mine?", system.model, default_routing())
    assert_reverts(call_from(req, sybils[0], CALLBACK_GAS), "NotAllowedToUseSession", taken[0][0], sybils[0])
    # the next expired grant goes to the next taker, in take order
    _until(w3, taken[1][1])
    r = transact(w3, m.getFromPool(), sybils[0])
    assert one_event(system.manager, "SessionTakenFromPool", r) == {"sessionId": taken[1][0], "user": sybils[0]}


def test_an_expired_holder_may_take_again_and_budget_spans_the_expired_grant(system, user, stranger, accounts):
    """The offer's budget is cumulative across the expired grant: a fresh grant does not refill it."""
    w3, m = system.w3, system.manager.functions
    fee = m.totalFeePerRes().call()
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    transact(w3, m.addToPoolWithLimit(sid, 3 * fee, False), user)
    _, expires = _take(system, stranger)
    _ask(system, stranger, sid, "one")
    _ask(system, stranger, sid, "two")
    _until(w3, expires)
    # the holder of an expired grant is not "already holding" one: getFromPool ends it and takes
    other = accounts[5]
    r = transact(w3, m.getFromPool(), other)
    assert one_event(system.manager, "GrantEnded", r)["reason"] == EXPIRED
    assert m.getGrant(other).call()[:2] == [sid, fee]  # what the first taker spent stays spent
    r = transact(w3, m.makeAIRequestInSession(sid, "three", system.model, default_routing()), other,
                 value=CALLBACK_GAS)
    assert [e["reason"] for e in events(system.manager, "GrantEnded", r)] == [2]  # exhausted
    assert m.getPoolOffer(sid).call()[:3] == [False, "0x" + "0" * 40, 0]
    assert_reverts(call_from(m.getFromPool(), stranger), "PoolEmpty")
    assert session(system, sid)["requestCount"] == 3


def test_the_old_holder_of_an_expired_grant_ends_it_by_taking_again(system, user, stranger):
    w3, m = system.w3, system.manager.functions
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    transact(w3, m.addToPool(sid), user)
    _, expires = _take(system, stranger)
    assert_reverts(call_from(m.getFromPool(), stranger), "AlreadyHoldsGrant", stranger, sid)
    _until(w3, expires)
    r = transact(w3, m.getFromPool(), stranger)
    assert one_event(system.manager, "GrantEnded", r) == {"sessionId": sid, "user": stranger, "reason": EXPIRED}
    assert m.getGrant(stranger).call()[3] == latest_ts(w3) + DAY  # a fresh grant


def test_grant_duration_bounds_owner_only_and_applies_to_live_grants(system, deployer, user, stranger, accounts):
    w3, m = system.w3, system.manager.functions
    assert (m.MIN_GRANT_DURATION().call(), m.MAX_GRANT_DURATION().call()) == (600, 30 * DAY)
    bad = config_problem("grant duration out of range (10 minutes to 30 days)")
    for d in (0, 599, 30 * DAY + 1):
        assert_reverts(call_from(m.setGrantDuration(d), deployer), "InvalidConfig", bad)
    assert_reverts(call_from(m.setGrantDuration(3600), user), "OwnableUnauthorizedAccount", user)
    assert m.grantDuration().call() == DAY

    fund(system, user, 100)
    a, _ = create(system, user, 20)
    b, _ = create(system, user, 20)
    transact(w3, m.addToPool(a), user)
    transact(w3, m.addToPool(b), user)
    _, first = _take(system, stranger)
    next_second(w3)
    _, second = _take(system, accounts[5])
    r = transact(w3, m.setGrantDuration(600), deployer)
    assert one_event(system.manager, "GrantDurationUpdated", r) == {"grantDuration": 600}
    assert m.getConfig().call()[12] == 600
    # one duration for all: live grants move alike, so they still expire in take order
    new_first, new_second = m.getGrant(stranger).call()[3], m.getGrant(accounts[5]).call()[3]
    assert (first - new_first, second - new_second) == (DAY - 600, DAY - 600)
    assert new_first < new_second
    _until(w3, new_second)
    assert m.getExpiredGrants(10).call() == [b, a]
    transact(w3, m.setGrantDuration(30 * DAY), deployer)
    assert m.getExpiredGrants(10).call() == []  # raising it lengthens live grants too
