"""Batches: the same steps for several transactions, pipelined (``send_many``, ``Pipeline``) or
back to back in one batch of sends (``send_together``)."""

from __future__ import annotations

import time

from ..errors import DtnsessError, ExitCode, RpcError, SendUnknownError, TxPendingError
from ..record import record
from .broadcast import (RECEIPT_FIRST_WAIT, RECEIPT_POLL_FIRST, RECEIPT_POLL_MAX, _ensure_known,
                        _record, _refused, journal_resolve, sign_and_send, warn_journal_gap)
from .clock import sleep
from .context import (TxContext, TxResult, _call_parts, _decode_return, _hexq, _json_tx,
                      chain_requests, decode_logs, raw_request, response_error, rpc_batch,
                      rpc_error, take_chain)
from .contract import format_receipt
from .errors import RpcTransportError
from .fees import (ChainFacts, _check_eth, _confirm, _fact_requests, _facts_from, gas_limit_for,
                   l1_fee_of, l1_fee_request, limit_for, receipt_l1_fee, with_overrides)
from .simulate import SIM_BLOCK, _failed_receipt

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Sequence

# ``send_many`` (and the ``Pipeline`` it is made of) is not a second send path: every
# transaction is still simulated, estimated, checked against the ETH balance, confirmed (once
# for the whole batch, with the total cost), signed locally, sent once and never resent; a failed
# receipt is replayed for its revert reason as in ``send_and_wait``. What changes is the number
# of round trips: the simulations and estimates of a batch travel in one JSON-RPC batch, the
# transactions get consecutive nonces counted locally from the ``pending`` nonce and are sent
# without waiting for each other's receipts, and the receipts are polled in one JSON-RPC batch.
#
# NOTE: the calls of one batch are simulated against the same ``pending`` state, which does not
# hold the batch's own earlier transactions (a node's pending block may not include them yet).
# Batch only calls that do not depend on each other (requests in different sessions); a caller
# that reuses a session waits for the receipts of the previous batch first.


@record
class Call:
    """One contract call to send: the bound function, a description for messages, the value."""

    fn_call: Any
    description: str
    value: int = 0
    gas_limit: Optional[int] = None
    tag: Any = None  # the caller's own reference (e.g. the prompt's index)
    # a state override set for the simulation and the estimate (eth_call's third parameter):
    # e.g. the allowance an approval sent in the same batch will set (see send_together)
    overrides: Optional[dict] = None
    step: Optional[str] = None  # recorded in the journal (e.g. "approve")


@record
class Prepared:
    """A simulated and estimated call, or the error its simulation or estimate raised."""

    call: Call
    base_tx: dict
    return_value: Any = None
    gas_estimate: int = 0
    gas_limit: int = 0
    error: Optional[DtnsessError] = None
    l1_fee: int = 0  # the OP-stack L1 data fee the oracle quoted (0 elsewhere)


@record
class Outcome:
    """What happened to one call of a batch.

    ``status``: ``mined`` (receipt status 1, ``result`` filled), ``failed`` (rejected by the node,
    or mined and reverted: ``error``; nothing happened on chain but the gas of a mined revert),
    ``not_sent`` (the batch stopped before it), ``unknown`` (sent, but neither accepted nor
    rejected could be established: check ``tx_hash`` before sending it again).
    """

    call: Call
    status: str = "not_sent"
    tx_hash: Optional[str] = None
    nonce: Optional[int] = None
    gas_estimate: int = 0
    gas_limit: int = 0
    result: Optional[TxResult] = None
    error: Optional[DtnsessError] = None
    receipt: Any = None


def _prep_requests(ctx: TxContext, calls: Sequence[Call]) -> tuple:
    """(Prepared per call, the eth_call/eth_estimateGas requests that fill them)."""
    sender = ctx.account.address
    reqs: list = []
    preps: list = []
    for c in calls:
        to, data, _ = _call_parts(c.fn_call)
        base_tx: dict = {"from": sender, "data": data, "value": c.value}
        if to:
            base_tx["to"] = to
        preps.append(Prepared(call=c, base_tx=base_tx))
        extra = [c.overrides] if c.overrides else []
        reqs.append(("eth_call", [_json_tx(base_tx), SIM_BLOCK] + extra))
        if c.gas_limit is None:
            reqs.append(("eth_estimateGas", [_json_tx(base_tx), SIM_BLOCK] + extra))
        reqs.append(l1_fee_request(ctx.chain_id, base_tx))
    return preps, reqs


def _prep_take(ctx: TxContext, preps: Sequence[Prepared], resps: Sequence[dict]) -> None:
    it = iter(resps)
    for p in preps:
        sim = next(it)
        est = next(it) if p.call.gas_limit is None else {"result": _hexq(p.call.gas_limit)}
        p.l1_fee = l1_fee_of(next(it))
        if "error" in sim or sim.get("result") is None:
            p.error = response_error(ctx, sim, p.call.description)
            continue
        if "error" in est:
            p.error = response_error(ctx, est, p.call.description)
            continue
        try:
            p.return_value = _decode_return(ctx, p.call.fn_call, sim["result"])
        except Exception:  # a return value we cannot decode does not stop the send
            p.return_value = None
        p.gas_estimate = int(est["result"], 16)
        p.gas_limit = (gas_limit_for(p.gas_estimate)
                       if p.call.gas_limit is None else p.call.gas_limit)
        try:
            p.gas_limit = limit_for(ctx, p.gas_estimate, p.gas_limit, p.call.description)
        except DtnsessError as exc:  # the user's --gas-limit does not hold this one
            p.error = exc


def prepare_many(ctx: TxContext, calls: Sequence[Call]) -> list:
    """Simulate and estimate every call against ``pending``, in one round trip.

    A call whose simulation or estimate reverts gets its decoded error in ``Prepared.error``
    (nothing is raised for it: the caller decides); node trouble raises RpcError.
    """
    preps, reqs = _prep_requests(ctx, calls)
    _prep_take(ctx, preps, rpc_batch(ctx, reqs, "simulation"))
    return preps


class Pipeline:
    """Signs and sends prepared calls with consecutive nonces, then collects their receipts.

    ``begin()`` reads fees, the ETH balance and the ``pending`` nonce in one round trip; the
    nonce is then counted locally. ``send()`` signs and sends one transaction (one round trip)
    and never waits (``broadcast``: journal first, a lost reply looked up by hash); ``collect()``
    polls all receipts of what was sent in one round trip per poll.
    """

    def __init__(self, ctx: TxContext) -> None:
        self.ctx = ctx
        self.fees: dict = {}
        self.max_fee = 0
        self.balance = 0
        self.nonce: Optional[int] = None

    def begin(self, facts: Optional[ChainFacts] = None) -> None:
        """Fees, ETH balance and nonce: read now (one round trip), or ``facts`` already read."""
        ctx = self.ctx
        if facts is None:
            reqs, chain = _fact_requests(ctx.account.address), chain_requests(ctx)
            resps = rpc_batch(ctx, reqs + chain, "fee lookup")
            if chain:
                take_chain(ctx, resps[len(reqs):])
            facts = _facts_from(ctx, resps[:len(reqs)])
        facts = with_overrides(ctx, facts)  # the user's --nonce (the first), fees
        self.fees, self.max_fee = facts.fees, facts.max_fee
        self.balance, self.nonce = facts.balance, facts.nonce
        warn_journal_gap(ctx, facts.nonce)

    def check_funds(self, gas_limit_total: int, value_total: int, count: int,
                    l1_fee_total: int = 0) -> None:
        _check_eth(self.ctx.account.address, self.balance, gas_limit_total, self.max_fee,
                   l1_fee_total, value_total, count)

    def confirm(self, headline: str, gas_estimate_total: int, gas_limit_total: int,
                value_total: int, token_cost: Optional[str] = None,
                l1_fee_total: int = 0) -> None:
        """Ask once for the whole batch (terminal only, unless --yes)."""
        _confirm(self.ctx, headline, f"~{gas_estimate_total} in total (limit {gas_limit_total})",
                 gas_limit_total, self.max_fee, value_total, token_cost, "Send these transactions?",
                 l1_fee_total)

    def send(self, p: Prepared) -> Outcome:
        """Sign ``p`` with the next nonce and send it once. The outcome is ``sent`` (accepted by
        the node), ``failed`` (rejected: the nonce is not used) or ``unknown`` (the node did not
        answer: the transaction may or may not have arrived)."""
        ctx = self.ctx
        assert self.nonce is not None, "begin() first"
        out = Outcome(call=p.call, nonce=self.nonce, gas_estimate=p.gas_estimate,
                      gas_limit=p.gas_limit)
        tx = dict(p.base_tx, nonce=self.nonce, gas=p.gas_limit, chainId=ctx.chain_id, **self.fees)
        if "maxFeePerGas" in tx:
            tx["type"] = 2
        try:
            # NOTE: the plain send (no sync=True): a pipeline sends its transactions one after
            # the other and waits for their receipts together, so a send that waits for its
            # own receipt would hold up the next one
            out.tx_hash, _ = sign_and_send(ctx, tx, p.call.description)
        except (TxPendingError, SendUnknownError) as exc:
            out.tx_hash = getattr(exc, "tx_hash", None)  # none when the node signs (--unlocked)
            if exc.exit_code != ExitCode.TIMEOUT:  # Ctrl-C: stop here, the hash is named
                raise
            out.status = "unknown"
            out.error = exc
            self.nonce += 1  # NOTE: it may have arrived: never reuse its nonce in this run
            return out
        except DtnsessError as exc:  # the node answered: it did not take it
            out.status = "failed"
            out.error = exc
            out.tx_hash = None
            out.nonce = None
            return out
        out.status = "sent"
        self.nonce += 1
        return out

    def send_all(self, preps: Sequence[Prepared]) -> list:
        """Sign every prepared call with consecutive nonces, record them all in the journal,
        and send them in ONE JSON-RPC batch (one round trip, never retried). Each reply is read
        as ``broadcast`` reads a single one: a lost reply is looked up by hash (its own bytes
        sent again if the node lacks it), a refusal marks it ``failed``. A transaction sent
        behind a refused one waits for a nonce that never comes: it is ``unknown`` (its hash and
        nonce named; the journal entry stays open), never collected."""
        ctx = self.ctx
        assert self.nonce is not None, "begin() first"
        if getattr(ctx.account, "unlocked", False):  # the node signs: one send at a time
            outs = []
            for p in preps:
                outs.append(self.send(p))
                if outs[-1].status != "sent":
                    break
            return outs + [Outcome(call=p.call) for p in preps[len(outs):]]
        outs, raws = [], []
        for i, p in enumerate(preps):
            nonce = self.nonce + i
            tx = dict(p.base_tx, nonce=nonce, gas=p.gas_limit, chainId=ctx.chain_id, **self.fees)
            if "maxFeePerGas" in tx:
                tx["type"] = 2
            signed = ctx.account.sign_transaction(tx)
            outs.append(Outcome(call=p.call, nonce=nonce, gas_estimate=p.gas_estimate,
                                gas_limit=p.gas_limit, tx_hash="0x" + bytes(signed.hash).hex()))
            raws.append("0x" + bytes(signed.raw_transaction).hex())
        for o, raw in zip(outs, raws):
            _record(ctx, o.tx_hash, o.nonce, raw, o.call.description, o.call.step)
        self.nonce += len(preps)  # NOTE: each may have arrived: never reuse these nonces here
        sent = len(raws)  # how many may have reached the node (one batch: all of them)
        try:
            try:
                # NOTE: the plain method: sync sends in one batch would each hold the reply
                # until mined; the receipts are polled together after
                resps: list = ctx.rpc.batch([("eth_sendRawTransaction", [r]) for r in raws])
                lost: Optional[DtnsessError] = None
            except RpcTransportError as exc:  # no answer: did they arrive? (asked one by one)
                resps, lost = [None] * len(raws), rpc_error(exc, ctx.rpc_url)
            errs = [r.get("error") if r else None for r in resps]
            if len(raws) > 1 and _batch_refused(errs):
                # NOTE: a node that refuses batches answers the whole batch with one error (it
                # took none of them): send them one by one (each its own bytes: never twice)
                resps = []
                for sent, raw in enumerate(raws, 1):
                    try:
                        resps.append(raw_request(ctx, "eth_sendRawTransaction", [raw]))
                    except RpcError as exc:
                        resps.append(None)
                        lost = exc
            gap: Optional[Outcome] = None  # the first one the node refused
            for o, raw, resp in zip(outs, raws, resps):
                try:
                    if resp is None:
                        _ensure_known(ctx, raw, o.tx_hash, o.nonce, o.call.description, lost)
                        ctx.ui.info(f"{o.call.description}: the reply to the send was lost "
                                    f"({getattr(lost, 'reason', lost.message)}); the node has "
                                    f"tx {o.tx_hash}")
                    elif "error" in resp:
                        _refused(ctx, resp, raw, o.tx_hash, o.nonce, o.call.description)
                    o.status = "sent"
                except TxPendingError as exc:
                    if exc.exit_code != ExitCode.TIMEOUT:
                        raise
                    o.status, o.error = "unknown", exc
                except DtnsessError as exc:  # the node answered: it did not take this one
                    o.status, o.error = "failed", exc
                if gap is None and o.status == "failed":
                    gap = o
                elif gap is not None and o.status == "sent":
                    o.status = "unknown"
                    o.error = TxPendingError(
                        o.call.description, o.tx_hash, o.nonce,
                        f"it waits in the node for nonce {gap.nonce}, which was refused")
        except KeyboardInterrupt:
            raise _interrupted_sending(ctx, outs, sent) from None
        return outs

    def resolve_unknown(self, outs: Sequence[Outcome]) -> None:
        """Ask the node once whether each ``unknown`` transaction arrived (then it is ``sent``)."""
        pend = [o for o in outs if o.status == "unknown" and o.tx_hash]
        if not pend:
            return
        try:
            resps = rpc_batch(self.ctx, [("eth_getTransactionByHash", [o.tx_hash]) for o in pend],
                              "transaction lookup")
        except DtnsessError:
            return
        for o, r in zip(pend, resps):
            if "error" not in r and r.get("result"):
                o.status = "sent"
            elif "error" not in r:
                o.status = "not_sent"
                o.error = o.error or RpcError(self.ctx.rpc_url, "the transaction did not arrive")
                journal_resolve(self.ctx, o.tx_hash, "dropped", note="not in the node")

    def collect(self, outs: Sequence[Outcome], on_done: Optional[Callable[[Outcome], None]] = None,
                description: str = "transactions") -> None:
        """Wait (with the receipt deadline) for the receipts of every ``sent`` outcome; each
        becomes ``mined`` (result filled) or ``failed`` (reverted, error decoded by a replay).
        Ctrl-C at any point of the wait: TxPendingError naming every transaction sent, those
        already mined and those still open."""
        try:
            self._collect(outs, on_done)
        except KeyboardInterrupt:
            waiting = [o for o in outs if o.status in ("sent", "unknown") and o.tx_hash]
            done = [o for o in outs if o.status in ("mined", "failed") and o.result]
            if not waiting:
                raise
            parts = [f"{o.call.description}: {o.status} in tx {o.tx_hash} (block "
                     f"{o.result.block_number})" for o in done]
            if len(waiting) > 1:
                parts.append("also still open: " + ", ".join(
                    f"{o.tx_hash} (nonce {o.nonce})" for o in waiting[1:]))
            raise TxPendingError(
                description, waiting[0].tx_hash, waiting[0].nonce,
                "interrupted while waiting for the receipt"
                + (f" ({'; '.join(parts)})" if parts else ""), interrupted=True) from None

    def _collect(self, outs: Sequence[Outcome],
                 on_done: Optional[Callable[[Outcome], None]]) -> None:
        ctx = self.ctx
        waiting = [o for o in outs if o.status == "sent"]
        deadline = time.monotonic() + ctx.receipt_timeout
        delay = RECEIPT_POLL_FIRST
        last_exc: Optional[DtnsessError] = None
        if waiting:
            sleep(RECEIPT_FIRST_WAIT)
        while waiting:
            try:
                resps = rpc_batch(ctx, [("eth_getTransactionReceipt", [o.tx_hash])
                                        for o in waiting], "receipts")
                last_exc = None
            except DtnsessError as exc:  # a flaky node while waiting: keep waiting, never resend
                resps, last_exc = [{} for _ in waiting], exc
            still = []
            for o, r in zip(waiting, resps):
                rec = r.get("result") if isinstance(r, dict) else None
                if not rec or rec.get("blockNumber") is None:
                    still.append(o)
                    continue
                self._finish(o, format_receipt(rec))
                if on_done:
                    on_done(o)
            waiting = still
            if not waiting:
                break
            if time.monotonic() >= deadline:
                for o in waiting:
                    o.status = "unknown"
                    o.error = TxPendingError(
                        o.call.description, o.tx_hash, o.nonce,
                        f"the node failed while waiting for the receipt ({last_exc.reason})"
                        if isinstance(last_exc, RpcError) else
                        f"not mined after {ctx.receipt_timeout:g}s")
                return
            sleep(delay)
            delay = min(delay * 2, RECEIPT_POLL_MAX)

    def _finish(self, o: Outcome, receipt: Any) -> None:
        ctx = self.ctx
        o.receipt = receipt
        base_tx = _base_tx_of(ctx, o.call)
        res = TxResult(description=o.call.description, dry_run=False, sender=ctx.account.address,
                       to=base_tx.get("to"), value=o.call.value, gas_estimate=o.gas_estimate,
                       gas_limit=o.gas_limit,
                       max_fee_per_gas=self.max_fee, tx_hash=o.tx_hash,
                       block_number=receipt["blockNumber"], gas_used=receipt["gasUsed"],
                       effective_gas_price=receipt.get("effectiveGasPrice"),
                       contract_address=receipt.get("contractAddress"),
                       l1_fee=receipt_l1_fee(receipt))
        o.result = res
        if receipt["status"] != 1:
            journal_resolve(ctx, o.tx_hash, "failed", receipt["blockNumber"])
            o.status = "failed"
            o.error = _failed_receipt(ctx, base_tx, receipt, o.gas_limit, o.call.description,
                                      o.tx_hash)
            return
        journal_resolve(ctx, o.tx_hash, "mined", receipt["blockNumber"])
        res.events = decode_logs(ctx, receipt["logs"])
        o.status = "mined"


def _interrupted_sending(ctx: TxContext, outs: Sequence[Outcome], sent: int) -> TxPendingError:
    """Ctrl-C while a batch's transactions were being sent: the first ``sent`` may have reached
    the node, every one of them named (each may be mined); those never broadcast are dropped
    from the journal (Ctrl-C means: send nothing more, also not on the next run)."""
    for o in outs[sent:]:
        journal_resolve(ctx, o.tx_hash, "dropped", note="interrupted before its send")
    first, rest = outs[0], outs[1:sent]
    why = "interrupted while sending"
    if rest:
        why += " (also sent: " + ", ".join(f"{o.call.description}: tx {o.tx_hash} (nonce "
                                           f"{o.nonce})" for o in rest) + ")"
    if outs[sent:]:
        why += f"; {len(outs) - sent} more not sent"
    return TxPendingError(first.call.description, first.tx_hash, first.nonce, why,
                          interrupted=True)


def _base_tx_of(ctx: TxContext, call: Call) -> dict:
    to, data, _ = _call_parts(call.fn_call)
    base = {"from": ctx.account.address, "data": data, "value": call.value}
    if to:
        base["to"] = to
    return base


def send_many(ctx: TxContext, calls: Sequence[Call], *, headline: str, dry_run: bool = False,
              confirm: bool = True, token_cost: Optional[str] = None,
              on_done: Optional[Callable[[Outcome], None]] = None) -> list:
    """Send independent calls as one pipelined batch; one Outcome per call, in order.

    Simulate and estimate all (one round trip; a revert raises it and nothing is sent), check
    ETH for all, confirm once with the total cost, sign and send with consecutive nonces
    without waiting, stop sending at the first error, then collect every receipt. Raises
    nothing after the first send: the outcomes say what was sent, what failed and what not.
    """
    preps = prepare_many(ctx, calls)
    for p in preps:
        if p.error is not None:
            raise p.error
    pipe = Pipeline(ctx)
    pipe.begin()
    limit_total = sum(p.gas_limit for p in preps)
    value_total = sum(p.call.value for p in preps)
    l1_total = sum(p.l1_fee for p in preps)
    pipe.check_funds(limit_total, value_total, len(preps), l1_total)
    outs = [Outcome(call=p.call) for p in preps]
    if dry_run:
        for o, p in zip(outs, preps):
            o.status = "simulated"
            o.result = TxResult(description=p.call.description, dry_run=True,
                                sender=ctx.account.address, to=p.base_tx.get("to"),
                                value=p.call.value, gas_estimate=p.gas_estimate,
                                gas_limit=p.gas_limit, max_fee_per_gas=pipe.max_fee,
                                return_value=p.return_value, l1_fee=p.l1_fee)
        return outs
    if confirm:
        pipe.confirm(headline, sum(p.gas_estimate for p in preps), limit_total, value_total,
                     token_cost, l1_total)
    for i, p in enumerate(preps):
        outs[i] = pipe.send(p)
        if outs[i].status != "sent":
            break
    pipe.resolve_unknown(outs)
    pipe.collect(outs, on_done)
    return outs


def batch_error(outs: Sequence[Outcome]) -> Optional[DtnsessError]:
    """The error of the first outcome that was not mined, naming every other signed one that
    was not mined either (hash, nonce, status): each may have been paid for. None: all mined."""
    bad = [o for o in outs if o.status != "mined"]
    if not bad:
        return None
    err = bad[0].error or DtnsessError(f"{bad[0].call.description}: {bad[0].status}")
    others = [f"{o.call.description}: {o.status}, tx {o.tx_hash} (nonce {o.nonce})"
              for o in bad[1:] if o.tx_hash]
    if others:
        err.message = f"{err.message}; also {'; '.join(others)}"
    return err


def _batch_refused(errs: Sequence[Any]) -> bool:
    """Is this the one error of a node that does not take JSON-RPC batches (in every entry)?
    (Not the same refusal of each transaction, e.g. "replacement transaction underpriced".)"""
    e = errs[0] if errs else None
    if not isinstance(e, dict) or any(x != e for x in errs):
        return False
    return e.get("code") == -32600 or "batch" in str(e.get("message", "")).lower()


def send_together(ctx: TxContext, calls: Sequence[Call], *, headline: str, confirm: bool = True,
                  token_cost: Optional[str] = None, extra: Sequence[tuple] = (),
                  accept: Optional[Callable[[list], bool]] = None) -> Optional[list]:
    """Send calls that depend on each other in order (an approval, then what spends it) back
    to back: three round trips instead of three per call.

    1. one batch: every call's simulation and estimate (each with its ``Call.overrides``: the
       state the earlier calls will leave), fees, ETH balance, nonce, and ``extra`` reads;
       ``accept`` gets the ``extra`` replies first: False -> None is returned, nothing was sent
       (the caller sends one by one); a revert raises, nothing is sent.
    2. ETH for all checked, one confirmation, then all signed (consecutive nonces), journaled,
       and sent in one batch (``Pipeline.send_all``).
    3. the receipts of all, polled in one batch per poll.

    Returns one Outcome per call (``mined``, ``failed``, ``unknown``), as ``send_many``.
    """
    preps, reqs = _prep_requests(ctx, calls)
    facts_reqs, chain = _fact_requests(ctx.account.address), chain_requests(ctx)
    resps = rpc_batch(ctx, reqs + facts_reqs + chain + list(extra), headline)
    n, m, c = len(reqs), len(facts_reqs), len(chain)
    if accept is not None and not accept(resps[n + m + c:]):
        return None
    if chain:
        take_chain(ctx, resps[n + m:n + m + c])
    _prep_take(ctx, preps, resps[:n])
    for p in preps:
        if p.error is not None:
            raise p.error
    pipe = Pipeline(ctx)
    pipe.begin(_facts_from(ctx, resps[n:n + m]))
    limit_total = sum(p.gas_limit for p in preps)
    value_total = sum(p.call.value for p in preps)
    l1_total = sum(p.l1_fee for p in preps)
    pipe.check_funds(limit_total, value_total, len(preps), l1_total)
    if confirm:
        pipe.confirm(headline, sum(p.gas_estimate for p in preps), limit_total, value_total,
                     token_cost, l1_total)
    outs = pipe.send_all(preps)
    pipe.collect(outs, description=headline)
    for o, p in zip(outs, preps):
        if o.result is not None:
            o.result.return_value = p.return_value
    return outs
