"""The one way to send a transaction, and revert decoding.

``send_and_wait`` is used by every write: simulate (eth_call from the sender; a revert
becomes a decoded error and nothing is sent), estimate gas (+20%), EIP-1559 fees (the node's
tip), the L1 data fee on OP-stack chains (Base), check ETH for all that, confirm with the cost (terminal only, unless --yes), sign locally, send once, wait
for the receipt with a deadline, check ``status`` (a failed receipt is replayed at its block
to recover the revert data), decode the receipt's events. Everything before the send travels
in one JSON-RPC batch: a transaction costs two round trips (batch, then the send answered with
its receipt: ``eth_sendRawTransactionSync``, EIP-7966), or three where the node lacks that
method (batch, send, receipt poll).

NOTE: a different transaction is never sent for the same intent. Each signed transaction goes
into the journal (``journal.py``) before its broadcast (``broadcast``); when the node's reply is
lost it is looked up by hash, and only its own signed bytes are sent again (same nonce, same
hash: it can be mined once at most). When its outcome cannot be known (node down, receipt
deadline, Ctrl-C) the command exits TIMEOUT (or 130) naming the hash and the nonce, and the
journal entry stays open for the next command from that key.

The steps live in modules of their own: ``context`` (TxContext, TxResult, JSON-RPC requests and
their errors), ``fees`` (gas limit, EIP-1559 and L1 fees, ETH check, confirmation),
``simulate`` (eth_call and revert errors), ``broadcast`` (journal, send, lost replies,
receipt), ``pipeline`` (batches). This module is the entry point the manager uses, and names
them all (``from .send import ...`` and ``send.X`` keep working).
"""

from __future__ import annotations

import time

from ..record import replace
from .broadcast import (  # noqa: F401 - re-exported
    LOOKUP_BACKOFF, RECEIPT_FIRST_WAIT, RECEIPT_POLL_FIRST, RECEIPT_POLL_MAX, _KNOWN,
    NodeAccount, SYNC_SEND, _ensure_known, _record, _refused, broadcast, journal_resolve,
    sign_and_send, send_unlocked, sync_send,
    wait_for_receipt, warn_journal_gap)
from .context import (  # noqa: F401 - re-exported
    BATCH_SIZE, CHAIN_REQUESTS, DEFAULT_RECEIPT_TIMEOUT, GENESIS_REQUEST, DecodedEvent,
    TxContext, TxOverrides, TxResult, _call_parts, _decode_return, _hexq, _json_tx, _node_message,
    _to_bytes, chain_requests, decode_logs, plain_revert, raw_request, response_error, rpc_batch,
    rpc_error, take_chain, to_rpc_error)
from .contract import format_receipt  # noqa: F401 - also the receipt format of its callers
from .fees import (  # noqa: F401 - re-exported
    FEE_HISTORY_BLOCKS, FEE_HISTORY_PERCENTILE, FEES_MAX_AGE, GAS_MARGIN_DEN, GAS_MARGIN_NUM,
    L1_GAS_PRICE_ORACLE, TX_GAS_CAP, ChainFacts, _check_eth, _confirm, _eth_floor_error,
    _fact_requests, _facts_from, _quantity, _tip_of, cost_line, gas_limit_for, l1_fee_of,
    l1_fee_request, limit_for, receipt_l1_fee, with_overrides)
from .simulate import SIM_BLOCK, _call_error, _failed_receipt, simulate  # noqa: F401

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - at run time: __getattr__
    from typing import Any, Callable, Optional, Sequence

    from .deploy import Deploy
    from .pipeline import (Call, Outcome, Pipeline, Prepared, batch_error, prepare_many,
                           send_many, send_together)

# NOTE: named on first use (PEP 562): one write needs none of them, and importing the pipeline
# and Deploy was ~6 ms of each request's and close's start-up (when they were dataclasses)
_LAZY = {**dict.fromkeys(("Call", "Outcome", "Pipeline", "Prepared", "batch_error",
                          "prepare_many", "send_many", "send_together"), "pipeline"),
         "Deploy": "deploy"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def send_and_wait(ctx: TxContext, fn_call: Any, *, value: int = 0,
                  description: "str | Callable[[], str]",
                  dry_run: bool = False, confirm: bool = True,
                  token_cost: Optional[str] = None,
                  follows: Optional["ChainFacts"] = None, also: Sequence[tuple] = (),
                  on_also: Optional[Callable[[list], None]] = None,
                  step: Optional[str] = None) -> TxResult:
    """Simulate, estimate, confirm, sign, send once, wait, check status, decode events.

    Two round trips: one JSON-RPC batch (simulate, estimate, fees, ETH balance, ``pending``
    nonce), and the send, whose reply is the receipt where the node has
    eth_sendRawTransactionSync; else a third, the receipt (when ready at the first poll).
    ``follows`` is the ``next_facts`` of a transaction this run sent just before (an approval):
    its nonce + 1 and its fees (while fresh) are reused; the simulation still runs against the
    state after it. ``also``: reads (``(method, params)``) that ride in the same batch; ``on_also`` gets their raw
    responses as soon as the batch returns, before the simulation is looked at, and may raise
    (then nothing is sent). ``step``: this transaction is a preliminary step of its command
    (``"approve"``), recorded so in the journal. ``description`` may be a function, called
    once ``on_also`` has run: a text built from reads that ride in the batch.
    """
    sender = ctx.account.address
    to, data, _ = _call_parts(fn_call)
    base_tx: dict = {"from": sender, "data": data, "value": value}
    if to:
        base_tx["to"] = to

    # 1. one round trip: simulate (a revert here means nothing is sent), estimate, and the facts
    reqs = [("eth_call", [_json_tx(base_tx), SIM_BLOCK]),
            ("eth_estimateGas", [_json_tx(base_tx), SIM_BLOCK])]
    n_sim = len(reqs)
    if follows is not None and time.monotonic() - follows.fetched_at > FEES_MAX_AGE:
        follows = replace(follows, fees=None)  # too old: read them again (same batch)
    reqs += _fact_requests(sender, follows)
    n_facts = len(reqs) - n_sim
    reqs.append(l1_fee_request(ctx.chain_id, base_tx))
    chain = chain_requests(ctx)
    reqs += chain
    n_own = len(reqs)
    resps = rpc_batch(ctx, reqs + list(also), description if isinstance(description, str)
                      else "transaction")
    if also and on_also is not None:
        on_also(resps[n_own:])
    if callable(description):
        description = description()
    if chain:
        take_chain(ctx, resps[n_own - len(chain):n_own])
    l1_fee = l1_fee_of(resps[n_sim + n_facts])
    resps = resps[:n_sim + n_facts]
    facts_of = lambda: _facts_from(ctx, resps[n_sim:], follows)  # noqa: E731
    for r in resps[:n_sim]:
        if "error" in r or r.get("result") is None:
            raise _call_error(ctx, r, description,
                              lambda: _eth_floor_error(sender, value, facts_of()))
    ret = _decode_return(ctx, fn_call, resps[0]["result"])

    # 2. gas (+20%) and EIP-1559 fees
    est = int(resps[1]["result"], 16)
    limit = limit_for(ctx, est, gas_limit_for(est), description)
    # the user's --nonce is the first transaction's; one that follows takes the next
    facts = with_overrides(ctx, facts_of(), first=follows is None)
    fees, max_fee = facts.fees, facts.max_fee
    result = TxResult(description=description, dry_run=dry_run, sender=sender, to=to,
                      value=value, gas_estimate=est, gas_limit=limit, max_fee_per_gas=max_fee,
                      return_value=ret, l1_fee=l1_fee)

    # 3. ETH for gas, the L1 data fee (OP stack) and the value
    _check_eth(sender, facts.balance, limit, max_fee, l1_fee, value)
    if dry_run:
        return result

    if follows is None:
        warn_journal_gap(ctx, facts.nonce)

    # 4. confirm (only a person at a terminal is asked)
    if confirm:
        _confirm(ctx, description, f"~{est} (limit {limit})", limit, max_fee, value, token_cost,
                 "Send this transaction?", l1_fee)

    # 5. sign locally and send once
    tx = dict(base_tx, nonce=facts.nonce, gas=limit, chainId=ctx.chain_id, **fees)
    if "maxFeePerGas" in tx:
        tx["type"] = 2
    sent_at = time.monotonic()
    tx_hash, receipt = sign_and_send(ctx, tx, description, step=step, sync=True)
    result.tx_hash = tx_hash
    result.next_facts = replace(facts, nonce=facts.nonce + 1)

    # 6. the receipt: with the send where the node gives it (eth_sendRawTransactionSync), else
    # waited for with a deadline counted from the send (never a different transaction)
    if receipt is None:
        receipt = wait_for_receipt(ctx, tx_hash, description, facts.nonce, since=sent_at)
    result.block_number = receipt["blockNumber"]
    result.gas_used = receipt["gasUsed"]
    result.effective_gas_price = receipt.get("effectiveGasPrice")
    result.contract_address = receipt.get("contractAddress")
    result.l1_fee = receipt_l1_fee(receipt)  # what was paid, not the estimate
    if receipt["status"] != 1:
        journal_resolve(ctx, tx_hash, "failed", receipt["blockNumber"])
        raise _failed_receipt(ctx, base_tx, receipt, limit, description, tx_hash)
    journal_resolve(ctx, tx_hash, "mined", receipt["blockNumber"])
    result.events = decode_logs(ctx, receipt["logs"])
    return result
