"""Fees and funds: the gas limit for an estimate, EIP-1559 fees (the node's tip), the L1 data fee
on OP-stack chains, the facts a send reads with its first batch (fees, ETH balance, nonce), the
ETH check, and the confirmation that shows the cost."""

from __future__ import annotations

import time

from ..errors import AbortedError, DtnsessError, InputError, InsufficientFundsError
from ..record import field, record, replace
from ..units import format_eth, format_gwei
from .abi import encode, to_bytes
from .context import TxContext, response_error

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence

GAS_MARGIN_NUM, GAS_MARGIN_DEN = 12, 10  # +20% over the estimate
# Newer Ethereum forks cap a transaction at 2^24 gas: the margin must not push a fitting one over.
TX_GAS_CAP = 2**24


def gas_limit_for(estimate: int) -> int:
    """The gas limit sent for an estimate: +20%, but not past the per-transaction cap."""
    limit = estimate * GAS_MARGIN_NUM // GAS_MARGIN_DEN
    return TX_GAS_CAP if estimate <= TX_GAS_CAP < limit else limit


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


@record
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


def with_overrides(ctx: TxContext, facts: ChainFacts, first: bool = True) -> ChainFacts:
    """``facts`` with what the user fixed (``ctx.overrides``): the fees, and for the ``first``
    transaction of a write the nonce (the others follow it). A nonce below the chain's next
    (``pending``) is refused before signing (it is used, or held by a pending transaction:
    `dtnsess tx speedup|cancel` replaces one of ours); above it, a warning: the transaction
    waits in the node for the ones between. A max fee under the base fee: a warning."""
    o = ctx.overrides
    nonce = facts.nonce
    if o.nonce is not None and first:
        sender = ctx.account.address
        if o.nonce < facts.nonce:
            raise InputError("--nonce", str(o.nonce),
                             f"below the next nonce of {sender} ({facts.nonce}): it is used, "
                             f"or held by a pending transaction (to replace one of ours: "
                             f"`dtnsess tx speedup|cancel HASH`); nothing sent")
        if o.nonce > facts.nonce:
            ctx.ui.info(f"warning: nonce {o.nonce} is above the next nonce of {sender} "
                        f"({facts.nonce}): the transaction waits in the node until nonces "
                        f"{facts.nonce}..{o.nonce - 1} are used")
        nonce = o.nonce
        # NOTE: used once: later transactions of this run (a next wave of `request --file`)
        # count on from it, as the chain does
        ctx.overrides = replace(o, nonce=None)
    fees = dict(facts.fees or {})
    if (o.priority_fee is not None or o.max_fee is not None) and "maxFeePerGas" in fees:
        tip, mx = fees["maxPriorityFeePerGas"], fees["maxFeePerGas"]
        base = (mx - tip) // 2  # fees are 2 * base fee + tip (_facts_from)
        tip = o.priority_fee if o.priority_fee is not None else min(tip, o.max_fee)
        mx = o.max_fee if o.max_fee is not None else 2 * base + tip
        if tip > mx:
            raise InputError("--priority-gas-price", format_gwei(tip) + " gwei",
                             f"above the max fee ({format_gwei(mx)} gwei); nothing sent")
        if mx < base:
            ctx.ui.info(f"warning: max fee {format_gwei(mx)} gwei is below the base fee "
                        f"({format_gwei(base)} gwei): the transaction waits until it falls")
        fees = {"maxPriorityFeePerGas": tip, "maxFeePerGas": mx}
    elif o.max_fee is not None:  # a chain without EIP-1559: the gas price
        fees = {"gasPrice": o.max_fee}
    return replace(facts, fees=fees, nonce=nonce)


def limit_for(ctx: TxContext, estimate: int, limit: int, description: str) -> int:
    """The gas limit to send: ``limit`` (the estimate + 20%), or the user's --gas-limit, which
    must hold the estimate (below it the transaction would run out of gas: refused)."""
    fixed = ctx.overrides.gas_limit
    if fixed is None:
        return limit
    if fixed < estimate:
        raise InputError("--gas-limit", str(fixed), f"below the estimate for {description} "
                         f"({estimate} gas): it would run out of gas; nothing sent")
    return fixed


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
