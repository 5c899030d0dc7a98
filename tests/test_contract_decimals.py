"""Fees and limits derived from the fee token's decimals (6 like USDT on Base, and 18)."""

from __future__ import annotations

import pytest

from dtnsess_cli.devnet.localdtn import transact
from helpers import (
    CALLBACK_GAS,
    answer,
    ask,
    assert_reverts,
    bal,
    call_from,
    create,
    default_routing,
    dtn_balance,
    fund,
    next_second,
    one_event,
    session,
)

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")


def test_defaults_follow_the_token_decimals(system):
    m = system.manager.functions
    unit = 10 ** system.token.functions.decimals().call()
    assert unit == system.unit
    assert m.tokenDecimals().call() == system.decimals
    assert m.minSessionBalance().call() == 10 * unit
    assert m.feePerByteReq().call() == m.feePerByteRes().call() == unit // 1000
    assert m.totalFeePerRes().call() == unit
    cfg = m.getConfig().call()
    assert (cfg[0], cfg[1], cfg[2]) == (system.router.address, system.token.address, system.decimals)


def test_minimum_balance_is_ten_tokens(system, user):
    fund(system, user, 100)
    m = system.manager.functions
    before = bal(system, user)
    assert_reverts(call_from(m.createSession(10 * system.unit - 1), user), "BalanceTooLow")
    assert_reverts(call_from(m.createSession(0), user), "BalanceTooLow")
    assert bal(system, user) == before
    sid, _ = create(system, user, 10)
    assert dtn_balance(system, sid) == 10 * system.unit


def test_first_answer_is_charged_within_the_per_response_cap(system, user, worker):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    # large enough that the per-byte fees alone would exceed one token
    rid, _ = ask(system, user, "Summarize: " + "lorem ipsum " * 100)
    worker_before = bal(system, worker)
    r = answer(system, rid, "dolor sit amet " * 80)
    paid = bal(system, worker) - worker_before
    assert paid == system.unit  # capped at exactly one token
    assert one_event(system.router, "SessionCharged", r)["amount"] == paid
    assert dtn_balance(system, sid) == 49 * system.unit
    assert session(system, sid)["dtnBalance"] >= 49 * system.unit


def test_small_answer_is_charged_per_byte(system, user, worker):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    rid, _ = ask(system, user, "hi")
    worker_before = bal(system, worker)
    answer(system, rid, "ok")
    stored = system.router.functions.getRequest(rid).call()
    response = system.router.functions.getResponse(rid).call()[2]
    expected = (len(stored[8][0]) + len(response)) * (system.unit // 1000)
    assert 0 < expected < system.unit
    assert bal(system, worker) - worker_before == expected
    assert dtn_balance(system, sid) == 50 * system.unit - expected


def test_a_session_that_cannot_pay_one_answer_is_not_used(system, deployer, user, worker):
    """DTN charges what is left when a session cannot cover an answer; the manager no longer sends
    such requests: a named session is refused, the automatic choice skips it (issue 7, finding 6)."""
    m = system.manager.functions
    transact(system.w3, m.setFees(system.unit, system.unit, 7 * system.unit), deployer)
    fund(system, user, 100)
    sid, _ = create(system, user, 10)
    rid, _ = ask(system, user, "x" * 50)
    answer(system, rid, "y" * 50)
    assert dtn_balance(system, sid) == 3 * system.unit
    assert m.getSessionStats(sid).call()[1] == 3 * system.unit  # what remains, not what was funded
    next_second(system.w3)
    # one answer costs at least min(request bytes * fee per byte, max fee) = 7 tokens here
    req = m.makeAIRequestInSession(sid, "x" * 50, system.model, default_routing())
    assert_reverts(call_from(req, user, CALLBACK_GAS), "SessionBalanceTooLow", sid, 3 * system.unit,
                   7 * system.unit)
    new_sid = m.nextSessionId().call()
    assert m.getOrCreateSession().call({"from": user}) == new_sid  # would create a new one
    before_user = bal(system, user)
    transact(system.w3, m.closeSession(sid), user)
    assert bal(system, user) - before_user == 3 * system.unit
