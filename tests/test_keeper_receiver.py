"""The CRE keeper's receiver (contracts/keepers/CleanupReceiver.sol) on Anvil, with reports
delivered the way CRE's KeystoneForwarder delivers them (contracts/dev/LocalForwarder.sol): a
report from the configured workflow closes idle sessions; a report from anywhere else, an old
one again, one for another chain, an empty one or a huge bound is refused or harmless."""

from __future__ import annotations

import hashlib

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak

from dtnsess_cli.devnet.localdtn import deploy, transact
from helpers import (
    assert_reverts,
    create,
    events,
    fund,
    increase_time,
    latest_ts,
    no_automine,
    one_event,
    rpc,
    send,
    session,
)

pytestmark = pytest.mark.usefixtures("conserved")

WORKFLOW_ID = keccak(text="dtnsess-cleanup workflow")
WORKFLOW_NAME = "dtnsess-cleanup"
CRE_WRITE_GAS_QUOTA = 5_000_000  # CRE's per-transaction gas quota for EVM writes
IRECEIVER_ID = keccak(text="onReport(bytes,bytes)")[:4]
ZERO = "0x" + "00" * 20


def encode_name(name: str) -> bytes:
    """A workflow name as CRE puts it in the metadata: the first 10 hex characters of its sha256."""
    return hashlib.sha256(name.encode()).hexdigest()[:10].encode()


def body(w3, scheduled_at: int, max_sessions: int = 50, chain_id: int | None = None) -> bytes:
    return abi_encode(["uint256", "uint256", "uint256"],
                      [w3.eth.chain_id if chain_id is None else chain_id, scheduled_at, max_sessions])


def raw_report(payload: bytes, *, execution: int, workflow_id: bytes = WORKFLOW_ID,
               name: bytes | None = None, owner: str, report_id: bytes = b"\x00\x01") -> bytes:
    """KeystoneForwarder's rawReport: the 109-byte header the DON signs, then the payload."""
    header = (b"\x01" + execution.to_bytes(32, "big") + (0).to_bytes(4, "big")
              + (1).to_bytes(4, "big") + (1).to_bytes(4, "big") + workflow_id
              + (encode_name(WORKFLOW_NAME) if name is None else name)
              + bytes.fromhex(owner[2:]) + report_id)
    assert len(header) == 109
    return header + payload


@pytest.fixture
def keeper(system6, deployer, accounts):
    """A LocalForwarder (the deployer transmits) and a CleanupReceiver for system6's manager,
    configured for WORKFLOW_ID of the workflow owner accounts[8]."""
    w3 = system6.w3
    forwarder = deploy(w3, "LocalForwarder", deployer)
    receiver = deploy(w3, "CleanupReceiver", deployer, system6.manager.address, forwarder.address, 50)
    wf_owner = accounts[8]
    transact(w3, receiver.functions.setWorkflow(WORKFLOW_ID, wf_owner, encode_name(WORKFLOW_NAME)), deployer)
    return forwarder, receiver, wf_owner


def deliver(system, forwarder, receiver, raw: bytes, sender: str, gas: int = CRE_WRITE_GAS_QUOTA):
    """forwarder.report(...) as CRE's transmitter sends it; (delivered, receipt)."""
    r = transact(system.w3, forwarder.functions.report(receiver.address, raw, b"", []), sender, gas=gas)
    return one_event(forwarder, "ReportProcessed", r)["result"], r


def idle_sessions(system, owner, n: int, tokens: int = 10) -> list:
    w3, m = system.w3, system.manager.functions
    fund(system, owner, tokens * n)
    first = m.nextSessionId().call()
    with no_automine(w3):
        for _ in range(n):
            send(m.createSession(tokens * system.unit), owner, gas=600_000)
        while int(rpc(w3, "txpool_status")["pending"], 16) > 0:
            rpc(w3, "evm_mine")
    increase_time(w3, m.maxSessionAge().call() + 1)
    return list(range(first, first + n))


def closed_ids(system, r) -> list:
    return [e["sessionId"] for e in events(system.manager, "SessionClosed", r)]


def test_a_report_from_the_workflow_closes_the_idle_sessions(system6, keeper, deployer, user):
    system, (forwarder, receiver, wf_owner) = system6, keeper
    m = system.manager.functions
    ids = idle_sessions(system, user, 3)
    assert m.checkUpkeep(b"").call()[0] is True  # what the workflow reads
    slot = latest_ts(system.w3)

    ok, r = deliver(system, forwarder, receiver, raw_report(body(system.w3, slot), execution=1, owner=wf_owner), deployer)

    assert ok is True
    assert closed_ids(system, r) == ids
    assert one_event(receiver, "CleanupPerformed", r) == {"scheduledAt": slot, "maxSessions": 50, "closed": 3}
    assert not any(session(system, s)["active"] for s in ids)
    assert m.claimableRefunds(user).call() == 3 * 10 * system.unit
    assert m.checkUpkeep(b"").call()[0] is False
    assert receiver.functions.lastScheduledAt().call() == slot


def test_only_the_forwarder_may_deliver(system6, keeper, user, stranger):
    system, (forwarder, receiver, wf_owner) = system6, keeper
    ids = idle_sessions(system, user, 1)
    raw = raw_report(body(system.w3, latest_ts(system.w3)), execution=1, owner=wf_owner)
    onreport = receiver.functions.onReport(raw[45:109], raw[109:])
    assert_reverts(lambda: onreport.call({"from": stranger}), "InvalidForwarder", stranger, forwarder.address)
    # the forwarder stand-in takes reports only from its transmitters (the DON's signatures)
    assert_reverts(lambda: forwarder.functions.report(receiver.address, raw, b"", []).call({"from": stranger}),
                   "UnauthorizedTransmitter", stranger)
    assert session(system, ids[0])["active"]


@pytest.mark.parametrize("forgery", ["workflow-id", "owner", "name", "short-metadata"])
def test_a_report_of_another_workflow_is_refused(system6, keeper, deployer, user, stranger, forgery):
    """Signed by the DON, but for another workflow: the forwarder delivers it, the receiver refuses."""
    system, (forwarder, receiver, wf_owner) = system6, keeper
    ids = idle_sessions(system, user, 2)
    payload = body(system.w3, latest_ts(system.w3))
    kw = {"execution": 7, "owner": wf_owner}
    if forgery == "workflow-id":
        kw["workflow_id"] = keccak(text="someone else's workflow")
    elif forgery == "owner":
        kw["owner"] = stranger
    elif forgery == "name":
        kw["name"] = encode_name("another-workflow")
    raw = raw_report(payload, **kw)
    if forgery == "short-metadata":  # the receiver's own check, called as the forwarder would
        rpc(system.w3, "anvil_impersonateAccount", forwarder.address)
        rpc(system.w3, "anvil_setBalance", forwarder.address, hex(10**18))
        fn = receiver.functions.onReport(raw[45:100], payload)
        assert_reverts(lambda: fn.call({"from": forwarder.address}), "InvalidMetadata", 55)
        return
    expected = {"workflow-id": "InvalidWorkflowId", "owner": "InvalidWorkflowOwner", "name": "InvalidWorkflowName"}
    fn = receiver.functions.onReport(raw[45:109], raw[109:])
    rpc(system.w3, "anvil_impersonateAccount", forwarder.address)
    rpc(system.w3, "anvil_setBalance", forwarder.address, hex(10**18))
    assert_reverts(lambda: fn.call({"from": forwarder.address}), expected[forgery])

    ok, r = deliver(system, forwarder, receiver, raw, deployer)

    assert ok is False and closed_ids(system, r) == []
    assert all(session(system, s)["active"] for s in ids)
    assert receiver.functions.lastScheduledAt().call() == 0


def test_an_unconfigured_receiver_refuses_every_report(system6, deployer, user, accounts):
    system = system6
    w3 = system.w3
    forwarder = deploy(w3, "LocalForwarder", deployer)
    receiver = deploy(w3, "CleanupReceiver", deployer, system.manager.address, forwarder.address, 50)
    ids = idle_sessions(system, user, 1)
    raw = raw_report(body(w3, latest_ts(w3)), execution=1, owner=accounts[8])
    ok, _ = deliver(system, forwarder, receiver, raw, deployer)
    assert ok is False and session(system, ids[0])["active"]
    rpc(w3, "anvil_impersonateAccount", forwarder.address)
    rpc(w3, "anvil_setBalance", forwarder.address, hex(10**18))
    assert_reverts(lambda: receiver.functions.onReport(raw[45:109], raw[109:]).call({"from": forwarder.address}),
                   "WorkflowNotConfigured")


def test_replays_are_refused(system6, keeper, deployer, user):
    system, (forwarder, receiver, wf_owner) = system6, keeper
    w3 = system.w3
    idle_sessions(system, user, 1)
    slot = latest_ts(w3)
    raw = raw_report(body(w3, slot), execution=1, owner=wf_owner)
    assert deliver(system, forwarder, receiver, raw, deployer)[0] is True
    # the same transmission again: the forwarder refuses it
    assert_reverts(lambda: forwarder.functions.report(receiver.address, raw, b"", []).call({"from": deployer}),
                   "AlreadyAttempted")
    # the same slot in a new transmission (another execution, or a DON-signed copy): the receiver
    later = idle_sessions(system, user, 1)
    ok, r = deliver(system, forwarder, receiver, raw_report(body(w3, slot), execution=2, owner=wf_owner), deployer)
    assert ok is False and closed_ids(system, r) == [] and session(system, later[0])["active"]
    older = raw_report(body(w3, slot - 600), execution=3, owner=wf_owner)
    assert deliver(system, forwarder, receiver, older, deployer)[0] is False
    # the next slot runs
    ok, r = deliver(system, forwarder, receiver, raw_report(body(w3, slot + 1), execution=4, owner=wf_owner), deployer)
    assert ok is True and closed_ids(system, r) == later


@pytest.mark.parametrize("case", ["other-chain", "far-future", "zero-bound", "empty", "short"])
def test_malformed_reports_are_refused(system6, keeper, deployer, user, case):
    system, (forwarder, receiver, wf_owner) = system6, keeper
    w3 = system.w3
    ids = idle_sessions(system, user, 1)
    now = latest_ts(w3)
    payload = {
        "other-chain": body(w3, now, chain_id=8453),
        "far-future": body(w3, now + 16 * 60 + 30),
        "zero-bound": body(w3, now, max_sessions=0),
        "empty": b"",
        "short": body(w3, now)[:64],
    }[case]
    ok, r = deliver(system, forwarder, receiver, raw_report(payload, execution=1, owner=wf_owner), deployer)
    assert ok is False and closed_ids(system, r) == []
    assert session(system, ids[0])["active"] and receiver.functions.lastScheduledAt().call() == 0
    # a raw report shorter than the forwarder's header never reaches the receiver
    assert_reverts(lambda: forwarder.functions.report(receiver.address, b"\x01" * 100, b"", []).call(
        {"from": deployer}), "InvalidReport")


def test_the_bound_is_capped_by_max_batch_and_fits_the_write_quota(system6, keeper, deployer, user):
    system, (forwarder, receiver, wf_owner) = system6, keeper
    w3 = system.w3
    ids = idle_sessions(system, user, 55)
    slot = latest_ts(w3)
    huge = raw_report(body(w3, slot, max_sessions=2**256 - 1), execution=1, owner=wf_owner)
    ok, r = deliver(system, forwarder, receiver, huge, deployer)
    assert ok is True and closed_ids(system, r) == ids[:50]  # maxBatch
    assert r["gasUsed"] < CRE_WRITE_GAS_QUOTA
    print(f"one report closing 50 idle sessions: {r['gasUsed']:,} gas")
    transact(w3, receiver.functions.setMaxBatch(3), deployer)
    ok, r = deliver(system, forwarder, receiver, raw_report(body(w3, slot + 1, 2), execution=2, owner=wf_owner), deployer)
    assert ok is True and closed_ids(system, r) == ids[50:52]
    ok, r = deliver(system, forwarder, receiver, raw_report(body(w3, slot + 2, 9), execution=3, owner=wf_owner), deployer)
    assert ok is True and closed_ids(system, r) == ids[52:55]


def test_nothing_idle_or_a_reverting_cleanup_does_not_revert_the_report(system6, keeper, deployer, accounts):
    """An accepted report never fails for the manager's sake: the slot is used, the event says why."""
    system, (forwarder, receiver, wf_owner) = system6, keeper
    w3 = system.w3
    slot = latest_ts(w3)
    ok, r = deliver(system, forwarder, receiver, raw_report(body(w3, slot), execution=1, owner=wf_owner), deployer)
    assert ok is True
    assert one_event(receiver, "CleanupPerformed", r)["closed"] == 0
    print(f"a report that closes nothing: {r['gasUsed']:,} gas")
    assert r["gasUsed"] < 120_000
    # a "manager" whose cleanup reverts (the fee token has no such function)
    odd = deploy(w3, "CleanupReceiver", deployer, system.token.address, forwarder.address, 50)
    transact(w3, odd.functions.setWorkflow(WORKFLOW_ID, ZERO, b"\x00" * 10), deployer)
    ok, r = deliver(system, forwarder, odd, raw_report(body(w3, slot), execution=1, owner=wf_owner), deployer)
    assert ok is True
    assert one_event(odd, "CleanupReverted", r)["scheduledAt"] == slot


def test_owner_manages_the_receiver(system6, keeper, deployer, stranger, accounts):
    system, (forwarder, receiver, wf_owner) = system6, keeper
    w3, f = system.w3, receiver.functions
    for fn in (f.setForwarder(stranger), f.setWorkflow(WORKFLOW_ID, stranger, b"\x00" * 10), f.setMaxBatch(1)):
        assert_reverts(lambda fn=fn: fn.call({"from": stranger}), "OwnableUnauthorizedAccount", stranger)
    assert_reverts(lambda: f.setForwarder(ZERO).call({"from": deployer}), "ZeroAddress")
    assert_reverts(lambda: f.setMaxBatch(0).call({"from": deployer}), "ZeroBatch")
    assert_reverts(lambda: f.setWorkflow(WORKFLOW_ID, ZERO, encode_name("x")).call({"from": deployer}),
                   "WorkflowNameRequiresOwner")
    assert_reverts(lambda: f.renounceOwnership().call({"from": deployer}), "RenounceDisabled")
    r = transact(w3, f.setForwarder(accounts[9]), deployer)
    assert one_event(receiver, "ForwarderSet", r) == {"forwarder": accounts[9]}
    transact(w3, f.transferOwnership(stranger), deployer)  # two steps: nothing changes until accepted
    assert f.owner().call() == deployer
    transact(w3, f.acceptOwnership(), stranger)
    assert f.owner().call() == stranger
    assert f.supportsInterface(IRECEIVER_ID).call() is True
    assert f.supportsInterface(bytes.fromhex("01ffc9a7")).call() is True
    assert f.supportsInterface(bytes.fromhex("ffffffff")).call() is False
    assert_reverts(lambda: deploy(w3, "CleanupReceiver", deployer, system.manager.address, ZERO, 50), "ZeroAddress")


def test_the_stand_in_delivers_like_keystone_forwarder(system6, keeper, deployer):
    """What the tests above rely on: a receiver without IReceiver (ERC-165) is never called and
    never retried; a failed delivery may be retried, a delivered one not."""
    system, (forwarder, receiver, wf_owner) = system6, keeper
    w3, f = system.w3, forwarder.functions
    raw = raw_report(body(w3, latest_ts(w3)), execution=5, owner=wf_owner)
    ok, r = deliver(system, forwarder, system.manager, raw, deployer)  # not an IReceiver
    assert ok is False and closed_ids(system, r) == []
    tid = f.getTransmissionId(system.manager.address, (5).to_bytes(32, "big"), b"\x00\x01").call()
    assert f.transmissionState(tid).call() == 1  # InvalidReceiver
    assert_reverts(lambda: f.report(system.manager.address, raw, b"", []).call({"from": deployer}),
                   "AlreadyAttempted")
    stale = raw_report(body(w3, 0), execution=6, owner=wf_owner)  # refused by the receiver
    assert deliver(system, forwarder, receiver, stale, deployer)[0] is False
    tid = f.getTransmissionId(receiver.address, (6).to_bytes(32, "big"), b"\x00\x01").call()
    assert f.transmissionState(tid).call() == 3  # Failed: open to a retry
    f.report(receiver.address, stale, b"", []).call({"from": deployer})
