"""The client as a library a dApp backend embeds (issue 18), against Anvil: one Client shared
by threads, exact amounts only, doctor() at any point, requests paced per session, HTTP(S)
proxies and NO_PROXY honoured, and the devnet and compiler asking for their extras."""

from __future__ import annotations

import http.client
import inspect
import http.server
import socketserver
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dtnsess_cli import Client, InputError
from dtnsess_cli.chain.jsonrpc import proxy_for
from dtnsess_cli.units import FLOAT_REFUSED
from helpers import bal, chain_of, fund

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("conserved")


def nonce(w3, address: str) -> int:
    return w3.eth.get_transaction_count(address, "pending")


def journal_rows(state: Path) -> list:
    db = sqlite3.connect(str(state / "journal.sqlite3"))
    try:
        return db.execute("SELECT nonce, status, description FROM txs ORDER BY nonce").fetchall()
    finally:
        db.close()


# ------------------------------------------------------------------------------- threads


@pytest.mark.parametrize("keep_state", [True, False], ids=["journal", "state_dir=False"])
def test_one_client_shared_by_threads(anvil, w3, system6, private_keys, user, tmp_path,
                                      keep_state):
    """Six threads share one Client: each reads, opens a session and makes a request on it.
    Every transaction is journaled, nonces never clash (also without a state directory, where
    no file lock exists), nothing fails."""
    s = system6
    fund(s, user, 1000, approve=False)
    state = tmp_path / "state"
    client = Client(anvil.url, s.manager.address, signer=private_keys_signer(private_keys[1]),
                    state_dir=state if keep_state else False)
    client.approve("100")  # one approval up front: the threads' creates need none
    start_nonce = nonce(w3, user)
    start = bal(s, user)

    def job(i: int) -> tuple:
        b = client.balances()
        assert b.address == user
        sid = client.create_session("10").session_id
        assert client.session(sid).active
        rid = client.make_ai_request(f"question {i}", session_id=sid).request_id
        assert client.response(rid).status == "pending"
        return sid, rid

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(job, range(6)))
    client.close()
    sids = {sid for sid, _ in results}
    rids = {rid for _, rid in results}
    assert len(sids) == 6 and len(rids) == 6
    assert bal(s, user) == start - 60 * s.unit
    sent = nonce(w3, user) - start_nonce
    assert sent == 12  # 6 creates + 6 requests, nonces in sequence
    if not keep_state:
        return
    rows = [r for r in journal_rows(state) if r[0] >= start_nonce]
    assert [r[0] for r in rows] == list(range(start_nonce, start_nonce + 12))
    assert {r[1] for r in rows} == {"mined"}


def private_keys_signer(key: str):
    from dtnsess_cli import signer_from_key

    return signer_from_key(key)


def test_threads_read_while_one_writes(anvil, system6, private_keys, user, tmp_path):
    """Reads from four threads while a fifth writes: each thread its own connection."""
    s = system6
    fund(s, user, 100, approve=False)
    client = Client(anvil.url, s.manager.address, signer=private_keys_signer(private_keys[1]),
                    state_dir=tmp_path)
    stop = threading.Event()
    errors: list = []

    def reader() -> None:
        while not stop.is_set():
            try:
                client.config()
                client.sessions()
                client.doctor()
            except Exception as exc:  # noqa: BLE001 - the test reports any failure
                import traceback
                errors.append("".join(traceback.format_exception(exc)))
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        sid = client.create_session("20").session_id
        client.close_session(sid)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[0]
    client.close()


def test_a_held_sender_lock_is_waited_for_then_refused(anvil, w3, system6, private_keys, user,
                                                       tmp_path, monkeypatch, caplog):
    """Another process holds the key's sender lock: the write says once that it waits, polls
    (through the one sleep hook), and after SENDER_LOCK_WAIT raises LockedError, nothing sent."""
    import logging

    from dtnsess_cli import LockedError
    from dtnsess_cli.chain.journal import sender_lock
    from dtnsess_cli.manager import writes

    fund(system6, user, 100)
    monkeypatch.setattr(writes, "SENDER_LOCK_WAIT", 0.4)
    other = sender_lock(user, tmp_path, chain_of(w3))
    other.acquire()
    client = Client(anvil.url, system6.manager.address,
                    signer=private_keys_signer(private_keys[1]), state_dir=tmp_path)
    before = nonce(w3, user)
    try:
        with caplog.at_level(logging.INFO, logger="dtnsess"):
            with pytest.raises(LockedError):
                client.create_session("20")
    finally:
        other.release()
    assert nonce(w3, user) == before
    assert [r.getMessage() for r in caplog.records].count(
        f"waiting for another dtnsess process sending from {user}") == 1
    assert client.create_session("20").session_id  # free again: it goes through


# ------------------------------------------------------------------------- exact amounts


@pytest.mark.parametrize("call", [
    lambda c: c.create_session(20.5),
    lambda c: c.create_session(20.0),
    lambda c: c.approve(0.1 + 10.2),
    lambda c: c.renew_session(1, 5.5),
    lambda c: c.make_ai_request("hi", value=3e5),
    lambda c: c.create_session(True),
])
def test_floats_are_refused_before_anything_is_sent(anvil, w3, system6, private_keys, user,
                                                    tmp_path, call):
    fund(system6, user, 100, approve=False)
    client = Client(anvil.url, system6.manager.address,
                    signer=private_keys_signer(private_keys[1]), state_dir=tmp_path)
    before = nonce(w3, user)
    with pytest.raises(InputError) as info:
        call(client)
    if "True" not in info.value.message:
        assert FLOAT_REFUSED in info.value.message
    assert info.value.exit_code == 4
    assert nonce(w3, user) == before


def test_exact_amounts_str_decimal_and_int_base_units(anvil, system6, private_keys, user,
                                                      tmp_path):
    s = system6
    fund(s, user, 100, approve=False)
    client = Client(anvil.url, s.manager.address, signer=private_keys_signer(private_keys[1]),
                    state_dir=tmp_path)
    start = bal(s, user)
    a = client.create_session("10.5").session_id
    b = client.create_session(Decimal("11.25")).session_id
    c = client.create_session(12 * s.unit + 1).session_id  # an int is base units
    assert [client.session(x).balance.units for x in (a, b, c)] == \
        [10_500_000, 11_250_000, 12_000_001]
    assert bal(s, user) == start - 33_750_001
    client.renew_session(a, client.session(a).balance)  # an Amount of this token
    assert client.session(a).balance.units == 21_000_000
    with pytest.raises(InputError, match="more than 6 fractional digits"):
        client.create_session(Decimal("10.0000001"))
    with pytest.raises(InputError, match="negative"):
        client.create_session(-5)


# ------------------------------------------------------------------------------- doctor


def test_doctor_at_any_point(anvil, system6, private_keys, user, tmp_path):
    """doctor() before and after other calls (it used to raise IndexError after a read)."""
    fund(system6, user, 100, approve=False)
    client = Client(anvil.url, system6.manager.address,
                    signer=private_keys_signer(private_keys[1]), state_dir=tmp_path)
    first = client.doctor()
    client.balances()
    again = client.doctor()
    client.create_session("10")
    third = client.doctor()
    for checks in (first, again, third):
        by = {c.name: c for c in checks}
        assert by["contract"].ok and by["chain id"].ok and by["fee token"].ok, checks
    assert [c.name for c in first] == [c.name for c in again] == [c.name for c in third]


# ------------------------------------------------------------------------------- pacing


def test_requests_in_a_row_on_one_session_pace_themselves(anvil, w3, system6, private_keys,
                                                          user, tmp_path):
    """DTN takes one request per session and second: three in a row all land, in three
    different seconds, nothing reverts on chain."""
    fund(system6, user, 100, approve=False)
    client = Client(anvil.url, system6.manager.address,
                    signer=private_keys_signer(private_keys[1]), state_dir=tmp_path)
    sid = client.create_session("20").session_id
    before = nonce(w3, user)
    results = [client.make_ai_request(f"q{i}", session_id=sid) for i in range(3)]
    assert len({r.request_id for r in results}) == 3
    assert nonce(w3, user) == before + 3  # no reverted attempt in between
    stamps = [w3.eth.get_block(r.txs[0].block_number)["timestamp"] for r in results]
    assert len(set(stamps)) == 3, stamps
    # the session chosen by the contract (no session_id) is paced the same way
    more = [client.make_ai_request(f"r{i}") for i in range(2)]
    assert {r.session_id for r in more} == {sid}
    assert len({r.request_id for r in more}) == 2


# -------------------------------------------------------------------------------- proxies


class _ForwardProxy(http.server.BaseHTTPRequestHandler):
    """A minimal HTTP forward proxy (absolute-form POST), counting what it forwards."""

    seen: list = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append((self.path, self.headers.get("Proxy-Authorization")))
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        conn.request("POST", target.path or "/", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def forward_proxy():
    _ForwardProxy.seen = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ForwardProxy)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _ForwardProxy.seen
    finally:
        server.shutdown()
        server.server_close()


def test_proxy_for_follows_the_environment_rules():
    url = "https://rpc.example.org/v2/KEY"
    assert proxy_for(url, {}) is None
    assert proxy_for(url, {"HTTPS_PROXY": "http://p:3128"}) == "http://p:3128"
    assert proxy_for(url, {"HTTP_PROXY": "http://p:3128"}) is None  # https has its own
    assert proxy_for("http://node:8545", {"http_proxy": "http://a:1",
                                          "HTTP_PROXY": "http://b:2"}) == "http://a:1"
    assert proxy_for(url, {"ALL_PROXY": "http://p:1"}) == "http://p:1"
    for no in ("rpc.example.org", ".example.org", "example.org", "*", "other,rpc.example.org"):
        assert proxy_for(url, {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": no}) is None, no
    assert proxy_for(url, {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "other.org"})


def test_no_proxy_cidr_entries_match_ip_hosts():
    """NO_PROXY=10.0.0.0/8 exempts an IP host in that network, as curl and requests do (urllib's
    rule alone compared it as a name and sent it to the proxy)."""
    env = {"HTTP_PROXY": "http://p:3128"}
    for no, url in (("10.0.0.0/8", "http://10.1.2.3:8545"),
                    ("127.0.0.0/8", "http://127.0.0.1:8545"),
                    ("other.org, 192.168.0.0/16", "http://192.168.7.9/rpc"),
                    ("::1/128", "http://[::1]:8545")):
        assert proxy_for(url, dict(env, NO_PROXY=no)) is None, (no, url)
    for no, url in (("10.0.0.0/8", "http://11.0.0.1:8545"),
                    ("10.0.0.0/8", "http://node.example:8545"),  # names: only the name rules
                    ("not/a-network", "http://10.1.2.3:8545")):
        assert proxy_for(url, dict(env, NO_PROXY=no)) == "http://p:3128", (no, url)


def test_client_goes_through_the_proxy_the_environment_names(anvil, system6, user, monkeypatch,
                                                             forward_proxy):
    proxy, seen = forward_proxy
    with monkeypatch.context() as mp:
        for name in ("NO_PROXY", "no_proxy", "http_proxy", "all_proxy", "ALL_PROXY"):
            mp.delenv(name, raising=False)
        mp.setenv("HTTP_PROXY", proxy.replace("http://", "http://u:secret@"))
        client = Client(anvil.url, system6.manager.address, address=user, state_dir=False)
        assert client.balances().address == user
        assert seen and all(path.startswith(anvil.url) for path, _ in seen)
        assert seen[0][1] == "Basic dTpzZWNyZXQ="  # the proxy's credentials
        n = len(seen)
        mp.setenv("NO_PROXY", "127.0.0.1")
        direct = Client(anvil.url, system6.manager.address, address=user, state_dir=False)
        assert direct.balances().address == user
        assert len(seen) == n  # NO_PROXY: straight to the node


def test_cli_through_an_unreachable_proxy_says_so(system6, user, make_cli, monkeypatch):
    """A dead proxy is one line naming it (credentials redacted), not a traceback."""
    from cli_helpers import assert_error

    from dtnsess_cli.errors import ExitCode

    cli = make_cli(system6)
    # NOTE: a context: the fixtures' own web3 (requests) honours the variables too
    with monkeypatch.context() as mp:
        for name in ("NO_PROXY", "no_proxy", "http_proxy", "all_proxy", "ALL_PROXY"):
            mp.delenv(name, raising=False)
        mp.setenv("HTTP_PROXY", "http://u:secret@127.0.0.1:9")
        mp.setenv("DTNSESS_RPC_RETRY_SECONDS", "0")
        res = cli("balance", "--user", user)
    assert_error(res, ExitCode.RPC, "through the proxy http://***@127.0.0.1:9",
                 secrets=("secret",))


class _TunnelProxy(socketserver.BaseRequestHandler):
    """A minimal CONNECT proxy: answers ``refuse`` (e.g. "407 ...") or pipes bytes both ways."""

    seen: list = []
    refuse = ""

    def handle(self) -> None:
        import select
        import socket

        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.decode().split("\r\n")
        auth = next((ln.split(":", 1)[1].strip() for ln in lines
                     if ln.lower().startswith("proxy-authorization:")), None)
        type(self).seen.append((lines[0], auth))
        if type(self).refuse:
            self.request.sendall(f"HTTP/1.1 {type(self).refuse}\r\n\r\n".encode())
            return
        host, port = lines[0].split()[1].rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        socks = [self.request, upstream]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 10)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.request else self.request).sendall(data)
        finally:
            upstream.close()


class _TlsNode(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        import json

        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "0x2105"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _serve(server) -> threading.Thread:
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


@contextmanager
def tls_node_behind_a_tunnel(tmp_path):
    """A TLS node (a fresh self-signed certificate for localhost) reachable through a CONNECT
    proxy that asks for credentials: yields (node URL, proxy URL, client SSL context, port);
    _TunnelProxy.seen records what the proxy was asked."""
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    node = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TlsNode)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    node.socket = server_ctx.wrap_socket(node.socket, server_side=True)
    proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TunnelProxy)
    _TunnelProxy.seen, _TunnelProxy.refuse = [], ""
    _serve(node), _serve(proxy)
    port = node.server_address[1]
    try:
        yield (f"https://localhost:{port}/v2/SECRETKEY",
               f"http://u:pw@127.0.0.1:{proxy.server_address[1]}",
               ssl.create_default_context(cafile=str(cert)), port)
    finally:
        for srv in (node, proxy):
            srv.shutdown()
            srv.server_close()


def test_https_goes_through_a_connect_tunnel(tmp_path):
    """https:// through HTTPS_PROXY: CONNECT host:port (with Proxy-Authorization), then TLS to
    the node itself (its certificate checked); a proxy that refuses says so in one line."""
    from dtnsess_cli.chain.errors import RpcTransportError
    from dtnsess_cli.chain.jsonrpc import JsonRpc

    with tls_node_behind_a_tunnel(tmp_path) as (url, via, client_ctx, port):
        rpc = JsonRpc(url, proxy=via, ssl_context=client_ctx, retry_seconds=0)
        assert rpc.call("eth_chainId") == "0x2105"
        (connect, auth), = _TunnelProxy.seen
        assert connect.startswith(f"CONNECT localhost:{port} HTTP/")
        assert auth == "Basic dTpwdw=="  # u:pw, to the proxy only
        rpc.close()
        _TunnelProxy.refuse = "407 Proxy Authentication Required"
        refused = JsonRpc(url, proxy=via, ssl_context=client_ctx, retry_seconds=0)
        with pytest.raises(RpcTransportError) as info:
            refused.call("eth_chainId")
        msg = str(info.value)
        assert "the proxy refused the tunnel: 407 Proxy Authentication Required" in msg, msg
        assert "SECRETKEY" not in msg and "u:pw" not in msg
        assert not info.value.transient


# ------------------------------------------------------------------------------- extras


def _without(module: str, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where ``module`` is not installed."""
    prelude = f"import sys; sys.modules[{module!r}] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL)


def test_devnet_without_its_extra_names_the_extra(tmp_path):
    res = _without("web3", "import sys; sys.argv = ['dtnsess', 'devnet', 'up']\n"
                           "from dtnsess_cli.cli import main; sys.exit(main())")
    assert res.returncode == 3, res.stderr
    lines = res.stderr.strip().splitlines()
    assert "pip install 'dtnsess[devnet]'" in res.stderr and "web3" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_compile_without_its_extra_names_the_extra():
    res = _without("solcx", "import sys; from dtnsess_cli.compile import main; "
                            "sys.exit(main(['--check']))")
    assert res.returncode == 1
    assert res.stderr.strip() == ("compile: needs the compile extra (solcx not installed): "
                                  "pip install 'dtnsess[compile]'")


# ----------------------------------------------------------------------------- transports


def test_ipc_socket_path_is_an_rpc_url(anvil, system6, private_keys, user, tmp_path):
    """Anvil's --ipc socket, by path, for the API and the CLI alike."""
    s = system6
    fund(s, user, 100, approve=False)
    client = Client(anvil.ipc_path, s.manager.address,
                    signer=private_keys_signer(private_keys[1]), state_dir=tmp_path)
    start = bal(s, user)
    sid = client.create_session("12").session_id
    assert client.session(sid).balance.units == 12 * s.unit
    assert bal(s, user) == start - 12 * s.unit
    by = {c.name: c for c in client.doctor()}
    assert by["rpc"].ok and by["contract"].ok, by
    client.close()


def test_an_ipc_path_is_shown_whole(system6, user, tmp_path):
    """An IPC path is no secret-bearing URL: errors name it as it is (it was shown as
    ``/tmp/.../***`` and its segments scrubbed from every message)."""
    from dtnsess_cli import RpcError
    from dtnsess_cli.errors import redact_url

    path = str(tmp_path / "node-2026" / "geth.ipc")
    assert redact_url(path) == path
    client = Client(path, system6.manager.address, address=user, state_dir=False)
    with pytest.raises(RpcError) as info:
        client.config()
    assert path in info.value.message, info.value.message


def test_cli_takes_an_ipc_path(system6, user, make_cli, anvil):
    cli = make_cli(system6)
    out = cli.json("--rpc-url", anvil.ipc_path, "balance", "--user", user)
    assert out["address"] == user


@pytest.mark.parametrize("kind", ["http", "ipc"])
def test_a_web3_provider_as_the_transport(anvil, system6, private_keys, user, tmp_path, kind):
    from web3 import Web3

    s = system6
    fund(s, user, 100, approve=False)
    provider = Web3.HTTPProvider(anvil.url) if kind == "http" else Web3.IPCProvider(anvil.ipc_path)
    client = Client(provider, s.manager.address, signer=private_keys_signer(private_keys[1]),
                    state_dir=tmp_path)
    start = bal(s, user)
    sid = client.create_session("11").session_id
    assert bal(s, user) == start - 11 * s.unit
    assert client.session(sid).active
    assert client.simulating().create_session("10").dry_run
    assert bal(s, user) == start - 11 * s.unit
    by = {c.name: c for c in client.doctor()}
    assert by["rpc"].ok and by["contract"].ok, by
    assert anvil.url not in by["rpc"].detail  # the transport's name, never its URL


def test_the_sync_client_refuses_an_async_provider(anvil, system6, user):
    """web3 8 removed the synchronous LegacyWebSocketProvider; its WebSocketProvider is async,
    AsyncClient's: Client said nothing and failed on a coroutine at the first call."""
    import web3

    from dtnsess_cli import ConfigError

    ws = anvil.url.replace("http://", "ws://")
    for provider in (web3.AsyncHTTPProvider(anvil.url), web3.WebSocketProvider(ws)):
        with pytest.raises(ConfigError, match="async web3 provider, for AsyncClient"):
            Client(provider, system6.manager.address, address=user, state_dir=False)


def test_the_sync_client_takes_web3s_sync_websocket_provider(anvil, system6, user):
    """web3 6's WebsocketProvider, web3 7's LegacyWebSocketProvider (none in web3 8)."""
    import web3

    legacy = getattr(web3, "LegacyWebSocketProvider", None)
    if legacy is None and not inspect.iscoroutinefunction(
            getattr(getattr(web3, "WebsocketProvider", None), "make_request", None)):
        legacy = getattr(web3, "WebsocketProvider", None)  # web3 6's name
    if legacy is None:
        from importlib.metadata import version

        pytest.skip(f"web3 {version('web3')} has no synchronous WebSocket provider")
    client = Client(legacy(anvil.url.replace("http://", "ws://")), system6.manager.address,
                    address=user, state_dir=False)
    assert client.balances().address == user


def test_a_web3_provider_batches_in_one_request(anvil, system6, user):
    """web3 7 and 8 providers take a JSON-RPC batch in one request (make_batch_request); a
    provider with make_request only (web3 6's) gets the entries one by one, same answers."""
    from web3 import Web3

    provider = Web3.HTTPProvider(anvil.url)
    batches, singles = [], []
    real_batch, real_single = provider.make_batch_request, provider.make_request

    def batch(reqs):
        batches.append(len(reqs))
        return real_batch(reqs)

    def single(method, params):
        singles.append(method)
        return real_single(method, params)

    provider.make_batch_request, provider.make_request = batch, single
    client = Client(provider, system6.manager.address, address=user, state_dir=False)
    seen = client.balances()
    assert batches and max(batches) > 1, (batches, singles)
    assert client.rpc.round_trips == len(batches) + len(singles)

    class Web3SixLike:  # make_request only
        def make_request(self, method, params):
            return real_single(method, params)

    old = Client(Web3SixLike(), system6.manager.address, address=user, state_dir=False)
    assert old.balances() == seen
    assert old.rpc.round_trips > client.rpc.round_trips


def test_websocket_urls_are_refused_with_a_way_out(system6):
    from dtnsess_cli import ConfigError

    for url in ("ws://127.0.0.1:8545", "wss://node.example/key"):
        with pytest.raises(ConfigError) as info:
            Client(url, system6.manager.address)
        assert "websocket" in info.value.message and "transport=" in info.value.hint


# ----------------------------------------------------------------------------------- docs


def test_every_public_member_of_client_is_documented():
    import re

    from dtnsess_cli import AsyncClient

    doc = (ROOT / "docs" / "api.md").read_text()
    code = " ".join(re.findall(r"`([^`\n]+)`", doc))  # what the doc shows as code
    missing = [n for n in set(dir(Client)) | set(dir(AsyncClient)) if not n.startswith("_")
               and not re.search(rf"(?<![\w.])(client\.)?{n}\b", code)]
    assert not missing, f"public Client / AsyncClient members not in docs/api.md: {missing}"


def test_documented_parameters_exist():
    """Every `method(param, ...)` docs/api.md shows names parameters the method has (the doc
    once showed request_batch(session_id=...), which does not exist)."""
    import inspect
    import re

    doc = (ROOT / "docs" / "api.md").read_text()
    wrong = []
    for name, params in re.findall(r"`(?:client\.)?(\w+)\(([^`)]*)\)`", doc):
        member = getattr(Client, name, None)
        if not callable(member) or isinstance(member, type):
            continue
        accepted = set(inspect.signature(member).parameters)
        for p in params.split(","):
            p = p.strip().split("=")[0].strip()
            if p and p[0].isidentifier() and p not in ("self",) and p not in accepted:
                wrong.append(f"{name}({p})")
    assert not wrong, f"docs/api.md shows parameters that do not exist: {wrong}"


def test_an_unusable_proxy_setting_is_a_config_error(system6, user, make_cli, monkeypatch):
    from cli_helpers import assert_error

    from dtnsess_cli.errors import ExitCode

    cli = make_cli(system6)
    with monkeypatch.context() as mp:
        for name in ("NO_PROXY", "no_proxy", "http_proxy", "all_proxy", "ALL_PROXY"):
            mp.delenv(name, raising=False)
        mp.setenv("HTTP_PROXY", "socks5://u:secret@127.0.0.1:1080")
        res = cli("balance", "--user", user)
    assert_error(res, ExitCode.CONFIG, "the proxy must be an http", secrets=("secret",))
    assert "socks is not supported" in res.stderr
