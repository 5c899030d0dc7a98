"""The chain layer driven from asyncio, on the one send path: the way SQLAlchemy's asyncio
extension drives its synchronous core. A call of the async client runs the synchronous code
(manager, ``send``, journal) in a greenlet (``greenlet_spawn``); where that code waits -- a
JSON-RPC exchange, the one sleep of ``clock`` (receipt polls, request pacing, waits for the
sender lock), the client's turn to write -- it hands an awaitable to the event loop
(``await_only``) and resumes with its result, while other tasks run. What does not yield is
short local work: signing, a SQLite journal statement, a non-blocking file-lock attempt.

- :func:`greenlet_spawn`: await a synchronous call run this way. A task cancelled while the
  call waits gets ``KeyboardInterrupt`` inside it, the Ctrl-C path of the CLI: a transaction
  already sent is named (TxPendingError, journal entry left open), and the task then ends
  cancelled, the CancelledError carrying that message (``__cause__``: the TxPendingError).
- :class:`AsyncHttp`: HTTP/1.1 (``http11``, the synchronous client's) over asyncio streams,
  kept-alive connections to one endpoint (one request at a time each, as many as tasks need),
  through the proxy the environment names (absolute-form to an http proxy, https in a CONNECT
  tunnel), as ``JsonRpc`` does.
- :class:`LoopJsonRpc`: a ``JsonRpc`` -- the same batches, read retries, failure
  classification and redaction -- whose I/O goes through an ``AsyncHttp`` and whose retry
  backoff sleeps on the loop. One per call of the client (its ``deadline`` is the call's).
- :class:`AsyncIpc` and :class:`LoopIpc`: the same for a node's IPC socket (asyncio unix
  streams, an ``IpcTransport``'s framing and failures).
- :class:`ProviderPool`: an async web3 provider (web3 7, 8) behind a ``ProviderTransport``.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import socket
import sys
import time
from typing import Any, Awaitable, Callable, Optional

import greenlet

from ..errors import DtnsessError
from . import http11
from .clock import SLEEP
from .jsonrpc import SEND_IDLE_REUSE, JsonRpc
from .transport import MORE, IpcTransport, ProviderTransport, ipc_reader


class _Driven(greenlet.greenlet):
    """The greenlet of one async call: ``driver`` is the task's greenlet, which awaits."""

    def __init__(self, fn: Callable[..., Any], driver: greenlet.greenlet) -> None:
        super().__init__(fn, driver)
        self.driver = driver
        # the task's context variables (the journal's INTENT), plus the loop's sleep
        self.gr_context = contextvars.copy_context()
        self.gr_context.run(SLEEP.set, loop_sleep)


def await_only(awaitable: Awaitable[Any]) -> Any:
    """From synchronous code run by :func:`greenlet_spawn`: await ``awaitable`` on the loop."""
    current = greenlet.getcurrent()
    if not isinstance(current, _Driven):
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError("await_only() outside greenlet_spawn()")
    return current.driver.switch(awaitable)


def loop_sleep(seconds: float) -> None:
    """``clock.sleep`` inside an async call: the loop runs other tasks meanwhile."""
    await_only(asyncio.sleep(max(0.0, seconds)))


async def greenlet_spawn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` (synchronous code that waits through ``await_only``) and
    return its result; see the module's docstring for cancellation."""
    g = _Driven(fn, greenlet.getcurrent())
    cancelled = False
    try:
        result = g.switch(*args, **kwargs)
        while not g.dead:
            try:
                value = await result
            except asyncio.CancelledError:
                # NOTE: the synchronous code's Ctrl-C: it names a transaction already sent
                cancelled = True
                result = g.throw(KeyboardInterrupt)
            except BaseException:
                result = g.throw(*sys.exc_info())
            else:
                result = g.switch(value)
    except KeyboardInterrupt:
        if cancelled:
            raise asyncio.CancelledError() from None
        raise
    except DtnsessError as exc:
        if cancelled:
            raise asyncio.CancelledError(exc.message) from exc
        raise
    if cancelled:  # the call finished anyway: the task still ends cancelled
        raise asyncio.CancelledError()
    return result


class GreenletLocal:
    """``threading.local`` for async calls: each greenlet (one call of the async client) sees
    its own attributes; outside one (the loop itself) a namespace of its own."""

    def __init__(self) -> None:
        object.__setattr__(self, "_outside", {})

    def _space(self) -> dict:
        g = greenlet.getcurrent()
        if not isinstance(g, _Driven):
            return object.__getattribute__(self, "_outside")
        return g.__dict__.setdefault("_dtnsess_local", {}).setdefault(id(self), {})

    def __getattribute__(self, name: str) -> Any:
        space = object.__getattribute__(self, "_space")()
        if name == "__dict__":
            return space
        try:
            return space[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        object.__getattribute__(self, "_space")()[name] = value


class LoopLock:
    """A lock for synchronous code run by ``greenlet_spawn`` (a ``with`` block): waiting for it
    lets the loop run other tasks. One asyncio.Lock per event loop (a client may be used from
    several loops one after the other)."""

    def __init__(self) -> None:
        self._locks: dict = {}

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            self._locks = {k: v for k, v in self._locks.items() if not k.is_closed()}
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def __enter__(self) -> None:
        # NOTE: the loop is running in this thread (this is code of a greenlet_spawn call)
        await_only(self._lock().acquire())

    def __exit__(self, *exc: Any) -> None:
        self._lock().release()


# ------------------------------------------------------------------------- connections


class _Conn:
    """One kept-alive stream to the node (asyncio), one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.reader, self.writer, self.loop = reader, writer, loop
        self.reusable = True
        self.last_used = time.monotonic()

    def close(self) -> None:
        self.reusable = False
        try:
            self.writer.close()
        except RuntimeError:  # its loop is closed: the socket goes with it
            pass


class _Pool:
    """Kept-alive connections to one endpoint, for many tasks at once: a task takes an idle
    one or opens another (``acquire``) and gives it back after a complete exchange."""

    def __init__(self) -> None:
        self._idle: list = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    async def acquire(self, timeout: float, fresh: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections of another (finished) loop are of no use
            self._drop_idle()
            self._loop = loop
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            # NOTE: a send never goes over a connection idle past SEND_IDLE_REUSE (the server
            # may have closed it: a send must not find that out after writing), nor over one
            # the server is known to have closed (the loop saw its end), as in JsonRpc
            if conn.reusable and not conn.reader.at_eof() \
                    and not (fresh and now - conn.last_used > SEND_IDLE_REUSE):
                return conn
            conn.close()
        try:
            return await asyncio.wait_for(self._connect(loop), timeout)
        except asyncio.TimeoutError:
            raise socket.timeout("timed out") from None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Any:  # pragma: no cover
        raise NotImplementedError

    def release(self, conn: _Conn) -> None:
        if conn.reusable and conn.loop is self._loop:
            conn.last_used = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    async def aclose(self) -> None:
        """Close the idle connections (those in use close when their call ends)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
            try:
                await conn.writer.wait_closed()
            except (OSError, RuntimeError):
                pass


async def _exchange_on(conn: _Conn, exchange: Awaitable[Any], timeout: float,
                       pool: _Pool) -> Any:
    """Await one exchange on ``conn`` within ``timeout``; the connection goes back to the pool
    after a complete one, and is closed after anything else (a timeout, an error, a cancel)."""
    try:
        out = await asyncio.wait_for(exchange, timeout)
    except asyncio.TimeoutError:
        conn.close()
        raise socket.timeout("timed out") from None
    except BaseException:
        conn.close()
        raise
    pool.release(conn)
    return out


# ------------------------------------------------------------------------------------ HTTP


class _HttpConn(_Conn):
    """One kept-alive HTTP/1.1 connection."""

    async def post(self, request: bytes) -> tuple:
        """One request (``http11.post`` bytes): (status, reason, body). Raises HttpError."""
        self.writer.write(request)
        await self.writer.drain()
        reply = http11.Reply()
        while not reply.done:
            reply.feed(await self.reader.read(http11.READ_SIZE))
        self.reusable = reply.keep_alive
        return reply.status, reply.reason, reply.body


class AsyncHttp(_Pool):
    """HTTP/1.1 connections to one JSON-RPC endpoint, and the :class:`LoopJsonRpc` of each
    call (``rpc()``)."""

    def __init__(self, url: str, *, timeout: float, retry_seconds: float,
                 proxy: Optional[str] = None, ssl_context: Any = None) -> None:
        super().__init__()
        # NOTE: a JsonRpc parses and checks the URL and the proxy, and keeps the request line,
        # headers and credentials exactly as the synchronous client sends them; each call gets
        # a copy of it (``rpc()``)
        self._template = LoopJsonRpc(url, timeout=timeout, retry_seconds=retry_seconds,
                                     proxy=proxy, ssl_context=ssl_context, sleep=loop_sleep)
        self._template._pool = self
        self.url = self._template.url

    def rpc(self) -> "LoopJsonRpc":
        """A JsonRpc for one call of the client (its own deadline and counters)."""
        return copy.copy(self._template)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _HttpConn:
        t = self._template
        ctx = None
        if t._https:
            import ssl

            ctx = t._ssl_context or ssl.create_default_context()
        if t._proxy is None:
            reader, writer = await asyncio.open_connection(t._host, t._port, ssl=ctx)
        elif not t._https:  # plain http: the request goes to the proxy in absolute form
            reader, writer = await asyncio.open_connection(t._proxy[0], t._proxy[1])
        else:
            sock = await self._tunnel(loop)
            reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx,
                                                           server_hostname=t._host)
        return _HttpConn(reader, writer, loop)

    async def _tunnel(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        """A socket to the node through the proxy's CONNECT tunnel (TLS goes inside it)."""
        t = self._template
        phost, pport, auth = t._proxy
        infos = await loop.getaddrinfo(phost, pport, type=socket.SOCK_STREAM)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
            await loop.sock_sendall(sock, http11.connect(t._host, t._port, auth))
            reply = http11.Reply(bodyless=True)
            while not reply.done:
                reply.feed(await loop.sock_recv(sock, http11.READ_SIZE))
            http11.check_tunnel(reply)
            return sock
        except BaseException:
            sock.close()
            raise


class LoopJsonRpc(JsonRpc):
    """A ``JsonRpc`` whose exchanges are awaited on the loop through an :class:`AsyncHttp`
    (made by ``AsyncHttp.rpc()``; used by synchronous code run by ``greenlet_spawn``)."""

    _pool: AsyncHttp
    _conn_timeout = 0.0

    def _open(self, timeout: float, fresh: bool) -> None:
        self.close()
        self._conn_timeout = timeout
        self._conn = await_only(self._pool.acquire(timeout, fresh))

    def _post(self, request: bytes) -> tuple:
        conn, self._conn = self._conn, None
        return await_only(_exchange_on(conn, conn.post(request), self._conn_timeout,
                                       self._pool))

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


# ------------------------------------------------------------------------------------- IPC


class _IpcConn(_Conn):
    async def exchange(self, body: bytes) -> Any:
        self.writer.write(body)
        await self.writer.drain()
        feed = ipc_reader()
        while True:
            doc = feed(await self.reader.read(65536))
            if doc is not MORE:
                return doc


class AsyncIpc(_Pool):
    """Unix-socket connections to a node's IPC endpoint, and the :class:`LoopIpc` of each call
    (``rpc()``)."""

    def __init__(self, path: str, *, timeout: float) -> None:
        super().__init__()
        self._template = LoopIpc(path, timeout=timeout)
        self._template._pool = self
        self.url = self._template.url

    def rpc(self) -> "LoopIpc":
        return copy.copy(self._template)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _IpcConn:
        reader, writer = await asyncio.open_unix_connection(self._template.path)
        return _IpcConn(reader, writer, loop)


class LoopIpc(IpcTransport):
    """An ``IpcTransport`` whose exchanges are awaited on the loop through an
    :class:`AsyncIpc`."""

    _pool: AsyncIpc

    def _open(self) -> None:
        if self._sock is None:
            self._sock = await_only(self._pool.acquire(self.timeout))

    def _send_read(self, body: bytes) -> Any:
        conn, self._sock = self._sock, None
        return await_only(_exchange_on(conn, conn.exchange(body), self.timeout, self._pool))


# ------------------------------------------------------------------------- web3 providers


class AsyncProvider:
    """An async web3.py provider (web3 7 or 8: ``AsyncHTTPProvider``, ``WebSocketProvider``,
    ``AsyncIPCProvider``; its ``make_request`` a coroutine) seen as a synchronous one by
    synchronous code run by ``greenlet_spawn``, for a ``ProviderTransport``: each request
    awaited on the loop. The program connects and closes it (a WebSocketProvider's
    ``connect()``)."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        if callable(getattr(provider, "make_batch_request", None)):
            self.make_batch_request = self._batch

    def make_request(self, method: str, params: Any) -> Any:
        return await_only(self._provider.make_request(method, params))

    def _batch(self, requests: Any) -> Any:
        return await_only(self._provider.make_batch_request(requests))

    def __getattr__(self, name: str) -> Any:  # its name in messages, and the rest
        return getattr(self._provider, name)


class ProviderPool:
    """What an AsyncClient over an async web3 provider shares: one ``ProviderTransport`` (the
    provider takes concurrent requests itself; no per-call state to keep)."""

    def __init__(self, provider: Any) -> None:
        self.transport = ProviderTransport(AsyncProvider(provider))
        self.url = self.transport.url = f"transport {type(provider).__name__}"

    def rpc(self) -> ProviderTransport:
        return self.transport

    async def aclose(self) -> None:
        """Nothing: the program closes its provider."""
