"""Reads through a faulty node: each fault once -> success after a retry; a fault that persists ->
exit 5 with one clean line (the host redacted, what failed, no library text) in bounded time.
Writes are never retried by the read layer. Answer waits ride out node trouble.

The faults come from tests/faultproxy.py, a loopback proxy in front of the session's Anvil.
"""

from __future__ import annotations

import time

import pytest

from cli_helpers import (
    Cli,
    answer_later,
    assert_error,
    assert_ok,
    create_via_cli,
    load_json,
    nonce,
)
from dtnsess_cli.errors import ExitCode, RpcError
from faultproxy import FaultProxy
from helpers import fund

# (kind, status) of every fault a read can meet; hang uses DTNSESS_RPC_TIMEOUT below
KINDS = [("drop_before", 502), ("drop_after", 502), ("http_before", 502), ("http_before", 429),
         ("http_after", 500), ("hang_before", 502), ("cut_after", 502), ("badjson_before", 502),
         ("badjson_after", 502)]
LIBRARY_WORDS = ("JSONDecodeError", "ChunkedEncodingError", "HTTPError", "ConnectionError",
                 "ReadTimeout", "RemoteDisconnected", "Traceback", "for url", "urllib3")


@pytest.fixture
def proxy(anvil):
    with FaultProxy(anvil.url) as p:
        yield p


@pytest.fixture
def pcli(make_cli, system6, proxy, private_keys, monkeypatch):
    """A Cli whose RPC URL is the fault proxy; reads retry for up to 8 s, 1 s per attempt."""
    make_cli(system6)  # isolates the environment
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "8")
    monkeypatch.setenv("DTNSESS_RPC_TIMEOUT", "1")
    return Cli(system6, private_keys, monkeypatch, proxy.url)


def _rpc(url, retry_for=8.0, timeout=1.0):
    from dtnsess_cli.rpc import connect

    return connect(url, retry_for=retry_for, timeout=timeout)


@pytest.mark.parametrize("kind,status", KINDS)
def test_a_single_read_succeeds_after_one_fault(anvil, proxy, kind, status):
    rpc = _rpc(proxy.url)
    proxy.fault("eth_blockNumber", kind, status=status, hang=5.0)
    assert int(rpc.call("eth_blockNumber"), 16) >= 0
    assert proxy.fired == [("eth_blockNumber", kind)]
    assert proxy.seen.count("eth_blockNumber") == 2  # the fault, then the retry


@pytest.mark.parametrize("kind,status", KINDS)
def test_a_batch_succeeds_after_one_fault(anvil, proxy, kind, status):
    rpc = _rpc(proxy.url)
    proxy.fault("eth_getBalance", kind, status=status, hang=5.0)
    resps = rpc.batch([("eth_blockNumber", []), ("eth_getBalance", ["0x" + "11" * 20, "latest"])])
    assert len(resps) == 2 and all("result" in r for r in resps)
    assert proxy.fired and proxy.fired[0][1] == kind
    assert sum(1 for s in proxy.seen if s.startswith("[")) == 2


@pytest.mark.parametrize("kind,status", KINDS)
def test_cli_reads_ride_out_one_fault(pcli, proxy, system6, user, kind, status):
    """`balance` is two JSON-RPC batches; the first one meets the fault."""
    proxy.fault("eth_chainId", kind, status=status, hang=5.0)
    r = pcli("balance", "--json")
    assert_ok(r)
    assert load_json(r)["address"] == user
    assert proxy.fired == [("eth_chainId", kind)]


def test_cli_single_request_rides_out_a_fault(pcli, proxy, system6, user):
    """eth_gasPrice (cleanup --max-gas-price) is a plain request, not a batch."""
    proxy.fault("eth_gasPrice", "http_before", status=503)
    assert_ok(pcli("cleanup", "--max-gas-price", "1000"))
    assert proxy.fired == [("eth_gasPrice", "http_before")]


@pytest.mark.parametrize("kind,status,words", [
    ("http_before", 503, "HTTP 503"),
    ("http_before", 429, "rate limited"),
    ("badjson_before", 502, "not JSON"),
    ("cut_after", 502, "cut off"),
    ("drop_before", 502, "connection dropped"),
    ("hang_before", 502, "timed out"),
])
def test_a_persistent_fault_is_one_clean_line_in_bounded_time(pcli, proxy, monkeypatch, kind,
                                                              status, words):
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "2")
    proxy.fault("*", kind, times=1000, status=status, hang=5.0)
    started = time.monotonic()
    r = pcli("balance")
    took = time.monotonic() - started
    line = assert_error(r, ExitCode.RPC, "RPC node at http://127.0.0.1:", words)
    assert took < 2 + 1 + 2, took  # the budget, one clipped attempt, start-up
    for word in LIBRARY_WORDS:
        assert word not in r.output, r.output
    if kind != "hang_before":
        assert "attempts" in line  # it did retry


def test_a_persistent_fault_with_json_gives_one_document(pcli, proxy, monkeypatch):
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "1")
    proxy.fault("*", "http_before", times=1000, status=502)
    r = pcli("stats", "1", "--json")
    assert r.exit_code == int(ExitCode.RPC)
    doc = load_json(r)
    assert doc["error"] is True and doc["code"] == 5 and doc["name"] == "RPC"
    assert "HTTP 502" in doc["message"] and doc["hint"]
    assert r.stderr.count("error:") == 1


def test_zero_retry_seconds_means_one_attempt(pcli, proxy, monkeypatch):
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "0")
    proxy.fault("eth_chainId", "http_before", status=502)
    assert_error(pcli("balance"), ExitCode.RPC, "HTTP 502")
    assert len(proxy.seen) == 1


def test_bad_retry_setting_is_a_config_error(pcli, monkeypatch):
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "soon")
    assert_error(pcli("balance"), ExitCode.CONFIG, "DTNSESS_RPC_RETRY_SECONDS")


def test_a_401_is_not_retried(pcli, proxy):
    proxy.fault("*", "http_before", times=1000, status=401)
    started = time.monotonic()
    assert_error(pcli("balance"), ExitCode.RPC, "HTTP 401", "API key")
    assert len(proxy.seen) == 1 and time.monotonic() - started < 5


@pytest.mark.parametrize("method", ["eth_sendRawTransaction", "eth_sendRawTransactionSync"])
@pytest.mark.parametrize("kind", ["http_before", "drop_before", "badjson_after"])
def test_a_send_is_never_retried_by_the_read_layer(anvil, proxy, w3, private_keys, accounts, kind,
                                                   method):
    """A send goes out once; what happened to it is the sender's business."""
    from eth_account import Account

    acct = Account.from_key(private_keys[5])
    raw = acct.sign_transaction({
        "to": accounts[6], "value": 1, "gas": 21000, "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 10**9, "nonce": w3.eth.get_transaction_count(acct.address),
        "chainId": 31337, "type": 2}).raw_transaction
    from dtnsess_cli.chain.errors import RpcTransportError

    rpc = _rpc(proxy.url)
    proxy.fault(method, kind)
    with pytest.raises(RpcTransportError) as info:  # left as it is for the sending side
        rpc.call(method, ["0x" + raw.hex()])
    assert info.value.attempts == 1
    assert proxy.seen.count(method) == 1


def test_request_wait_rides_out_node_trouble(pcli, proxy, system6, user, monkeypatch):
    """A 502 storm while `request --wait` polls (longer than the read retries) does not abort a
    request that was made: the answer still arrives."""
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "0.5")
    fund(system6, user, 100, approve=False)
    create_via_cli(pcli, "20")
    before = system6.manager.functions.getUserRequests(user, 0, 0).call()[1]
    import threading

    def node():  # answers once the request is mined, during the storm
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ids, total = system6.manager.functions.getUserRequests(user, 0, 100).call()
            if total > before:
                proxy.fault("eth_getLogs", "http_before", times=4, status=502)
                proxy.fault("eth_blockNumber", "drop_before", times=2)
                answer_later(system6, bytes(ids[-1]), delay=1.5, text="survived").join(10)
                return
            time.sleep(0.05)

    t = threading.Thread(target=node, daemon=True)
    t.start()
    r = pcli("request", "are you there", "--wait", "--timeout", "30", "--json", "--yes")
    t.join(25)
    assert_ok(r)
    out = load_json(r)
    assert out["response"]["status"] == "succeeded" and out["response"]["answer"] == "survived"
    assert any(k == "http_before" for _, k in proxy.fired)


def test_request_wait_timeout_after_node_trouble_names_the_request(pcli, proxy, system6, user,
                                                                   monkeypatch):
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "0.5")
    fund(system6, user, 100, approve=False)
    create_via_cli(pcli, "20")
    proxy.fault("eth_getLogs", "http_before", times=1000, status=503)
    proxy.fault("eth_blockNumber", "http_before", times=1000, status=503)
    r = pcli("request", "nobody", "--wait", "--timeout", "2")
    assert r.exit_code == int(ExitCode.TIMEOUT), r.output
    assert "request 0x" in r.stderr and "HTTP 503" in r.stderr
    ids, total = system6.manager.functions.getUserRequests(user, 0, 10).call()
    assert total == 1  # made once, never again
