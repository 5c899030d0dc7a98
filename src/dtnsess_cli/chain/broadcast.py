"""Broadcasting: the journal first, then the send; a lost reply is looked up by hash and only
the same signed bytes are ever sent again; then the receipt, waited for with a deadline. A
single write's send is eth_sendRawTransactionSync (EIP-7966) where the node has it: its reply
is the receipt, and nothing is polled."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from ..errors import DtnsessError, RpcError, TxPendingError
from .clock import sleep
from .context import (CHAIN_REQUESTS, TxContext, _node_message, raw_request, response_error,
                      rpc_batch, rpc_error, take_chain)
from .contract import format_receipt
from .errors import RpcResponseError, RpcTransportError

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator, Optional, Sequence


def warn_journal_gap(ctx: "TxContext", nonce: int) -> None:
    """Before signing at ``nonce``: when the journal knows this key on this chain but not its
    last transactions, say so. NOTE: the next write resolves what the journal holds open; a
    journal replaced (restored, copied) no longer holds an entry whose outcome was lost, and
    only this gap tells that something was sent that it does not know."""
    if ctx.journal is None:
        return
    last = ctx.journal.last_nonce(ctx.chain_id, ctx.account.address, ctx.genesis or None)
    if last is not None and nonce > last + 1:
        n = nonce - last - 1
        ctx.ui.info(f"warning: {n} transaction{'s' if n != 1 else ''} from "
                    f"{ctx.account.address} (nonces {last + 1}..{nonce - 1}) are not in the "
                    f"journal: another wallet sent them, or the journal was replaced; if a "
                    f"dtnsess command's outcome was not known, check it (`dtnsess requests`, "
                    f"`dtnsess tx HASH`) before repeating it")


def _record(ctx: "TxContext", tx_hash: str, nonce: int, raw_hex: str, description: str,
            step: Optional[str], variant_of: Optional[Any] = None,
            variant: Optional[str] = None) -> None:
    """Journal a signed transaction before its send (an error here: nothing was sent).
    ``variant_of``: the journal entry this one replaces (``variant``: "speedup", "cancel"): it
    joins that entry's family, as the same intent."""
    if ctx.journal is None:
        return
    from .journal import INTENT

    if ctx.genesis is None:  # not read with the send's batch (a caller of broadcast alone)
        take_chain(ctx, rpc_batch(ctx, CHAIN_REQUESTS, "chain lookup"))
    intent = dict(INTENT.get() or {}) if variant_of is None else dict(variant_of.intent,
                                                                      replace=variant)
    if step:
        intent["step"] = step
    ctx.journal.record(ctx.chain_id, ctx.account.address, tx_hash, nonce, raw_hex, description,
                       intent, genesis=ctx.genesis or None, anchor=ctx.anchor,
                       family=variant_of.root if variant_of is not None else None)


# NOTE: a lost reply is looked up by hash this many times (with a short backoff) before the
# outcome is called unknown; each attempt costs at most one RPC timeout.
LOOKUP_BACKOFF = (0.2, 0.5, 1.0)
_KNOWN = ("already known", "already imported", "known transaction", "alreadyknown",
          "already exists", "already in mempool")


def journal_resolve(ctx: TxContext, tx_hash: str, status: str, block: Optional[int] = None,
                    note: Optional[str] = None) -> None:
    """Note a sent transaction's outcome in the journal. NOTE: this runs after the send: a
    journal that cannot be written now (locked, disk full) must not hide what the chain did,
    so it is a warning; the entry stays open and the next write resolves it from the chain."""
    if ctx.journal is None:
        return
    try:
        ctx.journal.resolve(tx_hash, status, block, note)
    except DtnsessError as exc:
        ctx.ui.info(f"warning: tx {tx_hash} is {status}"
                    + (f" (block {block})" if block is not None else "")
                    + f", but the journal could not note it ({exc.message}); the next "
                      f"command from this key looks it up on the chain")


class NodeAccount:
    """A node-held account (``--unlocked``): the node signs what ``eth_sendTransaction`` gives
    it; there is no key here, so nothing to ``sign_transaction`` with."""

    unlocked = True

    def __init__(self, address: str) -> None:
        from .abi import to_checksum_address

        self.address = to_checksum_address(address)

    def __repr__(self) -> str:
        return f"NodeAccount({self.address})"


def sign_and_send(ctx: TxContext, tx: dict, description: str, *,
                  step: Optional[str] = None, sync: bool = False) -> tuple:
    """THE last step of every send: sign ``tx`` (the full transaction: nonce, gas, fees,
    chainId) and ``broadcast`` it; with a node-held account, ``send_unlocked`` (the plain
    method: the node signs, so there are no bytes to send again). Returns ``(hash, receipt)``
    once the node has it: the receipt when ``sync`` and the node gave it with the send, else
    None (to be polled)."""
    if getattr(ctx.account, "unlocked", False):
        return send_unlocked(ctx, tx, description, step=step), None
    signed = ctx.account.sign_transaction(tx)
    tx_hash = "0x" + bytes(signed.hash).hex()
    receipt = broadcast(ctx, bytes(signed.raw_transaction), tx_hash, tx["nonce"], description,
                        step=step, sync=sync)
    return tx_hash, receipt


def send_unlocked(ctx: TxContext, tx: dict, description: str, *,
                  step: Optional[str] = None) -> str:
    """``eth_sendTransaction`` from a node-held account: the node signs, and its reply is the
    hash, journaled then (by hash, like every send; with no signed bytes, so it is never sent
    again). A lost reply cannot be looked up: SendUnknownError names the sender and nonce."""
    from ..errors import SendUnknownError

    req = {k: (hex(v) if isinstance(v, int) else v) for k, v in tx.items()
           if k in ("nonce", "gas", "value", "data", "to", "chainId", "maxFeePerGas",
                    "maxPriorityFeePerGas", "gasPrice", "type") and v is not None}
    req["from"] = ctx.account.address
    try:
        resp = raw_request(ctx, "eth_sendTransaction", [req])
    except RpcError as lost:
        raise SendUnknownError(description, ctx.account.address, tx["nonce"],
                               getattr(lost, "reason", lost.message)) from None
    except KeyboardInterrupt:
        raise SendUnknownError(description, ctx.account.address, tx["nonce"],
                               "interrupted while sending", interrupted=True) from None
    if "error" in resp or not isinstance(resp.get("result"), str):
        raise response_error(ctx, resp, description)
    tx_hash = resp["result"].lower()
    _record(ctx, tx_hash, tx["nonce"], "", description, step)
    return tx_hash


def broadcast(ctx: TxContext, raw: bytes, tx_hash: str, nonce: int, description: str, *,
              step: Optional[str] = None, variant_of: Optional[Any] = None,
              variant: Optional[str] = None, sync: bool = False) -> Optional[dict]:
    """Record the signed transaction in the journal, then send it. Returns when the node has it:
    with ``sync``, its receipt when the node gave it with the send (``_send_sync``), else None.

    The node refused it (it answered with an error): that error is raised (a decoded revert, or
    RpcError), the journal says ``dropped``. The reply was lost (dropped connection, HTTP 5xx,
    timeout, a cut or garbled body): the transaction is looked up by hash, and when the node
    does not know it, its own signed bytes are sent again (safe: same nonce, same hash). When
    that cannot tell either, TxPendingError (exit 10) names the hash and the nonce; Ctrl-C
    gives the same with exit 130. In both cases the journal entry stays open.
    """
    raw_hex = "0x" + raw.hex()
    _record(ctx, tx_hash, nonce, raw_hex, description, step, variant_of, variant)
    why = "interrupted while sending"
    try:
        if sync and sync_send(ctx):
            # NOTE: this reply is also the wait for the block: the node may hold it already
            why = "interrupted while sending it and waiting for its block"
            receipt = _send_sync(ctx, raw_hex, tx_hash, nonce, description)
            if receipt is not _LACKING:
                return receipt
        try:
            resp = raw_request(ctx, "eth_sendRawTransaction", [raw_hex])
        except RpcError as lost:  # no answer: did it arrive?
            _lost(ctx, raw_hex, tx_hash, nonce, description, lost)
            return None
        if isinstance(resp, dict) and "error" in resp:
            _refused(ctx, resp, raw_hex, tx_hash, nonce, description)
        return None
    except KeyboardInterrupt:
        raise TxPendingError(description, tx_hash, nonce, why, interrupted=True) from None


def _lost(ctx: TxContext, raw_hex: str, tx_hash: str, nonce: int, description: str,
          lost: RpcError) -> None:
    """The send's reply was lost: return once the node has the transaction (``_ensure_known``)."""
    _ensure_known(ctx, raw_hex, tx_hash, nonce, description, lost)
    ctx.ui.info(f"{description}: the reply to the send was lost "
                f"({getattr(lost, 'reason', lost.message)}); the node has tx {tx_hash}")


SYNC_SEND = "eth_sendRawTransactionSync"  # EIP-7966: the send, answered with the receipt
# its error codes: the node holds the transaction, but it was not mined within the node's wait
# (4), or the node cannot run it yet, a nonce gap or funds (5)
SYNC_TIMEOUT, SYNC_NOT_READY = 4, 5
_NO_METHOD = ("not found", "does not exist", "not supported", "unsupported", "not available")
_LACKING = object()  # _send_sync's "the node lacks the method: it did nothing"


def sync_send(ctx: TxContext) -> bool:
    """May the send try SYNC_SEND? Not where this RPC URL is known to lack it, for this chain
    (noted in the state dir's chains.json, beside the journal: ``journal.lacking``)."""
    if ctx.sync_send is None:
        ctx.sync_send = True
        if ctx.journal is not None and ctx.rpc_url:
            from .journal import lacking

            chain = (ctx.chain_id, ctx.genesis or "")
            ctx.sync_send = SYNC_SEND not in lacking(ctx.rpc_url, chain, os.path.dirname(ctx.journal.path))
    return ctx.sync_send


def _send_sync(ctx: TxContext, raw_hex: str, tx_hash: str, nonce: int, description: str) -> Any:
    """Send with SYNC_SEND, whose reply waits for the receipt: the receipt; None when the node
    has the transaction but no receipt yet (its wait ended first, or the reply was lost and
    the hash then found: poll it); ``_LACKING`` when the node has no such method (it did
    nothing: this is remembered for the URL). A refusal is raised as with the plain send.
    NOTE: only the signed bytes are sent (no timeout parameter: Anvil refuses one); the
    request's own timeout is the receipt timeout, which bounds the node's wait."""
    start = time.monotonic()
    try:
        # NOTE: the same status as the receipt poll's: on a chain with real blocks this reply
        # is the wait for the block (on a terminal the line shows the hash meanwhile)
        with _request_timeout(ctx.rpc, ctx.receipt_timeout), \
                ctx.ui.status(f"{description}: waiting for {tx_hash[:10]}… to be mined"):
            resp = raw_request(ctx, SYNC_SEND, [raw_hex])
    except RpcError as lost:  # no answer (or none in time): did it arrive?
        if time.monotonic() - start < ctx.receipt_timeout:
            _lost(ctx, raw_hex, tx_hash, nonce, description, lost)
        else:  # our wait for the block ended, not a lost reply: nothing to say but the outcome
            _ensure_known(ctx, raw_hex, tx_hash, nonce, description, lost)
        return None
    err = resp.get("error")
    if err is None:
        got = resp.get("result")
        receipt = format_receipt(got) if isinstance(got, dict) else None
        if receipt is not None and receipt.get("blockNumber") is not None \
                and str(receipt.get("transactionHash", "")).lower() == tx_hash:
            return receipt
        return None  # an answer without our mined receipt: the node has it; poll
    code = err.get("code") if isinstance(err, dict) else None
    msg = _node_message(resp).lower()
    if code == -32601 or ("method" in msg and any(k in msg for k in _NO_METHOD)):
        _note_lacking(ctx)
        return _LACKING
    if code == SYNC_TIMEOUT or "timeout" in msg or "timed out" in msg:
        return None  # accepted, not mined within the node's own wait
    if code == SYNC_NOT_READY:  # in the node's pool, not runnable: never call it dropped
        raise TxPendingError(description, tx_hash, nonce,
                             f"the node holds it but cannot run it yet "
                             f"({_node_message(resp)[:120]})")
    _refused(ctx, resp, raw_hex, tx_hash, nonce, description)
    return None  # the node already had these bytes


def _note_lacking(ctx: TxContext) -> None:
    """This node has no SYNC_SEND: not asked again by this context, nor (state kept) by the
    next command using this RPC URL on this chain."""
    ctx.sync_send = False
    if ctx.journal is not None and ctx.rpc_url:
        from .journal import remember_chain

        remember_chain(ctx.rpc_url, (ctx.chain_id, ctx.genesis or ""), os.path.dirname(ctx.journal.path),
                       lacks=SYNC_SEND)


@contextmanager
def _request_timeout(rpc: Any, seconds: float) -> Iterator[None]:
    """The transport's per-request timeout set to ``seconds`` for the requests made inside
    (a transport without one, a web3 provider, keeps its own)."""
    old = getattr(rpc, "timeout", None)
    if old is None:
        yield
        return
    rpc.timeout = float(seconds)
    try:
        yield
    finally:
        rpc.timeout = old


def _refused(ctx: TxContext, resp: dict, raw_hex: str, tx_hash: str, nonce: int,
             description: str, again: bool = False) -> None:
    """The node answered the send with an error: fine when it already has these bytes; else the
    transaction is not in the node (journal: dropped) and the error is raised. ``again``: the
    node had taken these bytes before and lost them (this was the re-send)."""
    msg = _node_message(resp).lower()
    if any(k in msg for k in _KNOWN):
        return
    if _nonce_used(msg):
        # our own bytes may have been mined meanwhile (a lost reply, then a re-broadcast)
        try:
            found = raw_request(ctx, "eth_getTransactionByHash", [tx_hash])
            if isinstance(found, dict) and found.get("result"):
                return
        except DtnsessError:
            pass
        # NOTE: after a lost reply (``again``) these bytes went out before: the transaction that
        # took the nonce may be this one, on a node whose lookups lag. Called replaced, a rerun
        # would send the intent again; left open, the next command looks it up again first
        if not again:
            journal_resolve(ctx, tx_hash, "replaced", note=_node_message(resp))
        raise RpcError(ctx.rpc_url, f"nonce {nonce} of {ctx.account.address} is already used "
                       f"by another transaction{' as far as the node shows' if again else ''}; "
                       f"{description} {'is not found' if again else 'was not'} mined (tx "
                       f"{tx_hash})",
                       hint="another wallet or program sends from this key: wait for it, then "
                            "run the command again"
                            + (f" (it looks tx {tx_hash} up again first)" if again else ""),
                       default_hint=False)
    journal_resolve(ctx, tx_hash, "dropped", note=_node_message(resp))
    exc = response_error(ctx, resp, description)
    if again and type(exc) is RpcError:
        # NOTE: e.g. a fee spike: the base fee rose above its max fee, and the node dropped it
        raise RpcError(ctx.rpc_url, f"{description}: it dropped tx {tx_hash} (nonce {nonce}) "
                       f"and refuses it now ({_node_message(resp)}): nothing of it was done",
                       hint="run the command again: its fees are read anew",
                       default_hint=False)
    raise exc


def _nonce_used(msg: str) -> bool:
    """Whether the node's message says the transaction's nonce is taken."""
    msg = msg.lower()
    return "nonce too low" in msg or "nonce has already been used" in msg


def _ensure_known(ctx: TxContext, raw_hex: str, tx_hash: str, nonce: int, description: str,
                  cause: DtnsessError) -> None:
    """After a lost reply: return once the node has the transaction (found by hash, or its own
    bytes re-broadcast); TxPendingError when the node cannot tell."""
    last = len(LOOKUP_BACKOFF) - 1
    for i, pause in enumerate(LOOKUP_BACKOFF):
        sleep(pause)
        try:
            try:
                found = raw_request(ctx, "eth_getTransactionByHash", [tx_hash])
            except DtnsessError as exc:  # the lookup failed too (after the read retries)
                cause = exc
                continue
            if "error" in found:
                cause = response_error(ctx, found, "transaction lookup")
                continue
            if found.get("result"):
                return
            # the node does not know it: the same signed bytes again (one nonce, one hash)
            again = raw_request(ctx, "eth_sendRawTransaction", [raw_hex])
            if "error" not in again:
                return
        except RpcError as exc:  # the re-broadcast's reply was lost as well
            cause = exc
            continue
        if i < last and _nonce_used(_node_message(again)):
            # NOTE: mined meanwhile, maybe, and the lookup (a node lagging behind a load
            # balancer) did not show it yet: looked up again before the nonce is called taken
            continue
        # NOTE: the node's answer, final (its nonce taken by another transaction, a fee under
        # the base fee): raised as it is, never taken for a lost reply
        _refused(ctx, again, raw_hex, tx_hash, nonce, description, again=True)
        return
    raise TxPendingError(description, tx_hash, nonce,
                         f"the node's reply to the send was lost "
                         f"({getattr(cause, 'reason', cause.message)})")


# NOTE: poll receipts quickly at first (automine and fast chains answer at once), but never
# more than RECEIPT_POLL_MAX apart: a longer backoff overshoots a mined block by up to that much.
RECEIPT_POLL_FIRST, RECEIPT_POLL_MAX = 0.05, 0.5
# NOTE: a node that mines at once (Anvil's automine, measured) has the receipt ~0.2-0.5 ms after
# answering the send, so a poll made at once misses it about every other time and costs a
# round trip plus RECEIPT_POLL_FIRST; this pause before the first poll is cheaper than that (a
# chain with real blocks misses the first poll either way)
RECEIPT_FIRST_WAIT = 0.005


def wait_for_receipt(ctx: TxContext, tx_hash: str, description: str, nonce: int,
                     timeout: Optional[float] = None, others: Sequence[str] = (),
                     since: Optional[float] = None) -> Any:
    """The receipt, polled until ``timeout`` (default: the context's receipt timeout) has passed
    since ``since`` (a time.monotonic() instant, default now: the send's, when the send itself
    waited). Node trouble while waiting is waited out until the deadline; then, or on Ctrl-C,
    TxPendingError names the hash and the nonce (the journal entry stays open). ``others``: the
    rest of a replacement family (same nonce): the first receipt of any of them is returned
    (its ``transactionHash`` says whose), all polled in one request."""
    timeout = ctx.receipt_timeout if timeout is None else timeout
    deadline = (time.monotonic() if since is None else since) + timeout
    delay = RECEIPT_POLL_FIRST
    trouble: Optional[DtnsessError] = None
    hashes = [tx_hash, *others]
    family = ", ".join(others)
    try:
        with ctx.ui.status(f"{description}: waiting for {tx_hash[:10]}… to be mined"):
            sleep(RECEIPT_FIRST_WAIT)
            while True:
                try:
                    if others:
                        replies = ctx.rpc.batch([("eth_getTransactionReceipt", [h])
                                                 for h in hashes])
                        raws = [r.get("result") for r in replies if isinstance(r, dict)]
                    else:
                        raws = [ctx.rpc.call("eth_getTransactionReceipt", [tx_hash])]
                    for raw in raws:
                        receipt = format_receipt(raw)
                        if receipt is not None and receipt.get("blockNumber") is not None:
                            return receipt
                    trouble = None
                except (RpcTransportError, RpcResponseError) as exc:  # a flaky node: keep
                    trouble = rpc_error(exc, ctx.rpc_url)  # waiting until the deadline
                if time.monotonic() >= deadline:
                    why = (f"the node failed while waiting for the receipt ({trouble.reason})"
                           if isinstance(trouble, RpcError) else
                           f"not mined after {timeout:g}s")
                    if others:
                        why += f" (nor {family}, at the same nonce)"
                    raise TxPendingError(description, tx_hash, nonce, why)
                sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, RECEIPT_POLL_MAX)
    except KeyboardInterrupt:
        raise TxPendingError(description, tx_hash, nonce,
                             "interrupted while waiting for the receipt"
                             + (f" (of it or {family}, at the same nonce)" if others else ""),
                             interrupted=True) from None
