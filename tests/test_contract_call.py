"""makeAIRequestWithCall: the caller's encoded call and call type reach DTN unchanged, with the
same checks as the prompt functions (routing, ownership and grants, fee per call byte, collisions)."""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak

from dtnsess_cli.devnet.localdtn import transact
from dtnsess_cli.manager import CALLTYPE_DIRECT, CALLTYPE_IPFS
from helpers import (
    ALL,
    CALLBACK_GAS,
    REQ_SUCCEEDED,
    answer,
    assert_reason,
    assert_reverts,
    ask,
    bal,
    call_from,
    create,
    default_routing,
    events,
    fund,
    latest_ts,
    mine,
    no_automine,
    one_event,
    receipt,
    request_status,
    routing,
    send,
    session,
    tx_revert,
)

pytestmark = pytest.mark.usefixtures("conserved")

# what DTN's image API takes: (string[] prompt lines, uint64 width, uint64 height)
IMAGE_CALL = abi_encode(["string[]", "uint64", "uint64"], [["a red square"], 256, 256])


def _with_call(system, sid, call=IMAGE_CALL, calltype=CALLTYPE_IPFS, route=None):
    return system.manager.functions.makeAIRequestWithCall(
        sid, call, calltype, system.model, route or default_routing())


def _ask_call(system, who, sid=0, **kw):
    r = transact(system.w3, _with_call(system, sid, **kw), who, value=CALLBACK_GAS)
    return one_event(system.manager, "AIRequestSubmitted", r)["requestId"], r


@pytest.mark.parametrize("calltype", [CALLTYPE_IPFS, CALLTYPE_DIRECT], ids=["ipfs", "direct"])
def test_call_bytes_and_calltype_reach_the_router_unchanged(system, user, calltype):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    rid, r = _ask_call(system, user, sid, calltype=calltype)

    stored = system.router.functions.getRequest(rid).call()
    call, extra, ctype, per_req, per_res, total = stored[8]
    assert (call, extra, ctype) == (IMAGE_CALL, b"", calltype)
    m = system.manager.functions
    assert [per_req, per_res, total] == [m.feePerByteReq().call(), m.feePerByteRes().call(),
                                         m.totalFeePerRes().call()]
    assert stored[1] == keccak(system.model.encode())  # the model id
    assert stored[4] == CALLBACK_GAS
    assert one_event(system.manager, "AIRequestSubmitted", r)["sessionId"] == sid
    assert m.requests(rid).call()[:2] == [sid, user]
    assert session(system, sid)["pendingRequests"] == 1
    # the answer is recorded like any other
    answer(system, rid, "QmSomeCid")
    assert request_status(system, rid) == REQ_SUCCEEDED


def test_the_prompt_functions_still_send_direct_string_arrays(system, user):
    fund(system, user, 100)
    rid, _ = ask(system, user, "plain text")
    call, _, ctype, *_ = system.router.functions.getRequest(rid).call()[8]
    assert ctype == CALLTYPE_DIRECT and call == abi_encode(["string[]"], [["plain text"]])


def test_session_zero_uses_the_current_session_and_creates_one_when_there_is_none(system, user):
    fund(system, user, 100)
    before = bal(system, user)
    rid, r = _ask_call(system, user, 0)
    created = one_event(system.manager, "SessionCreated", r)
    assert created["owner"] == user
    assert created["balance"] == system.manager.functions.minSessionBalance().call()
    assert bal(system, user) == before - created["balance"]
    assert system.manager.functions.requests(rid).call()[0] == created["sessionId"]
    # the next one, a second later, reuses it
    mine(system.w3, latest_ts(system.w3) + 1)
    _, r2 = _ask_call(system, user, 0)
    assert events(system.manager, "SessionCreated", r2) == []
    assert one_event(system.manager, "AIRequestSubmitted", r2)["sessionId"] == created["sessionId"]


def test_the_fee_counts_each_byte_of_the_call(system, user, deployer):
    """1 token per call byte: a 50-token session pays a 32-byte call but not a 100-byte one; in a
    named session that is SessionBalanceTooLow, with session 0 a new session is opened instead."""
    w3, unit = system.w3, system.unit
    m = system.manager.functions
    transact(w3, m.setFees(unit, unit // 1000, 1000 * unit), deployer)
    fund(system, user, 200)
    sid, _ = create(system, user, 50)
    big, small = b"\x01" * 100, b"\x02" * 32
    assert_reverts(call_from(_with_call(system, sid, big), user, CALLBACK_GAS),
                   "SessionBalanceTooLow", sid, 50 * unit, 100 * unit)
    _, r = _ask_call(system, user, 0, call=big)
    new_sid = one_event(system.manager, "SessionCreated", r)["sessionId"]
    assert new_sid != sid
    mine(w3, latest_ts(w3) + 1)
    _, r = _ask_call(system, user, sid, call=small)
    assert one_event(system.manager, "AIRequestSubmitted", r)["sessionId"] == sid


def test_ownership_grants_and_routing_apply(system, user, stranger, accounts):
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    taker = accounts[4]
    assert_reverts(call_from(_with_call(system, sid), stranger, CALLBACK_GAS),
                   "NotAllowedToUseSession", sid, stranger)
    assert_reverts(call_from(_with_call(system, sid, route=routing([b"\x01" * 32], aggregation=ALL)),
                             user, CALLBACK_GAS), "InvalidRouting")
    assert_reverts(call_from(_with_call(system, sid, call=b""), user, CALLBACK_GAS), "EmptyCall")
    assert_reason(call_from(m.makeAIRequestWithCall(sid, IMAGE_CALL, CALLTYPE_IPFS, "no-such-model",
                                                    default_routing()), user, CALLBACK_GAS),
                  "Model does not exist")

    # a pool grant: the taker may use the session (by id or as its current one), within its limit
    limit = 2 * m.totalFeePerRes().call()
    transact(w3, m.addToPoolWithLimit(sid, limit, False), user)
    transact(w3, m.getFromPool(), taker)
    assert_reverts(call_from(_with_call(system, sid, route=routing([], [b"\x02" * 32])), taker,
                             CALLBACK_GAS), "RoutingNotAllowed", sid)
    rid, _ = _ask_call(system, taker, sid)
    assert m.requests(rid).call()[:2] == [sid, taker]
    assert m.getGrant(taker).call()[1] == limit - m.totalFeePerRes().call()
    mine(w3, latest_ts(w3) + 1)
    _, r = _ask_call(system, taker, 0)  # the grant is the taker's current session
    assert events(system.manager, "SessionCreated", r) == []
    assert one_event(system.manager, "AIRequestSubmitted", r)["sessionId"] == sid
    assert one_event(system.manager, "GrantEnded", r)["user"] == taker  # the limit is spent
    mine(w3, latest_ts(w3) + 1)
    assert_reverts(call_from(_with_call(system, sid), taker, CALLBACK_GAS),
                   "NotAllowedToUseSession", sid, taker)


def test_a_same_second_call_request_is_a_collision(system, user):
    w3 = system.w3
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    with no_automine(w3):
        h1 = send(_with_call(system, sid), user, value=CALLBACK_GAS)
        h2 = send(_with_call(system, sid, calltype=CALLTYPE_DIRECT), user, value=CALLBACK_GAS)
        mine(w3, latest_ts(w3) + 1)
    r1, r2 = receipt(w3, h1), receipt(w3, h2)
    assert (r1["status"], r2["status"]) == (1, 0)
    rid = one_event(system.manager, "AIRequestSubmitted", r1)["requestId"]
    assert tx_revert(w3, h2).name == "RequestIdCollision"
    # the first request is intact on the router
    assert system.router.functions.getRequest(rid).call()[8][2] == CALLTYPE_IPFS
    assert session(system, sid)["requestCount"] == 1


# ----------------------------------------------------------------------------- the client


def _client(system, anvil, key):
    from dtnsess_cli.config import Settings
    from dtnsess_cli.manager import Client
    from dtnsess_cli.render import Renderer

    settings = Settings(rpc_url=anvil.url, contract=system.manager.address, chain_id=31337,
                        private_key=key, key_kind="private_key", yes=True, json=True)
    return Client(settings, Renderer(json_mode=True))


def test_client_sends_an_encoded_call_through_the_one_send_path(system6, anvil, private_keys, user):
    system = system6
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    c = _client(system, anvil, private_keys[1])
    res = c.make_ai_request(None, call=IMAGE_CALL, calltype=CALLTYPE_IPFS, model=system.model,
                            session_id=sid)
    d = res.data
    assert (d["session_id"], d["calltype"], d["call_bytes"]) == (sid, "ipfs", len(IMAGE_CALL))
    rid = bytes.fromhex(d["request_id"][2:])
    assert tuple(system.router.functions.getRequest(rid).call()[8][:3]) == (IMAGE_CALL, b"", CALLTYPE_IPFS)
    assert res.txs[0].gas_used > 0

    # session 0: the contract's choice (here the same session), DIRECT
    mine(system.w3, latest_ts(system.w3) + 1)
    d = c.make_ai_request(None, call=IMAGE_CALL, model=system.model).data
    assert (d["session_id"], d["calltype"]) == (sid, "direct")


def test_client_refuses_bad_calls_and_sends_nothing(system6, anvil, private_keys, user):
    from dtnsess_cli.errors import InputError

    system = system6
    fund(system, user, 100)
    create(system, user, 50)
    c = _client(system, anvil, private_keys[1])
    nonce = system.w3.eth.get_transaction_count(user)
    for kw in ({"call": b""}, {"call": IMAGE_CALL, "calltype": 2},
               {"call": b"\x01" * (16 * 1024 + 1)}):
        with pytest.raises(InputError):
            c.make_ai_request(None, model=system.model, **kw)
    with pytest.raises(InputError):
        c.make_ai_request("a prompt", call=IMAGE_CALL, model=system.model)
    assert system.w3.eth.get_transaction_count(user) == nonce
