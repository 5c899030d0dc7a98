"""View functions: the documented example's shapes and the client's one-call views."""

from __future__ import annotations

import pytest

from dtnsess_cli.devnet.localdtn import transact
from helpers import (
    REQ_PENDING,
    REQ_SUCCEEDED,
    answer,
    ask,
    create,
    fund,
    increase_time,
    next_second,
    session,
)

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")


def _ts(system, rcpt):
    return system.w3.eth.get_block(rcpt["blockNumber"])["timestamp"]


def test_example_views_keep_their_shapes(system, user, stranger):
    m = system.manager.functions
    fund(system, user, 200)
    a, ra = create(system, user, 20)
    b, _ = create(system, user, 30)
    rid, rr = ask(system, user, sid=a)

    # sessions(id): (sessionId, owner, balance, lastUsed, active, requestCount)
    assert m.sessions(a).call() == [a, user, 20 * system.unit, _ts(system, rr), True, 1]
    # getSessionStats(id): (owner, balance, lastUsed, active, requestCount)
    assert m.getSessionStats(b).call() == [user, 30 * system.unit, session(system, b)["lastUsed"], True, 0]
    assert m.getUserSessionCount(user).call() == 2
    assert m.getUserSessionCount(stranger).call() == 0
    assert m.getPoolStatus().call() == [0, 5]
    assert [m.activeSessions(0).call(), m.activeSessions(1).call()] == [a, b]
    assert [m.userSessions(user, 0).call(), m.userSessions(user, 1).call()] == [a, b]
    assert m.getUserSessions(user).call() == [a, b]
    transact(system.w3, m.addToPool(b), user)
    assert m.sessionPool(0).call() == b
    assert m.getPoolStatus().call() == [1, 5]

    # closing keeps the history but updates the active views (swap-and-pop)
    increase_time(system.w3, m.requestTimeout().call())
    transact(system.w3, m.closeSession(a), user)
    assert m.sessions(a).call()[4] is False and m.sessions(a).call()[2] == 0
    assert m.activeSessions(0).call() == b
    assert m.getUserSessionCount(user).call() == 2
    assert m.getUserActiveSessions(user).call() == [b]


def test_get_sessions_and_active_pagination(system, user, accounts):
    m = system.manager.functions
    owners = [user, accounts[4]]
    for o in owners:
        fund(system, o, 200)
    ids = [create(system, owners[i % 2], 10 + i)[0] for i in range(5)]
    views = m.getSessions(ids).call()
    assert [v[0] for v in views] == ids
    assert [v[1] for v in views] == [owners[i % 2] for i in range(5)]
    assert [v[2] for v in views] == [(10 + i) * system.unit for i in range(5)]
    assert all(v[4] and v[10] for v in views)  # active, hasDtnBalance
    assert [v[11] for v in views] == [(10 + i) * system.unit for i in range(5)]
    assert len({v[6] for v in views}) == 5  # distinct DTN sessions

    assert m.getActiveSessions(0, 2).call() == [ids[:2], 5]
    assert m.getActiveSessions(2, 2).call() == [ids[2:4], 5]
    assert m.getActiveSessions(4, 2).call() == [ids[4:], 5]
    assert m.getActiveSessions(5, 2).call() == [[], 5]
    assert m.getActiveSessions(9, 2).call() == [[], 5]
    assert m.getActiveSessions(1, 0).call() == [[], 5]
    assert m.getActiveSessions(0, 2**256 - 1).call() == [ids, 5]

    transact(system.w3, m.closeSession(ids[1]), owners[1])
    page, total = m.getActiveSessions(0, 10).call()
    assert total == 4 and sorted(page) == sorted(ids[:1] + ids[2:])
    closed = m.getSession(ids[1]).call()
    assert (closed[4], closed[10], closed[11]) == (False, False, 0)
    unknown = m.getSession(999).call()
    assert (unknown[0], unknown[1], unknown[4]) == (0, "0x0000000000000000000000000000000000000000", False)


def test_get_user_requests_pages_in_order(system, user, stranger):
    m = system.manager.functions
    fund(system, user, 100)
    create(system, user, 50)
    rids = []
    for i in range(3):
        next_second(system.w3)
        rids.append(ask(system, user, f"q{i}")[0])
    answer(system, rids[1])
    assert m.getUserRequests(user, 0, 10).call() == [rids, 3]
    assert m.getUserRequests(user, 1, 1).call() == [rids[1:2], 3]
    assert m.getUserRequests(user, 3, 1).call() == [[], 3]
    assert m.getUserRequests(stranger, 0, 10).call() == [[], 0]
    assert [m.requests(r).call()[3] for r in rids] == [REQ_PENDING, REQ_SUCCEEDED, REQ_PENDING]


def test_get_idle_sessions(system, user):
    m = system.manager.functions
    fund(system, user, 100)
    a, _ = create(system, user, 10)
    b, _ = create(system, user, 10)
    assert m.getIdleSessions(5).call() == []
    increase_time(system.w3, m.maxSessionAge().call() + 1)
    assert m.getIdleSessions(5).call() == [a, b]
    assert m.getIdleSessions(1).call() == [a]
    assert m.getIdleSessions(0).call() == []
    transact(system.w3, m.getOrCreateSession(), user)  # touches b
    assert m.getIdleSessions(5).call() == [a]


def test_get_config(system, user):
    m = system.manager.functions
    fund(system, user, 100)
    a, _ = create(system, user, 10)
    create(system, user, 10)
    transact(system.w3, m.addToPool(a), user)
    cfg = m.getConfig().call()
    unit = system.unit
    assert tuple(cfg) == (
        system.router.address, system.token.address, system.decimals, 10 * unit, 24 * 3600, 5, 1,
        unit // 1000, unit // 1000, unit, 15 * 60, 2, 24 * 3600,
    )
    assert m.ai().call() == system.router.address and m.feeToken().call() == system.token.address
