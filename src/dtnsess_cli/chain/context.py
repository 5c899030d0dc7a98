"""What every step of a send shares: the context (connection, signer, journal, UI hooks), the
result of a write, JSON-RPC requests one by one or batched with their errors, and the chain's
identity for the journal (genesis hash and anchor block)."""

from __future__ import annotations

from ..errors import DtnsessError, InsufficientFundsError, RevertError, RpcError
from ..record import field, record
from ..units import format_eth
from .abi import DecodedLog, DecodedRevert, ErrorDecoder, EventDecoder
from .errors import RpcResponseError, RpcTransportError, revert_data_of

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional, Sequence

DEFAULT_RECEIPT_TIMEOUT = 120.0


def _to_bytes(data: Any) -> bytes:
    """Revert data as bytes (b"" for anything that is not hex: "no data")."""
    if data is None:
        return b""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        h = data[2:] if data[:2] in ("0x", "0X") else data
        try:
            return bytes.fromhex(h)
        except ValueError:
            return b""
    return b""


def plain_revert(dec: DecodedRevert, description: str, tx_hash: Optional[str],
                 token_decimals: Optional[int], token_symbol: str) -> DtnsessError:
    """The default ``TxContext.friendly``: the decoded reason as it is."""
    return RevertError(description, dec.reason, name=dec.name, args=dec.args, data=dec.data,
                       tx_hash=tx_hash)


@record
class TxResult:
    """What a write did (or, with ``dry_run``, would do)."""

    description: str
    dry_run: bool
    sender: str
    to: Optional[str]
    value: int
    gas_estimate: int
    gas_limit: int
    max_fee_per_gas: int
    return_value: Any = None
    tx_hash: Optional[str] = None
    block_number: Optional[int] = None
    gas_used: Optional[int] = None
    effective_gas_price: Optional[int] = None
    contract_address: Optional[str] = None
    events: list = field(default_factory=list)
    # OP-stack L1 data fee in wei: the oracle's estimate before the send, the receipt's l1Fee
    # after it (0 on other chains)
    l1_fee: int = 0
    # for a transaction sent right after this one (its nonce, these fees; a fees.ChainFacts):
    # see send_and_wait
    next_facts: Optional[Any] = field(default=None, repr=False)

    @property
    def fee_wei(self) -> int:
        if self.gas_used is not None and self.effective_gas_price is not None:
            return self.gas_used * self.effective_gas_price + self.l1_fee
        return self.gas_limit * self.max_fee_per_gas + self.l1_fee

    def events_named(self, name: str) -> list:
        return [e for e in self.events if e.name == name]

    def summary(self) -> dict:
        out = {
            "description": self.description,
            "dry_run": self.dry_run,
            "from": self.sender,
            "to": self.to,
            "gas_estimate": self.gas_estimate,
        }
        if self.dry_run:
            out["max_fee_eth"] = format_eth(self.fee_wei)
        else:
            out.update({"tx_hash": self.tx_hash, "block": self.block_number,
                        "gas_used": self.gas_used, "fee_eth": format_eth(self.fee_wei)})
            if self.contract_address:
                out["contract_address"] = self.contract_address
        if self.l1_fee:  # part of the fee above; only on OP-stack chains (elsewhere unchanged)
            out["l1_fee_eth"] = format_eth(self.l1_fee)
        return out


GENESIS_REQUEST = ("eth_getBlockByNumber", ["0x0", False])
CHAIN_REQUESTS = (GENESIS_REQUEST, ("eth_getBlockByNumber", ["latest", False]))


def chain_requests(ctx: "TxContext") -> list:
    """The genesis and latest block lookups, while a journal needs them and they are not known:
    they ride in a batch the send makes anyway (no round trip of their own)."""
    return list(CHAIN_REQUESTS) if ctx.journal is not None and ctx.genesis is None else []


def take_chain(ctx: "TxContext", resps: Sequence[Any]) -> None:
    """Keep the genesis hash and the anchor from the replies to ``chain_requests`` (genesis ""
    when the node has no block 0: entries are then of every chain with this id, as before)."""
    blocks = [r.get("result") if isinstance(r, dict) else None for r in resps]
    blocks = [b if isinstance(b, dict) else {} for b in blocks] + [{}, {}]
    g, latest = blocks[0].get("hash"), blocks[1]
    ctx.genesis = g.lower() if isinstance(g, str) else ""
    try:
        ctx.anchor = (int(latest["number"], 16), str(latest["hash"]).lower())
    except (KeyError, TypeError, ValueError):
        ctx.anchor = None
    if ctx.lock_chain is not None and tuple(ctx.lock_chain) != (ctx.chain_id, ctx.genesis):
        from ..errors import ChainChangedError

        raise ChainChangedError(ctx.rpc_url)


@record(frozen=True)
class TxOverrides:
    """What the user fixed for a write's transactions (cast's --nonce, --gas-limit,
    --priority-gas-price, --max-fee); None: chosen as usual. See ``fees.with_overrides``."""

    nonce: Optional[int] = None
    gas_limit: Optional[int] = None
    priority_fee: Optional[int] = None  # wei
    max_fee: Optional[int] = None  # wei


@record
class TxContext:
    """What sending needs: the connection, the signer, and the UI hooks."""

    rpc: Any  # chain.jsonrpc.JsonRpc
    account: Any  # chain.signing.LocalSigner (or anything with .address and .sign_transaction)
    chain_id: int
    ui: Any  # render.Renderer (status/confirm/interactive)
    errors: ErrorDecoder
    event_abis: Sequence[Sequence[dict]] = ()
    yes: bool = False
    receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT
    token_decimals: Optional[int] = None
    token_symbol: str = ""
    rpc_url: Optional[str] = None
    # the fee token's symbol when token_symbol is not known yet (only an error message needs it)
    symbol_lookup: Optional[Callable[[], str]] = None
    journal: Any = None  # journal.Journal: every signed transaction is recorded before its send
    # what tells this chain from another with its id, for the journal (see journal.py): the
    # genesis block hash (None: not read yet; "": the node did not tell) and the anchor, the
    # latest block's (number, hash); read in the first batch of a send (``chain_requests``)
    genesis: Optional[str] = None
    anchor: Optional[tuple] = None
    # (chain id, genesis) the sender lock was taken for, from what was last seen behind this
    # URL: checked when the chain is read, before anything is signed (``take_chain``)
    lock_chain: Optional[tuple] = None
    overrides: TxOverrides = field(default_factory=TxOverrides)
    # does the node answer eth_sendRawTransactionSync (EIP-7966)? None: not known yet (the
    # state dir's chains.json may tell: ``broadcast.sync_send``); False: it lacks the method
    sync_send: Optional[bool] = None
    # DecodedRevert -> the error to raise (the session manager's own wording; see manager.reverts)
    friendly: Callable[..., DtnsessError] = plain_revert
    _events: Optional[EventDecoder] = None

    def event_decoder(self) -> EventDecoder:
        if self._events is None:
            self._events = EventDecoder(self.event_abis)
        return self._events

    def revert_error(self, data: Any, description: str, tx_hash: Optional[str] = None) -> DtnsessError:
        dec = self.errors.decode(_to_bytes(data))
        if not self.token_symbol and self.symbol_lookup is not None \
                and dec.name in ("ERC20InsufficientBalance", "ERC20InsufficientAllowance"):
            self.token_symbol = self.symbol_lookup()
        return self.friendly(dec, description, tx_hash, self.token_decimals, self.token_symbol)


def _call_parts(fn_call: Any) -> tuple:
    """(to, data, function) of a ``chain.contract.Call`` or a ``chain.deploy.Deploy``."""
    return fn_call.to, fn_call.data, fn_call.function


# A decoded event log (name, address, args, log_index, block_number, tx_hash).
DecodedEvent = DecodedLog


def decode_logs(ctx: TxContext, logs: Iterable[Any]) -> list:
    """Decode logs against the known event ABIs (unknown logs are skipped)."""
    return ctx.event_decoder().decode_logs(logs)


def raw_request(ctx: TxContext, method: str, params: Sequence[Any]) -> dict:
    """One JSON-RPC request's reply as a dict (``{"result": ...}`` or ``{"error": {...}}``);
    transport trouble raises RpcError (see ``rpc_error``)."""
    try:
        return {"result": ctx.rpc.call(method, params)}
    except RpcResponseError as exc:
        return {"error": {"code": exc.code, "message": exc.message, "data": exc.data}}
    except RpcTransportError as exc:
        raise rpc_error(exc, ctx.rpc_url) from None


def rpc_error(exc: BaseException, url: Optional[str]) -> DtnsessError:
    """The DtnsessError of a transport failure or a node's error object (a DtnsessError is
    returned as it is). Never library text: it may quote the URL and its API key."""
    if isinstance(exc, DtnsessError):
        return exc
    if isinstance(exc, RpcTransportError):
        tries = (f" (gave up after {exc.attempts} attempts in {exc.elapsed:.0f}s)"
                 if exc.attempts > 1 else "")
        return RpcError(url, f"{exc.method}: {exc.reason}{tries}", default_hint=exc.transient)
    if isinstance(exc, RpcResponseError):
        return RpcError(url, f"node error: {exc.message}", default_hint=False)
    return RpcError(url, f"unexpected failure ({type(exc).__name__})")


to_rpc_error = rpc_error


BATCH_SIZE = 100  # requests per JSON-RPC batch (providers cap batches, often at 100-1000)


def _hexq(n: int) -> str:
    return hex(int(n))


def rpc_batch(ctx: TxContext, requests: Sequence[tuple], description: str) -> list:
    """Raw JSON-RPC responses (``{"result": ...}`` or ``{"error": ...}``) for ``requests``
    (``(method, params)`` pairs), in order, in one round trip (a JSON-RPC batch).

    A node that refuses batches (it answers with a single error object) gets the requests one
    by one. Transport trouble raises RpcError; per-request errors are left to the caller.
    """
    if not requests:
        return []
    if len(requests) > BATCH_SIZE:
        return [r for start in range(0, len(requests), BATCH_SIZE)
                for r in rpc_batch(ctx, requests[start:start + BATCH_SIZE], description)]
    reqs = [(m, list(p)) for m, p in requests]
    try:
        resp = ctx.rpc.batch(reqs)
    except RpcTransportError as exc:
        raise rpc_error(exc, ctx.rpc_url) from None
    # NOTE: a node that refuses batches gives its one error in every entry: ask one by one
    errs = [r.get("error") for r in resp]
    if len(reqs) > 1 and all(e is not None and e == errs[0] for e in errs) \
            and revert_data_of(errs[0]) is None:
        return [raw_request(ctx, m, p) for m, p in reqs]
    # a batch of one: only the refusal itself tells (its error may be the request's own)
    e = errs[0] if len(reqs) == 1 else None
    if isinstance(e, dict) and (e.get("code") == -32600
                                or "batch" in str(e.get("message", "")).lower()):
        return [raw_request(ctx, *reqs[0])]
    return list(resp)


def response_error(ctx: TxContext, resp: dict, description: str,
                   tx_hash: Optional[str] = None) -> DtnsessError:
    """The DtnsessError for a raw JSON-RPC error response: a decoded revert, or an RpcError."""
    err = resp.get("error") if isinstance(resp, dict) else None
    if not isinstance(err, dict):
        return RpcError(ctx.rpc_url, f"node error: {err!r}", default_hint=False)
    msg = str(err.get("message", ""))
    data = revert_data_of(err)
    if data is not None:
        return ctx.revert_error(data, description, tx_hash)
    if "insufficient funds" in msg.lower():
        return InsufficientFundsError("ETH for gas", "less", "more than the balance",
                                      hint=f"send ETH to {ctx.account.address}")
    return RpcError(ctx.rpc_url, f"node error: {msg}", default_hint=False)


def _json_tx(base_tx: dict) -> dict:
    out = {"from": base_tx["from"], "data": base_tx["data"], "value": _hexq(base_tx["value"])}
    if base_tx.get("to"):
        out["to"] = base_tx["to"]
    return out


def _decode_return(ctx: TxContext, fn_call: Any, raw: str) -> Any:
    """The call's return value as web3's ``.call()`` gave it (None for a deploy)."""
    fn = fn_call.function
    return None if fn is None else fn.decode_output(raw)

def _node_message(resp: dict) -> str:
    err = resp.get("error") if isinstance(resp, dict) else None
    return str(err.get("message", "") if isinstance(err, dict) else err or "")
