"""Sessions: views, balances and allowance, create (with its approval), renew, close.
"""

from __future__ import annotations


from ..errors import (
    BlockGasLimitError,
    DtnsessError,
    InputError,
    InsufficientFundsError,
    NotAuthorizedError,
    RevertError,
)
from ..units import Amount, format_amount
from .base import MAX_UINT256, allowance_override, contract_at, _when, _all_blocked_error, _writes
from .views import SessionView, WriteResult
from .writes import Unfolded

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional, Sequence

    from .readviews import Balances


class Sessions:
    """Session views and writes."""

    def _session_view(self, t: Sequence, symbol: Optional[str] = None) -> SessionView:
        """``symbol``: given for views only checked, never shown (no symbol() round trip)."""
        def a(units: int) -> Amount:
            return Amount(int(units), self.decimals, self.symbol if symbol is None else symbol)

        return SessionView(
            session_id=int(t[0]), owner=t[1], balance=a(t[2]), last_used=int(t[3]),
            active=bool(t[4]), request_count=int(t[5]), dtn_session_id=int(t[6]),
            pending_requests=int(t[7]), last_request_at=int(t[8]), pooled=bool(t[9]),
            dtn_balance=a(t[11]) if t[10] else None,
            closable_at=int(t[12]), closing=bool(t[13]), pending_since=int(t[14]),
        )

    def _session_tuple(self, session_id: int, t: Optional[tuple] = None) -> tuple:
        """getSession(session_id) (``t``: as already read), refused when there is none."""
        if t is None:
            (t,) = self._calls([self._mgr.call("getSession", session_id)], "getSession")
        if int(t[1], 16) == 0:
            raise InputError("session", str(session_id), "no such session")
        return t

    def session(self, session_id: int) -> SessionView:
        return self._session_view(self._session_tuple(session_id))

    def sessions(self, user: Optional[str] = None) -> list:
        user = self.address_arg(user, "user address") if user else self.address
        (ids,) = self._calls([self._mgr.call("getUserSessions", user)], "getUserSessions")
        if not ids:
            return []
        (views,) = self._calls_and_symbol([self._mgr.call("getSessions", list(ids))],
                                          "getSessions")
        return [self._session_view(v) for v in views]

    def balances(self, user: Optional[str] = None) -> Balances:
        from .readviews import Balances

        user = self.address_arg(user, "address") if user else self.address
        m = self._mgr
        reads = [("eth_getBalance", [user, "latest"]), m.call("claimableRefunds", user)]
        labels = ["balance", "claimableRefunds", "balanceOf", "allowance"]
        # one round trip when the fee token is remembered from an earlier run (getConfig() in
        # the same batch confirms it); else two: what needs the token address comes second
        hit = self._cached_token() if self._config_raw is None else None
        got = None
        if hit is not None:
            tok = contract_at(hit["token"], "ERC20")
            head = self._connect_requests()
            rows = self._batch(head + reads + [tok.call("balanceOf", user),
                                               tok.call("allowance", user, m.address)],
                               ["getConfig()"] * len(head) + labels)
            self._take_connect(rows[:len(head)], head)
            got = self._values(rows[len(head):len(head) + 2])
            if tok.address == self.token.address and all(ok for ok, _ in rows[len(head) + 2:]):
                got += self._values(rows[len(head) + 2:])
        else:
            got = self._calls(reads, labels[:2])
        if len(got) == 2:  # the token's part, now that getConfig() named it
            got += self._calls_and_symbol([self.token.call("balanceOf", user),
                                           self.token.call("allowance", user, m.address)],
                                          labels[2:])
        eth, claim, bal, allw = got
        eth = int(eth, 16)
        return Balances(address=user, eth=Amount(eth, 18, "ETH"), token=self.amount(bal),
                        allowance=self.amount(allw), claimable_refunds=self.amount(claim),
                        token_address=self.token.address, spender=m.address)

    def allowance(self, user: Optional[str] = None) -> Amount:
        user = user or self.address
        (units,) = self._calls_and_symbol(
            [self.token.call("allowance", user, self._mgr.address)], "allowance")
        return self.amount(units)

    def claimable_refunds(self, user: Optional[str] = None) -> Amount:
        user = user or self.address
        (units,) = self._calls([self._mgr.call("claimableRefunds", user)], "claimableRefunds")
        return self.amount(units)

    def _owned_active(self, session_id: int, *, allow_grant: bool = False,
                      t: Optional[tuple] = None) -> SessionView:
        s = self._session_view(self._session_tuple(session_id, t), symbol=self._symbol or "")
        if not s.active:
            raise InputError("session", str(session_id), "the session is closed")
        if s.owner != self.address:
            if allow_grant:
                g = self.grant()
                if g and g["session_id"] == session_id:
                    if g["expired"]:  # the contract: GrantExpired
                        raise NotAuthorizedError(
                            f"your pool grant on session {session_id} expired at "
                            f"{_when(g['expires_at'])}",
                            hint="take a session again with `dtnsess pool get`")
                    return s
            raise NotAuthorizedError(f"session {session_id} belongs to {s.owner}, not to "
                                     f"{self.address}")
        return s

    def _token_position(self) -> tuple:
        """(fee token balance, allowance for the manager) of the sender, in one round trip."""
        return tuple(self._calls_and_symbol(
            [self.token.call("balanceOf", self.address),
             self.token.call("allowance", self.address, self._mgr.address)],
            ["balanceOf", "allowance"]))

    def _require_tokens(self, units: int, have: int) -> None:
        if have < units:
            raise InsufficientFundsError(
                f"{self.symbol} (fee token)", f"{format_amount(have, self.decimals)}",
                f"{format_amount(units, self.decimals)}",
                hint=f"send {self.symbol} to {self.address}")

    def _ensure_allowance(self, units: int, approve_max: bool, result: WriteResult,
                          have: int) -> bool:
        """Approve only when the allowance (``have``) is short, and only what is needed. Returns
        False when a dry run could not simulate past the missing approval."""
        if have >= units:
            return True
        target = MAX_UINT256 if approve_max else units
        shown = "unlimited" if approve_max else f"{format_amount(units, self.decimals)} {self.symbol}"
        res = self._send(self.token.call("approve", self.manager.address, target),
                         description=f"approve {shown} for the session manager", step="approve")
        result.txs.append(res)
        result.data["approved"] = "unlimited" if approve_max else self.amount(target)
        return not self.settings.dry_run

    @_writes
    def approve(self, amount: Optional[str], unlimited: bool = False) -> WriteResult:
        units = MAX_UINT256 if unlimited else self.parse("" if amount is None else amount,
                                                         allow_zero=True)
        shown = "unlimited" if unlimited else f"{format_amount(units, self.decimals)} {self.symbol}"
        r = WriteResult("approve", dry_run=self.settings.dry_run)
        r.txs.append(self._send(self.token.call("approve", self.manager.address, units),
                                description=f"approve {shown} for the session manager"))
        r.data["allowance"] = "unlimited" if unlimited else self.amount(units)
        return r

    def _pay_and_send(self, r: WriteResult, units: int, approve_max: bool, fn, describe,
                      what: str):
        """Send ``fn``, which pulls ``units`` tokens from the sender: check the balance, approve
        what is short, then send. None when a dry run stopped at the approval.

        ``describe`` is called only after the token reads, whose batch also brings the symbol."""
        have, allowed = self._token_position()
        self._require_tokens(units, have)
        # NOTE: back to back only when nobody is asked: a person confirms each step as before
        if allowed < units and not self.settings.dry_run \
                and (self.settings.yes or not self.ui.interactive):
            res = self._approve_then_send(r, units, approve_max, fn, describe())
            if res is not None:
                return res
        if not self._ensure_allowance(units, approve_max, r, allowed):
            r.data["note"] = f"dry run: {what} is simulated only after the approval"
            return None
        # NOTE: after an approval its nonce + 1 and its fees are reused (tx.send_and_wait)
        res = self._send(fn, description=describe(),
                         token_cost=f"{format_amount(units, self.decimals)} {self.symbol}",
                         follows=r.txs[-1] if r.txs else None)
        r.txs.append(res)
        return res

    def _approve_then_send(self, r: WriteResult, units: int, approve_max: bool, fn,
                           description: str):
        """The approval and ``fn`` back to back (``chain.send.send_together``): ``fn`` is
        simulated as if the approval were mined (a state override of the allowance), both are
        sent in one batch and their receipts polled together. The override is checked by
        reading the allowance back through it in the same batch; a token whose allowance is not
        where the override puts it gets None here (nothing sent): the caller goes one by one."""
        from ..chain import send as tx

        target = MAX_UINT256 if approve_max else units
        shown = "unlimited" if approve_max else f"{format_amount(units, self.decimals)} {self.symbol}"
        owner, spender = self.address, self._mgr.address
        overrides = allowance_override(self.token.address, owner, spender, target)
        check = self.token.call("allowance", owner, spender)

        def accept(resps: list) -> bool:
            try:
                return "error" not in resps[0] and check.decode(resps[0]["result"]) == target
            except Exception:  # not an ERC-20 answer: the careful way
                return False

        calls = [tx.Call(self.token.call("approve", spender, target),
                         f"approve {shown} for the session manager", step="approve"),
                 tx.Call(fn, description, overrides=overrides)]
        outs = tx.send_together(
            self.txctx, calls, headline=f"approve {shown}, then {description}",
            token_cost=f"{format_amount(units, self.decimals)} {self.symbol}",
            extra=[check.request(tx.SIM_BLOCK, overrides=overrides)], accept=accept)
        if outs is None:
            return None
        for o in outs:
            if o.status == "mined":
                self._done.append(o.result)
        err = tx.batch_error(outs)
        if err is not None:
            raise err
        r.txs += [o.result for o in outs]
        r.data["approved"] = "unlimited" if approve_max else self.amount(target)
        return outs[1].result

    @_writes
    def create_session(self, amount: str, approve_max: bool = False) -> WriteResult:
        units = self.parse(amount)
        cfg = self._config_tuple()
        if units < cfg[3]:
            raise InputError("amount", amount, f"below the minimum session balance "
                             f"{format_amount(cfg[3], self.decimals)} {self.symbol}")
        r = WriteResult("create", dry_run=self.settings.dry_run)
        res = self._pay_and_send(r, units, approve_max, self.manager.call("createSession", units),
                                 lambda: f"create a session with "
                                         f"{format_amount(units, self.decimals)} {self.symbol}",
                                 "createSession")
        r.data["amount"] = self.amount(units)  # after the token reads: they bring the symbol
        if res is None:
            return r
        ev = self._events(res, "SessionCreated")
        r.data["session_id"] = int(ev[0].args["sessionId"]) if ev else (
            int(res.return_value) if res.return_value is not None else None)
        if ev and not res.dry_run:  # the newest own session: the next request's (Requests)
            self._remember_session(r.data["session_id"])
        return r

    @_writes
    def renew_session(self, session_id: int, amount: str, approve_max: bool = False) -> WriteResult:
        units = self.parse(amount)
        s = self._owned_active(session_id)
        if s.closing:  # the contract refuses new money in a session on its way out
            raise InputError("session", str(session_id),
                             f"it is closing: `dtnsess close {session_id} --cancel` first")
        r = WriteResult("renew", dry_run=self.settings.dry_run)
        # answered requests whose callback failed would block the renewal: settle them first
        if self._settle_answered(r, [s]) is not None:
            r.data["session_id"] = session_id
            if self.settings.dry_run:
                r.data["note"] = "dry run: the renewal is simulated only after the settle"
                return r
            s = self._owned_active(session_id)
        try:
            self._check_pending(s)
        except DtnsessError as exc:
            if not r.txs:
                raise
            r.error = exc  # the settle was sent: show it, then the refusal
            return r
        res = self._pay_and_send(r, units, approve_max,
                                 self.manager.call("renewSession", session_id, units),
                                 lambda: f"add {format_amount(units, self.decimals)} "
                                         f"{self.symbol} to session {session_id}",
                                 "renewSession")
        r.data.update({"session_id": session_id, "amount": self.amount(units)})
        if res is None:
            return r
        ev = self._events(res, "SessionRenewed")
        if ev:
            r.data["new_balance"] = self.amount(ev[0].args["newBalance"])
        return r

    def _check_pending(self, s: SessionView) -> None:
        """Refuse a renewal the contract would refuse (RequestsPending) before its approval is
        sent. Close needs no such check: its simulation decodes the same revert."""
        if s.pending_requests:
            from .reverts import requests_pending_error

            retry_after = s.closable_at  # fixed by the oldest unanswered request
            # NOTE: the chain's clock decides, not ours (they differ on dev chains, and by drift)
            now = self._chain_now()
            if now < retry_after:
                raise requests_pending_error(f"renewing session {s.session_id}", s.session_id,
                                             s.pending_requests, retry_after)

    @_writes
    def cancel_close(self, session_id: int) -> WriteResult:
        """cancelClose: undo beginClose; others with a grant may use the session again."""
        s = self._owned_active(session_id)
        if not s.closing:
            raise InputError("session", str(session_id), "it is not closing")
        r = WriteResult("close-cancel", dry_run=self.settings.dry_run)
        r.txs.append(self._send(self.manager.call("cancelClose", session_id),
                                description=f"cancel closing session {session_id}"))
        r.data["session_id"] = session_id
        return r

    @_writes
    def close_session(self, session_id: int) -> WriteResult:
        """Settle answered requests of the session (one transaction), then close it. Still
        blocked by unanswered ones: begin closing it (others can no longer add requests), and
        the result carries the RequestsPending error with the time the close will work."""
        r = WriteResult("close", dry_run=self.settings.dry_run)
        r.data["closed"] = []
        close = self._mgr.call("closeSession", session_id)
        desc = f"close session {session_id}"
        read = self._mgr.call("getSession", session_id)
        got: list = []

        def check(resps: list) -> None:
            ((ok, t),) = self._rows([read], resps, "getSession")
            if not ok:
                raise t
            got.append(self._owned_active(session_id, t=t))
            if got[0].pending_requests:  # answers to settle first, or a close to begin
                raise Unfolded(got[0])

        s = res = None
        # NOTE: usually one round trip fewer: the session is read in the close's own batch,
        # with the connection's reads (Writes._send's fold), and checked before anything is
        # signed; the usual path below when that cannot be
        if self._reads_ride() is not None:
            try:
                res = self._send(close, description=desc, reads=[read], check=check, fold=True)
            except Unfolded as u:
                s = u.value
            except RevertError as exc:  # a request came in since the read
                if exc.name != "RequestsPending" or not got:
                    raise
                return self._close_refused(r, got[0], exc, None)
        if res is None:
            s = s or self._owned_active(session_id)
            prev = self._settle_answered(r, [s])
            if prev is not None and self.settings.dry_run:
                r.data["note"] = "dry run: the close is simulated only after the settle"
                return r
            try:
                res = self._send(close, description=desc, follows=prev)
            except RevertError as exc:
                if exc.name != "RequestsPending":
                    raise
                return self._close_refused(r, s, exc, prev)
        r.txs.append(res)
        r.data["closed"] = self._closed_from(res)
        return r

    def _close_refused(self, r: WriteResult, s: SessionView, exc: Any, prev: Any) -> WriteResult:
        """A close refused for unanswered requests: begin closing (``_begin_closing``); the
        error is raised when nothing was sent, else carried by ``r``."""
        self._begin_closing(r, s, exc, prev)
        if not r.txs:
            raise r.error from None
        return r

    def _begin_closing(self, r: WriteResult, s: SessionView, exc: Any, prev: Any) -> None:
        """The close of ``s`` is refused (``exc``: RequestsPending): mark the session closing
        unless it is, and set ``r.error`` to the refusal with the time to retry."""
        from .reverts import requests_pending_error

        _, pending, retry_after = (int(x) for x in exc.args_)
        sid = s.session_id
        if not s.closing:
            res = self._send(self.manager.call("beginClose", sid),
                             description=f"begin closing session {sid} (no new requests from "
                                         f"others)", follows=prev)
            r.txs.append(res)
            ev = self._events(res, "SessionClosing") if not res.dry_run else []
            if ev:
                retry_after = min(retry_after, int(ev[0].args["closableAt"])) or retry_after
        when = _when(retry_after)
        r.data["closing"] = {"session_id": sid, "pending": pending, "closable_at": retry_after,
                             "began": not s.closing}
        err = requests_pending_error(f"closing session {sid}", sid, pending, retry_after,
                                     data=exc.data)
        err.message = (f"session {sid} is closing: no new requests from others; close it after "
                       f"{when} ({pending} unanswered request{'s' if pending != 1 else ''})")
        err.hint = (f"run `dtnsess close {sid}` again after {when}; answers that arrive before "
                    f"are settled by close itself (`dtnsess requests --pending`)")
        r.error = err

    @_writes
    def close_all_sessions(self) -> WriteResult:
        """Settle answered requests of your sessions (one transaction), then closeAllSessions:
        it closes what it can and skips (SessionCloseSkipped) sessions with unanswered requests.
        Nothing closable: nothing more is sent and ``error`` says when to retry."""
        r = WriteResult("close-all", dry_run=self.settings.dry_run)
        mine = [s for s in self.sessions() if s.active and s.owner == self.address]
        r.data["closed"] = []
        if not mine:
            r.data["note"] = "no active sessions"
            return r
        prev = self._settle_answered(r, mine)
        if prev is not None:
            if self.settings.dry_run:
                r.data["note"] = "dry run: the close is simulated only after the settle"
                return r
            mine = [s for s in self.sessions() if s.active and s.owner == self.address]
        now = self._chain_now()
        blocked = {s.session_id: s for s in mine if s.pending_requests and now < s.closable_at}
        skipped = [{"session_id": s.session_id, "pending": s.pending_requests,
                    "retry_after": s.closable_at} for s in blocked.values()]
        if len(blocked) == len(mine):
            r.data["skipped"] = skipped
            r.error = _all_blocked_error(skipped)
            if not r.txs:
                raise r.error
            return r
        n = len(mine) - len(blocked)
        cap = self._tx_gas_cap()
        if self._close_all_too_big(cap):
            return self._close_one_by_one(r, [s.session_id for s in mine if s.session_id not in blocked],
                                          skipped, prev, cap)
        # closeAllSessions is bounded by gas: with many sessions, page through (each transaction
        # closes from the start of the list on; a transaction that closes nothing ends it)
        while True:
            res = self._send(self.manager.call("closeAllSessions"),
                             description=f"close {n - len(r.data['closed'])} of your sessions" + (
                                 f" (skipping {len(blocked)} with pending requests)" if blocked
                                 else ""), follows=prev)
            r.txs.append(res)
            closed = self._closed_from(res)
            r.data["closed"] += closed
            if res.dry_run:
                break
            skipped = [{"session_id": int(e.args["sessionId"]),
                        "pending": blocked[int(e.args["sessionId"])].pending_requests
                        if int(e.args["sessionId"]) in blocked else None,
                        "retry_after": int(e.args["retryAfter"])}
                       for e in self._events(res, "SessionCloseSkipped")]
            if not closed or len(r.data["closed"]) >= n:
                break
            prev = res
        r.data["skipped"] = skipped
        if not r.data["closed"] and skipped and not res.dry_run:  # they got requests meanwhile
            r.error = _all_blocked_error(skipped)
        return r

    def _close_all_too_big(self, cap: int) -> bool:
        """Whether one closeAllSessions step needs more gas than ``cap`` (what a transaction
        may have here): under 2^24 it cannot (MAINTENANCE_GAS_BUDGET), under a smaller block
        gas limit its estimate decides."""
        from ..chain.send import TX_GAS_CAP

        return cap < TX_GAS_CAP and self._fitting_gas_limit(self.manager.call("closeAllSessions"),
                                                            cap) is None

    def _close_one_by_one(self, r: WriteResult, ids: list, skipped: list, prev,
                          cap: int) -> WriteResult:
        """close --all paged by session (closeSession each) where one closeAllSessions step
        does not fit the block gas limit; stops before sending a close that does not fit."""
        for sid in ids:
            fn = self.manager.call("closeSession", sid)
            if self._fitting_gas_limit(fn, cap) is None:
                err = BlockGasLimitError(f"closing session {sid}", cap)
                if not r.txs:
                    raise err
                r.error = err
                break
            res = self._send(fn, description=f"close session {sid} (one at a time: closing all "
                                             f"at once does not fit the block gas limit)",
                             follows=prev)
            r.txs.append(res)
            if res.dry_run:
                break
            r.data["closed"] += self._closed_from(res)
            prev = res
        r.data["skipped"] = skipped
        return r

    def _closed_from(self, res) -> list:
        credited = {int(e.args["sessionId"]): int(e.args["amount"])
                    for e in self._events(res, "RefundCredited")}
        return [{"session_id": int(e.args["sessionId"]), "refund": self.amount(e.args["refund"]),
                 "credited": int(e.args["sessionId"]) in credited}
                for e in self._events(res, "SessionClosed")]
