"""``Client`` for programs: the session manager's client built from an RPC URL, an address and
a signer (see the package's docstring and docs/api.md); signers from a key or a keystore."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

from ..config import DEFAULT_MODEL, Settings
from ..errors import ConfigError, InputError, KeystoreError, remember_url
from ..manager import Client as _ManagerClient
from ..manager.base import check_rpc_url

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from ..chain.signing import LocalSigner

__all__ = ["Client", "Signer", "default_state_dir", "signer_from_key", "signer_from_keystore"]


class Signer(Protocol):
    """What a :class:`Client` signs with (duck-typed; eth-account's ``LocalAccount`` is one).

    ``sign_transaction`` gets a transaction dict (``from``, ``to``, ``data``, ``value``,
    ``nonce``, ``gas``, ``chainId``, and ``type`` 2 with ``maxFeePerGas`` /
    ``maxPriorityFeePerGas``, or ``gasPrice``) and returns an object with ``raw_transaction``
    (the signed bytes) and ``hash``."""

    @property
    def address(self) -> str: ...

    def sign_transaction(self, transaction_dict: dict) -> Any: ...


StateDir = Union[str, "os.PathLike[str]", None, bool]


def default_state_dir() -> Path:
    """Where the journal and the sender locks live unless ``state_dir`` says otherwise: the
    CLI's directory (``DTNSESS_STATE_DIR``, else the platform's user state directory, e.g.
    ``~/.local/state/dtnsess`` on Linux)."""
    from ..chain.journal import state_dir

    return state_dir()


def signer_from_key(private_key: Union[str, bytes]) -> "LocalSigner":
    """A :class:`LocalSigner` for a raw private key (0x + 64 hex digits, or 32 bytes);
    ConfigError when it is not one (the message never shows the key)."""
    from ..signer import _from_private_key

    if isinstance(private_key, (bytes, bytearray)):
        private_key = bytes(private_key).hex()
    return _from_private_key(str(private_key), "the given key")


def signer_from_keystore(keystore: Union[str, "os.PathLike[str]", dict],
                         password: Union[str, bytes]) -> "LocalSigner":
    """A :class:`LocalSigner` from a Web3 Secret Storage (v3) keystore, as Foundry's ``cast
    wallet import`` and geth write them: a file path or the parsed JSON document. Raises
    KeystoreError (wrong password: exit code 9; unreadable or not a keystore: 3)."""
    import json

    from ..chain import errors as chain_errors
    from ..chain.signing import LocalSigner, decrypt_keystore

    where = "(given document)"
    if isinstance(keystore, dict):
        doc = keystore
    else:
        where = os.fspath(keystore)
        try:
            with open(os.path.expanduser(where)) as fh:
                doc = json.load(fh)
        except OSError as exc:
            raise KeystoreError(where, f"cannot read: {exc.strerror}", config=True) from None
        except ValueError:
            raise KeystoreError(where, "not a JSON keystore file", config=True) from None
    try:
        return LocalSigner(decrypt_keystore(doc, password))
    except chain_errors.WrongPasswordError:
        raise KeystoreError(where, "wrong password (could not decrypt)") from None
    except (chain_errors.KeystoreError, chain_errors.InvalidKeyError, ValueError):
        raise KeystoreError(where, "not a supported Web3 Secret Storage keystore",
                            config=True) from None


def _positive(name: str, value: Any, zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = -1.0
    if not (v >= 0 if zero else v > 0) or v == float("inf"):
        raise InputError(name, str(value), "not a number of seconds"
                         + ("" if zero else " above 0"))
    return v


def _transport(obj: Any) -> Any:
    """A transport the program hands over: a synchronous web3.py provider (``make_request``;
    web3 6, 7 or 8: HTTP, IPC; WebSocket in web3 6 and 7), or an object with this package's JsonRpc interface (``call``,
    ``batch``, ``close``)."""
    if callable(getattr(obj, "call", None)) and callable(getattr(obj, "batch", None)):
        if not hasattr(obj, "url"):
            raise InputError("transport", type(obj).__name__, "needs a .url (shown in errors)")
        return obj
    if callable(getattr(obj, "make_request", None)):
        import inspect

        from ..chain.transport import ProviderTransport

        # NOTE: an async provider's make_request returns a coroutine, never a reply: web3 8
        # has no synchronous WebSocket provider left, so its WebSocketProvider lands here
        if inspect.iscoroutinefunction(obj.make_request):
            raise ConfigError(f"{type(obj).__name__} is an async web3 provider, for "
                              f"AsyncClient; the sync Client takes a synchronous one",
                              hint="give Client an HTTPProvider, an IPCProvider or web3 7's "
                                   "LegacyWebSocketProvider")
        return ProviderTransport(obj)
    raise InputError("rpc_url", type(obj).__name__, "not a URL, an IPC path or a transport "
                     "(a web3 provider, or an object with call/batch)")


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


class Client(_ManagerClient):
    """One AdvancedSessionManager on one chain, for a program.

    ``rpc_url``: an http(s) JSON-RPC endpoint (HTTP(S)_PROXY and NO_PROXY are honoured), a
    node's IPC socket path, or a transport object: a synchronous web3.py provider of any
    version (``make_request``; web3 8 has no synchronous WebSocket one: its async providers
    are :class:`AsyncClient`'s). ``manager``: the AdvancedSessionManager's
    address. ``signer``: signs the writes (see :class:`Signer`); without one the client is
    read-only, and ``address`` names whose sessions, balances and requests the views show by
    default. ``chain_id``: refuse to work on another chain (ChainMismatchError). ``model``: the
    default model of requests. ``dry_run``: every write is simulated and estimated, nothing is
    sent (results have ``dry_run=True``). ``state_dir``: the journal and the sender lock (see
    :func:`default_state_dir`); ``False`` keeps none (then nothing stops two processes from
    sending from the key at once, and a lost reply is not looked up before the next send).

    Nothing else is read from the environment or from files (no ``.env``, no devnet state, no
    ``DTNSESS_*`` setting but the default ``state_dir``), and construction makes no network
    call: the first method call connects (chain id and ``getConfig()`` in one round trip).
    Methods: :meth:`config`, :meth:`balances`, :meth:`session`, :meth:`sessions`,
    :meth:`create_session`, :meth:`renew_session`, :meth:`close_session`,
    :meth:`close_all_sessions`, :meth:`approve`, :meth:`make_ai_request`,
    :meth:`request_batch`, :meth:`response`, :meth:`wait_for_answer`,
    :meth:`wait_for_answers`, :meth:`requests`, :meth:`settle`, :meth:`tx_view`, the pool
    (:meth:`pool_status`, :meth:`add_to_pool`, :meth:`get_from_pool`, ...), and the owner's
    and keeper's (:meth:`cleanup`, :meth:`withdraw_refunds`, :meth:`update_config`,
    :meth:`sweep`, :meth:`deploy`, :meth:`doctor`). Token amounts are exact: a str or a
    ``Decimal`` in whole tokens (``"12.5"``), an int in base units, an ``Amount``; a float is
    refused (InputError). Results are the dataclasses of this module.

    A client may be shared by threads: each thread gets its own node connection and journal
    connection, and writes take turns on the sender lock (one nonce sequence).
    """

    def __init__(self, rpc_url: Any, manager: str, signer: Optional[Signer] = None, *,
                 address: Optional[str] = None, chain_id: Optional[int] = None,
                 model: Optional[str] = None, dry_run: bool = False,
                 state_dir: StateDir = None, receipt_timeout: float = 120.0,
                 rpc_timeout: float = 30.0, rpc_retry_seconds: float = 20.0) -> None:
        transport = None
        if not isinstance(rpc_url, (str, os.PathLike)) and rpc_url is not None:
            transport = _transport(rpc_url)
            url = transport.url
        else:
            url = check_rpc_url(os.fspath(rpc_url or ""))
            remember_url(url)  # its credentials never appear in an error message
        contract = _ManagerClient.address_arg(_text(manager), "manager address")
        if signer is not None:
            if not hasattr(signer, "address") or not callable(getattr(signer, "sign_transaction",
                                                                       None)):
                raise InputError("signer", type(signer).__name__,
                                 "needs .address and .sign_transaction(tx_dict)")
            _ManagerClient.address_arg(_text(signer.address), "signer address")
            if address is not None:
                raise InputError("address", address, "give a signer or an address, not both")
        self._watch = (_ManagerClient.address_arg(_text(address), "address")
                       if address is not None else None)
        if chain_id is not None and (isinstance(chain_id, bool) or not isinstance(chain_id, int)
                                     or chain_id <= 0):
            raise InputError("chain id", str(chain_id), "must be a positive integer")
        if state_dir is True:
            state_dir = None
        settings = Settings(rpc_url=url, contract=contract, chain_id=chain_id,
                            model=model or DEFAULT_MODEL, dry_run=bool(dry_run),
                            sources={"chain_id": "the Client's chain_id"})
        self._args: "dict[str, Any]" = dict(rpc_url=transport or url, manager=contract, signer=signer, address=address,
                          chain_id=chain_id, model=model, state_dir=state_dir,
                          receipt_timeout=receipt_timeout, rpc_timeout=rpc_timeout,
                          rpc_retry_seconds=rpc_retry_seconds)
        super().__init__(settings, None, signer=signer,
                         receipt_timeout=_positive("receipt_timeout", receipt_timeout),
                         state_dir=state_dir, rpc_timeout=_positive("rpc_timeout", rpc_timeout),
                         rpc_retry_seconds=_positive("rpc_retry_seconds", rpc_retry_seconds,
                                                     zero=True), transport=transport)

    def _load_signer(self):
        raise ConfigError("this Client is read-only: it was given no signer",
                          hint="pass signer= (an eth-account LocalAccount, "
                               "dtnsess_cli.signer_from_key(...), or anything with .address and "
                               ".sign_transaction)")

    @property
    def address(self) -> str:
        """The signer's address (checksummed), or the read-only client's ``address``."""
        if self._account is None and self._watch is not None:
            return self._watch
        return super().address

    @property
    def dry_run(self) -> bool:
        return bool(self.settings.dry_run)

    @property
    def state_dir(self) -> Optional[Path]:
        """The directory of this client's journal and sender lock (None: none kept)."""
        from pathlib import Path

        state = self._state_path()
        return None if state is None else Path(state)

    def simulating(self) -> "Client":
        """A client like this one whose writes are simulated only (``dry_run=True``)."""
        return type(self)(**dict(self._args, dry_run=True))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        who = self._account.address if self._account is not None else self._watch
        return f"Client(manager={self.settings.contract}, address={who}" + \
            (", dry_run=True" if self.dry_run else "") + ")"
