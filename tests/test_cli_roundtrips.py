"""Upper bounds on JSON-RPC round trips per command (what a remote node's latency is paid for).

The main flow of bench/rpc.py (balance, create with an approval, request, stats, sessions, close,
cleanup, doctor) runs in process against Anvil (automine: a receipt is ready at the first poll)
with round trips counted by ``cli_helpers.count_round_trips``. A transaction costs two: one
JSON-RPC batch (simulate, estimate, fees, ETH balance, nonce), and the send, answered with the
receipt (eth_sendRawTransactionSync, EIP-7966); three on a node without that method (the
send, then a receipt poll).
"""

from __future__ import annotations

import pytest

from cli_helpers import assert_error, assert_ok, count_round_trips, load_json
from dtnsess_cli.errors import ExitCode
from helpers import answer, fund

# command -> most round trips allowed (bench/RESULTS.md §2 has the sequences)
BOUNDS = {
    "balance": 2,      # [chain id, getConfig, ETH, refunds], [symbol, balanceOf, allowance]
    # connect, [symbol, balanceOf, allowance], [both simulated (the create through a state
    # override of the allowance), estimated, fees, nonce], [both sent], [both receipts]
    "create 50": 5,
    "request hi": 2,   # [connect and the paying session ride in the transaction's batch], the
                       # send answered with its receipt (eth_sendRawTransactionSync)
    "stats 1": 2,      # [chain id, getConfig, getSession], [symbol] (1 once the symbol is known)
    "sessions": 2,     # [chain id, getConfig, getUserSessions], [getSessions, symbol]
    "close 1": 2,      # [chain id, getConfig, getSession ride in the transaction's batch], the
                       # send answered with its receipt
    "cleanup": 1,      # [chain id, getConfig, getIdleSessions] (nothing idle: no transaction)
    "doctor": 2,       # [block, chain id, getConfig, ETH], [symbol, balanceOf, allowance]
}


def trips(rt) -> int:
    """Round trips, not counting receipt polls after the first per transaction (a block that is
    not mined yet at the first poll is the node's timing, not the client's)."""
    def only(m: str, method: str) -> bool:
        return m == method or (m.startswith("batch[") and set(m[6:-1].split(",")) == {method})

    polls = sum(1 for m in rt.methods if only(m, "eth_getTransactionReceipt"))
    sends = sum(1 for m in rt.methods if "eth_sendRawTransaction" in m)
    return rt.posts - max(0, polls - sends)


def before_send(rt) -> int:
    """Round trips before the first send: 1 when what a write checks rides in its transaction's
    batch (the send and the receipt follow, however the node answers them)."""
    return next(i for i, m in enumerate(rt.methods)
                if "eth_sendRawTransaction" in m or "eth_sendTransaction" in m)


SCENARIO = [
    ("balance", ["balance"]),
    ("create 50", ["create", "50", "--yes"]),
    ("request hi", ["request", "hi", "--yes"]),
    ("stats 1", ["stats", "1"]),
    ("sessions", ["sessions"]),
    ("close 1", ["close", "1", "--yes"]),
    ("cleanup", ["cleanup"]),
    ("doctor", ["doctor"]),
]


def test_round_trips_per_command(make_cli, system6, user, monkeypatch):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)  # create approves first: two transactions
    counts = {}
    for label, args in SCENARIO:
        with count_round_trips(monkeypatch) as rt:
            r = cli(*args, "--json")
        assert_ok(r)
        counts[label] = rt
        print(f"{label}: {rt}")
        if label == "request hi":  # a DTN node answers (not counted), so close 1 may close
            answer(system6, bytes.fromhex(load_json(r)["request_id"][2:]))
    assert system6.manager.functions.getSession(1).call()[4] is False  # closed
    over = {k: v for k, v in counts.items() if trips(v) > BOUNDS[k]}
    assert not over, over


def test_a_transaction_is_one_batch_and_a_send_that_answers_with_its_receipt(
        make_cli, system6, user, monkeypatch):
    cli = make_cli(system6)
    fund(system6, user, 100)
    with count_round_trips(monkeypatch) as rt:
        out = load_json(cli("request", "hi", "--yes", "--json"))
    send = rt.methods.index("eth_sendRawTransactionSync")
    batch = rt.methods[send - 1]
    for m in ("eth_call", "eth_estimateGas", "eth_getBlockByNumber", "eth_maxPriorityFeePerGas",
              "eth_getBalance", "eth_getTransactionCount"):
        assert m in batch, rt
    assert rt.methods[send + 1:] == [], rt  # no receipt poll: the send's reply is the receipt
    assert out["request_id"] and system6.manager.functions.getUserRequests(
        user, 0, 10).call()[1] == 1


@pytest.fixture
def no_sync_send(monkeypatch):
    """A node without eth_sendRawTransactionSync: it answers "method not found" (-32601) and
    does nothing. ``asked``: how many times it was asked."""
    from dtnsess_cli.chain.jsonrpc import JsonRpc

    exchange = JsonRpc._exchange
    asked = []

    def lacking(self, payload, label, *, retry, check):
        if isinstance(payload, dict) and payload["method"] == "eth_sendRawTransactionSync":
            asked.append(payload["id"])
            return check({"jsonrpc": "2.0", "id": payload["id"],
                          "error": {"code": -32601, "message": "Method not found"}})
        return exchange(self, payload, label, retry=retry, check=check)

    monkeypatch.setattr(JsonRpc, "_exchange", lacking)
    return asked


def test_a_node_without_the_sync_send_gets_the_plain_one_and_is_remembered(
        make_cli, system6, user, monkeypatch, no_sync_send):
    """The node lacks eth_sendRawTransactionSync: the same signed bytes go out with
    eth_sendRawTransaction at once, and the receipt is polled; the next command, knowing this
    URL lacks it (the state dir's chains.json, with the chain), does not ask again."""
    cli = make_cli(system6)
    fund(system6, user, 100)
    with count_round_trips(monkeypatch) as rt:
        first = load_json(cli("request", "hi", "--yes", "--json"))
    sync = rt.methods.index("eth_sendRawTransactionSync")
    assert rt.methods[sync + 1] == "eth_sendRawTransaction", rt  # at once, the same tx
    assert set(rt.methods[sync + 2:]) == {"eth_getTransactionReceipt"}, rt
    assert first["transactions"][0]["tx_hash"] and len(no_sync_send) == 1
    # remembered: the next command pays no round trip for it
    with count_round_trips(monkeypatch) as rt:
        second = load_json(cli("close", str(first["session_id"]), "--yes", "--json"))
    assert "eth_sendRawTransactionSync" not in rt.methods and len(no_sync_send) == 1, rt
    send = rt.methods.index("eth_sendRawTransaction")
    assert set(rt.methods[send + 1:]) == {"eth_getTransactionReceipt"}, rt
    assert second["transactions"][0]["tx_hash"]
    assert system6.manager.functions.getUserRequests(user, 0, 10).call()[1] == 1  # once


def test_create_with_its_approval_goes_back_to_back(make_cli, system6, user, monkeypatch):
    """Approve and create: one batch simulates both (the create as if the approval were mined:
    a state override of the allowance, read back in the same batch), one batch sends both
    (consecutive nonces), one poll gets both receipts."""
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    # NOTE: the very first command against a URL learns its chain (genesis) for the per-chain
    # sender lock; a write that comes first pays one round trip for it, every later one none
    assert_ok(cli("balance", "--json"))
    with count_round_trips(monkeypatch) as rt:
        out = load_json(cli("create", "50", "--yes", "--json"))
    assert [t["description"].split()[0] for t in out["transactions"]] == ["approve", "create"]
    (sim,) = [m for m in rt.methods if "eth_estimateGas" in m]
    assert sim.count("eth_estimateGas") == 2 and "eth_getTransactionCount" in sim, rt
    assert "batch[eth_sendRawTransaction,eth_sendRawTransaction]" in rt.methods, rt
    assert rt.methods[-1] == "batch[eth_getTransactionReceipt,eth_getTransactionReceipt]", rt
    assert trips(rt) == 5, rt
    assert system6.token.functions.allowance(user, system6.manager.address).call() == 0


def test_an_unknown_allowance_slot_falls_back_to_one_by_one(make_cli, system6, user,
                                                            monkeypatch):
    """When the override does not show in the allowance read back (a token with another storage
    layout), nothing is sent from that batch: approve, then create, as before."""
    from dtnsess_cli.manager import base

    monkeypatch.setattr(base, "ALLOWANCE_SLOTS", (7,))  # not where MockUSDT keeps it
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    with count_round_trips(monkeypatch) as rt:
        out = load_json(cli("create", "50", "--yes", "--json"))
    assert [t["description"].split()[0] for t in out["transactions"]] == ["approve", "create"]
    assert rt.methods.count("eth_sendRawTransactionSync") == 2, rt  # one at a time
    assert out["session_id"] and system6.token.functions.allowance(
        user, system6.manager.address).call() == 0


@pytest.fixture
def no_batches(monkeypatch):
    """A node that refuses JSON-RPC batches (it answers a batch with one error object)."""
    from dtnsess_cli.chain.jsonrpc import JsonRpc

    exchange = JsonRpc._exchange

    def refuse(self, payload, label, *, retry, check):
        if isinstance(payload, list):  # the node's one error object for the whole batch
            return check({"jsonrpc": "2.0", "id": None,
                          "error": {"code": -32600, "message": "batch requests are not supported"}})
        return exchange(self, payload, label, retry=retry, check=check)

    monkeypatch.setattr(JsonRpc, "_exchange", refuse)


def test_a_node_without_batches_gets_the_requests_one_by_one(make_cli, system6, user, no_batches):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    out = load_json(cli("create", "50", "--yes", "--json"))
    assert out["session_id"] == 1 and len(out["transactions"]) == 2
    assert load_json(cli("balance", "--json"))["token"] == "50"
    # a revert is still decoded by selector (ERC20InsufficientBalance -> FUNDS) and nothing sent
    r = cli("create", "60", "--yes")
    assert_error(r, ExitCode.FUNDS, "have 50", "need 60")


def test_reads_take_one_round_trip_once_the_fee_token_is_known(make_cli, system6, user,
                                                               monkeypatch, tmp_path):
    """stats and balance: [chain id, getConfig, the data] in one batch once a run has read the
    token's symbol (remembered per manager); a remembered token that is not the one getConfig()
    names is not used."""
    import json

    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "state"))
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create = load_json(cli("create", "50", "--yes", "--json"))
    sid = str(create["session_id"])
    for args in (["stats", sid], ["balance"]):
        with count_round_trips(monkeypatch) as rt:
            out = load_json(cli(*args, "--json"))
        assert rt.posts == 1, rt
    assert out["token"] == "50" or out["token"].startswith("50")
    # a stale entry (another token) costs the second round trip again, and the right answer
    path = tmp_path / "state" / "tokens.json"
    data = json.loads(path.read_text())
    (key,) = data
    data[key].update(token="0x" + "11" * 20, symbol="WRONG")
    path.write_text(json.dumps(data))
    with count_round_trips(monkeypatch) as rt:
        out = load_json(cli("balance", "--json"))
    assert rt.posts == 2 and "WRONG" not in json.dumps(out), rt


def test_close_reads_its_session_in_its_own_batch(make_cli, system6, user, stranger, monkeypatch,
                                                  tmp_path):
    """With the fee token remembered (any earlier command), `close` is one batch (chain id,
    getConfig, the session, the simulation), the send and the receipt. What the batch reads is
    checked before anything is signed: a stranger's session is refused and nothing is sent; a
    remembered chain that is not the node's (or a session with unanswered requests) takes the
    usual path, and the close still happens once."""
    import json

    from helpers import bal

    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "state"))
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    fund(system6, stranger, 100, approve=False)
    mine = [load_json(cli("create", "20", "--yes", "--json"))["session_id"] for _ in range(2)]
    theirs = load_json(cli("create", "20", "--yes", "--json", role="stranger"))["session_id"]
    before = bal(system6, user)
    with count_round_trips(monkeypatch) as rt:
        out = load_json(cli("close", str(mine[0]), "--yes", "--json"))
    assert before_send(rt) == 1 and trips(rt) <= 3, rt
    assert "eth_chainId" in rt.methods[0] and "eth_call" in rt.methods[0], rt
    assert out["closed"][0]["session_id"] == mine[0] and bal(system6, user) - before == 20 * 10**6
    with count_round_trips(monkeypatch) as rt:
        r = cli("close", str(theirs), "--yes")
    assert_error(r, ExitCode.AUTH, f"session {theirs} belongs to")
    assert not any("eth_sendRawTransaction" in m for m in rt.methods), rt
    with count_round_trips(monkeypatch) as rt:  # --chain-id is checked in the folded batch
        r = cli("close", str(mine[1]), "--yes", env={"DTNSESS_CHAIN_ID": "8453"})
    assert_error(r, ExitCode.CHAIN)
    assert trips(rt) == 1 and not any("eth_sendRawTransaction" in m for m in rt.methods), rt
    path = tmp_path / "state" / "tokens.json"
    data = json.loads(path.read_text())
    for entry in data.values():
        entry["chain"] = 1
    path.write_text(json.dumps(data))
    with count_round_trips(monkeypatch) as rt:
        out = load_json(cli("close", str(mine[1]), "--yes", "--json"))
    assert out["closed"][0]["session_id"] == mine[1], rt
    assert sum("eth_sendRawTransaction" in m for m in rt.methods) == 1, rt
    assert system6.manager.functions.getSession(mine[1]).call()[4] is False


def test_close_with_unanswered_requests_takes_the_usual_path(make_cli, system6, user,
                                                             monkeypatch, tmp_path):
    """A session with a request pending: the folded batch sends nothing; the usual path begins
    the close (exit 7, one transaction: beginClose)."""
    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "state"))
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = load_json(cli("create", "20", "--yes", "--json"))["session_id"]
    assert_ok(cli("request", "hi", "--yes", "--json"))
    with count_round_trips(monkeypatch) as rt:
        r = cli("close", str(sid), "--yes")
    assert r.exit_code == int(ExitCode.REVERTED) and f"session {sid} is closing" in r.stderr
    assert sum("eth_sendRawTransaction" in m for m in rt.methods) == 1, rt  # beginClose only
    assert system6.manager.functions.getSession(sid).call()[4] is True  # still active


def test_request_reads_the_paying_session_in_its_own_batch(make_cli, system6, user, monkeypatch,
                                                           tmp_path):
    """After `create` (or a request) the session the contract will take is remembered: the
    request is one batch (connection, the contract's choice, that session, the simulation), the
    send and the receipt, and that session's DTN balance is still checked before paying. A hint
    that is not the contract's choice sends nothing from that batch: the chosen session is
    read and the request goes there, once."""
    import json

    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "state"))
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    first = load_json(cli("create", "20", "--yes", "--json"))["session_id"]
    with count_round_trips(monkeypatch) as rt:
        out = load_json(cli("request", "hi", "--yes", "--json"))
    assert out["session_id"] == first and before_send(rt) == 1 and trips(rt) <= 3, rt
    assert "eth_chainId" in rt.methods[0] and "eth_estimateGas" in rt.methods[0], rt
    second = load_json(cli("create", "20", "--yes", "--json"))["session_id"]
    path = tmp_path / "state" / "sessions.json"
    hints = json.loads(path.read_text())
    assert list(hints.values()) == [second]
    path.write_text(json.dumps({k: first for k in hints}))  # stale: the newest is `second`
    with count_round_trips(monkeypatch) as rt:
        out = load_json(cli("request", "again", "--yes", "--json"))
    assert out["session_id"] == second and before_send(rt) == 2, rt
    assert sum("eth_sendRawTransaction" in m for m in rt.methods) == 1, rt
    assert list(json.loads(path.read_text()).values()) == [second]


def test_folded_dry_runs_send_nothing(make_cli, system6, user, monkeypatch, tmp_path):
    """--dry-run through the folded batch: simulated with the cost shown, nothing signed."""
    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "state"))
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = load_json(cli("create", "20", "--yes", "--json"))["session_id"]
    for args in (["close", str(sid)], ["request", "hi"]):
        with count_round_trips(monkeypatch) as rt:
            out = load_json(cli(*args, "--dry-run", "--json"))
        assert out["dry_run"] is True and out["transactions"][0]["gas_estimate"], (args, out)
        assert trips(rt) == 1 and not any("eth_sendRawTransaction" in m for m in rt.methods), rt
    assert "DTN fee" in out["transactions"][0]["description"]
    assert system6.manager.functions.getSession(sid).call()[4] is True


def test_a_clients_later_requests_are_one_batch_and_the_send(anvil, w3, system6, private_keys,
                                                             user, tmp_path, monkeypatch):
    """A long-lived client (a backend's): after its first request, a make_ai_request is one
    batch (the contract's choice of session and the hinted session ride in the transaction's)
    and the send, as the CLI's. A new session, which the contract then chooses, pays the next
    request (the hint is checked in the batch: nothing is sent on a stale one)."""
    from dtnsess_cli import Client, signer_from_key
    from helpers import fund

    fund(system6, user, 100, approve=False)
    client = Client(anvil.url, system6.manager.address, signer=signer_from_key(private_keys[1]),
                    state_dir=tmp_path)
    sid = client.create_session("20").session_id
    assert client.make_ai_request("first").session_id == sid
    for i in range(2):  # paced: the second waits a second after the first (DTN's rule)
        with count_round_trips(monkeypatch) as rt:
            r = client.make_ai_request(f"again {i}")
        assert r.session_id == sid and r.request_id
        assert before_send(rt) == 1 and trips(rt) == 2, rt.methods
    newer = client.create_session("20").session_id  # the contract now takes the newest
    with count_round_trips(monkeypatch) as rt:
        r = client.make_ai_request("on the newer one")
    assert r.session_id == newer != sid, rt.methods
    assert sum("eth_sendRawTransaction" in m for m in rt.methods) == 1


def test_a_connected_clients_close_reads_its_session_in_its_own_batch(
        anvil, system6, private_keys, user, tmp_path, monkeypatch):
    """A long-lived client's close_session after it is connected: the session is read and
    checked in the close's own batch (one batch and the send), as a first command's is."""
    from dtnsess_cli import Client, signer_from_key
    from helpers import fund

    fund(system6, user, 100, approve=False)
    client = Client(anvil.url, system6.manager.address, signer=signer_from_key(private_keys[1]),
                    state_dir=tmp_path)
    sid = client.create_session("20").session_id  # connected from here on
    with count_round_trips(monkeypatch) as rt:
        r = client.close_session(sid)
    assert [c["session_id"] for c in r.data["closed"]] == [sid]
    assert before_send(rt) == 1 and trips(rt) == 2, rt.methods
