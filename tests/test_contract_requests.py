"""Requests, callbacks and request-id collisions: the manager against LocalDtnRouter."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from dtnsess_cli.devnet.localdtn import SYSTEM_TRUST_NAMESPACE, decode_answer, prompt_of, respond, transact
from helpers import (
    routing_problem,
    ALL,
    CALLBACK_GAS,
    REQ_FAILED,
    REQ_PENDING,
    REQ_SUCCEEDED,
    answer,
    ask,
    assert_reason,
    assert_reverts,
    bal,
    call_from,
    create,
    default_routing,
    events,
    fail,
    fund,
    latest_ts,
    mine,
    next_second,
    increase_time,
    no_automine,
    one_event,
    open_router_session,
    receipt,
    request_status,
    router_request_args,
    routing,
    send,
    session,
    tx_revert,
)

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")


def _request_size(system, rid) -> int:
    return len(system.router.functions.getRequest(rid).call()[8][0])


def test_request_and_answer_charge_the_session_and_record_the_outcome(system, user, worker):
    w3 = system.w3
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    dtn_sid = session(system, sid)["dtnSessionId"]
    eth_before = w3.eth.get_balance(system.router.address)

    rid, r = ask(system, user, "What is the Deep Trust Network?")

    ts = w3.eth.get_block(r["blockNumber"])["timestamp"]
    assert one_event(system.manager, "AIRequestSubmitted", r) == {
        "requestId": rid, "sessionId": sid, "user": user, "dtnSessionId": dtn_sid}
    assert one_event(system.router, "RequestCreated", r) == {"requestId": rid, "sessionId": dtn_sid, "user": user}
    assert rid == keccak(ts.to_bytes(32, "big") + dtn_sid.to_bytes(32, "big")
                         + bytes.fromhex(user[2:]) + bytes.fromhex(system.manager.address[2:]))
    assert system.manager.functions.requests(rid).call() == [sid, user, ts, REQ_PENDING]
    s = session(system, sid)
    assert (s["pendingRequests"], s["requestCount"], s["lastRequestAt"], s["lastUsed"]) == (1, 1, ts, ts)
    assert w3.eth.get_balance(system.router.address) - eth_before == CALLBACK_GAS
    stored = system.router.functions.getRequest(rid).call()
    assert stored[4] == CALLBACK_GAS  # callbackGas == msg.value
    assert prompt_of(stored[8][0]) == "What is the Deep Trust Network?"
    fees = system.manager.functions
    assert list(stored[8][3:6]) == [fees.feePerByteReq().call(), fees.feePerByteRes().call(),
                                    fees.totalFeePerRes().call()]
    assert_reason(call_from(system.router.functions.fetchResponse(rid), user), "Request not completed")

    worker_before = bal(system, worker)
    r = answer(system, rid, "A decentralized AI oracle.")

    size_req, size_res = _request_size(system, rid), len(system.router.functions.getResponse(rid).call()[2])
    fee = min(size_req * stored[8][3] + size_res * stored[8][4], stored[8][5])
    assert fee > 0
    assert bal(system, worker) - worker_before == fee
    assert one_event(system.router, "SessionCharged", r) == {"sessionId": dtn_sid, "amount": fee, "to": worker}
    assert events(system.router, "SuccessCallbackFailed", r) == []
    assert one_event(system.manager, "AIResponseReceived", r) == {"requestId": rid, "status": 1, "message": ""}
    assert one_event(system.manager, "AIRequestCompleted", r) == {
        "requestId": rid, "sessionId": sid, "user": user, "status": 1}
    assert request_status(system, rid) == REQ_SUCCEEDED
    assert session(system, sid)["pendingRequests"] == 0
    assert session(system, sid)["dtnBalance"] == 50 * system.unit - fee
    status, message, payload = system.router.functions.fetchResponse(rid).call()
    assert (status, message, decode_answer(payload)) == (1, "", "A decentralized AI oracle.")
    assert system.manager.functions.getUserRequests(user, 0, 10).call() == [[rid], 1]


def test_make_ai_request_without_a_session_creates_one(system, user):
    fund(system, user, 100)
    before = bal(system, user)
    rid, r = ask(system, user)
    created = one_event(system.manager, "SessionCreated", r)
    minimum = system.manager.functions.minSessionBalance().call()
    assert created["balance"] == minimum and created["owner"] == user
    assert one_event(system.manager, "AIRequestSubmitted", r)["sessionId"] == created["sessionId"]
    assert bal(system, user) == before - minimum


def test_request_rejections(system, user, stranger):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    m = system.manager.functions
    assert_reason(call_from(m.makeAIRequest("hi", "gpt-3.5-turbo", []), user, CALLBACK_GAS),
                  "Model does not exist")
    assert_reverts(call_from(m.makeAIRequestInSession(sid, "hi", system.model, default_routing()), stranger,
                             CALLBACK_GAS), "NotAllowedToUseSession", sid, stranger)
    transact(system.w3, m.closeSession(sid), user)
    assert_reverts(call_from(m.makeAIRequestInSession(sid, "hi", system.model, default_routing()), user,
                             CALLBACK_GAS), "SessionNotActive", sid)


def test_router_requires_callback_gas_as_value(system, user):
    dtn_sid = open_router_session(system, user)
    args = router_request_args(system, dtn_sid, user, callback_gas=1000)
    assert_reason(call_from(system.router.functions.request(*args), user, 999), "Insufficient callback gas")
    system.router.functions.request(*args).call({"from": user, "value": 1000})  # enough: accepted
    # someone else's session
    assert_reason(call_from(system.router.functions.request(*args), system.worker, 1000),
                  "Session not related to the user")


@pytest.mark.parametrize("value", [0, 2_000])
def test_reverting_callback_does_not_undo_the_answer(system, user, stranger, worker, value):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    rid, _ = ask(system, user, value=value)
    worker_before = bal(system, worker)

    r = answer(system, rid, "still answered")

    assert [e["requestId"] for e in events(system.router, "SuccessCallbackFailed", r)] == [rid]
    assert one_event(system.router, "RequestCompleted", r) == {"requestId": rid, "status": 1}
    assert events(system.manager, "AIRequestCompleted", r) == []
    charged = bal(system, worker) - worker_before
    assert charged > 0
    assert session(system, sid)["dtnBalance"] == 50 * system.unit - charged
    _, _, payload = system.router.functions.fetchResponse(rid).call()
    assert decode_answer(payload) == "still answered"
    assert request_status(system, rid) == REQ_PENDING
    assert session(system, sid)["pendingRequests"] == 1

    r = transact(system.w3, system.manager.functions.settleRequest(rid), stranger)

    assert one_event(system.manager, "AIRequestCompleted", r) == {
        "requestId": rid, "sessionId": sid, "user": user, "status": 1}
    assert request_status(system, rid) == REQ_SUCCEEDED
    assert session(system, sid)["pendingRequests"] == 0
    assert_reverts(call_from(system.manager.functions.settleRequest(rid), stranger), "RequestNotPending")


def test_settle_refuses_an_unanswered_request(system, user):
    fund(system, user, 100)
    create(system, user, 50)
    rid, _ = ask(system, user)
    assert_reason(call_from(system.manager.functions.settleRequest(rid), user), "Request not completed")
    assert_reverts(call_from(system.manager.functions.settleRequest(b"\x01" * 32), user), "RequestNotPending")


def test_failure_answer_reaches_on_error(system, user, worker):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    rid, _ = ask(system, user)
    worker_before = bal(system, worker)

    r = fail(system, rid, "model overloaded")

    assert one_event(system.manager, "AIRequestFailed", r) == {"requestId": rid, "error": "model overloaded"}
    assert one_event(system.manager, "AIRequestCompleted", r)["status"] == 2
    assert events(system.manager, "AIResponseReceived", r) == []
    assert request_status(system, rid) == REQ_FAILED
    assert session(system, sid)["pendingRequests"] == 0
    fee = min(_request_size(system, rid) * system.router.functions.failureFeePerByte().call(), system.unit)
    assert fee > 0 and bal(system, worker) - worker_before == fee
    assert system.router.functions.fetchResponse(rid).call()[:2] == [2, "model overloaded"]


def test_named_node_routing_is_answered(system, user):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    rid, r = ask(system, user, route=routing(nodes=[system.node_id]))
    assert list(system.router.functions.getRequest(rid).call()[7][:2]) == [[], [system.node_id]]
    answer(system, rid, "from the named node")
    assert request_status(system, rid) == REQ_SUCCEEDED
    assert system.router.functions.getResponse(rid).call()[3] == system.node_id


def test_routing_the_node_does_not_serve_cannot_be_answered(system, user):
    fund(system, user, 100)
    create(system, user, 50)
    rid, _ = ask(system, user, route=routing([keccak(text="trust.other")]))
    assert_reason(lambda: answer(system, rid), "Node not eligible for this request")
    next_second(system.w3)
    rid2, _ = ask(system, user, route=routing(nodes=[keccak(text="node.someone.else")]))
    assert_reason(lambda: answer(system, rid2), "Node not eligible for this request")


def test_aggregation_other_than_any_is_refused(system, user):
    """No node answers it (the router refuses the answer), so the manager refuses the request."""
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    fn = system.manager.functions.makeAIRequestInSession(
        sid, "hi", system.model, routing([SYSTEM_TRUST_NAMESPACE], aggregation=ALL))
    assert_reverts(call_from(fn, user, CALLBACK_GAS), "InvalidRouting", routing_problem("aggregation must be ANY"))
    s = session(system, sid)
    assert (s["requestCount"], s["pendingRequests"], s["dtnBalance"]) == (0, 0, 50 * system.unit)


def test_only_the_node_worker_can_respond(system, user, stranger):
    fund(system, user, 100)
    create(system, user, 50)
    rid, _ = ask(system, user)
    assert_reason(lambda: respond(system, rid, worker=stranger, node=system.node_id, text="x"),
                  "Only the node worker can respond")
    assert_reason(lambda: respond(system, rid, worker=system.worker, node=keccak(text="node.x.y"), text="x"),
                  "Node not registered")
    assert request_status(system, rid) == REQ_PENDING


def test_request_on_a_closed_session_is_stranded(system, user):
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    rid, _ = ask(system, user)
    dtn_sid = session(system, sid)["dtnSessionId"]
    increase_time(system.w3, system.manager.functions.requestTimeout().call())
    transact(system.w3, system.manager.functions.closeSession(sid), user)
    assert_reverts(lambda: answer(system, rid), "InvalidSession", dtn_sid)
    assert_reason(call_from(system.router.functions.fetchResponse(rid), user), "Request not completed")


@pytest.mark.parametrize("fn", ["onSuccess", "onError"])
def test_callbacks_only_from_dtn(system, user, stranger, fn):
    fund(system, user, 100)
    create(system, user, 50)
    rid, _ = ask(system, user)
    answer_fn = getattr(system.manager.functions, fn)(rid)
    for who in (user, stranger, system.router.functions.admin().call()):
        assert_reverts(call_from(answer_fn, who), "NotDtn")
    assert request_status(system, rid) == REQ_PENDING


# ----------------------------------------------------------------------------- collisions

MODES = ["one_block", "same_timestamp"]


def _same_second(w3, senders, mode):
    """Send each `sender(extra_tx_params)` so that all land in one second, in the given order.

    one_block: all in one block (ordered by decreasing priority fee); same_timestamp: one block each,
    all with the same timestamp (Anvil accepts equal timestamps, like automine within a second).
    """
    ts = latest_ts(w3) + 1
    hashes = []
    with no_automine(w3):
        for i, sender in enumerate(senders):
            if mode == "one_block":
                tip = (len(senders) - i) * 10**9
                hashes.append(sender({"maxPriorityFeePerGas": tip, "maxFeePerGas": 100 * 10**9}))
            else:
                hashes.append(sender({}))
                mine(w3, ts)
        if mode == "one_block":
            mine(w3, ts)
    receipts = [receipt(w3, h) for h in hashes]
    blocks = {r["blockNumber"] for r in receipts}
    assert len(blocks) == (1 if mode == "one_block" else len(senders))
    assert [r["transactionIndex"] for r in sorted(receipts, key=lambda r: (r["blockNumber"], r["transactionIndex"]))] \
        == [r["transactionIndex"] for r in receipts], "transactions landed out of order"
    assert all(w3.eth.get_block(b)["timestamp"] == ts for b in blocks)
    return hashes, receipts


@pytest.mark.parametrize("mode", MODES)
def test_router_same_second_requests_collide_and_overwrite(system6, user, mode):
    system = system6
    dtn_sid = open_router_session(system, user)
    req = system.router.functions.request
    hashes, rcpts = _same_second(system.w3, [
        lambda x: send(req(*router_request_args(system, dtn_sid, user, "first")), user, **x),
        lambda x: send(req(*router_request_args(system, dtn_sid, user, "second")), user, **x),
    ], mode)
    assert [r["status"] for r in rcpts] == [1, 1]
    ids = [one_event(system.router, "RequestCreated", r)["requestId"] for r in rcpts]
    assert ids[0] == ids[1]
    assert prompt_of(system.router.functions.getRequest(ids[0]).call()[8][0]) == "second"


@pytest.mark.parametrize("mode", MODES)
def test_router_collision_reopens_an_answered_request(system6, user, mode):
    system = system6
    w3 = system.w3
    dtn_sid = open_router_session(system, user)
    req = system.router.functions.request
    first_args = router_request_args(system, dtn_sid, user, "first")
    # the id the router will give (caller == user here); the answer is sent before the request is mined
    rid = keccak((latest_ts(w3) + 1).to_bytes(32, "big") + dtn_sid.to_bytes(32, "big")
                 + bytes.fromhex(user[2:]) + bytes.fromhex(user[2:]))
    respond_fn = _respond_stub(system, rid)
    hashes, rcpts = _same_second(w3, [
        lambda x: send(req(*first_args), user, **x),
        lambda x: send(respond_fn, system.worker, **x),
        lambda x: send(req(*router_request_args(system, dtn_sid, user, "second")), user, **x),
    ], mode)
    assert [r["status"] for r in rcpts] == [1, 1, 1]
    assert [one_event(system.router, "RequestCreated", rcpts[i])["requestId"] for i in (0, 2)] == [rid, rid]
    assert one_event(system.router, "RequestCompleted", rcpts[1])["requestId"] == rid
    # reopened: the answer is gone and the node cannot answer again
    assert_reason(call_from(system.router.functions.fetchResponse(rid), user), "Request not completed")
    assert_reason(lambda: answer(system, rid, "again"), "Node already responded")
    assert prompt_of(system.router.functions.getRequest(rid).call()[8][0]) == "second"


@pytest.mark.parametrize("answered", [False, True], ids=["pending", "answered"])
@pytest.mark.parametrize("mode", MODES)
def test_manager_rejects_a_same_second_collision(system, user, mode, answered):
    w3 = system.w3
    fund(system, user, 100)
    sid, _ = create(system, user, 50)
    m = system.manager.functions
    ts = latest_ts(w3) + 1
    rid = keccak(ts.to_bytes(32, "big") + session(system, sid)["dtnSessionId"].to_bytes(32, "big")
                 + bytes.fromhex(user[2:]) + bytes.fromhex(system.manager.address[2:]))
    first = lambda x: send(m.makeAIRequest("first", system.model, []), user, value=CALLBACK_GAS, **x)  # noqa: E731
    second = lambda x: send(m.makeAIRequest("second", system.model, []), user, value=CALLBACK_GAS, **x)  # noqa: E731
    senders = [first]
    if answered:
        payload_fn = lambda x: send(_respond_stub(system, rid), system.worker, **x)  # noqa: E731
        senders.append(payload_fn)
    senders.append(second)

    hashes, rcpts = _same_second(w3, senders, mode)

    assert rcpts[0]["status"] == 1
    assert one_event(system.manager, "AIRequestSubmitted", rcpts[0])["requestId"] == rid
    if answered:
        assert rcpts[1]["status"] == 1
    assert rcpts[-1]["status"] == 0
    assert tx_revert(w3, hashes[-1]).name == "RequestIdCollision"
    assert tx_revert(w3, hashes[-1]).args == (rid,)
    # the first request's record and answer are intact
    stored = system.router.functions.getRequest(rid).call()
    assert prompt_of(stored[8][0]) == "first"
    assert system.manager.functions.requests(rid).call()[:3] == [sid, user, ts]
    s = session(system, sid)
    assert s["requestCount"] == 1
    assert system.manager.functions.getUserRequests(user, 0, 10).call() == [[rid], 1]
    if answered:
        assert request_status(system, rid) == REQ_SUCCEEDED and s["pendingRequests"] == 0
        _, _, payload = system.router.functions.fetchResponse(rid).call()
        assert decode_answer(payload) == "answer to first"
    else:
        assert request_status(system, rid) == REQ_PENDING and s["pendingRequests"] == 1
        answer(system, rid, "answer to first")
        assert request_status(system, rid) == REQ_SUCCEEDED
    # the next second is free again
    next_second(w3)
    rid2, _ = ask(system, user, "later")
    assert rid2 != rid


def _respond_stub(system, rid):
    """respondToRequest for a request that is not mined yet (sizes given, not read)."""
    from dtnsess_cli.devnet.localdtn import encode_answer

    payload = encode_answer("answer to first")
    return system.router.functions.respondToRequest(rid, 1, "", payload, system.node_id, 100, len(payload))


def test_settling_an_old_request_after_renew_keeps_the_new_request_pending(system, user):
    """A request answered before a renewal (callback failed) and settled after it must not
    decrement the pending count of the renewed session, or the guard lets its new request be stranded."""
    w3 = system.w3
    m = system.manager.functions
    fund(system, user, 200)
    sid, _ = create(system, user, 50)
    old, _ = ask(system, user, "old", value=0)
    answer(system, old)  # callback fails: the manager still counts it as pending
    assert session(system, sid)["pendingRequests"] == 1
    increase_time(w3, m.requestTimeout().call())
    transact(w3, m.renewSession(sid, 10 * system.unit), user)
    new, _ = ask(system, user, "new")
    assert session(system, sid)["pendingRequests"] == 1

    transact(w3, m.settleRequest(old), user)

    assert request_status(system, old) == REQ_SUCCEEDED
    assert session(system, sid)["pendingRequests"] == 1
    assert_reverts(call_from(m.closeSession(sid), user), "RequestsPending", sid, 1)
    answer(system, new)
    assert session(system, sid)["pendingRequests"] == 0
    transact(w3, m.closeSession(sid), user)
