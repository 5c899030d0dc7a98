"""A JSON-RPC proxy on 127.0.0.1 that adds latency like a remote RPC node and counts round trips.

Every HTTP request to the proxy is one round trip: it waits `delay_ms`, forwards the body to the
upstream node (Anvil), and returns the upstream reply. A JSON-RPC batch (a JSON array) is one
round trip carrying N calls. New TCP connections are counted too: on a real HTTPS endpoint each
costs one to three extra round trips (TCP + TLS) that this proxy does not simulate.

In-process use (bench/rpc.py)::

    with LatencyProxy(upstream_url, delay_ms=50) as proxy:
        ... point the client at proxy.url ...
        stats = proxy.take()   # counters since the last take(), then reset

Stand-alone, for poking at a command by hand::

    .venv/bin/python bench/latency_proxy.py --upstream http://127.0.0.1:8545 --delay-ms 50
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Stats:
    round_trips: int = 0  # HTTP requests
    calls: int = 0  # JSON-RPC calls (a batch of N counts N)
    batches: int = 0  # round trips that carried a JSON array
    connections: int = 0  # new TCP connections accepted
    methods: Counter = field(default_factory=Counter)
    sequence: list = field(default_factory=list)  # per round trip: "method" or "[m1,m2,...]"

    def to_dict(self) -> dict:
        return {
            "round_trips": self.round_trips,
            "calls": self.calls,
            "batches": self.batches,
            "connections": self.connections,
            "methods": dict(self.methods),
            "sequence": list(self.sequence),
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real node behind a load balancer
    # NOTE: http.server writes the headers and the body in two sends; with Nagle's algorithm on,
    # the body then waits for the client's delayed ACK of the headers: ~40 ms more per round trip
    # (measured: 92 ms against 52 ms at --delay-ms 50) that no node behind nginx or a cloud load
    # balancer adds (they set TCP_NODELAY). Every figure in bench/RESULTS.md before 2026-12-05
    # 20:00 UTC carries that extra time on every round trip, for both tools.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.stats.connections += 1
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()

    def log_message(self, *args) -> None:  # quiet
        pass

    def _forward(self, body: bytes) -> tuple[int, bytes]:
        up = self.server.upstream
        for attempt in (1, 2):
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
            try:
                self._upstream.request(
                    "POST", up.path or "/", body=body, headers={"Content-Type": "application/json"}
                )
                resp = self._upstream.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException):
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _label(self, call) -> str:
        """`method`, or `method:function` for eth_call/eth_estimateGas/eth_sendTransaction with a
        selector the proxy was told about."""
        if not isinstance(call, dict):
            return "?"
        method = call.get("method", "?")
        sel = self.server.selectors
        params = call.get("params") or []
        if sel and params and isinstance(params[0], dict):
            data = params[0].get("data") or params[0].get("input") or ""
            name = sel.get(data[:10].lower())
            if name:
                return f"{method}:{name}"
        return method

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        calls = payload if isinstance(payload, list) else [payload]
        names = [c.get("method", "?") if isinstance(c, dict) else "?" for c in calls]
        labels = [self._label(c) for c in calls]
        label = "[" + ",".join(labels) + "]" if isinstance(payload, list) else labels[0]
        with self.server.lock:
            st = self.server.stats
            st.round_trips += 1
            st.calls += len(names)
            st.batches += isinstance(payload, list)
            st.methods.update(names)
            st.sequence.append(label)
        if self.server.delay > 0:
            time.sleep(self.server.delay)
        try:
            status, data = self._forward(body)
        except OSError as exc:
            status, data = 502, json.dumps({"error": f"proxy: upstream failed: {exc}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    # NOTE: socketserver listens with a backlog of 5: a burst of new connections (8 asyncio
    # tasks opening theirs at once) overflowed it, and a dropped SYN costs the client a 1 s
    # retransmit; a node or a load balancer listens with a deep backlog
    request_queue_size = 128


class LatencyProxy:
    """A threaded proxy on 127.0.0.1 (free port). Context manager; stop() is idempotent."""

    def __init__(
        self, upstream: str, delay_ms: float = 0.0, port: int = 0, selectors: dict | None = None
    ) -> None:
        """`selectors`: {"0x12345678": "name"} to label eth_call/estimate by contract function."""
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.selectors = {k.lower(): v for k, v in (selectors or {}).items()}
        self.server.daemon_threads = True
        self.server.upstream = urllib.parse.urlparse(upstream)
        self.server.delay = delay_ms / 1000.0
        self.server.stats = Stats()
        self.server.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def delay_ms(self) -> float:
        return self.server.delay * 1000.0

    @delay_ms.setter
    def delay_ms(self, value: float) -> None:
        self.server.delay = value / 1000.0

    def start(self) -> "LatencyProxy":
        self._thread = threading.Thread(target=self.server.serve_forever, name="latency-proxy", daemon=True)
        self._thread.start()
        return self

    def take(self) -> Stats:
        """The counters since the last take(); resets them."""
        with self.server.lock:
            st, self.server.stats = self.server.stats, Stats()
        return st

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()

    def __enter__(self) -> "LatencyProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="JSON-RPC latency proxy on 127.0.0.1")
    ap.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8545")
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    if urllib.parse.urlparse(args.upstream).hostname not in ("127.0.0.1", "localhost"):
        ap.error("only a local upstream (127.0.0.1) is allowed")
    proxy = LatencyProxy(args.upstream, args.delay_ms, args.port).start()
    print(f"proxy {proxy.url} -> {args.upstream}, +{args.delay_ms:g} ms per round trip; Ctrl-C prints counts")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        print(json.dumps(proxy.take().to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
