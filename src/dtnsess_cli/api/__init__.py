"""The public Python API of dtnsess: the AdvancedSessionManager client for programs.

    from dtnsess_cli import Client

    client = Client("https://mainnet.base.org", "0xYourManager...", signer=account)
    sid = client.create_session("50").session_id

A :class:`Client` is built from what it is given and nothing else: an RPC URL, the manager's
address and a signer (an eth-account ``LocalAccount``, a :class:`LocalSigner`, or anything with
``.address`` and ``.sign_transaction(tx_dict)``). It reads no ``.env``, no devnet state file and
no ``DTNSESS_*`` setting; it never prints and never asks: a write is simulated, estimated,
signed and sent (``dry_run=True`` simulates only). Failures raise the CLI's errors
(:class:`DtnsessError` and its subclasses), each with the CLI's ``exit_code``.

The one thing kept on disk is the transaction journal and the per-key sender lock (the
never-pay-twice machinery), in ``state_dir``: by default the directory the CLI uses
(:func:`default_state_dir`), so a program and the CLI sending from one key on one machine take
turns and see each other's unresolved transactions; ``state_dir=False`` keeps nothing.

See docs/api.md. Importing this module is cheap: no web3, no eth-account, no network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import DEFAULT_MODEL
from ..errors import (
    AbortedError,
    ArtifactError,
    ChainMismatchError,
    ConfigError,
    DtnsessError,
    ExitCode,
    GasPriceTooHighError,
    InputError,
    InsufficientFundsError,
    KeystoreError,
    LockedError,
    NoContractError,
    NotAuthorizedError,
    NotRepeatedError,
    RevertError,
    RpcError,
    TxPendingError,
    WaitTimeoutError,
)
from ..manager.base import DEFAULT_CALLBACK_GAS_WEI, MAX_PROMPT_BYTES
from ..manager.quiet import LOGGER_NAME
from ..manager import views as _views
from ..manager.views import SessionView, WriteResult
from ..units import Amount
from .client import Client, Signer, default_state_dir, signer_from_key, signer_from_keystore

if TYPE_CHECKING:  # pragma: no cover - for type checkers; loaded lazily (``__getattr__``)
    from ..manager.readviews import (Balances, Check, ConfigView, RequestView, ResponseView,
                                     TxView)
    from ..chain.send import TxResult
    from ..chain.signing import LocalSigner
    from .aio import AsyncClient

__all__ = [
    "Client", "AsyncClient", "Signer", "LocalSigner", "signer_from_key", "signer_from_keystore",
    "default_state_dir",
    # results
    "Amount", "Balances", "Check", "ConfigView", "RequestView", "ResponseView", "SessionView",
    "TxResult", "TxView", "WriteResult",
    # errors (``exit_code``: the CLI's exit code of the same failure)
    "DtnsessError", "ExitCode", "AbortedError", "ArtifactError", "ChainMismatchError",
    "ConfigError", "GasPriceTooHighError", "InputError", "InsufficientFundsError",
    "KeystoreError", "LockedError", "NoContractError", "NotAuthorizedError", "NotRepeatedError",
    "RevertError", "RpcError", "TxPendingError", "WaitTimeoutError",
    # constants
    "DEFAULT_CALLBACK_GAS_WEI", "DEFAULT_MODEL", "LOGGER_NAME", "MAX_PROMPT_BYTES",
]


def __getattr__(name: str) -> Any:
    # NOTE: lazy, so that importing the API loads neither coincurve (the signer) nor the
    # send path until they are used
    if name == "LocalSigner":
        from ..chain.signing import LocalSigner

        return LocalSigner
    if name == "AsyncClient":  # greenlet and asyncio only when used
        from .aio import AsyncClient

        return AsyncClient
    if name in _views.READ_VIEWS:  # the results of reads and checks (see views.READ_VIEWS)
        return getattr(_views, name)
    if name == "TxResult":
        from ..chain.send import TxResult

        return TxResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
