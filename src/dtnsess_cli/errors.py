"""Exit codes and the one exception family of dtnsess.

Every error a user can meet is a :class:`DtnsessError` subclass carrying an
``exit_code`` and an optional ``hint``. ``cli.main`` is the one place that turns
them into a single ``error: ...`` line on stderr and the exit code.

NOTE: messages are built in ``__init__`` from structured arguments, and no
constructor here accepts a private key or password: nothing secret can end up
in a message.
"""

from __future__ import annotations

import re
from enum import IntEnum

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence

__all__ = [
    "ExitCode", "DtnsessError", "ConfigError", "ArtifactError", "InputError", "RpcError",
    "ChainMismatchError", "NoContractError", "RevertError", "InsufficientFundsError",
    "NotAuthorizedError", "KeystoreError", "WaitTimeoutError", "TxPendingError",
    "NotRepeatedError", "GasPriceTooHighError", "LockedError", "AbortedError",
    "BlockGasLimitError", "redact_url",
    "remember_secret", "remember_url", "scrub",
]


class ExitCode(IntEnum):
    """Process exit codes (documented in README). 2 stays Click's "usage"."""

    OK = 0
    ERROR = 1  # an unexpected failure
    USAGE = 2  # bad command line (Click/Typer)
    CONFIG = 3  # missing or invalid configuration
    INPUT = 4  # bad amount, address, id, file
    RPC = 5  # node unreachable, timed out, or answered garbage
    CHAIN = 6  # wrong chain id, no code at the address, not an AdvancedSessionManager
    REVERTED = 7  # simulation or receipt reverted
    FUNDS = 8  # token or ETH balance too low, allowance
    AUTH = 9  # not owner / not session owner / bad keystore password
    TIMEOUT = 10  # waiting for an answer or a receipt timed out
    GAS_PRICE = 11  # cleanup skipped: gas price above --max-gas-price
    LOCKED = 12  # cleanup skipped: another run holds the lock
    ABORTED = 13  # the user declined the confirmation
    UPKEEP_NEEDED = 14  # `cleanup --check`: an upkeep is needed (not an error)
    INTERRUPTED = 130  # Ctrl-C


class DtnsessError(Exception):
    """Raised when a dtnsess operation fails in a way the user can understand.

    Base class: catch this one to handle every domain error.
    """

    exit_code: ExitCode = ExitCode.ERROR
    # the transaction this error is about, when one was signed (shown, and in --json errors)
    tx_hash: Optional[str] = None

    def __init__(self, message: str, *, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        """The error as ``--json`` prints it (and as batch reports embed it)."""
        out: dict[str, Any] = {
            "error": True,
            "code": int(self.exit_code),
            "name": ExitCode(self.exit_code).name,
            "type": type(self).__name__,
            "message": scrub(self.message),
            "hint": scrub(self.hint) if self.hint else None,
        }
        if self.tx_hash:
            out["tx_hash"] = self.tx_hash
        done = getattr(self, "done", None)
        if done:  # the steps of a multi-step command that were mined before this error
            out["done"] = list(done)
        return out


class ConfigError(DtnsessError):
    """Raised when required configuration is missing or invalid (RPC URL, contract, key)."""

    exit_code = ExitCode.CONFIG


class ArtifactError(DtnsessError):
    """Raised when a bundled contract artifact (abi/*.json) is missing or unreadable."""

    exit_code = ExitCode.CONFIG

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(
            f"contract artifact {name!r}: {reason}",
            hint="reinstall dtnsess, or run the compile step from a source checkout",
        )
        self.name = name


class InputError(DtnsessError):
    """Raised when a user-supplied value (amount, address, id, file) is malformed."""

    exit_code = ExitCode.INPUT

    def __init__(self, what: str, value: Any, reason: str, *, hint: Optional[str] = None) -> None:
        shown = value if isinstance(value, str) else repr(value)
        if isinstance(shown, str) and len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"invalid {what} {shown!r}: {reason}", hint=hint)
        self.what = what
        self.value = value
        self.reason = reason


class RpcError(DtnsessError):
    """Raised when the RPC node is unreachable, times out, or answers with an error."""

    exit_code = ExitCode.RPC

    def __init__(self, url: Optional[str], reason: str, *, hint: Optional[str] = None,
                 default_hint: bool = True) -> None:
        where = f" at {redact_url(url)}" if url else ""
        if hint is None and default_hint:
            hint = "check --rpc-url / DTNSESS_RPC_URL and that the node is running"
        super().__init__(f"RPC node{where} failed: {reason}", hint=hint)
        self.url = url
        self.reason = reason


class ChainMismatchError(DtnsessError):
    """Raised when the node's chain id differs from the configured or preset chain id."""

    exit_code = ExitCode.CHAIN

    def __init__(self, expected: int, actual: int, *, source: str = "configuration") -> None:
        super().__init__(
            f"the node is on chain {actual}, but {source} expects chain {expected}",
            hint="use the right --rpc-url, or fix --chain-id / --network / DTNSESS_CHAIN_ID",
        )
        self.expected = expected
        self.actual = actual


class NoContractError(DtnsessError):
    """Raised when there is no contract, or not an AdvancedSessionManager, at the address."""

    exit_code = ExitCode.CHAIN

    def __init__(self, address: str, reason: str = "no contract code at this address") -> None:
        super().__init__(
            f"{address}: {reason}",
            hint="check --contract / DTNSESS_CONTRACT and --network (is it the right chain?)",
        )
        self.address = address


class RevertError(DtnsessError):
    """Raised when a simulated call or a mined transaction reverted.

    Carries the decoded revert: ``name`` (``Error``, ``Panic`` or a custom error
    name, ``None`` when undecodable), ``args`` and a human ``reason``.
    """

    exit_code = ExitCode.REVERTED

    def __init__(
        self,
        description: str,
        reason: str,
        *,
        name: Optional[str] = None,
        args: Sequence[Any] = (),
        data: Optional[str] = None,
        tx_hash: Optional[str] = None,
        hint: Optional[str] = None,
    ) -> None:
        # NOTE: without a tx hash nothing was sent (a simulation or a pre-check)
        verb = f"reverted (mined, tx {tx_hash})" if tx_hash else "would revert"
        super().__init__(f"{description} {verb}: {reason}", hint=hint)
        self.description = description
        self.reason = reason
        self.name = name
        self.args_ = tuple(args)
        self.data = data
        self.tx_hash = tx_hash

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.update({"revert": self.name, "reason": self.reason})
        return out


class InsufficientFundsError(DtnsessError):
    """Raised when the sender has too little ETH for gas, or too few tokens, or allowance."""

    exit_code = ExitCode.FUNDS

    def __init__(self, what: str, have: str, need: str, *, hint: Optional[str] = None) -> None:
        super().__init__(f"not enough {what}: have {have}, need {need}", hint=hint)
        self.what = what
        self.have = have
        self.need = need


class NotAuthorizedError(DtnsessError):
    """Raised when the sender is not allowed to do this (not contract owner, not session owner)."""

    exit_code = ExitCode.AUTH


class KeystoreError(DtnsessError):
    """Raised when a keystore cannot be used: missing, unreadable or not a keystore (a CONFIG
    error), or its password is wrong (AUTH)."""

    exit_code = ExitCode.AUTH

    def __init__(self, path: str, reason: str, *, hint: Optional[str] = None,
                 config: bool = False) -> None:
        super().__init__(f"keystore {path}: {reason}", hint=hint)
        self.path = path
        if config:
            self.exit_code = ExitCode.CONFIG


class WaitTimeoutError(DtnsessError):
    """Raised when waiting for a receipt or an AI answer exceeded its deadline.

    Nothing is resent: the transaction (``tx_hash``) or request may still complete.
    """

    exit_code = ExitCode.TIMEOUT

    def __init__(self, what: str, seconds: float, *, tx_hash: Optional[str] = None,
                 request_id: Optional[str] = None, hint: Optional[str] = None) -> None:
        extra = ""
        if tx_hash:
            extra += f" (tx {tx_hash})"
        if request_id:
            extra += f" (request {request_id})"
        super().__init__(f"timed out after {seconds:g}s waiting for {what}{extra}", hint=hint)
        self.tx_hash = tx_hash
        self.request_id = request_id

    def to_dict(self) -> dict:
        out = super().to_dict()
        if self.request_id:
            out["request_id"] = self.request_id
        return out


class TxPendingError(DtnsessError):
    """Raised when a signed transaction's outcome is not known: the node's reply to the send
    was lost, the receipt wait ran out, or Ctrl-C. The journal keeps it open; nothing is resent
    but its own signed bytes."""

    exit_code = ExitCode.TIMEOUT

    def __init__(self, description: str, tx_hash: str, nonce: int, reason: str, *,
                 interrupted: bool = False, hint: Optional[str] = None) -> None:
        super().__init__(
            f"{description}: {reason}; tx {tx_hash} (nonce {nonce}) may still be mined",
            hint=hint or f"check it with `dtnsess tx {tx_hash}`; the next dtnsess command from "
                         f"this key looks it up first (do not send it again by hand)")
        if interrupted:
            self.exit_code = ExitCode.INTERRUPTED
        self.tx_hash = tx_hash
        self.nonce = nonce

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.update({"tx_hash": self.tx_hash, "nonce": self.nonce})
        return out


class NotRepeatedError(DtnsessError):
    """Raised when a rerun finds that its earlier run's transaction (whose outcome was not known
    then) was mined: the same command is not done twice unknowingly; nothing is sent."""

    exit_code = ExitCode.ABORTED

    def __init__(self, argv: str, tx_hash: str, block: Optional[int]) -> None:
        super().__init__(
            f"not repeated: `{argv}` was already mined in tx {tx_hash} (block {block}) by an "
            f"earlier run whose reply was lost; nothing sent",
            hint=f"see `dtnsess tx {tx_hash}`; run the command again to do it once more")
        self.tx_hash = tx_hash

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["tx_hash"] = self.tx_hash
        return out


class ChainChangedError(DtnsessError):
    """Raised when the chain behind the RPC URL is not the one last seen there (a devnet
    restarted on its port, a new fork): the sender lock was taken for the old one, so nothing
    is signed; the next run takes the right lock."""

    exit_code = ExitCode.CHAIN

    def __init__(self, url: Optional[str]) -> None:
        super().__init__(f"the node at {redact_url(url) if url else 'the RPC URL'} is another "
                         f"chain than the last time it was used; nothing sent",
                         hint="run the command again")


class SendUnknownError(DtnsessError):
    """Raised when the reply to ``eth_sendTransaction`` (``--unlocked``: the node signs) was
    lost: its hash is not known here, so it cannot be looked up; the node may have sent it."""

    exit_code = ExitCode.TIMEOUT

    def __init__(self, description: str, sender: str, nonce: int, reason: str, *,
                 interrupted: bool = False) -> None:
        super().__init__(
            f"{description}: {reason}; the node may have sent a transaction from {sender} at "
            f"nonce {nonce} (its hash is not known here)",
            hint=f"look for nonce {nonce} of {sender} (`dtnsess requests`, an explorer) before "
                 f"repeating the command")
        if interrupted:
            self.exit_code = ExitCode.INTERRUPTED


class LegacyEntryError(DtnsessError):
    """Raised when a command is run again while its earlier run's journal entry, written by an
    older dtnsess that did not record the chain, is still open: that outcome cannot be told on
    this chain, so nothing is sent."""

    exit_code = ExitCode.ABORTED

    def __init__(self, argv: str, label: str, tx_hash: str) -> None:
        super().__init__(
            f"not repeated: `{argv}` has an open {label} written by an older dtnsess, whose "
            f"outcome is not known; nothing sent",
            hint=f"check it with `dtnsess tx {tx_hash}`, then `dtnsess journal forget --legacy`")
        self.tx_hash = tx_hash


class GasPriceTooHighError(DtnsessError):
    """Raised when the current gas price is above the user's --max-gas-price (nothing sent)."""

    exit_code = ExitCode.GAS_PRICE

    def __init__(self, current_gwei: str, max_gwei: str) -> None:
        super().__init__(
            f"gas price {current_gwei} gwei is above --max-gas-price {max_gwei} gwei; nothing sent"
        )


class BlockGasLimitError(DtnsessError):
    """Raised when even the smallest step of a paged write needs a gas limit over what the chain
    takes in one transaction: the node's block gas limit or 2^24 (nothing sent)."""

    exit_code = ExitCode.CHAIN

    def __init__(self, step: str, cap: int) -> None:
        super().__init__(
            f"{step} does not fit the {cap:,} gas this chain takes in one transaction (its block "
            f"gas limit, at most 2^24), with the 20% margin sends keep; nothing sent"
        )


class LockedError(DtnsessError):
    """Raised when another process holds the cleanup lock."""

    exit_code = ExitCode.LOCKED

    def __init__(self, path: str, what: str = "another cleanup is running") -> None:
        super().__init__(f"{what} (lock {path} is held); nothing sent")
        self.path = path


class AbortedError(DtnsessError):
    """Raised when the user declined a confirmation; nothing was sent."""

    exit_code = ExitCode.ABORTED

    def __init__(self, what: str = "transaction") -> None:
        super().__init__(f"aborted: {what} not sent")


# NOTE: patterns are strings, compiled by re's cache when first used, not at start-up
# A path segment kept in a redacted URL: a short word ("rpc", "v2", "mainnet", "base-sepolia").
_PLAIN_SEGMENT = r"^[A-Za-z][A-Za-z_-]{0,23}[0-9]{0,2}$"
_VERSION_SEGMENT = r"^v[0-9]{1,2}$"
# NOTE: punctuation ending a sentence is not the URL's ("at http://127.0.0.1:8545, from"
# read as port "8545," and the whole URL became "<unparseable url>")
_URL_IN_TEXT = r"(?i)\b(?:https?|wss?)://[^\s'\"<>()\[\]{}]+(?<![.,;:!?])"


def is_ipc_path(url: str) -> bool:
    """A node's IPC socket rather than a URL: an absolute or ~ path, or a name ending in .ipc
    (as cast and web3.py take them)."""
    u = url.strip()
    return "://" not in u and (u.startswith(("/", "~")) or u.endswith(".ipc"))


def redact_url(url: Optional[str]) -> str:
    """An RPC URL without credentials or API-key-looking parts: ``scheme://host[:port]/...``
    with user:pass, the query, and every path segment that is not a plain word (or that follows
    a version segment like ``/v2/``) replaced by ``***``. An IPC socket path as it is."""
    if not url:
        return ""
    from urllib.parse import urlsplit, urlunsplit

    if is_ipc_path(str(url)):  # a local socket path carries no credentials: shown whole
        return str(url).strip()
    try:
        parts = urlsplit(str(url))
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6
        netloc = f"[{netloc}]"
    if port:
        netloc += f":{port}"
    if parts.username or parts.password or "@" in parts.netloc:
        netloc = "***@" + netloc
    # NOTE: providers put the API key in the path (Alchemy /v2/KEY, Infura /v3/KEY, QuickNode
    # /TOKEN/, Ankr /eth/KEY): keep only plain words, and never what follows /vN/
    segs, after_version = [], False
    for seg in parts.path.split("/"):
        if not seg:
            segs.append(seg)
            continue
        keep = not after_version and bool(re.match(_PLAIN_SEGMENT, seg))
        segs.append(seg if keep else "***")
        after_version = bool(re.match(_VERSION_SEGMENT, seg))
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, "/".join(segs), query, "***" if parts.fragment
                       else ""))


# Secrets of this run (the RPC URL's credentials and key-looking parts, the private key, the
# keystore password): ``scrub`` replaces them wherever they appear, e.g. in a library's message
# that quotes only the URL's path ("Max retries exceeded with url: /v2/KEY?apikey=...").
_SECRETS: set = set()


def remember_secret(*values: Optional[str]) -> None:
    for v in values:
        if v and len(str(v)) >= 4:
            _SECRETS.add(str(v))
            if str(v)[:2] in ("0x", "0X"):
                _SECRETS.add(str(v)[2:])


def remember_url(url: Optional[str]) -> None:
    """Remember the parts of ``url`` that ``redact_url`` hides (never a password from a file:
    a common phrase remembered as a secret would garble unrelated messages)."""
    if not url:
        return
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(url))
    except ValueError:
        remember_secret(str(url))
        return
    # NOTE: only strings long enough not to turn up by chance inside a hash or an address
    if "@" in parts.netloc:
        remember_secret(parts.netloc.rsplit("@", 1)[0] + "@")
        if parts.password and len(parts.password) >= 6:
            remember_secret(parts.password)
    if parts.query:
        remember_secret(parts.query)
    shown = redact_url(url)
    if shown != url:  # the path segments that redaction hides
        kept = set(urlsplit(shown).path.split("/"))
        for seg in parts.path.split("/"):
            if seg and seg not in kept and len(seg) >= 8:
                remember_secret(seg)


def scrub(text: Optional[str], secrets: Sequence[str] = ()) -> str:
    """``text`` with every URL in it redacted and each secret of this run (and ``secrets``)
    replaced by ``***`` (for messages and tracebacks that may quote an RPC URL)."""
    if not text:
        return text or ""
    out = str(text)
    for sec in sorted({s for s in (*secrets, *_SECRETS) if s and len(s) >= 4},
                      key=len, reverse=True):
        out = out.replace(sec, "***")
    out = re.sub(_URL_IN_TEXT, lambda m: redact_url(m.group(0)), out)
    # urllib3 quotes the path alone: "Max retries exceeded with url: /v2/KEY?apikey=..."
    return re.sub(_PATH_IN_TEXT, lambda m: m.group(1) + _redact_path(m.group(2)), out)


_PATH_IN_TEXT = r"(?i)(\burl: )(/[^\s'\"()]*)"


def _redact_path(path: str) -> str:
    from urllib.parse import urlsplit

    red = urlsplit(redact_url("http://h" + path))
    return red.path + ("?" + red.query if red.query else "")
