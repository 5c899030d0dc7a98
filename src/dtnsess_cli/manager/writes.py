"""The manager's side of the send path: the key, the sender lock, the journal's open
entries, and ``_send`` (``chain.send.send_and_wait`` with the manager's reverts and reads).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Sequence

from ..errors import (
    DtnsessError,
    InputError,
    LockedError,
    NotRepeatedError,
    RevertError,
    RpcError,
    TxPendingError,
)
from ..units import format_eth
from .base import SENDER_LOCK_WAIT
from .views import TxView


def _anchor_request(e: Any) -> tuple:
    """The node's block at a journal entry's anchor (the genesis again when it has none: the
    reply is then not looked at)."""
    n = e.anchor_block if e.anchor_block is not None else 0
    return ("eth_getBlockByNumber", [hex(n), False])


class Writes:
    """Keys, the sender lock, the journal and the one send (see ``chain.send``)."""

    @property
    def account(self):
        """The signer (``.address``, ``.sign_transaction``): the one given, else the key the
        settings name, loaded on first use."""
        if self._account is None:
            self._account = self._load_signer()
        return self._account

    def _load_signer(self):
        from ..signer import load_account

        return load_account(self.settings)

    @property
    def address(self) -> str:
        from ..chain.abi import to_checksum_address

        # NOTE: checksummed: owners read from the chain are compared with it (a duck-typed
        # signer may give its address in lower case)
        return to_checksum_address(self.account.address)

    def _error_decoder(self):
        if self._errors is None:
            from ..artifacts import all_abis
            from ..chain.abi import ErrorDecoder

            try:
                abis = list(all_abis().values())
            except DtnsessError:
                abis = []
            self._errors = ErrorDecoder(abis)
        return self._errors

    def _read_ctx(self):
        """A context for reads: decodes reverts and looks up fees; needs no key."""
        from ..chain import send as tx
        from .reverts import friendly

        dec = None
        try:
            dec = self.decimals if self._config_raw is not None else None
        except DtnsessError:
            pass
        return tx.TxContext(rpc=self.rpc, account=None, chain_id=self._chain_id or 0,
                            ui=self.ui, errors=self._error_decoder(), token_decimals=dec,
                            token_symbol=self._symbol or "", rpc_url=self.settings.rpc_url,
                            friendly=friendly)

    @property
    def txctx(self):
        if self._txctx is None:
            from ..chain import send as tx
            from .reverts import friendly

            event_abis = self._event_abis()
            self._txctx = tx.TxContext(
                rpc=self.rpc, account=self.account, friendly=friendly, chain_id=self.chain_id, ui=self.ui,
                errors=self._error_decoder(), event_abis=event_abis, yes=self.settings.yes,
                receipt_timeout=self.receipt_timeout,
                token_decimals=self.decimals if self.settings.contract else None,
                token_symbol=self._symbol or "",
                symbol_lookup=(lambda: self.symbol) if self.settings.contract else None,
                rpc_url=self.settings.rpc_url, journal=self._journal,
            )
        return self._txctx

    @contextlib.contextmanager
    def _sender_locked(self) -> Iterator[None]:
        """Hold this key's sender lock (waiting for another process up to SENDER_LOCK_WAIT) and
        open the journal. This client's threads queue on a thread lock first, also without
        state (``state_dir=False``): one nonce sequence per client; a hand-over between them is
        immediate, where waiting on the file lock polls (every 50 ms)."""
        from ..chain.journal import Journal, sender_lock

        addr = self.address
        state = self._state_path()
        with self._threads_lock:
            if state is None:  # no state kept (the API's state_dir=False): no file, no journal
                yield
                return
            with self._file_locked(sender_lock(addr, state), addr):
                if self._journal is None:
                    self._journal = Journal(state / "journal.sqlite3")
                    if self._journal.emptied:
                        self.ui.info(f"warning: the transaction journal {self._journal.path} was "
                                     f"an empty file: transactions of earlier runs whose outcome "
                                     f"was not known are forgotten; check `dtnsess requests` or "
                                     f"`dtnsess tx HASH` before repeating a command")
                if self._txctx is not None:  # made before the journal, maybe by another thread
                    self._txctx.journal = self._journal
                yield

    @contextlib.contextmanager
    def _file_locked(self, lock: Any, addr: str) -> Iterator[None]:
        """Hold the inter-process sender lock, waiting for another process up to
        SENDER_LOCK_WAIT."""
        from filelock import Timeout

        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.ui.info(f"waiting for another dtnsess process sending from {addr}")
            try:
                lock.acquire(timeout=SENDER_LOCK_WAIT)
            except Timeout:
                raise LockedError(lock.lock_file, f"another dtnsess process is still sending "
                                  f"from {addr} after {SENDER_LOCK_WAIT:g}s") from None
        try:
            yield
        finally:
            lock.release()

    def _resolve_open(self) -> None:
        """Resolve this key's open journal entries (an earlier run lost a reply, timed out or
        was interrupted) before anything new is sent; one line each on stderr. A pending one is
        waited for; one the node lost is re-broadcast (its own signed bytes). When the entry
        that is found mined was this very command, it is not repeated (NotRepeatedError)."""
        from ..chain import send as tx
        from ..chain.journal import DROPPED, FAILED, INTENT, MINED, REPLACED

        if self._journal is None or not self._journal.has_open(self.address):  # the usual case
            return
        ctx = self.txctx
        genesis = self._genesis()
        cid = self.chain_id
        for e in self._journal.open_elsewhere(cid, self.address, genesis):
            self._elsewhere(e, f"genesis {genesis}")
        entries = self._journal.open_entries(cid, self.address, genesis)
        if not entries:
            return
        reqs: list = []
        for e in entries:
            reqs += [("eth_getTransactionReceipt", [e.tx_hash]),
                     ("eth_getTransactionByHash", [e.tx_hash]), _anchor_request(e)]
        reqs.append(("eth_getTransactionCount", [self.address, "latest"]))
        resps = tx.rpc_batch(ctx, reqs, "journal lookup")
        mined_nonce = int(resps[-1].get("result") or "0x0", 16)
        argv = (INTENT.get() or {}).get("argv")
        repeat = None
        for i, e in enumerate(entries):
            rec = resps[3 * i].get("result")
            known = resps[3 * i + 1].get("result")
            what = f"earlier {e.label()}"
            if not (rec and rec.get("blockNumber")) and not known \
                    and e.anchored(resps[3 * i + 2].get("result")) is False:
                # NOTE: same id and genesis, but the block it was signed after is not this
                # chain's (a fork, a devnet started in the same second): never sent here
                self._elsewhere(e, f"its block {e.anchor_block} is not this chain's")
                continue
            if not (rec and rec.get("blockNumber")):
                if not known and mined_nonce > e.nonce:
                    self._journal.resolve(e.tx_hash, REPLACED, note="nonce used by another tx")
                    self.ui.info(f"{what}: never mined, its nonce went to another transaction "
                                 f"(nothing of `{e.description}` was done)")
                    continue
                if not known:  # the node lost it: its own signed bytes again
                    again = tx.raw_request(ctx, "eth_sendRawTransaction", [e.raw])
                    msg = tx._node_message(again).lower()
                    if "error" in again and not any(k in msg for k in tx._KNOWN):
                        self._journal.resolve(e.tx_hash, DROPPED, note=msg)
                        self.ui.info(f"{what}: the node refused it ({msg}); nothing of "
                                     f"`{e.description}` was done")
                        continue
                self.ui.info(f"{what}: pending; waiting for it before sending anything new")
                try:
                    rec = tx.wait_for_receipt(ctx, e.tx_hash, e.description, e.nonce)
                except TxPendingError as exc:
                    exc.message = (f"an earlier transaction from this key is still pending: "
                                   f"{e.label()} ({e.description}); nothing new was sent")
                    raise
            else:
                rec = tx.format_receipt(rec)
            block = rec["blockNumber"]
            if rec["status"] == 1:
                self._journal.resolve(e.tx_hash, MINED, block)
                self.ui.info(f"{what}: mined in block {block} ({e.description})")
                if e.final and argv and e.argv == argv:
                    repeat = (e, block)
            else:
                self._journal.resolve(e.tx_hash, FAILED, block)
                self.ui.info(f"{what}: reverted in block {block}; only its gas was spent "
                             f"({e.description} was not done)")
        if repeat is not None:
            raise NotRepeatedError(repeat[0].argv, repeat[0].tx_hash, repeat[1])

    def _elsewhere(self, e: Any, why: str) -> None:
        self.ui.info(f"open {e.label()} belongs to another {e.chain_label()}, not this one "
                     f"({why}): left alone; if that chain is gone: "
                     f"`dtnsess journal forget {e.genesis or '(its genesis)'}`")

    def _genesis(self) -> str:
        """This chain's genesis block hash ("" when the node has none), read once."""
        from ..chain import send as tx

        ctx = self.txctx
        if ctx.genesis is None:
            tx.take_chain(ctx, tx.rpc_batch(ctx, tx.CHAIN_REQUESTS, "chain lookup"))
        return ctx.genesis or ""

    def forget_chain(self, genesis: str, chain_id: Optional[int] = None) -> tuple:
        """Forget the open journal entries of a chain that no longer exists (a reset devnet, a
        stopped fork): they are marked ``forgotten``, never re-broadcast nor resolved. Entries
        the node shows to be of its own chain (their transaction or their anchor block is
        there) are kept: they resolve by themselves. Returns (forgotten, kept)."""
        from ..chain.journal import Journal

        g = (genesis or "").strip().lower()
        try:
            ok = g[:2] == "0x" and len(g) == 66 and bytes.fromhex(g[2:]) is not None
        except ValueError:
            ok = False
        if not ok:
            raise InputError("genesis hash", genesis, "expected 0x followed by 64 hex digits")
        state = self._state_path()
        if state is None:
            return [], []
        j = self._journal or Journal(state / "journal.sqlite3")
        entries = j.open_with_genesis(g, chain_id)
        kept: list = []
        if entries and self.settings.rpc_url:
            from ..chain import send as tx

            ctx = self._read_ctx()
            reqs = [tx.GENESIS_REQUEST]
            for e in entries:
                reqs += [("eth_getTransactionByHash", [e.tx_hash]), _anchor_request(e)]
            try:
                resps = tx.rpc_batch(ctx, reqs, "journal lookup")
            except DtnsessError:  # no node to compare with: the user named the chain
                resps = []
            here = (resps[0].get("result") or {}) if resps else {}
            if str(here.get("hash", "")).lower() == g:  # the node's chain has this genesis
                kept = [e for i, e in enumerate(entries)
                        if resps[1 + 2 * i].get("result")
                        or e.anchored(resps[2 + 2 * i].get("result")) is not False]
        gone = [e for e in entries if e not in kept]
        j.forget(gone)
        return gone, kept

    def _name_done(self, exc: DtnsessError) -> None:
        """Prefix a later step's error with the steps of this write that were mined."""
        done = [t for t in self._done if t.tx_hash and t.tx_hash != getattr(exc, "tx_hash", 0)]
        if not done:
            return
        steps = "; ".join(f"{t.description}: mined in tx {t.tx_hash} (block {t.block_number})"
                          for t in done)
        exc.message = f"{steps}; then {exc.message}"
        exc.done = [t.summary() for t in done]  # type: ignore[attr-defined]

    def _send(self, fn, *, description: str, value: int = 0, token_cost: Optional[str] = None,
              follows: Any = None, step: Optional[str] = None, reads: Sequence[Any] = (),
              check: Optional[Any] = None):
        """``tx.send_and_wait``; ``follows``: the TxResult this run sent just before. The token
        symbol, when still unknown, rides in the transaction's batch (results show amounts), and
        so do ``reads``, whose raw responses ``check`` gets before anything is sent (it may
        raise: then nothing is)."""
        from ..chain import send as tx

        ctx = self.txctx
        sym = self._symbol_requests()

        def take(resps: list) -> None:
            self._take_symbol(self._rows(sym, resps[:len(sym)], "symbol()"))
            ctx.token_symbol = self._symbol or ""
            if check is not None:
                check(list(resps[len(sym):]))

        res = tx.send_and_wait(ctx, fn, value=value, description=description,
                               dry_run=self.settings.dry_run, confirm=True,
                               token_cost=token_cost,
                               follows=follows.next_facts if follows is not None else None,
                               also=self._requests(list(sym) + list(reads)), on_also=take,
                               step=step)
        if not res.dry_run:
            self._done.append(res)
        return res

    def _tx_gas_cap(self) -> int:
        """The most gas one transaction may ask for here: the latest block's gas limit, at most
        2^24 (EIP-7825). Paged writes (cleanup, close --all) keep every step under it."""
        from ..chain.send import TX_GAS_CAP

        block = self._raw("eth_getBlockByNumber", ["latest", False], "latest block")
        return min(TX_GAS_CAP, int(block["gasLimit"], 16))

    def _fitting_gas_limit(self, fn, cap: int) -> Optional[int]:
        """The gas limit the send path would give ``fn`` from this sender (estimate +20%), or
        None when it is over ``cap``, or the node cannot estimate it within its block (it
        reports an error then)."""
        from ..chain.send import gas_limit_for

        try:
            est = self._raw("eth_estimateGas", [{"from": self.address, "to": fn.to,
                                                 "data": fn.data}], "gas estimate")
        except (RevertError, RpcError):
            return None
        limit = gas_limit_for(int(est, 16))
        return limit if limit <= cap else None

    def tx_view(self, tx_hash: str) -> TxView:
        """Status, block, gas, fee and decoded events of a transaction, with the journal's
        record of what it was for (an open entry is resolved when the chain has settled it)."""
        from ..chain import send as tx
        from ..chain.journal import FAILED, MINED, OPEN, Journal

        h = (tx_hash or "").strip()
        try:
            ok = h[:2].lower() == "0x" and len(h) == 66 and bytes.fromhex(h[2:]) is not None
        except ValueError:
            ok = False
        if not ok:
            raise InputError("transaction hash", tx_hash, "expected 0x followed by 64 hex digits")
        h = h.lower()
        _ = self.chain_id
        ctx = self._read_ctx()
        ctx.event_abis = self._event_abis()
        e = None
        try:
            state = self._state_path()
            j = self._journal or (Journal(state / "journal.sqlite3") if state else None)
            e = j.find(h) if j is not None else None
        except DtnsessError:  # no journal here: the chain's part is still worth showing
            pass
        extra = [tx.GENESIS_REQUEST] + ([_anchor_request(e)] if e is not None else [])
        r_rec, r_tx, r_gen, *r_anchor = tx.rpc_batch(
            ctx, [("eth_getTransactionReceipt", [h]), ("eth_getTransactionByHash", [h])] + extra,
            "transaction lookup")
        tx.take_chain(ctx, [r_gen])
        for r in (r_rec, r_tx):
            if "error" in r:
                raise tx.response_error(ctx, r, "transaction lookup")
        from ..chain.abi import to_checksum_address

        def cs(a: Optional[str]) -> Optional[str]:
            return to_checksum_address(a) if a else None

        view = TxView(tx_hash=h, status="unknown")
        t = r_tx.get("result")
        if t:
            view.status = "pending"
            view.sender, view.to = cs(t.get("from")), cs(t.get("to"))
            view.nonce = int(t["nonce"], 16)
        rec = r_rec.get("result")
        if rec and rec.get("blockNumber"):
            rec = tx.format_receipt(rec)
            view.block, view.gas_used = rec["blockNumber"], rec["gasUsed"]
            view.sender, view.to = view.sender or cs(rec["from"]), view.to or cs(rec.get("to"))
            price = rec.get("effectiveGasPrice")
            if price is not None:
                # + the L1 data fee an OP-stack receipt reports (0 elsewhere)
                view.fee_eth = format_eth(rec["gasUsed"] * price + tx.receipt_l1_fee(rec))
            view.status = "mined" if rec["status"] == 1 else "failed"
            view.events = [{"name": e.name, "address": e.address, "args": e.args}
                           for e in tx.decode_logs(ctx, rec["logs"])]
            if view.status == "failed" and t:
                base = {"from": t["from"], "data": t.get("input", "0x"),
                        "value": int(t.get("value", "0x0"), 16)}
                if t.get("to"):
                    base["to"] = t["to"]
                err = tx._failed_receipt(ctx, base, rec, int(t["gas"], 16), "the transaction", h)
                view.revert = getattr(err, "reason", err.message)
        if e is not None:
            view.what, view.command = e.description, e.argv or None
            view.journal_chain = e.chain_label()
            # NOTE: the same hash on another chain (a fork) says nothing of this entry's chain
            view.other_chain = not e.on(self.chain_id, ctx.genesis) or (
                view.status == "unknown" and e.anchored(r_anchor[0].get("result")) is False)
            if e.status == OPEN and view.status in ("mined", "failed") and not view.other_chain:
                j.resolve(h, MINED if view.status == "mined" else FAILED, view.block)
                e.status = MINED if view.status == "mined" else FAILED
            view.journal = e.status
        return view
