"""Configuration and access control of AdvancedSessionManager."""

from __future__ import annotations

import pytest

from dtnsess_cli.devnet.localdtn import transact
from helpers import (
    config_problem,
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
    receipt,
    send,
    tx_revert,
    one_event,
    session,
)

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")


def _config(system):
    m = system.manager.functions
    return (m.minSessionBalance().call(), m.maxSessionAge().call(), m.sessionPoolSize().call(),
            m.feePerByteReq().call(), m.feePerByteRes().call(), m.totalFeePerRes().call(),
            m.requestTimeout().call())


def test_owner_is_the_deployer(system, deployer):
    assert system.manager.functions.owner().call() == deployer


@pytest.mark.parametrize("call", ["updateConfig", "setFees", "setRequestTimeout"])
def test_non_owner_cannot_configure(system, stranger, user, call):
    m = system.manager.functions
    fn = {
        "updateConfig": lambda: m.updateConfig(1, 3600, 10),
        "setFees": lambda: m.setFees(0, 0, 1),
        "setRequestTimeout": lambda: m.setRequestTimeout(60),
    }[call]()
    before = _config(system)
    for who in (stranger, user):
        assert_reverts(call_from(fn, who), "OwnableUnauthorizedAccount", who)
    # also as a mined transaction: it fails and changes nothing
    w3 = system.w3
    with no_automine(w3):
        h = send(fn, stranger, gas=200_000)
        mine(w3)
    assert receipt(w3, h)["status"] == 0
    assert tx_revert(w3, h).name == "OwnableUnauthorizedAccount"
    assert _config(system) == before


def test_stranger_cannot_force_close_sessions(system, user, stranger):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    m = system.manager.functions
    assert_reverts(call_from(m.updateConfig(1, 1, 5), stranger), "OwnableUnauthorizedAccount", stranger)
    increase_time(system.w3, 3600)
    r = transact(system.w3, m.cleanupOldSessions(), stranger)
    assert events(system.manager, "SessionClosed", r) == []
    assert session(system, sid)["active"] and dtn_balance(system, sid) == 50 * system.unit
    assert m.claimableRefunds(user).call() == 0


def test_invalid_config_is_rejected(system, deployer, user):
    m = system.manager.functions
    fund(system, user, 100)
    a, _ = create(system, user, 10)
    b, _ = create(system, user, 10)
    transact(system.w3, m.addToPool(a), user)
    transact(system.w3, m.addToPool(b), user)
    timeout = m.requestTimeout().call()
    before = _config(system)
    cases = [
        (m.updateConfig(0, 3600, 5), "minimum session balance is zero"),
        (m.updateConfig(1, 0, 5), "max session age is zero"),
        (m.updateConfig(1, timeout - 1, 5), "max session age below request timeout"),
        (m.updateConfig(1, 3600, 1), "pool size below current pool"),
        (m.setFees(1, 1, 0), "max fee per response is zero"),
        (m.setRequestTimeout(0), "request timeout is zero"),
        (m.setRequestTimeout(m.maxSessionAge().call() + 1), "request timeout above max session age"),
    ]
    for fn, reason in cases:
        assert_reverts(call_from(fn, deployer), "InvalidConfig", config_problem(reason))
    assert _config(system) == before
    # the boundaries are accepted
    transact(system.w3, m.updateConfig(1, timeout, 2), deployer)
    transact(system.w3, m.setRequestTimeout(timeout), deployer)


def test_owner_updates_config_and_it_takes_effect(system, deployer, user, worker):
    w3 = system.w3
    m = system.manager.functions
    unit = system.unit
    r = transact(w3, m.updateConfig(20 * unit, 2 * 3600, 7), deployer)
    assert one_event(system.manager, "ConfigUpdated", r) == {
        "minSessionBalance": 20 * unit, "maxSessionAge": 7200, "sessionPoolSize": 7}
    r = transact(w3, m.setFees(unit // 100, unit // 50, unit // 2), deployer)
    assert one_event(system.manager, "FeesUpdated", r) == {
        "feePerByteReq": unit // 100, "feePerByteRes": unit // 50, "totalFeePerRes": unit // 2}
    r = transact(w3, m.setRequestTimeout(600), deployer)
    assert one_event(system.manager, "RequestTimeoutUpdated", r) == {"requestTimeout": 600}
    cfg = m.getConfig().call()
    assert (cfg[3], cfg[4], cfg[5], cfg[7], cfg[8], cfg[9], cfg[10]) == (
        20 * unit, 7200, 7, unit // 100, unit // 50, unit // 2, 600)
    assert m.getPoolStatus().call() == [0, 7]

    fund(system, user, 100)
    assert_reverts(call_from(m.createSession(20 * unit - 1), user), "BalanceTooLow")
    sid, _ = create(system, user, 20)
    rid, _ = ask(system, user, "p" * 200)
    stored = system.router.functions.getRequest(rid).call()
    assert list(stored[8][3:6]) == [unit // 100, unit // 50, unit // 2]
    worker_before = bal(system, worker)
    answer(system, rid, "a" * 200)
    assert bal(system, worker) - worker_before == unit // 2  # the new cap binds
    # the new max age and timeout apply to cleanup and the pending guard
    increase_time(w3, 7201)
    r = transact(w3, m.cleanupOldSessions(), worker)
    assert [e["sessionId"] for e in events(system.manager, "SessionClosed", r)] == [sid]


def test_ownership_transfer_moves_the_right_to_configure(system, deployer, stranger):
    m = system.manager.functions
    transact(system.w3, m.transferOwnership(stranger), deployer)
    # two steps (Ownable2Step): the old owner keeps the right until the new one accepts
    assert m.owner().call() == deployer and m.pendingOwner().call() == stranger
    assert_reverts(call_from(m.setRequestTimeout(60), stranger), "OwnableUnauthorizedAccount", stranger)
    transact(system.w3, m.acceptOwnership(), stranger)
    transact(system.w3, m.setRequestTimeout(60), stranger)
    assert m.requestTimeout().call() == 60
    assert_reverts(call_from(m.setRequestTimeout(61), deployer), "OwnableUnauthorizedAccount", deployer)
