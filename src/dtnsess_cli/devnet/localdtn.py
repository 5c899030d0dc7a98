"""The local DTN system for dev chains and tests: deploy it, and answer requests like a node.

Dev-only: it sends from the node's unlocked accounts (Anvil), never with a user's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from ..artifacts import load_artifact

DEFAULT_MODEL = "model.system.openai-gpt-4"
DEFAULT_NODE = "node.devnet.responder"
# NOTE: system trust is hashed with abi.encode (not encodePacked), as on the deployed DTN.
SYSTEM_TRUST_NAMESPACE = keccak(abi_encode(["string"], ["trust.system.authored"]))

STATUS_SUCCESS = 1
STATUS_FAILURE = 2


def node_id(full_name: str) -> bytes:
    """The id of a node named like "node.<owner>.<name>"."""
    return keccak(text=full_name)


def model_id(name: str) -> bytes:
    return keccak(text=name)


@dataclass
class LocalSystem:
    """A deployed MockUSDT + LocalDtnRouter + AdvancedSessionManager."""

    w3: Any
    deployer: str
    token: Any
    router: Any
    manager: Any
    decimals: int
    model: str
    node: str
    node_id: bytes
    worker: str

    @property
    def unit(self) -> int:
        return 10**self.decimals


def contract(w3, name: str, address: str):
    """A web3 contract object for a bundled artifact at `address`."""
    return w3.eth.contract(address=address, abi=load_artifact(name)["abi"])


def transact(w3, fn, sender: str, value: int = 0, gas: int | None = None) -> dict:
    """Send a contract call from an unlocked dev account and wait for a successful receipt."""
    params: dict[str, Any] = {"from": sender, "value": value}
    if gas is not None:
        params["gas"] = gas
    tx_hash = fn.transact(params)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def deploy(w3, name: str, sender: str, *args) -> Any:
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = transact(w3, factory.constructor(*args), sender)
    return contract(w3, name, receipt["contractAddress"])


def deploy_system(
    w3,
    deployer: str,
    decimals: int = 6,
    *,
    worker: str | None = None,
    model: str = DEFAULT_MODEL,
    node: str = DEFAULT_NODE,
    symbol: str = "USDT",
) -> LocalSystem:
    """Deploy the whole local system and register a model and a node serving system trust."""
    worker = worker or deployer
    token = deploy(w3, "MockUSDT", deployer, f"Mock {symbol}", symbol, decimals)
    router = deploy(w3, "LocalDtnRouter", deployer, token.address)
    transact(w3, router.functions.registerModel(model), deployer)
    nid = node_id(node)
    transact(w3, router.functions.registerNode(node, worker), deployer)
    transact(w3, router.functions.addNodeToNamespace(nid, SYSTEM_TRUST_NAMESPACE), deployer)
    # Failure answers cost 0.0001 token per byte, like a router-wide rate on the deployed DTN.
    transact(w3, router.functions.setFailureFeePerByte(10**decimals // 10_000), deployer)
    manager = deploy(w3, "AdvancedSessionManager", deployer, router.address)
    return LocalSystem(w3, deployer, token, router, manager, decimals, model, node, nid, worker)


def prompt_of(call: bytes) -> str:
    """The prompt text of a request's `call` bytes (abi.encode(string[] lines))."""
    try:
        (lines,) = abi_decode(["string[]"], call)
    except Exception:  # noqa: BLE001 - a malformed call is answered as an empty prompt
        return ""
    return "\n".join(lines)


def encode_answer(text: str) -> bytes:
    """A text answer as DTN carries it: abi.encode(string)."""
    return abi_encode(["string"], [text])


def decode_answer(data: bytes) -> str:
    (text,) = abi_decode(["string"], data)
    return text


def respond_call(
    router,
    request_id: bytes,
    *,
    node: bytes,
    text: str | None = None,
    failure: str | None = None,
    stored: Any = None,
):
    """The `respondToRequest` call a node would send, with honest request and response sizes.

    A success carries `text` as abi.encode(string); `failure` makes it a FAILURE answer with
    that message. `stored` is the request as `getRequest` returned it (read when omitted).
    """
    req = stored if stored is not None else router.functions.getRequest(request_id).call()
    call_bytes = req[8][0]  # StoredRequest.request.call
    if failure is not None:
        status, message, payload = STATUS_FAILURE, failure, b""
    else:
        status, message, payload = STATUS_SUCCESS, "", encode_answer(text if text is not None else "")
    return router.functions.respondToRequest(
        request_id, status, message, payload, node, len(call_bytes), len(payload)
    )


def respond(
    system_or_router,
    request_id: bytes,
    *,
    worker: str,
    node: bytes,
    text: str | None = None,
    failure: str | None = None,
    gas: int | None = None,
) -> dict:
    """Answer a request as the node `node` would: honest sizes, success with `text` or a failure."""
    router = getattr(system_or_router, "router", system_or_router)
    stored = router.functions.getRequest(request_id).call()
    fn = respond_call(router, request_id, node=node, text=text, failure=failure, stored=stored)
    if gas is None:
        gas = respond_gas(router.w3, fn.estimate_gas({"from": worker}), stored[4])
    return transact(router.w3, fn, worker, gas=gas)


def respond_gas(w3, estimate: int, callback_gas: int) -> int:
    """The gas limit for a respondToRequest: 1.5x the estimate (as the deployed node sends) plus
    the callback's full allowance. Neither router checks that gas is left for the callback, so an
    estimate can be one that starves it (the call succeeds, the callback fails)."""
    gas = estimate * 3 // 2 + callback_gas + callback_gas // 63
    return min(gas, int(w3.eth.get_block("latest")["gasLimit"]))
