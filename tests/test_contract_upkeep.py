"""Chainlink Automation: checkUpkeep / performUpkeep over the bounded cleanup, driven the way a
keeper network drives it (check by eth_call, perform when needed) by an address that owns nothing."""

from __future__ import annotations

import os

import pytest
from eth_abi import encode as abi_encode

from cli_helpers import load_json
from dtnsess_cli.devnet.localdtn import transact
from dtnsess_cli.manager.base import UPKEEP_BATCH
from helpers import (
    CALLBACK_GAS,
    ask,
    assert_reverts,
    bal,
    create,
    events,
    fund,
    increase_time,
    no_automine,
    rpc,
    send,
    session,
)

pytestmark = pytest.mark.usefixtures("conserved")

# Chainlink Automation's default perform gas limit
PERFORM_GAS_LIMIT = 5_000_000


def _age_out(system):
    increase_time(system.w3, system.manager.functions.maxSessionAge().call() + 1)


def _outsider(w3, n: int = 1) -> str:
    """A fresh address with ETH for gas and nothing else (impersonated: no key needed)."""
    addr = w3.to_checksum_address(f"0x{0xC0FFEE00 + n:040x}")
    rpc(w3, "anvil_impersonateAccount", addr)
    rpc(w3, "anvil_setBalance", addr, hex(10**20))
    return addr


def _check(system, sender) -> tuple:
    needed, data = system.manager.functions.checkUpkeep(b"").call({"from": sender})
    return needed, data


def _perform(system, keeper, data=b""):
    """performUpkeep as a keeper sends it: with a gas limit of PERFORM_GAS_LIMIT."""
    r = transact(system.w3, system.manager.functions.performUpkeep(data), keeper, gas=PERFORM_GAS_LIMIT)
    assert r["gasUsed"] < PERFORM_GAS_LIMIT
    return r


def _closed(system, r) -> list:
    return [e["sessionId"] for e in events(system.manager, "SessionClosed", r)]


def _create_many(system, owners, n, tokens=10):
    """n sessions of `tokens` each, round robin over `owners`, mined in a few blocks."""
    w3, m = system.w3, system.manager.functions
    first = m.nextSessionId().call()
    with no_automine(w3):
        for i in range(n):
            send(m.createSession(tokens * system.unit), owners[i % len(owners)], gas=600_000)
        while int(rpc(w3, "txpool_status")["pending"], 16) > 0:
            rpc(w3, "evm_mine")
    assert m.nextSessionId().call() == first + n
    return {sid: owners[(sid - first) % len(owners)] for sid in range(first, first + n)}


def test_nothing_idle_check_is_false_and_perform_reverts(system, user):
    keeper = _outsider(system.w3)
    m = system.manager.functions
    assert _check(system, keeper) == (False, b"")  # no session at all
    assert_reverts(lambda: m.performUpkeep(b"").call({"from": keeper}), "NothingClosed")
    fund(system, user, 100)
    sid, _ = create(system, user, 10)
    increase_time(system.w3, m.maxSessionAge().call() - 10)
    assert _check(system, keeper) == (False, b"")  # not idle yet
    assert_reverts(lambda: m.performUpkeep(b"").call({"from": keeper}), "NothingClosed")
    # Chainlink simulates checkUpkeep from the zero address
    assert _check(system, "0x0000000000000000000000000000000000000000")[0] is False
    increase_time(system.w3, 11)
    assert _check(system, keeper) == (True, b"")
    assert session(system, sid)["active"]
    assert m.DEFAULT_CLEANUP_BATCH().call() == UPKEEP_BATCH  # what `cleanup --check` reports


@pytest.mark.slow
def test_keeper_loop_closes_300_idle_sessions_of_several_owners(system6, accounts):
    system = system6
    w3, m, unit = system.w3, system.manager.functions, system.unit
    owners = [accounts[i] for i in (1, 4, 5, 6, 7)]
    for o in owners:
        fund(system, o, 10 * 61)
    sessions = _create_many(system, owners, 300)
    keeper = _outsider(w3)
    eth_before = w3.eth.get_balance(keeper)
    assert _check(system, keeper)[0] is False
    _age_out(system)

    closed, gas, performs = [], [], 0
    while True:
        needed, data = _check(system, keeper)  # eth_call, as a keeper node does
        if not needed:
            break
        r = _perform(system, keeper, data)
        performs += 1
        closed += _closed(system, r)
        gas.append(r["gasUsed"])
        assert performs <= 300 // m.DEFAULT_CLEANUP_BATCH().call() + 1, "the loop does not end"

    print(f"performUpkeep: {performs} calls, gasUsed {gas}")
    assert sorted(closed) == sorted(sessions)
    assert performs == 6 and max(gas) < PERFORM_GAS_LIMIT
    assert m.getActiveSessions(0, 1).call()[1] == 0
    for o in owners:
        assert m.claimableRefunds(o).call() == 10 * unit * sum(1 for x in sessions.values() if x == o)
    assert m.totalClaimable().call() == 300 * 10 * unit
    # the keeper paid gas and nothing else, and got nothing
    assert bal(system, keeper) == 0 and m.claimableRefunds(keeper).call() == 0
    spent = eth_before - w3.eth.get_balance(keeper)
    assert 0 < spent <= sum(gas) * 10**11
    assert_reverts(lambda: m.performUpkeep(b"").call({"from": keeper}), "NothingClosed")


@pytest.mark.parametrize("data", [
    abi_encode(["uint256"], [2**256 - 1]),  # "close them all"
    abi_encode(["uint256[]"], [list(range(1, 200))]),  # ids of sessions that are not idle
    os.urandom(4000),  # garbage
], ids=["huge-count", "id-list", "garbage"])
def test_hostile_perform_data_changes_nothing(system6, user, accounts, data):
    """performData is ignored: the contract decides what is idle, at most one batch per call."""
    system = system6
    w3, m = system.w3, system.manager.functions
    fund(system, user, 10 * 60)
    idle = _create_many(system, [user], 55)
    _age_out(system)
    fresh, _ = create(system, user, 10)
    keeper = _outsider(w3)

    r = _perform(system, keeper, data)
    assert _closed(system, r) == sorted(idle)[:50]  # least recently used first, one batch
    r = _perform(system, keeper, data)
    assert _closed(system, r) == sorted(idle)[50:]
    assert session(system, fresh)["active"]
    assert_reverts(lambda: m.performUpkeep(data).call({"from": keeper}), "NothingClosed")
    assert _check(system, keeper)[0] is False


def test_perform_reverts_when_dtn_refuses_every_close(system6, deployer, user):
    """Nothing closed is a revert (a keeper's simulation fails, nothing is paid); cleanup can retry."""
    system = system6
    w3, m = system.w3, system.manager.functions
    fund(system, user, 100)
    a, _ = create(system, user, 10)
    _age_out(system)
    keeper = _outsider(w3)
    transact(w3, system.token.functions.setBlocked(system.manager.address, True), deployer)
    assert _check(system, keeper)[0] is True
    assert_reverts(lambda: m.performUpkeep(b"").call({"from": keeper}), "NothingClosed")
    transact(w3, system.token.functions.setBlocked(system.manager.address, False), deployer)
    r = _perform(system, keeper)
    assert _closed(system, r) == [a]
    assert events(system.manager, "CleanupFailed", r) == []


@pytest.mark.slow
def test_worst_case_batch_fits_the_perform_gas_limit_with_margin(system6, deployer, accounts, make_cli):
    """The issue-14 worst case: 50 idle sessions of 50 fresh owners, each granted to a taker with
    one pending request and each between two used sessions of its owner. On 5e555a9 one batch
    needed a 5,502,246 gas limit and ran out of gas at 5,000,000 while checkUpkeep stayed true.
    Now a perform stops at UPKEEP_GAS_BUDGET: the limit a keeper must give (the estimate) is
    at most 4,500,000, a 5,000,000 limit runs, and the next performs close the rest."""
    system = system6
    w3, m = system.w3, system.manager.functions
    batch = m.DEFAULT_CLEANUP_BATCH().call()
    transact(w3, m.updateConfig(m.minSessionBalance().call(), m.maxSessionAge().call(), 100), deployer)
    idle, used = [], []
    for i in range(batch):
        owner, taker = _outsider(w3, 100 + i), _outsider(w3, 1000 + i)
        fund(system, owner, 60)
        mine = [create(system, owner, 20)[0] for _ in range(3)]
        transact(w3, m.addToPool(mine[1]), owner)
        transact(w3, m.getFromPool(), taker)
        ask(system, taker, sid=mine[1], value=CALLBACK_GAS)
        idle.append(mine[1])
        used.append((owner, mine[0], mine[2]))
    _age_out(system)
    for owner, first, last in used:  # the neighbours are used again: only the middle ones are idle
        transact(w3, m.getOrCreateSession(), owner)
        ask(system, owner, sid=first, value=CALLBACK_GAS)
    assert m.getIdleSessions(batch + 1).call() == idle
    keeper = _outsider(w3)

    limit = w3.eth.estimate_gas({"from": keeper, "to": system.manager.address,
                                 "data": system.manager.encode_abi("performUpkeep", [b""])})
    check = make_cli(system)("cleanup", "--check", "--json", role=None)
    r = _perform(system, keeper)

    closed = _closed(system, r)
    # `cleanup --check` says what the perform closes, not the batch of 50 (it said "up to 50")
    assert check.exit_code == 14, check.output
    said = load_json(check)
    assert (said["count"], said["would_close"], said["more_idle"]) == (len(closed), closed, True)
    print(f"worst-case performUpkeep: {len(closed)} sessions, limit needed {limit:,}, "
          f"gasUsed {r['gasUsed']:,} ({r['gasUsed'] // len(closed):,} per session)")
    assert limit <= 0.9 * PERFORM_GAS_LIMIT
    assert closed == idle[:len(closed)] and len(closed) >= 30
    assert len(events(system.manager, "GrantEnded", r)) == len(closed)
    while _check(system, keeper)[0]:  # checkUpkeep says yes only to a batch that runs
        closed += _closed(system, _perform(system, keeper))
    assert closed == idle and m.getIdleSessions(1).call() == []
    assert all(session(system, sid)["active"] for _, a, b in used for sid in (a, b))


def test_the_abi_is_automation_compatible():
    """The exact AutomationCompatibleInterface shapes (selectors 0x6e04ff0d, 0x4585e33b): what a
    registry calls and decodes."""
    from dtnsess_cli.artifacts import load_artifact
    from eth_utils import keccak

    abi = {e["name"]: e for e in load_artifact("AdvancedSessionManager")["abi"] if e["type"] == "function"}
    check, perform = abi["checkUpkeep"], abi["performUpkeep"]
    assert [i["type"] for i in check["inputs"]] == ["bytes"]
    assert [o["type"] for o in check["outputs"]] == ["bool", "bytes"]
    assert [i["type"] for i in perform["inputs"]] == ["bytes"] and perform["outputs"] == []
    assert perform["stateMutability"] == "nonpayable"
    assert keccak(text="checkUpkeep(bytes)")[:4].hex() == "6e04ff0d"
    assert keccak(text="performUpkeep(bytes)")[:4].hex() == "4585e33b"
