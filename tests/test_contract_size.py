"""The manager keeps room to grow: at least 4 KB under EIP-170 (a chain refuses runtime code of
24,576 bytes or more) with the optimizer at runs >= 200, by design (custom errors, views in a
lens served at the manager's address), not by optimising for size."""

from __future__ import annotations

from dtnsess_cli.artifacts import load_artifact
from dtnsess_cli.devnet.localdtn import transact
from helpers import assert_reverts, call_from, create, fund, reverts

EIP170_LIMIT = 24_576
HEADROOM = 4_096


def test_deployed_manager_keeps_4kb_headroom_at_runs_200(system6):
    code = system6.w3.eth.get_code(system6.manager.address)
    art = load_artifact("AdvancedSessionManager")
    # immutables are filled in at deploy time: same length as the artifact's runtime code
    assert len(code) == (len(art["deployedBytecode"]) - 2) // 2
    assert art["compiler"]["settings"]["optimizer"] == {"enabled": True, "runs": 200}
    assert len(code) <= EIP170_LIMIT - HEADROOM, f"{len(code)} bytes, {len(code) - EIP170_LIMIT + HEADROOM} over"
    lens = system6.w3.eth.get_code(system6.manager.functions.lens().call())
    assert 0 < len(lens) < EIP170_LIMIT
    print(f"manager runtime code: {len(code):,} bytes ({EIP170_LIMIT - len(code):,} to spare); "
          f"lens {len(lens):,}")


def test_lens_views_answer_at_the_manager_address_and_cannot_write(system6, user, stranger):
    """The lens's views are part of the manager's ABI and answer at its address; what the lens
    exposes is view-only, and the fallback refuses ETH and unknown selectors."""
    system = system6
    w3, m = system.w3, system.manager.functions
    lens_abi = load_artifact("AdvancedSessionManagerLens")["abi"]
    assert all(e["stateMutability"] in ("view", "pure") for e in lens_abi if e["type"] == "function")
    fund(system, user, 100)
    sid, _ = create(system, user, 20)
    assert m.getSession(sid).call()[1] == user
    assert m.getUserActiveSessions(user).call() == [sid]
    assert m.sessions(sid).call()[:2] == [sid, user]  # the documented example's name
    assert m.getConfig().call()[1] == system.token.address
    # called directly, the lens reads its own empty storage: it holds nothing of the manager's
    lens = w3.eth.contract(address=m.lens().call(), abi=lens_abi)
    assert lens.functions.getUserActiveSessions(user).call() == []
    # the fallback is not payable and an unknown selector reverts
    for tx in ({"to": system.manager.address, "from": stranger, "data": "0x12345678"},
               {"to": system.manager.address, "from": stranger, "value": 1}):
        assert reverts(lambda tx=tx: w3.eth.call(tx)).name is None  # a bare revert
    transact(w3, m.closeSession(sid), user)
    assert m.getUserActiveSessions(user).call() == []
    assert_reverts(call_from(m.closeSession(sid), user), "SessionNotActive", sid)
