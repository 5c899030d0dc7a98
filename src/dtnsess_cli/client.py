"""The AdvancedSessionManager, its fee token and DTN as Python methods.

Methods mirror the contract's functions in snake_case, take token amounts as exact human
strings or Amounts, return plain dataclasses and never print. Every write goes through
``chain.send.send_and_wait``. Only the chain layer (``dtnsess_cli.chain``) talks to the node:
no web3 on the command path.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

from .config import Settings, check_address
from .errors import scrub
from .errors import (
    ChainMismatchError,
    ConfigError,
    DtnsessError,
    InputError,
    InsufficientFundsError,
    LockedError,
    NoContractError,
    NotAuthorizedError,
    RevertError,
    RpcError,
    NotRepeatedError,
    TxPendingError,
    WaitTimeoutError,
)
from .units import Amount, format_amount, parse_amount

REQUEST_STATUS = {0: "none", 1: "pending", 2: "succeeded", 3: "failed"}
# pending on the manager, but the router holds the answer: its callback failed (`dtnsess settle`)
ANSWERED = "answered, callback failed"
MAX_UINT256 = 2**256 - 1
DEFAULT_CALLBACK_GAS_WEI = 300_000
# the manager's documented configuration bounds (MAX_SESSION_AGE, MAX_REQUEST_TIMEOUT,
# MAX_POOL_SIZE); the token bounds depend on decimals (see _check_config_bounds)
MAX_SESSION_AGE = 365 * 86400
MAX_REQUEST_TIMEOUT = 7 * 86400
MAX_POOL_SIZE = 100
# NOTE: a prompt is stored on chain by the router: ~740 gas per byte measured against the local
# DTN (16 KB: 12.1M gas); newer forks cap a transaction at 2^24 gas (~22 KB), and the answer's
# transaction must fit as well, so 16 KB leaves room.
MAX_PROMPT_BYTES = 16 * 1024
PROMPT_GAS_PER_BYTE = 740
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
    # what stopped the command after it sent something (close blocked by pending requests):
    # the result is still shown, then this error, and its exit code
    error: Optional[DtnsessError] = None

    def to_dict(self) -> dict:
        out = {"action": self.action, "dry_run": self.dry_run}
        out.update(self.data)
        out["transactions"] = [t.summary() for t in self.txs]
        if self.error is not None:
            out["error"] = self.error.to_dict()
        return out


@dataclass
class TxView:
    """``dtnsess tx HASH``: what the chain says about a transaction, and what it was for."""

    tx_hash: str
    status: str  # pending | mined | failed | unknown
    block: Optional[int] = None
    sender: Optional[str] = None
    to: Optional[str] = None
    nonce: Optional[int] = None
    gas_used: Optional[int] = None
    fee: Optional[Amount] = None
    events: list = field(default_factory=list)  # {"name", "address", "args"}
    revert: Optional[str] = None
    what: Optional[str] = None  # the journal's description, when this machine sent it
    command: Optional[str] = None  # the journal's command line
    journal: Optional[str] = None  # the journal's status


@dataclass
class Check:
    name: str
    ok: Optional[bool]  # None = skipped / informational
    detail: str
    required: bool = True
    # the exit code a failed check stands for (README's table: rpc 5, chain 6, config 3, ...)
    code: int = 1

    def __post_init__(self) -> None:
        self.detail = scrub(self.detail)


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
    from .chain.abi import keccak

    s = (name or "").strip()
    if not s:
        raise InputError("routing name", name, "empty")
    if s[:2].lower() == "0x":
        if len(s) != 66:
            raise InputError("routing id", name, "expected 0x followed by 64 hex digits (a "
                             "32-byte id), or a name")
        try:
            return bytes.fromhex(s[2:])
        except ValueError:
            raise InputError("routing id", name, "not hex") from None
    return keccak(prefix + s)


SYSTEM_TRUST = "trust.system.authored"


def system_trust_id() -> bytes:
    from .chain.abi import encode, keccak

    # NOTE: system trust hashes with abi.encode (not encodePacked), as the deployed DTN does
    return keccak(encode(["string"], [SYSTEM_TRUST]))


def namespace_routing_id(name: str) -> bytes:
    """``--namespace``: a 0x 32-byte id as is; ``trust.system.authored`` is system trust (the
    router's own abi.encode hash, the only one nodes serve it under); any other name is
    keccak256(abi.encodePacked(name)), as the node registry hashes namespace names."""
    if (name or "").strip() == SYSTEM_TRUST:
        return system_trust_id()
    return routing_id(name)


def node_routing_id(name: str) -> bytes:
    """``--node tester.node1`` -> keccak256(abi.encodePacked("node.tester.node1"))."""
    s = (name or "").strip()
    if s[:2].lower() == "0x" and len(s) == 66:
        return routing_id(s)
    return routing_id(s if s.startswith("node.") else "node." + s)


def system_trust_routing() -> tuple:
    return ([system_trust_id()], [], 1, 8, AGGREGATION_ANY)


def decode_text_answer(data: bytes) -> Optional[str]:
    """A text answer is abi.encode(string); None when the bytes are not that."""
    if not data:
        return ""
    from .chain.abi import decode

    # NOTE: decoded as bytes (the same layout), then strict UTF-8: bad bytes are "not text"
    # (decode(["string"]) would replace them)
    try:
        (raw,) = decode(["bytes"], bytes(data))
        return raw.decode("utf-8")
    except Exception:
        return None


def check_rpc_url(url: str) -> str:
    """An http(s) URL with a host and a valid port, else ConfigError (shown redacted)."""
    from urllib.parse import urlsplit

    from .errors import redact_url

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        reason = "its port is not 0-65535" if "port" in str(exc).lower() else "it is malformed"
        raise ConfigError(f"invalid RPC URL: {reason}",
                          hint="e.g. --rpc-url http://127.0.0.1:8545") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"unsupported RPC URL scheme {parts.scheme or '(none)'!r}",
                          hint="use an http:// or https:// JSON-RPC endpoint")
    if not parts.hostname or port == 0:
        raise ConfigError(f"invalid RPC URL {redact_url(url)}: no host" if not parts.hostname
                          else "invalid RPC URL: port 0",
                          hint="e.g. --rpc-url http://127.0.0.1:8545")
    return url.strip()


def _hex(b: Any) -> str:
    return "0x" + bytes(b).hex()


def _topic_bytes(t: Any) -> bytes:
    return bytes.fromhex(t[2:]) if isinstance(t, str) else bytes(t)


def completion_topics() -> list:
    """Topic 0 of the manager's and the router's "request answered" events (eth_getLogs)."""
    from .chain.abi import keccak

    return [keccak("AIRequestCompleted(bytes32,uint256,address,uint8)"),
            keccak("RequestCompleted(bytes32,uint8)")]


@functools.lru_cache(maxsize=None)
def _abi_of(name: str) -> Any:
    """The parsed ABI of an artifact (``"ERC20"``: the minimal one here; ``"router"``: IDtnAi
    with the router's views), once per run."""
    from .artifacts import load_artifact
    from .chain.abi import ContractAbi

    if name == "ERC20":
        return ContractAbi(ERC20_ABI)
    if name == "router":
        abi = list(load_artifact("IDtnAi")["abi"])
        try:
            abi += load_artifact("IDtnRouterViews")["abi"]
        except DtnsessError:
            pass
        return ContractAbi(abi)
    return ContractAbi(load_artifact(name)["abi"])


def contract_at(address: str, name: str) -> Any:
    """A ``chain.contract.Contract`` for artifact ``name`` at ``address``."""
    from .chain.contract import Contract

    return Contract(address, _abi_of(name))


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ts)))


def _all_blocked_error(skipped: Sequence[dict]) -> DtnsessError:
    from .errors import RevertError

    err = RevertError(
        "closing all your sessions", "every one has unanswered requests",
        name="RequestsPending",
        hint="retry then (answers that arrive before are settled by close itself); "
             "`dtnsess close ID` also stops others from adding requests to a session")
    err.message = "no session can close yet: " + "; ".join(
        f"session {k['session_id']} has unanswered requests until {_when(k['retry_after'])}"
        for k in skipped)
    return err


# eth_getLogs: blocks per query (providers cap the range, often at 10000) and at most this many
# blocks back (a pending streak older than the request timeout, at most 7 days, no longer
# blocks a close; 1M blocks is 23 days of Base's 2 s blocks)
LOG_CHUNK = 5_000
MAX_LOG_BLOCKS = 1_000_000


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment (tests shorten the RPC and receipt waits)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0:
        raise ConfigError(f"{name}={text!r} is not a positive number of seconds")
    return v


# how long a write waits for another process sending from the same key
SENDER_LOCK_WAIT = 600.0


def _writes(method):
    """A write: one sender at a time (the per-(chain, sender) lock, held until it returns, so
    the reads that decide what to send, the nonces and the receipts of parallel processes do
    not interleave); this key's open journal entries resolved first; and when a later step
    fails, the error names the steps already mined. A dry run takes none of this."""

    @functools.wraps(method)
    def wrapper(self: "Client", *args: Any, **kwargs: Any) -> Any:
        if self.settings.dry_run or self._writing:
            return method(self, *args, **kwargs)
        self._writing = True
        try:
            with self._sender_locked():
                self._resolve_open()
                self._done = []
                try:
                    return method(self, *args, **kwargs)
                except DtnsessError as exc:
                    self._name_done(exc)
                    raise
        finally:
            self._writing = False

    return wrapper


# --------------------------------------------------------------------------- the client

class Client:
    """One connection to one AdvancedSessionManager; caches what does not change per run."""

    def __init__(self, settings: Settings, ui: Any, *,
                 receipt_timeout: Optional[float] = None) -> None:
        self.settings = settings
        self.ui = ui
        self.receipt_timeout = (env_seconds("DTNSESS_RECEIPT_TIMEOUT", 120.0)
                                if receipt_timeout is None else receipt_timeout)
        self._rpc = None
        self._account = None
        self._chain_id: Optional[int] = None
        self._manager = None
        self._config_raw: Optional[tuple] = None
        self._token = None
        self._router = None
        self._symbol: Optional[str] = None
        self._txctx = None
        self._errors = None
        self._journal = None
        self._writing = False
        self._done: list = []  # TxResults mined by this write (see _writes)

    # ---------------------------------------------------------------- connection
    @property
    def rpc(self):
        """The JSON-RPC connection (``chain.jsonrpc.JsonRpc``: kept alive, reads retried)."""
        if self._rpc is None:
            from .rpc import connect

            self._rpc = connect(check_rpc_url(self.settings.require_rpc()))
        return self._rpc

    def _raw(self, method: str, params: Sequence[Any], what: str) -> Any:
        """One JSON-RPC read's result: node trouble becomes RpcError, a revert a decoded
        RevertError."""
        from .chain import send as tx

        resp = tx.raw_request(self._read_ctx(), method, list(params))
        if "error" in resp:
            raise tx.response_error(self._read_ctx(), resp, what)
        return resp["result"]

    def _block_number(self) -> int:
        return int(self._raw("eth_blockNumber", [], "block number"), 16)

    def _logs(self, start: int, end: int, address: Any, topics: Sequence[Any]) -> list:
        """eth_getLogs over blocks ``start..end`` (raw logs: hex strings)."""
        def hx(t: Any) -> Any:
            if t is None or isinstance(t, str):
                return t
            if isinstance(t, (list, tuple)):
                return [hx(x) for x in t]
            return _hex(t)

        return self._raw("eth_getLogs", [{"fromBlock": hex(start), "toBlock": hex(end),
                                          "address": address, "topics": hx(list(topics))}],
                         "eth_getLogs")

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._check_chain(int(self._raw("eth_chainId", [], "chain id"), 16))
        return self._chain_id

    def _check_chain(self, cid: int) -> None:
        expected = self.settings.chain_id
        if expected is not None and cid != expected:
            src = self.settings.sources.get("chain_id", "the configuration")
            raise ChainMismatchError(expected, cid, source=src)
        self._chain_id = cid

    def address_arg(self, value: str, what: str = "address") -> str:
        from .chain.abi import is_checksum_address, to_checksum_address

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

            self._manager = contract_at(self.manager_address, "AdvancedSessionManager")
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
        return head + [self._mgr.call("getConfig")]

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
            self._token = contract_at(self._config_tuple()[1], "ERC20")
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
        return [self.token.call("symbol")]

    def _take_symbol(self, rows: list) -> None:
        if rows:
            ok, sym = rows[0]
            self._symbol = str(sym)[:16] if ok else "tokens"  # symbol() is optional in ERC-20

    @property
    def router(self):
        if self._router is None:
            self._router = contract_at(self._config_tuple()[0], "router")
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
            from .artifacts import all_abis
            from .chain.abi import ErrorDecoder

            try:
                abis = list(all_abis().values())
            except DtnsessError:
                abis = []
            self._errors = ErrorDecoder(abis)
        return self._errors

    def _read_ctx(self):
        """A context for reads: decodes reverts and looks up fees; needs no key."""
        from .chain import send as tx
        from .manager.reverts import friendly

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
            from .chain import send as tx
            from .manager.reverts import friendly

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

    # ---------------------------------------------------------------- one sender at a time
    @contextlib.contextmanager
    def _sender_locked(self) -> Iterator[None]:
        """Hold this key's sender lock (waiting for another process up to SENDER_LOCK_WAIT) and
        open the journal."""
        from filelock import Timeout

        from .chain.journal import Journal, sender_lock

        addr = self.address
        chain = self.settings.chain_id or self.chain_id
        lock = sender_lock(chain, addr)
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
            if self._journal is None:
                self._journal = Journal()
                if self._txctx is not None:
                    self._txctx.journal = self._journal
            yield
        finally:
            lock.release()

    def _resolve_open(self) -> None:
        """Resolve this key's open journal entries (an earlier run lost a reply, timed out or
        was interrupted) before anything new is sent; one line each on stderr. A pending one is
        waited for; one the node lost is re-broadcast (its own signed bytes). When the entry
        that is found mined was this very command, it is not repeated (NotRepeatedError)."""
        from .chain import send as tx
        from .chain.journal import DROPPED, FAILED, INTENT, MINED, REPLACED

        entries = self._journal.open_entries(self.settings.chain_id or self.chain_id,
                                             self.address)
        if not entries:
            return
        ctx = self.txctx
        reqs: list = []
        for e in entries:
            reqs += [("eth_getTransactionReceipt", [e.tx_hash]),
                     ("eth_getTransactionByHash", [e.tx_hash])]
        reqs.append(("eth_getTransactionCount", [self.address, "latest"]))
        resps = tx.rpc_batch(ctx, reqs, "journal lookup")
        mined_nonce = int(resps[-1].get("result") or "0x0", 16)
        argv = (INTENT.get() or {}).get("argv")
        repeat = None
        for i, e in enumerate(entries):
            rec = resps[2 * i].get("result")
            known = resps[2 * i + 1].get("result")
            what = f"earlier {e.label()}"
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
              check: Optional[Any] = None, gas_limit: Optional[int] = None):
        """``tx.send_and_wait``; ``follows``: the TxResult this run sent just before. The token
        symbol, when still unknown, rides in the transaction's batch (results show amounts), and
        so do ``reads``, whose raw responses ``check`` gets before anything is sent (it may
        raise: then nothing is)."""
        from .chain import send as tx

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
                               step=step, gas_limit=gas_limit)
        if not res.dry_run:
            self._done.append(res)
        return res

    def tx_view(self, tx_hash: str) -> TxView:
        """Status, block, gas, fee and decoded events of a transaction, with the journal's
        record of what it was for (an open entry is resolved when the chain has settled it)."""
        from .chain import send as tx
        from .chain.journal import FAILED, MINED, OPEN, Journal

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
        r_rec, r_tx = tx.rpc_batch(ctx, [("eth_getTransactionReceipt", [h]),
                                         ("eth_getTransactionByHash", [h])], "transaction lookup")
        for r in (r_rec, r_tx):
            if "error" in r:
                raise tx.response_error(ctx, r, "transaction lookup")
        from .chain.abi import to_checksum_address

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
                view.fee = Amount(rec["gasUsed"] * price, 18, "ETH")
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
        try:
            j = self._journal or Journal()
            e = j.find(h)
        except DtnsessError:  # no journal here: the chain's part is still worth showing
            e = None
        if e is not None:
            view.what, view.command = e.description, e.argv or None
            if e.status == OPEN and view.status in ("mined", "failed"):
                j.resolve(h, MINED if view.status == "mined" else FAILED, view.block)
                e.status = MINED if view.status == "mined" else FAILED
            view.journal = e.status
        return view

    def _event_abis(self) -> list:
        from .artifacts import load_artifact

        return [load_artifact("AdvancedSessionManager")["abi"], load_artifact("IDtnAi")["abi"],
                ERC20_ABI]

    def _events(self, res, name: str, address: Optional[str] = None) -> list:
        addr = address or self.manager.address
        return [e for e in res.events if e.name == name and e.address == addr]

    # ---------------------------------------------------------------- views
    def owner(self) -> str:
        return self._calls([self._mgr.call("owner")], "owner()")[0]

    def config(self) -> ConfigView:
        c = self._config_tuple()
        (owner,) = self._calls_and_symbol([self._mgr.call("owner")], "owner()")
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
        user = self.address_arg(user, "address") if user else self.address
        m = self._mgr
        # two round trips: [chain id, getConfig, ETH, refunds], then what needs the token address
        eth, claim = self._calls([("eth_getBalance", [user, "latest"]),
                                  m.call("claimableRefunds", user)], ["balance", "claimableRefunds"])
        eth = int(eth, 16)
        bal, allw = self._calls_and_symbol([self.token.call("balanceOf", user),
                                            self.token.call("allowance", user, m.address)],
                                           ["balanceOf", "allowance"])
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

    def pool_status(self) -> dict:
        """The pool, every offer (pooled sessions and the caller's own offered ones, taken
        or not) with its taker and grant limit, and the caller's own grant (2 round trips)."""
        m = self._mgr
        try:
            me = self.address
        except DtnsessError:  # no key: the pool alone
            me = None
        reads = [m.call("getPoolStatus"), m.call("getPoolSessions")]
        if me:
            reads += [m.call("getUserActiveSessions", me), m.call("getGrant", me)]
        got = self._calls(reads, ["getPoolStatus", "getPoolSessions", "getUserActiveSessions",
                                  "getGrant"][:len(reads)])
        (size, max_size), ids = got[0], [int(i) for i in got[1]]
        own = [int(i) for i in got[2]] if me else []
        cands = list(dict.fromkeys(ids + own))
        rows = self._calls_and_symbol([m.call("getPoolOffer", i) for i in cands]
                                      + ([m.call("getSessions", cands)] if cands else []),
                                      "getPoolOffer")
        owners = {int(v[0]): v[1] for v in rows[-1]} if cands else {}
        offers = []
        for sid, (offered, taker, limit, nodes) in zip(cands, rows):
            if not offered:
                continue
            offers.append({"session_id": sid, "owner": owners.get(sid), "pooled": sid in ids,
                           "taker": None if int(taker, 16) == 0 else taker,
                           "grant_limit": self.amount(limit), "allow_node_routing": bool(nodes)})
        grant = None
        if me and int(got[3][0]):
            grant = {"session_id": int(got[3][0]), "remaining": self.amount(got[3][1]),
                     "allow_node_routing": bool(got[3][2])}
        return {"pool_size": int(size), "max_size": int(max_size), "sessions": ids,
                "offers": offers, "grant": grant}

    def request_info(self, request_id: bytes) -> RequestView:
        ((sid, user, created, status),) = self._calls(
            [self._mgr.call("requests", request_id)], "requests")
        return RequestView(_hex(request_id), int(sid), user, int(created),
                           REQUEST_STATUS.get(int(status), str(status)))

    # ---------------------------------------------------------------- batched reads
    # A read is a bound view function (eth_call at "latest") or a raw ``(method, params)``
    # request; all go through ``tx.rpc_batch`` (one round trip, one by one for a node without
    # batches). A contract call's revert is decoded by selector as in ``_call``.

    @staticmethod
    def _requests(reads: Sequence[Any], block: Any = "latest") -> list:
        from .chain import send as tx

        out = []
        for r in reads:
            if isinstance(r, tuple):
                out.append(r)
            else:
                out.append(r.request(block))
        return out

    def _rows(self, reads: Sequence[Any], resps: Sequence[dict], what: Any) -> list:
        """``(ok, value)`` per read: the decoded result, or the DtnsessError it failed with."""
        from .chain import send as tx

        ctx = self._read_ctx()
        out = []
        for i, (r, resp) in enumerate(zip(reads, resps)):
            label = what if isinstance(what, str) else what[i]
            if "error" in resp or "result" not in resp:
                out.append((False, tx.response_error(ctx, resp, label)))
            elif isinstance(r, tuple):
                out.append((True, resp["result"]))
            else:
                try:
                    out.append((True, tx._decode_return(ctx, r, resp["result"])))
                except Exception as exc:  # e.g. "0x" from an address without code
                    out.append((False, tx.to_rpc_error(exc, self.settings.rpc_url)))
        return out

    def _batch(self, reads: Sequence[Any], what: Any, block: Any = "latest") -> list:
        from .chain import send as tx

        if not reads:
            return []
        resps = tx.rpc_batch(self._read_ctx(), self._requests(reads, block), "read")
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
        rows = self._calls([m.call("requests", rid) for rid in ids], "requests")
        return [RequestView(_hex(rid), int(r[0]), r[1], int(r[2]),
                            REQUEST_STATUS.get(int(r[3]), str(r[3]))) for rid, r in zip(ids, rows)]

    def requests(self, user: Optional[str] = None, pending_only: bool = False,
                 limit: int = 200) -> list:
        """The user's newest ``limit`` requests, oldest first (2-3 round trips for any count)."""
        user = self.address_arg(user, "user address") if user else self.address
        m = self._mgr
        ((ids, total),) = self._calls([m.call("getUserRequests", user, 0, limit)],
                                      "getUserRequests")
        if int(total) > limit:  # only the newest `limit`
            ((ids, _),) = self._calls([m.call("getUserRequests", user, int(total) - limit,
                                                                    limit)], "getUserRequests")
        out = self.request_infos([bytes(i) for i in ids])
        self._mark_answered(out)
        if pending_only:
            out = [r for r in out if r.status in ("pending", ANSWERED)]
        return out

    def _mark_answered(self, views: Sequence[RequestView]) -> None:
        """Pending requests the router has answered become ANSWERED (one round trip)."""
        pend = [v for v in views if v.status == "pending"]
        answered = self._answered([bytes.fromhex(v.request_id[2:]) for v in pend])
        for v in pend:
            if bytes.fromhex(v.request_id[2:]) in answered:
                v.status = ANSWERED

    def _answered(self, ids: Sequence[bytes]) -> dict:
        """{id: "succeeded" | "failed"} for those ``ids`` the router has answered: fetchResponse
        does not revert (it reverts while a request is unanswered). One round trip."""
        from .errors import RevertError

        ids = [bytes(i) for i in ids]
        if not ids:
            return {}
        rows = self._batch([self.router.call("fetchResponse", i) for i in ids], "fetchResponse")
        out = {}
        for rid, (ok, v) in zip(ids, rows):
            if not ok and not isinstance(v, RevertError):
                raise v  # node trouble, not "unanswered"
            if ok and int(v[0]) in (1, 2):
                out[rid] = "succeeded" if int(v[0]) == 1 else "failed"
        return out

    def response(self, request_id: Any) -> ResponseView:
        """The manager's record and the router's answer of a request, both read at one block
        (at two blocks, an answer mined in between looked like a callback that did not run)."""
        rid = parse_request_id(request_id) if isinstance(request_id, str) else bytes(request_id)
        (head,) = self._calls([("eth_blockNumber", [])], "block number")
        m = self._mgr
        (ok, req), (answered, resp) = self._batch(
            [m.call("requests", rid), self.router.call("fetchResponse", rid)],
            ["requests", "fetchResponse"], block=head)
        if not ok:
            raise req
        sid, user, created, status = req
        info = RequestView(_hex(rid), int(sid), user, int(created),
                           REQUEST_STATUS.get(int(status), str(status)))
        if info.status == "none":
            raise InputError("request id", _hex(rid), "unknown to this session manager")
        if not answered:
            if not isinstance(resp, RevertError):
                raise resp
            # "Request not completed" while pending (decoded by selector: Error(string))
            return ResponseView(_hex(rid), "pending", info.status, "", None,
                                session_id=info.session_id, user=info.user,
                                created_at=info.created_at)
        status, message, data = resp
        st = {1: "succeeded", 2: "failed"}.get(int(status), "unknown")
        answer = decode_text_answer(data) if st == "succeeded" else None
        note = None
        if info.status == "pending" and st in ("succeeded", "failed"):
            note = (f"answered, but the manager's callback failed: run `dtnsess settle "
                    f"{_hex(rid)}` to record it")
        return ResponseView(_hex(rid), st, info.status, message, answer,
                            response_hex=_hex(data) if answer is None and data else None,
                            session_id=info.session_id, user=info.user,
                            created_at=info.created_at, note=note)

    def wait_for_answer(self, request_id: Any, timeout: float, from_block: Optional[int] = None,
                        poll: float = 1.0) -> ResponseView:
        """Wait until the request is answered: look first (it may be answered already), then
        poll eth_getLogs from ``from_block`` for the manager's or the router's completion."""
        rid = parse_request_id(request_id) if isinstance(request_id, str) else bytes(request_id)

        # NOTE: the request is made and paid for: node trouble while waiting (after the read
        # retries) is waited out until the deadline, never a reason to give up early
        trouble: list = []

        def tolerant(fn):
            try:
                return fn()
            except RpcError as exc:
                trouble[:] = [exc]
                return None

        first = tolerant(lambda: self.response(rid))
        if first is not None and first.status != "pending":
            return first
        topics = [completion_topics(), rid]
        start = from_block
        deadline = time.monotonic() + timeout
        with self.ui.status(f"waiting for the answer to {_hex(rid)[:10]}…"):
            while True:
                head = tolerant(self._block_number)
                if start is None:
                    start = head
                if head is not None and head >= start:
                    logs = tolerant(lambda: self._logs(
                        start, head, [self.manager.address, self.router.address], topics))
                    if logs:
                        ans = tolerant(lambda: self.response(rid))
                        if ans is not None:
                            return ans
                    elif logs is not None:
                        start = head + 1
                if time.monotonic() >= deadline:
                    hint = f"check later with `dtnsess response {_hex(rid)}`"
                    if trouble:
                        hint += f"; the node also failed while waiting: {trouble[0].reason}"
                    raise WaitTimeoutError("the answer", timeout, request_id=_hex(rid),
                                           hint=hint)
                time.sleep(min(poll, max(0.05, deadline - time.monotonic())))

    # ---------------------------------------------------------------- pre-checks
    def _owned_active(self, session_id: int, *, allow_grant: bool = False) -> SessionView:
        s = self._session_view(self._session_tuple(session_id), symbol=self._symbol or "")
        if not s.active:
            raise InputError("session", str(session_id), "the session is closed")
        if s.owner != self.address:
            if allow_grant:
                (grant,) = self._calls([self._mgr.call("poolGrant", self.address)],
                                       "poolGrant")
                if int(grant) == session_id:
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

    # ---------------------------------------------------------------- writes
    @_writes
    def approve(self, amount: Optional[str], unlimited: bool = False) -> WriteResult:
        units = MAX_UINT256 if unlimited else self.parse(amount or "", allow_zero=True)
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
        if not self._ensure_allowance(units, approve_max, r, allowed):
            r.data["note"] = f"dry run: {what} is simulated only after the approval"
            return None
        # NOTE: after an approval its nonce + 1 and its fees are reused (tx.send_and_wait)
        res = self._send(fn, description=describe(),
                         token_cost=f"{format_amount(units, self.decimals)} {self.symbol}",
                         follows=r.txs[-1] if r.txs else None)
        r.txs.append(res)
        return res

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
        return r

    @_writes
    def renew_session(self, session_id: int, amount: str, approve_max: bool = False) -> WriteResult:
        units = self.parse(amount)
        s = self._owned_active(session_id)
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
            from .manager.reverts import requests_pending_error

            retry_after = s.closable_at  # fixed by the oldest unanswered request
            # NOTE: the chain's clock decides, not ours (they differ on dev chains, and by drift)
            now = self._chain_now()
            if now < retry_after:
                raise requests_pending_error(f"renewing session {s.session_id}", s.session_id,
                                             s.pending_requests, retry_after)

    @_writes
    def close_session(self, session_id: int) -> WriteResult:
        """Settle answered requests of the session (one transaction), then close it. Still
        blocked by unanswered ones: begin closing it (others can no longer add requests), and
        the result carries the RequestsPending error with the time the close will work."""
        from .errors import RevertError

        s = self._owned_active(session_id)
        r = WriteResult("close", dry_run=self.settings.dry_run)
        r.data["closed"] = []
        prev = self._settle_answered(r, [s])
        if prev is not None and self.settings.dry_run:
            r.data["note"] = "dry run: the close is simulated only after the settle"
            return r
        try:
            res = self._send(self.manager.call("closeSession", session_id),
                             description=f"close session {session_id}", follows=prev)
        except RevertError as exc:
            if exc.name != "RequestsPending":
                raise
            self._begin_closing(r, s, exc, prev)
            if not r.txs:
                raise r.error from None
            return r
        r.txs.append(res)
        r.data["closed"] = self._closed_from(res)
        return r

    def _begin_closing(self, r: WriteResult, s: SessionView, exc: Any, prev: Any) -> None:
        """The close of ``s`` is refused (``exc``: RequestsPending): mark the session closing
        unless it is, and set ``r.error`` to the refusal with the time to retry."""
        from .manager.reverts import requests_pending_error

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
        res = self._send(self.manager.call("closeAllSessions"),
                         description=f"close {n} of your sessions" + (
                             f" (skipping {len(blocked)} with pending requests)" if blocked
                             else ""), follows=prev)
        r.txs.append(res)
        r.data["closed"] = self._closed_from(res)
        if not res.dry_run:
            skipped = [{"session_id": int(e.args["sessionId"]),
                        "pending": blocked[int(e.args["sessionId"])].pending_requests
                        if int(e.args["sessionId"]) in blocked else None,
                        "retry_after": int(e.args["retryAfter"])}
                       for e in self._events(res, "SessionCloseSkipped")]
        r.data["skipped"] = skipped
        if not r.data["closed"] and skipped and not res.dry_run:  # they got requests meanwhile
            r.error = _all_blocked_error(skipped)
        return r

    def _closed_from(self, res) -> list:
        credited = {int(e.args["sessionId"]): int(e.args["amount"])
                    for e in self._events(res, "RefundCredited")}
        return [{"session_id": int(e.args["sessionId"]), "refund": self.amount(e.args["refund"]),
                 "credited": int(e.args["sessionId"]) in credited}
                for e in self._events(res, "SessionClosed")]

    # ---------------------------------------------------------------- settling
    def _chain_now(self) -> int:
        """The latest block's timestamp: the chain's clock decides deadlines, not ours."""
        return int(self._raw("eth_getBlockByNumber", ["latest", False], "latest block")
                   ["timestamp"], 16)

    def _block_before(self, ts: int) -> tuple:
        """(the last block before timestamp ``ts``, the head): every block from it on has the
        transactions of second ``ts`` (several blocks may share a second). A search that probes
        16 blocks per round trip, so ~6 round trips on a chain of 20M blocks."""
        head = self._raw("eth_getBlockByNumber", ["latest", False], "latest block")
        top = int(head["number"], 16)
        if int(head["timestamp"], 16) < ts:
            return top, top
        lo, hi = 0, top  # ts(lo) < ts <= ts(hi), or lo is the genesis block
        while hi - lo > 1:
            step = max(1, (hi - lo) // 16)
            probes = list(range(lo + step, hi, step))
            blocks = self._values(self._batch(
                [("eth_getBlockByNumber", [hex(n), False]) for n in probes], "block lookup"))
            for n, b in zip(probes, blocks):
                if int(b["timestamp"], 16) < ts:
                    lo = n
                else:
                    hi = n
                    break
        return lo, top

    def _session_request_ids(self, sessions: Sequence[SessionView]) -> list:
        """Ids of the requests made in ``sessions`` (anyone's: pool takers' too) since their
        pending streak began: AIRequestSubmitted logs with the sessionId topic, from the block
        before the oldest ``pending_since``, in ranges of LOG_CHUNK blocks (one round trip)."""
        from .chain.abi import keccak

        busy = [s for s in sessions if s.pending_requests]
        if not busy:
            return []
        timeout = int(self._config_tuple()[10])
        since = min(s.pending_since or max(0, s.closable_at - timeout) for s in busy)
        start, head = self._block_before(since)
        start = max(start, head - MAX_LOG_BLOCKS + 1, 0)
        topic0 = "0x" + keccak("AIRequestSubmitted(bytes32,uint256,address,uint256)").hex()
        sids = ["0x" + s.session_id.to_bytes(32, "big").hex() for s in busy]
        reqs = [("eth_getLogs", [{"fromBlock": hex(a), "toBlock": hex(min(a + LOG_CHUNK - 1, head)),
                                  "address": self._mgr.address, "topics": [topic0, None, sids]}])
                for a in range(start, head + 1, LOG_CHUNK)]
        ids: dict = {}
        for logs in self._values(self._batch(reqs, "eth_getLogs")):
            for lg in logs:
                ids[bytes.fromhex(lg["topics"][1][2:])] = True
        return list(ids)

    def answered_pending(self, sessions: Sequence[SessionView] = (),
                         mine: bool = False) -> list:
        """Requests the manager counts pending although the router has answered them (their
        callback failed), as RequestViews (status ANSWERED, ``router`` set): those made in
        ``sessions`` during their pending streak, and with ``mine`` the caller's own."""
        ids = dict.fromkeys(self._session_request_ids(sessions))
        if mine:
            m = self._mgr
            ((own, total),) = self._calls([m.call("getUserRequests", self.address, 0, 200)],
                                          "getUserRequests")
            if int(total) > 200:  # the newest 200 (as `requests`)
                ((own, _),) = self._calls([m.call("getUserRequests",
                    self.address, int(total) - 200, 200)], "getUserRequests")
            ids.update(dict.fromkeys(bytes(i) for i in own))
        views = [v for v in self.request_infos(list(ids)) if v.status == "pending"]
        answered = self._answered([bytes.fromhex(v.request_id[2:]) for v in views])
        out = []
        for v in views:
            st = answered.get(bytes.fromhex(v.request_id[2:]))
            if st:
                v.status = ANSWERED
                out.append({"request": v, "answer": st})
        return out

    def _send_settle(self, r: WriteResult, todo: Sequence[dict], follows: Any = None):
        """One settleRequests transaction for ``todo`` (answered_pending rows); what it settled
        goes to ``r.data["settled"]``."""
        ids = [bytes.fromhex(t["request"].request_id[2:]) for t in todo]
        n = len(ids)
        m = self.manager
        what = f"settle {n} answered request{'s' if n != 1 else ''} (callback failed)"
        if n == 1:
            res = self._send(m.call("settleRequest", ids[0]), description=what, follows=follows)
        else:
            res = self._send(m.call("settleRequests", ids), description=what, follows=follows,
                             gas_limit=self._settle_gas(ids))
        r.txs.append(res)
        if res.dry_run:
            done = {t["request"].request_id: t for t in todo}
            r.data["settled"] = [{"request_id": k, "session_id": t["request"].session_id,
                                  "status": t["answer"]} for k, t in done.items()]
        else:
            r.data["settled"] = [
                {"request_id": _hex(e.args["requestId"]), "session_id": int(e.args["sessionId"]),
                 "status": "succeeded" if int(e.args["status"]) == 1 else "failed"}
                for e in self._events(res, "AIRequestCompleted")]
        return res

    def _settle_gas(self, ids: Sequence[bytes]) -> int:
        """The gas limit of settleRequests(ids): the sum of each settleRequest's estimate (one
        round trip), less the repeated base cost, plus the loop, +20%.

        NOTE: eth_estimateGas of settleRequests itself is too low: it catches a failed
        fetchResponse, and the search for the least gas that does not revert lands where the
        starved inner call fails quietly (63/64 rule); mined with that limit it runs out of gas."""
        from .chain import send as tx

        m = self.manager
        preps = tx.prepare_many(self.txctx, [tx.Call(m.call("settleRequest", i), f"settle {_hex(i)}")
                                             for i in ids])
        for p in preps:
            if p.error is not None:
                raise p.error
        total = sum(p.gas_estimate for p in preps) - 21_000 * (len(ids) - 1)
        return tx.gas_limit_for(total + 10_000 + 2_000 * len(ids))

    def _settle_answered(self, r: WriteResult, sessions: Sequence[SessionView]):
        """Before a close or renew: settle the answered requests blocking ``sessions``, in one
        transaction (its TxResult), or None when there are none."""
        if not any(s.pending_requests for s in sessions):
            return None
        todo = self.answered_pending(sessions)
        if not todo:
            return None
        return self._send_settle(r, todo)

    @_writes
    def settle(self, request_id: Optional[str] = None) -> WriteResult:
        """Record the answers of requests whose callback failed: one ``request_id``, or all
        the caller's own and those in the caller's sessions. Nothing to settle: nothing sent."""
        from .errors import RevertError

        r = WriteResult("settle", dry_run=self.settings.dry_run)
        r.data["settled"] = []
        if request_id is not None:
            rid = parse_request_id(request_id)
            info = self.request_info(rid)
            if info.status == "none":
                raise InputError("request id", _hex(rid), "unknown to this session manager")
            if info.status != "pending":
                r.data["note"] = f"request {_hex(rid)} is already settled ({info.status})"
                return r
            st = self._answered([rid]).get(rid)
            if st is None:
                raise RevertError(f"settling request {_hex(rid)}", "it has no answer yet",
                                  hint=f"settle records an answer whose callback failed; wait "
                                       f"for it (`dtnsess response {_hex(rid)}`)")
            info.status = ANSWERED
            todo = [{"request": info, "answer": st}]
        else:
            mine = [s for s in self.sessions() if s.active and s.owner == self.address]
            todo = self.answered_pending(mine, mine=True)
        if not todo:
            r.data["note"] = "nothing to settle"
            return r
        self._send_settle(r, todo)
        return r

    def _routing(self, namespaces: Sequence[str], nodes: Sequence[str]):
        if namespaces and nodes:
            raise InputError("routing", "--namespace/--node", "use either namespaces or nodes")
        if nodes:
            return ("nodes", ([], [node_routing_id(n) for n in nodes], 1, 8, AGGREGATION_ANY))
        if namespaces:
            return ("namespaces", [namespace_routing_id(n) for n in namespaces])
        return ("system", None)

    def _request_fee(self, size: int) -> int:
        """What DTN charges the session for a ``size``-byte prompt (its request bytes): the
        per-byte fee, capped by the per-request maximum."""
        c = self._config_tuple()
        return min(size * int(c[7]), int(c[9]))

    def _check_dtn_balance(self, s: SessionView, size: int) -> None:
        """Refuse a request the session cannot pay for: DTN would take it and pay the node
        what is left (0 when empty), so the answer would go unpaid."""
        if s.dtn_balance is None:  # the router does not show balances: nothing to go by
            return
        need = max(self._request_fee(size), 1)
        if s.dtn_balance.units < need:
            sym = self.symbol
            raise InsufficientFundsError(
                f"DTN balance in session {s.session_id}",
                f"{format_amount(s.dtn_balance.units, self.decimals)} {sym}",
                f"{format_amount(need, self.decimals)} {sym} for this {size}-byte prompt",
                hint=f"add funds with `dtnsess renew {s.session_id} AMOUNT`, or use another "
                     f"session (--session)")

    def _funded_sessions(self, ids: list, size: int) -> list:
        """The sessions of ``ids`` whose DTN balance can pay a ``size``-byte prompt (one round
        trip); the others are skipped with a note, and none left is a FUNDS error."""
        (views,) = self._calls_and_symbol([self._mgr.call("getSessions", list(ids))],
                                          "getSessions")
        need = max(self._request_fee(size), 1)
        views = [self._session_view(v) for v in views]
        ok = [v.session_id for v in views if v.dtn_balance is None or v.dtn_balance.units >= need]
        low = [v for v in views if v.session_id not in ok]
        if low and not ok:
            self._check_dtn_balance(low[0], size)  # raises, naming the first one
        if low:
            self.ui.info(f"skipping session{'s' if len(low) != 1 else ''} "
                         f"{', '.join(str(v.session_id) for v in low)}: DTN balance too low "
                         f"(`dtnsess renew ID AMOUNT`)")
        return ok

    def _prompt_too_large(self, size: int, session_id: Optional[int]) -> DtnsessError:
        """The refusal of an oversized prompt: its size, what a byte costs (gas and DTN fee)
        and what the paying session holds. Nothing is sent."""
        c = self._config_tuple()
        sym = self.symbol
        per_byte = format_amount(int(c[7]), self.decimals)
        holds = ""
        try:
            sid = session_id
            if sid is None:
                ids = self.active_session_ids()
                sid = ids[-1] if ids else None
            if sid is not None:
                v = self.session(sid)
                bal = v.dtn_balance if v.dtn_balance is not None else v.balance
                holds = f"; session {sid} holds {bal.human()}"
        except DtnsessError:
            pass
        return InputError(
            "prompt", f"({size} bytes)",
            f"{size} bytes is more than {MAX_PROMPT_BYTES} (a prompt costs about "
            f"{PROMPT_GAS_PER_BYTE} gas per byte to send, ~{size * PROMPT_GAS_PER_BYTE:,} gas "
            f"here, and a transaction holds at most {2**24:,}; DTN charges {per_byte} {sym} "
            f"per byte, at most {format_amount(int(c[9]), self.decimals)} {sym} per "
            f"request{holds})",
            hint="shorten the prompt, or split it into several requests")

    @_writes
    def make_ai_request(self, prompt: str, *, model: Optional[str] = None,
                        namespaces: Sequence[str] = (), nodes: Sequence[str] = (),
                        value: int = DEFAULT_CALLBACK_GAS_WEI,
                        session_id: Optional[int] = None) -> WriteResult:
        if not prompt or not prompt.strip():
            raise InputError("prompt", prompt, "empty")
        model = model or self.settings.model
        kind, routing = self._routing(namespaces, nodes)
        size = len(prompt.encode("utf-8"))
        if size > MAX_PROMPT_BYTES:
            raise self._prompt_too_large(size, session_id)
        # NOTE: which session pays: the given one, else the contract's choice (a live pool
        # grant, else the newest own active session); its DTN balance is read in the
        # transaction's own batch and checked before anything is sent
        candidates: list = []
        if session_id is not None:
            self._check_dtn_balance(self._owned_active(session_id, allow_grant=True), size)
        else:
            mf = self._mgr
            own, grant = self._calls([mf.call("getUserActiveSessions", self.address),
                                      mf.call("poolGrant", self.address)], "getUserActiveSessions")
            candidates = ([int(grant)] if int(grant) else []) + ([int(own[-1])] if own else [])
        m = self.manager
        if session_id is not None:
            if kind == "namespaces":
                routing = (routing, [], 1, 8, AGGREGATION_ANY)
            elif kind == "system":
                routing = system_trust_routing()
            fn = m.call("makeAIRequestInSession", session_id, prompt, model, routing)
        elif kind == "nodes":
            fn = m.call("makeAIRequestWithRouting", prompt, model, routing)
        else:
            fn = m.call("makeAIRequest", prompt, model, routing or [])
        reads = [m.call("getSession", c) for c in candidates]

        def check(resps: list) -> None:
            rows = self._rows(reads, resps, "getSession")
            views = [self._session_view(v, symbol="") for ok, v in rows if ok]
            for v in views:  # the first live candidate is the one the contract uses
                if v.active:
                    self._check_dtn_balance(v, size)
                    return

        r = WriteResult("request", dry_run=self.settings.dry_run)
        try:
            res = self._send(fn, value=value, description=f"AI request to {model}",
                             reads=reads, check=check)
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
        own, grant = self._calls([m.call("getUserActiveSessions", self.address),
                                  m.call("poolGrant", self.address)], "getUserActiveSessions")
        ids = [int(i) for i in own]
        grant = int(grant)
        if grant and grant not in ids:
            try:
                if self.session(grant).active:
                    ids.append(grant)
            except InputError:
                pass
        return ids

    @_writes
    def add_to_pool(self, session_id: int, limit: Optional[str] = None,
                    allow_nodes: bool = False) -> WriteResult:
        """addToPool (default grant limit: 10 answers' maximum fee; takers route by trust
        namespace only), or addToPoolWithLimit with ``limit`` tokens and/or ``allow_nodes``."""
        s = self._owned_active(session_id)
        if s.pooled:
            raise InputError("session", str(session_id), "already in the pool")
        if s.closing:
            raise InputError("session", str(session_id), "the session is closing")
        ((size, max_size),) = self._calls([self._mgr.call("getPoolStatus")],
                                          "getPoolStatus")
        if size >= max_size:
            raise InputError("session", str(session_id), f"the pool is full ({size}/{max_size})")
        fee = int(self._config_tuple()[9])
        units = 10 * fee if limit is None else self.parse(limit, "--limit")
        if units >= 2**96:  # the contract stores a grant in 96 bits
            raise InputError("--limit", limit, "too large")
        if units < fee:
            raise InputError("--limit", limit, f"below one answer's maximum fee "
                             f"({format_amount(fee, self.decimals)} {self.symbol}): a taker could "
                             f"not make a single request")
        m = self.manager
        shown = f"{format_amount(units, self.decimals)} {self.symbol}"
        r = WriteResult("pool-add", dry_run=self.settings.dry_run)
        if limit is None and not allow_nodes:
            fn = m.call("addToPool", session_id)
        else:
            fn = m.call("addToPoolWithLimit", session_id, units, allow_nodes)
        r.txs.append(self._send(fn, description=f"add session {session_id} to the pool (grant "
                                                f"limit {shown}" + (", node routing allowed"
                                                                    if allow_nodes else "") + ")"))
        r.data.update({"session_id": session_id, "grant_limit": self.amount(units),
                       "allow_node_routing": allow_nodes})
        return r

    def _pool_offer(self, session_id: int) -> dict:
        ((offered, taker, limit, nodes),) = self._calls(
            [self._mgr.call("getPoolOffer", session_id)], "getPoolOffer")
        taker = None if int(taker, 16) == 0 else taker
        return {"offered": bool(offered), "taker": taker, "grant_limit": int(limit),
                "allow_node_routing": bool(nodes)}

    def _grant_ended(self, r: WriteResult, res) -> None:
        reasons = {0: "released", 1: "revoked", 2: "exhausted", 3: "removed"}
        r.data["grants_ended"] = [{"session_id": int(e.args["sessionId"]),
                                   "user": e.args["user"],
                                   "reason": reasons.get(int(e.args["reason"]),
                                                         str(e.args["reason"]))}
                                  for e in self._events(res, "GrantEnded")]

    @_writes
    def remove_from_pool(self, session_id: int) -> WriteResult:
        """removeFromPool: the session leaves the pool and its taker's grant ends."""
        s = self._session_view(self._session_tuple(session_id), symbol=self._symbol or "")
        if s.owner != self.address:
            raise NotAuthorizedError(f"session {session_id} belongs to {s.owner}, not to "
                                     f"{self.address}")
        offer = self._pool_offer(session_id)
        if not offer["offered"]:
            raise InputError("session", str(session_id), "not offered in the pool")
        r = WriteResult("pool-remove", dry_run=self.settings.dry_run)
        res = self._send(self.manager.call("removeFromPool", session_id),
                         description=f"remove session {session_id} from the pool"
                         + (f" (ends the grant of {offer['taker']})" if offer["taker"] else ""))
        r.txs.append(res)
        r.data.update({"session_id": session_id, "taker": offer["taker"]})
        if not res.dry_run:
            self._grant_ended(r, res)
        return r

    @_writes
    def revoke_grant(self, session_id: int, user: str) -> WriteResult:
        """revokeGrant: ``user``'s grant on the session ends; the session stays out of the pool
        (the revoked taker could take it straight back) until its owner adds it again."""
        who = self.address_arg(user, "taker address")
        s = self._session_view(self._session_tuple(session_id), symbol=self._symbol or "")
        if s.owner != self.address:
            raise NotAuthorizedError(f"session {session_id} belongs to {s.owner}, not to "
                                     f"{self.address}")
        offer = self._pool_offer(session_id)
        if offer["taker"] != who:
            raise InputError("taker address", user, f"holds no grant on session {session_id}"
                             + (f" (its taker is {offer['taker']})" if offer["taker"] else ""))
        r = WriteResult("pool-revoke", dry_run=self.settings.dry_run)
        res = self._send(self.manager.call("revokeGrant", session_id, who),
                         description=f"revoke {who}'s grant on session {session_id}")
        r.txs.append(res)
        r.data.update({"session_id": session_id, "user": who})
        if not res.dry_run:
            self._grant_ended(r, res)
            r.data["pooled"] = self._is_pooled(session_id)
        return r

    def _is_pooled(self, session_id: int) -> bool:
        (pooled,) = self._calls([self._mgr.call("isPooled", session_id)], "isPooled")
        return bool(pooled)

    def grant(self, user: Optional[str] = None) -> Optional[dict]:
        """The pool grant ``user`` (default: the caller) holds, or None."""
        who = self.address_arg(user, "user address") if user else self.address
        ((sid, remaining, nodes),) = self._calls([self._mgr.call("getGrant", who)], "getGrant")
        if not int(sid):
            return None
        return {"session_id": int(sid), "remaining": self.amount(remaining),
                "allow_node_routing": bool(nodes)}

    @_writes
    def release_grant(self) -> WriteResult:
        """releaseGrant: the caller's grant ends (the session returns to the pool). Holding
        none is not an error: nothing is sent."""
        r = WriteResult("pool-release", dry_run=self.settings.dry_run)
        g = self.grant()
        r.data["grant"] = g
        if g is None:
            r.data["note"] = "you hold no pool grant"
            return r
        res = self._send(self.manager.call("releaseGrant"),
                         description=f"release your grant on session {g['session_id']}")
        r.txs.append(res)
        r.data["session_id"] = g["session_id"]
        if not res.dry_run:
            self._grant_ended(r, res)
            r.data["pooled"] = self._is_pooled(g["session_id"])
        return r

    @_writes
    def get_from_pool(self) -> WriteResult:
        m = self._mgr
        (size, _), (held, _, _) = self._calls([m.call("getPoolStatus"), m.call("getGrant", self.address)],
                                              ["getPoolStatus", "getGrant"])
        if int(held):  # one grant per address (the contract: AlreadyHoldsGrant)
            raise InputError("pool", "get", f"you already hold a pool grant (session {held})",
                             hint="one pooled session per address: `dtnsess pool release` first")
        if not size:
            raise InputError("pool", "get", "the pool is empty")
        r = WriteResult("pool-get", dry_run=self.settings.dry_run)
        res = self._send(self.manager.call("getFromPool"), description="take a session from the pool")
        r.txs.append(res)
        ev = self._events(res, "SessionTakenFromPool")
        r.data["session_id"] = int(ev[0].args["sessionId"]) if ev else (
            int(res.return_value) if res.return_value is not None else None)
        if not res.dry_run:
            r.data["grant"] = self.grant()
        return r

    def idle_sessions(self, max_n: int) -> list:
        (ids,) = self._calls([self._mgr.call("getIdleSessions", max_n)], "getIdleSessions")
        return [int(i) for i in ids]

    def gas_price(self) -> int:
        """The node's current gas price (eth_gasPrice), in wei."""
        return int(self._raw("eth_gasPrice", [], "gas price"), 16)

    @_writes
    def cleanup(self, max_n: int) -> WriteResult:
        r = WriteResult("cleanup", dry_run=self.settings.dry_run)
        idle = self.idle_sessions(max_n)
        r.data["idle"] = idle
        if not idle:
            r.data["closed"] = []
            return r
        res = self._send(self.manager.call("cleanupOldSessionsUpTo", max_n),
                         description=f"clean up {len(idle)} idle session{'s' if len(idle) != 1 else ''}")
        r.txs.append(res)
        r.data["closed"] = self._closed_from(res)
        total = sum(int(e.args["amount"]) for e in self._events(res, "RefundCredited"))
        r.data["refunds_credited"] = self.amount(total)
        failed = self._events(res, "CleanupFailed")
        if failed:
            r.data["failed"] = [int(e.args["sessionId"]) for e in failed]
        return r

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
        self._check_config_bounds(c, min_balance, max_age, pool_size, fee_per_byte_req,
                                  fee_per_byte_res, max_fee_per_response, request_timeout)
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
        if not r.txs:
            raise InputError("config update", "", "nothing to change",
                             hint="pass at least one of --min-balance, --max-age, --pool-size, "
                                  "--fee-per-byte-req, --fee-per-byte-res, --max-fee-per-response, "
                                  "--request-timeout")
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
        held, claimable = self._calls([erc.call("balanceOf", self._mgr.address),
                                       self._mgr.call("totalClaimable")],
                                      ["balanceOf", "totalClaimable"])
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
        from .artifacts import load_artifact

        ai = self.address_arg(ai_address, "DTN router address (--ai)")
        _ = self.chain_id
        from .chain.abi import constructor_data, to_hex
        from .chain.send import Deploy

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

    @_writes
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

        from .chain import send as tx

        prompts = list(prompts)
        if not prompts:
            raise InputError("prompts", "", "no prompts")
        for i, p in enumerate(prompts):
            if not p.strip():
                raise InputError(f"prompt {i + 1}", p, "empty")
            if len(p.encode("utf-8")) > MAX_PROMPT_BYTES:
                err = self._prompt_too_large(len(p.encode("utf-8")), None)
                err.message = f"line {i + 1}: {err.message}"
                raise err
        ids = self.active_session_ids()
        hint = "create sessions with `dtnsess create AMOUNT` (one session serves one request " \
               "per second)"
        if not ids:
            raise InputError("sessions", "", "you have no active session", hint=hint)
        ids = self._funded_sessions(ids, max(len(p.encode("utf-8")) for p in prompts))
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
        m = self.manager
        ctx = self.txctx
        n = len(prompts)
        entries = [{"index": i + 1, "prompt": p, "status": "not sent", "session_id": None,
                    "request_id": None, "tx_hash": None, "block": None, "block_timestamp": None}
                   for i, p in enumerate(prompts)]
        out = {"model": model, "sessions": ids, "requests": entries,
               "dry_run": self.settings.dry_run, "error": None}

        def call(i: int, sid: int) -> Any:
            return tx.Call(m.call("makeAIRequestInSession", sid, prompts[i], model, routing),
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
        rids = [parse_request_id(r) if isinstance(r, str) else bytes(r) for r in request_ids]
        done: dict[bytes, ResponseView] = {}
        infos = {bytes.fromhex(v.request_id[2:]): v for v in self.request_infos(rids)}
        for rid in rids:
            if infos[rid].status in ("succeeded", "failed"):
                done[rid] = self.response(rid)
        topics = [completion_topics()]
        start = from_block if from_block is not None else self._block_number()
        deadline = time.monotonic() + timeout
        with self.ui.progress("answers", len(rids)) as advance:
            advance(len(done))
            while len(done) < len(rids):
                try:  # node trouble while waiting is waited out until the deadline
                    head = self._block_number()
                    if head >= start:
                        todo = [r for r in rids if r not in done]
                        logs = self._logs(start, head,
                                          [self.manager.address, self.router.address],
                                          topics + [todo])
                        for rid in {_topic_bytes(lg["topics"][1]) for lg in logs}:
                            if rid in todo:
                                done[rid] = self.response(rid)
                                advance(1)
                        start = head + 1
                except RpcError:
                    pass
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
                checks.append(Check(name, False, exc.message, required, int(exc.exit_code)))
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
            checks[-1] = Check("rpc", False, exc.message, code=int(exc.exit_code))
            return checks
        ok, block = rows[0]
        checks[-1] = Check("rpc", ok, f"{redact_url(s.require_rpc())} at block {int(block, 16)}"
                           if ok else block.message, code=1 if ok else int(block.exit_code))
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
