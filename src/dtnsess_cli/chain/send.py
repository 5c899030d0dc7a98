"""The one way to send a transaction, and revert decoding.

``send_and_wait`` is used by every write: simulate (eth_call from the sender; a revert
becomes a decoded error and nothing is sent), estimate gas (+20%), EIP-1559 fees (the node's
tip), the L1 data fee on OP-stack chains (Base), check ETH for all that, confirm with the cost (terminal only, unless --yes), sign locally, send once, wait
for the receipt with a deadline, check ``status`` (a failed receipt is replayed at its block
to recover the revert data), decode the receipt's events. Everything before the send travels
in one JSON-RPC batch: a transaction costs three round trips (batch, send, receipt).

NOTE: a different transaction is never sent for the same intent. Each signed transaction goes
into the journal (``journal.py``) before its broadcast (``broadcast``); when the node's reply is
lost it is looked up by hash, and only its own signed bytes are sent again (same nonce, same
hash: it can be mined once at most). When its outcome cannot be known (node down, receipt
deadline, Ctrl-C) the command exits TIMEOUT (or 130) naming the hash and the nonce, and the
journal entry stays open for the next command from that key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Optional, Sequence

from ..errors import (
    AbortedError,
    DtnsessError,
    ExitCode,
    InsufficientFundsError,
    RevertError,
    RpcError,
    TxPendingError,
)
from ..units import format_eth, format_gwei
from .abi import DecodedLog, DecodedRevert, ErrorDecoder, EventDecoder, encode, to_bytes
from .clock import sleep
from .contract import format_receipt  # noqa: F401 - also the receipt format of its callers
from .errors import RpcResponseError, RpcTransportError, revert_data_of

GAS_MARGIN_NUM, GAS_MARGIN_DEN = 12, 10  # +20% over the estimate
# Newer Ethereum forks cap a transaction at 2^24 gas: the margin must not push a fitting one over.
TX_GAS_CAP = 2**24


def gas_limit_for(estimate: int) -> int:
    """The gas limit sent for an estimate: +20%, but not past the per-transaction cap."""
    limit = estimate * GAS_MARGIN_NUM // GAS_MARGIN_DEN
    return TX_GAS_CAP if estimate <= TX_GAS_CAP < limit else limit
DEFAULT_RECEIPT_TIMEOUT = 120.0

# OP-stack chains (Base, OP Mainnet) charge an L1 data fee on top of gas, priced by the
# GasPriceOracle predeploy. Elsewhere no code lives there: the eth_call answers "0x", fee 0.
L1_GAS_PRICE_ORACLE = "0x420000000000000000000000000000000000000F"
_GET_L1_FEE = "49948e0e"  # getL1Fee(bytes)
# the unsigned transaction's fields the send fills in later, at a size real ones stay under
_NONCE_SIZED, _FEE_SIZED = 2**32 - 1, 2**64 - 1


def l1_fee_request(chain_id: int, base_tx: dict) -> tuple:
    """The eth_call asking the oracle for ``base_tx``'s L1 data fee: ``getL1Fee`` of the unsigned
    EIP-1559 transaction, its nonce, fees and gas not known yet (they travel in the same
    batch) and so sized to their largest. It rides in the batch the send already makes."""
    from .signing import rlp_encode

    to = base_tx.get("to")
    unsigned = b"\x02" + rlp_encode([
        chain_id, _NONCE_SIZED, _FEE_SIZED, _FEE_SIZED, TX_GAS_CAP,
        to_bytes(to) if to else b"", base_tx["value"], to_bytes(base_tx["data"]), []])
    data = "0x" + _GET_L1_FEE + encode(["bytes"], [unsigned]).hex()
    return ("eth_call", [{"to": L1_GAS_PRICE_ORACLE, "data": data}, "latest"])


def l1_fee_of(resp: Any) -> int:
    """The oracle's answer in wei: 0 where there is no oracle ("0x": a chain that is not an OP
    stack) or it failed (the node checks the fee itself when the transaction arrives)."""
    r = resp.get("result") if isinstance(resp, dict) else None
    if not isinstance(r, str) or len(r) < 66:
        return 0
    try:
        return int(r[2:66], 16)
    except ValueError:
        return 0


def receipt_l1_fee(receipt: Any) -> int:
    """The L1 data fee an OP-stack receipt reports (``l1Fee``); 0 elsewhere."""
    v = receipt.get("l1Fee") if isinstance(receipt, dict) else None
    if isinstance(v, str):
        try:
            return int(v, 16)
        except ValueError:
            return 0
    return v if isinstance(v, int) else 0


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


# ---------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------

@dataclass
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
    # for a transaction sent right after this one (its nonce, these fees): see send_and_wait
    next_facts: Optional["ChainFacts"] = field(default=None, repr=False)

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


@dataclass
class ChainFacts:
    """What sending needs besides the call itself: fees, the sender's ETH balance, its nonce."""

    fees: Optional[dict]  # {"maxFeePerGas", "maxPriorityFeePerGas"}, {"gasPrice"}; None: unknown
    balance: int
    nonce: int
    fetched_at: float = field(default_factory=time.monotonic)  # when the fees were read

    @property
    def max_fee(self) -> int:
        fees = self.fees or {}
        return fees.get("maxFeePerGas", fees.get("gasPrice", 0))


# NOTE: fees this young are reused for a follow-up transaction (maxFee = 2*baseFee + tip leaves
# room for several blocks of rising base fee); older ones are read again (in the same batch).
FEES_MAX_AGE = 30.0

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
            step: Optional[str]) -> None:
    """Journal a signed transaction before its send (an error here: nothing was sent)."""
    if ctx.journal is None:
        return
    from .journal import INTENT

    if ctx.genesis is None:  # not read with the send's batch (a caller of broadcast alone)
        take_chain(ctx, rpc_batch(ctx, CHAIN_REQUESTS, "chain lookup"))
    intent = dict(INTENT.get() or {})
    if step:
        intent["step"] = step
    ctx.journal.record(ctx.chain_id, ctx.account.address, tx_hash, nonce, raw_hex, description,
                       intent, genesis=ctx.genesis or None, anchor=ctx.anchor)


def _fact_requests(sender: str, follows: Optional[ChainFacts] = None) -> list:
    """The JSON-RPC requests for a transaction's ChainFacts (see ``_facts_from``). After
    ``follows`` the nonce is counted locally and fresh fees are reused; the balance is always
    read (what the previous transaction cost is not known exactly on L2s: L1 data fees)."""
    reqs: list = []
    if follows is None or follows.fees is None:
        reqs += [("eth_getBlockByNumber", ["latest", False]), ("eth_maxPriorityFeePerGas", []),
                 ("eth_gasPrice", []),
                 ("eth_feeHistory", [hex(FEE_HISTORY_BLOCKS), "latest", [FEE_HISTORY_PERCENTILE]])]
    reqs.append(("eth_getBalance", [sender, "latest"]))
    if follows is None:
        reqs.append(("eth_getTransactionCount", [sender, "pending"]))
    return reqs


# eth_feeHistory, asked in the same batch: the tip when the node lacks eth_maxPriorityFeePerGas
FEE_HISTORY_BLOCKS, FEE_HISTORY_PERCENTILE = 5, 50


def _quantity(resp: Any) -> Optional[int]:
    """A JSON-RPC reply's hex quantity (None when it is an error or not a number)."""
    r = resp.get("result") if isinstance(resp, dict) else None
    try:
        return int(r, 16) if isinstance(r, str) else None
    except ValueError:
        return None


def _tip_of(r_tip: dict, r_hist: dict, r_price: dict, base: int) -> Optional[int]:
    """The priority fee the node suggests: eth_maxPriorityFeePerGas; else the median of the
    recent blocks' median tips (eth_feeHistory, blocks that carried transactions only: an
    empty block's 0 says nothing); else eth_gasPrice minus the base fee. None: no answer.
    NOTE: never a fixed guess: 1 gwei (web3's) is ~1000 times a Base tip."""
    tip = _quantity(r_tip)
    if tip is not None:
        return tip
    hist = r_hist.get("result") if isinstance(r_hist, dict) else None
    if isinstance(hist, dict):
        try:
            tips = sorted(int(rw[0], 16) for rw, used in
                          zip(hist.get("reward") or [], hist.get("gasUsedRatio") or [])
                          if rw and used)
        except (TypeError, ValueError):
            tips = []
        if tips:
            return tips[len(tips) // 2]
    price = _quantity(r_price)
    return None if price is None else max(0, price - base)


def _facts_from(ctx: "TxContext", resps: Sequence[dict],
                follows: Optional[ChainFacts] = None) -> ChainFacts:
    """ChainFacts from the responses to ``_fact_requests(sender, follows)``."""
    resps = list(resps)
    fees_read = follows is None or follows.fees is None
    if fees_read:
        r_block, r_tip, r_price, r_hist = resps[:4]
        resps = resps[4:]
    r_bal = resps[0]
    r_nonce = resps[1] if follows is None else None
    checks = ([(r_block, "fee lookup")] if fees_read else []) + [(r_bal, "balance lookup")]
    if r_nonce is not None:
        checks.append((r_nonce, "nonce lookup"))
    for r, what in checks:
        if "error" in r or r.get("result") is None:
            raise response_error(ctx, r, what)
    if fees_read:
        base = r_block["result"].get("baseFeePerGas")
        if base is None:
            if "error" in r_price:
                raise response_error(ctx, r_price, "fee lookup")
            fees = {"gasPrice": int(r_price["result"], 16)}
        else:
            tip = _tip_of(r_tip, r_hist, r_price, int(base, 16))
            if tip is None:
                raise response_error(ctx, r_tip, "fee lookup")
            fees = {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * int(base, 16) + tip}
        fetched_at = time.monotonic()
    else:
        fees, fetched_at = dict(follows.fees), follows.fetched_at
    nonce = int(r_nonce["result"], 16) if r_nonce is not None else follows.nonce
    return ChainFacts(fees=fees, balance=int(r_bal["result"], 16), nonce=nonce,
                      fetched_at=fetched_at)


@dataclass
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


@dataclass(frozen=True)
class Deploy:
    """A contract creation to send: its init code (bytecode + constructor arguments)."""

    data: str
    to: None = None
    function: None = None


def _call_parts(fn_call: Any) -> tuple:
    """(to, data, function) of a ``chain.contract.Call`` or a :class:`Deploy`."""
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


# NOTE: simulate against the pending block: its timestamp is "now", as the mined transaction's
# will be. At "latest", Anvil (and an idle chain) reuses the last block's timestamp, so a second
# request of a session in a later second still "collides" in the simulation (DTN request ids
# have one-second resolution).
SIM_BLOCK = "pending"


def simulate(ctx: TxContext, fn_call: Any, *, value: int = 0, description: str,
             block: Any = SIM_BLOCK) -> Any:
    """eth_call ``fn_call`` from the sender; the decoded return value (None for a deploy)."""
    to, data, _ = _call_parts(fn_call)
    tx = {"from": ctx.account.address, "data": data, "value": value}
    if to:
        tx["to"] = to
    resp = raw_request(ctx, "eth_call", [_json_tx(tx), block if isinstance(block, str) else hex(block)])
    if "error" in resp:
        raise response_error(ctx, resp, description)
    return _decode_return(ctx, fn_call, resp["result"])


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


def _eth_floor_error(sender: str, value: int, facts: "ChainFacts") -> Optional[DtnsessError]:
    """InsufficientFundsError when ``sender`` cannot pay even 21000 gas (plus ``value``)."""
    max_fee = facts.max_fee
    floor = 21_000 * max_fee + value
    if facts.balance >= floor:
        return None
    return InsufficientFundsError(
        "ETH for gas", f"{format_eth(facts.balance)} ETH",
        f"more than {format_eth(floor)} ETH (over 21000 gas at {format_gwei(max_fee)} gwei"
        + (f" + {format_eth(value)} ETH value" if value else "") + ")",
        hint=f"send ETH to {sender}")


def _call_error(ctx: TxContext, resp: dict, description: str,
                floor: Callable[[], Optional[DtnsessError]]) -> DtnsessError:
    """The error of a failed simulation or estimate: a decoded revert, else the node's error --
    unless the sender cannot pay for any gas (``floor``)."""
    err = resp.get("error") if isinstance(resp, dict) else None
    data = revert_data_of(err)
    if data is not None:
        return ctx.revert_error(data, description)
    node = RpcError(ctx.rpc_url, f"node error: {_node_message(resp)}", default_hint=False)
    # NOTE: nodes refuse to run a call whose value the sender cannot pay (Anvil: "Insufficient
    # funds for gas * price + value"): tell it by the balance, not the wording
    try:
        return floor() or node
    except DtnsessError:  # the balance or fees could not be read either: the node's error
        return node


def _check_eth(sender: str, have: int, gas_limit: int, max_fee: int, l1_fee: int, value: int,
               count: Optional[int] = None) -> None:
    """InsufficientFundsError unless ``have`` pays the gas at the most, the L1 data fee and the
    value (of ``count`` transactions, a batch)."""
    need = gas_limit * max_fee + l1_fee + value
    if have >= need:
        return
    what = f" for {count} transactions" if count is not None else ""
    raise InsufficientFundsError(
        "ETH for gas", f"{format_eth(have)} ETH",
        f"up to {format_eth(need)} ETH{what} ({gas_limit} gas at {format_gwei(max_fee)} gwei"
        + (f" + {format_eth(l1_fee)} ETH L1 data fee" if l1_fee else "")
        + (f" + {format_eth(value)} ETH value" if value else "") + ")",
        hint=f"send ETH to {sender}")


def cost_line(gas: str, gas_limit: int, max_fee: int, l1_fee: int = 0) -> str:
    """The pre-flight cost of gas (and the L1 data fee on an OP-stack chain), as shown."""
    line = f"gas: {gas} at up to {format_gwei(max_fee)} gwei"
    if not l1_fee:
        return line + f" = at most {format_eth(gas_limit * max_fee)} ETH"
    return (line + f" + L1 data fee ~{format_eth(l1_fee)} ETH"
            f" = at most {format_eth(gas_limit * max_fee + l1_fee)} ETH")


def _confirm(ctx: TxContext, headline: str, gas: str, gas_limit: int, max_fee: int, value: int,
             token_cost: Optional[str], question: str, l1_fee: int = 0) -> None:
    """Show the cost and ask (only a person at a terminal, and not with --yes); no -> abort."""
    if ctx.yes or not ctx.ui.interactive:
        return
    cost = f"{headline}\n  {cost_line(gas, gas_limit, max_fee, l1_fee)}"
    if value:
        cost += f"\n  value: {format_eth(value)} ETH"
    if token_cost:
        cost += f"\n  tokens: {token_cost}"
    ctx.ui.info(cost)
    if not ctx.ui.confirm(question):
        raise AbortedError(headline)


def send_and_wait(ctx: TxContext, fn_call: Any, *, value: int = 0, description: str,
                  dry_run: bool = False, confirm: bool = True,
                  token_cost: Optional[str] = None,
                  follows: Optional["ChainFacts"] = None, also: Sequence[tuple] = (),
                  on_also: Optional[Callable[[list], None]] = None,
                  step: Optional[str] = None) -> TxResult:
    """Simulate, estimate, confirm, sign, send once, wait, check status, decode events.

    Three round trips when the receipt is ready at the first poll: one JSON-RPC batch (simulate,
    estimate, fees, ETH balance, ``pending`` nonce), the send, the receipt. ``follows`` is the
    ``next_facts`` of a transaction this run sent just before (an approval): its nonce + 1 and
    its fees (while fresh) are reused; the simulation still runs against the state after it.
    ``also``: reads (``(method, params)``) that ride in the same batch; ``on_also`` gets their raw
    responses as soon as the batch returns, before the simulation is looked at, and may raise
    (then nothing is sent). ``step``: this transaction is a preliminary step of its command
    (``"approve"``), recorded so in the journal.
    """
    sender = ctx.account.address
    to, data, _ = _call_parts(fn_call)
    base_tx: dict = {"from": sender, "data": data, "value": value}
    if to:
        base_tx["to"] = to

    # 1. one round trip: simulate (a revert here means nothing is sent), estimate, and the facts
    reqs = [("eth_call", [_json_tx(base_tx), SIM_BLOCK]),
            ("eth_estimateGas", [_json_tx(base_tx), SIM_BLOCK])]
    n_sim = len(reqs)
    if follows is not None and time.monotonic() - follows.fetched_at > FEES_MAX_AGE:
        follows = replace(follows, fees=None)  # too old: read them again (same batch)
    reqs += _fact_requests(sender, follows)
    n_facts = len(reqs) - n_sim
    reqs.append(l1_fee_request(ctx.chain_id, base_tx))
    chain = chain_requests(ctx)
    reqs += chain
    n_own = len(reqs)
    resps = rpc_batch(ctx, reqs + list(also), description)
    if also and on_also is not None:
        on_also(resps[n_own:])
    if chain:
        take_chain(ctx, resps[n_own - len(chain):n_own])
    l1_fee = l1_fee_of(resps[n_sim + n_facts])
    resps = resps[:n_sim + n_facts]
    facts_of = lambda: _facts_from(ctx, resps[n_sim:], follows)  # noqa: E731
    for r in resps[:n_sim]:
        if "error" in r or r.get("result") is None:
            raise _call_error(ctx, r, description,
                              lambda: _eth_floor_error(sender, value, facts_of()))
    ret = _decode_return(ctx, fn_call, resps[0]["result"])

    # 2. gas (+20%) and EIP-1559 fees
    est = int(resps[1]["result"], 16)
    limit = gas_limit_for(est)
    facts = facts_of()
    fees, max_fee = facts.fees, facts.max_fee
    result = TxResult(description=description, dry_run=dry_run, sender=sender, to=to,
                      value=value, gas_estimate=est, gas_limit=limit, max_fee_per_gas=max_fee,
                      return_value=ret, l1_fee=l1_fee)

    # 3. ETH for gas, the L1 data fee (OP stack) and the value
    _check_eth(sender, facts.balance, limit, max_fee, l1_fee, value)
    if dry_run:
        return result

    if follows is None:
        warn_journal_gap(ctx, facts.nonce)

    # 4. confirm (only a person at a terminal is asked)
    if confirm:
        _confirm(ctx, description, f"~{est} (limit {limit})", limit, max_fee, value, token_cost,
                 "Send this transaction?", l1_fee)

    # 5. sign locally and send once
    tx = dict(base_tx, nonce=facts.nonce, gas=limit, chainId=ctx.chain_id, **fees)
    if "maxFeePerGas" in tx:
        tx["type"] = 2
    signed = ctx.account.sign_transaction(tx)
    tx_hash = "0x" + bytes(signed.hash).hex()
    broadcast(ctx, bytes(signed.raw_transaction), tx_hash, facts.nonce, description, step=step)
    result.tx_hash = tx_hash
    result.next_facts = replace(facts, nonce=facts.nonce + 1)

    # 6. wait for the receipt with a deadline (never a different transaction)
    receipt = wait_for_receipt(ctx, tx_hash, description, facts.nonce)
    result.block_number = receipt["blockNumber"]
    result.gas_used = receipt["gasUsed"]
    result.effective_gas_price = receipt.get("effectiveGasPrice")
    result.contract_address = receipt.get("contractAddress")
    result.l1_fee = receipt_l1_fee(receipt)  # what was paid, not the estimate
    if receipt["status"] != 1:
        journal_resolve(ctx, tx_hash, "failed", receipt["blockNumber"])
        raise _failed_receipt(ctx, base_tx, receipt, limit, description, tx_hash)
    journal_resolve(ctx, tx_hash, "mined", receipt["blockNumber"])
    result.events = decode_logs(ctx, receipt["logs"])
    return result


# ---------------------------------------------------------------------------------------------
# Broadcasting: the journal first, then the send; a lost reply is looked up by hash
# ---------------------------------------------------------------------------------------------

# NOTE: a lost reply is looked up by hash this many times (with a short backoff) before the
# outcome is called unknown; each attempt costs at most one RPC timeout.
LOOKUP_BACKOFF = (0.2, 0.5, 1.0)
_KNOWN = ("already known", "already imported", "known transaction", "alreadyknown",
          "already exists", "already in mempool")


def _node_message(resp: dict) -> str:
    err = resp.get("error") if isinstance(resp, dict) else None
    return str(err.get("message", "") if isinstance(err, dict) else err or "")


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


def broadcast(ctx: TxContext, raw: bytes, tx_hash: str, nonce: int, description: str, *,
              step: Optional[str] = None) -> None:
    """Record the signed transaction in the journal, then send it. Returns when the node has it.

    The node refused it (it answered with an error): that error is raised (a decoded revert, or
    RpcError), the journal says ``dropped``. The reply was lost (dropped connection, HTTP 5xx,
    timeout, a cut or garbled body): the transaction is looked up by hash, and when the node
    does not know it, its own signed bytes are sent again (safe: same nonce, same hash). When
    that cannot tell either, TxPendingError (exit 10) names the hash and the nonce; Ctrl-C
    gives the same with exit 130. In both cases the journal entry stays open.
    """
    raw_hex = "0x" + raw.hex()
    _record(ctx, tx_hash, nonce, raw_hex, description, step)
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
                     timeout: Optional[float] = None) -> Any:
    """The receipt, polled until ``timeout`` (default: the context's receipt timeout). Node
    trouble while waiting is waited out until the deadline; then, or on Ctrl-C, TxPendingError
    names the hash and the nonce (the journal entry stays open)."""
    timeout = ctx.receipt_timeout if timeout is None else timeout
    deadline = time.monotonic() + timeout
    delay = RECEIPT_POLL_FIRST
    trouble: Optional[DtnsessError] = None
    try:
        with ctx.ui.status(f"{description}: waiting for {tx_hash[:10]}… to be mined"):
            sleep(RECEIPT_FIRST_WAIT)
            while True:
                try:
                    receipt = format_receipt(ctx.rpc.call("eth_getTransactionReceipt", [tx_hash]))
                    if receipt is not None and receipt.get("blockNumber") is not None:
                        return receipt
                    trouble = None
                except (RpcTransportError, RpcResponseError) as exc:  # a flaky node: keep
                    trouble = rpc_error(exc, ctx.rpc_url)  # waiting until the deadline
                if time.monotonic() >= deadline:
                    why = (f"the node failed while waiting for the receipt ({trouble.reason})"
                           if isinstance(trouble, RpcError) else
                           f"not mined after {timeout:g}s")
                    raise TxPendingError(description, tx_hash, nonce, why)
                sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, RECEIPT_POLL_MAX)
    except KeyboardInterrupt:
        raise TxPendingError(description, tx_hash, nonce,
                             "interrupted while waiting for the receipt",
                             interrupted=True) from None


def _failed_receipt(ctx: TxContext, base_tx: dict, receipt: Any, limit: int,
                    description: str, tx_hash: str) -> DtnsessError:
    if receipt["gasUsed"] >= limit:
        return RevertError(description, f"out of gas (used all {limit})", tx_hash=tx_hash)
    try:
        resp = raw_request(ctx, "eth_call", [_json_tx(base_tx), hex(receipt["blockNumber"])])
    except DtnsessError:
        resp = {}
    data = revert_data_of(resp.get("error"))
    if data is not None:
        return ctx.revert_error(data, description, tx_hash)
    return RevertError(description, "reverted (the replay did not reproduce the reason)",
                       tx_hash=tx_hash)


# ---------------------------------------------------------------------------------------------
# Batches: the same steps for several transactions, pipelined
# ---------------------------------------------------------------------------------------------
#
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


@dataclass
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


@dataclass
class Prepared:
    """A simulated and estimated call, or the error its simulation or estimate raised."""

    call: Call
    base_tx: dict
    return_value: Any = None
    gas_estimate: int = 0
    gas_limit: int = 0
    error: Optional[DtnsessError] = None
    l1_fee: int = 0  # the OP-stack L1 data fee the oracle quoted (0 elsewhere)


@dataclass
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
        signed = ctx.account.sign_transaction(tx)
        out.tx_hash = "0x" + bytes(signed.hash).hex()
        try:
            broadcast(ctx, bytes(signed.raw_transaction), out.tx_hash, self.nonce,
                      p.call.description)
        except TxPendingError as exc:
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
        try:
            try:
                resps: list = ctx.rpc.batch([("eth_sendRawTransaction", [r]) for r in raws])
                lost: Optional[DtnsessError] = None
            except RpcTransportError as exc:  # no answer: did they arrive? (asked one by one)
                resps, lost = [None] * len(raws), rpc_error(exc, ctx.rpc_url)
            errs = [r.get("error") if r else None for r in resps]
            if len(raws) > 1 and _batch_refused(errs):
                # NOTE: a node that refuses batches answers the whole batch with one error (it
                # took none of them): send them one by one (each its own bytes: never twice)
                resps = []
                for raw in raws:
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
            raise TxPendingError(outs[0].call.description, outs[0].tx_hash, outs[0].nonce,
                                 "interrupted while sending", interrupted=True) from None
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
