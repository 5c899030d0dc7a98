"""Callback gas the bundled AdvancedSessionManager needs, by answer length.

    .venv/bin/python bench/callback_gas.py [--lengths 40,600,1000,2000,4000,8000,16384]

A request's `--value` is its callbackGas (one wei per gas unit): the router calls the manager's
onSuccess with exactly that much gas, and the callback reads the whole answer back
(fetchResponse), so longer answers need more. Too little and the callback fails: the answer
stands on the router, but the session counts it pending until `dtnsess settle`.

For each answer length (ASCII characters, answered DIRECT as abi.encode(string) by the devnet's
node) this finds, by bisection on a fresh local Anvil (127.0.0.1) with snapshot/revert around
each try, the least callbackGas at which the callback succeeds (no SuccessCallbackFailed). Gas
is deterministic: the figures do not depend on machine load. The comparison column is what
DTN-FACTS.md records for the same contract behind the real router and node software; the ratio
is local/real. Re-run after any change to contracts/AdvancedSessionManager.sol and update the
constants in src/dtnsess_cli/manager/base.py (CALLBACK_GAS_NEEDS) from its output.
"""

from __future__ import annotations

import argparse

from _common import anvil, header, rpc, web3_for

from dtnsess_cli.devnet.localdtn import (SYSTEM_TRUST_NAMESPACE, deploy_system, respond,
                                         transact)
from web3.logs import DISCARD

# DTN-FACTS.md, "What DTN's own node software does": measured behind the real router
REAL = {40: 26_600, 1000: 32_100, 4000: 48_900, 16384: 119_500}
PROMPT = "Tell me about DTN."
HIGH = 400_000  # a callbackGas every answer up to 16 KB is known to fit in
STEP = 50  # bisection resolution (gas)


def callback_ok(system, user: str, sid: int, text: str, gas: int) -> bool:
    """Request with callbackGas ``gas``, answer with ``text``; True if the callback succeeded.
    The chain is put back as it was."""
    w3 = system.w3
    snap = rpc(w3.provider.endpoint_uri, "evm_snapshot")
    try:
        r = transact(w3, system.manager.functions.makeAIRequestInSession(
            sid, PROMPT, system.model, ([SYSTEM_TRUST_NAMESPACE], [], 1, 8, 0)), user, value=gas)
        (ev,) = system.manager.events.AIRequestSubmitted().process_receipt(r, errors=DISCARD)
        rcpt = respond(system, ev["args"]["requestId"], worker=system.worker,
                       node=system.node_id, text=text)
        failed = system.router.events.SuccessCallbackFailed().process_receipt(rcpt, errors=DISCARD)
        return not failed
    finally:
        rpc(w3.provider.endpoint_uri, "evm_revert", [snap])


def least_gas(system, user: str, sid: int, length: int) -> int:
    text = ("lorem ipsum dolor sit amet " * (length // 27 + 1))[:length]
    lo, hi = 0, HIGH  # fails at lo, succeeds at hi
    if not callback_ok(system, user, sid, text, hi):
        raise SystemExit(f"a {length}-character answer needs more than {HIGH} gas")
    while hi - lo > STEP:
        mid = (lo + hi) // 2
        if callback_ok(system, user, sid, text, mid):
            hi = mid
        else:
            lo = mid
    return hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="40,600,1000,2000,4000,8000,16384",
                    help="answer lengths in characters")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    print(header("callback_gas.py"))
    with anvil() as node:
        w3 = web3_for(node.url)
        deployer, user, worker = w3.eth.accounts[0], w3.eth.accounts[1], w3.eth.accounts[9]
        system = deploy_system(w3, deployer, 6, worker=worker)
        transact(w3, system.token.functions.mint(user, 100 * system.unit), user)
        transact(w3, system.token.functions.approve(system.manager.address, 2**256 - 1), user)
        r = transact(w3, system.manager.functions.createSession(50 * system.unit), user)
        (ev,) = system.manager.events.SessionCreated().process_receipt(r, errors=DISCARD)
        sid = ev["args"]["sessionId"]
        print(f"{'answer (chars)':>15} {'least callbackGas':>18} {'real DTN':>10} {'ratio':>6}")
        for n in lengths:
            need = least_gas(system, user, sid, n)
            real = REAL.get(n)
            ratio = f"{need / real:.2f}" if real else "-"
            shown = f"{real:,}" if real else "-"
            print(f"{n:>15,} {need:>18,} {shown:>10} {ratio:>6}")


if __name__ == "__main__":
    main()
