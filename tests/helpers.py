"""Shared helpers for the contract tests (tests/test_contract_*.py).

Deploying, sending and answering reuse dtnsess_cli.devnet.localdtn (deploy_system, transact, respond,
node_id, decode_answer); revert data is decoded with dtnsess_cli.chain.abi's ErrorDecoder. What is here
is only what the tests need on top: funding, session/request shortcuts, revert capture, chain
time control and the token-conservation invariant (checked after a test by the `conserved`
fixture, tests/fixtures/chain.py).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable

import pytest
from eth_abi import encode as abi_encode
from web3.exceptions import ContractLogicError, Web3RPCError

from dtnsess_cli.artifacts import all_abis
from dtnsess_cli.devnet.localdtn import SYSTEM_TRUST_NAMESPACE, model_id, respond, transact
from dtnsess_cli.devnet.reverts import DecodedRevert, ErrorDecoder, revert_data_from_exception

# Wei forwarded as callback gas: the manager's onSuccess/onError need well under this.
CALLBACK_GAS = 300_000
REQ_PENDING, REQ_SUCCEEDED, REQ_FAILED = 1, 2, 3  # AdvancedSessionManager.RequestStatus
ANY, ALL = 0, 1  # IDtnAi.AggregationType
MAX_TX_GAS = 2**24
# A write in the second its session was last used rewrites the session's timestamps with the
# values they already hold (the streak and grant-expiry rules): 2,800 gas less than in a later
# second. So two runs' gas estimates for one write may differ by that much (their gas limits,
# +20%, by gas_limit_for(SAME_SECOND_GAS)); compare them exactly only when no run can fall in
# that second.
SAME_SECOND_GAS = 2_800

_DECODER: ErrorDecoder | None = None


def decoder() -> ErrorDecoder:
    global _DECODER
    if _DECODER is None:
        _DECODER = ErrorDecoder(all_abis().values())
    return _DECODER


# ----------------------------------------------------------------------------- reverts


def reverts(thunk: Callable[[], Any]) -> DecodedRevert:
    """Run `thunk` (a .call(), a .transact() or a helper that sends) and return its decoded revert.

    Fails the test when the thunk does not revert.
    """
    try:
        thunk()
    except (ContractLogicError, Web3RPCError) as exc:
        data = revert_data_from_exception(exc)
        assert data is not None, f"not a revert: {exc!r}"
        return decoder().decode(data)
    pytest.fail("expected a revert, the call succeeded")


def assert_reverts(thunk: Callable[[], Any], name: str, *args: Any) -> DecodedRevert:
    """Assert a revert with custom error `name` (and leading args), or `"Error"` with a reason string."""
    dec = reverts(thunk)
    assert dec.name == name, f"expected {name}{args}, got {dec.reason!r}"
    if args:
        got = tuple(_norm(a) for a in dec.args[: len(args)])
        assert got == tuple(_norm(a) for a in args), f"expected {name}{args}, got {dec.reason!r}"
    return dec


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) and value.startswith("0x") else value


def config_problem(reason: str) -> int:
    """The InvalidConfig(ConfigProblem) value the client words as `reason`."""
    from dtnsess_cli.manager.reverts import CONFIG_PROBLEMS
    return CONFIG_PROBLEMS.index(reason)


def routing_problem(reason: str) -> int:
    """The InvalidRouting(RoutingProblem) value the client words as `reason`."""
    from dtnsess_cli.manager.reverts import ROUTING_PROBLEMS
    return ROUTING_PROBLEMS.index(reason)


def assert_reason(thunk: Callable[[], Any], reason: str) -> DecodedRevert:
    """Assert a `require(..., reason)` revert."""
    return assert_reverts(thunk, "Error", reason)


def call_from(fn, sender: str, value: int = 0):
    return lambda: fn.call({"from": sender, "value": value})


def tx_revert(w3, tx_hash) -> DecodedRevert:
    """The decoded revert of a mined, failed transaction (Anvil's callTracer output)."""
    h = tx_hash if isinstance(tx_hash, str) else "0x" + bytes(tx_hash).hex()
    trace = w3.provider.make_request("debug_traceTransaction", [h, {"tracer": "callTracer"}])
    out = trace["result"].get("output") or "0x"
    return decoder().decode(out)


# ----------------------------------------------------------------------------- chain control


def rpc(w3, method: str, *params):
    reply = w3.provider.make_request(method, list(params))
    assert "error" not in reply, f"{method}{params}: {reply['error']}"
    return reply.get("result")


def chain_of(w3) -> tuple:
    """(chain id, genesis hash): what the sender lock and the journal key a chain by."""
    return w3.eth.chain_id, "0x" + bytes(w3.eth.get_block(0)["hash"]).hex()


def increase_time(w3, seconds: int) -> None:
    rpc(w3, "evm_increaseTime", seconds)
    rpc(w3, "evm_mine")


def latest_ts(w3) -> int:
    return w3.eth.get_block("latest")["timestamp"]


def mine(w3, timestamp: int | None = None) -> None:
    if timestamp is not None:
        rpc(w3, "evm_setNextBlockTimestamp", timestamp)
    rpc(w3, "evm_mine")


def next_second(w3) -> None:
    """Mine an empty block one second after the latest (DTN request ids have 1-second resolution).

    Gas estimation simulates at the latest block's timestamp, so only a mined block moves it on.
    """
    mine(w3, latest_ts(w3) + 1)


@contextmanager
def no_automine(w3):
    """Queue transactions in the mempool; the caller mines them with mine()."""
    rpc(w3, "evm_setAutomine", False)
    try:
        yield
    finally:
        rpc(w3, "evm_setAutomine", True)


def send(fn, sender: str, value: int = 0, gas: int = 2_000_000, **extra) -> bytes:
    """Send without estimating or waiting (for queued/mined-later transactions)."""
    return fn.transact({"from": sender, "value": value, "gas": gas, **extra})


def receipt(w3, tx_hash):
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)


# ----------------------------------------------------------------------------- events


def events(contract, name: str, rcpt) -> list[dict]:
    """Decoded args of every `name` event `contract` emitted in `rcpt`."""
    from web3.logs import DISCARD

    return [dict(e["args"]) for e in getattr(contract.events, name)().process_receipt(rcpt, errors=DISCARD)]


def one_event(contract, name: str, rcpt) -> dict:
    found = events(contract, name, rcpt)
    assert len(found) == 1, f"expected one {name}, got {found}"
    return found[0]


# ----------------------------------------------------------------------------- system shortcuts


def fund(system, who: str, tokens: float | int = 1000, approve: bool = True) -> int:
    """Mint `tokens` whole tokens to `who` and approve the manager for everything."""
    amount = int(tokens * system.unit)
    transact(system.w3, system.token.functions.mint(who, amount), who)
    if approve:
        transact(system.w3, system.token.functions.approve(system.manager.address, 2**256 - 1), who)
    return amount


def bal(system, who: str) -> int:
    return system.token.functions.balanceOf(who).call()


def create(system, owner: str, tokens: float | int = 50) -> tuple[int, dict]:
    """createSession(tokens) from `owner` (must be funded); returns (manager session id, receipt)."""
    r = transact(system.w3, system.manager.functions.createSession(int(tokens * system.unit)), owner)
    return one_event(system.manager, "SessionCreated", r)["sessionId"], r


def session(system, sid: int) -> dict:
    """getSession(sid) as a dict."""
    names = [
        "sessionId", "owner", "balance", "lastUsed", "active", "requestCount", "dtnSessionId",
        "pendingRequests", "lastRequestAt", "pooled", "hasDtnBalance", "dtnBalance",
        "closableAt", "closing", "pendingSince",
    ]
    return dict(zip(names, system.manager.functions.getSession(sid).call()))


def dtn_balance(system, sid: int) -> int:
    """The router-side spendable balance of manager session `sid` (read from the router)."""
    return system.router.functions.getSessionBalance(session(system, sid)["dtnSessionId"]).call()


def routing(namespaces=(), nodes=(), aggregation: int = ANY) -> tuple:
    return (list(namespaces), list(nodes), 1, 8, aggregation)


def default_routing() -> tuple:
    return routing([SYSTEM_TRUST_NAMESPACE])


def ask(system, user: str, prompt: str = "What is DTN?", *, sid: int | None = None,
        route: tuple | None = None, value: int = CALLBACK_GAS, model: str | None = None) -> tuple[bytes, dict]:
    """A request through the manager; returns (request id, receipt).

    sid=None: makeAIRequest (the caller's current session); else makeAIRequestInSession.
    """
    m = system.manager.functions
    model = model or system.model
    if sid is None and route is None:
        fn = m.makeAIRequest(prompt, model, [])
    elif sid is None:
        fn = m.makeAIRequestWithRouting(prompt, model, route)
    else:
        fn = m.makeAIRequestInSession(sid, prompt, model, route or default_routing())
    r = transact(system.w3, fn, user, value=value)
    return one_event(system.manager, "AIRequestSubmitted", r)["requestId"], r


def answer(system, request_id: bytes, text: str = "an answer", **kw) -> dict:
    """Answer as the registered node's worker (localdtn.respond)."""
    return respond(system, request_id, worker=system.worker, node=system.node_id, text=text, **kw)


def fail(system, request_id: bytes, message: str = "model overloaded", **kw) -> dict:
    return respond(system, request_id, worker=system.worker, node=system.node_id, failure=message, **kw)


def request_status(system, rid: bytes) -> int:
    return system.manager.functions.requests(rid).call()[3]


def router_request_args(system, dtn_sid: int, user: str, prompt: str = "hello",
                        route: tuple | None = None, callback_gas: int = 0, target: str | None = None):
    """Arguments of LocalDtnRouter.request for a direct call from an account owning `dtn_sid`."""
    unit = system.unit
    dtn_request = (abi_encode(["string[]"], [[prompt]]), b"", 1, unit // 1000, unit // 1000, unit)
    callback = (b"\x00" * 4, b"\x00" * 4, target or user)
    return (dtn_sid, model_id(system.model), route or default_routing(), dtn_request, callback, user, callback_gas)


def open_router_session(system, who: str, tokens: int = 20) -> int:
    """An EOA funds and starts its own DTN session on the router; returns the DTN session id."""
    w3 = system.w3
    amount = tokens * system.unit
    transact(w3, system.token.functions.mint(who, amount), who)
    transact(w3, system.token.functions.transfer(system.router.address, amount), who)
    r = transact(w3, system.router.functions.startUserSession(), who)
    return one_event(system.router, "SessionStarted", r)["sessionId"]


# ----------------------------------------------------------------------------- invariant


def _open_dtn_balances(system) -> int:
    router = system.router
    n = router.functions.nextSessionId().call()
    total = 0
    w3 = system.w3
    ids = list(range(1, n))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        with w3.batch_requests() as batch:
            for i in chunk:
                batch.add(router.functions.getSessionBalance(i))
            total += sum(batch.execute())
    return total


def check_conservation(system, holders: Iterable[str]) -> None:
    """Tokens are conserved and every contract holds exactly what it accounts for."""
    token, router, manager = system.token, system.router, system.manager
    supply = token.functions.totalSupply().call()
    held = {a: bal(system, a) for a in list(holders) + [manager.address, router.address]}
    assert sum(held.values()) == supply, f"tokens left the known accounts: supply {supply}, held {held}"
    accounted = router.functions.accountedBalance().call()
    assert accounted == _open_dtn_balances(system), "router accountedBalance != sum of open DTN sessions"
    assert held[router.address] == accounted, "router holds an unassigned deposit at the end of the test"
    assert held[manager.address] == manager.functions.totalClaimable().call(), (
        "the manager holds tokens other than credited refunds"
    )


# ----------------------------------------------------------------------------- processes


@contextmanager
def lock_held_elsewhere(path):
    """Another process holds the lock file ``path`` (``chain.oslock``, as a dtnsess run does)
    while the block runs; the Popen is yielded (kill it to see a holder die)."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from dtnsess_cli.chain.oslock import FileLock\n"
         "lock = FileLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()",
         str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(10)


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` is gone within ``timeout`` seconds (a zombie waiting for its
    parent to reap it counts as gone)."""
    import os
    import time
    from pathlib import Path

    end = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (OSError, IndexError):
            pass
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def journal_status(tx_hash: str) -> str:
    """What the journal in the current state dir says of a transaction (pending, mined, ...)."""
    from dtnsess_cli.chain.journal import Journal

    j = Journal()
    try:
        return j.find(tx_hash).status
    finally:
        j.close()
