"""dtnsess_cli.chain.jsonrpc against Anvil, directly and through a loopback fault server.

Reads (single and batched) ride out each transient fault -- dropped connection, HTTP 5xx/429,
a hang past the timeout, a body cut mid-way, a body that is not JSON, a batch reply missing
entries, a JSON-RPC rate-limit error -- within the retry budget, and give up with one clear
error after it. ``eth_sendRawTransaction`` is sent exactly once whatever happens (the node's
side is checked: one request seen, the transaction mined or not). No message shows the URL's
credentials.

NOTE: the fault server here is a small stand-in with the same fault names as pay-rpc's
tests/faultproxy.py; once that is on main these tests can use it instead.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from dtnsess_cli.chain.abi import ContractAbi, ErrorDecoder
from dtnsess_cli.chain.contract import Contract, read
from dtnsess_cli.chain.errors import RpcResponseError, RpcTransportError
from dtnsess_cli.chain.jsonrpc import JsonRpc
from dtnsess_cli.errors import redact_url
from dtnsess_cli.chain.signing import LocalSigner


# ------------------------------------------------------------------------------ fault server

class FaultServer:
    """Forwards JSON-RPC to ``upstream`` and injects armed faults (the next matching request).

    Kinds: drop_before/after (close, no reply), http_before/after (``status``), hang_before
    (sleep ``hang`` then close), cut_after (half the body), badjson_before/after, short_after
    (a batch reply missing its last entry), ratelimit_before (JSON-RPC error -32005).
    """

    def __init__(self, upstream: str, tls: tuple = ()) -> None:
        self.upstream = upstream
        self.faults: list = []
        self.seen: list = []  # method label per HTTP request
        self.auth: list = []  # Authorization header per request
        self.peers: set = set()  # client (host, port): one per TCP connection
        self.lock = threading.Lock()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                srv._handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls:  # (cert file, key file): serve HTTPS
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def fault(self, method: str, kind: str, *, times: int = 1, status: int = 502,
              hang: float = 3.0) -> None:
        with self.lock:
            self.faults.append({"method": method, "kind": kind, "times": times,
                                "status": status, "hang": hang})

    def _take(self, methods: list):
        with self.lock:
            for f in self.faults:
                if f["times"] > 0 and (f["method"] == "*" or f["method"] in methods):
                    f["times"] -= 1
                    return f
        return None

    def _forward(self, body: bytes) -> bytes:
        u = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request("POST", "/", body, {"Content-Type": "application/json"})
            return conn.getresponse().read()
        finally:
            conn.close()

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        payload = json.loads(body)
        methods = [r["method"] for r in payload] if isinstance(payload, list) else [payload["method"]]
        with self.lock:
            self.seen.append(methods[0] if not isinstance(payload, list) else f"[{','.join(methods)}]")
            self.auth.append(h.headers.get("Authorization"))
            self.peers.add(h.client_address)
        f = self._take(methods)
        kind = f["kind"] if f else "ok"
        if kind == "drop_before":
            h.close_connection = True
            return
        if kind == "hang_before":
            time.sleep(f["hang"])
            h.close_connection = True
            return
        if kind == "http_before":
            return self._reply(h, b"upstream trouble", status=f["status"])
        if kind == "badjson_before":
            return self._reply(h, b"<html>bad gateway</html>")
        if kind == "ratelimit_before":
            err = {"code": -32005, "message": "limit exceeded"}
            rep = [{"jsonrpc": "2.0", "id": r["id"], "error": err} for r in payload] \
                if isinstance(payload, list) else {"jsonrpc": "2.0", "id": payload["id"], "error": err}
            return self._reply(h, json.dumps(rep).encode())
        reply = self._forward(body)  # the node runs the request
        if kind == "drop_after":
            h.close_connection = True
            return
        if kind == "http_after":
            return self._reply(h, b"upstream trouble", status=f["status"])
        if kind == "badjson_after":
            return self._reply(h, reply[: len(reply) // 2] + b"}}garbage")
        if kind == "short_after":
            rep = json.loads(reply)
            return self._reply(h, json.dumps(rep[:-1]).encode())
        if kind == "cut_after":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(reply)))
            h.end_headers()
            h.wfile.write(reply[: len(reply) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        self._reply(h, reply)

    @staticmethod
    def _reply(h, data: bytes, status: int = 200) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(anvil):
    srv = FaultServer(anvil.url)
    try:
        yield srv
    finally:
        srv.close()


def fast_rpc(url: str, **kw) -> JsonRpc:
    kw.setdefault("timeout", 1.0)
    kw.setdefault("retry_seconds", 5.0)
    kw.setdefault("backoff", 0.02)
    return JsonRpc(url, **kw)


def wait_receipt(rpc, h, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = rpc.call("eth_getTransactionReceipt", [h])
        if r is not None:
            return r
        time.sleep(0.05)
    return None


# ------------------------------------------------------------------------------ plain Anvil

def test_call_batch_order_and_round_trips(anvil, accounts):
    rpc = JsonRpc(anvil.url)
    assert int(rpc.call("eth_chainId"), 16) == 31337
    assert rpc.round_trips == 1
    calls = [("eth_getBalance", [a, "latest"]) for a in accounts[:5]] + [("eth_chainId", [])]
    replies = rpc.batch(calls)
    assert rpc.round_trips == 2  # five balances and the chain id: one HTTP request
    assert [int(r["result"], 16) for r in replies[:5]] == \
        [int(rpc.call("eth_getBalance", [a, "latest"]), 16) for a in accounts[:5]]
    assert replies[5]["result"] == "0x7a69"
    assert rpc.batch([]) == []


def test_error_objects_map_to_rpc_response_error(anvil):
    rpc = JsonRpc(anvil.url)
    with pytest.raises(RpcResponseError) as exc:
        rpc.call("no_suchMethod", [])
    assert exc.value.code == -32601 and exc.value.revert_data() is None
    # a per-entry error in a batch stays in its entry; the others are answered
    replies = rpc.batch([("eth_chainId", []), ("no_suchMethod", []), ("eth_blockNumber", [])])
    assert "result" in replies[0] and "error" in replies[1] and "result" in replies[2]


def test_reverts_carry_their_data_and_decode_by_selector(system6, user, stranger):
    """Real reverts from Anvil: custom errors with arguments, ERC-20 errors."""
    from dtnsess_cli.artifacts import all_abis

    rpc = JsonRpc(system6.w3.provider.endpoint_uri)
    mgr = Contract(system6.manager.address, all_abis()["AdvancedSessionManager"])
    tok = Contract(system6.token.address, all_abis()["MockUSDT"])
    dec = ErrorDecoder(all_abis().values())

    def revert_of(call, sender):
        method, params = call.request("latest", sender=sender)
        with pytest.raises(RpcResponseError) as exc:
            rpc.call(method, params)
        data = exc.value.revert_data()
        assert data is not None, exc.value
        return dec.decode(data)

    r = revert_of(mgr.call("createSession", 0), user)
    assert (r.name, r.args) == ("BalanceTooLow", (0, 10 * 10**6))
    r = revert_of(mgr.call("withdrawRefunds"), stranger)
    assert r.name == "NothingToWithdraw"
    r = revert_of(mgr.call("setRequestTimeout", 61), stranger)
    assert r.name == "OwnableUnauthorizedAccount" and r.args == (stranger,)
    r = revert_of(tok.call("transferFrom", user, stranger, 5), stranger)
    assert r.name == "ERC20InsufficientAllowance" and r.args == (stranger, 0, 5)
    assert r.reason == f"ERC20InsufficientAllowance({stranger}, 0, 5)"
    # the same arguments eth_abi decodes (which gives addresses in lower case)
    from eth_abi import decode as eth_decode

    assert r.data[:10] == "0xfb8f41b2"  # ERC20InsufficientAllowance(address,uint256,uint256)
    ref = eth_decode(["address", "uint256", "uint256"], bytes.fromhex(r.data[10:]))
    assert tuple(ref) == (stranger.lower(), 0, 5)


def test_panic_and_unknown_revert_data():
    from dtnsess_cli.chain.abi import PANIC_SELECTOR, encode

    dec = ErrorDecoder()
    p = dec.decode(PANIC_SELECTOR + encode(["uint256"], [0x11]))
    assert (p.name, p.args, p.reason) == ("Panic", (0x11,), "panic 0x11: arithmetic overflow or underflow")
    assert dec.decode("0x").reason == "reverted without a reason"
    u = dec.decode("0xdeadbeef" + "00" * 40)
    assert u.name is None and u.reason.startswith("unknown error (data 0xdeadbeef") and u.reason.endswith("...)")
    assert dec.decode("0x08c379a0" + "ff" * 8).name is None  # Error(string) with broken data


def test_contract_read_batches_calls_and_raises_the_first_revert(system6, user):
    from dtnsess_cli.artifacts import all_abis

    rpc = JsonRpc(system6.w3.provider.endpoint_uri)
    tok = Contract(system6.token.address, all_abis()["MockUSDT"])
    (dec, sym, bal), extra = read(rpc, [tok.call("decimals"), tok.call("symbol"),
                                        tok.call("balanceOf", user)], extra=[("eth_chainId", [])])
    assert (dec, sym) == (6, "USDT") and isinstance(bal, int)
    assert extra[0]["result"] == "0x7a69" and rpc.round_trips == 1
    with pytest.raises(RpcResponseError) as exc:
        read(rpc, [tok.call("decimals"), tok.call("transferFrom", user, user, 1)])
    assert ErrorDecoder(all_abis().values()).decode(exc.value.revert_data()).name == \
        "ERC20InsufficientAllowance"


# ------------------------------------------------------------------------------ keep-alive

def test_one_tcp_connection_for_many_requests(proxy):
    rpc = JsonRpc(proxy.url)
    for _ in range(5):
        rpc.call("eth_chainId")
    rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])])
    assert len(proxy.peers) == 1 and rpc.round_trips == 6


# ------------------------------------------------------------------------------ read retries

READ_FAULTS = ["drop_before", "drop_after", "http_before", "http_after", "badjson_before",
               "badjson_after", "cut_after", "ratelimit_before", "hang_before"]


@pytest.mark.parametrize("kind", READ_FAULTS + ["http_429"])
@pytest.mark.parametrize("batched", [False, True], ids=["single", "batch"])
def test_reads_ride_out_one_transient_fault(proxy, kind, batched):
    status = 502
    if kind == "http_429":
        kind, status = "http_before", 429
    proxy.fault("eth_chainId", kind, status=status, hang=1.5)
    rpc = fast_rpc(proxy.url, timeout=0.5)
    if batched:
        replies = rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])])
        assert replies[0]["result"] == "0x7a69" and "result" in replies[1]
    else:
        assert rpc.call("eth_chainId") == "0x7a69"
    assert rpc.round_trips == 2 and rpc.retries == 1
    assert len(proxy.seen) == 2


def test_batch_reply_missing_entries_is_retried(proxy):
    proxy.fault("eth_blockNumber", "short_after")
    rpc = fast_rpc(proxy.url)
    replies = rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])])
    assert len(replies) == 2 and rpc.round_trips == 2


@pytest.mark.parametrize("kind", ["drop_before", "http_before", "badjson_before", "hang_before"])
def test_persistent_faults_give_up_within_the_budget(proxy, kind):
    proxy.fault("*", kind, times=10**6, hang=0.6)
    rpc = fast_rpc(proxy.url, timeout=0.3, retry_seconds=1.0)
    t = time.monotonic()
    with pytest.raises(RpcTransportError) as exc:
        rpc.call("eth_blockNumber")
    took = time.monotonic() - t
    # the first attempt's timeout + the budget + the last attempt (at least 1 s when retrying)
    assert took < 0.3 + 1.0 + 1.0 + 0.5
    e = exc.value
    assert e.transient and e.attempts >= 2 and rpc.round_trips == e.attempts
    assert str(e).startswith("eth_blockNumber: ") and proxy.url in str(e)
    assert "Traceback" not in str(e) and "Error" not in e.reason  # words, not library text


def test_no_retries_with_a_zero_budget(proxy):
    proxy.fault("*", "http_before", times=10)
    rpc = fast_rpc(proxy.url, retry_seconds=0)
    with pytest.raises(RpcTransportError) as exc:
        rpc.call("eth_chainId")
    assert exc.value.attempts == 1 and len(proxy.seen) == 1 and exc.value.status == 502


def test_backoff_grows_with_jitter_and_is_capped(proxy):
    proxy.fault("*", "http_before", times=7)
    pauses = []
    rpc = JsonRpc(proxy.url, timeout=1, retry_seconds=60, backoff=0.1, max_backoff=0.8,
                  sleep=pauses.append, jitter=lambda: 1.0)
    assert rpc.call("eth_chainId") == "0x7a69"
    assert pauses == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.8, 0.8, 0.8])
    pauses.clear()
    proxy.fault("*", "http_before", times=2)
    JsonRpc(proxy.url, backoff=0.1, sleep=pauses.append, jitter=lambda: 0.0).call("eth_chainId")
    assert pauses == pytest.approx([0.05, 0.1])  # jitter takes up to half off


def test_http_401_is_not_retried_and_says_what_to_check(proxy):
    proxy.fault("*", "http_before", status=401, times=5)
    rpc = fast_rpc(proxy.url)
    with pytest.raises(RpcTransportError) as exc:
        rpc.call("eth_chainId")
    assert not exc.value.transient and exc.value.attempts == 1
    assert "HTTP 401" in str(exc.value) and "API key" in str(exc.value)


def test_refused_connection_is_retried_then_reported_as_not_sent(anvil):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rpc = fast_rpc(f"http://127.0.0.1:{port}", retry_seconds=0.3)
    with pytest.raises(RpcTransportError) as exc:
        rpc.call("eth_chainId")
    assert "connection refused" in exc.value.reason and exc.value.attempts >= 2
    assert exc.value.maybe_sent is False
    with pytest.raises(RpcTransportError) as exc:
        rpc.call("eth_sendRawTransaction", ["0x00"])
    assert exc.value.attempts == 1 and exc.value.maybe_sent is False


# ------------------------------------------------------------------------------ sends: never twice

def _signed_transfer(rpc, key, to, value=777):
    s = LocalSigner(key)
    nonce = int(rpc.call("eth_getTransactionCount", [s.address, "pending"]), 16)
    base = int(rpc.call("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
    signed = s.sign_transaction({"to": to, "value": value, "nonce": nonce, "gas": 21000,
                                 "chainId": 31337, "maxPriorityFeePerGas": 10**9,
                                 "maxFeePerGas": 2 * base + 10**9})
    return s, nonce, signed


@pytest.mark.parametrize("kind,mined", [
    ("drop_before", False), ("http_before", False), ("badjson_before", False),
    ("hang_before", False), ("drop_after", True), ("http_after", True), ("cut_after", True),
    ("badjson_after", True), ("ratelimit_before", False),
])
def test_send_raw_transaction_is_never_retried(anvil, proxy, private_keys, accounts, kind, mined):
    direct = JsonRpc(anvil.url)
    s, nonce, signed = _signed_transfer(direct, private_keys[7], accounts[8])
    proxy.fault("eth_sendRawTransaction", kind, hang=1.0)
    rpc = fast_rpc(proxy.url, timeout=0.5)
    raw = "0x" + signed.raw_transaction.hex()
    with pytest.raises((RpcTransportError, RpcResponseError)) as exc:
        rpc.call("eth_sendRawTransaction", [raw])
    if isinstance(exc.value, RpcTransportError):
        assert exc.value.attempts == 1 and exc.value.maybe_sent is True
    assert proxy.seen == ["eth_sendRawTransaction"] and rpc.round_trips == 1
    h = "0x" + signed.hash.hex()
    if mined:
        assert wait_receipt(direct, h, timeout=10)["status"] == "0x1"
        assert int(direct.call("eth_getTransactionCount", [s.address, "latest"]), 16) == nonce + 1
    else:
        time.sleep(0.2)
        assert direct.call("eth_getTransactionByHash", [h]) is None


def test_a_batch_holding_a_send_is_not_retried(anvil, proxy, private_keys, accounts):
    direct = JsonRpc(anvil.url)
    _, _, signed = _signed_transfer(direct, private_keys[7], accounts[8])
    proxy.fault("eth_sendRawTransaction", "drop_after")
    rpc = fast_rpc(proxy.url)
    with pytest.raises(RpcTransportError):
        rpc.batch([("eth_chainId", []),
                   ("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])])
    assert len(proxy.seen) == 1
    assert wait_receipt(direct, "0x" + signed.hash.hex(), timeout=10) is not None


def test_a_send_after_an_idle_pause_uses_a_fresh_connection(proxy, anvil, private_keys, accounts, monkeypatch):
    """A kept-alive connection the server may have closed is not trusted with a send."""
    from dtnsess_cli.chain import jsonrpc

    monkeypatch.setattr(jsonrpc, "SEND_IDLE_REUSE", 0.05)
    rpc = JsonRpc(proxy.url)
    direct = JsonRpc(anvil.url)
    _, _, signed = _signed_transfer(direct, private_keys[7], accounts[8])
    rpc.call("eth_chainId")
    time.sleep(0.1)
    rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
    assert len(proxy.peers) == 2


# ------------------------------------------------------------------------------ secrets

SECRET_URLS = [
    ("https://user:s3cretpass@rpc.example.com/", ["s3cretpass", "user:"]),
    ("https://eth-mainnet.g.alchemy.com/v2/AbCdEfGh12345678ZyXwVu", ["AbCdEfGh12345678ZyXwVu"]),
    ("https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef", ["0123456789abcdef"]),
    ("https://rpc.ankr.com/eth/f00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeed", ["f00dfeed"]),
    ("https://x.quiknode.pro/7a8b9c0d1e2f3a4b5c6d/", ["7a8b9c0d1e2f3a4b5c6d"]),
    ("https://rpc.example.com/?apikey=TOPSECRETKEY#frag", ["TOPSECRETKEY", "frag"]),
]


@pytest.mark.parametrize("url,secrets", SECRET_URLS)
def test_redact_url_hides_credentials(url, secrets):
    shown = redact_url(url)
    for s in secrets:
        assert s not in shown
    assert urlsplit(shown).hostname == urlsplit(url).hostname


def test_plain_urls_stay_readable():
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert redact_url("https://sepolia.base.org/rpc") == "https://sepolia.base.org/rpc"


def test_errors_never_show_url_credentials_and_basic_auth_is_sent(proxy):
    port = urlsplit(proxy.url).port
    url = f"http://alice:pa55word@127.0.0.1:{port}/v2/KEY0123456789abcdefKEY?apikey=QSECRET"
    rpc = fast_rpc(url, retry_seconds=0.2)
    assert rpc.call("eth_chainId") == "0x7a69"
    import base64

    assert proxy.auth[-1] == "Basic " + base64.b64encode(b"alice:pa55word").decode()
    proxy.fault("*", "http_before", times=100)
    with pytest.raises(RpcTransportError) as exc:
        rpc.call("eth_chainId")
    text = f"{exc.value} {exc.value!r} {rpc!r} {rpc.url} {vars(exc.value)}"
    for secret in ("alice", "pa55word", "KEY0123456789abcdefKEY", "QSECRET"):
        assert secret not in text
    assert "127.0.0.1" in text


def test_bad_urls_are_refused_up_front():
    for url in ("ws://127.0.0.1:8545", "127.0.0.1:8545", "http://", "http://h:99999"):
        with pytest.raises(RpcTransportError) as exc:
            JsonRpc(url)
        assert not exc.value.transient


# ------------------------------------------------------------------------------ events

def test_events_of_real_receipts_decode_like_web3(system6, user, worker):
    """Create, request, answer, fail, close: every log of those receipts decodes as web3 does."""
    from dtnsess_cli.artifacts import all_abis
    from dtnsess_cli.chain.abi import EventDecoder
    from helpers import answer, ask, create, fail, fund, next_second, transact

    fund(system6, user)
    sid, r1 = create(system6, user, 50)
    rid, r2 = ask(system6, user, "What is [b]DTN[/b]?")
    r3 = answer(system6, rid, "an [answer]")
    next_second(system6.w3)  # DTN request ids have one-second resolution
    rid2, r4 = ask(system6, user, "again")
    r5 = fail(system6, rid2, "overloaded")
    from helpers import increase_time

    increase_time(system6.w3, 3600)
    r6 = transact(system6.w3, system6.manager.functions.closeSession(sid), user)

    dec = EventDecoder(all_abis().values())
    rpc = JsonRpc(system6.w3.provider.endpoint_uri)
    ref_map = {}
    for entries in all_abis().values():
        for e in entries:
            if e.get("type") == "event":
                ref_map.setdefault(abi_topic(e), []).append(e)
    names = set()
    n_logs = 0
    for rc in (r1, r2, r3, r4, r5, r6):
        raw = rpc.call("eth_getTransactionReceipt", ["0x" + bytes(rc["transactionHash"]).hex()])
        for log, wlog in zip(raw["logs"], rc["logs"]):
            n_logs += 1
            ours = dec.decode_log(log)
            ref = None
            for e in ref_map.get(bytes(wlog["topics"][0]), []):
                try:
                    # web3's public log decoder, one event ABI at a time (raises on a mismatch)
                    ref = system6.w3.eth.contract(abi=[e]).events[e["name"]]().process_log(wlog)
                    break
                except Exception:
                    continue
            assert (ours is None) == (ref is None)
            if ours is None:
                continue
            names.add(ours.name)
            assert ours.name == ref["event"] and ours.address == ref["address"]
            assert ours.log_index == ref["logIndex"] and ours.block_number == ref["blockNumber"]
            assert ours.tx_hash == "0x" + bytes(ref["transactionHash"]).hex()
            assert {k: _plain(v) for k, v in ours.args.items()} == \
                {k: _plain(v) for k, v in dict(ref["args"]).items()}
    # manager, router and token events, with indexed and data fields, strings and bytes
    assert n_logs >= 15
    assert {"SessionCreated", "AIRequestSubmitted", "AIRequestCompleted", "AIRequestFailed",
            "RequestCreated", "SessionClosed", "Transfer"} <= names


def abi_topic(entry):
    from eth_utils import event_abi_to_log_topic

    return event_abi_to_log_topic(entry)


def _plain(v):
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    return v


def test_event_decoder_skips_unknown_and_mismatched_logs():
    from dtnsess_cli.chain.abi import EventDecoder, encode, keccak

    erc20_transfer = {"type": "event", "name": "Transfer", "anonymous": False, "inputs": [
        {"name": "from", "type": "address", "indexed": True},
        {"name": "to", "type": "address", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False}]}
    dec = EventDecoder([[erc20_transfer]])
    topic = keccak("Transfer(address,address,uint256)")
    a, b = "0x" + "00" * 12 + "11" * 20, "0x" + "00" * 12 + "22" * 20
    good = {"address": "0x" + "33" * 20, "topics": ["0x" + topic.hex(), a, b],
            "data": "0x" + encode(["uint256"], [5]).hex(), "logIndex": "0x1", "blockNumber": "0x2"}
    d = dec.decode_log(good)
    assert d.args == {"from": "0x" + "11" * 20, "to": "0x" + "22" * 20, "value": 5}
    assert (d.log_index, d.block_number) == (1, 2)
    # ERC-721 Transfer: same topic, three indexed topics, no data -> not this event
    assert dec.decode_log(dict(good, topics=good["topics"] + [a], data="0x")) is None
    assert dec.decode_log(dict(good, topics=["0x" + "ee" * 32])) is None
    assert dec.decode_log(dict(good, topics=[])) is None
    assert dec.decode_log(dict(good, data="0x1234")) is None  # malformed data: skipped


def test_state_override_and_receipt_format(system6, user, stranger):
    """eth_call with a state override (the balance of an account set for the call only), and a
    raw receipt formatted with web3's types."""
    from dtnsess_cli.artifacts import all_abis
    from dtnsess_cli.chain.abi import encode, keccak
    from dtnsess_cli.chain.contract import format_receipt
    from helpers import fund

    rpc = JsonRpc(system6.w3.provider.endpoint_uri)
    tok = Contract(system6.token.address, all_abis()["MockUSDT"])
    call = tok.call("balanceOf", stranger)
    assert call.decode(rpc.call(*call.request())) == 0
    # OpenZeppelin 5 ERC20: _balances is slot 0 -> balances[a] at keccak(a . 0)
    slot = "0x" + keccak(encode(["address", "uint256"], [stranger, 0])).hex()
    over = {tok.address: {"stateDiff": {slot: "0x" + (12345).to_bytes(32, "big").hex()}}}
    assert call.decode(rpc.call(*call.request(overrides=over))) == 12345
    assert call.decode(rpc.call(*call.request())) == 0  # only for that call

    fund(system6, user, 1, approve=False)
    h = system6.token.functions.transfer(stranger, 7).transact({"from": user})
    system6.w3.eth.wait_for_transaction_receipt(h)
    raw = rpc.call("eth_getTransactionReceipt", ["0x" + bytes(h).hex()])
    got = format_receipt(raw)
    ref = system6.w3.eth.get_transaction_receipt(h)
    for k in ("blockNumber", "gasUsed", "cumulativeGasUsed", "effectiveGasPrice", "status",
              "transactionIndex", "from", "to", "contractAddress"):
        assert got.get(k) == ref.get(k), k
    assert format_receipt(None) is None


# ------------------------------------------------------------------------------ https

@pytest.fixture
def tls_files(tmp_path):
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_https_with_a_trusted_certificate_and_an_untrusted_one(anvil, tls_files):
    import ssl

    srv = FaultServer(anvil.url, tls=tls_files)
    try:
        trusted = ssl.create_default_context(cafile=str(tls_files[0]))
        rpc = JsonRpc(srv.url, ssl_context=trusted)
        assert rpc.call("eth_chainId") == "0x7a69"
        assert rpc.batch([("eth_chainId", []), ("eth_blockNumber", [])])[0]["result"] == "0x7a69"
        assert rpc.round_trips == 2 and len(srv.peers) == 1  # one TLS connection kept alive
        # the system's CAs do not know this certificate: not retried, nothing was sent
        with pytest.raises(RpcTransportError) as exc:
            fast_rpc(srv.url).call("eth_sendRawTransaction", ["0x00"])
        e = exc.value
        assert e.reason == "TLS certificate verification failed" and not e.transient
        assert e.attempts == 1 and e.maybe_sent is False
    finally:
        srv.close()
