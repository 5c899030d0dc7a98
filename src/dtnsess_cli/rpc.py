"""The client's JSON-RPC connection: reads retry, writes never do (``chain.jsonrpc.JsonRpc``).

A read (any method but a transaction send), alone or in a JSON-RPC batch, is retried with
exponential backoff and jitter while the failure looks transient: a dropped connection, no
reply in time, HTTP 429 or 5xx, a body that is not JSON or was cut off, or a JSON-RPC "rate
limited" error. It gives up after ``DTNSESS_RPC_RETRY_SECONDS`` (default 20; each later attempt's
timeout is clipped to what is left) and raises one error naming the method and what failed,
never library text.

A send (``eth_sendRawTransaction``, ``eth_sendRawTransactionSync``, ``eth_sendTransaction``:
``chain.jsonrpc.WRITE_METHODS``) is made once: whether the node took the transaction is for
the sending side to find out (by its hash); resending blindly could pay twice.

This module keeps the settings (the environment variables) and builds the connection.
"""

from __future__ import annotations

import os

from .errors import ConfigError, is_ipc_path  # noqa: F401 - is_ipc_path: also this module's

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

ENV_RETRY_SECONDS = "DTNSESS_RPC_RETRY_SECONDS"
ENV_TIMEOUT = "DTNSESS_RPC_TIMEOUT"
DEFAULT_RETRY_SECONDS = 20.0
DEFAULT_TIMEOUT = 30.0


def _seconds(name: str, default: float, low: float, hint: str,
             env: Optional[dict] = None) -> float:
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    try:
        v = float(raw)
    except ValueError:
        v = -1.0
    if not low <= v <= 3600:
        raise ConfigError(f"{name}={raw[:20]!r} is not a number of seconds ({low:g}..3600)",
                          hint=hint)
    return v


def retry_seconds(env: Optional[dict] = None) -> float:
    """The total time reads may spend retrying (``DTNSESS_RPC_RETRY_SECONDS``)."""
    return _seconds(ENV_RETRY_SECONDS, DEFAULT_RETRY_SECONDS, 0, "e.g. 20; 0 disables retries",
                    env)


def request_timeout(env: Optional[dict] = None) -> float:
    """How long one HTTP request may wait for its reply (``DTNSESS_RPC_TIMEOUT``)."""
    return _seconds(ENV_TIMEOUT, DEFAULT_TIMEOUT, 0.1, "e.g. 30", env)


def connect(url: str, *, timeout: Optional[float] = None,
            retry_for: Optional[float] = None) -> Any:
    """A ``chain.jsonrpc.JsonRpc`` on ``url`` with the configured timeout and retry budget,
    through the proxy the environment names for it (HTTP(S)_PROXY, NO_PROXY); for an IPC
    socket path a ``chain.transport.IpcTransport``."""
    if is_ipc_path(url):
        from .chain.transport import IpcTransport

        return IpcTransport(os.path.expanduser(url.strip()),
                            timeout=request_timeout() if timeout is None else timeout)
    from .chain.errors import RpcTransportError
    from .chain.jsonrpc import JsonRpc, proxy_for

    try:
        return JsonRpc(url, timeout=request_timeout() if timeout is None else timeout,
                       retry_seconds=retry_seconds() if retry_for is None else retry_for,
                       proxy=proxy_for(url))
    except RpcTransportError as exc:  # the URL is checked before: the proxy's is not usable
        # NOTE: no URL in the hint: messages are redacted as a whole
        raise ConfigError(exc.reason, hint="HTTP_PROXY / HTTPS_PROXY must name an http proxy "
                                           "(a host and a port; socks is not supported), or "
                                           "exempt the node's host with NO_PROXY") from None
