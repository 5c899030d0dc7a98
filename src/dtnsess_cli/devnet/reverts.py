"""Revert data out of web3's exceptions, for the devnet tooling and the tests (which drive the
chain through web3). The command path decodes reverts with ``dtnsess_cli.chain.abi`` directly.
"""

from __future__ import annotations

from typing import Optional

from ..chain.abi import PANIC_CODES, DecodedRevert, ErrorDecoder  # noqa: F401

__all__ = ["PANIC_CODES", "DecodedRevert", "ErrorDecoder", "revert_data_from_exception"]


def revert_data_from_exception(exc: BaseException) -> Optional[str]:
    """Revert data (0x-hex) carried by a web3 7 exception, or None when it is not a revert.

    web3 7 raises ``ContractLogicError`` (and its subclasses) with ``.data`` for
    eth_call/eth_estimateGas reverts; some nodes instead return a JSON-RPC error
    ``{"code": 3, "data": ...}``, which surfaces as ``Web3RPCError`` with ``rpc_response``.
    """
    from web3.exceptions import ContractLogicError, Web3RPCError

    from ..chain.errors import revert_data_of

    if isinstance(exc, ContractLogicError):
        data = exc.data
        if isinstance(data, dict):  # some providers nest it
            data = data.get("data")
        return data if isinstance(data, str) else ("0x" + bytes(data).hex() if data else "0x")
    if isinstance(exc, Web3RPCError):
        resp = exc.rpc_response or {}
        return revert_data_of(resp.get("error") if isinstance(resp, dict) else None)
    return None
