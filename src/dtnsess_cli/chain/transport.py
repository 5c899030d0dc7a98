"""JSON-RPC transports besides HTTP (``jsonrpc.JsonRpc``), with its interface: ``call(method,
params)`` returns the ``result`` or raises :class:`RpcResponseError`; ``batch(calls)`` returns
one reply dict per call, in order; transport trouble raises :class:`RpcTransportError`;
``close()``; ``deadline`` (ignored here: these have no retries to clip).

- :class:`IpcTransport`: a node's IPC socket (geth, reth and Anvil's ``--ipc``), newline-free
  JSON documents over a Unix socket.
- :class:`ProviderTransport`: any object with web3.py's ``make_request(method, params)`` (a
  provider of web3 6, 7 or 8: HTTP, IPC, WebSocket), so a backend hands the client the
  transport it already has; batches in one request through ``make_batch_request`` (web3 7
  and 8), else entry by entry (web3 6). No web3 is imported here.

Sends are made once, as over HTTP: ``maybe_sent`` tells whether the node may have the request.
"""

from __future__ import annotations

import json
import socket

from .errors import RpcTransportError
from .jsonrpc import WRITE_METHODS, _check_single, _order_batch, _Transient, result_of

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence


class _Base:
    url = ""
    deadline: Optional[float] = None  # the HTTP client's knob; nothing to clip here
    round_trips = 0

    def __init__(self) -> None:
        self._id = 0

    def _payload(self, calls: Sequence[tuple]) -> list:
        out = []
        for method, params in calls:
            self._id += 1
            out.append({"jsonrpc": "2.0", "id": self._id, "method": method,
                        "params": list(params)})
        return out

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        (req,) = self._payload([(method, params)])
        try:
            reply = _check_single(self._exchange(req, method), req["id"], retry=False)
        except _Transient as exc:
            raise RpcTransportError(method, exc.reason, url=self.url,
                                    maybe_sent=method in WRITE_METHODS) from None
        return result_of(reply, method)

    def batch(self, calls: Sequence[tuple]) -> list:
        if not calls:
            return []
        reqs = self._payload(calls)
        label = "batch" if len(calls) > 1 else calls[0][0]
        try:
            return _order_batch(self._exchange(reqs, label), reqs[0]["id"], len(reqs),
                                retry=False)
        except _Transient as exc:
            raise RpcTransportError(label, exc.reason, url=self.url,
                                    maybe_sent=any(m in WRITE_METHODS for m, _ in calls)) from None

    def _exchange(self, payload: Any, label: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url})"


class IpcTransport(_Base):
    """JSON-RPC over a node's IPC socket (a path), one request at a time, kept connected."""

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        super().__init__()
        self.path = path
        self.url = path  # a local path: nothing secret in it
        self.timeout = float(timeout)
        self._sock: Optional[socket.socket] = None

    def _exchange(self, payload: Any, label: str) -> Any:
        self.round_trips += 1
        body = json.dumps(payload, separators=(",", ":")).encode()
        sent = False
        try:
            self._open()
            sent = True
            return self._send_read(body)
        except (OSError, ValueError) as exc:
            self.close()
            reason = ("cannot connect to the IPC socket" if not sent else
                      "no reply in time (timed out)" if isinstance(exc, socket.timeout) else
                      "the IPC connection dropped without a reply")
            raise RpcTransportError(label, reason, url=self.url,
                                    maybe_sent=sent and label in WRITE_METHODS | {"batch"}) \
                from None

    def _open(self) -> None:
        """Connect unless connected. Raises OSError."""
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            self._sock = sock

    def _send_read(self, body: bytes) -> Any:
        """Send ``body``, then read the reply. Raises OSError / ValueError (the async client's
        transport does the same on the event loop)."""
        self._sock.settimeout(self.timeout)  # per request: a send may wait for its receipt
        self._sock.sendall(body)
        reader = ipc_reader()
        while True:
            doc = reader(self._sock.recv(65536))
            if doc is not MORE:
                return doc

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


class ProviderTransport(_Base):
    """JSON-RPC through a web3.py provider's ``make_request`` (web3 6, 7 or 8)."""

    def __init__(self, provider: Any) -> None:
        super().__init__()
        if not callable(getattr(provider, "make_request", None)):
            raise TypeError("a transport needs make_request(method, params)")
        self.provider = provider
        self.url = f"transport {type(provider).__name__}"

    def _exchange(self, payload: Any, label: str) -> Any:
        reqs = payload if isinstance(payload, list) else [payload]
        batch = getattr(self.provider, "make_batch_request", None)
        if len(reqs) > 1 and callable(batch):
            return self._batch(batch, reqs, label)
        # NOTE: web3 6's providers have make_request only: a batch is asked entry by entry and
        # answered in the batch's shape
        out = []
        for req in reqs:
            self.round_trips += 1
            try:
                reply = self.provider.make_request(req["method"], req["params"])
            # NOTE: whatever the provider raises (requests', aiohttp's, websockets', OSError):
            # foreign exception families; its text is not shown (it may hold the URL)
            except Exception as exc:  # noqa: BLE001
                raise RpcTransportError(req["method"], f"the transport failed "
                                        f"({type(exc).__name__})", url=self.url,
                                        maybe_sent=req["method"] in WRITE_METHODS) from None
            out.append(_reply(reply, req["id"]))
        return out if isinstance(payload, list) else out[0]

    def _batch(self, batch: Any, reqs: list, label: str) -> Any:
        """A JSON-RPC batch in one request: web3 7 and 8's ``make_batch_request`` (replies in
        the requests' order, or one error object when the node refuses the batch)."""
        self.round_trips += 1
        try:
            replies = batch([(r["method"], r["params"]) for r in reqs])
        except Exception as exc:  # noqa: BLE001 - foreign exception families, as above
            raise RpcTransportError(label, f"the transport failed ({type(exc).__name__})",
                                    url=self.url, maybe_sent=any(
                                        r["method"] in WRITE_METHODS for r in reqs)) from None
        if not isinstance(replies, (list, tuple)):  # the batch refused as a whole
            return _reply(replies, None)
        if len(replies) != len(reqs):
            raise _Transient(f"the batch reply lacks entries ({len(replies)} of {len(reqs)})")
        return [_reply(reply, req["id"]) for req, reply in zip(reqs, replies)]


def _reply(reply: Any, rid: Optional[int]) -> Any:
    """A provider's reply as a plain JSON-RPC reply dict carrying our request id (the provider
    numbers its own requests)."""
    reply = dict(reply) if hasattr(reply, "keys") else reply
    if isinstance(reply, dict):
        reply = {k: _plain(v) for k, v in reply.items()}
        if rid is not None:
            reply["id"] = rid
    return reply


def _plain(value: Any) -> Any:
    """web3's AttributeDict / HexBytes as the plain JSON the rest of the chain layer reads."""
    if hasattr(value, "keys"):
        return {k: _plain(value[k]) for k in value.keys()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


MORE = object()  # ipc_reader's "not a whole document yet"


def ipc_reader() -> Any:
    """``feed(chunk)``: the reply once the chunks fed so far hold one, else ``MORE``.
    NOTE: the socket is a stream of JSON documents without framing: read until what came
    parses as one complete document."""
    decoder = json.JSONDecoder()
    buf = bytearray()

    def feed(chunk: bytes) -> Any:
        if not chunk:
            raise ConnectionResetError("closed")
        buf.extend(chunk)
        try:
            doc, _ = decoder.raw_decode(buf.decode("utf-8").lstrip())
        except (ValueError, UnicodeDecodeError):
            return MORE  # incomplete (or cut inside a UTF-8 sequence): read on
        return doc

    return feed
