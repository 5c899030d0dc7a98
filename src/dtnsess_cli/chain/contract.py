"""A contract at an address, as JSON-RPC requests: what ``w3.eth.contract`` was used for.

``Contract(address, abi).call("getSession", 7)`` is a :class:`Call`: its ``request()`` is the
``("eth_call", [...])`` pair to put in a batch, its ``decode(result)`` the return value.
:func:`read` runs calls (and raw extra requests) in one batch. Transactions take
``Contract.data(name, *args)`` as their ``data`` field.
"""

from __future__ import annotations

from ..record import record
from .abi import ContractAbi, Function, to_checksum_address, to_hex
from .errors import RpcResponseError

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence


@record(frozen=True)
class Call:
    """One contract function call: to, data, and how to decode its result."""

    to: str
    data: str  # 0x-hex call data
    function: Function

    def request(self, block: Any = "latest", *, sender: Optional[str] = None,
                value: int = 0, overrides: Optional[dict] = None) -> tuple:
        """The ``eth_call`` request; ``overrides`` is a state override set (geth/Anvil third
        parameter: ``{address: {"stateDiff": {slot: value}}}``), e.g. to simulate a call as if
        an approval sent in the same batch were already mined."""
        tx: dict = {"to": self.to, "data": self.data}
        if sender:
            tx["from"] = sender
        if value:
            tx["value"] = hex(value)
        params: list = [tx, block if isinstance(block, str) else hex(block)]
        if overrides:
            params.append(overrides)
        return ("eth_call", params)

    def decode(self, result: Any) -> Any:
        return self.function.decode_output(result)


class Contract:
    """An ABI bound to an address."""

    def __init__(self, address: str, abi: Any) -> None:
        self.address = to_checksum_address(address)
        self.abi = abi if isinstance(abi, ContractAbi) else ContractAbi(abi)

    def call(self, name: str, *args: Any) -> Call:
        fn = self.abi.function(name)
        return Call(self.address, to_hex(fn.encode_call(*args)), fn)

    def data(self, name: str, *args: Any) -> str:
        """The ``data`` of a transaction calling ``name(*args)``."""
        return to_hex(self.abi.function(name).encode_call(*args))

    def __repr__(self) -> str:
        return f"Contract({self.address})"


_RECEIPT_INTS = ("blockNumber", "gasUsed", "cumulativeGasUsed", "effectiveGasPrice", "status",
                 "transactionIndex", "type", "blobGasUsed", "blobGasPrice")


def format_receipt(raw: Optional[dict]) -> Optional[dict]:
    """A JSON-RPC receipt with web3's types where the send path reads them: quantities as ints,
    ``contractAddress``/``from``/``to`` checksummed; hashes stay 0x-hex strings and ``logs`` stay
    raw (:class:`~dtnsess_cli.chain.abi.EventDecoder` takes them as they are). None stays None
    (not mined yet)."""
    if raw is None:
        return None
    out = dict(raw)
    for k in _RECEIPT_INTS:
        v = out.get(k)
        if isinstance(v, str):
            out[k] = int(v, 16)
    for k in ("contractAddress", "from", "to"):
        if out.get(k):
            out[k] = to_checksum_address(out[k])
    return out


def read(rpc: Any, calls: Sequence[Call], *, block: Any = "latest",
         extra: Sequence[tuple] = ()) -> tuple:
    """``calls`` (and raw ``extra`` requests) in one batch, so one round trip and one block.

    Returns ``(values, extra_replies)``: the decoded return values, and the raw reply dicts of
    ``extra``. The first failed call raises its :class:`RpcResponseError` (a revert carries
    its data: decode it with an :class:`~dtnsess_cli.chain.abi.ErrorDecoder`).
    """
    replies = rpc.batch([c.request(block) for c in calls] + list(extra))
    values = []
    for c, r in zip(calls, replies):
        if "error" in r:
            e = r["error"] if isinstance(r["error"], dict) else {"message": str(r["error"])}
            raise RpcResponseError(f"eth_call {c.function.name}", e.get("code"),
                                   str(e.get("message", "")), e.get("data"))
        values.append(c.decode(r.get("result")))
    return values, replies[len(calls):]
