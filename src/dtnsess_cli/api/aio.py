"""``AsyncClient``: the :class:`Client` for asyncio programs, on the same transaction path.

Every method of ``Client`` is an ``async def`` here with the same arguments and results. A call
runs the client's own synchronous code (manager, send path, journal) in a greenlet driven by
the event loop (``chain.aio``): its JSON-RPC exchanges go over asyncio streams (kept-alive
HTTP/1.1 connections shared by the tasks, the same proxy rules), and its waits (receipt polls,
request pacing, another writer's turn, another process's sender lock) are awaited, so other
tasks run meanwhile. No thread does the work behind an ``await``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from typing import Any, Optional

from ..chain.aio import (
    AsyncHttp,
    AsyncIpc,
    GreenletLocal,
    LoopLock,
    ProviderPool,
    greenlet_spawn,
)
from ..errors import ConfigError
from .client import Client, Signer, StateDir, _positive

__all__ = ["AsyncClient"]


class _DrivenClient(Client):
    """The synchronous client an AsyncClient drives: per-call state (``GreenletLocal``), one
    writer at a time on the loop (``LoopLock``), JSON-RPC through the shared connection pool
    (``AsyncHttp`` or ``AsyncIpc``)."""

    _local_factory = GreenletLocal

    def __init__(self, pool: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool = pool
        # NOTE: the calls of one async client all run in the loop's thread: a thread lock would
        # let every one of them in (or block the loop); they take turns on the loop instead
        self._threads_lock = LoopLock()

    @property
    def rpc(self):
        if self._rpc is None:  # the calling task's (its deadline is the call's own)
            self._rpc = self._pool.rpc()
        return self._rpc

    @property
    def txctx(self):
        """The call's send context; what does not change between calls (the event decoder,
        the chain's genesis and anchor) comes from the first one, as a thread's context keeps
        them from one write to the next."""
        fresh = self._txctx is None
        ctx = Client.txctx.fget(self)
        if fresh:
            first = self.__dict__.setdefault("_first_txctx", ctx)
            if first is not ctx:
                ctx._events = first.event_decoder()
                if ctx.genesis is None:
                    ctx.genesis, ctx.anchor = first.genesis, first.anchor
        return ctx


# what needs no node and no waiting: plain attributes of the async client too
_PLAIN = {"address", "account", "dry_run", "state_dir", "manager_address", "address_arg"}
# a synchronous client's transport and send context (a thread's): no meaning across tasks
_LEFT_OUT = {"rpc", "txctx"}
# properties that may read from the node: awaitables here (``await client.decimals``)
_READ_PROPERTIES = {"chain_id", "manager", "router", "token", "decimals", "symbol"}


class AsyncClient:
    """One AdvancedSessionManager on one chain, for an asyncio program: :class:`Client`'s
    methods as coroutines (``await client.create_session("20")``), built from the same
    arguments but ``rpc_url``: an http(s) URL (HTTP(S)_PROXY and NO_PROXY are honoured), a
    node's IPC socket path, or an async web3 provider (web3 7, 8: AsyncHTTPProvider,
    WebSocketProvider, AsyncIPCProvider; the program connects and closes it). Share one client
    among any number of tasks (of one event loop at a time): reads run side by side over a
    pool of kept-alive connections; writes take turns (one nonce sequence), each journaled
    before its send. The properties that may read from the node are awaitables (``await
    client.decimals``, ``chain_id``, ``symbol``, ``manager``, ``router``, ``token``).

    A task cancelled while a write waits ends cancelled; when a transaction was already sent
    the CancelledError's message names it (hash and nonce; ``__cause__`` is the
    TxPendingError) and its journal entry stays open, as after Ctrl-C in the CLI.
    ``fetch_ipfs`` fetches from the gateway in a worker thread (it is not chain I/O).
    ``await client.aclose()`` (or ``async with AsyncClient(...) as client:``) closes the
    connections and the journal.
    """

    def __init__(self, rpc_url: str, manager: str, signer: Optional[Signer] = None, *,
                 address: Optional[str] = None, chain_id: Optional[int] = None,
                 model: Optional[str] = None, dry_run: bool = False,
                 state_dir: StateDir = None, receipt_timeout: float = 120.0,
                 rpc_timeout: float = 30.0, rpc_retry_seconds: float = 20.0) -> None:
        from ..chain.errors import RpcTransportError
        from ..chain.jsonrpc import proxy_for
        from ..manager.base import check_rpc_url
        from ..rpc import is_ipc_path

        self._args: dict = dict(rpc_url=rpc_url, manager=manager, signer=signer,
                                address=address, chain_id=chain_id, model=model,
                                dry_run=dry_run, state_dir=state_dir,
                                receipt_timeout=receipt_timeout, rpc_timeout=rpc_timeout,
                                rpc_retry_seconds=rpc_retry_seconds)
        if not isinstance(rpc_url, (str, os.PathLike)):
            if not inspect.iscoroutinefunction(getattr(rpc_url, "make_request", None)):
                raise ConfigError("the async client takes an http(s) RPC URL, an IPC path or "
                                  "an async web3 provider",
                                  hint="a synchronous transport (a web3 HTTPProvider, ...) is "
                                       "the sync Client's; pass AsyncHTTPProvider, "
                                       "WebSocketProvider or AsyncIPCProvider")
            self._pool: Any = ProviderPool(rpc_url)
            self._sync = _DrivenClient(self._pool, **dict(self._args,
                                                          rpc_url=self._pool.transport))
            return
        url = check_rpc_url(os.fspath(rpc_url))
        self._args["rpc_url"] = url
        timeout = _positive("rpc_timeout", rpc_timeout)
        if is_ipc_path(url):
            self._pool = AsyncIpc(os.path.expanduser(url), timeout=timeout)
        else:
            try:
                self._pool = AsyncHttp(url, timeout=timeout, proxy=proxy_for(url),
                                       retry_seconds=_positive("rpc_retry_seconds",
                                                               rpc_retry_seconds, zero=True))
            except RpcTransportError as exc:  # the URL was checked: the proxy's is not usable
                raise ConfigError(exc.reason, hint="HTTP_PROXY / HTTPS_PROXY must name an "
                                                   "http proxy (a host and a port), or exempt "
                                                   "the node's host with NO_PROXY") from None
        self._sync = _DrivenClient(self._pool, **self._args)

    def simulating(self) -> "AsyncClient":
        """An async client like this one whose writes are simulated only (``dry_run=True``)."""
        return type(self)(**dict(self._args, dry_run=True))

    async def aclose(self) -> None:
        """Close the node connections and the journal (the client reconnects if used again).
        Call it when no task is using the client."""
        await self._pool.aclose()
        self._sync.close()

    async def close(self) -> None:
        """The same as :meth:`aclose`."""
        await self.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def fetch_ipfs(self, view: Any, gateway: Optional[str] = None) -> bool:
        """:meth:`Client.fetch_ipfs`, in a worker thread: a gateway fetch (urllib), not the
        chain's I/O."""
        return await asyncio.to_thread(self._sync.fetch_ipfs, view, gateway)

    def __repr__(self) -> str:
        return "Async" + repr(self._sync)


def _coroutine(name: str) -> Any:
    sync = getattr(Client, name)

    async def method(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
        return await greenlet_spawn(getattr(self._sync, name), *args, **kwargs)

    functools.update_wrapper(method, sync)
    method.__qualname__ = f"AsyncClient.{name}"
    del method.__wrapped__  # type: ignore[attr-defined]  # the signature is shown, not wrapped
    method.__signature__ = inspect.signature(sync)  # type: ignore[attr-defined]
    return method


def _awaitable_property(name: str) -> property:
    doc = getattr(Client, name).__doc__

    def get(self: AsyncClient) -> Any:
        return greenlet_spawn(getattr, self._sync, name)

    return property(get, doc=(doc or "") + " (an awaitable here)")


def _plain(name: str) -> Any:
    static = inspect.getattr_static(Client, name)
    if isinstance(static, staticmethod):
        return static
    return property(lambda self: getattr(self._sync, name), doc=static.__doc__)


for _name in dir(Client):
    if _name.startswith("_") or _name in _LEFT_OUT or _name in AsyncClient.__dict__:
        continue
    if _name in _PLAIN:
        setattr(AsyncClient, _name, _plain(_name))
    elif _name in _READ_PROPERTIES:
        setattr(AsyncClient, _name, _awaitable_property(_name))
    else:
        assert inspect.isfunction(getattr(Client, _name)), _name  # a new kind of member: say
        setattr(AsyncClient, _name, _coroutine(_name))
del _name
