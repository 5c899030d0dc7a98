"""dtnsess: command-line client for the DTN AdvancedSessionManager contract, and its Python API.

``from dtnsess_cli import Client`` (see :mod:`dtnsess_cli.api` and docs/api.md). The names are
loaded on first use: ``import dtnsess_cli`` alone imports nothing else (the CLI's start-up).
"""

from __future__ import annotations

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - type checkers see the names; at run time: __getattr__
    from typing import Any

    from .api import *  # noqa: F401,F403

__version__ = "0.1.0"

# NOTE: the same names as dtnsess_cli.api.__all__ (a test checks it)
__all__ = [
    "__version__",
    "Client", "AsyncClient", "Signer", "LocalSigner", "signer_from_key", "signer_from_keystore",
    "default_state_dir",
    "Amount", "Balances", "Check", "ConfigView", "RequestView", "ResponseView", "SessionView",
    "TxResult", "TxView", "WriteResult",
    "DtnsessError", "ExitCode", "AbortedError", "ArtifactError", "ChainMismatchError",
    "ConfigError", "GasPriceTooHighError", "InputError", "InsufficientFundsError",
    "KeystoreError", "LockedError", "NoContractError", "NotAuthorizedError", "NotRepeatedError",
    "RevertError", "RpcError", "TxPendingError", "WaitTimeoutError",
    "DEFAULT_CALLBACK_GAS_WEI", "DEFAULT_MODEL", "LOGGER_NAME", "MAX_PROMPT_BYTES",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
