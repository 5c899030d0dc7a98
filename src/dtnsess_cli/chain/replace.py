"""Replacing a stuck transaction (``dtnsess tx speedup`` / ``dtnsess tx cancel``).

The journal keeps every signed transaction: a replacement is its own fields (or, for a cancel,
a 0-value transfer to the sender) signed again at the SAME nonce with both fees raised by the
node's replacement minimum. It is journaled as a variant of the same intent, in the original's
family: one nonce, so one variant at most is ever mined; the first receipt of any of them
settles the family (the others are ``replaced``), and a rerun of the intent never sends it
again (``manager.writes``).
"""

from __future__ import annotations

from typing import Any

from ..errors import DtnsessError, InputError, RpcError
from .broadcast import broadcast, journal_resolve, wait_for_receipt
from .context import TxContext, TxResult, decode_logs, response_error, rpc_batch
from .contract import format_receipt
from .fees import (_check_eth, _confirm, _fact_requests, _facts_from, l1_fee_of, l1_fee_request,
                   receipt_l1_fee)
from .signing import decode_transaction

# geth's (and op-geth's, Base's) price bump for a replacement: +10% on both EIP-1559 fees
BUMP_NUM, BUMP_DEN = 11, 10
CANCEL_GAS = 21_000


def bump(old: int, now: int) -> int:
    """A fee for a replacement: +10% rounded up (at least 1 wei more), or what the chain asks
    now when that is more."""
    return max(-(-old * BUMP_NUM // BUMP_DEN), old + 1, now)


def replacement_fields(old: dict, fees: dict, sender: str, cancel: bool) -> dict:
    """The replacement of the decoded transaction ``old``: same nonce and chain, fees raised
    (``bump``) against the chain's current ``fees`` (``ChainFacts.fees``); a cancel sends 0 to
    the sender with no data."""
    tx = dict(old)
    if cancel:
        tx.update(to=sender, value=0, data="0x", gas=CANCEL_GAS)
    if old.get("type") == 2:
        tip = bump(old["maxPriorityFeePerGas"], fees.get("maxPriorityFeePerGas", 0))
        tx["maxPriorityFeePerGas"] = tip
        tx["maxFeePerGas"] = max(bump(old["maxFeePerGas"], fees.get("maxFeePerGas", 0)), tip)
    else:
        tx["gasPrice"] = bump(old["gasPrice"], fees.get("gasPrice", fees.get("maxFeePerGas", 0)))
    return tx


def _max_fee(tx: dict) -> int:
    return tx.get("maxFeePerGas", tx.get("gasPrice", 0))


def replace(ctx: TxContext, entry: Any, *, cancel: bool, dry_run: bool,
            confirm: bool = True) -> tuple:
    """Replace the journal ``entry``'s transaction (the newest open variant of its family).

    One round trip first: the receipts of the family, the sender's mined nonce, fees and ETH.
    Already mined, or its nonce taken: InputError, nothing sent. Then confirm with the new cost,
    sign, journal (same family, same intent), send, and wait for the first receipt of any
    variant. Returns (TxResult of the mined variant, or the dry run's; "replacement" or
    "original": which one was mined; None for a dry run).
    """
    if getattr(ctx.account, "unlocked", False) or not entry.raw:
        raise InputError("transaction hash", entry.tx_hash, "a replacement is signed here: "
                         "not with --unlocked, nor of a transaction the node signed")
    j = ctx.journal
    sender = ctx.account.address
    members = [m for m in j.members(entry.root) if m.status == "open"] or [entry]
    # NOTE: the fees to beat are the newest variant's (what the node holds at this nonce)
    old = decode_transaction(bytes.fromhex(members[-1].raw[2:]))
    tx = dict(old, chainId=ctx.chain_id)
    probe = {"from": sender, "to": sender if cancel else old.get("to"),
             "value": 0 if cancel else old["value"], "data": "0x" if cancel else old["data"]}
    facts_reqs = _fact_requests(sender)
    reqs = ([("eth_getTransactionReceipt", [m.tx_hash]) for m in members]
            + [("eth_getTransactionCount", [sender, "latest"])] + facts_reqs
            + [l1_fee_request(ctx.chain_id, probe)])
    what = f"{'cancel' if cancel else 'speed up'} tx {entry.tx_hash} (nonce {entry.nonce})"
    resps = rpc_batch(ctx, reqs, what)
    n = len(members)
    for m, r in zip(members, resps[:n]):
        rec = r.get("result") if isinstance(r, dict) else None
        if rec and rec.get("blockNumber"):
            rec = format_receipt(rec)
            journal_resolve(ctx, m.tx_hash, "mined" if rec["status"] == 1 else "failed",
                            rec["blockNumber"])
            raise InputError("transaction hash", entry.tx_hash,
                             f"already mined in block {rec['blockNumber']} (tx {m.tx_hash}): "
                             f"nothing to replace; nothing sent")
    r_mined = resps[n]
    if "error" in r_mined:
        raise response_error(ctx, r_mined, "nonce lookup")
    if int(r_mined["result"], 16) > entry.nonce:
        raise InputError("transaction hash", entry.tx_hash,
                         f"its nonce {entry.nonce} is already used by a mined transaction: "
                         f"nothing to replace (see `dtnsess tx {entry.tx_hash}`); nothing sent")
    facts = _facts_from(ctx, resps[n + 1:n + 1 + len(facts_reqs)])
    l1_fee = l1_fee_of(resps[-1])
    new = replacement_fields(tx, facts.fees or {}, sender, cancel)
    gas, max_fee, value = new["gas"], _max_fee(new), new["value"]
    description = (f"cancel {entry.description} (nonce {entry.nonce})" if cancel
                   else f"speed up {entry.description} (nonce {entry.nonce})")
    result = TxResult(description=description, dry_run=dry_run, sender=sender, to=new.get("to"),
                      value=value, gas_estimate=gas, gas_limit=gas, max_fee_per_gas=max_fee,
                      l1_fee=l1_fee)
    _check_eth(sender, facts.balance, gas, max_fee, l1_fee, value)
    if dry_run:
        return result, None
    if confirm:
        was = f"{_gwei_pair(old)} -> {_gwei_pair(new)}"
        _confirm(ctx, f"{description}\n  fees (tip / max, gwei): {was}", f"{gas} (limit)", gas,
                 max_fee, value, None, "Send the replacement?", l1_fee)
    signed = ctx.account.sign_transaction(new)
    tx_hash = "0x" + bytes(signed.hash).hex()
    variant = "cancel" if cancel else "speedup"
    try:
        # NOTE: the plain send: either the original or this one may be mined, and the family's
        # receipts are polled together (a sync send would wait for this one only)
        broadcast(ctx, bytes(signed.raw_transaction), tx_hash, entry.nonce, description,
                  variant_of=entry, variant=variant)
    except RpcError as exc:
        if "underpriced" in exc.message.lower():
            exc.hint = (f"the node wants more than +10% on both fees (or the fees rose): run it "
                        f"again; the original tx {entry.tx_hash} stays pending")
        raise
    result.tx_hash = tx_hash
    others = [m.tx_hash for m in members]
    receipt = wait_for_receipt(ctx, tx_hash, description, entry.nonce, others=others)
    winner = str(receipt.get("transactionHash") or tx_hash).lower()
    for h in [tx_hash] + others:
        if h != winner:
            journal_resolve(ctx, h, "replaced", note=f"replaced by {winner}")
    status = "mined" if receipt["status"] == 1 else "failed"
    journal_resolve(ctx, winner, status, receipt["blockNumber"])
    result.tx_hash = winner
    result.block_number = receipt["blockNumber"]
    result.gas_used = receipt["gasUsed"]
    result.effective_gas_price = receipt.get("effectiveGasPrice")
    result.l1_fee = receipt_l1_fee(receipt)
    result.events = decode_logs(ctx, receipt["logs"])
    if status == "failed":
        raise DtnsessError(f"{description}: tx {winner} was mined but reverted (block "
                           f"{receipt['blockNumber']}); only its gas was spent",
                           hint=f"see `dtnsess tx {winner}`")
    return result, ("replacement" if winner == tx_hash else "original")


def _gwei_pair(tx: dict) -> str:
    from ..units import format_gwei

    if "maxFeePerGas" in tx:
        return f"{format_gwei(tx['maxPriorityFeePerGas'])} / {format_gwei(tx['maxFeePerGas'])}"
    return format_gwei(tx["gasPrice"])

