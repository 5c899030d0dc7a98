"""Replacing a stuck transaction (``dtnsess tx speedup`` / ``dtnsess tx cancel``).

The journal keeps every signed transaction: a replacement is its own fields (or, for a cancel,
a 0-value transfer to the sender) signed again at the SAME nonce with both fees raised by the
node's replacement minimum (or set by --priority-gas-price / --max-fee, never below that
minimum). It is journaled as a variant of the same intent, in the original's family: one nonce,
so one variant at most is ever mined; the first receipt of any of them settles the family (the
others are ``replaced``), and a rerun of the intent never sends it again (``manager.writes``).

A node that refuses the replacement as underpriced (its price bump is larger, or it holds a
dearer transaction at that nonce) gets another, +10% on both fees over the refused one, each
confirmed again (unless --yes) and journaled before it is sent, at most ``MAX_TRIES`` in all
and never above --max-fee.

On a chain with blocks the original may be mined while the replacement goes out: the node
refuses it (nonce too low), and the original's receipt is the outcome. When earlier nonces of
the key are not mined either, no fee gets the replacement mined before them: that is said
before the cost. Tested with a block every second: tests/test_tx_replace_blocks.py.
"""

from __future__ import annotations


from ..errors import DtnsessError, InputError, InsufficientFundsError, RpcError
from .broadcast import broadcast, journal_resolve, wait_for_receipt
from .context import TxContext, TxOverrides, TxResult, decode_logs, response_error, rpc_batch
from .contract import format_receipt
from .fees import (_check_eth, _confirm, _fact_requests, _facts_from, l1_fee_of, l1_fee_request,
                   receipt_l1_fee)
from .signing import decode_transaction

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

# geth's (and op-geth's, Base's) price bump for a replacement: +10% on both EIP-1559 fees
BUMP_NUM, BUMP_DEN = 11, 10
CANCEL_GAS = 21_000
# what nodes answer when a replacement's fees are too low: geth, Anvil and reth ("replacement
# transaction underpriced"), Erigon ("could not replace existing tx"), older reth
# ("insufficient gas price to replace existing transaction"), Besu (REPLACEMENT_UNDERPRICED)
# NOTE: matched on text: the nodes share no error code for it
UNDERPRICED = ("underpriced", "could not replace existing tx", "to replace existing transaction")
# replacements signed in one run at most (the last +33% over the first)
MAX_TRIES = 4


def bump(old: int, now: int) -> int:
    """A fee for a replacement: +10% rounded up (at least 1 wei more), or what the chain asks
    now when that is more."""
    return max(-(-old * BUMP_NUM // BUMP_DEN), old + 1, now)


def replacement_fields(old: dict, fees: dict, sender: str, cancel: bool,
                       overrides: Optional[TxOverrides] = None) -> dict:
    """The replacement of the decoded transaction ``old``: same nonce and chain, fees raised
    (``bump``) against the chain's current ``fees`` (``ChainFacts.fees``), or as ``overrides``
    fix them (--priority-gas-price, --max-fee): InputError, before anything is signed, when one
    is below the node's replacement minimum (+10% over ``old``'s). A cancel sends 0 to the
    sender with no data."""
    o = overrides or TxOverrides()
    tx = dict(old)
    if cancel:
        tx.update(to=sender, value=0, data="0x", gas=CANCEL_GAS)
    if old.get("type") == 2:
        old_tip, old_max = old["maxPriorityFeePerGas"], old["maxFeePerGas"]
        tip = bump(old_tip, fees.get("maxPriorityFeePerGas", 0))
        if o.priority_fee is not None:
            tip = o.priority_fee
        elif o.max_fee is not None:
            tip = min(tip, o.max_fee)
        mx = max(bump(old_max, fees.get("maxFeePerGas", 0)), tip) if o.max_fee is None \
            else o.max_fee
        _at_least("--max-fee", mx, old_max)
        _at_least("--priority-gas-price", tip, old_tip)
        if tip > mx:
            raise InputError("--priority-gas-price", _gwei(tip),
                             f"above the max fee ({_gwei(mx)}); nothing sent")
        tx.update(maxPriorityFeePerGas=tip, maxFeePerGas=mx)
    else:
        price = o.max_fee if o.max_fee is not None else bump(
            old["gasPrice"], fees.get("gasPrice", fees.get("maxFeePerGas", 0)))
        _at_least("--max-fee", price, old["gasPrice"])
        tx["gasPrice"] = price
    return tx


def _at_least(flag: str, fee: int, old: int) -> None:
    """InputError unless ``fee`` clears the replacement minimum over ``old`` (the node would
    refuse the replacement as underpriced)."""
    least = bump(old, 0)
    if fee < least:
        raise InputError(flag, _gwei(fee), f"below the replacement minimum {_gwei(least)} "
                         f"(+10% over the pending transaction's {_gwei(old)}): the node would "
                         f"refuse it; nothing sent")


def _gwei(wei: int) -> str:
    from ..units import format_gwei

    return f"{format_gwei(wei)} gwei"


def _underpriced(exc: RpcError) -> bool:
    msg = f"{exc.message} {getattr(exc, 'reason', '')}".lower()
    return any(k in msg for k in UNDERPRICED)


def _max_fee(tx: dict) -> int:
    return tx.get("maxFeePerGas", tx.get("gasPrice", 0))


def replace(ctx: TxContext, entry: Any, *, cancel: bool, dry_run: bool,
            confirm: bool = True) -> tuple:
    """Replace the journal ``entry``'s transaction (the newest open variant of its family).

    One round trip first: the receipts of the family, the sender's mined nonce, fees and ETH.
    Already mined, or its nonce taken, or fees set below the replacement minimum: InputError,
    nothing sent. Then confirm with the new cost, sign, journal (same family, same intent),
    send (refused as underpriced: again, +10%, see the module), and wait for the first receipt
    of any variant. Returns (TxResult of the mined variant, or the dry run's; "replacement" or
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
    rec = _first_mined(resps[:n])
    if rec is not None:
        m = str(rec["transactionHash"]).lower()
        journal_resolve(ctx, m, "mined" if rec["status"] == 1 else "failed", rec["blockNumber"])
        raise InputError("transaction hash", entry.tx_hash,
                         f"already mined in block {rec['blockNumber']} (tx {m}): "
                         f"nothing to replace; nothing sent")
    r_mined = resps[n]
    if "error" in r_mined:
        raise response_error(ctx, r_mined, "nonce lookup")
    mined_nonce = int(r_mined["result"], 16)
    if mined_nonce > entry.nonce:
        raise InputError("transaction hash", entry.tx_hash,
                         f"its nonce {entry.nonce} is already used by a mined transaction: "
                         f"nothing to replace (see `dtnsess tx {entry.tx_hash}`); nothing sent")
    if mined_nonce < entry.nonce:
        _warn_earlier(ctx, mined_nonce, entry.nonce)
    facts = _facts_from(ctx, resps[n + 1:n + 1 + len(facts_reqs)])
    l1_fee = l1_fee_of(resps[-1])
    new = replacement_fields(tx, facts.fees or {}, sender, cancel, ctx.overrides)
    description = (f"cancel {entry.description} (nonce {entry.nonce})" if cancel
                   else f"speed up {entry.description} (nonce {entry.nonce})")
    result = TxResult(description=description, dry_run=dry_run, sender=sender, to=new.get("to"),
                      value=new["value"], gas_estimate=new["gas"], gas_limit=new["gas"],
                      max_fee_per_gas=_max_fee(new), l1_fee=l1_fee)
    _check_eth(sender, facts.balance, new["gas"], _max_fee(new), l1_fee, new["value"])
    if dry_run:
        return result, None
    was = _gwei_pair(old)
    tried: list = []
    others = [m.tx_hash for m in members]  # the family's hashes before this replacement
    receipt = None
    while True:
        if confirm:  # every try: its cost is more than the one before
            _confirm(ctx, f"{description}\n  fees (tip / max, gwei): {was} -> {_gwei_pair(new)}",
                     f"{new['gas']} (limit)", new["gas"], _max_fee(new), new["value"], None,
                     "Send the replacement?", l1_fee)
        signed = ctx.account.sign_transaction(new)
        tx_hash = "0x" + bytes(signed.hash).hex()
        try:
            # NOTE: the plain send: either the original or this one may be mined, and the
            # family's receipts are polled together (a sync send would wait for this one only)
            broadcast(ctx, bytes(signed.raw_transaction), tx_hash, entry.nonce, description,
                      variant_of=entry, variant="cancel" if cancel else "speedup")
            break
        except RpcError as exc:
            if not _underpriced(exc):
                # NOTE: a variant mined since the first batch looked (on a chain with blocks,
                # the original in the block that came meanwhile) makes the node refuse this
                # one (nonce too low): that is the outcome, not an error
                receipt = _first_mined(rpc_batch(ctx, [("eth_getTransactionReceipt", [h])
                                                       for h in others], what))
                if receipt is None:
                    raise
                break
            tried.append(_gwei_pair(new))
            # NOTE: +10% on both over the refused one: the node's minimum over what it holds
            nxt = replacement_fields(new, {}, sender, False)
            stop = _why_not_again(ctx, len(tried), nxt, facts.balance, l1_fee)
            if stop:
                exc.message = (f"{description}: the node refused the replacement as "
                               f"underpriced at tip / max {', then '.join(tried)} gwei: it "
                               f"wants more than +10% on both fees over the transaction it "
                               f"holds at nonce {entry.nonce} (its own price bump, or a "
                               f"dearer transaction there): "
                               f"{getattr(exc, 'reason', exc.message)}")
                exc.hint = (f"nothing more sent: {stop}; the original tx {entry.tx_hash} "
                            f"stays pending")
                raise
            ctx.ui.info(f"the node refused the replacement at tip / max {tried[-1]} gwei as "
                        f"underpriced (it wants more over what it holds at nonce "
                        f"{entry.nonce}); trying {_gwei_pair(nxt)} gwei (+10% on both)")
            new = nxt
            result.max_fee_per_gas = _max_fee(new)
    result.tx_hash = tx_hash
    if receipt is None:
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


def _warn_earlier(ctx: TxContext, first: int, nonce: int) -> None:
    """Before the cost is shown: the sender's nonces ``first``..``nonce - 1`` are not mined
    (e.g. `create`'s approval, stuck with it), and a replacement at ``nonce`` cannot be mined
    before them, however high its fees: name the journal's transactions there."""
    sender = ctx.account.address
    held = {}
    if ctx.journal is not None:  # the newest variant at each earlier nonce
        for e in ctx.journal.open_entries(ctx.chain_id, sender, ctx.genesis or None):
            if first <= e.nonce < nonce:
                held[e.nonce] = e.tx_hash
    span = f"nonce {first}" if nonce - first == 1 else f"nonces {first}..{nonce - 1}"
    txs = ", ".join(f"tx {h} (nonce {n})" for n, h in sorted(held.items())) or \
        "not sent by dtnsess from this machine"
    them = "it" if nonce - first == 1 else "them"
    ctx.ui.info(f"warning: {span} of {sender} not mined yet ({txs}): this replacement "
                f"cannot be mined before {them}; speed {them} up too (`dtnsess tx speedup "
                f"HASH`)")


def _first_mined(replies: list) -> Optional[dict]:
    """The first mined receipt among the eth_getTransactionReceipt ``replies`` (formatted), or
    None."""
    for r in replies:
        rec = format_receipt(r.get("result") if isinstance(r, dict) else None)
        if rec is not None and rec.get("blockNumber") is not None:
            return rec
    return None


def _gwei_pair(tx: dict) -> str:
    from ..units import format_gwei

    if "maxFeePerGas" in tx:
        return f"{format_gwei(tx['maxPriorityFeePerGas'])} / {format_gwei(tx['maxFeePerGas'])}"
    return format_gwei(tx["gasPrice"])


def _why_not_again(ctx: TxContext, tries: int, nxt: dict, balance: int, l1_fee: int) -> str:
    """Why no further replacement is sent after ``tries`` refused ones ("": one is): the
    limit of tries, the user's --max-fee, or the ETH it would need."""
    cap = ctx.overrides.max_fee
    if cap is not None and _max_fee(nxt) > cap:
        return (f"the next try ({_gwei_pair(nxt)} gwei) is above --max-fee {_gwei(cap)}; "
                f"run it again with a higher --max-fee")
    if tries >= MAX_TRIES:
        return (f"{tries} tries; to go higher, run it again with fees of at least "
                f"{_gwei_pair(nxt)} gwei (--priority-gas-price / --max-fee)")
    try:
        _check_eth(ctx.account.address, balance, nxt["gas"], _max_fee(nxt), l1_fee,
                   nxt["value"])
    except InsufficientFundsError as exc:
        return (f"the next try ({_gwei_pair(nxt)} gwei) would need {exc.need} of ETH; the "
                f"key has {exc.have}")
    return ""

