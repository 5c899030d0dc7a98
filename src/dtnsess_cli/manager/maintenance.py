"""The owner's and cron's side: cleanup, refunds, configuration, sweep, deploy, doctor.
"""

from __future__ import annotations


from ..errors import (
    BlockGasLimitError,
    DtnsessError,
    InputError,
    InsufficientFundsError,
    NoContractError,
    NotAuthorizedError,
    RevertError,
    RpcError,
)
from ..units import format_amount
from .base import (
    MAX_UINT256,
    MAX_SESSION_AGE,
    MAX_REQUEST_TIMEOUT,
    MAX_GRANT_DURATION,
    MAX_POOL_SIZE,
    MIN_GRANT_DURATION,
    contract_at,
    _writes,
)
from .views import WriteResult

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Optional

    from .readviews import Check


# Idle sessions read before a cleanup (what a dry run shows); the cleanup itself goes on until none
# is left. ALL_IDLE: cleanupOldSessionsUpTo's count when only gas bounds a transaction.
IDLE_PEEK = 200
ALL_IDLE = 2**32
# Under a block gas limit below 2^24, cleanup picks its count from these (the manager keeps
# 200,000 gas for one more step; the issue-14 worst case costs ~115,000 a session), then checks
# the estimate.
CLEANUP_STEP_RESERVE = 300_000
CLEANUP_GAS_PER_SESSION = 115_000


class Maintenance:
    """Cleanup, refunds, configuration, sweep, deploy and doctor."""

    def idle_sessions(self, max_n: int) -> list:
        (ids,) = self._calls([self._mgr.call("getIdleSessions", max_n)], "getIdleSessions")
        return [int(i) for i in ids]

    def upkeep_check(self) -> dict:
        """What a keeper's performUpkeep would do now, read-only and without a key, in one round
        trip: checkUpkeep(), the sessions one perform closes, its gas estimate from the zero
        address (None, with the reason, when it would revert: nothing idle, or DTN refuses every
        close). A perform stops at UPKEEP_BATCH sessions or its gas budget, whichever comes
        first (35 in the costliest case measured), so how many it closes is simulated:
        cleanupOldSessions() runs the same loop and returns the count; they are the least
        recently used idle ones (getIdleSessions, one more than a batch tells whether more wait).
        """
        from .base import UPKEEP_BATCH

        m = self._mgr
        est = ("eth_estimateGas", [{"from": "0x" + "00" * 20, "to": m.address,
                                    "data": m.data("performUpkeep", b"")}])
        head = self._connect_requests() if self._config_raw is None else []
        rows = self._batch(head + [m.call("checkUpkeep", b""),
                                   m.call("getIdleSessions", UPKEEP_BATCH + 1), est,
                                   m.call("cleanupOldSessions")],
                           ["getConfig()"] * len(head) + ["checkUpkeep", "getIdleSessions",
                                                          "performUpkeep estimate",
                                                          "cleanupOldSessions"])
        if head:
            self._take_connect(rows[:len(head)], head)
        rows = rows[len(head):]
        (needed, _), idle = self._values(rows[:2])
        ok, gas = rows[2]
        if not ok and not isinstance(gas, RevertError):
            raise gas  # node trouble, not "would revert"
        sim_ok, closes = rows[3]
        if not sim_ok and not isinstance(closes, RevertError):
            raise closes
        idle = [int(i) for i in idle]
        # NOTE: a session DTN refuses to close is visited but not closed: then the perform
        # reaches past these ids (CleanupFailed); the count stays exact.
        n = int(closes) if sim_ok and ok else 0
        return {"upkeep_needed": bool(needed), "idle": idle[:UPKEEP_BATCH], "would_close": idle[:n],
                "count": n, "more_idle": ok and len(idle) > n,
                "batch": UPKEEP_BATCH, "estimated_gas": int(gas, 16) if ok else None,
                "perform_reverts": None if ok else gas.reason}

    def gas_price(self) -> int:
        """The node's current gas price (eth_gasPrice), in wei."""
        return int(self._raw("eth_gasPrice", [], "gas price"), 16)

    @_writes
    def cleanup(self, max_n: Optional[int] = None, max_gas: Optional[int] = None) -> WriteResult:
        """Close idle sessions until none is left or a budget is spent: as many
        cleanupOldSessionsUpTo transactions as the backlog needs, one after the other (each is
        bounded on chain by MAINTENANCE_GAS_BUDGET, so it stays under 2^24 gas). ``max_n``:
        sessions in all; ``max_gas``: gas in all (no transaction starts once it is spent).
        Stops early when a transaction closes nothing (DTN refused every close)."""
        r = WriteResult("cleanup", dry_run=self.settings.dry_run)
        idle = self.idle_sessions(min(max_n or IDLE_PEEK, IDLE_PEEK))
        r.data.update({"idle": idle, "closed": [], "gas_used": 0})
        left, total, prev, failed = max_n, 0, None, []
        cap = self._tx_gas_cap() if idle else None
        while idle and left != 0 and (max_gas is None or r.data["gas_used"] < max_gas):
            n = self._cleanup_step(left if left is not None else ALL_IDLE, cap)
            res = self._send(self.manager.call("cleanupOldSessionsUpTo", n),
                             description=f"clean up idle sessions ({len(r.txs) + 1}. transaction)",
                             follows=prev)
            r.txs.append(res)
            if res.dry_run:
                break
            prev, closed = res, self._closed_from(res)
            r.data["closed"] += closed
            r.data["gas_used"] += res.gas_used or 0
            total += sum(int(e.args["amount"]) for e in self._events(res, "RefundCredited"))
            failed += [int(e.args["sessionId"]) for e in self._events(res, "CleanupFailed")]
            if not closed:
                break
            if left is not None:
                left -= len(closed)
            idle = self.idle_sessions(1)
        r.data["refunds_credited"] = self.amount(total)
        if failed:
            r.data["failed"] = failed
        return r

    def _cleanup_step(self, n: int, cap: int) -> int:
        """A count <= ``n`` whose cleanupOldSessionsUpTo transaction fits ``cap`` with the
        send's margin. Under a 2^24 cap nothing is read: MAINTENANCE_GAS_BUDGET keeps a step
        under 12.5M gas (15M with the margin). Under a smaller block gas limit it pages by
        count: a first guess from the costliest close measured, halved until its estimate fits."""
        from ..chain.send import TX_GAS_CAP

        if cap >= TX_GAS_CAP:
            return n
        n = max(1, min(n, (cap * 10 // 12 - CLEANUP_STEP_RESERVE) // CLEANUP_GAS_PER_SESSION))
        while True:
            if self._fitting_gas_limit(self.manager.call("cleanupOldSessionsUpTo", n), cap):
                return n
            if n == 1:
                raise BlockGasLimitError("one cleanup step (closing one idle session)", cap)
            n //= 2

    @_writes
    def withdraw_refunds(self) -> WriteResult:
        have = self.claimable_refunds()
        r = WriteResult("refunds-withdraw", dry_run=self.settings.dry_run)
        r.data["amount"] = have
        if have.units == 0:  # like cleanup: nothing to do is not an error, and nothing is sent
            return r
        res = self._send(self.manager.call("withdrawRefunds"),
                         description=f"withdraw {have.human()} of refunds")
        r.txs.append(res)
        return r

    @_writes
    def update_config(self, *, min_balance: Optional[str] = None, max_age: Optional[int] = None,
                      pool_size: Optional[int] = None, fee_per_byte_req: Optional[str] = None,
                      fee_per_byte_res: Optional[str] = None,
                      max_fee_per_response: Optional[str] = None,
                      request_timeout: Optional[int] = None,
                      grant_duration: Optional[int] = None) -> WriteResult:
        c = self._config_tuple()
        owner = self.owner()
        if owner != self.address:
            raise NotAuthorizedError(f"{self.address} is not the contract owner ({owner})",
                                     hint="only the deployer may change the configuration")
        for name, v in (("max age", max_age), ("pool size", pool_size),
                        ("request timeout", request_timeout), ("grant duration", grant_duration)):
            if v is not None and v < 0:
                raise InputError(name, str(v), "must not be negative")
        self._check_config_bounds(c, min_balance, max_age, pool_size, fee_per_byte_req,
                                  fee_per_byte_res, max_fee_per_response, request_timeout)
        if grant_duration is not None and not MIN_GRANT_DURATION <= grant_duration <= MAX_GRANT_DURATION:
            raise InputError("--grant-duration", str(grant_duration),
                             f"from {MIN_GRANT_DURATION} s (10 minutes) to {MAX_GRANT_DURATION} s "
                             f"(30 days)")
        r = WriteResult("config-update", dry_run=self.settings.dry_run)
        m = self.manager
        # NOTE: setRequestTimeout must not exceed maxSessionAge, and updateConfig's age must not be
        # below the timeout: order the two calls so the intermediate state is valid.
        def do_timeout():
            if request_timeout is not None:
                r.txs.append(self._send(m.call("setRequestTimeout", request_timeout),
                                        description=f"set the request timeout to {request_timeout}s"))
        def do_config():
            if min_balance is not None or max_age is not None or pool_size is not None:
                mb = self.parse(min_balance, "minimum balance") if min_balance is not None else c[3]
                ma = max_age if max_age is not None else c[4]
                ps = pool_size if pool_size is not None else c[5]
                r.txs.append(self._send(m.call("updateConfig", mb, ma, ps),
                                        description=f"update config: min balance "
                                        f"{format_amount(mb, self.decimals)}, max age {ma}s, pool {ps}"))
        if request_timeout is not None and max_age is not None and request_timeout > c[4]:
            do_config(); do_timeout()
        else:
            do_timeout(); do_config()
        if fee_per_byte_req is not None or fee_per_byte_res is not None or max_fee_per_response is not None:
            fq = self.parse(fee_per_byte_req, "fee per byte (request)", allow_zero=True) \
                if fee_per_byte_req is not None else c[7]
            fs = self.parse(fee_per_byte_res, "fee per byte (response)", allow_zero=True) \
                if fee_per_byte_res is not None else c[8]
            ft = self.parse(max_fee_per_response, "max fee per response") \
                if max_fee_per_response is not None else c[9]
            r.txs.append(self._send(m.call("setFees", fq, fs, ft), description="set fees"))
        if grant_duration is not None:
            r.txs.append(self._send(m.call("setGrantDuration", grant_duration),
                                    description=f"set the pool grant duration to {grant_duration}s"))
        if not r.txs:
            raise InputError("config update", "", "nothing to change",
                             hint="pass at least one of --min-balance, --max-age, --pool-size, "
                                  "--fee-per-byte-req, --fee-per-byte-res, --max-fee-per-response, "
                                  "--request-timeout, --grant-duration")
        self._config_raw = None
        if not self.settings.dry_run:
            r.data["config"] = self.config()
        return r

    def _check_config_bounds(self, c: tuple, min_balance, max_age, pool_size, fee_req, fee_res,
                             fee_total, timeout) -> None:
        """The contract's documented bounds (it enforces them with InvalidConfig; checked here
        first for a clear message and nothing sent)."""
        d, sym = self.decimals, self.symbol
        if max_age is not None and max_age > MAX_SESSION_AGE:
            raise InputError("--max-age", str(max_age), f"at most {MAX_SESSION_AGE} s (365 days)")
        if timeout is not None and timeout > MAX_REQUEST_TIMEOUT:
            raise InputError("--request-timeout", str(timeout),
                             f"at most {MAX_REQUEST_TIMEOUT} s (7 days)")
        age = max_age if max_age is not None else int(c[4])
        if timeout is not None and timeout > age:
            raise InputError("--request-timeout", str(timeout), f"above the max session age "
                             f"({age} s)")
        if max_age is not None and timeout is None and int(c[10]) > max_age:
            raise InputError("--max-age", str(max_age), f"below the request timeout "
                             f"({int(c[10])} s)")
        if pool_size is not None and pool_size > MAX_POOL_SIZE:
            raise InputError("--pool-size", str(pool_size), f"at most {MAX_POOL_SIZE}")
        if min_balance is not None and self.parse(min_balance, "minimum balance") > 10 ** (d + 6):
            raise InputError("--min-balance", min_balance, f"at most 1000000 {sym}")
        total = self.parse(fee_total, "max fee per response") if fee_total is not None else int(c[9])
        if fee_total is not None and total > 1000 * 10**d:
            raise InputError("--max-fee-per-response", fee_total, f"at most 1000 {sym}")
        for opt, text, cur in (("--fee-per-byte-req", fee_req, c[7]),
                               ("--fee-per-byte-res", fee_res, c[8])):
            v = self.parse(text, opt, allow_zero=True) if text is not None else int(cur)
            if v > total and (text is not None or fee_total is not None):
                raise InputError(opt if text is not None else "--max-fee-per-response",
                                 text if text is not None else fee_total,
                                 f"a per-byte fee ({format_amount(v, d)} {sym}) may not exceed "
                                 f"the max fee per response ({format_amount(total, d)} {sym})")

    @_writes
    def sweep(self, to: str, token: Optional[str] = None) -> WriteResult:
        """Owner only: send tokens the manager holds but owes nobody to ``to`` (for the fee
        token its balance minus the credited refunds; any other token all of it). Nothing to
        sweep: nothing sent."""
        dest = self.address_arg(to, "recipient address")
        owner = self.owner()
        if owner != self.address:
            raise NotAuthorizedError(f"{self.address} is not the contract owner ({owner})",
                                     hint="only the owner may sweep")
        fee_token = self.token.address
        tok = self.address_arg(token, "--token") if token else fee_token
        erc = contract_at(tok, "ERC20")
        try:
            held, claimable = self._calls([erc.call("balanceOf", self._mgr.address),
                                           self._mgr.call("totalClaimable")],
                                          ["balanceOf", "totalClaimable"])
        except RpcError:
            # NOTE: "0x" (no code) or garbage from balanceOf is the token's fault, not the node's
            code = self._raw("eth_getCode", [tok, "latest"], "code lookup")
            if code in (None, "", "0x"):
                raise NoContractError(tok, "no contract code at the --token address") from None
            raise InputError("--token", tok, "not an ERC-20 token (balanceOf failed)") from None
        units = max(0, int(held) - int(claimable)) if tok == fee_token else int(held)
        r = WriteResult("sweep", dry_run=self.settings.dry_run)
        is_fee = tok == fee_token
        r.data.update({"token": tok, "to": dest,
                       "amount": self.amount(units) if is_fee else str(units)})
        if not units:
            r.data["note"] = "nothing to sweep"
            return r
        shown = f"{format_amount(units, self.decimals)} {self.symbol}" if is_fee \
            else f"{units} units of {tok}"
        res = self._send(self.manager.call("sweep", tok, dest),
                         description=f"sweep {shown} to {dest}")
        r.txs.append(res)
        return r

    @_writes
    def deploy(self, ai_address: str) -> WriteResult:
        from ..artifacts import load_artifact

        ai = self.address_arg(ai_address, "DTN router address (--ai)")
        _ = self.chain_id
        from ..chain.abi import constructor_data, to_hex
        from ..chain.send import Deploy

        code = self._raw("eth_getCode", [ai, "latest"], "code lookup")
        if code in (None, "", "0x"):
            raise NoContractError(ai, "no contract code at the DTN router address (--ai)")
        probe = contract_at(ai, "IDtnAi").call("feeToken")
        token = probe.decode(self._raw(*probe.request(), "feeToken() of --ai"))
        art = load_artifact("AdvancedSessionManager")
        r = WriteResult("deploy", dry_run=self.settings.dry_run)
        res = self._send(Deploy(to_hex(constructor_data(art["abi"], art["bytecode"], ai))),
                         description="deploy AdvancedSessionManager")
        r.txs.append(res)
        r.data.update({"ai": ai, "fee_token": token, "contract": res.contract_address,
                       "compiler": art.get("compiler")})
        return r

    def check_model(self, model: str, active: Optional[tuple] = None) -> tuple:
        """(ok, detail) of "does the router know ``model``": a request simulated as the manager
        would send it, from one of the manager's active sessions (the router checks the session
        and the value before the model). ok is None when it cannot be told (no active session,
        or another revert). ``active``: getActiveSessions(0, 1) if already read. Up to three
        round trips (none when there is no active session and ``active`` is given)."""
        from ..chain.abi import keccak
        from .base import system_trust_routing

        m = self._mgr
        if active is None:
            (active,) = self._calls([m.call("getActiveSessions", 0, 1)], "getActiveSessions")
        ids = active[0]
        if not ids:
            return None, (f"{model}: not checked (the manager has no active session to simulate "
                          f"a request from; `dtnsess create AMOUNT` makes one)")
        (raw,) = self._calls([m.call("getSession", int(ids[0]))], "getSession")
        dtn_sid = int(self._session_view(raw, symbol="").dtn_session_id)
        manager = self.manager_address
        call = self.router.call(
            "request", dtn_sid, keccak(model), system_trust_routing(),
            (b"", b"", 1, 0, 0, 0), (b"\x00" * 4, b"\x00" * 4, manager), manager, 0)
        ((ok, err),) = self._batch([call.request(sender=manager)], "request (simulated)")
        if ok:
            return True, f"{model} is registered (a request simulates)"
        reason = getattr(err, "reason", None) or err.message
        if "Model does not exist" in reason:
            raise InputError("model", model, "the DTN router says \"Model does not exist\"",
                             hint="use a registered full name (`dtnsess models`, --model, "
                                  "DTNSESS_MODEL)")
        return None, f"{model}: not checked (the simulated request reverts: {reason})"

    def doctor(self) -> list:
        from .readviews import Check

        checks: list[Check] = []

        def run(name, fn, required=True):
            try:
                ok, detail = fn()
            except DtnsessError as exc:
                checks.append(Check(name, False, exc.message, required, int(exc.exit_code)))
                return False
            checks.append(Check(name, ok, detail, required))
            return ok

        s = self.settings
        from ..errors import redact_url

        # NOTE: two round trips: [block number, chain id, getConfig, ETH balance], then the
        # token's [symbol, balance, allowance]; each check still reports on its own
        try:
            me = self.address
            key_error = None
        except DtnsessError as exc:
            me, key_error = None, exc
        def skipped(why: str) -> list:
            """The checks the failed one stops: each reported, none silently dropped."""
            for name in ("chain id", "contract", "fee token", "model", "ETH for gas"):
                if not any(c.name == name for c in checks):
                    checks.append(Check(name, None, f"skipped: {why}"))
            return checks

        def key():
            if key_error is not None:
                raise key_error
            return True, f"{me}" + (" (devnet dev account)" if s.devnet_key else "")

        if not run("rpc", lambda: (True, f"{redact_url(s.require_rpc())}")):
            run("key", key)  # needs no node
            return skipped("no RPC node")
        head = [("eth_blockNumber", []), ("eth_chainId", [])]
        try:
            # just getConfig(): the chain id is in head (_connect_requests adds it only while
            # the chain is unknown, i.e. before this client's first read)
            connect = self._connect_requests()[-1:] if s.contract else []
        except DtnsessError:  # a malformed address: the contract check below reports it
            connect = []
        eth_read = [("eth_getBalance", [me, "latest"])] if me else []
        # the model check's first read rides along (an active session to simulate from)
        active = [self._mgr.call("getActiveSessions", 0, 1)] if connect else []
        try:
            rows = self._batch(head + connect + active + eth_read,
                               ["block", "chain id"] + ["getConfig()"] * len(connect)
                               + ["getActiveSessions"] * len(active) + ["balance"])
        except DtnsessError as exc:
            checks[-1] = Check("rpc", False, exc.message, code=int(exc.exit_code))
            run("key", key)
            return skipped("the RPC node does not answer")
        ok, block = rows[0]
        checks[-1] = Check("rpc", ok, f"{redact_url(s.require_rpc())} at block {int(block, 16)}"
                           if ok else block.message, code=1 if ok else int(block.exit_code))
        if not ok:
            run("key", key)
            return skipped("the RPC node does not answer")

        def chain():
            ok, cid = rows[1]
            if not ok:
                raise cid
            self._check_chain(int(cid, 16))
            return True, f"{self._chain_id}" + (
                "" if s.chain_id else " (not pinned: set --chain-id or DTNSESS_CHAIN_ID)")
        if not run("chain id", chain):
            ok, cid = rows[1]
            if not ok:
                run("key", key)
                return skipped("no chain id")
            # NOTE: the wrong chain, but the checks below still tell what is there (doctor
            # sends nothing; the pin still stops every other command)
            self._chain_id = int(cid, 16)

        def contract():
            addr = self.manager_address  # ConfigError / InputError without a usable address
            self._take_connect(rows[2:2 + len(connect)], connect)
            return True, f"{addr} has code, AdvancedSessionManager (getConfig ok)"
        contract_ok = run("contract", contract)
        token = None
        if contract_ok and me:
            try:
                token = self._token_position()
            except DtnsessError as exc:
                token = exc
        if contract_ok:
            run("fee token", lambda: (True, f"{self.symbol} at {self.token.address}, "
                                             f"{self.decimals} decimals"))
            def model():
                ok, got = rows[2 + len(connect)]
                if not ok:
                    raise got
                return self.check_model(s.model, got)
            run("model", model)

        if run("key", key):
            def eth():
                ok, bal = rows[-1]
                if not ok:
                    raise bal
                bal = int(bal, 16)
                if bal == 0:
                    raise InsufficientFundsError("ETH for gas", "0 ETH", "some",
                                                 hint=f"send ETH to {me}")
                return True, f"{format_amount(bal, 18)} ETH"
            run("ETH for gas", eth)
            if contract_ok:
                if isinstance(token, DtnsessError):
                    checks.append(Check("token balance", False, token.message, False))
                elif token is not None:
                    bal, allowed = self.amount(token[0]), self.amount(token[1])
                    checks.append(Check("token balance", bal.units > 0, bal.human(), False))
                    checks.append(Check("allowance", None, allowed.human()
                                        if allowed.units < MAX_UINT256 else "unlimited", False))
        return checks
