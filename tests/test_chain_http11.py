"""The project's own HTTP/1.1 (dtnsess_cli.chain.http11) under both JSON-RPC clients: the
synchronous ``JsonRpc`` (a socket) and the async ``AsyncHttp`` (asyncio streams) parse replies
with the same code, so each test runs both against a loopback server written on raw sockets
that answers with exactly the bytes a test gives it: chunked and close-delimited replies,
``Connection: close``, replies cut mid-body (a write is "maybe sent"), and hostile replies whose
header or body never ends (refused with one clear error, in bounded memory).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import tracemalloc
from unittest import mock

import pytest

from dtnsess_cli.chain import http11
from dtnsess_cli.chain.errors import RpcTransportError
from dtnsess_cli.chain.jsonrpc import JsonRpc, proxy_for

CLIENTS = ["sync", "async"]


class RawNode:
    """A loopback HTTP server on raw sockets: each request (its JSON body parsed) is answered by
    ``reply(conn, request, n)`` (n: the request's number, from 0), which writes any bytes and
    returns whether the connection stays open for the next request."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.requests: list = []
        self.connections = 0
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._srv.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:  # closed
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                size = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:"))
                while len(buf) < size:
                    buf += conn.recv(65536)
                body, buf = buf[:size], buf[size:]
                self.requests.append(json.loads(body))
                if not self.reply(conn, self.requests[-1], len(self.requests) - 1):
                    return
        except OSError:  # the client went away (what the endless replies wait for)
            return
        finally:
            conn.close()

    def __enter__(self) -> "RawNode":
        return self

    def __exit__(self, *exc) -> None:
        self._srv.close()


def result(req: dict, value: str = "0x7a69") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": value}).encode()


def with_length(body: bytes, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}",
            *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(body: bytes, cut: bool = False) -> bytes:
    """``body`` in two chunks (one with an extension, one size in upper-case hex), a trailer;
    ``cut``: only up to the middle of the second chunk."""
    a, b = body[:7], body[7:]
    out = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n"
           + f"{len(a):x};name=value\r\n".encode() + a + b"\r\n"
           + f"{len(b):X}\r\n".encode() + b)
    if cut:
        return out[:-len(b) // 2]
    return out + b"\r\n0\r\nX-Trailer: t\r\n\r\n"


def calls(kind: str, url: str, todo: list, pause: float = 0.0, **kw) -> list:
    """Make the ``(method, params)`` calls one after another on one client of ``kind``, with
    ``pause`` seconds between them: their results (the first failure raises)."""
    kw.setdefault("timeout", 2.0)
    kw.setdefault("retry_seconds", 0.0)
    if kind == "sync":
        rpc = JsonRpc(url, backoff=0.01, **kw)
        try:
            out = []
            for m, p in todo:
                time.sleep(pause if out else 0)
                out.append(rpc.call(m, p))
            return out
        finally:
            rpc.close()
    from dtnsess_cli.chain.aio import AsyncHttp, greenlet_spawn

    async def main() -> list:
        pool = AsyncHttp(url, **kw)
        try:
            out = []
            for m, p in todo:
                await asyncio.sleep(pause if out else 0)
                out.append(await greenlet_spawn(lambda: pool.rpc().call(m, p)))
            return out
        finally:
            await pool.aclose()

    return asyncio.run(main())


CHAIN_ID = [("eth_chainId", [])]


# ------------------------------------------------------------------------------ framings

@pytest.mark.parametrize("kind", CLIENTS)
def test_chunked_replies_keep_the_connection(kind):
    with RawNode(lambda conn, req, n: conn.sendall(chunked(result(req))) or True) as node:
        assert calls(kind, node.url, CHAIN_ID * 3) == ["0x7a69"] * 3
        assert node.connections == 1  # the trailer read: the next reply starts in step


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("framing", ["close-delimited", "Connection: close", "HTTP/1.0"])
def test_replies_that_end_the_connection_are_read_and_not_reused(kind, framing):
    def reply(conn, req, n):
        body = result(req)
        if framing == "close-delimited":  # no length: the body ends with the connection
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
        elif framing == "Connection: close":
            conn.sendall(with_length(body, "Connection: close"))
        else:  # HTTP/1.0 without keep-alive
            conn.sendall(with_length(body).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        return False

    with RawNode(reply) as node:
        assert calls(kind, node.url, CHAIN_ID * 3) == ["0x7a69"] * 3
        assert node.connections == 3


@pytest.mark.parametrize("kind", CLIENTS)
def test_interim_replies_and_an_error_status_with_its_reason(kind):
    def reply(conn, req, n):
        if n == 0:
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + with_length(result(req)))
        else:
            conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
        return True

    with RawNode(reply) as node:
        assert calls(kind, node.url, CHAIN_ID) == ["0x7a69"]
        with pytest.raises(RpcTransportError) as exc:
            calls(kind, node.url, CHAIN_ID)
        assert exc.value.reason == "HTTP 503 Service Unavailable" and exc.value.status == 503


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_send_never_goes_over_a_connection_the_node_has_closed(kind):
    """A node that closes a kept-alive connection while it is idle (its keep-alive timeout,
    shorter than SEND_IDLE_REUSE): the send sees it before writing and takes a fresh one,
    instead of writing into a dead connection and leaving the transaction "maybe sent"."""
    def reply(conn, req, n):
        conn.sendall(with_length(result(req, "0x" + "ab" * 32)))
        return False  # closes, although the reply promised keep-alive

    with RawNode(reply) as node:
        out = calls(kind, node.url, CHAIN_ID + [("eth_sendRawTransaction", ["0x00"])], pause=0.2)
        assert out[1] == "0x" + "ab" * 32 and node.connections == 2


# ------------------------------------------------------------------------------ cut replies

@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_send_whose_reply_is_cut_mid_body_is_maybe_sent(kind, framing):
    """The node had the transaction: never resent here; the send path looks it up by hash."""
    def reply(conn, req, n):
        body = result(req, "0x" + "ab" * 32)
        conn.sendall(with_length(body)[:-len(body) // 2] if framing == "length"
                     else chunked(body, cut=True))
        return False

    with RawNode(reply) as node:
        with pytest.raises(RpcTransportError) as exc:
            calls(kind, node.url, [("eth_sendRawTransaction", ["0x00"])], retry_seconds=5.0)
        e = exc.value
        assert e.reason == "the reply was cut off mid-body"
        assert e.maybe_sent is True and e.attempts == 1 and len(node.requests) == 1


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_read_whose_chunked_reply_is_cut_is_asked_again(kind):
    def reply(conn, req, n):
        conn.sendall(chunked(result(req), cut=n == 0))
        return n > 0

    with RawNode(reply) as node:
        assert calls(kind, node.url, CHAIN_ID, retry_seconds=5.0) == ["0x7a69"]
        assert len(node.requests) == 2


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_dropped_connection_before_any_reply(kind):
    with RawNode(lambda conn, req, n: False) as node:
        with pytest.raises(RpcTransportError) as exc:
            calls(kind, node.url, [("eth_sendRawTransaction", ["0x00"])])
        assert exc.value.reason == "the connection dropped without a reply"
        assert exc.value.maybe_sent is True


# ------------------------------------------------------------------------------ hostile replies

def _endless(first: bytes, more: bytes):
    def reply(conn, req, n):
        conn.sendall(first)
        while True:  # until the client hangs up (the server's socket then fails)
            conn.sendall(more)

    return reply


CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
PAD = b"X-Pad: " + b"a" * 1000 + b"\r\n"
# what the node sends first, then again and again; what the client says
ENDLESS = {
    "header": (b"HTTP/1.1 200 OK\r\n", PAD, "the reply's header is over 64 KiB"),
    "header line": (b"HTTP/1.1 200 OK\r\nX-Pad: ", b"a" * 65536,
                    "the reply's header is over 64 KiB"),
    "chunked body": (CHUNKED, b"10000\r\n" + b"a" * 65536 + b"\r\n", "the reply is over 1 MiB"),
    "one huge chunk": (CHUNKED + b"fffffffff\r\n", b"a" * 65536, "the reply is over 1 MiB"),
    "chunk size line": (CHUNKED + b"1", b"0" * 65536, "the reply's chunk size line is too long"),
    "close-delimited body": (b"HTTP/1.1 200 OK\r\n\r\n", b"a" * 65536,
                             "the reply is over 1 MiB"),
    "trailers": (CHUNKED + b"0\r\n", PAD, "the reply's trailers are over 64 KiB"),
}


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("what", list(ENDLESS))
def test_a_reply_that_never_ends_is_refused_in_bounded_memory(kind, what, monkeypatch):
    """A hostile node streams a header or a body without end: one clear error, not retried,
    after at most the limit's worth of memory (the body limit made 1 MiB here, for speed)."""
    monkeypatch.setattr(http11, "MAX_BODY", 1024 * 1024)
    first, more, reason = ENDLESS[what]
    with RawNode(_endless(first, more)) as node:
        tracemalloc.start()
        try:
            with pytest.raises(RpcTransportError) as exc:
                calls(kind, node.url, CHAIN_ID, retry_seconds=5.0)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    e = exc.value
    assert e.reason == reason and not e.transient and e.attempts == 1 and len(node.requests) == 1
    assert peak < 4 * 1024 * 1024, peak  # the 1 MiB body, or 64 KiB of header, plus buffers


@pytest.mark.parametrize("kind", CLIENTS)
def test_a_content_length_over_the_limit_is_refused_before_reading(kind):
    def reply(conn, req, n):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n{")
        time.sleep(5)  # the body never comes: the client must not wait for it
        return False

    with RawNode(reply) as node:
        t = time.monotonic()
        with pytest.raises(RpcTransportError) as exc:
            calls(kind, node.url, CHAIN_ID, retry_seconds=5.0)
        assert time.monotonic() - t < 2
    assert exc.value.reason == "the reply is over 128 MiB" and not exc.value.transient


# ------------------------------------------------------------------------------ the parser

def test_the_parser_takes_a_reply_byte_by_byte():
    """Every framing split at every byte: the same status, body and connection reuse."""
    body = b'{"jsonrpc":"2.0","id":1,"result":"0x1"}'
    replies = [
        (with_length(body), True),
        (chunked(body), True),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + with_length(body), True),
        (with_length(body).replace(b"\r\n", b"\n"), True),  # bare LF line ends
        (with_length(body, "Connection: keep-alive").replace(b"HTTP/1.1", b"HTTP/1.0"), True),
        (with_length(body, "Connection: close"), False),
        (b"HTTP/1.1 200 OK\r\n\r\n" + body, False),
    ]
    for raw, keep in replies:
        reply = http11.Reply()
        for i in range(len(raw)):
            assert not reply.done
            reply.feed(raw[i:i + 1])
        reply.feed(b"")  # the end of the stream (needed by the close-delimited one)
        assert (reply.status, reply.reason, reply.body, reply.keep_alive) == \
            (200, "OK", body, keep), raw


@pytest.mark.parametrize("raw,reason", [
    (b"", "the connection dropped without a reply"),
    (b"HTTP/1.1 200 OK\r\nContent-", "the reply was cut off in its header"),
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "the reply is not valid HTTP"),
    (b"HTTP/1.1 2x0 OK\r\n\r\n", "the reply is not valid HTTP"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc", "without its line end"),
])
def test_the_parser_names_broken_replies(raw, reason):
    reply = http11.Reply()
    with pytest.raises(http11.HttpError) as exc:
        reply.feed(raw)
        reply.feed(b"")
    assert reason in exc.value.reason and exc.value.transient


def test_requests_carry_no_injected_lines():
    with pytest.raises(ValueError):
        http11.post("/", "node", {"X-Key": "v\r\nX-Evil: 1"}, b"{}")
    assert http11.connect("::1", 8545, {}) == b"CONNECT [::1]:8545 HTTP/1.1\r\nHost: [::1]:8545\r\n\r\n"
    for bad in ("http://127.0.0.1:8545/a b", "http://127.0.0.1:8545/ä"):  # refused up front
        with pytest.raises(RpcTransportError) as exc:
            JsonRpc(bad)
        assert exc.value.reason == "the RPC URL is invalid" and not exc.value.maybe_sent
    # an internationalised host name is sent (and resolved) in its IDNA form
    assert JsonRpc("https://bücher.example/rpc")._authority == "xn--bcher-kva.example"


# ------------------------------------------------------------------------------ proxies

ENVS = [
    {"HTTP_PROXY": "http://p:1"}, {"http_proxy": "http://a:1", "HTTP_PROXY": "http://b:2"},
    {"HTTP_PROXY": "http://b:2", "http_proxy": ""}, {"HTTPS_PROXY": "http://p:1"},
    {"ALL_PROXY": "http://p:1"}, {"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"},
    {"http_proxy": "http://p:1", "REQUEST_METHOD": "GET"},
]
NO_PROXY = [None, "*", "node", ".example.org", "example.org", "NODE.example.org",
            "other, node.example.org", "node:8545", "node.example.org:8545", "xample.org", ""]
URLS = ["http://node:8545", "http://node.example.org:8545/v2/K", "https://Node.Example.org/",
        "http://127.0.0.1:8545", "http://sub.node.example.org"]


def test_proxy_rules_are_urllibs():
    """proxy_for reads the environment as urllib.request does (written out: importing
    urllib.request would import http.client, email and ssl), plus CIDR entries."""
    import urllib.request
    from urllib.parse import urlsplit

    for env in ENVS:
        for no in NO_PROXY:
            full = dict(env) if no is None else dict(env, NO_PROXY=no)
            with mock.patch.dict(os.environ, full, clear=True):
                proxies = urllib.request.getproxies_environment()
                for url in URLS:
                    parts = urlsplit(url)
                    want = proxies.get(parts.scheme) or proxies.get("all")
                    host = parts.hostname if parts.port is None \
                        else f"{parts.hostname}:{parts.port}"
                    if want and urllib.request.proxy_bypass_environment(host, proxies):
                        want = None
                    assert proxy_for(url) == want, (full, url)
                    assert proxy_for(url, full) == want, (full, url)
