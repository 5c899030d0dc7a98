"""The devnet behaves like DTN's own router and node software (DTN-FACTS, "What DTN's own node
software does"), and the client refuses, before paying, what that node cannot answer: charges as
the node reports sizes (the test computes the real node's formula itself), {N} placeholders,
named-node plus namespace routing, status NA, a node's price floor, and the timeout's hint.
On a real Anvil; the responder runs in a thread (the `make_node` fixture)."""

from __future__ import annotations

import time

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3.logs import DISCARD

from cli_helpers import assert_error, assert_ok, create_via_cli, load_json, nonce
from dtnsess_cli.devnet import localdtn
from dtnsess_cli.errors import ExitCode, InputError
from dtnsess_cli.manager.base import node_fee, prompt_call_len
from helpers import (REQ_FAILED, answer, ask, create, events, fund, increase_time, next_second,
                     one_event, request_status, routing)


def real_node_charge(prompt: str, fee_per_byte_req: int, cap: int) -> int:
    """DTN's node, written out from DTN-FACTS independently of the client: it reports
    requestSize = call bytes + 1 (call = abi.encode(string[] [prompt])) and responseSize 0, and
    size 0 when that fee would pass the cap; the router charges size * feePerByteReq."""
    size = len(abi_encode(["string[]"], [[prompt]])) + 1
    fee = size * fee_per_byte_req
    return 0 if fee > cap else fee


def wait_for(node, rid: str, timeout: float = 20.0) -> str:
    """The node's log line about request ``rid`` (answered or skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [ln for ln in node.log.lines if rid in ln]
        if lines:
            return lines[-1]
        time.sleep(0.05)
    pytest.fail(f"the node logged nothing about {rid}")


def charged(system, rid: str) -> int:
    """What the router charged for request ``rid`` (its SessionCharged event)."""
    logs = system.router.events.SessionCharged().get_logs(from_block=0)
    rcpts = [system.w3.eth.get_transaction_receipt(e["transactionHash"]) for e in logs]
    for e, r in zip(logs, rcpts):
        done = system.router.events.RequestCompleted().process_receipt(r, errors=DISCARD)
        if any("0x" + d["args"]["requestId"].hex() == rid for d in done):
            return e["args"]["amount"]
    pytest.fail(f"no charge for {rid}")


@pytest.fixture
def cli(make_cli, system6, user):
    c = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(c, "20")
    return c


def test_call_sizes_match_the_abi_encoding():
    for prompt in ("", "hello", "x" * 31, "x" * 32, "x" * 33, "é" * 100):
        assert prompt_call_len(prompt) == len(abi_encode(["string[]"], [[prompt]])), prompt


def test_the_devnet_charges_what_the_real_node_charges(cli, system6, make_node, tmp_path):
    """"hello": 161 request bytes at 0.001 token = 0.161 token (the old devnet took 0.288 for
    request plus response bytes); the preview (--dry-run) says the same before anything is sent;
    a prompt whose fee would pass the cap is charged 0, as the node's rounding does."""
    node = make_node(system6)
    m = system6.manager.functions
    per_byte, cap = m.feePerByteReq().call(), m.totalFeePerRes().call()
    preview = cli.json("request", "hello", "--dry-run")
    assert (preview["dtn_fee"], preview["dtn_fee_units"]) == ("0.161", "161000")
    prompts = tmp_path / "p.txt"
    prompts.write_text("hello\nhello\n")
    assert cli.json("request", "--file", str(prompts), "--dry-run")["dtn_fee"] == "0.322"
    doc = cli.json("request", "hello", "--wait", "--yes")
    assert doc["response"]["status"] == "succeeded" and doc["dtn_fee"] == "0.161"
    assert charged(system6, doc["request_id"]) == real_node_charge("hello", per_byte, cap) \
        == 161_000 == node_fee(prompt_call_len("hello"), per_byte, cap)
    assert "reported sizes 161/0" in wait_for(node, doc["request_id"])

    long = "lorem ipsum " * 90  # 1,080 bytes: (1,249 call bytes + 1) * 0.001 > 1 token
    next_second(system6.w3)
    doc = cli.json("request", long, "--wait", "--yes")
    assert doc["dtn_fee"] == "0"
    assert charged(system6, doc["request_id"]) == real_node_charge(long, per_byte, cap) == 0


def test_a_failure_costs_one_unit_per_byte(cli, system6, make_node):
    node = make_node(system6, command="echo overloaded >&2; exit 3")
    r = cli("request", "hello", "--wait", "--yes", "--json")
    assert r.exit_code == int(ExitCode.ERROR)  # a failed answer
    doc = load_json(r)
    assert doc["response"]["status"] == "failed" and "overloaded" in doc["response"]["message"]
    assert charged(system6, doc["request_id"]) == 161 * 1  # router-wide: 1 unit per byte
    assert "answered FAILURE" in wait_for(node, doc["request_id"])


@pytest.mark.parametrize("prompt", ["Translate {0} into French", "compare {1} and {12}"])
def test_placeholder_prompts_are_refused_before_paying(cli, w3, system6, user, tmp_path, prompt):
    from dtnsess_cli import Client, signer_from_key

    before = (nonce(w3, user), system6.manager.functions.getUserRequests(user, 0, 1).call()[1])
    assert_error(cli("request", prompt, "--yes"), ExitCode.INPUT, "placeholder", "P0011")
    (tmp_path / "p.txt").write_text(f"first line\n{prompt}\n")
    assert_error(cli("request", "--file", str(tmp_path / "p.txt"), "--yes"), ExitCode.INPUT,
                 "prompt 2", "placeholder")
    assert_error(cli("request", prompt, "--image", "64x64", "--yes"), ExitCode.INPUT,
                 "placeholder")
    client = Client(cli.url, system6.manager.address, signer=signer_from_key(cli.key()))
    with pytest.raises(InputError, match="P0011"):
        client.make_ai_request(prompt)
    with pytest.raises(InputError, match="placeholder"):
        client.request_batch(["fine", prompt])
    with pytest.raises(InputError, match="placeholder"):  # an encoded call, as the node decodes it
        client.make_ai_request(None, call=abi_encode(["string[]"], [["fine", prompt]]))
    assert (nonce(w3, user), system6.manager.functions.getUserRequests(user, 0, 1).call()[1]) \
        == before


def test_the_devnet_fails_placeholders_like_the_node_and_braces_are_fine(cli, w3, system6, user,
                                                                          make_node):
    """A {0} prompt sent anyway (straight to the contract) gets FAILURE "P0011: Call not
    parsable", charged 0; braces around words are plain text to the node."""
    node = make_node(system6)
    doc = cli.json("request", "a {this} and {that}", "--wait", "--yes")
    assert doc["response"]["answer"].startswith("[devnet answer] You asked: a {this}")
    next_second(w3)
    r = localdtn.transact(w3, system6.manager.functions.makeAIRequest(
        "say {0}", system6.model, []), user, value=300_000)
    rid = "0x" + one_event(system6.manager, "AIRequestSubmitted", r)["requestId"].hex()
    assert "P0011" in wait_for(node, rid)
    got = cli.json("response", rid)
    assert (got["status"], got["message"]) == ("failed", "P0011: Call not parsable")
    assert charged(system6, rid) == 0


def test_a_named_node_or_a_namespace_node_may_answer(system6, user):
    """As the real router: a node named in trustedNodeIds, or one holding any of the routing's
    trust namespaces (here: not named, but in system trust)."""
    fund(system6, user, 100)
    create(system6, user, 50)
    other = keccak(text="node.someone.else")
    rid, _ = ask(system6, user, route=routing([localdtn.SYSTEM_TRUST_NAMESPACE], [other]))
    answer(system6, rid, "from a namespace node")
    assert system6.router.functions.getResponse(rid).call()[3] == system6.node_id


def test_status_na_is_charged_like_a_success_and_calls_the_failure_callback(make_cli, system6,
                                                                           user):
    fund(system6, user, 100)
    create(system6, user, 50)
    rid, _ = ask(system6, user, "hello")
    stored = system6.router.functions.getRequest(rid).call()
    fn = system6.router.functions.respondToRequest(rid, 0, "no answer", b"", system6.node_id,
                                                   161, 0)
    r = localdtn.transact(system6.w3, fn, system6.worker, gas=1_000_000)
    assert one_event(system6.router, "SessionCharged", r)["amount"] == 161 * stored[8][3]
    assert one_event(system6.manager, "AIRequestFailed", r)["error"] == "no answer"
    assert events(system6.router, "FailureCallbackFailed", r) == []
    assert request_status(system6, rid) == REQ_FAILED
    got = make_cli(system6).json("response", "0x" + rid.hex())
    assert (got["status"], got["message"]) == ("failed", "no answer")


def test_a_node_skips_requests_under_its_price_floor_and_the_timeout_says_why(cli, system6,
                                                                            make_node):
    per_byte = system6.manager.functions.feePerByteReq().call()
    node = make_node(system6, min_fee_per_byte=per_byte + 1)
    r = cli("request", "hello", "--wait", "--timeout", "3", "--yes")
    assert_error(r, ExitCode.TIMEOUT, "timed out")
    assert "priced below its minimum fee" in r.stderr and "{N} placeholders" in r.stderr
    import re

    rid = re.search(r"0x[0-9a-f]{64}", r.stderr).group(0)
    assert "priced below this node's floor" in wait_for(node, rid)
    assert cli.json("response", rid)["note"] is None  # pending, but not for long yet
    increase_time(system6.w3, 301)
    got = cli.json("response", rid)
    assert got["status"] == "pending" and "priced below its minimum fee" in got["note"]


def test_a_callback_value_below_what_answers_need(cli, w3, user):
    from dtnsess_cli.manager.base import CALLBACK_GAS_FLOOR, CALLBACK_GAS_TYPICAL

    before = nonce(w3, user)
    r = cli("request", "hello", "--value", str(CALLBACK_GAS_FLOOR - 1), "--yes")
    assert_error(r, ExitCode.INPUT, f"{CALLBACK_GAS_FLOOR - 1:,} gas", f"{CALLBACK_GAS_FLOOR:,}")
    assert nonce(w3, user) == before
    r = cli("request", "hello", "--value", str(CALLBACK_GAS_TYPICAL - 1), "--yes")
    assert_ok(r)
    assert "warning" in r.stderr and f"{CALLBACK_GAS_TYPICAL:,}" in r.stderr
    assert "settle" in r.stderr


def test_redundancy_above_one_is_charged_but_never_completes(system6, user, deployer):
    """As the real router: the first answer is charged and the request stays open; a second
    node's answer reverts. The manager refuses such routing before paying (issue 14:
    test_f7_invalid_routing_is_refused_before_paying), so this asks the router directly, from an
    account with its own DTN session."""
    from helpers import assert_reason, open_router_session, router_request_args

    router = system6.router.functions
    second = localdtn.node_id("node.devnet.second")
    localdtn.transact(system6.w3, router.registerNode("node.devnet.second", deployer), deployer)
    dtn_sid = open_router_session(system6, user)
    args = router_request_args(system6, dtn_sid, user, route=([], [system6.node_id, second], 2, 8, 0))
    r = localdtn.transact(system6.w3, router.request(*args), user)
    rid = one_event(system6.router, "RequestCreated", r)["requestId"]
    r = answer(system6, rid, "first")
    assert one_event(system6.router, "SessionCharged", r)["amount"] > 0
    assert events(system6.router, "RequestCompleted", r) == []
    assert_reason(lambda: localdtn.respond(system6, rid, worker=deployer, node=second, text="2nd"),
                  "No responses found or multiple responses without aggregation")
    assert_reason(lambda: answer(system6, rid, "again"), "Node already responded")
