"""The AdvancedSessionManager, its fee token and DTN as Python methods.

Methods mirror the contract's functions in snake_case, take token amounts as exact human
strings or Amounts, return plain dataclasses and never print. Every write goes through
``tx.send_and_wait``. web3 is imported here, when a command runs, never at start-up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .config import Settings, check_address
from .errors import (
    ChainMismatchError,
    ConfigError,
    DtnsessError,
    InputError,
    InsufficientFundsError,
    NoContractError,
    NotAuthorizedError,
    WaitTimeoutError,
)
from .units import Amount, format_amount, parse_amount

REQUEST_STATUS = {0: "none", 1: "pending", 2: "succeeded", 3: "failed"}
MAX_UINT256 = 2**256 - 1
DEFAULT_CALLBACK_GAS_WEI = 300_000
AGGREGATION_ANY = 0

ERC20_ABI = [
    {"type": "function", "name": n, "stateMutability": "view", "inputs": i,
     "outputs": [{"name": "", "type": o}]}
    for n, i, o in (
        ("decimals", [], "uint8"),
        ("symbol", [], "string"),
        ("balanceOf", [{"name": "a", "type": "address"}], "uint256"),
        ("allowance", [{"name": "o", "type": "address"}, {"name": "s", "type": "address"}], "uint256"),
    )
] + [
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "value", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
    {"type": "event", "name": "Transfer", "anonymous": False, "inputs": [
        {"name": "from", "type": "address", "indexed": True},
        {"name": "to", "type": "address", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False}]},
    {"type": "event", "name": "Approval", "anonymous": False, "inputs": [
        {"name": "owner", "type": "address", "indexed": True},
        {"name": "spender", "type": "address", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False}]},
]


# --------------------------------------------------------------------------- result types

@dataclass
class ConfigView:
    manager: str
    owner: str
    ai: str
    fee_token: str
    token_symbol: str
    token_decimals: int
    min_session_balance: Amount
    max_session_age: int
    session_pool_size: int
    pool_length: int
    fee_per_byte_req: Amount
    fee_per_byte_res: Amount
    total_fee_per_res: Amount
    request_timeout: int
    active_count: int


@dataclass
class SessionView:
    session_id: int
    owner: str
    balance: Amount
    last_used: int
    active: bool
    request_count: int
    dtn_session_id: int
    pending_requests: int
    last_request_at: int
    pooled: bool
    dtn_balance: Optional[Amount]
    closable_at: int = 0  # when pending requests stop blocking close/renew (0: none pending)
    closing: bool = False
    pending_since: int = 0


@dataclass
class Balances:
    address: str
    eth: Amount
    token: Amount
    allowance: Amount
    claimable_refunds: Amount
    token_address: str
    spender: str


@dataclass
class RequestView:
    request_id: str
    session_id: int
    user: str
    created_at: int
    status: str


@dataclass
class ResponseView:
    request_id: str
    status: str  # pending | succeeded | failed | unknown
    manager_status: str
    message: str
    answer: Optional[str]
    response_hex: Optional[str] = None
    session_id: Optional[int] = None
    user: Optional[str] = None
    created_at: Optional[int] = None
    note: Optional[str] = None


@dataclass
class WriteResult:
    """A write's outcome: the transactions sent (or simulated) and what they produced."""

    action: str
    txs: list = field(default_factory=list)  # tx.TxResult
    data: dict = field(default_factory=dict)
    dry_run: bool = False

    def to_dict(self) -> dict:
        out = {"action": self.action, "dry_run": self.dry_run}
        out.update(self.data)
        out["transactions"] = [t.summary() for t in self.txs]
        return out


@dataclass
class Check:
    name: str
    ok: Optional[bool]  # None = skipped / informational
    detail: str
    required: bool = True


# --------------------------------------------------------------------------- helpers

def parse_session_id(text: Any) -> int:
    try:
        v = int(str(text).strip(), 10)
    except ValueError:
        raise InputError("session id", str(text), "not a whole number") from None
    if v <= 0:
        raise InputError("session id", str(text), "session ids start at 1")
    return v


def parse_request_id(text: str) -> bytes:
    s = (text or "").strip()
    h = s[2:] if s[:2].lower() == "0x" else s
    if len(h) != 64:
        raise InputError("request id", text, "expected 0x followed by 64 hex digits")
    try:
        return bytes.fromhex(h)
    except ValueError:
        raise InputError("request id", text, "not hex") from None


def routing_id(name: str, prefix: str = "") -> bytes:
    """A namespace or node id: 0x-32-byte hex as is, else keccak256(abi.encodePacked(name))."""
    from eth_utils import keccak

    s = (name or "").strip()
    if not s:
        raise InputError("routing name", name, "empty")
    if s[:2].lower() == "0x" and len(s) == 66:
        try:
            return bytes.fromhex(s[2:])
        except ValueError:
            raise InputError("routing id", name, "not hex") from None
    return keccak(text=prefix + s)


def node_routing_id(name: str) -> bytes:
    """``--node tester.node1`` -> keccak256(abi.encodePacked("node.tester.node1"))."""
    s = (name or "").strip()
    if s[:2].lower() == "0x" and len(s) == 66:
        return routing_id(s)
    return routing_id(s if s.startswith("node.") else "node." + s)


def system_trust_routing() -> tuple:
    from eth_abi import encode as abi_encode
    from eth_utils import keccak

    # NOTE: system trust hashes with abi.encode (not encodePacked), as the deployed DTN does
    ns = keccak(abi_encode(["string"], ["trust.system.authored"]))
    return ([ns], [], 1, 8, AGGREGATION_ANY)


def decode_text_answer(data: bytes) -> Optional[str]:
    """A text answer is abi.encode(string); None when the bytes are not that."""
    if not data:
        return ""
    from eth_abi import decode as abi_decode

    try:
        (text,) = abi_decode(["string"], bytes(data))
        return text
    except Exception:
        return None


def _hex(b: Any) -> str:
    return "0x" + bytes(b).hex()


# --------------------------------------------------------------------------- the client

class Client:
    """One connection to one AdvancedSessionManager; caches what does not change per run."""

    def __init__(self, settings: Settings, ui: Any, *, receipt_timeout: float = 120.0) -> None:
        self.settings = settings
        self.ui = ui
        self.receipt_timeout = receipt_timeout
        self._w3 = None
        self._account = None
        self._chain_id: Optional[int] = None
        self._manager = None
        self._config_raw: Optional[tuple] = None
        self._token = None
        self._router = None
        self._symbol: Optional[str] = None
        self._txctx = None
        self._errors = None

    # ---------------------------------------------------------------- connection
    @property
    def w3(self):
        if self._w3 is None:
            url = self.settings.require_rpc()
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"unsupported RPC URL scheme in {url.split(':', 1)[0]!r}",
                                  hint="use an http:// or https:// JSON-RPC endpoint")
            import requests
            from web3 import Web3
            from web3.providers.rpc.utils import ExceptionRetryConfiguration

            provider = Web3.HTTPProvider(
                url, request_kwargs={"timeout": 30},
                # NOTE: few retries: a down node should fail in seconds, not after a long backoff
                exception_retry_configuration=ExceptionRetryConfiguration(
                    errors=(ConnectionError, requests.HTTPError, requests.Timeout),
                    retries=1, backoff_factor=0.1),
                # NOTE: web3 asks eth_chainId before every contract call (twice with its
                # validation); the chain id of one run is fixed (checked in `chain_id`), so cache it.
                # (No validation threshold: it costs an eth_chainId of its own, and only
                # block-dependent requests use it.)
                cache_allowed_requests=True, cacheable_requests={"eth_chainId"},
                request_cache_validation_threshold=None,
            )
            self._w3 = Web3(provider)
        return self._w3

    def _call(self, thunk, what: str):
        """A read: node trouble becomes RpcError, a revert a decoded RevertError."""
        from . import tx

        try:
            return thunk()
        except DtnsessError:
            raise
        except Exception as exc:
            data = tx.revert_data_from_exception(exc)
            if data is not None:
                raise self._read_ctx().revert_error(data, what) from None
            raise tx.to_rpc_error(exc, self.settings.rpc_url) from exc

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._check_chain(self._call(lambda: self.w3.eth.chain_id, "chain id"))
        return self._chain_id

    def _check_chain(self, cid: int) -> None:
        expected = self.settings.chain_id
        if expected is not None and cid != expected:
            src = self.settings.sources.get("chain_id", "the configuration")
            raise ChainMismatchError(expected, cid, source=src)
        self._chain_id = cid

    def address_arg(self, value: str, what: str = "address") -> str:
        from eth_utils import is_checksum_address, to_checksum_address

        v = check_address(value, what)
        body = v[2:]
        if body != body.lower() and body != body.upper() and not is_checksum_address(v):
            raise InputError(what, value, "bad checksum (mixed case that is not EIP-55)")
        return to_checksum_address(v)

    @property
    def manager_address(self) -> str:
        return self.address_arg(self.settings.require_contract(), "contract address")

    @property
    def _mgr(self):
        """The manager's contract object (no round trip; ``manager`` is the checked one)."""
        if self._manager is None:
            from .artifacts import load_artifact

            abi = load_artifact("AdvancedSessionManager")["abi"]
            self._manager = self.w3.eth.contract(address=self.manager_address, abi=abi)
        return self._manager

    @property
    def manager(self):
        # NOTE: the chain id and getConfig() before the first use of the address, whatever it
        # is: a view of a codeless address otherwise surfaces as a node error
        self._config_tuple()
        return self._mgr

    def _config_tuple(self) -> tuple:
        if self._config_raw is None:
            self._connect()
        return self._config_raw

    def _connect_requests(self) -> list:
        """What ``_take_connect`` checks: the chain id (unless known) and getConfig()."""
        head: list = [] if self._chain_id is not None else [("eth_chainId", [])]
        return head + [self._mgr.functions.getConfig()]

    def _take_connect(self, rows: list) -> None:
        """Check the chain id, then getConfig(); only when getConfig() fails is the code looked
        at, to tell "no contract code" from "not an AdvancedSessionManager"."""
        rows = list(rows)
        if self._chain_id is None:
            ok, cid = rows.pop(0)
            if not ok:
                raise cid
            self._check_chain(int(cid, 16))
        ok, cfg = rows.pop(0)
        if not ok:
            addr = self._mgr.address
            (code,) = self._values(self._batch([("eth_getCode", [addr, "latest"])],
                                               "code lookup"))
            if code in (None, "", "0x"):
                raise NoContractError(addr)
            raise NoContractError(addr, "not an AdvancedSessionManager (getConfig() failed)")
        self._config_raw = tuple(cfg)

    def _connect(self, also: Sequence[Any] = (), what: Any = "read") -> list:
        """Chain id and getConfig() in one round trip, with ``also`` (reads that need only the
        manager's address) riding along; returns the results of ``also``."""
        head = self._connect_requests()
        labels = what if isinstance(what, str) else ["getConfig()"] * len(head) + list(what)
        rows = self._batch(head + list(also), labels)
        self._take_connect(rows[:len(head)])
        return self._values(rows[len(head):])

    @property
    def decimals(self) -> int:
        return int(self._config_tuple()[2])

    @property
    def token(self):
        if self._token is None:
            self._token = self.w3.eth.contract(address=self._config_tuple()[1], abi=ERC20_ABI)
        return self._token

    @property
    def symbol(self) -> str:
        if self._symbol is None:
            self._calls_and_symbol([], "symbol()")
        return self._symbol

    def _symbol_requests(self) -> list:
        """[symbol()] while the symbol is unknown (to ride in a batch; see ``_take_symbol``)."""
        if self._symbol is not None or not self.settings.contract:
            return []
        return [self.token.functions.symbol()]

    def _take_symbol(self, rows: list) -> None:
        if rows:
            ok, sym = rows[0]
            self._symbol = str(sym)[:16] if ok else "tokens"  # symbol() is optional in ERC-20

    @property
    def router(self):
        if self._router is None:
            from .artifacts import load_artifact

            abi = list(load_artifact("IDtnAi")["abi"])
            try:
                abi += load_artifact("IDtnRouterViews")["abi"]
            except DtnsessError:
                pass
            self._router = self.w3.eth.contract(address=self._config_tuple()[0], abi=abi)
        return self._router

    def amount(self, units: int) -> Amount:
        return Amount(int(units), self.decimals, self.symbol)

    def parse(self, text: str, what: str = "amount", allow_zero: bool = False) -> int:
        return parse_amount(text, self.decimals, what=what, allow_zero=allow_zero)

    # ---------------------------------------------------------------- keys and sending
    @property
    def account(self):
        if self._account is None:
            from .signer import load_account

            self._account = load_account(self.settings)
        return self._account

    @property
    def address(self) -> str:
        return self.account.address

    def _error_decoder(self):
        if self._errors is None:
            from . import tx
            from .artifacts import all_abis

            try:
                abis = list(all_abis().values())
            except DtnsessError:
                abis = []
            self._errors = tx.ErrorDecoder(abis)
        return self._errors

    def _read_ctx(self):
        """A context for reads: decodes reverts and looks up fees; needs no key."""
        from . import tx

        dec = None
        try:
            dec = self.decimals if self._config_raw is not None else None
        except DtnsessError:
            pass
        return tx.TxContext(w3=self.w3, account=None, chain_id=self._chain_id or 0,
                            ui=self.ui, errors=self._error_decoder(), token_decimals=dec,
                            token_symbol=self._symbol or "", rpc_url=self.settings.rpc_url)

    @property
    def txctx(self):
        if self._txctx is None:
            from . import tx
            from .artifacts import load_artifact

            event_abis = [load_artifact("AdvancedSessionManager")["abi"],
                          load_artifact("IDtnAi")["abi"], ERC20_ABI]
            self._txctx = tx.TxContext(
                w3=self.w3, account=self.account, chain_id=self.chain_id, ui=self.ui,
                errors=self._error_decoder(), event_abis=event_abis, yes=self.settings.yes,
                receipt_timeout=self.receipt_timeout,
                token_decimals=self.decimals if self.settings.contract else None,
                token_symbol=self._symbol or "",
                symbol_lookup=(lambda: self.symbol) if self.settings.contract else None,
                rpc_url=self.settings.rpc_url,
            )
        return self._txctx

    def _send(self, fn, *, description: str, value: int = 0, token_cost: Optional[str] = None,
              follows: Any = None):
        """``tx.send_and_wait``; ``follows``: the TxResult this run sent just before. The token
        symbol, when still unknown, rides in the transaction's batch (results show amounts)."""
        from . import tx

        ctx = self.txctx
        sym = self._symbol_requests()

        def take(resps: list) -> None:
            self._take_symbol(self._rows(sym, resps, "symbol()"))
            ctx.token_symbol = self._symbol or ""

        return tx.send_and_wait(ctx, fn, value=value, description=description,
                                dry_run=self.settings.dry_run, confirm=True,
                                token_cost=token_cost,
                                follows=follows.next_facts if follows is not None else None,
                                also=self._requests(sym), on_also=take)

    def _events(self, res, name: str, address: Optional[str] = None) -> list:
        addr = address or self.manager.address
        return [e for e in res.events if e.name == name and e.address == addr]

    # ---------------------------------------------------------------- views
    def owner(self) -> str:
        return self._calls([self._mgr.functions.owner()], "owner()")[0]

    def config(self) -> ConfigView:
        c = self._config_tuple()
        (owner,) = self._calls_and_symbol([self._mgr.functions.owner()], "owner()")
        a = self.amount
        return ConfigView(
            manager=self.manager.address, owner=owner, ai=c[0], fee_token=c[1],
            token_symbol=self.symbol, token_decimals=int(c[2]), min_session_balance=a(c[3]),
            max_session_age=int(c[4]), session_pool_size=int(c[5]), pool_length=int(c[6]),
            fee_per_byte_req=a(c[7]), fee_per_byte_res=a(c[8]), total_fee_per_res=a(c[9]),
            request_timeout=int(c[10]), active_count=int(c[11]),
        )

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

    def _session_tuple(self, session_id: int) -> tuple:
        (t,) = self._calls([self._mgr.functions.getSession(session_id)], "getSession")
        if int(t[1], 16) == 0:
            raise InputError("session", str(session_id), "no such session")
        return t

    def session(self, session_id: int) -> SessionView:
        return self._session_view(self._session_tuple(session_id))

    def sessions(self, user: Optional[str] = None) -> list:
        user = self.address_arg(user, "user address") if user else self.address
        (ids,) = self._calls([self._mgr.functions.getUserSessions(user)], "getUserSessions")
        if not ids:
            return []
        (views,) = self._calls_and_symbol([self._mgr.functions.getSessions(list(ids))],
                                          "getSessions")
        return [self._session_view(v) for v in views]

    def balances(self, user: Optional[str] = None) -> Balances:
        user = self.address_arg(user, "address") if user else self.address
        m = self._mgr
        # two round trips: [chain id, getConfig, ETH, refunds], then what needs the token address
        eth, claim = self._calls([("eth_getBalance", [user, "latest"]),
                                  m.functions.claimableRefunds(user)], ["balance", "claimableRefunds"])
        eth = int(eth, 16)
        bal, allw = self._calls_and_symbol([self.token.functions.balanceOf(user),
                                            self.token.functions.allowance(user, m.address)],
                                           ["balanceOf", "allowance"])
        return Balances(address=user, eth=Amount(eth, 18, "ETH"), token=self.amount(bal),
                        allowance=self.amount(allw), claimable_refunds=self.amount(claim),
                        token_address=self.token.address, spender=m.address)

    def allowance(self, user: Optional[str] = None) -> Amount:
        user = user or self.address
        (units,) = self._calls_and_symbol(
            [self.token.functions.allowance(user, self._mgr.address)], "allowance")
        return self.amount(units)

    def claimable_refunds(self, user: Optional[str] = None) -> Amount:
        user = user or self.address
        (units,) = self._calls([self._mgr.functions.claimableRefunds(user)], "claimableRefunds")
        return self.amount(units)

    def pool_status(self) -> dict:
        m = self._mgr
        (size, max_size), ids = self._calls([m.functions.getPoolStatus(),
                                             m.functions.getPoolSessions()],
                                            ["getPoolStatus", "getPoolSessions"])
        return {"pool_size": int(size), "max_size": int(max_size),
                "sessions": [int(i) for i in ids]}

    def request_info(self, request_id: bytes) -> RequestView:
        ((sid, user, created, status),) = self._calls(
            [self._mgr.functions.requests(request_id)], "requests")
        return RequestView(_hex(request_id), int(sid), user, int(created),
                           REQUEST_STATUS.get(int(status), str(status)))

    # ---------------------------------------------------------------- batched reads
    # A read is a bound view function (eth_call at "latest") or a raw ``(method, params)``
    # request; all go through ``tx.rpc_batch`` (one round trip, one by one for a node without
    # batches). A contract call's revert is decoded by selector as in ``_call``.

    @staticmethod
    def _requests(reads: Sequence[Any]) -> list:
        from . import tx

        out = []
        for r in reads:
            if isinstance(r, tuple):
                out.append(r)
            else:
                to, data, _ = tx._call_parts(r)
                out.append(("eth_call", [{"to": to, "data": data}, "latest"]))
        return out

    def _rows(self, reads: Sequence[Any], resps: Sequence[dict], what: Any) -> list:
        """``(ok, value)`` per read: the decoded result, or the DtnsessError it failed with."""
        from . import tx

        ctx = self._read_ctx()
        out = []
        for i, (r, resp) in enumerate(zip(reads, resps)):
            label = what if isinstance(what, str) else what[i]
            if "error" in resp or "result" not in resp:
                exc = tx.response_exception(resp)
                data = tx.revert_data_from_exception(exc)
                out.append((False, ctx.revert_error(data, label) if data is not None
                            else tx.to_rpc_error(exc, self.settings.rpc_url)))
            elif isinstance(r, tuple):
                out.append((True, resp["result"]))
            else:
                try:
                    out.append((True, tx._decode_return(ctx, r, resp["result"])))
                except Exception as exc:  # e.g. "0x" from an address without code
                    out.append((False, tx.to_rpc_error(exc, self.settings.rpc_url)))
        return out

    def _batch(self, reads: Sequence[Any], what: Any) -> list:
        from . import tx

        if not reads:
            return []
        resps = tx.rpc_batch(self._read_ctx(), self._requests(reads), "read")
        return self._rows(reads, resps, what)

    @staticmethod
    def _values(rows: list) -> list:
        for ok, v in rows:
            if not ok:
                raise v
        return [v for _, v in rows]

    def _calls(self, fns: Sequence[Any], what: Any) -> list:
        """The results of several reads, in order, in one round trip; the first failed read
        raises its error. ``what``: one label, or one per read. The first batch of a run also
        carries the chain id and getConfig() (``_connect``)."""
        if self._config_raw is None and self.settings.contract:
            return self._connect(fns, what)
        return self._values(self._batch(fns, what))

    def _calls_and_symbol(self, fns: Sequence[Any], what: Any) -> list:
        """``_calls`` with the token's symbol() riding along while it is unknown."""
        self._config_tuple()
        sym = self._symbol_requests()
        labels = what if isinstance(what, str) else list(what) + ["symbol()"]
        rows = self._batch(list(fns) + sym, labels)
        self._take_symbol(rows[len(fns):])
        return self._values(rows[:len(fns)])

    def request_infos(self, request_ids: Sequence[bytes]) -> list:
        """``requests(id)`` of many ids in one round trip (a JSON-RPC batch), in order."""
        ids = [bytes(i) for i in request_ids]
        if not ids:
            return []
        m = self._mgr
        rows = self._calls([m.functions.requests(rid) for rid in ids], "requests")
        return [RequestView(_hex(rid), int(r[0]), r[1], int(r[2]),
                            REQUEST_STATUS.get(int(r[3]), str(r[3]))) for rid, r in zip(ids, rows)]

    def requests(self, user: Optional[str] = None, pending_only: bool = False,
                 limit: int = 200) -> list:
        """The user's newest ``limit`` requests, oldest first (2-3 round trips for any count)."""
        user = self.address_arg(user, "user address") if user else self.address
        m = self._mgr
        ((ids, total),) = self._calls([m.functions.getUserRequests(user, 0, limit)],
                                      "getUserRequests")
        if int(total) > limit:  # only the newest `limit`
            ((ids, _),) = self._calls([m.functions.getUserRequests(user, int(total) - limit,
                                                                    limit)], "getUserRequests")
        out = self.request_infos([bytes(i) for i in ids])
        if pending_only:
            out = [r for r in out if r.status == "pending"]
        return out

    def response(self, request_id: Any) -> ResponseView:
        rid = parse_request_id(request_id) if isinstance(request_id, str) else bytes(request_id)
        info = self.request_info(rid)
        if info.status == "none":
            raise InputError("request id", _hex(rid), "unknown to this session manager")
        from . import tx

        try:
            status, message, data = self.router.functions.fetchResponse(rid).call()
        except Exception as exc:
            revert = tx.revert_data_from_exception(exc)
            if revert is None:
                raise tx.to_rpc_error(exc, self.settings.rpc_url) from exc
            # "Request not completed" while pending (decoded by selector: Error(string))
            return ResponseView(_hex(rid), "pending", info.status, "", None,
                                session_id=info.session_id, user=info.user,
                                created_at=info.created_at)
        st = {1: "succeeded", 2: "failed"}.get(int(status), "unknown")
        answer = decode_text_answer(data) if st == "succeeded" else None
        note = None
        if info.status == "pending" and st in ("succeeded", "failed"):
            note = "answered, but the manager's callback did not run (run `settleRequest`)"
        return ResponseView(_hex(rid), st, info.status, message, answer,
                            response_hex=_hex(data) if answer is None and data else None,
                            session_id=info.session_id, user=info.user,
                            created_at=info.created_at, note=note)

    def wait_for_answer(self, request_id: Any, timeout: float, from_block: Optional[int] = None,
                        poll: float = 1.0) -> ResponseView:
        """Wait until the request is answered: look first (it may be answered already), then
        poll eth_getLogs from ``from_block`` for the manager's or the router's completion."""
        rid = parse_request_id(request_id) if isinstance(request_id, str) else bytes(request_id)
        from eth_utils import keccak

        first = self.response(rid)
        if first.status != "pending":
            return first
        topics = [[keccak(text="AIRequestCompleted(bytes32,uint256,address,uint8)"),
                   keccak(text="RequestCompleted(bytes32,uint8)")], rid]
        start = from_block if from_block is not None else self._call(
            lambda: self.w3.eth.block_number, "block number")
        deadline = time.monotonic() + timeout
        with self.ui.status(f"waiting for the answer to {_hex(rid)[:10]}…"):
            while True:
                head = self._call(lambda: self.w3.eth.block_number, "block number")
                if head >= start:
                    logs = self._call(lambda: self.w3.eth.get_logs({
                        "fromBlock": start, "toBlock": head,
                        "address": [self.manager.address, self.router.address],
                        "topics": topics}), "eth_getLogs")
                    if logs:
                        return self.response(rid)
                    start = head + 1
                if time.monotonic() >= deadline:
                    raise WaitTimeoutError("the answer", timeout, request_id=_hex(rid),
                                           hint=f"check later with `dtnsess response {_hex(rid)}`")
                time.sleep(min(poll, max(0.05, deadline - time.monotonic())))

    # ---------------------------------------------------------------- pre-checks
    def _owned_active(self, session_id: int, *, allow_grant: bool = False) -> SessionView:
        s = self._session_view(self._session_tuple(session_id), symbol=self._symbol or "")
        if not s.active:
            raise InputError("session", str(session_id), "the session is closed")
        if s.owner != self.address:
            if allow_grant:
                (grant,) = self._calls([self._mgr.functions.poolGrant(self.address)],
                                       "poolGrant")
                if int(grant) == session_id:
                    return s
            raise NotAuthorizedError(f"session {session_id} belongs to {s.owner}, not to "
                                     f"{self.address}")
        return s

    def _token_position(self) -> tuple:
        """(fee token balance, allowance for the manager) of the sender, in one round trip."""
        return tuple(self._calls_and_symbol(
            [self.token.functions.balanceOf(self.address),
             self.token.functions.allowance(self.address, self._mgr.address)],
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
        res = self._send(self.token.functions.approve(self.manager.address, target),
                         description=f"approve {shown} for the session manager")
        result.txs.append(res)
        result.data["approved"] = "unlimited" if approve_max else self.amount(target)
        return not self.settings.dry_run

    # ---------------------------------------------------------------- writes
    def approve(self, amount: Optional[str], unlimited: bool = False) -> WriteResult:
        units = MAX_UINT256 if unlimited else self.parse(amount or "", allow_zero=True)
        shown = "unlimited" if unlimited else f"{format_amount(units, self.decimals)} {self.symbol}"
        r = WriteResult("approve", dry_run=self.settings.dry_run)
        r.txs.append(self._send(self.token.functions.approve(self.manager.address, units),
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
        if not self._ensure_allowance(units, approve_max, r, allowed):
            r.data["note"] = f"dry run: {what} is simulated only after the approval"
            return None
        # NOTE: after an approval its nonce + 1 and its fees are reused (tx.send_and_wait)
        res = self._send(fn, description=describe(),
                         token_cost=f"{format_amount(units, self.decimals)} {self.symbol}",
                         follows=r.txs[-1] if r.txs else None)
        r.txs.append(res)
        return res

    def create_session(self, amount: str, approve_max: bool = False) -> WriteResult:
        units = self.parse(amount)
        cfg = self._config_tuple()
        if units < cfg[3]:
            raise InputError("amount", amount, f"below the minimum session balance "
                             f"{format_amount(cfg[3], self.decimals)} {self.symbol}")
        r = WriteResult("create", dry_run=self.settings.dry_run)
        res = self._pay_and_send(r, units, approve_max, self.manager.functions.createSession(units),
                                 lambda: f"create a session with "
                                         f"{format_amount(units, self.decimals)} {self.symbol}",
                                 "createSession")
        r.data["amount"] = self.amount(units)  # after the token reads: they bring the symbol
        if res is None:
            return r
        ev = self._events(res, "SessionCreated")
        r.data["session_id"] = int(ev[0].args["sessionId"]) if ev else (
            int(res.return_value) if res.return_value is not None else None)
        return r

    def renew_session(self, session_id: int, amount: str, approve_max: bool = False) -> WriteResult:
        units = self.parse(amount)
        s = self._owned_active(session_id)
        self._check_pending(s)
        r = WriteResult("renew", dry_run=self.settings.dry_run)
        res = self._pay_and_send(r, units, approve_max,
                                 self.manager.functions.renewSession(session_id, units),
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
            from .tx import requests_pending_error

            retry_after = s.closable_at  # fixed by the oldest unanswered request
            # NOTE: the chain's clock decides, not ours (they differ on dev chains, and by drift)
            now = self._call(lambda: self.w3.eth.get_block("latest")["timestamp"], "latest block")
            if now < retry_after:
                raise requests_pending_error(f"renewing session {s.session_id}", s.session_id,
                                             s.pending_requests, retry_after)

    def close_session(self, session_id: int) -> WriteResult:
        self._owned_active(session_id)
        r = WriteResult("close", dry_run=self.settings.dry_run)
        res = self._send(self.manager.functions.closeSession(session_id),
                         description=f"close session {session_id}")
        r.txs.append(res)
        r.data["closed"] = self._closed_from(res)
        return r

    def close_all_sessions(self) -> WriteResult:
        r = WriteResult("close-all", dry_run=self.settings.dry_run)
        mine = [s for s in self.sessions() if s.active and s.owner == self.address]
        if not mine:
            r.data["closed"] = []
            r.data["note"] = "no active sessions"
            return r
        # NOTE: the contract skips sessions whose pending requests still block close
        # (SessionCloseSkipped); when that is every one of them, refuse like close does.
        blocked = [s for s in mine if s.pending_requests and s.closable_at]
        if blocked and len(blocked) == len(mine):
            from .tx import requests_pending_error

            now = self._call(lambda: self.w3.eth.get_block("latest")["timestamp"], "latest block")
            first = min(blocked, key=lambda s: s.closable_at)
            if now < first.closable_at:
                raise requests_pending_error(f"closing all {len(mine)} of your sessions",
                                             first.session_id, first.pending_requests,
                                             first.closable_at)
        res = self._send(self.manager.functions.closeAllSessions(),
                         description=f"close all {len(mine)} of your sessions")
        r.txs.append(res)
        r.data["closed"] = self._closed_from(res)
        skipped = self._events(res, "SessionCloseSkipped")
        if skipped:
            r.data["skipped"] = [{"session_id": int(e.args["sessionId"]),
                                  "retry_after": int(e.args["retryAfter"])} for e in skipped]
        return r

    def _closed_from(self, res) -> list:
        credited = {int(e.args["sessionId"]): int(e.args["amount"])
                    for e in self._events(res, "RefundCredited")}
        return [{"session_id": int(e.args["sessionId"]), "refund": self.amount(e.args["refund"]),
                 "credited": int(e.args["sessionId"]) in credited}
                for e in self._events(res, "SessionClosed")]

    def _routing(self, namespaces: Sequence[str], nodes: Sequence[str]):
        if namespaces and nodes:
            raise InputError("routing", "--namespace/--node", "use either namespaces or nodes")
        if nodes:
            return ("nodes", ([], [node_routing_id(n) for n in nodes], 1, 8, AGGREGATION_ANY))
        if namespaces:
            return ("namespaces", [routing_id(n) for n in namespaces])
        return ("system", None)

    def make_ai_request(self, prompt: str, *, model: Optional[str] = None,
                        namespaces: Sequence[str] = (), nodes: Sequence[str] = (),
                        value: int = DEFAULT_CALLBACK_GAS_WEI,
                        session_id: Optional[int] = None) -> WriteResult:
        if not prompt or not prompt.strip():
            raise InputError("prompt", prompt, "empty")
        model = model or self.settings.model
        kind, routing = self._routing(namespaces, nodes)
        m = self.manager.functions
        if session_id is not None:
            self._owned_active(session_id, allow_grant=True)
            if kind == "namespaces":
                routing = (routing, [], 1, 8, AGGREGATION_ANY)
            elif kind == "system":
                routing = system_trust_routing()
            fn = m.makeAIRequestInSession(session_id, prompt, model, routing)
        elif kind == "nodes":
            fn = m.makeAIRequestWithRouting(prompt, model, routing)
        else:
            fn = m.makeAIRequest(prompt, model, routing or [])
        r = WriteResult("request", dry_run=self.settings.dry_run)
        try:
            res = self._send(fn, value=value, description=f"AI request to {model}")
        except InsufficientFundsError as exc:
            # Without a session the contract opens one with the minimum balance; say so.
            if session_id is None and "fee token" in exc.what and not self.active_session_ids():
                minimum = format_amount(self._config_tuple()[3], self.decimals)
                exc.hint = (f"you have no active session, so the contract would open one with "
                            f"{minimum} {self.symbol}: run `dtnsess create AMOUNT` first")
            raise
        r.txs.append(res)
        ev = self._events(res, "AIRequestSubmitted")
        rid = ev[0].args["requestId"] if ev else res.return_value
        r.data.update({"request_id": _hex(rid) if rid is not None else None,
                       "session_id": int(ev[0].args["sessionId"]) if ev else session_id,
                       "model": model, "routing": kind, "value_wei": str(value),
                       "block": res.block_number})
        created = self._events(res, "SessionCreated")
        if created:
            r.data["created_session"] = int(created[0].args["sessionId"])
        return r

    def active_session_ids(self) -> list:
        """The caller's usable sessions: its own active ones, plus a pool grant."""
        m = self._mgr
        own, grant = self._calls([m.functions.getUserActiveSessions(self.address),
                                  m.functions.poolGrant(self.address)], "getUserActiveSessions")
        ids = [int(i) for i in own]
        grant = int(grant)
        if grant and grant not in ids:
            try:
                if self.session(grant).active:
                    ids.append(grant)
            except InputError:
                pass
        return ids

    def add_to_pool(self, session_id: int) -> WriteResult:
        s = self._owned_active(session_id)
        if s.pooled:
            raise InputError("session", str(session_id), "already in the pool")
        ((size, max_size),) = self._calls([self._mgr.functions.getPoolStatus()],
                                          "getPoolStatus")
        if size >= max_size:
            raise InputError("session", str(session_id), f"the pool is full ({size}/{max_size})")
        r = WriteResult("pool-add", dry_run=self.settings.dry_run)
        r.txs.append(self._send(self.manager.functions.addToPool(session_id),
                                description=f"add session {session_id} to the pool"))
        r.data["session_id"] = session_id
        return r

    def get_from_pool(self) -> WriteResult:
        ((size, _),) = self._calls([self._mgr.functions.getPoolStatus()], "getPoolStatus")
        if not size:
            raise InputError("pool", "get", "the pool is empty")
        r = WriteResult("pool-get", dry_run=self.settings.dry_run)
        res = self._send(self.manager.functions.getFromPool(), description="take a session from the pool")
        r.txs.append(res)
        ev = self._events(res, "SessionTakenFromPool")
        r.data["session_id"] = int(ev[0].args["sessionId"]) if ev else (
            int(res.return_value) if res.return_value is not None else None)
        return r

    def idle_sessions(self, max_n: int) -> list:
        (ids,) = self._calls([self._mgr.functions.getIdleSessions(max_n)], "getIdleSessions")
        return [int(i) for i in ids]

    def gas_price(self) -> int:
        """The node's current gas price (eth_gasPrice), in wei."""
        return int(self._call(lambda: self.w3.eth.gas_price, "gas price"))

    def cleanup(self, max_n: int) -> WriteResult:
        r = WriteResult("cleanup", dry_run=self.settings.dry_run)
        idle = self.idle_sessions(max_n)
        r.data["idle"] = idle
        if not idle:
            r.data["closed"] = []
            return r
        res = self._send(self.manager.functions.cleanupOldSessionsUpTo(max_n),
                         description=f"clean up {len(idle)} idle session{'s' if len(idle) != 1 else ''}")
        r.txs.append(res)
        r.data["closed"] = self._closed_from(res)
        total = sum(int(e.args["amount"]) for e in self._events(res, "RefundCredited"))
        r.data["refunds_credited"] = self.amount(total)
        failed = self._events(res, "CleanupFailed")
        if failed:
            r.data["failed"] = [int(e.args["sessionId"]) for e in failed]
        return r

    def withdraw_refunds(self) -> WriteResult:
        have = self.claimable_refunds()
        r = WriteResult("refunds-withdraw", dry_run=self.settings.dry_run)
        r.data["amount"] = have
        if have.units == 0:  # like cleanup: nothing to do is not an error, and nothing is sent
            return r
        res = self._send(self.manager.functions.withdrawRefunds(),
                         description=f"withdraw {have.human()} of refunds")
        r.txs.append(res)
        return r

    def update_config(self, *, min_balance: Optional[str] = None, max_age: Optional[int] = None,
                      pool_size: Optional[int] = None, fee_per_byte_req: Optional[str] = None,
                      fee_per_byte_res: Optional[str] = None,
                      max_fee_per_response: Optional[str] = None,
                      request_timeout: Optional[int] = None) -> WriteResult:
        c = self._config_tuple()
        owner = self.owner()
        if owner != self.address:
            raise NotAuthorizedError(f"{self.address} is not the contract owner ({owner})",
                                     hint="only the deployer may change the configuration")
        for name, v in (("max age", max_age), ("pool size", pool_size),
                        ("request timeout", request_timeout)):
            if v is not None and v < 0:
                raise InputError(name, str(v), "must not be negative")
        r = WriteResult("config-update", dry_run=self.settings.dry_run)
        m = self.manager.functions
        # NOTE: setRequestTimeout must not exceed maxSessionAge, and updateConfig's age must not be
        # below the timeout: order the two calls so the intermediate state is valid.
        def do_timeout():
            if request_timeout is not None:
                r.txs.append(self._send(m.setRequestTimeout(request_timeout),
                                        description=f"set the request timeout to {request_timeout}s"))
        def do_config():
            if min_balance is not None or max_age is not None or pool_size is not None:
                mb = self.parse(min_balance, "minimum balance") if min_balance is not None else c[3]
                ma = max_age if max_age is not None else c[4]
                ps = pool_size if pool_size is not None else c[5]
                r.txs.append(self._send(m.updateConfig(mb, ma, ps),
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
            r.txs.append(self._send(m.setFees(fq, fs, ft), description="set fees"))
        if not r.txs:
            raise InputError("config update", "", "nothing to change",
                             hint="pass at least one of --min-balance, --max-age, --pool-size, "
                                  "--fee-per-byte-req, --fee-per-byte-res, --max-fee-per-response, "
                                  "--request-timeout")
        self._config_raw = None
        if not self.settings.dry_run:
            r.data["config"] = self.config()
        return r

    def deploy(self, ai_address: str) -> WriteResult:
        from .artifacts import load_artifact

        ai = self.address_arg(ai_address, "DTN router address (--ai)")
        _ = self.chain_id
        code = self._call(lambda: self.w3.eth.get_code(ai), "code lookup")
        if not code:
            raise NoContractError(ai, "no contract code at the DTN router address (--ai)")
        probe = self.w3.eth.contract(address=ai, abi=load_artifact("IDtnAi")["abi"])
        token = self._call(lambda: probe.functions.feeToken().call(), "feeToken() of --ai")
        art = load_artifact("AdvancedSessionManager")
        factory = self.w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        r = WriteResult("deploy", dry_run=self.settings.dry_run)
        res = self._send(factory.constructor(ai),
                         description="deploy AdvancedSessionManager")
        r.txs.append(res)
        r.data.update({"ai": ai, "fee_token": token, "contract": res.contract_address,
                       "compiler": art.get("compiler")})
        return r

    def request_batch(self, prompts: Sequence[str], *, model: Optional[str] = None,
                      namespaces: Sequence[str] = (), nodes: Sequence[str] = (),
                      value: int = DEFAULT_CALLBACK_GAS_WEI,
                      sessions: Optional[int] = None) -> dict:
        """Fan prompts out over the caller's usable sessions, pipelined (``tx.Pipeline``).

        DTN request ids have one-second resolution, so a session takes at most one request per
        second: with K sessions, each wave sends up to K transactions (one per session, nonces
        counted locally) without waiting in between, then collects their receipts; a session is
        used again one second after its last request was seen mined. A collision the simulation
        finds sends nothing and the prompt waits for a later second; one found in a receipt (the
        manager reverts ``RequestIdCollision``, so no request was made) is retried once.

        On the first error nothing more is sent; what was sent is waited for, and the result
        tells, per prompt: ``sent`` (request id), ``failed`` (no request was made), ``unknown``
        (check the tx hash before sending it again) or ``not sent``. Raises only when nothing
        was sent.
        """
        from collections import deque

        from . import tx

        prompts = list(prompts)
        if not prompts:
            raise InputError("prompts", "", "no prompts")
        for i, p in enumerate(prompts):
            if not p.strip():
                raise InputError(f"prompt {i + 1}", p, "empty")
        ids = self.active_session_ids()
        hint = "create sessions with `dtnsess create AMOUNT` (one session serves one request " \
               "per second)"
        if not ids:
            raise InputError("sessions", "", "you have no active session", hint=hint)
        if sessions is not None:
            if sessions < 1:
                raise InputError("--sessions", str(sessions), "must be at least 1")
            if len(ids) < sessions:
                raise InputError("--sessions", str(sessions),
                                 f"you have {len(ids)} usable active session"
                                 f"{'s' if len(ids) != 1 else ''}",
                                 hint=f"create {sessions - len(ids)} more with `dtnsess create "
                                      f"AMOUNT` (one session serves one request per second)")
            ids = ids[:sessions]
        model = model or self.settings.model
        kind, routing = self._routing(namespaces, nodes)
        if kind == "namespaces":
            routing = (routing, [], 1, 8, AGGREGATION_ANY)
        elif kind == "system":
            routing = system_trust_routing()
        m = self.manager.functions
        ctx = self.txctx
        n = len(prompts)
        entries = [{"index": i + 1, "prompt": p, "status": "not sent", "session_id": None,
                    "request_id": None, "tx_hash": None, "block": None, "block_timestamp": None}
                   for i, p in enumerate(prompts)]
        out = {"model": model, "sessions": ids, "requests": entries,
               "dry_run": self.settings.dry_run, "error": None}

        def call(i: int, sid: int) -> Any:
            return tx.Call(m.makeAIRequestInSession(sid, prompts[i], model, routing),
                           description=f"request {i + 1} in session {sid}", value=value, tag=i)

        if self.settings.dry_run:
            preps = tx.prepare_many(ctx, [call(i, ids[i % len(ids)]) for i in range(n)])
            for e, p in zip(entries, preps):
                e["session_id"] = ids[(e["index"] - 1) % len(ids)]
                if p.error is None:
                    e.update(status="simulated", gas_estimate=p.gas_estimate)
                else:
                    e.update(status="failed", error=p.error.message)
            return out

        pipe = tx.Pipeline(ctx)
        pipe.begin()
        queue = deque(range(n))
        deferred: dict[int, int] = {}  # simulation collisions per prompt (nothing sent)
        retried: set = set()  # prompts resent after a collision in a receipt
        ready_at = {sid: 0.0 for sid in ids}  # monotonic time a session may be used again
        stop: Optional[DtnsessError] = None
        confirmed = False
        sent_any = False
        gas_used = fee = 0
        with self.ui.progress("requests", n) as advance:
            while queue and stop is None:
                now = time.monotonic()
                free = [sid for sid in ids if ready_at[sid] <= now]
                if not free:
                    time.sleep(max(0.01, min(ready_at.values()) - now))
                    continue
                wave = [(queue.popleft(), sid) for sid in free[:len(queue)]]
                preps = tx.prepare_many(ctx, [call(i, sid) for i, sid in wave])
                to_send, later = [], []
                for (i, sid), p in zip(wave, preps):
                    err = p.error
                    if err is None:
                        to_send.append((i, sid, p))
                    elif getattr(err, "name", None) == "RequestIdCollision" \
                            and deferred.get(i, 0) < 3:
                        # the session already has a request this second: try a later one
                        deferred[i] = deferred.get(i, 0) + 1
                        ready_at[sid] = now + 1.0
                        later.append(i)
                    else:
                        entries[i].update(session_id=sid, status="failed", error=err.message)
                        stop = err
                        break
                if stop is not None:  # send only the prompts before the failed one
                    failed_i = next(i for i, _ in wave if entries[i]["status"] == "failed")
                    pos = [i for i, _ in wave].index(failed_i)
                    to_send = [t for t in to_send if [i for i, _ in wave].index(t[0]) < pos]
                queue.extendleft(reversed(later))
                if not confirmed and to_send:
                    # NOTE: one confirmation and one funds check for the whole batch, from the
                    # largest estimate of the first wave (requests cost about the same).
                    limit = max(p.gas_limit for _, _, p in to_send)
                    est = max(p.gas_estimate for _, _, p in to_send)
                    pipe.check_funds(limit * n, value * n, n)
                    pipe.confirm(f"{n} requests to {model} over {len(ids)} session"
                                 f"{'s' if len(ids) != 1 else ''}", est * n, limit * n, value * n)
                    confirmed = True
                sent = []
                for i, sid, p in to_send:
                    o = pipe.send(p)
                    sent.append((i, sid, o))
                    entries[i].update(session_id=sid, tx_hash=o.tx_hash)
                    if o.status != "sent":
                        stop = o.error
                        break
                sent_any = sent_any or any(o.status != "failed" for _, _, o in sent)
                outs = [o for _, _, o in sent]
                pipe.resolve_unknown(outs)
                pipe.collect(outs)
                seen = time.monotonic()
                collided = []
                for i, sid, o in sent:
                    ready_at[sid] = seen + 1.0
                    e = entries[i]
                    if o.result is not None and o.result.gas_used is not None:
                        gas_used += o.result.gas_used
                        fee += o.result.fee_wei
                    if o.status == "mined":
                        ev = [x for x in self._events(o.result, "AIRequestSubmitted")]
                        rid = ev[0].args["requestId"] if ev else None
                        e.update(status="sent", request_id=_hex(rid) if rid else None,
                                 block=o.result.block_number)
                        e.pop("error", None)
                        advance(1)
                    elif (o.status == "failed" and o.tx_hash and i not in retried
                          and getattr(o.error, "name", None) == "RequestIdCollision"):
                        collided.append(i)  # reverted: no request was made, safe to resend
                    else:
                        e.update(status="unknown" if o.status == "unknown" else (
                            "not sent" if o.status == "not_sent" else "failed"),
                            error=o.error.message if o.error else None)
                        stop = stop or o.error
                for i in collided:
                    if stop is None:
                        retried.add(i)
                        entries[i]["retried"] = True
                    else:
                        entries[i].update(status="failed", error="request id collision (not "
                                          "retried: the batch stopped)")
                queue.extendleft(reversed([i for i in collided if stop is None]))
        if stop is not None and not sent_any:
            raise stop
        # the second each request landed in: its block's timestamp (one round trip)
        blocks = sorted({e["block"] for e in entries if e["block"] is not None})
        if blocks:
            try:
                resps = tx.rpc_batch(ctx, [("eth_getBlockByNumber", [hex(b), False])
                                           for b in blocks], "block lookup")
                ts = {b: int(r["result"]["timestamp"], 16) for b, r in zip(blocks, resps)
                      if isinstance(r.get("result"), dict)}
                for e in entries:
                    if e["block"] is not None:
                        e["block_timestamp"] = ts.get(e["block"])
            except DtnsessError:  # the requests are made; only the report lacks the second
                pass
        out.update(transactions=sum(1 for e in entries if e["tx_hash"]),
                   gas_used=gas_used, fee_eth=format_amount(fee, 18))
        if stop is not None:
            out["error"] = stop.to_dict()
        return out

    def wait_for_answers(self, request_ids: Sequence[str], timeout: float,
                         from_block: Optional[int] = None, poll: float = 1.0) -> list:
        """Wait for the answers to many requests at once (one eth_getLogs per poll, one
        progress bar); returns a ResponseView per id, ``pending`` for those still unanswered."""
        from eth_utils import keccak

        rids = [parse_request_id(r) if isinstance(r, str) else bytes(r) for r in request_ids]
        done: dict[bytes, ResponseView] = {}
        infos = {bytes.fromhex(v.request_id[2:]): v for v in self.request_infos(rids)}
        for rid in rids:
            if infos[rid].status in ("succeeded", "failed"):
                done[rid] = self.response(rid)
        topics = [[keccak(text="AIRequestCompleted(bytes32,uint256,address,uint8)"),
                   keccak(text="RequestCompleted(bytes32,uint8)")]]
        start = from_block if from_block is not None else self._call(
            lambda: self.w3.eth.block_number, "block number")
        deadline = time.monotonic() + timeout
        with self.ui.progress("answers", len(rids)) as advance:
            advance(len(done))
            while len(done) < len(rids):
                head = self._call(lambda: self.w3.eth.block_number, "block number")
                if head >= start:
                    todo = [r for r in rids if r not in done]
                    logs = self._call(lambda: self.w3.eth.get_logs({
                        "fromBlock": start, "toBlock": head,
                        "address": [self.manager.address, self.router.address],
                        "topics": topics + [todo]}), "eth_getLogs")
                    for rid in {bytes(lg["topics"][1]) for lg in logs}:
                        if rid in todo:
                            done[rid] = self.response(rid)
                            advance(1)
                    start = head + 1
                if len(done) == len(rids) or time.monotonic() >= deadline:
                    break
                time.sleep(min(poll, max(0.05, deadline - time.monotonic())))
        out = []
        for rid in rids:
            out.append(done.get(rid) or ResponseView(_hex(rid), "pending", "pending", "", None))
        return out

    # ---------------------------------------------------------------- doctor
    def doctor(self) -> list:
        checks: list[Check] = []

        def run(name, fn, required=True):
            try:
                ok, detail = fn()
            except DtnsessError as exc:
                checks.append(Check(name, False, exc.message, required))
                return False
            checks.append(Check(name, ok, detail, required))
            return ok

        s = self.settings
        from .errors import redact_url

        # NOTE: two round trips: [block number, chain id, getConfig, ETH balance], then the
        # token's [symbol, balance, allowance]; each check still reports on its own
        try:
            me = self.address
            key_error = None
        except DtnsessError as exc:
            me, key_error = None, exc
        if not run("rpc", lambda: (True, f"{redact_url(s.require_rpc())}")):
            return checks
        head = [("eth_blockNumber", []), ("eth_chainId", [])]
        try:
            connect = self._connect_requests()[1:] if s.contract else []  # chain id is in head
        except DtnsessError:  # a malformed address: the contract check below reports it
            connect = []
        eth_read = [("eth_getBalance", [me, "latest"])] if me else []
        try:
            rows = self._batch(head + connect + eth_read,
                               ["block", "chain id"] + ["getConfig()"] * len(connect) + ["balance"])
        except DtnsessError as exc:
            checks[-1] = Check("rpc", False, exc.message)
            return checks
        ok, block = rows[0]
        checks[-1] = Check("rpc", ok, f"{redact_url(s.require_rpc())} at block {int(block, 16)}"
                           if ok else block.message)
        if not ok:
            return checks

        def chain():
            ok, cid = rows[1]
            if not ok:
                raise cid
            self._check_chain(int(cid, 16))
            return True, f"{self._chain_id}" + (
                "" if s.chain_id else " (not pinned: set --chain-id or DTNSESS_CHAIN_ID)")
        if not run("chain id", chain):
            return checks

        def contract():
            addr = self.manager_address  # ConfigError / InputError without a usable address
            self._take_connect(rows[2:2 + len(connect)])
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

        def key():
            if key_error is not None:
                raise key_error
            return True, f"{me}" + (" (devnet dev account)" if s.devnet_key else "")
        if run("key", key):
            def eth():
                ok, bal = rows[-1]
                if not ok:
                    raise bal
                bal = int(bal, 16)
                return bal > 0, f"{format_amount(bal, 18)} ETH"
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
