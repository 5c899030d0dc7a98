"""Round trips of the read commands and `request --file` (pipelined batch requests).

JSON-RPC round trips are counted with ``cli_helpers.count_round_trips`` (one count per HTTP
POST: a JSON-RPC batch is one round trip) while a command runs in process.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dtnsess_cli.cli import app
from dtnsess_cli.devnet.localdtn import prompt_of
from cli_helpers import count_round_trips
from tests.helpers import CALLBACK_GAS, REQ_PENDING, ask, create, fund, next_second

runner = CliRunner()


@pytest.fixture
def cli_env(anvil, system6, user, private_keys, accounts, tmp_path, monkeypatch):
    """Environment for in-process CLI runs as `user` against system6 (no .env, no devnet file)."""
    monkeypatch.chdir(tmp_path)
    for k in ("DTNSESS_NETWORK", "DTNSESS_CHAIN_ID", "DTNSESS_ACCOUNT", "DTNSESS_KEYSTORE",
              "ETH_RPC_URL", "DTNSESS_MODEL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DTNSESS_RPC_URL", anvil.url)
    monkeypatch.setenv("DTNSESS_CONTRACT", system6.manager.address)
    monkeypatch.setenv("DTNSESS_PRIVATE_KEY", private_keys[accounts.index(user)])
    monkeypatch.setenv("DTNSESS_DEVNET_STATE", str(tmp_path / "no-devnet.json"))
    monkeypatch.setenv("DTNSESS_MODEL", system6.model)
    return system6


def run_cli(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def sessions_for(system, who: str, n: int) -> list[int]:
    fund(system, who, 100 * n)
    return [create(system, who, 50)[0] for _ in range(n)]


# ----------------------------------------------------------------------------- reads


def test_requests_20_few_round_trips(cli_env, user, monkeypatch):
    system = cli_env
    (sid,) = sessions_for(system, user, 1)
    rids = []
    for _ in range(20):
        rids.append(ask(system, user, sid=sid)[0])
        next_second(system.w3)
    with count_round_trips(monkeypatch) as rt:
        res = run_cli("requests", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["requests"]
    assert [r["request_id"] for r in rows] == ["0x" + bytes(r).hex() for r in rids]
    assert all(r["status"] == "pending" and r["session_id"] == sid for r in rows)
    print("requests x20:", rt)
    assert rt.posts <= 6, rt


def test_sessions_10_few_round_trips(cli_env, user, monkeypatch):
    system = cli_env
    ids = sessions_for(system, user, 10)
    with count_round_trips(monkeypatch) as rt:
        res = run_cli("sessions", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["sessions"]
    assert [r["session_id"] for r in rows] == ids
    assert all(r["dtn_balance"] == "50" for r in rows), rows
    print("sessions x10:", rt)
    assert rt.posts <= 6, rt


# ----------------------------------------------------------------------------- request --file


PROMPTS = [f"prompt number {i}: what is {i} + {i}?" for i in range(1, 7)]


def prompt_file(tmp_path, prompts=PROMPTS):
    f = tmp_path / "prompts.txt"
    # blank lines are skipped
    f.write_text("\n".join(p if i % 2 else p + "\n" for i, p in enumerate(prompts)) + "\n\n")
    return f


def on_chain(system, user):
    """Every request id of `user` recorded by the manager, with its (session, second, status)."""
    ids, total = system.manager.functions.getUserRequests(user, 0, 1000).call()
    assert len(ids) == total
    out = {}
    for rid in ids:
        sid, who, created, status = system.manager.functions.requests(rid).call()
        assert who == user
        out["0x" + bytes(rid).hex()] = (sid, created, status)
    return out


def routed_prompt(system, rid: str) -> str:
    stored = system.router.functions.getRequest(bytes.fromhex(rid[2:])).call()
    return prompt_of(stored[8][0])


def test_request_file_fans_out_over_sessions(cli_env, user, tmp_path, monkeypatch):
    system = cli_env
    sids = sessions_for(system, user, 3)
    f = prompt_file(tmp_path)
    with count_round_trips(monkeypatch) as rt:
        res = run_cli("request", "--file", str(f), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    rows = out["requests"]
    assert [r["prompt"] for r in rows] == PROMPTS
    assert all(r["status"] == "sent" for r in rows), rows
    assert out["error"] is None
    rids = [r["request_id"] for r in rows]
    assert len(set(rids)) == 6
    chain = on_chain(system, user)
    assert set(chain) == set(rids)  # nothing more, nothing less: no duplicate, no stray request
    assert all(st == REQ_PENDING for _, _, st in chain.values())
    pairs = {(sid, ts) for sid, ts, _ in chain.values()}
    assert len(pairs) == 6  # distinct (session, second): no overwritten DTN request
    assert {sid for sid, _ in pairs} == set(sids)  # fanned out over all three
    for r in rows:
        assert chain[r["request_id"]][:2] == (r["session_id"], r["block_timestamp"])
        assert routed_prompt(system, r["request_id"]) == r["prompt"]
    print("request --file 6 over 3:", rt)
    # setup (chain id, config, symbol, sessions, fees/nonce) + per wave of 3: one batch of
    # simulations and estimates, one batch of 3 sends, receipt polls; then the block headers.
    waves = [m for m in rt.methods if "eth_sendRawTransaction" in m]
    assert waves == ["batch[" + ",".join(["eth_sendRawTransaction"] * 3) + "]"] * 2, rt
    assert rt.posts <= 12, rt


def test_request_file_human_table(cli_env, user, tmp_path):
    system = cli_env
    sessions_for(system, user, 2)
    f = prompt_file(tmp_path, PROMPTS[:3])
    res = run_cli("request", "--file", str(f))
    assert res.exit_code == 0, res.output
    assert "3 prompts over 2 sessions: 3 sent" in res.stdout
    assert res.stdout.count("0x") >= 3


def test_request_file_too_few_sessions_hint(cli_env, user, tmp_path):
    system = cli_env
    sessions_for(system, user, 2)
    res = run_cli("request", "--file", str(prompt_file(tmp_path)), "--sessions", "4")
    assert res.exit_code == 4, res.output
    assert "you have 2 usable active sessions" in res.stderr
    assert "dtnsess create" in res.stderr
    assert on_chain(system, user) == {}


def test_request_file_no_session(cli_env, user, tmp_path):
    res = run_cli("request", "--file", str(prompt_file(tmp_path)))
    assert res.exit_code == 4, res.output
    assert "no active session" in res.stderr and "dtnsess create" in res.stderr


def test_request_file_rejected_partway_reports_sent_and_unsent(cli_env, user, tmp_path,
                                                               monkeypatch):
    """The node refuses the sends of the second wave (4-6: one batch of sends): 1-3 have request
    ids, 4-6 failed (no request); the error is the node's (exit 5)."""
    from faultproxy import FaultProxy

    system = cli_env
    sessions_for(system, user, 3)
    with FaultProxy(system.w3.provider.endpoint_uri) as proxy:
        proxy.fault("eth_sendRawTransaction", "rpcerror_before", skip=1,
                    message="replacement transaction underpriced")
        monkeypatch.setenv("DTNSESS_RPC_URL", proxy.url)
        res = run_cli("request", "--file", str(prompt_file(tmp_path)), "--json")
    assert res.exit_code == 5, res.output  # RPC
    out = json.loads(res.stdout)
    rows = out["requests"]
    assert [r["status"] for r in rows] == ["sent"] * 3 + ["failed"] * 3, rows
    assert all("underpriced" in r["error"] for r in rows[3:])
    assert out["error"]["code"] == 5 and out["error"]["name"] == "RPC"
    assert "the batch stopped" in res.stderr
    chain = on_chain(system, user)
    assert set(chain) == {r["request_id"] for r in rows[:3]}  # no duplicate, nothing else
    for r in rows[3:]:
        assert r["request_id"] is None
    for r in rows[:3]:
        assert routed_prompt(system, r["request_id"]) == r["prompt"]


@pytest.mark.parametrize("kind", ["drop_before", "drop_after", "http_after"])
def test_request_file_lost_reply_partway_is_looked_up(cli_env, user, tmp_path, monkeypatch,
                                                      kind):
    """The reply to the second wave's sends (4-6, one batch) is lost: each transaction is looked
    up by hash (and, when the node never got it, its own signed bytes sent again), so the batch
    goes on: 6 requests, each once, exit 0."""
    from faultproxy import FaultProxy

    system = cli_env
    sessions_for(system, user, 3)
    with FaultProxy(system.w3.provider.endpoint_uri) as proxy:
        proxy.fault("eth_sendRawTransaction", kind, skip=1)
        monkeypatch.setenv("DTNSESS_RPC_URL", proxy.url)
        res = run_cli("request", "--file", str(prompt_file(tmp_path)), "--json")
        assert proxy.fired == [("eth_sendRawTransaction", kind)]
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["requests"]
    assert [r["status"] for r in rows] == ["sent"] * 6, rows
    assert "reply to the send was lost" in res.stderr
    chain = on_chain(system, user)
    assert set(chain) == {r["request_id"] for r in rows} and len(chain) == 6


def test_request_file_dry_run_sends_nothing(cli_env, user, tmp_path):
    system = cli_env
    sessions_for(system, user, 3)
    res = run_cli("request", "--file", str(prompt_file(tmp_path)), "--json", "--dry-run")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["requests"]
    assert [r["status"] for r in rows] == ["simulated"] * 6
    assert on_chain(system, user) == {}


def test_request_file_wait_answers_and_timeout(cli_env, user, tmp_path, monkeypatch):
    """--wait with --file: one wait for all answers; answered ones are printed, the rest are
    reported pending and the exit code is TIMEOUT."""
    from dtnsess_cli.manager import Client
    from tests.helpers import answer

    system = cli_env
    sessions_for(system, user, 3)
    real = Client.wait_for_answers

    def answer_two_then_wait(self, rids, timeout, **kw):  # a node answers the first two
        for i, rid in enumerate(rids[:2]):
            answer(system, bytes.fromhex(rid[2:]), text=f"answer {i + 1}")
        return real(self, rids, timeout, **kw)

    monkeypatch.setattr(Client, "wait_for_answers", answer_two_then_wait)
    res = run_cli("request", "--file", str(prompt_file(tmp_path, PROMPTS[:3])), "--wait",
                  "--timeout", "1.5", "--json")
    assert res.exit_code == 10, res.output
    rows = json.loads(res.stdout)["requests"]
    assert [r["response"]["status"] for r in rows] == ["succeeded", "succeeded", "pending"]
    assert [r["response"]["answer"] for r in rows[:2]] == ["answer 1", "answer 2"]
    assert "still pending" in res.stderr
