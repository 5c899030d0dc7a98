"""Simulation and revert errors: ``eth_call`` from the sender before anything is sent, the
error of a failed simulation or estimate, and the revert reason of a mined failure (replayed at
its block)."""

from __future__ import annotations


from ..errors import DtnsessError, RevertError, RpcError
from .context import (TxContext, _call_parts, _decode_return, _json_tx, _node_message,
                      raw_request, response_error)
from .errors import revert_data_of

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

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
