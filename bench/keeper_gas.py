"""Gas of one CRE keeper report's cleanup vs CRE's per-write gas quota.

    .venv/bin/python bench/keeper_gas.py [--owners 5]

A report goes the way CRE delivers it: the transmitter calls the forwarder (the LocalForwarder
stand-in, which does what KeystoneForwarder does around the call, minus the DON signature check:
KeystoneForwarder's ecrecover of f+1 signatures adds a few thousand gas per signer on top), the
forwarder calls CleanupReceiver.onReport, the receiver calls the manager's
cleanupOldSessionsUpTo. The gas is the whole transaction's gasUsed, what CRE's quota of
5,000,000 gas per EVM write (PerWorkflow.ChainWrite.EVM.TransactionGasLimit,
docs.chain.link/cre/service-quotas) applies to. Sessions belong to --owners owners, round robin
(an owner's first credited refund writes a new slot). Fresh Anvil on 127.0.0.1, 6-decimal token.
"""

from __future__ import annotations

import argparse

from _common import anvil, header, rpc, web3_for

from dtnsess_cli.devnet.localdtn import deploy, deploy_system, transact
from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3.logs import DISCARD

CRE_QUOTA = 5_000_000
WORKFLOW_ID = keccak(text="bench workflow")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--owners", type=int, default=5)
    args = ap.parse_args()
    print(header("keeper_gas.py"))
    # block gas 100M: the "all 300 in one report" row must be able to run at all
    with anvil("--gas-limit", "100000000") as node:
        w3 = web3_for(node.url)
        accts = w3.eth.accounts
        deployer, owners, wf_owner = accts[0], accts[1:1 + args.owners], accts[9]
        system = deploy_system(w3, deployer, 6, worker=accts[8])
        m = system.manager.functions
        forwarder = deploy(w3, "LocalForwarder", deployer)
        receiver = deploy(w3, "CleanupReceiver", deployer, system.manager.address, forwarder.address, 50)
        transact(w3, receiver.functions.setWorkflow(WORKFLOW_ID, wf_owner, b"\x00" * 10), deployer)
        for o in owners:
            transact(w3, system.token.functions.mint(o, 10**12), o)
            transact(w3, system.token.functions.approve(system.manager.address, 2**256 - 1), o)
        execution, slot = [0], [0]

        def idle(n: int) -> None:
            rpc(node.url, "evm_setAutomine", [False])
            for i in range(n):
                m.createSession(10 * system.unit).transact({"from": owners[i % len(owners)], "gas": 600_000})
            while int(rpc(node.url, "txpool_status")["pending"], 16):
                rpc(node.url, "evm_mine")
            rpc(node.url, "evm_setAutomine", [True])
            rpc(node.url, "evm_increaseTime", [m.maxSessionAge().call() + 1])
            rpc(node.url, "evm_mine")

        def report(max_sessions: int, gas: int) -> tuple:
            execution[0] += 1
            # each report a later cron slot than the last (blocks may share a timestamp)
            slot[0] = max(slot[0] + 1, w3.eth.get_block("latest")["timestamp"])
            body = abi_encode(["uint256"] * 3, [w3.eth.chain_id, slot[0], max_sessions])
            raw = (b"\x01" + execution[0].to_bytes(32, "big") + bytes(12) + WORKFLOW_ID + bytes(10)
                   + bytes.fromhex(wf_owner[2:]) + b"\x00\x01" + body)
            r = transact(w3, forwarder.functions.report(receiver.address, raw, b"", []), deployer, gas=gas)
            closed = len(system.manager.events.SessionClosed().process_receipt(r, errors=DISCARD))
            reverted = len(receiver.events.CleanupReverted().process_receipt(r, errors=DISCARD))
            assert closed or reverted, "the receiver refused the report"
            return r["gasUsed"], closed, reverted

        rows = []
        idle(50)
        rows.append(("50 idle, report bound 50", *report(50, CRE_QUOTA)))
        idle(300)
        rows.append(("300 idle, report bound 50", *report(50, CRE_QUOTA)))
        transact(w3, receiver.functions.setMaxBatch(300), deployer)
        rows.append(("250 idle, bound 250, 5M gas", *report(250, CRE_QUOTA)))
        rows.append(("250 idle, bound 250, 30M gas", *report(250, 30_000_000)))

    print(f"\n{'scenario':<32}{'gasUsed':>12}{'closed':>8}  {'of the 5M quota':>16}  note")
    for name, gas, closed, reverted in rows:
        note = "cleanup ran out of gas: CleanupReverted, 0 closed" if reverted else \
            f"{gas / max(closed, 1):,.0f} gas per session"
        print(f"{name:<32}{gas:>12,}{closed:>8}  {gas / CRE_QUOTA:>15.0%}  {note}")


if __name__ == "__main__":
    main()
