"""Broadcasting: the journal first, then the send; a lost reply is looked up by hash and only
the same signed bytes are ever sent again; then the receipt, waited for with a deadline."""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

from ..errors import DtnsessError, RpcError, TxPendingError
from .clock import sleep
from .context import (CHAIN_REQUESTS, TxContext, _node_message, raw_request, response_error,
                      rpc_batch, rpc_error, take_chain)
from .contract import format_receipt
from .errors import RpcResponseError, RpcTransportError


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
                  step: Optional[str] = None) -> str:
    """THE last step of every send: sign ``tx`` (the full transaction: nonce, gas, fees,
    chainId) and ``broadcast`` it; with a node-held account, ``send_unlocked``. Returns its
    hash once the node has it."""
    if getattr(ctx.account, "unlocked", False):
        return send_unlocked(ctx, tx, description, step=step)
    signed = ctx.account.sign_transaction(tx)
    tx_hash = "0x" + bytes(signed.hash).hex()
    broadcast(ctx, bytes(signed.raw_transaction), tx_hash, tx["nonce"], description, step=step)
    return tx_hash


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
              variant: Optional[str] = None) -> None:
    """Record the signed transaction in the journal, then send it. Returns when the node has it.

    The node refused it (it answered with an error): that error is raised (a decoded revert, or
    RpcError), the journal says ``dropped``. The reply was lost (dropped connection, HTTP 5xx,
    timeout, a cut or garbled body): the transaction is looked up by hash, and when the node
    does not know it, its own signed bytes are sent again (safe: same nonce, same hash). When
    that cannot tell either, TxPendingError (exit 10) names the hash and the nonce; Ctrl-C
    gives the same with exit 130. In both cases the journal entry stays open.
    """
    raw_hex = "0x" + raw.hex()
    _record(ctx, tx_hash, nonce, raw_hex, description, step, variant_of, variant)
    try:
        try:
            resp = raw_request(ctx, "eth_sendRawTransaction", [raw_hex])
        except RpcError as lost:  # no answer: did it arrive?
            _ensure_known(ctx, raw_hex, tx_hash, nonce, description, lost)
            ctx.ui.info(f"{description}: the reply to the send was lost "
                        f"({getattr(lost, 'reason', lost.message)}); the node has tx {tx_hash}")
            return
        if isinstance(resp, dict) and "error" in resp:
            _refused(ctx, resp, raw_hex, tx_hash, nonce, description)
    except KeyboardInterrupt:
        raise TxPendingError(description, tx_hash, nonce, "interrupted while sending",
                             interrupted=True) from None


def _refused(ctx: TxContext, resp: dict, raw_hex: str, tx_hash: str, nonce: int,
             description: str) -> None:
    """The node answered the send with an error: fine when it already has these bytes; else the
    transaction is not in the node (journal: dropped) and the error is raised."""
    msg = _node_message(resp).lower()
    if any(k in msg for k in _KNOWN):
        return
    if "nonce too low" in msg or "nonce has already been used" in msg:
        # our own bytes may have been mined meanwhile (a lost reply, then a re-broadcast)
        try:
            found = raw_request(ctx, "eth_getTransactionByHash", [tx_hash])
            if isinstance(found, dict) and found.get("result"):
                return
        except DtnsessError:
            pass
        journal_resolve(ctx, tx_hash, "replaced", note=_node_message(resp))
        raise RpcError(ctx.rpc_url, f"nonce {nonce} of {ctx.account.address} is already used "
                       f"by another transaction; {description} was not sent",
                       hint="another wallet or program sends from this key: wait for it, then "
                            "run the command again", default_hint=False)
    journal_resolve(ctx, tx_hash, "dropped", note=_node_message(resp))
    raise response_error(ctx, resp, description)


def _ensure_known(ctx: TxContext, raw_hex: str, tx_hash: str, nonce: int, description: str,
                  cause: DtnsessError) -> None:
    """After a lost reply: return once the node has the transaction (found by hash, or its own
    bytes re-broadcast); TxPendingError when the node cannot tell."""
    for pause in LOOKUP_BACKOFF:
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
            _refused(ctx, again, raw_hex, tx_hash, nonce, description)
            return
        except RpcError as exc:  # the re-broadcast's reply was lost as well
            cause = exc
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
                     timeout: Optional[float] = None, others: Sequence[str] = ()) -> Any:
    """The receipt, polled until ``timeout`` (default: the context's receipt timeout). Node
    trouble while waiting is waited out until the deadline; then, or on Ctrl-C, TxPendingError
    names the hash and the nonce (the journal entry stays open). ``others``: the rest of a
    replacement family (same nonce): the first receipt of any of them is returned (its
    ``transactionHash`` says whose), all polled in one request."""
    timeout = ctx.receipt_timeout if timeout is None else timeout
    deadline = time.monotonic() + timeout
    delay = RECEIPT_POLL_FIRST
    trouble: Optional[DtnsessError] = None
    hashes = [tx_hash, *others]
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
                        why += f" (nor {', '.join(others)}, at the same nonce)"
                    raise TxPendingError(description, tx_hash, nonce, why)
                sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, RECEIPT_POLL_MAX)
    except KeyboardInterrupt:
        raise TxPendingError(description, tx_hash, nonce,
                             "interrupted while waiting for the receipt",
                             interrupted=True) from None
