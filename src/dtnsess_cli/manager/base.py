"""Constants and helpers shared by the session manager's modules: ids and routing, the
minimal ERC-20 ABI, contracts by artifact name, and ``_writes`` (one sender at a time)."""

from __future__ import annotations

import functools
import os
import re
import time

from ..errors import ConfigError, DtnsessError, InputError, RevertError

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Sequence, TypeVar, cast, overload
else:
    def overload(fn):  # what typing's does at run time (its registry aside): the last def wins
        return fn

    def cast(typ, value):
        return value


REQUEST_STATUS = {0: "none", 1: "pending", 2: "succeeded", 3: "failed"}


# pending on the manager, but the router holds the answer: its callback failed (`dtnsess settle`)
ANSWERED = "answered, callback failed"
MAX_UINT256 = 2**256 - 1
# NOTE: the value is also the callback gas, one wei per gas unit (DTN-FACTS). The manager's
# callback reads the whole answer back, so it needs more gas for longer answers; measured by
# bench/callback_gas.py (answer characters -> least callbackGas; bench/RESULTS.md; re-measure
# after any change to AdvancedSessionManager.sol). Too little: the answer stands on the router
# but the manager never records it (`dtnsess settle`).
CALLBACK_GAS_NEEDS = ((40, 25_243), (600, 28_125), (1_000, 30_370), (2_000, 35_741),
                      (4_000, 46_532), (8_000, 68_701), (16_384, 116_698))
# refused below: not even a short answer (or an IPFS CID) can be recorded
CALLBACK_GAS_FLOOR = 27_000
# warned below: a typical LLM answer (4,000 characters, ~700 words) would fail the callback
CALLBACK_GAS_TYPICAL = 48_000
# the default covers the longest answer a node can send (16 KB) with 2.5x room
DEFAULT_CALLBACK_GAS_WEI = 300_000
# more than an answer's transaction can carry (2^24 gas on newer forks): never answered
MAX_CALLBACK_GAS_WEI = 10_000_000


def callback_gas_warning(wei: int, given: Optional[str] = None) -> Optional[str]:
    """Refuse a callback gas (``--value``) no answer fits in, or one beyond what a node's
    answer can carry; the warning when a typical answer would fail the callback, else None.
    ``given``: the value as the user typed it (``0.00002gwei``), which the messages echo."""
    shown = (given or "").strip() or str(wei)
    # NOTE: echo what was typed, and its wei when that differs ("0.00002gwei is 20,000 wei")
    what = f"{wei:,} wei" if shown == str(wei) else f"{shown} is {wei:,} wei"
    short = CALLBACK_GAS_NEEDS[0][1]
    if wei < CALLBACK_GAS_FLOOR:
        raise InputError("--value", shown, f"{what}, {wei:,} gas for the callback; even a "
                         f"short answer needs {short:,} (measured), so at least "
                         f"{CALLBACK_GAS_FLOOR:,} wei",
                         hint=f"the value is the callback gas in wei; the default "
                              f"{DEFAULT_CALLBACK_GAS_WEI:,} covers answers up to 16 KB")
    if wei > MAX_CALLBACK_GAS_WEI:
        raise InputError("--value", shown, f"{what}, {wei:,} gas for the callback, more than a "
                         f"node's answer can carry (at most {MAX_CALLBACK_GAS_WEI:,} wei)",
                         hint=f"the value is the callback gas in wei; the default is "
                              f"{DEFAULT_CALLBACK_GAS_WEI:,}")
    if wei >= CALLBACK_GAS_TYPICAL:
        return None
    fits = max(n for n, need in CALLBACK_GAS_NEEDS if need <= wei)
    return (f"--value {shown} gives the callback {wei:,} gas: an answer over ~{fits:,} characters "
            f"fails it (a typical 4,000-character answer needs {CALLBACK_GAS_TYPICAL:,}); the "
            f"answer then waits for `dtnsess settle`")


# the manager's documented configuration bounds (MAX_SESSION_AGE, MAX_REQUEST_TIMEOUT,
# MAX_POOL_SIZE, grant durations); the token bounds depend on decimals (see _check_config_bounds)
MAX_SESSION_AGE = 365 * 86400
MAX_REQUEST_TIMEOUT = 7 * 86400
MAX_POOL_SIZE = 100
# MIN_GRANT_DURATION, MAX_GRANT_DURATION: how long a pool grant may last
MIN_GRANT_DURATION = 10 * 60
MAX_GRANT_DURATION = 30 * 86400
# sessions one performUpkeep (and cleanupOldSessions) closes at most: DEFAULT_CLEANUP_BATCH
UPKEEP_BATCH = 50


# NOTE: a prompt is stored on chain by the router: ~740 gas per byte measured against the local
# DTN (16 KB: 12.1M gas); newer forks cap a transaction at 2^24 gas (~22 KB), and the answer's
# transaction must fit as well, so 16 KB leaves room.
MAX_PROMPT_BYTES = 16 * 1024
PROMPT_GAS_PER_BYTE = 740
AGGREGATION_ANY = 0
# IDtnAi.CallType: with IPFS the node stores the output on IPFS and answers its CID
CALLTYPE_IPFS, CALLTYPE_DIRECT = 0, 1
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
    from ..chain.abi import keccak

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
    from ..chain.abi import encode, keccak

    # NOTE: system trust hashes with abi.encode (not encodePacked), as the deployed DTN does
    return keccak(encode(["string"], [SYSTEM_TRUST]))


def namespace_routing_id(name: str) -> bytes:
    """``--namespace``: a 0x 32-byte id as is; ``trust.system.authored`` is system trust (the
    router's own abi.encode hash, the only one nodes serve it under); any other name is
    keccak256(abi.encodePacked(name)), as the node registry hashes namespace names."""
    if (name or "").strip() == SYSTEM_TRUST:
        return system_trust_id()
    return routing_id(name)


# NOTE: patterns are strings, compiled by re's cache when first used, not at start-up
# A node's name: OWNER.NAME (or its full form node.OWNER.NAME), each part letters, digits, "_"
# or "-": anything else names no node, and a request routed to it is paid and never answered
_NODE_NAME = r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+"


def node_routing_id(name: str) -> bytes:
    """``--node tester.node1`` -> keccak256(abi.encodePacked("node.tester.node1"))."""
    s = (name or "").strip()
    if s[:2].lower() == "0x" and len(s) == 66:
        return routing_id(s)
    if not re.fullmatch(_NODE_NAME, s):
        raise InputError("node name", name, "expected OWNER.NAME (letters, digits, _ and -), "
                         "e.g. tester.node1, or a 0x node id")
    return routing_id(s if s.startswith("node.") else "node." + s)


# ``nodes(bytes32)`` of a router that keeps a node registry (the local DTN does: worker,
# registered, name); a router without one answers an error or nothing, and is not asked again
NODES_SELECTOR = "0xd86e697d"


def node_registered(result: Any) -> Optional[bool]:
    """The ``registered`` flag of a ``nodes(id)`` reply (None: the router has no registry)."""
    if not isinstance(result, str) or len(result) < 2 + 128:
        return None
    try:
        return int(result[66:130], 16) != 0
    except ValueError:
        return None


# ``namespaceNodeCount(bytes32)``: how many nodes hold a trust namespace, on a router that
# counts them (the local DTN does; the deployed router keeps namespaces in its node manager,
# whose views this client does not know)
NAMESPACE_NODES_SELECTOR = "0xe2ce9e38"


def namespace_nodes(result: Any) -> Optional[int]:
    """The count of a ``namespaceNodeCount(id)`` reply (None: the router does not count)."""
    if not isinstance(result, str) or len(result) != 2 + 64:
        return None
    try:
        return int(result, 16)
    except ValueError:
        return None


def system_trust_routing() -> tuple:
    return ([system_trust_id()], [], 1, 8, AGGREGATION_ANY)


# -- what DTN's own node software does with a request (DTN-FACTS, "What DTN's own node software
# does"); the devnet's responder follows the same rules, so its charges and refusals are these

# NOTE: the node's parser reads {0}, {1}, ... as placeholders filled from the request's
# extraParams; the manager always sends them empty, and the node then answers FAILURE "P0011:
# Call not parsable". Braces around anything else ({this}) are plain text to it.
PLACEHOLDER = r"\{\d+\}"


# what a node does not report: it skips these without an answer, so the request stays pending
UNANSWERED_CAUSES = ("no node answered; a DTN node skips without a word a request priced below "
                     "its minimum fee, a call it cannot parse ({N} placeholders) or encode (an "
                     "image without IPFS), and routing no node of it serves")


def find_placeholder(prompt: str) -> Optional[str]:
    """The first ``{N}`` placeholder in ``prompt`` (one the node cannot parse), else None."""
    m = re.search(PLACEHOLDER, prompt or "")
    return m.group(0) if m else None


def check_prompt_placeholders(prompt: str, what: str = "prompt") -> None:
    """Refuse, before anything is paid, a prompt DTN's node cannot parse."""
    found = find_placeholder(prompt)
    if found is not None:
        raise InputError(what, _clip(prompt), f"contains {found}: DTN's node reads {{N}} as a "
                         f"placeholder filled from the request's extraParams, which this "
                         f"contract sends empty, so it answers FAILURE \"P0011: Call not "
                         f"parsable\" and the request is lost",
                         hint="write the number without braces around it, e.g. (0) or [0]")


def _clip(text: str, limit: int = 60) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def node_request_size(call_len: int, fee_per_byte_req: int, total_fee_per_res: int) -> int:
    """The ``requestSize`` DTN's node reports for a ``call_len``-byte call: call bytes + 1, or 0
    when that size's fee would pass the per-response cap (its rounding); ``responseSize`` is
    always 0."""
    size = call_len + 1
    return 0 if size * fee_per_byte_req > total_fee_per_res else size


def node_fee(call_len: int, fee_per_byte_req: int, total_fee_per_res: int) -> int:
    """What a successful answer by DTN's node costs the session (token units, before the
    session's balance caps it): the router's per-byte charge of the sizes the node reports."""
    return node_request_size(call_len, fee_per_byte_req, total_fee_per_res) * fee_per_byte_req


def prompt_call_len(prompt: str) -> int:
    """The size of the call the manager sends for a prompt: abi.encode(string[] [prompt])."""
    n = len(prompt.encode("utf-8"))
    return 4 * 32 + (n + 31) // 32 * 32


def decode_answer(data: bytes) -> tuple:
    """What a success answer carries, sniffed (a request's model and call type are not on
    chain where a client can read them): ``("text", str)``, ``("image", bytes)`` (PNG, JPEG,
    WebP or GIF by magic bytes), ``("cid", str)`` (an abi-encoded string that parses as a CID:
    an IPFS answer), ``("bytes", bytes)`` (abi-encoded bytes of another kind), or
    ``("raw", bytes)`` when ``data`` is not abi.encode(string|bytes) at all."""
    from ..chain.abi import decode
    from ..media import parse_cid

    data = bytes(data or b"")
    if not data:
        return "text", ""
    try:
        (raw,) = decode(["bytes"], data)  # abi.encode(string) has the same layout
    except Exception:
        return "raw", data
    kind, value = classify_content(raw)
    if kind == "text" and parse_cid(value) is not None:
        return "cid", value
    return kind, value


def classify_content(raw: bytes) -> tuple:
    """``("image", bytes)``, ``("text", str)`` or ``("bytes", bytes)`` of some content."""
    from ..media import sniff_image

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    # NOTE: GIF and WebP magic is ASCII ("GIF89a is..." may well be a text answer); a real
    # header holds binary sizes, so NUL bytes (PNG and JPEG magic is not UTF-8 at all)
    if sniff_image(raw) is not None and (text is None or "\x00" in text):
        return "image", raw
    if text is None:
        return "bytes", raw
    return "text", text


def check_rpc_url(url: str) -> str:
    """An http(s) URL with a host and a valid port, or an IPC socket path, else ConfigError
    (shown redacted)."""
    from urllib.parse import urlsplit

    from ..errors import redact_url
    from ..rpc import is_ipc_path

    if is_ipc_path(url):
        return url.strip()
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        reason = "its port is not 0-65535" if "port" in str(exc).lower() else "it is malformed"
        raise ConfigError(f"invalid RPC URL: {reason}",
                          hint="e.g. --rpc-url http://127.0.0.1:8545") from None
    if parts.scheme in ("ws", "wss"):
        # NOTE: a documented refusal (docs/api.md, "Transports"): every node serving ws serves
        # http too, and a program can hand the client its own web3 WebSocket provider
        raise ConfigError("websocket RPC URLs (ws://, wss://) are not supported",
                          hint="use the node's http(s) endpoint or its IPC socket path; the "
                               "Python API also takes a web3 provider as transport=")
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"unsupported RPC URL scheme {parts.scheme or '(none)'!r}",
                          hint="use an http:// or https:// JSON-RPC endpoint, or an IPC "
                               "socket path")
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
    from ..chain.abi import keccak

    return [keccak("AIRequestCompleted(bytes32,uint256,address,uint8)"),
            keccak("RequestCompleted(bytes32,uint8)")]


# NOTE: DTN-FACTS: the router keeps models and their APIs in a separate model manager; these are
# the views `models` reads (the devnet's LocalDtnRouter serves them; another router may not)
MODEL_MANAGER_VIEWS = ("modelManager", "getModelIds", "getModelApi")


@functools.lru_cache(maxsize=None)
def _abi_of(name: str) -> Any:
    """The parsed ABI of an artifact (``"ERC20"``: the minimal one here; ``"router"``: IDtnAi
    with the router's views), once per run."""
    from ..artifacts import load_artifact
    from ..chain.abi import ContractAbi

    if name == "ERC20":
        return ContractAbi(ERC20_ABI)
    if name == "models":  # a model manager's views, as the devnet's router serves them
        return ContractAbi([e for e in load_artifact("LocalDtnRouter")["abi"]
                            if e.get("name") in MODEL_MANAGER_VIEWS])
    if name == "router":
        abi = list(load_artifact("IDtnAi")["abi"])
        try:
            abi += load_artifact("IDtnRouterViews")["abi"]
        except DtnsessError:
            pass
        return ContractAbi(abi)
    return ContractAbi(load_artifact(name)["abi"])


# Where ERC-20s keep ``allowance[owner][spender]``: the mapping's slot in common layouts
# (OpenZeppelin 4/5: 1; solmate: 4; Tether: 5; Circle's FiatToken: 10, ...). A state override
# writes the value at all of them (other slots' nested-mapping keys are never read), and the
# caller reads the allowance back through it to know it took.
ALLOWANCE_SLOTS = (1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 51, 52)


def allowance_override(token: str, owner: str, spender: str, value: int) -> dict:
    """An eth_call state override that makes ``token.allowance(owner, spender) == value``
    for Solidity mapping(address => mapping(address => uint256)) layouts."""
    from ..chain.abi import keccak

    def word(x: Any) -> bytes:
        return bytes.fromhex(x[2:]).rjust(32, b"\0") if isinstance(x, str) else x.to_bytes(32, "big")

    diff = {"0x" + keccak(word(spender) + keccak(word(owner) + word(slot))).hex():
            "0x" + value.to_bytes(32, "big").hex() for slot in ALLOWANCE_SLOTS}
    return {token: {"stateDiff": diff}}


def contract_at(address: str, name: str) -> Any:
    """A ``chain.contract.Contract`` for artifact ``name`` at ``address``."""
    from ..chain.contract import Contract

    return Contract(address, _abi_of(name))


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ts)))


def _all_blocked_error(skipped: Sequence[dict]) -> DtnsessError:
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
    if not 0 < v < float("inf"):  # NaN and infinity too: a wait that never ends
        raise ConfigError(f"{name}={text!r} is not a positive number of seconds")
    return v


# how long a write waits for another process sending from the same key
SENDER_LOCK_WAIT = 600.0


if TYPE_CHECKING:
    _F = TypeVar("_F", bound=Callable[..., Any])


@overload
def _writes(method: _F) -> _F: ...


@overload
def _writes(*, before: Callable[..., None]) -> Callable[[_F], _F]: ...


def _writes(method: Optional[_F] = None, *,
            before: Optional[Callable[..., None]] = None) -> Any:
    """A write: one sender at a time (the per-(chain, sender) lock, held until it returns, so
    the reads that decide what to send, the nonces and the receipts of parallel processes do
    not interleave); this key's open journal entries resolved first; and when a later step
    fails, the error names the steps already mined. A dry run takes none of this.
    ``before(self, args, kwargs)``: a wait that needs no lock, made before taking it (so other
    threads of the client write meanwhile)."""
    if method is None:
        return lambda m: _writes(m, before=before)

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.settings.chain_id is not None and not self._writing:
            try:
                _ = self.address
            except DtnsessError:
                # NOTE: on the wrong chain (--chain-id 8453 against a devnet) "no signing key"
                # blames the wrong thing: the chain is checked first (a read only on this path)
                _ = self.chain_id
                raise
        if self.settings.dry_run or self._writing:
            return method(self, *args, **kwargs)
        if before is not None:
            before(self, args, kwargs)
        from ..chain.journal import INTENT

        self._writing = True
        # NOTE: the CLI names the intent by its command line; a program calling the client
        # gets the call (``create_session('50')``), so a rerun of a call whose transaction's
        # outcome was lost is not repeated either (NotRepeatedError)
        token = INTENT.set({"argv": _call_text(method.__name__, args, kwargs)}) \
            if INTENT.get() is None else None
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
            if token is not None:
                INTENT.reset(token)

    return cast("_F", wrapper)  # the same signature: typed results for the API


def _call_text(name: str, args: Sequence[Any], kwargs: dict) -> str:
    def short(v: Any) -> str:
        r = repr(v)
        return r if len(r) <= 80 else r[:77] + "..."

    parts = [short(a) for a in args] + [f"{k}={short(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"
