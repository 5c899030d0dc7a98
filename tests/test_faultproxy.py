"""The fault proxy itself (tests/faultproxy.py), over a tiny stdlib JSON-RPC echo upstream:
each kind fires once on the next matching request (also inside a batch), and the node sees the
request exactly when the kind says ``_after``."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from faultproxy import FaultProxy


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.got.append(body)
        one = lambda c: {"jsonrpc": "2.0", "id": c["id"], "result": c["method"]}  # noqa: E731
        out = json.dumps([one(c) for c in body] if isinstance(body, list) else one(body)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


@pytest.fixture
def echo():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    srv.got = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def call(url, method, batch=False, timeout=2.0):
    one = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
    body = [one, dict(one, id=2, method="eth_chainId")] if batch else one
    return requests.post(url, json=body, timeout=timeout)


@pytest.mark.parametrize("kind,reaches,exc", [
    ("drop_before", False, requests.ConnectionError),
    ("drop_after", True, requests.ConnectionError),
    ("hang_before", False, requests.Timeout),
    ("hang_after", True, requests.Timeout),
    ("cut_after", True, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)),
])
def test_transport_faults(echo, kind, reaches, exc):
    url = f"http://127.0.0.1:{echo.server_address[1]}"
    with FaultProxy(url) as p:
        p.fault("eth_sendRawTransaction", kind, hang=5)
        assert call(p.url, "eth_chainId").json()["result"] == "eth_chainId"  # not matching
        with pytest.raises(exc):
            call(p.url, "eth_sendRawTransaction", timeout=0.5).json()
        assert p.fired == [("eth_sendRawTransaction", kind)]
        assert any(b.get("method") == "eth_sendRawTransaction" for b in echo.got
                   if isinstance(b, dict)) == reaches
        # fired once: the next one passes
        assert call(p.url, "eth_sendRawTransaction").json()["result"] == "eth_sendRawTransaction"


@pytest.mark.parametrize("kind", ["http_before", "http_after", "badjson_before", "badjson_after"])
def test_reply_faults_in_a_batch(echo, kind):
    url = f"http://127.0.0.1:{echo.server_address[1]}"
    with FaultProxy(url) as p:
        p.fault("eth_getTransactionReceipt", kind, status=503, times=2)
        for _ in range(2):
            r = call(p.url, "eth_getTransactionReceipt", batch=True)
            if kind.startswith("http"):
                assert r.status_code == 503
            else:
                with pytest.raises(ValueError):
                    r.json()
        assert call(p.url, "eth_getTransactionReceipt", batch=True).json()[0]["result"] \
            == "eth_getTransactionReceipt"
        assert len(echo.got) == (3 if kind.endswith("_after") else 1)
        assert p.seen[0] == "[eth_getTransactionReceipt,eth_chainId]"
