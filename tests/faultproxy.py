"""A loopback JSON-RPC proxy that injects faults, for tests (stdlib only).

Usage::

    from faultproxy import FaultProxy          # tests/ is on sys.path under pytest

    with FaultProxy(anvil.url) as proxy:      # listens on 127.0.0.1, a free port
        proxy.fault("eth_sendRawTransaction", "drop_after")   # the NEXT matching request
        ... point the client at proxy.url ...
        assert proxy.fired == [("eth_sendRawTransaction", "drop_after")]

``fault(method, kind, *, times=1, skip=0, status=502, hang=30.0, message=..., code=-32000)`` arms a fault
for the next ``times`` requests whose method is ``method`` -- a single request, or a JSON-RPC
batch that contains it (the whole batch then suffers the fault) -- after letting ``skip``
matching ones through. ``method="*"`` matches every request. Faults fire in the order they were
armed; a request takes at most one fault. ``clear()`` disarms all.

Kinds (``_before``: the node never sees the request; ``_after``: the node got and ran it, only
the reply is lost or damaged):

- ``drop_before`` / ``drop_after``: close the connection without a reply
- ``http_before`` / ``http_after``: answer HTTP ``status`` (e.g. 502, 503, 429) with a short body
- ``hang_before`` / ``hang_after``: wait ``hang`` seconds (or until the proxy stops), then close
  without a reply: use it with a client timeout shorter than ``hang``
- ``cut_after``: send the headers and half of the node's reply, then close (cut mid-body)
- ``badjson_before`` / ``badjson_after``: answer 200 with a body that is not JSON
- ``rpcerror_before``: answer 200 with a JSON-RPC error ``{"code": code, "message": message}``
  (for a single request; in a batch every entry gets it)
- ``rpcerror_after``: the node runs the request, and the reply is that error instead (a send
  the node took, answered with an error: eth_sendRawTransactionSync's timeout)
- ``method_error``: a node without that method: the request (or batch) runs, and only the
  entries of ``method`` are answered ``{"code": -32601, "message": message}``

``lacking``: a set of methods the proxy answers ``{"code": -32601, ...}`` itself, as a node
without them (single requests; the node never sees them; not a fault, not in ``fired``).

Other attributes: ``url``; ``fired`` (list of ``(method, kind)`` that fired); ``seen`` (list of
method labels per HTTP request: ``"eth_call"`` or ``"[eth_call,eth_estimateGas]"``);
``upstream`` (settable: point the proxy at a restarted node); ``wait_fired(n, timeout)``.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ("drop_before", "drop_after", "http_before", "http_after", "hang_before", "hang_after",
         "cut_after", "badjson_before", "badjson_after", "rpcerror_before", "rpcerror_after",
         "method_error")


@dataclass
class _Fault:
    method: str
    kind: str
    times: int
    status: int
    hang: float
    skip: int = 0
    message: str = "injected error"
    code: int = -32000


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _reply(self, status: int, body: bytes, send_bytes: int | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body if send_bytes is None else body[:send_bytes])
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            # the client gave up waiting (its timeout: a send held by the node, e.g.
            # eth_sendRawTransactionSync while nothing is mined); no traceback on stderr, which
            # may be the CLI run's under test
            self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        calls = payload if isinstance(payload, list) else [payload]
        methods = [c.get("method", "?") if isinstance(c, dict) else "?" for c in calls]
        fault = proxy._take(methods, "[" + ",".join(methods) + "]"
                            if isinstance(payload, list) else methods[0])
        kind = fault.kind if fault else ""
        if kind == "drop_before":
            return self._drop()
        if kind == "http_before":
            return self._reply(fault.status, b'{"error": "injected"}')
        if kind == "badjson_before":
            return self._reply(200, b"<html>bad gateway</html>")
        if not kind and isinstance(payload, dict) and methods[0] in proxy.lacking:
            return self._reply(200, _error(payload, -32601, f"the method {methods[0]} does "
                                                             f"not exist/is not available"))
        if kind == "rpcerror_before":
            return self._reply(200, _error(payload, fault.code, fault.message))
        if kind == "hang_before":
            proxy._stopping.wait(fault.hang)
            return self._drop()
        try:
            status, data = proxy._forward(body)
        except OSError as exc:  # the node is down: what a load balancer says
            status, data = 502, json.dumps({"error": f"upstream: {exc}"}).encode()
        if kind == "drop_after":
            return self._drop()
        if kind == "http_after":
            return self._reply(fault.status, b'{"error": "injected"}')
        if kind == "badjson_after":
            return self._reply(200, data[: max(1, len(data) // 2)] + b"}}garbage")
        if kind == "hang_after":
            proxy._stopping.wait(fault.hang)
            return self._drop()
        if kind == "rpcerror_after":
            return self._reply(200, _error(payload, fault.code, fault.message))
        if kind == "cut_after":
            self._reply(status, data, send_bytes=len(data) // 2)
            return self._drop()
        if kind == "method_error" and status == 200:
            data = _method_error(payload, json.loads(data), fault)
        self._reply(status, data)


def _error(payload, code: int, message: str) -> bytes:
    """A JSON-RPC error reply to ``payload`` (a batch: every entry gets it)."""
    calls = payload if isinstance(payload, list) else [payload]
    err = [{"jsonrpc": "2.0", "id": c.get("id") if isinstance(c, dict) else None,
            "error": {"code": code, "message": message}} for c in calls]
    return json.dumps(err if isinstance(payload, list) else err[0]).encode()


def _method_error(payload, replies, fault) -> bytes:
    """``replies`` with the entries answering ``fault.method`` replaced by a JSON-RPC error."""
    calls = payload if isinstance(payload, list) else [payload]
    ids = {c.get("id") for c in calls if isinstance(c, dict) and c.get("method") == fault.method}
    err = {"code": -32601, "message": fault.message}

    def fix(r):
        return ({"jsonrpc": "2.0", "id": r.get("id"), "error": err}
                if isinstance(r, dict) and r.get("id") in ids else r)

    out = [fix(r) for r in replies] if isinstance(replies, list) else fix(replies)
    return json.dumps(out).encode()


class FaultProxy:
    """The proxy; a context manager. ``stop()`` is idempotent."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = upstream
        self.fired: list = []
        self.seen: list = []
        self.lacking: set = set()
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.server.proxy = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def fault(self, method: str, kind: str, *, times: int = 1, skip: int = 0, status: int = 502,
              hang: float = 30.0, message: str = "injected error",
              code: int = -32000) -> "FaultProxy":
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(KINDS)})")
        with self._lock:
            self._faults.append(_Fault(method, kind, times, status, hang, skip, message, code))
        return self

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def wait_fired(self, n: int = 1, timeout: float = 30.0) -> bool:
        """Wait until ``n`` faults have fired in total."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.fired) >= n:
                return True
            time.sleep(0.02)
        return False

    def _take(self, methods: list, label: str):
        with self._lock:
            self.seen.append(label)
            for f in self._faults:
                if f.times > 0 and (f.method == "*" or f.method in methods):
                    if f.skip > 0:
                        f.skip -= 1
                        continue
                    f.times -= 1
                    self.fired.append((f.method, f.kind))
                    if f.times == 0:
                        self._faults.remove(f)
                    return f
        return None

    def _forward(self, body: bytes) -> tuple:
        up = urllib.parse.urlparse(self.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        try:
            conn.request("POST", up.path or "/", body=body,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def start(self) -> "FaultProxy":
        self._thread = threading.Thread(target=self.server.serve_forever, name="fault-proxy",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
