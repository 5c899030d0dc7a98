"""The session pool: addToPool / getFromPool and the usage right it grants."""

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
    default_routing,
    dtn_balance,
    events,
    fund,
    increase_time,
    one_event,
    session,
)

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")


def _pool(system):
    return system.manager.functions.getPoolSessions().call()


def test_add_to_pool_rejections(system, user, stranger, deployer):
    m = system.manager.functions
    fund(system, user, 500)
    transact(system.w3, m.updateConfig(m.minSessionBalance().call(), m.maxSessionAge().call(), 2), deployer)
    a, _ = create(system, user, 10)
    b, _ = create(system, user, 10)
    c, _ = create(system, user, 10)

    assert_reverts(call_from(m.getFromPool(), stranger), "PoolEmpty")
    assert_reverts(call_from(m.addToPool(a), stranger), "NotSessionOwner")
    r = transact(system.w3, m.addToPool(a), user)
    assert one_event(system.manager, "SessionPooled", r) == {"sessionId": a, "user": user}
    assert_reverts(call_from(m.addToPool(a), user), "AlreadyPooled")
    transact(system.w3, m.addToPool(b), user)
    assert_reverts(call_from(m.addToPool(c), user), "PoolFull")
    assert m.getPoolStatus().call() == [2, 2]
    assert _pool(system) == [a, b]
    assert (m.isPooled(a).call(), m.isPooled(b).call(), m.isPooled(c).call()) == (True, True, False)

    transact(system.w3, m.closeSession(c), user)
    assert_reverts(call_from(m.addToPool(c), user), "SessionNotActive")
    # closing a pooled session takes it out of the pool
    transact(system.w3, m.closeSession(a), user)
    assert _pool(system) == [b] and not m.isPooled(a).call()
    assert m.getPoolStatus().call() == [1, 2]


def test_get_from_pool_grants_use_and_refund_stays_with_owner(system, user, stranger, worker):
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 200)
    older, _ = create(system, user, 20)
    sid, _ = create(system, user, 50)
    transact(w3, m.addToPool(older), user)
    transact(w3, m.addToPool(sid), user)
    stranger_before = bal(system, stranger)

    r = transact(w3, m.getFromPool(), stranger)

    assert one_event(system.manager, "SessionTakenFromPool", r) == {"sessionId": sid, "user": stranger}
    assert _pool(system) == [older] and not m.isPooled(sid).call()
    assert m.poolGrant(stranger).call() == sid
    assert session(system, sid)["lastUsed"] == w3.eth.get_block(r["blockNumber"])["timestamp"]

    # the taker (who has no session and no tokens approved) makes requests from the pooled session
    rid, r = ask(system, stranger, "from the pool")
    submitted = one_event(system.manager, "AIRequestSubmitted", r)
    assert (submitted["sessionId"], submitted["user"]) == (sid, stranger)
    assert events(system.manager, "SessionCreated", r) == []
    assert system.manager.functions.requests(rid).call()[:2] == [sid, stranger]
    worker_before = bal(system, worker)
    answer(system, rid)
    charged = bal(system, worker) - worker_before
    assert charged > 0 and dtn_balance(system, sid) == 50 * system.unit - charged
    assert bal(system, stranger) == stranger_before
    # the taker may also name the session explicitly, but not close or renew it
    increase_time(w3, 1)
    ask(system, stranger, "explicit", sid=sid)
    increase_time(w3, system.manager.functions.requestTimeout().call())
    assert_reverts(call_from(m.closeSession(sid), stranger), "NotSessionOwner")
    assert_reverts(call_from(m.renewSession(sid, system.unit), stranger), "NotSessionOwner")

    remaining = dtn_balance(system, sid)
    owner_before = bal(system, user)
    r = transact(w3, m.closeSession(sid), user)
    assert one_event(system.manager, "SessionClosed", r)["refund"] == remaining
    assert bal(system, user) - owner_before == remaining
    assert bal(system, stranger) == stranger_before
    assert m.claimableRefunds(stranger).call() == 0


def test_session_one_neither_owns_nor_took_is_refused(system, user, stranger, accounts):
    m = system.manager.functions
    third = accounts[4]
    fund(system, user, 200)
    a, _ = create(system, user, 20)
    b, _ = create(system, user, 20)
    transact(system.w3, m.addToPool(a), user)
    transact(system.w3, m.addToPool(b), user)
    transact(system.w3, m.getFromPool(), stranger)  # takes b
    req = m.makeAIRequestInSession(a, "hi", system.model, default_routing())
    assert_reverts(call_from(req, stranger, 300_000), "NotAllowedToUseSession", a, stranger)
    assert_reverts(call_from(req, third, 300_000), "NotAllowedToUseSession", a, third)
    assert session(system, a)["requestCount"] == 0


def test_get_or_create_prefers_the_pooled_session(system, user, stranger):
    m = system.manager.functions
    fund(system, user, 200)
    fund(system, stranger, 200)
    own, _ = create(system, stranger, 10)
    pooled, _ = create(system, user, 20)
    transact(system.w3, m.addToPool(pooled), user)
    transact(system.w3, m.getFromPool(), stranger)
    assert m.getOrCreateSession().call({"from": stranger}) == pooled
    # once the owner closes it, the taker falls back to its own session
    transact(system.w3, m.closeSession(pooled), user)
    assert m.getOrCreateSession().call({"from": stranger}) == own
