"""The one way to send a transaction, and revert decoding.

``send_and_wait`` is used by every write: simulate (eth_call from the sender; a revert
becomes a decoded error and nothing is sent), estimate gas (+20%), EIP-1559 fees, check ETH
for gas, confirm with the cost (terminal only, unless --yes), sign locally, send once, wait
for the receipt with a deadline, check ``status`` (a failed receipt is replayed at its block
to recover the revert data), decode the receipt's events.

NOTE: nothing is ever resent. A receipt timeout reports the hash and exits TIMEOUT: the
transaction may still be mined, and a resend would duplicate it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from .errors import (
    AbortedError,
    DtnsessError,
    InsufficientFundsError,
    NotAuthorizedError,
    RevertError,
    RpcError,
    WaitTimeoutError,
)
from .units import format_amount, format_eth, format_gwei

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

PANIC_CODES = {
    0x00: "generic compiler panic",
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupted storage byte array",
    0x31: "pop() on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory (too large an allocation)",
    0x51: "call to an uninitialized internal function",
}

GAS_MARGIN_NUM, GAS_MARGIN_DEN = 12, 10  # +20% over the estimate
DEFAULT_RECEIPT_TIMEOUT = 120.0


# ---------------------------------------------------------------------------------------------
# Revert decoding
# ---------------------------------------------------------------------------------------------

@dataclass
class DecodedRevert:
    name: Optional[str]  # "Error", "Panic", a custom error name, or None (unknown / empty)
    args: tuple = ()
    arg_names: tuple = ()
    reason: str = ""
    data: str = "0x"


def _error_signature(entry: dict) -> str:
    return f"{entry['name']}({','.join(_abi_type(i) for i in entry.get('inputs', []))})"


def _abi_type(param: dict) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param.get("components", []))
        return f"({inner}){t[5:]}"
    return t


class ErrorDecoder:
    """Decodes revert data by selector against the ``type == "error"`` entries of ABIs."""

    def __init__(self, abis: Iterable[Sequence[dict]] = ()) -> None:
        from eth_utils import keccak

        self.errors: dict[bytes, dict] = {}
        for abi in abis:
            for entry in abi:
                if entry.get("type") == "error":
                    sel = keccak(text=_error_signature(entry))[:4]
                    self.errors.setdefault(sel, entry)

    def decode(self, data: Any) -> DecodedRevert:
        from eth_abi import decode as abi_decode

        raw = _to_bytes(data)
        hexdata = "0x" + raw.hex()
        if not raw:
            return DecodedRevert(None, reason="reverted without a reason", data=hexdata)
        sel, body = raw[:4], raw[4:]
        try:
            if sel == ERROR_STRING_SELECTOR:
                (msg,) = abi_decode(["string"], body)
                return DecodedRevert("Error", (msg,), ("reason",), msg, hexdata)
            if sel == PANIC_SELECTOR:
                (code,) = abi_decode(["uint256"], body)
                text = PANIC_CODES.get(code, "unknown panic code")
                return DecodedRevert("Panic", (code,), ("code",),
                                     f"panic 0x{code:02x}: {text}", hexdata)
            entry = self.errors.get(sel)
            if entry is not None:
                types = [_abi_type(i) for i in entry.get("inputs", [])]
                names = tuple(i.get("name") or f"arg{n}" for n, i in
                              enumerate(entry.get("inputs", [])))
                args = tuple(abi_decode(types, body)) if types else ()
                shown = ", ".join(_fmt_arg(a) for a in args)
                return DecodedRevert(entry["name"], args, names,
                                     f"{entry['name']}({shown})", hexdata)
        except Exception:  # malformed data for the selector: fall through to "unknown"
            pass
        return DecodedRevert(None, reason=f"unknown error (data {hexdata[:74]}"
                             f"{'...' if len(hexdata) > 74 else ''})", data=hexdata)


def _fmt_arg(a: Any) -> str:
    if isinstance(a, (bytes, bytearray)):
        return "0x" + bytes(a).hex()
    if isinstance(a, str) and not a.startswith("0x"):
        return repr(a)
    return str(a)


def _to_bytes(data: Any) -> bytes:
    if data is None:
        return b""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):
        s = data[2:] if data[:2] in ("0x", "0X") else data
        try:
            return bytes.fromhex(s)
        except ValueError:
            return b""
    if hasattr(data, "hex"):
        return _to_bytes(data.hex())
    return b""


def revert_data_from_exception(exc: BaseException) -> Optional[str]:
    """Revert data (0x-hex) carried by a web3 7 exception, or None when it is not a revert.

    web3 7 raises ``ContractLogicError`` (and its subclasses ``ContractCustomError``,
    ``ContractPanicError``) with ``.data`` for eth_call/eth_estimateGas reverts (checked on
    Anvil 1.7); some nodes instead return a JSON-RPC error ``{"code": 3, "data": ...}``, which
    surfaces as ``Web3RPCError`` with ``rpc_response``.
    """
    from web3.exceptions import ContractLogicError, Web3RPCError

    if isinstance(exc, ContractLogicError):
        data = exc.data
        if isinstance(data, dict):  # some providers nest it
            data = data.get("data")
        return data if isinstance(data, str) else ("0x" + bytes(data).hex() if data else "0x")
    if isinstance(exc, Web3RPCError):
        resp = exc.rpc_response or {}
        err = resp.get("error") if isinstance(resp, dict) else None
        if isinstance(err, dict):
            data = err.get("data")
            if isinstance(data, dict):
                data = data.get("data") or data.get("result")
            msg = str(err.get("message", "")).lower()
            if err.get("code") == 3 or (isinstance(data, str) and data.startswith("0x")):
                return data if isinstance(data, str) else "0x"
            # NOTE: an empty revert ("execution reverted", no data) has no selector to go by;
            # the JSON-RPC code -32000/-32015 plus this generic phrase is all nodes give.
            if "execution reverted" in msg or "revert" in msg:
                return "0x"
    return None


# Friendly messages for well-known reverts of the manager, the token and the DTN router.
def _friendly(dec: DecodedRevert, description: str, tx_hash: Optional[str],
              token_decimals: Optional[int], token_symbol: str) -> DtnsessError:
    a = dec.args

    def tok(n: int) -> str:
        if token_decimals is None:
            return f"{n} units"
        return f"{format_amount(n, token_decimals)} {token_symbol}".rstrip()

    name = dec.name
    if name == "OwnableUnauthorizedAccount":
        return NotAuthorizedError(f"{description}: {a[0]} is not the contract owner",
                                  hint="only the deployer (owner) may do this")
    if name == "NotAllowedToUseSession":
        return NotAuthorizedError(f"{description}: {a[1]} may not use session {a[0]}",
                                  hint="use your own session, or take one with `dtnsess pool get`")
    if name == "Error" and a and a[0] in ("Not session owner", "Not owner"):
        return NotAuthorizedError(f"{description}: you are not the owner of this session")
    if name == "RequestsPending":
        sid, pending, retry_after = a
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(retry_after)))
        return RevertError(
            description,
            f"session {sid} has {pending} pending request{'s' if pending != 1 else ''}; "
            f"retry after {when}",
            name=name, args=a, data=dec.data, tx_hash=tx_hash,
            hint="wait for the answers (`dtnsess requests --pending`); closing now would "
                 "strand them",
        )
    if name == "RequestIdCollision":
        return RevertError(
            description, f"request id {_fmt_arg(a[0])} is already in use this second",
            name=name, args=a, data=dec.data, tx_hash=tx_hash,
            hint="DTN allows one request per session and user per second: retry in a second "
                 "or use another session",
        )
    if name == "ERC20InsufficientBalance":
        return InsufficientFundsError("fee token balance", tok(a[1]), tok(a[2]))
    if name == "ERC20InsufficientAllowance":
        return InsufficientFundsError("fee token allowance", tok(a[1]), tok(a[2]),
                                      hint="run `dtnsess approve AMOUNT`")
    if name == "NothingToWithdraw":
        return RevertError(description, "no refunds to withdraw", name=name, args=a,
                           data=dec.data, tx_hash=tx_hash)
    if name == "InvalidConfig":
        return RevertError(description, f"invalid configuration: {a[0]}", name=name, args=a,
                           data=dec.data, tx_hash=tx_hash)
    if name == "ZeroAmount":
        return RevertError(description, "amount must be greater than zero", name=name,
                           data=dec.data, tx_hash=tx_hash)
    hint = None
    if name == "Error" and a and a[0] == "Balance too low":
        hint = "the amount is below the contract's minimum session balance (`dtnsess config show`)"
    elif name == "Error" and a and a[0] == "Model does not exist":
        hint = "use a full registry name such as model.system.openai-gpt-4 (--model)"
    elif name == "Error" and a and a[0] == "Insufficient callback gas":
        hint = "raise --value (it must cover the callback gas)"
    return RevertError(description, dec.reason, name=name, args=a, data=dec.data,
                       tx_hash=tx_hash, hint=hint)


# ---------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------

@dataclass
class DecodedEvent:
    name: str
    address: str
    args: dict
    log_index: int
    block_number: int
    tx_hash: str


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

    @property
    def fee_wei(self) -> int:
        if self.gas_used is not None and self.effective_gas_price is not None:
            return self.gas_used * self.effective_gas_price
        return self.gas_limit * self.max_fee_per_gas

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
        return out


@dataclass
class TxContext:
    """What sending needs: the connection, the signer, and the UI hooks."""

    w3: Any
    account: Any  # eth_account LocalAccount
    chain_id: int
    ui: Any  # render.Renderer (status/confirm/interactive)
    errors: ErrorDecoder
    event_abis: Sequence[Sequence[dict]] = ()
    yes: bool = False
    receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT
    token_decimals: Optional[int] = None
    token_symbol: str = ""
    rpc_url: Optional[str] = None
    _event_map: Optional[dict] = None

    def event_map(self) -> dict:
        if self._event_map is None:
            from eth_utils import keccak

            m: dict[bytes, list] = {}
            for abi in self.event_abis:
                for e in abi:
                    if e.get("type") == "event" and not e.get("anonymous"):
                        topic = keccak(text=f"{e['name']}({','.join(_abi_type(i) for i in e['inputs'])})")
                        if not any(x == e for x in m.get(topic, [])):
                            m.setdefault(topic, []).append(e)
            self._event_map = m
        return self._event_map

    def revert_error(self, data: Any, description: str, tx_hash: Optional[str] = None) -> DtnsessError:
        return _friendly(self.errors.decode(data), description, tx_hash,
                         self.token_decimals, self.token_symbol)


def _call_parts(fn_call: Any) -> tuple[Optional[str], str, Optional[dict]]:
    """(to, data, function abi) of a bound ContractFunction or ContractConstructor."""
    if hasattr(fn_call, "data_in_transaction"):  # ContractConstructor
        return None, fn_call.data_in_transaction, None
    # NOTE: _encode_transaction_data is web3's own encoder for a bound function; using it
    # avoids build_transaction(), which would fill gas/fees/nonce with extra RPC round trips.
    return fn_call.address, fn_call._encode_transaction_data(), fn_call.abi


def decode_logs(ctx: TxContext, logs: Iterable[Any]) -> list:
    """Decode logs against the known event ABIs (unknown logs are skipped)."""
    from web3._utils.events import get_event_data

    out = []
    emap = ctx.event_map()
    for log in logs:
        topics = log.get("topics") or []
        if not topics:
            continue
        cands = emap.get(bytes(topics[0]), [])
        for abi in cands:
            try:
                ev = get_event_data(ctx.w3.codec, abi, log)
            except Exception:  # same topic, different indexed layout (ERC20 vs ERC721 Transfer)
                continue
            txh = log.get("transactionHash")
            out.append(DecodedEvent(
                name=ev["event"], address=ev["address"], args=dict(ev["args"]),
                log_index=ev["logIndex"], block_number=ev["blockNumber"],
                tx_hash=("0x" + bytes(txh).hex()) if txh is not None else "",
            ))
            break
    return out


# NOTE: simulate against the pending block: its timestamp is "now", as the mined transaction's
# will be. At "latest", Anvil (and an idle chain) reuses the last block's timestamp, so a second
# request of a session in a later second still "collides" in the simulation (DTN request ids
# have one-second resolution).
SIM_BLOCK = "pending"


def simulate(ctx: TxContext, fn_call: Any, *, value: int = 0, description: str,
             block: Any = SIM_BLOCK) -> Any:
    """eth_call ``fn_call`` from the sender; the decoded return value (None for a deploy)."""
    to, data, fn_abi = _call_parts(fn_call)
    tx = {"from": ctx.account.address, "data": data, "value": value}
    if to:
        tx["to"] = to
    raw = _rpc(ctx, lambda: ctx.w3.eth.call(tx, block), description)
    if fn_abi is None:
        return None
    from eth_abi import decode as abi_decode
    from eth_utils import get_abi_output_types

    types = get_abi_output_types(fn_abi)
    if not types:
        return None
    vals = abi_decode(types, bytes(raw))
    return vals[0] if len(vals) == 1 else tuple(vals)


def _rpc(ctx: TxContext, thunk: Callable[[], Any], description: str,
         tx_hash: Optional[str] = None) -> Any:
    """Run one RPC call; reverts become decoded errors, node trouble an RpcError."""
    try:
        return thunk()
    except DtnsessError:
        raise
    except Exception as exc:
        data = revert_data_from_exception(exc)
        if data is not None:
            raise ctx.revert_error(data, description, tx_hash) from None
        raise to_rpc_error(exc, ctx.rpc_url) from exc


def to_rpc_error(exc: BaseException, url: Optional[str]) -> DtnsessError:
    """Map transport / node errors to RpcError (or InsufficientFundsError where obvious)."""
    from web3.exceptions import Web3RPCError

    if isinstance(exc, Web3RPCError):
        resp = exc.rpc_response or {}
        err = resp.get("error") if isinstance(resp, dict) else None
        msg = err.get("message") if isinstance(err, dict) else str(exc)
        return RpcError(url, f"node error: {msg}", default_hint=False)
    name = type(exc).__name__
    if "Timeout" in name:
        return RpcError(url, "request timed out")
    if "Connection" in name:
        return RpcError(url, "cannot connect")
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return RpcError(url, f"{name}: {first}")


def fee_params(ctx: TxContext) -> dict:
    """EIP-1559 fees (maxFee = 2*baseFee + tip, tip from the node); legacy gasPrice without
    a baseFee."""
    w3 = ctx.w3
    block = _rpc(ctx, lambda: w3.eth.get_block("latest"), "fee lookup")
    base = block.get("baseFeePerGas")
    if base is None:
        return {"gasPrice": _rpc(ctx, lambda: w3.eth.gas_price, "fee lookup")}
    try:
        tip = w3.eth.max_priority_fee
    except Exception:
        # NOTE: some nodes lack eth_maxPriorityFeePerGas; 1 gwei is web3's own fallback
        tip = 10**9
    return {"maxPriorityFeePerGas": int(tip), "maxFeePerGas": 2 * int(base) + int(tip)}


def send_and_wait(ctx: TxContext, fn_call: Any, *, value: int = 0, description: str,
                  dry_run: bool = False, confirm: bool = True,
                  token_cost: Optional[str] = None, gas_limit: Optional[int] = None) -> TxResult:
    """Simulate, estimate, confirm, sign, send once, wait, check status, decode events."""
    w3 = ctx.w3
    sender = ctx.account.address
    to, data, _ = _call_parts(fn_call)

    # 1. simulate: a revert here means nothing is sent
    ret = simulate(ctx, fn_call, value=value, description=description)

    # 2. estimate gas (+20%)
    base_tx: dict = {"from": sender, "data": data, "value": value}
    if to:
        base_tx["to"] = to
    if gas_limit is None:
        est = _rpc(ctx, lambda: w3.eth.estimate_gas(base_tx, SIM_BLOCK), description)
        limit = est * GAS_MARGIN_NUM // GAS_MARGIN_DEN
    else:
        est = limit = gas_limit
    fees = fee_params(ctx)
    max_fee = fees.get("maxFeePerGas", fees.get("gasPrice", 0))
    result = TxResult(description=description, dry_run=dry_run, sender=sender, to=to,
                      value=value, gas_estimate=est, gas_limit=limit, max_fee_per_gas=max_fee,
                      return_value=ret)

    # 3. ETH for gas (and value)
    need = limit * max_fee + value
    have = _rpc(ctx, lambda: w3.eth.get_balance(sender), "balance lookup")
    if have < need:
        raise InsufficientFundsError(
            "ETH for gas", f"{format_eth(have)} ETH",
            f"up to {format_eth(need)} ETH ({limit} gas at {format_gwei(max_fee)} gwei"
            + (f" + {format_eth(value)} ETH value" if value else "") + ")",
            hint=f"send ETH to {sender}")
    if dry_run:
        return result

    # 4. confirm (only a person at a terminal is asked)
    if confirm and not ctx.yes and ctx.ui.interactive:
        cost = (f"{description}\n  gas: ~{est} (limit {limit}) at up to {format_gwei(max_fee)} gwei"
                f" = at most {format_eth(limit * max_fee)} ETH")
        if value:
            cost += f"\n  value: {format_eth(value)} ETH"
        if token_cost:
            cost += f"\n  tokens: {token_cost}"
        ctx.ui.info(cost)
        if not ctx.ui.confirm("Send this transaction?"):
            raise AbortedError(description)

    # 5. sign locally and send once
    nonce = _rpc(ctx, lambda: w3.eth.get_transaction_count(sender, "pending"), "nonce lookup")
    tx = dict(base_tx, nonce=nonce, gas=limit, chainId=ctx.chain_id, **fees)
    if "maxFeePerGas" in tx:
        tx["type"] = 2
    signed = ctx.account.sign_transaction(tx)
    tx_hash_b = _rpc(ctx, lambda: w3.eth.send_raw_transaction(signed.raw_transaction),
                     description)
    tx_hash = "0x" + bytes(tx_hash_b).hex()
    result.tx_hash = tx_hash

    # 6. wait for the receipt with a deadline (never resend)
    receipt = wait_for_receipt(ctx, tx_hash, description)
    result.block_number = receipt["blockNumber"]
    result.gas_used = receipt["gasUsed"]
    result.effective_gas_price = receipt.get("effectiveGasPrice")
    result.contract_address = receipt.get("contractAddress")
    if receipt["status"] != 1:
        raise _failed_receipt(ctx, base_tx, receipt, limit, description, tx_hash)
    result.events = decode_logs(ctx, receipt["logs"])
    return result


def wait_for_receipt(ctx: TxContext, tx_hash: str, description: str) -> Any:
    from web3.exceptions import TransactionNotFound

    deadline = time.monotonic() + ctx.receipt_timeout
    delay = 0.05
    with ctx.ui.status(f"{description}: waiting for {tx_hash[:10]}… to be mined"):
        while True:
            try:
                receipt = ctx.w3.eth.get_transaction_receipt(tx_hash)
                if receipt is not None and receipt.get("blockNumber") is not None:
                    return receipt
            except TransactionNotFound:
                pass
            except Exception as exc:
                # a flaky node while waiting: keep waiting until the deadline, never resend
                if time.monotonic() >= deadline:
                    raise to_rpc_error(exc, ctx.rpc_url) from exc
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    "the receipt", ctx.receipt_timeout, tx_hash=tx_hash,
                    hint="the transaction may still be mined; do not resend it blindly, "
                         "check its hash in a block explorer first")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _failed_receipt(ctx: TxContext, base_tx: dict, receipt: Any, limit: int,
                    description: str, tx_hash: str) -> DtnsessError:
    if receipt["gasUsed"] >= limit:
        return RevertError(description, f"out of gas (used all {limit})", tx_hash=tx_hash)
    try:
        ctx.w3.eth.call(base_tx, receipt["blockNumber"])
    except Exception as exc:
        data = revert_data_from_exception(exc)
        if data is not None:
            return ctx.revert_error(data, description, tx_hash)
    return RevertError(description, "reverted (the replay did not reproduce the reason)",
                       tx_hash=tx_hash)
