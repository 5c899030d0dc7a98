"""The manager's side of the send path: the key, the sender lock, the journal's open
entries, and ``_send`` (``chain.send.send_and_wait`` with the manager's reverts and reads).
"""

from __future__ import annotations

import contextlib
import os

from ..errors import (DtnsessError, InputError, LegacyEntryError, LockedError, NotRepeatedError,
                      RevertError, RpcError, TxPendingError)
from ..units import format_eth
from .base import SENDER_LOCK_WAIT
from .views import WriteResult

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Iterator, Optional, Sequence

    from .readviews import TxView


def _hash_arg(tx_hash: str) -> str:
    """A transaction hash argument, lower case; InputError unless 0x and 64 hex digits."""
    h = (tx_hash or "").strip()
    try:
        ok = h[:2].lower() == "0x" and len(h) == 66 and bytes.fromhex(h[2:]) is not None
    except ValueError:
        ok = False
    if not ok:
        raise InputError("transaction hash", tx_hash, "expected 0x followed by 64 hex digits")
    return h.lower()


def _anchor_request(e: Any) -> tuple:
    """The node's block at a journal entry's anchor (the genesis again when it has none: the
    reply is then not looked at)."""
    n = e.anchor_block if e.anchor_block is not None else 0
    return ("eth_getBlockByNumber", [hex(n), False])


class _LazyErrors:
    """A ``chain.abi.ErrorDecoder`` made when it first decodes."""

    def __init__(self) -> None:
        self._dec: Any = None

    def decode(self, data: Any) -> Any:
        if self._dec is None:
            from ..artifacts import all_abis
            from ..chain.abi import ErrorDecoder

            try:
                abis = list(all_abis().values())
            except DtnsessError:
                abis = []
            self._dec = ErrorDecoder(abis)
        return self._dec.decode(data)


class Unfolded(Exception):
    """Raised by the check of a folded send (``Writes._send(fold=True)``) when the command must
    take its usual path, reads first (a session with requests to settle; a chain, fee token,
    router or paying session other than the remembered ones): nothing was sent. ``value``: what
    the check read, for that path."""

    def __init__(self, value: Any = None) -> None:
        super().__init__("unfolded")
        self.value = value


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
        if self.settings.unlocked:  # the node holds the key (--unlocked --from)
            from ..chain.broadcast import NodeAccount

            return NodeAccount(self.settings.from_address)
        from ..signer import load_account

        return load_account(self.settings)

    @property
    def address(self) -> str:
        from ..chain.abi import to_checksum_address

        # NOTE: checksummed: owners read from the chain are compared with it (a duck-typed
        # signer may give its address in lower case)
        return to_checksum_address(self.account.address)

    def _error_decoder(self):
        """The custom errors of every bundled ABI, by selector; built on the first revert to
        decode (reading the 17 artifacts and hashing each error's signature cost ~8 ms of CPU,
        and a write that goes through decodes none)."""
        if self._errors is None:
            self._errors = _LazyErrors()
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

    def _new_txctx(self, chain_id: int, decimals: Optional[int]):
        from ..chain import send as tx
        from .reverts import friendly

        ctx = tx.TxContext(
            rpc=self.rpc, account=self.account, friendly=friendly, chain_id=chain_id, ui=self.ui,
            errors=self._error_decoder(), event_abis=self._event_abis(), yes=self.settings.yes,
            receipt_timeout=self.receipt_timeout, token_decimals=decimals,
            token_symbol=self._symbol or "",
            symbol_lookup=(lambda: self.symbol) if self.settings.contract else None,
            rpc_url=self.settings.rpc_url, journal=self._journal,
            overrides=tx.TxOverrides(
                nonce=self.settings.nonce, gas_limit=self.settings.gas_limit,
                priority_fee=self.settings.priority_fee, max_fee=self.settings.max_fee),
        )
        if self._chain_seen is not None:  # read before the sender lock (_chain_key)
            ctx.genesis, ctx.anchor = self._chain_seen
        ctx.lock_chain = self._lock_chain
        return ctx

    def _fold_chain(self) -> Optional[int]:
        """The chain a write may sign for when the connection's reads (chain id, getConfig())
        ride in its transaction's batch instead of a round trip of their own: the one this URL
        was last seen on (the sender lock's, ``_chain_key``; else ``journal.known_chain``),
        when the token cache holds this manager on it too (its symbol: no symbol() read
        later). ``_send`` checks the node's chain id, --chain-id and then the genesis in that
        batch, before anything is signed. None: connect first (nothing remembered, or already
        connected, as after ``_resolve_open`` found open journal entries: those are named and
        resolved on the usual path)."""
        if self._config_raw is not None or self._txctx is not None or not self.settings.contract:
            return None
        chain = self._chain_id
        if chain is None:
            from ..chain.journal import known_chain

            state = self._state_path()
            seen = self._lock_chain or (known_chain(self.settings.rpc_url or "", state)
                                        if state is not None else None)
            chain = seen[0] if seen is not None else None
        hit = self._cached_token()
        return chain if chain is not None and hit is not None and hit.get("chain") == chain \
            else None

    def _reads_ride(self) -> Optional[int]:
        """The chain for which a write's own reads may ride in its transaction's batch, checked
        there before anything is signed: the connected one (a client's later writes), else the
        one ``_fold_chain`` remembers (the connection's reads then ride too). None: the write
        reads first, in a round trip of its own."""
        if self._config_raw is not None and self._chain_id is not None:
            return self._chain_id
        return self._fold_chain()

    @property
    def txctx(self):
        if self._txctx is None:
            self._txctx = self._new_txctx(self.chain_id, self.decimals if self.settings.contract
                                          else None)
        return self._txctx

    def chain_key(self) -> tuple:
        """(chain id, genesis hash) of the node, as the sender lock keys it (``_chain_key``):
        the cleanup lock is keyed the same."""
        return self._chain_key(self._state_path())

    def _chain_key(self, state: Any) -> tuple:
        """(chain id, genesis hash) of the node: the sender lock is per chain and key. What was
        last seen behind this URL (``journal.known_chain``: no round trip), checked when the
        send reads the chain, before anything is signed (``context.take_chain``); else read
        now, in one round trip with the latest block (the journal's anchor)."""
        from ..chain import send as tx
        from ..chain.journal import known_chain

        if self._chain_seen is None:
            hit = known_chain(self.settings.rpc_url or "", state)
            if hit is not None and self._chain_id in (None, hit[0]):
                self._lock_chain = hit
                if self._txctx is not None:
                    self._txctx.lock_chain = hit
                return hit
            ctx = self._read_ctx()
            head = [] if self._chain_id is not None else [("eth_chainId", [])]
            resps = tx.rpc_batch(ctx, head + list(tx.CHAIN_REQUESTS), "chain lookup")
            if head:
                if "error" in resps[0] or resps[0].get("result") is None:
                    raise tx.response_error(ctx, resps[0], "chain id")
                self._check_chain(int(resps[0]["result"], 16))
            self._take_chain_seen(resps[len(head):])
        if self._txctx is not None and self._txctx.genesis is None:
            self._txctx.genesis, self._txctx.anchor = self._chain_seen
        return self._chain_id, self._chain_seen[0]

    def _take_chain_seen(self, resps: list) -> None:
        """Keep the genesis and anchor from the replies to CHAIN_REQUESTS, and remember the
        chain behind this URL for the next run's sender lock."""
        from ..chain import send as tx
        from ..chain.journal import remember_chain

        ctx = self._read_ctx()
        tx.take_chain(ctx, resps)
        self._chain_seen = (ctx.genesis, ctx.anchor)
        state = self._state_path()
        if state is not None and self._chain_id is not None:
            remember_chain(self.settings.rpc_url or "", (self._chain_id, ctx.genesis), state)

    @contextlib.contextmanager
    def _sender_locked(self) -> Iterator[None]:
        """Hold this key's sender lock on this chain (waiting for another process up to
        SENDER_LOCK_WAIT) and open the journal. This client's threads queue on a thread lock
        first, also without state (``state_dir=False``): one nonce sequence per client; a
        hand-over between them is immediate, where waiting on the file lock polls (every 50
        ms)."""
        from ..chain.journal import JOURNAL_FILE, Journal, sender_lock

        addr = self.address
        state = self._state_path()
        with self._threads_lock:
            if state is None:  # no state kept (the API's state_dir=False): no file, no journal
                yield
                return
            with self._file_locked(sender_lock(addr, state, self._chain_key(state)), addr), \
                    self._forget_chain_if_changed(state):
                if self._journal is None:
                    self._journal = Journal(os.path.join(state, JOURNAL_FILE))
                    if self._journal.emptied:
                        self.ui.info(f"warning: the transaction journal {self._journal.path} was "
                                     f"an empty file: transactions of earlier runs whose outcome "
                                     f"was not known are forgotten; check `dtnsess requests` or "
                                     f"`dtnsess tx HASH` before repeating a command")
                if self._txctx is not None:  # made before the journal, maybe by another thread
                    self._txctx.journal = self._journal
                yield

    @contextlib.contextmanager
    def _forget_chain_if_changed(self, state: Any) -> Iterator[None]:
        """The chain behind the URL changed since it was last seen (the lock taken was for the
        old one; nothing was signed): forget it, so the next run reads it and locks right."""
        from ..chain.journal import remember_chain
        from ..errors import ChainChangedError

        try:
            yield
        except ChainChangedError:
            remember_chain(self.settings.rpc_url or "", None, state)
            raise

    @contextlib.contextmanager
    def _file_locked(self, lock: Any, addr: str) -> Iterator[None]:
        """Hold the inter-process sender lock, waiting for another process up to
        SENDER_LOCK_WAIT."""
        import time

        from ..chain.clock import sleep
        from ..chain.oslock import LockHeld

        # NOTE: polled here through the one sleep hook, so the async client's tasks run
        # meanwhile; every 50 ms, as filelock polled
        deadline = time.monotonic() + SENDER_LOCK_WAIT
        told = False
        while True:
            try:
                lock.acquire()
                break
            except LockHeld:
                if time.monotonic() >= deadline:
                    raise LockedError(lock.lock_file, f"another dtnsess process is still "
                                      f"sending from {addr} after {SENDER_LOCK_WAIT:g}s") \
                        from None
                if not told:
                    self.ui.info(f"waiting for another dtnsess process sending from {addr}")
                    told = True
                sleep(0.05)
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
        from ..chain.journal import FAILED, INTENT, MINED, REPLACED

        if self._journal is None:
            return
        argv = (INTENT.get() or {}).get("argv")
        # NOTE: a legacy entry (no genesis, no anchor) may be of this chain or of any other
        # with its id (a fork, a reset devnet): never re-broadcast nor resolved, so no write
        # names it or waits for it (`journal list` and `tx HASH` show it); only its own
        # command is not run again, its outcome being unknown (a local lookup: no round trip)
        for e in self._journal.open_legacy(self.address) if argv else ():
            if e.final and e.argv == argv and e.chain_id == self.chain_id:
                raise LegacyEntryError(argv, e.label(), e.tx_hash)
        if not self._journal.has_open(self.address):  # the usual case
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
        repeat = None
        # NOTE: the variants of one intent at one nonce (``dtnsess tx speedup/cancel``) are one
        # family: one of them at most is mined, and the others are then replaced by it
        families: dict = {}
        for i, e in enumerate(entries):
            families.setdefault(e.root, []).append(i)
        for idxs in families.values():
            group = [entries[i] for i in idxs]
            e = group[-1]  # the newest variant: the one re-broadcast, waited for and named
            recs = [resps[3 * i].get("result") for i in idxs]
            known = any(resps[3 * i + 1].get("result") for i in idxs)
            what = f"earlier {e.label()}" + (f" (one of {len(group)} variants at its nonce)"
                                             if len(group) > 1 else "")
            rec = next((r for r in recs if r and r.get("blockNumber")), None)
            if rec is None and not known and all(
                    entries[i].anchored(resps[3 * i + 2].get("result")) is False for i in idxs):
                # NOTE: same id and genesis, but the block it was signed after is not this
                # chain's (a fork, a devnet started in the same second): never sent here
                self._elsewhere(e, f"its block {e.anchor_block} is not this chain's")
                continue
            if rec is None:
                if not known and mined_nonce > e.nonce:
                    for c in group:
                        self._journal.resolve(c.tx_hash, REPLACED, note="nonce used by another tx")
                    self.ui.info(f"{what}: never mined, its nonce went to another transaction "
                                 f"(nothing of `{e.description}` was done)")
                    continue
                if not known and not self._rebroadcast(ctx, group, what):
                    continue
                self.ui.info(f"{what}: pending; waiting for it before sending anything new")
                try:
                    rec = tx.wait_for_receipt(ctx, e.tx_hash, e.description, e.nonce,
                                              others=[c.tx_hash for c in group[:-1]])
                except TxPendingError as exc:
                    exc.message = (f"an earlier transaction from this key is still pending: "
                                   f"{e.label()} ({e.description}); nothing new was sent")
                    raise
            rec = tx.format_receipt(rec)
            h = str(rec.get("transactionHash") or e.tx_hash).lower()
            winner = next((c for c in group if c.tx_hash == h), e)
            for c in group:
                if c is not winner:
                    self._journal.resolve(c.tx_hash, REPLACED, note=f"replaced by {winner.tx_hash}")
            block = rec["blockNumber"]
            what = f"earlier {winner.label()}"
            if rec["status"] == 1 and winner.cancel:
                self._journal.resolve(winner.tx_hash, MINED, block)
                self.ui.info(f"{what}: the cancel was mined in block {block}; nothing of "
                             f"`{winner.description}` was done")
            elif rec["status"] == 1:
                self._journal.resolve(winner.tx_hash, MINED, block)
                self.ui.info(f"{what}: mined in block {block} ({winner.description})")
                if winner.final and argv and winner.argv == argv:
                    repeat = (winner, block)
            else:
                self._journal.resolve(winner.tx_hash, FAILED, block)
                self.ui.info(f"{what}: reverted in block {block}; only its gas was spent "
                             f"({winner.description} was not done)")
        if repeat is not None:
            raise NotRepeatedError(repeat[0].argv, repeat[0].tx_hash, repeat[1])

    def _rebroadcast(self, ctx: Any, group: list, what: str) -> bool:
        """The node lost every variant of an intent: their own signed bytes again, the newest
        first (one nonce: one of them at most is ever mined). False: the node refused them all
        (each ``dropped``). One the node signed (--unlocked) has no bytes here: it is lost."""
        from ..chain import send as tx
        from ..chain.journal import DROPPED

        msg = "the node no longer has it, and it signed it (--unlocked): not sent again"
        for c in reversed(group):
            if not c.raw:
                self._journal.resolve(c.tx_hash, DROPPED, note=msg)
                continue
            again = tx.raw_request(ctx, "eth_sendRawTransaction", [c.raw])
            msg = tx._node_message(again).lower()
            if "error" not in again or any(k in msg for k in tx._KNOWN):
                return True
            self._journal.resolve(c.tx_hash, DROPPED, note=msg)
        self.ui.info(f"{what}: the node refused it ({msg}); nothing of "
                     f"`{group[-1].description}` was done")
        return False

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
        from ..chain.journal import JOURNAL_FILE, Journal

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
        j = self._journal or Journal(os.path.join(state, JOURNAL_FILE))
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

    def open_entries(self) -> list:
        """The open journal entries of this machine (any key, any chain), oldest first: sends
        whose outcome is not known here yet, and those an older dtnsess wrote (``legacy``:
        never resolved, see ``forget_legacy``). Local: no node is asked."""
        from ..chain.journal import JOURNAL_FILE, Journal

        state = self._state_path()
        if state is None:
            return []
        return (self._journal or Journal(os.path.join(state, JOURNAL_FILE))).open_all()

    def forget_legacy(self, chain_id: Optional[int] = None) -> list:
        """Forget the open legacy journal entries (``chain.journal.Entry.legacy``: written
        before the journal recorded chains), of ``chain_id`` when given. Returns them."""
        from ..chain.journal import JOURNAL_FILE, Journal

        state = self._state_path()
        if state is None:
            return []
        j = self._journal or Journal(os.path.join(state, JOURNAL_FILE))
        entries = j.open_legacy(chain_id=chain_id)
        j.forget(entries, note="written by an older dtnsess: its chain is not known")
        return entries

    def _name_done(self, exc: DtnsessError) -> None:
        """Prefix a later step's error with the steps of this write that were mined."""
        done = [t for t in self._done if t.tx_hash and t.tx_hash != getattr(exc, "tx_hash", 0)]
        if not done:
            return
        steps = "; ".join(f"{t.description}: mined in tx {t.tx_hash} (block {t.block_number})"
                          for t in done)
        exc.message = f"{steps}; then {exc.message}"
        exc.done = [t.summary() for t in done]  # type: ignore[attr-defined]

    def _send(self, fn, *, description: Any, value: int = 0, token_cost: Optional[str] = None,
              follows: Any = None, step: Optional[str] = None, reads: Sequence[Any] = (),
              check: Optional[Any] = None, fold: bool = False):
        """``tx.send_and_wait``; ``follows``: the TxResult this run sent just before. The token
        symbol, when still unknown, rides in the transaction's batch (results show amounts), and
        so do ``reads``, whose raw responses ``check`` gets before anything is sent (it may
        raise: then nothing is). ``description``: a str, or a function called once ``check``
        has run (see ``send_and_wait``). ``fold``: a command's first round trip may be this
        batch (see ``_fold_chain``): the chain id and getConfig() ride in it too and are
        checked first; Unfolded when the chain is not the remembered one (nothing sent)."""
        from ..chain import send as tx

        chain = self._fold_chain() if fold else None
        if chain is not None:
            self._txctx = self._new_txctx(chain, None)  # decimals: from getConfig() in the batch
        ctx = self.txctx
        head = self._connect_requests() if chain is not None else []
        sym = self._symbol_requests() if chain is None else []  # the cache's, when it holds

        def take(resps: list) -> None:
            if head:
                try:
                    self._take_connect(self._rows(head, resps[:len(head)], "getConfig()"), head)
                    if self._chain_id != chain and ctx.lock_chain is not None:
                        # the sender lock is the remembered chain's (as take_chain would find)
                        from ..errors import ChainChangedError

                        raise ChainChangedError(self.settings.rpc_url)
                    if self._chain_id != chain:  # the L1-fee quote assumed the other chain
                        raise Unfolded()
                except BaseException:
                    self._txctx = None  # made for a chain not confirmed: never reused
                    raise
                ctx.chain_id, ctx.token_decimals = self._chain_id, self.decimals
                if self._symbol is None:  # not the cache's token: symbol() rides in the usual
                    raise Unfolded()      # path's batch (and the cache is put right)
                resps = resps[len(head):]
            self._take_symbol(self._rows(sym, resps[:len(sym)], "symbol()"))
            ctx.token_symbol = self._symbol or ""
            if check is not None:
                check(list(resps[len(sym):]))

        res = tx.send_and_wait(ctx, fn, value=value, description=description,
                               dry_run=self.settings.dry_run, confirm=True,
                               token_cost=token_cost,
                               follows=follows.next_facts if follows is not None else None,
                               also=self._requests(head + list(sym) + list(reads)),
                               on_also=take, step=step)
        if not res.dry_run:
            self._done.append(res)
        return res

    def replace_tx(self, tx_hash: str, cancel: bool = False) -> WriteResult:
        """``dtnsess tx speedup/cancel``: replace a pending transaction this machine sent from
        this key on this chain (``chain.replace``). Under the sender lock, but without
        resolving the open entries first: the one replaced is one of them."""
        from ..chain.journal import OPEN
        from ..chain.replace import replace

        h = _hash_arg(tx_hash)
        if self._state_path() is None:
            raise InputError("transaction hash", tx_hash, "no journal is kept (state_dir=False)")
        with self._sender_locked():
            e = self._journal.find(h)
            if e is None:
                raise InputError("transaction hash", tx_hash, "not in this machine's journal: "
                                 "only a transaction dtnsess sent can be replaced")
            if e.sender != self.address.lower():
                raise InputError("transaction hash", tx_hash,
                                 f"sent from {e.sender}, not from this key ({self.address})")
            if not e.on(self.chain_id, self._genesis()):
                raise InputError("transaction hash", tx_hash,
                                 f"recorded on another {e.chain_label()}, not the node's")
            if e.status != OPEN:
                raise InputError("transaction hash", tx_hash,
                                 f"its journal entry is {e.status}: nothing to replace "
                                 f"(see `dtnsess tx {h}`)")
            res, mined = replace(self.txctx, e, cancel=cancel, dry_run=self.settings.dry_run)
        r = WriteResult("cancel" if cancel else "speedup", txs=[res],
                        dry_run=self.settings.dry_run)
        r.data.update({"replaces": e.tx_hash, "nonce": e.nonce, "mined": mined})
        return r

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
        from .readviews import TxView

        from ..chain import send as tx
        from ..chain.journal import FAILED, JOURNAL_FILE, MINED, OPEN, Journal

        h = _hash_arg(tx_hash)
        _ = self.chain_id
        ctx = self._read_ctx()
        ctx.event_abis = self._event_abis()
        e = None
        try:
            state = self._state_path()
            j = self._journal or (Journal(os.path.join(state, JOURNAL_FILE)) if state else None)
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
            # a legacy entry's chain is not known: neither this one nor another, never resolved
            view.other_chain = not e.legacy and (not e.on(self.chain_id, ctx.genesis) or (
                view.status == "unknown" and e.anchored(r_anchor[0].get("result")) is False))
            if e.status == OPEN and not e.legacy and view.status in ("mined", "failed") \
                    and not view.other_chain:
                j.resolve(h, MINED if view.status == "mined" else FAILED, view.block)
                e.status = MINED if view.status == "mined" else FAILED
            view.journal = e.status
            members = j.members(e.root)
            if len(members) > 1:
                view.family = [{"tx_hash": m.tx_hash, "variant": m.intent.get("replace")
                                or "original", "journal": m.status} for m in members]
        return view
