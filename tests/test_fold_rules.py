"""`request` and `close` in 3 round trips (issue 19, item 4): what they check is read in their
transaction's own batch (``Writes._send(fold=True)``). Every rule of the usual path holds there
too: the per-(chain, key) sender lock and ChainChangedError, the transaction flags (--nonce,
--gas-limit, fees), --unlocked --from, issue 15's routing check, and a lost send reply.

Each command runs after `create` (through the CLI), which leaves what a fold needs in the state
dir: the URL's chain (chains.json), the fee token and router (tokens.json), the session the next
request goes to (sessions.json).
"""

from __future__ import annotations

import json

import pytest

from cli_helpers import count_round_trips, load_json
from helpers import fund, next_second, rpc
from test_base_fees import oracle  # noqa: F401 - a fixture
from test_cli_roundtrips import before_send, trips
from test_faults_send import HASH, env, one_error, open_entries  # noqa: F401 - env is a fixture


# the send of one transaction: the plain method, or the one answered with the receipt
# (EIP-7966) where the client and the node have it
SEND_METHODS = ("eth_sendRawTransaction", "eth_sendRawTransactionSync")


def primed(env, n: int = 1) -> list:
    """``n`` sessions of the user, made with the CLI; the newest is the next request's."""
    fund(env.system, env.user, 100, approve=False)
    sids = [load_json(env.cli("create", "20", "--yes", "--json"))["session_id"]
            for _ in range(n)]
    next_second(env.w3)
    return sids


def folded(rt) -> bool:
    """The command's first round trip carried the connection and the transaction's batch."""
    return "eth_chainId" in rt.methods[0] and "eth_estimateGas" in rt.methods[0]


def in_three(rt) -> bool:
    """Folded and sent: the one batch, the send, the receipt (three round trips; two where the
    node answers the send with its receipt)."""
    return folded(rt) and before_send(rt) == 1 and trips(rt) <= 3


def sends(rt) -> int:
    return sum(m.count("eth_sendRawTransaction") + m.count("eth_sendTransaction")
               for m in rt.methods)


def state_file(name: str):
    from dtnsess_cli.chain.journal import state_dir

    return state_dir() / name


def test_request_and_close_take_three_round_trips(env, monkeypatch):
    mine = primed(env, 2)
    with count_round_trips(monkeypatch) as rt:
        out = load_json(env.cli("request", "hi", "--yes", "--json"))
    assert out["session_id"] == mine[1] and in_three(rt), rt
    with count_round_trips(monkeypatch) as rt:
        out = load_json(env.cli("close", str(mine[0]), "--yes", "--json"))
    assert out["closed"][0]["session_id"] == mine[0] and in_three(rt), rt


@pytest.mark.parametrize("command", ["request", "close"])
def test_a_url_whose_chain_changed_is_refused_in_the_folded_batch(env, monkeypatch, command):
    """The sender lock was taken for the chain last seen behind the URL; the folded batch finds
    the node on another chain (another genesis; another chain id, the token cache agreeing with
    the old one): nothing signed, exit 6, the URL's chain forgotten, the rerun goes through."""
    from dtnsess_cli.chain.journal import known_chain, remember_chain

    (sid,) = primed(env)
    args = ("request", "hi") if command == "request" else ("close", str(sid))
    genesis = known_chain(env.proxy.url)[1]
    before = env.nonce()
    tokens = json.loads(state_file("tokens.json").read_text())
    for chain, token_chain in (((31337, "0x" + "11" * 32), 31337), ((1, genesis), 1)):
        remember_chain(env.proxy.url, chain)
        state_file("tokens.json").write_text(json.dumps(
            {k: dict(v, chain=token_chain) for k, v in tokens.items()}))
        with count_round_trips(monkeypatch) as rt:
            res = env.cli(*args, "--yes")
        assert res.exit_code == 6, res.output
        assert "another chain than the last time" in one_error(res)
        assert trips(rt) == 1 and folded(rt) and sends(rt) == 0, rt
        assert known_chain(env.proxy.url) is None and env.nonce() == before
    state_file("tokens.json").write_text(json.dumps(tokens))
    remember_chain(env.proxy.url, (31337, genesis))
    with count_round_trips(monkeypatch) as rt:
        assert env.cli(*args, "--yes").exit_code == 0
    assert before_send(rt) == 1 and env.nonce() == before + 1, rt


def test_transaction_flags_hold_in_the_folded_batch(env, monkeypatch):
    """--gas-limit below the estimate and --nonce below the chain's are refused before signing
    (one round trip, nothing sent); fee flags and a gas limit are the transaction's; a nonce
    above the chain's warns (and the transaction waits in the node)."""
    mine = primed(env, 3)
    n = env.nonce()
    for args in (("close", str(mine[0]), "--gas-limit", "21000"),
                 ("request", "hi", "--nonce", str(n - 1))):
        with count_round_trips(monkeypatch) as rt:
            res = env.cli(*args, "--yes")
        assert res.exit_code == 4, res.output
        assert ("below the estimate" if "--gas-limit" in args else "below the next nonce") \
            in one_error(res)
        assert trips(rt) == 1 and folded(rt) and sends(rt) == 0, rt
    assert env.nonce() == n
    fees = ("--gas-limit", "900000", "--priority-gas-price", "3gwei", "--max-fee", "50gwei")
    for args in (("request", "hi"), ("close", str(mine[0]))):
        with count_round_trips(monkeypatch) as rt:
            res = env.cli(*args, *fees, "--nonce", str(env.nonce()), "--yes", "--json")
        assert res.exit_code == 0, res.output
        assert in_three(rt), rt
        t = env.w3.eth.get_transaction(HASH.findall(res.stdout)[-1])
        assert (t["gas"], t["maxPriorityFeePerGas"], t["maxFeePerGas"]) == (
            900000, 3 * 10**9, 50 * 10**9)
    n = env.nonce()
    try:
        res = env.cli("close", str(mine[1]), "--yes", "--nonce", str(n + 1))
        assert res.exit_code == 10, res.output  # it waits in the node for nonce n
        assert f"above the next nonce of {env.user} ({n})" in res.stderr
        assert env.nonce() == n
    finally:
        rpc(env.w3, "anvil_dropAllTransactions")


def test_unlocked_from_folds_and_journals_by_hash(env, monkeypatch):
    from dtnsess_cli.chain.journal import Journal

    mine = primed(env, 2)
    n = env.nonce()
    hashes = []
    for args in (("request", "hi"), ("close", str(mine[0]))):
        with count_round_trips(monkeypatch) as rt:
            res = env.cli(*args, "--yes", "--json", "--unlocked", "--from", env.user, role=None)
        assert res.exit_code == 0, res.output
        assert rt.posts == 3 and folded(rt) and "eth_sendTransaction" in rt.methods, rt
        hashes.append(HASH.findall(res.stdout)[-1])
    assert env.nonce() == n + 2
    j = Journal()
    try:
        for h in hashes:
            e = j.find(h)
            assert e is not None and e.status == "mined" and e.raw == ""
    finally:
        j.close()


def test_routing_is_checked_in_the_folded_batch(env, monkeypatch):
    """Issue 15 on the folded path: a namespace nobody holds is warned about once and sent; a
    node nobody registered is refused with nothing sent. The routing is read at the router the
    token cache names: when getConfig() names another, nothing is sent from that batch and the
    routing is read again at the right one (still one warning), and the cache is put right."""
    primed(env)
    n = env.nonce()
    with count_round_trips(monkeypatch) as rt:
        res = env.cli("request", "hi", "--namespace", "trust.nobody", "--yes")
    assert res.exit_code == 0, res.output
    assert res.stderr.count("no node holds the trust namespace trust.nobody") == 1
    assert in_three(rt) and env.nonce() == n + 1, rt
    with count_round_trips(monkeypatch) as rt:
        res = env.cli("request", "hi", "--node", "nobody.nothing", "--yes")
    assert res.exit_code == 4 and "no such node is registered" in one_error(res), res.output
    assert trips(rt) == 1 and folded(rt) and sends(rt) == 0, rt
    tokens = json.loads(state_file("tokens.json").read_text())
    (entry,) = tokens.values()
    router = entry["router"]
    entry["router"] = "0x000000000000000000000000000000000000dEaD"
    state_file("tokens.json").write_text(json.dumps(tokens))
    next_second(env.w3)
    with count_round_trips(monkeypatch) as rt:
        res = env.cli("request", "hi", "--namespace", "trust.nobody", "--yes")
    assert res.exit_code == 0, res.output
    assert res.stderr.count("no node holds the trust namespace trust.nobody") == 1
    assert before_send(rt) == 2 and folded(rt) and sends(rt) == 1 and env.nonce() == n + 2, rt
    (entry,) = json.loads(state_file("tokens.json").read_text()).values()
    assert entry["router"] == router


@pytest.mark.parametrize("command", ["request", "close"])
def test_a_lost_send_reply_in_a_folded_command_is_looked_up(env, monkeypatch, command):
    """The send's reply is lost: found by hash, mined once, nothing left open; then the node
    gone after the send: exit 10 naming the hash, and the rerun does not repeat it."""
    mine = primed(env, 2)
    args = ("request", "hi") if command == "request" else ("close", str(mine[0]))
    n = env.nonce()
    for method in SEND_METHODS:  # one of them is the send's; the other is disarmed after
        env.proxy.fault(method, "drop_after")
    with count_round_trips(monkeypatch) as rt:
        res = env.cli(*args, "--yes")
    env.proxy.clear()
    assert res.exit_code == 0 and "reply to the send was lost" in res.stderr, res.output
    assert folded(rt) and env.nonce() == n + 1 and open_entries(env) == [], rt
    args = ("request", "again") if command == "request" else ("close", str(mine[1]))
    next_second(env.w3)
    for method in SEND_METHODS:
        env.proxy.fault(method, "drop_after")
    env.proxy.fault("eth_getTransactionByHash", "drop_before", times=10_000)
    with count_round_trips(monkeypatch) as rt:
        res = env.cli(*args, "--yes")
    env.proxy.clear()
    assert res.exit_code == 10 and folded(rt), res.output
    h = HASH.findall(one_error(res))[-1]
    assert [e.tx_hash for e in open_entries(env)] == [h] and env.nonce() == n + 2
    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 13 and "not repeated" in one_error(rerun), rerun.output
    assert env.nonce() == n + 2 and open_entries(env) == []


@pytest.mark.parametrize("command", ["request", "close"])
def test_ctrl_c_in_a_folded_command(env, monkeypatch, command):
    """Ctrl-C while the folded batch is out: exit 130, nothing signed, nothing left open. Ctrl-C
    once the node has the transaction (its reply, or the receipt, not yet seen): exit 130
    naming the hash, the entry open; the rerun finds it mined and does not repeat it."""
    from dtnsess_cli.chain import jsonrpc

    mine = primed(env, 2)
    args = ("request", "hi") if command == "request" else ("close", str(mine[0]))
    n = env.nonce()
    real_batch, real_call = jsonrpc.JsonRpc.batch, jsonrpc.JsonRpc.call

    def batch(self, calls):
        if any(m == "eth_estimateGas" for m, _ in calls):
            raise KeyboardInterrupt
        return real_batch(self, calls)

    def call(self, method, params=()):
        out = real_call(self, method, params)
        if method.startswith("eth_sendRawTransaction"):
            raise KeyboardInterrupt
        return out

    with monkeypatch.context() as mp:
        mp.setattr(jsonrpc.JsonRpc, "batch", batch)
        with count_round_trips(monkeypatch) as rt:
            res = env.cli(*args, "--yes")
    assert res.exit_code == 130 and "interrupted" in one_error(res), res.output
    assert rt.posts == 0 and env.nonce() == n and open_entries(env) == []
    with monkeypatch.context() as mp:
        mp.setattr(jsonrpc.JsonRpc, "call", call)
        with count_round_trips(monkeypatch) as rt:
            res = env.cli(*args, "--yes")
    assert res.exit_code == 130 and folded(rt), res.output
    h = HASH.search(one_error(res)).group(0)
    assert [e.tx_hash for e in open_entries(env)] == [h] and env.nonce() == n + 1
    rerun = env.cli(*args, "--yes")
    assert rerun.exit_code == 13 and f"earlier tx {h}" in rerun.stderr, rerun.output
    assert env.nonce() == n + 1 and open_entries(env) == []


def test_a_token_other_than_the_cached_one_is_read_on_the_usual_path(env, monkeypatch):
    """The token cache names another fee token than getConfig() (the manager's token changed):
    nothing is sent from the folded batch, so that the usual path's batch reads the symbol
    (before: a request named its DTN fee in "tokens", and the cache stayed wrong); the command
    is done once and the cache names the right token again (the next close folds)."""
    mine = primed(env, 3)  # the request goes to the newest
    sym = env.system.token.functions.symbol().call()
    for args in (("request", "hi"), ("close", str(mine[0]))):
        tokens = json.loads(state_file("tokens.json").read_text())
        (entry,) = tokens.values()
        real = entry["token"]
        entry.update(token="0x000000000000000000000000000000000000dEaD", symbol="WRONG")
        state_file("tokens.json").write_text(json.dumps(tokens))
        with count_round_trips(monkeypatch) as rt:
            res = env.cli(*args, "--yes", "--json")
        assert res.exit_code == 0 and "WRONG" not in res.stdout, res.output
        assert folded(rt) and sends(rt) == 1, rt
        if args[0] == "request":
            assert f"{sym} per answer" in load_json(res)["transactions"][0]["description"]
        (entry,) = json.loads(state_file("tokens.json").read_text()).values()
        assert entry["token"] == real and entry["symbol"] == sym
    with count_round_trips(monkeypatch) as rt:
        assert env.cli("close", str(mine[1]), "--yes").exit_code == 0
    assert in_three(rt), rt


def test_the_l1_fee_is_quoted_in_the_folded_batch(env, monkeypatch, oracle):  # noqa: F811
    """OP-stack chains (Base): the L1 data fee's quote rides in the folded batch too, for the
    chain that batch confirms, and counts in the cost (dry runs: one round trip each)."""
    (sid,) = primed(env)
    for args in (("request", "hi"), ("close", str(sid))):
        with count_round_trips(monkeypatch) as rt:
            (t,) = load_json(env.cli(*args, "--dry-run", "--json"))["transactions"]
        assert rt.posts == 1 and folded(rt) and float(t["l1_fee_eth"]) > 0, (rt, t)
