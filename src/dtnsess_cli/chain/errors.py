"""The exceptions of the chain layer: one family, mapped to the CLI's errors in one place.

NOTE: no message here ever holds a private key, a password or an RPC URL's credentials:
URLs are redacted (:func:`dtnsess_cli.errors.redact_url`) before they reach a message.
"""

from __future__ import annotations

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional



class ChainError(Exception):
    """Raised when the chain layer cannot do what was asked (base of this family)."""


class AbiError(ChainError, ValueError):
    """Raised when a value does not fit its ABI type, or an ABI entry is not understood."""


class AbiDecodeError(AbiError):
    """Raised when bytes are not a valid encoding of the expected ABI types."""


class InvalidKeyError(ChainError, ValueError):
    """Raised when a private key is not 32 bytes of hex in the secp256k1 range."""

    # NOTE: the message never quotes the value (not even its length).


class KeystoreError(ChainError, ValueError):
    """Raised when a keystore file is not a supported Web3 Secret Storage (v3) document."""


class WrongPasswordError(KeystoreError):
    """Raised when a keystore's MAC does not match: the password is wrong."""


class TransactionError(ChainError, ValueError):
    """Raised when a transaction dict cannot be signed (missing or invalid fields)."""


class RpcError(ChainError):
    """Base of the JSON-RPC errors."""


class RpcTransportError(RpcError):
    """Raised when the node could not be reached or did not give a JSON-RPC reply.

    ``reason`` says what happened in words (never library text), ``url`` is redacted,
    ``transient`` tells whether a read was retried for it, ``maybe_sent`` whether the request
    may have reached the node (what matters after an ``eth_sendRawTransaction``).
    """

    def __init__(self, method: str, reason: str, *, url: str = "", attempts: int = 1,
                 elapsed: float = 0.0, transient: bool = False, maybe_sent: bool = True,
                 status: Optional[int] = None) -> None:
        self.method = method
        self.reason = reason
        self.url = url
        self.attempts = attempts
        self.elapsed = elapsed
        self.transient = transient
        self.maybe_sent = maybe_sent
        self.status = status
        tries = f" after {attempts} attempts in {elapsed:.1f}s" if attempts > 1 else ""
        where = f" at {url}" if url else ""
        super().__init__(f"{method}: {reason}{where}{tries}")


class RpcResponseError(RpcError):
    """Raised when the node answered with a JSON-RPC error object (``code``, ``message``,
    ``data``). A revert carries its revert data in ``data`` (see :func:`revert_data`)."""

    def __init__(self, method: str, code: Any, message: str, data: Any = None) -> None:
        self.method = method
        self.code = code
        self.message = message
        self.data = data
        super().__init__(f"{method}: node error {code}: {message}")

    def revert_data(self) -> Optional[str]:
        """The revert data (0x-hex) when this error is a revert, else None.

        Nodes differ: Anvil and geth answer ``{"code": 3, "data": "0x..."}``; some nest it
        (``data: {"data": "0x..."}``); an empty revert has no data, only its message.
        """
        return revert_data_of({"code": self.code, "message": self.message, "data": self.data})


def revert_data_of(error: Any) -> Optional[str]:
    """The revert data of a JSON-RPC ``error`` object, ``"0x"`` for a revert without data,
    None when the error is not a revert."""
    if not isinstance(error, dict):
        return None
    data = error.get("data")
    if isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data[:2] in ("0x", "0X"):
        return data
    msg = str(error.get("message", "")).lower()
    # NOTE: an empty revert has no selector to go by; code 3 or the generic phrase is all there is
    if error.get("code") == 3 or "execution reverted" in msg or "revert" in msg:
        return "0x"
    return None
