"""The local DTN system for dev chains and tests: deploy it, and answer requests like a node.

Dev-only: it sends from the node's unlocked accounts (Anvil), never with a user's key.
"""

from __future__ import annotations

from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from ..artifacts import load_artifact
from ..models import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL, DTN_MODELS, ModelSpec, spec_or_text
from ..record import record

DEFAULT_MODEL = DEFAULT_TEXT_MODEL
IMAGE_MODEL = DEFAULT_IMAGE_MODEL
DEFAULT_NODE = "node.devnet.responder"
# NOTE: system trust is hashed with abi.encode (not encodePacked), as on the deployed DTN.
SYSTEM_TRUST_NAMESPACE = keccak(abi_encode(["string"], ["trust.system.authored"]))

STATUS_SUCCESS = 1
STATUS_FAILURE = 2
CALL_IPFS, CALL_DIRECT = 0, 1  # IDtnAi.CallType
FAILURE_FEE_PER_BYTE = 1  # token units per byte of a failure answer, router-wide


def node_id(full_name: str) -> bytes:
    """The id of a node named like "node.<owner>.<name>"."""
    return keccak(text=full_name)


def model_id(name: str) -> bytes:
    return keccak(text=name)


@record
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
    """Deploy the whole local system, register the models DTN registers on Base (and ``model``)
    and a node serving system trust."""
    worker = worker or deployer
    token = deploy(w3, "MockUSDT", deployer, f"Mock {symbol}", symbol, decimals)
    router = deploy(w3, "LocalDtnRouter", deployer, token.address)
    specs = [spec_or_text(n) for n in model_names(model)]
    for api, text in dict.fromkeys((m.api, m.specs) for m in specs):
        transact(w3, router.functions.registerModelApi(api, text), deployer)
    for m in specs:
        transact(w3, router.functions.registerModel(m.name, m.api), deployer)
    nid = node_id(node)
    transact(w3, router.functions.registerNode(node, worker), deployer)
    transact(w3, router.functions.addNodeToNamespace(nid, SYSTEM_TRUST_NAMESPACE), deployer)
    # NOTE: the deployed router's failure rate: 1 unit per byte, whatever the token's decimals
    transact(w3, router.functions.setFailureFeePerByte(FAILURE_FEE_PER_BYTE), deployer)
    manager = deploy(w3, "AdvancedSessionManager", deployer, router.address)
    return LocalSystem(w3, deployer, token, router, manager, decimals, model, node, nid, worker)


def model_names(default: str = DEFAULT_MODEL) -> list:
    """The names the devnet registers: DTN's Base models, plus ``default`` if it is another."""
    names = [m.name for m in DTN_MODELS]
    return names if default in names else names + [default]


def model_specs(default: str = DEFAULT_MODEL) -> list:
    """The registered models as the devnet state records them."""
    return [{"name": n, "kind": spec_or_text(n).kind, "api": spec_or_text(n).api,
             "specs": spec_or_text(n).specs} for n in model_names(default)]


SPEC_BY_ID = {model_id(m.name): m for m in DTN_MODELS}


def spec_of_id(mid: bytes) -> ModelSpec:
    """The API spec of a registered model by its id (a text model's for any other)."""
    return SPEC_BY_ID.get(bytes(mid)) or ModelSpec("", "", ("string[]",), "string")


def decode_call(spec: ModelSpec, call: bytes) -> tuple:
    """A request's ``call`` decoded with the input types of its model's API, as the node does;
    raises ValueError when the bytes are not that."""
    try:
        return tuple(abi_decode(list(spec.inputs), bytes(call)))
    except Exception as exc:  # noqa: BLE001 - eth_abi raises several kinds
        raise ValueError(f"call is not abi.encode({', '.join(spec.inputs)}): {exc}") from None


def make_png(width: int, height: int, seed: bytes = b"") -> bytes:
    """A PNG of ``width`` x ``height``: a two-colour checkerboard (colours from ``seed``), one bit
    per pixel, so even 4096x4096 deflates to a few KB (an answer the chain can carry)."""
    import hashlib
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    digest = hashlib.sha256(seed).digest()
    palette = digest[:3] + bytes(255 - b for b in digest[:3])
    cell = 32

    def row(phase: int) -> bytes:
        bits = 0
        out = bytearray()
        for x in range(width):
            bits = (bits << 1) | ((x // cell + phase) & 1)
            if x % 8 == 7:
                out.append(bits)
                bits = 0
        if width % 8:
            out.append(bits << (8 - width % 8))
        return b"\x00" + bytes(out)  # filter type 0 per row

    rows = (row(0), row(1))
    raw = b"".join(rows[(y // cell) & 1] for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)  # 1 bit, palette
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"PLTE", palette)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


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
    payload: bytes | None = None,
    sizes: tuple | None = None,
):
    """The `respondToRequest` call a node would send.

    A success carries `text` as abi.encode(string), or `payload` as given (already encoded);
    `failure` makes it a FAILURE answer with that message. `stored` is the request as
    `getRequest` returned it (read when omitted). `sizes` are the (requestSize, responseSize)
    reported; by default the honest byte counts (DTN's node reports others: the responder's
    `node_sizes`), which the router's charging rules are tested with.
    """
    req = stored if stored is not None else router.functions.getRequest(request_id).call()
    call_bytes = req[8][0]  # StoredRequest.request.call
    if failure is not None:
        status, message, payload = STATUS_FAILURE, failure, b""
    elif payload is not None:
        status, message = STATUS_SUCCESS, ""
    else:
        status, message, payload = STATUS_SUCCESS, "", encode_answer(text if text is not None else "")
    if sizes is None:
        sizes = (len(call_bytes), len(payload))
    return router.functions.respondToRequest(request_id, status, message, payload, node, *sizes)


def respond(
    system_or_router,
    request_id: bytes,
    *,
    worker: str,
    node: bytes,
    text: str | None = None,
    failure: str | None = None,
    gas: int | None = None,
    payload: bytes | None = None,
    sizes: tuple | None = None,
) -> dict:
    """Answer a request as the node `node` would: success with `text` (or the encoded
    `payload`) or a failure, reporting `sizes` (default: honest ones, see respond_call)."""
    router = getattr(system_or_router, "router", system_or_router)
    stored = router.functions.getRequest(request_id).call()
    fn = respond_call(router, request_id, node=node, text=text, failure=failure, stored=stored,
                      payload=payload, sizes=sizes)
    if gas is None:
        gas = respond_gas(router.w3, fn.estimate_gas({"from": worker}), stored[4])
    return transact(router.w3, fn, worker, gas=gas)


def respond_gas(w3, estimate: int, callback_gas: int) -> int:
    """The gas limit for a respondToRequest: 1.5x the estimate (as the deployed node sends) plus
    the callback's full allowance. Neither router checks that gas is left for the callback, so an
    estimate can be one that starves it (the call succeeds, the callback fails)."""
    gas = estimate * 3 // 2 + callback_gas + callback_gas // 63
    return min(gas, int(w3.eth.get_block("latest")["gasLimit"]))
