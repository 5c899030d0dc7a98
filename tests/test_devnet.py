"""`dtnsess devnet` and the responder.

Two kinds of tests:
- in-process Responder tests against the session Anvil (conftest's `system6`): fast, they cover
  answering, skipping what cannot be answered and restarts;
- process tests of the installed `dtnsess` script in a temporary working directory on a free
  port: lifecycle (up, up again, status, down, down again) and the `--responder` command path.
  Every devnet a test starts is stopped in `finally`, and its pids are checked to be gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from web3.logs import DISCARD

from dtnsess_cli.devnet import localdtn
from dtnsess_cli.devnet.anvil import free_port
from dtnsess_cli.devnet.responder import Responder, default_answer, run_command
from dtnsess_cli.media import cid_of

DTNSESS = str(Path(sys.executable).with_name("dtnsess"))
if not Path(DTNSESS).exists():  # pragma: no cover - non-venv runs
    DTNSESS = shutil.which("dtnsess") or DTNSESS

ANSWER_BOUND = 20.0  # seconds within which the devnet must answer a request


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def dtnsess(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DTNSESS_") and k != "ETH_RPC_URL"}
    # the test's own journal, never the user's (an older dtnsess's open entry there would be
    # resolved against this devnet: one chain id, no genesis recorded)
    env["DTNSESS_STATE_DIR"] = os.environ["DTNSESS_STATE_DIR"]
    return subprocess.run([DTNSESS, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie waiting for init to reap it is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


@pytest.fixture
def devnet_dir(tmp_path):
    """A working directory for one devnet; whatever it starts is stopped afterwards."""
    try:
        yield tmp_path
    finally:
        state_file = tmp_path / ".dtnsess-devnet.json"
        pids = {}
        if state_file.exists():
            pids = json.loads(state_file.read_text()).get("pids") or {}
        dtnsess(tmp_path, "devnet", "down")
        for role, pid in pids.items():
            if pid and not _wait_gone(pid):
                # last resort, only for a pid this test's devnet recorded
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"devnet {role} pid {pid} survived `devnet down`")


def devnet_up(cwd: Path, *extra: str) -> dict:
    res = dtnsess(cwd, "devnet", "up", "--port", str(free_port()), *extra)
    assert res.returncode == 0, res.stderr
    return json.loads((cwd / ".dtnsess-devnet.json").read_text())


class Chain:
    """Requests through the manager of a devnet state, from its dev accounts."""

    def __init__(self, state: dict) -> None:
        from web3 import Web3

        self.state = state
        self.w3 = Web3(Web3.HTTPProvider(state["rpc_url"], request_kwargs={"timeout": 30}))
        self.token = localdtn.contract(self.w3, "MockUSDT", state["token"])
        self.manager = localdtn.contract(self.w3, "AdvancedSessionManager", state["manager"])
        self.router = localdtn.contract(self.w3, "LocalDtnRouter", state["router"])
        self.unit = 10 ** state["decimals"]

    def account(self, i: int) -> str:
        return self.state["accounts"][i]["address"]

    def request(self, user: str, prompt: str) -> bytes:
        """Create a session for `user` (first time) and make a request; return its id."""
        if not self.manager.functions.getUserActiveSessions(user).call():
            localdtn.transact(self.w3, self.token.functions.approve(self.manager.address,
                                                                    50 * self.unit), user)
            localdtn.transact(self.w3, self.manager.functions.createSession(50 * self.unit), user)
        receipt = localdtn.transact(
            self.w3, self.manager.functions.makeAIRequest(prompt, self.state["model"], []), user,
            value=300_000)
        (event,) = self.router.events.RequestCreated().process_receipt(receipt, errors=DISCARD)
        return event["args"]["requestId"]

    def wait_answer(self, request_id: bytes, bound: float = ANSWER_BOUND) -> tuple:
        end = time.monotonic() + bound
        while True:
            try:
                return tuple(self.router.functions.fetchResponse(request_id).call())
            except Exception:  # noqa: BLE001 - "Request not completed" while pending
                if time.monotonic() > end:
                    raise AssertionError(f"no answer within {bound:g}s") from None
                time.sleep(0.1)

    def failed_events(self, request_id: bytes) -> list:
        logs = self.manager.events.AIRequestFailed().get_logs(
            from_block=0, argument_filters={"requestId": request_id})
        return list(logs)


# ---------------------------------------------------------------------------------------------
# run_command: the --responder path without a chain
# ---------------------------------------------------------------------------------------------

def test_run_command_success_answers_stdout():
    ans = run_command("tr a-z A-Z", "hello world", timeout=10)
    assert ans.ok and ans.text == "HELLO WORLD"


def test_run_command_failure_carries_stderr():
    ans = run_command("echo 'the model is down' >&2; exit 3", "x", timeout=10)
    assert not ans.ok
    assert "code 3" in ans.failure and "the model is down" in ans.failure


def test_run_command_timeout_kills_the_command_and_its_children():
    start = time.monotonic()
    ans = run_command("echo started >&2; sleep 60; echo never", "x", timeout=0.5)
    assert time.monotonic() - start < 5
    assert not ans.ok and "timed out after 0.5s" in ans.failure and "started" in ans.failure


# ---------------------------------------------------------------------------------------------
# Responder in process, against the session Anvil
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def responder_for(w3, system6):
    def make(**kw) -> Responder:
        return Responder(w3, system6.router, system6.worker, system6.node_id,
                         from_block=w3.eth.block_number + 1, poll=0.05, **kw)
    return make


def _request(system, user, prompt, routing=None):
    unit = system.unit
    w3 = system.w3
    localdtn.transact(w3, system.token.functions.mint(user, 100 * unit), system.deployer)
    localdtn.transact(w3, system.token.functions.approve(system.manager.address, 50 * unit), user)
    localdtn.transact(w3, system.manager.functions.createSession(50 * unit), user)
    if routing is None:
        fn = system.manager.functions.makeAIRequest(prompt, system.model, [])
    else:
        fn = system.manager.functions.makeAIRequestWithRouting(prompt, system.model, routing)
    receipt = localdtn.transact(w3, fn, user, value=300_000)
    (event,) = system.router.events.RequestCreated().process_receipt(receipt, errors=DISCARD)
    return event["args"]["requestId"]


def test_responder_answers_with_the_default_text(system6, responder_for, user):
    node = responder_for()
    rid = _request(system6, user, "What is the Deep Trust Network?")
    assert node.poll_once() == 1
    status, message, payload = system6.router.functions.fetchResponse(rid).call()
    assert status == localdtn.STATUS_SUCCESS
    assert localdtn.decode_answer(payload) == default_answer("What is the Deep Trust Network?")
    assert "(6 words)" in localdtn.decode_answer(payload)
    # nothing new: nothing handled twice
    assert node.poll_once() == 0 and node.answered == 1


def test_responder_skips_requests_it_cannot_answer(system6, responder_for, user, caplog):
    other = localdtn.node_id("node.someone.else")
    routing = ([], [other], 1, 8, 0)  # trusted nodes only: not this one
    node = responder_for()
    rid = _request(system6, user, "route me elsewhere", routing)
    with caplog.at_level("INFO", logger="dtnsess.responder"):
        assert node.poll_once() == 1
    assert node.answered == 0
    assert "skipped: would revert (Node not eligible for this request)" in caplog.text
    assert not system6.router.functions.getRequest(rid).call()[6]  # still pending


def test_responder_restart_skips_answered_requests(system6, responder_for, user, caplog):
    first = responder_for()
    _request(system6, user, "answer me once")
    assert first.poll_once() == 1 and first.answered == 1
    # a restarted node scans the same blocks again
    second = Responder(first.w3, first.router, first.worker, first.node_id,
                       from_block=first.next_block - 5)
    with caplog.at_level("INFO", logger="dtnsess.responder"):
        second.poll_once()
    assert second.answered == 0
    assert "skipped: already completed" in caplog.text


def test_responder_gives_the_callback_enough_gas(system6, responder_for, user):
    node = responder_for()
    rid = _request(system6, user, "callback please")
    node.poll_once()
    mgr = system6.manager
    assert not list(system6.router.events.SuccessCallbackFailed().get_logs(
        from_block=0, argument_filters={"requestId": rid}))
    assert list(mgr.events.AIResponseReceived().get_logs(
        from_block=0, argument_filters={"requestId": rid}))


# ---------------------------------------------------------------------------------------------
# The installed script: lifecycle and the --responder path
# ---------------------------------------------------------------------------------------------

def test_devnet_lifecycle(devnet_dir):
    state = devnet_up(devnet_dir)
    for key in ("rpc_url", "chain_id", "manager", "router", "token", "decimals", "model", "node",
                "node_id", "worker", "deployer", "pids", "logs", "accounts"):
        assert key in state, key
    assert state["chain_id"] == 31337 and state["decimals"] == 6
    assert state["model"] == localdtn.DEFAULT_MODEL == "model.system.openai-gpt-5-nano"
    assert [m["name"] for m in state["models"]] == localdtn.model_names()
    assert state["ipfs_gateway"].startswith("http://127.0.0.1:")
    assert state["node"] == "node.devnet.responder"
    assert state["worker"] == state["accounts"][9]["address"]
    assert state["deployer"] == state["accounts"][0]["address"]
    assert oct((devnet_dir / ".dtnsess-devnet.json").stat().st_mode & 0o777) == "0o600"
    pids = state["pids"]

    # up again: the same chain, nothing new started
    again = dtnsess(devnet_dir, "devnet", "up", "--json")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["started"] is False and doc["pids"] == pids and doc["manager"] == state["manager"]
    assert "private_key" not in again.stdout and "private_key" not in again.stderr

    st = dtnsess(devnet_dir, "devnet", "status", "--json", "--logs")
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    assert doc["running"] is True and doc["block"] >= 1
    assert doc["processes"]["anvil"]["alive"] and doc["processes"]["responder"]["alive"]
    assert any("responder ready" in line for line in doc["responder_log"])
    human = dtnsess(devnet_dir, "devnet", "status")
    assert human.returncode == 0 and state["manager"] in human.stdout

    # the tokens were minted to accounts 0..8 and the chain answers
    chain = Chain(state)
    for i in range(9):
        assert chain.token.functions.balanceOf(chain.account(i)).call() == 1_000_000 * chain.unit
    assert chain.token.functions.balanceOf(chain.account(9)).call() == 0

    # the four models (read from the chain), and an image answered over IPFS as a PNG (of the
    # network's size) through the installed script
    models = dtnsess(devnet_dir, "models", "--json")
    assert models.returncode == 0, models.stderr
    doc = json.loads(models.stdout)
    assert doc["source"] == "chain" and [m["name"] for m in doc["models"]] == localdtn.model_names()
    made = dtnsess(devnet_dir, "create", "20", "--yes")
    assert made.returncode == 0, made.stderr
    img = dtnsess(devnet_dir, "request", "a cat", "--image", "64x48", "--out", "cat.png",
                  "--wait", "--yes")
    assert img.returncode == 0, img.stderr
    assert "image: PNG, 1024x1024" in img.stdout and "verified" in img.stdout
    data = (devnet_dir / "cat.png").read_bytes()
    assert data.startswith(b"\x89PNG") and f"cid: {cid_of(data)}" in img.stdout

    down = dtnsess(devnet_dir, "devnet", "down")
    assert down.returncode == 0, down.stderr
    assert "devnet stopped" in down.stdout
    assert not (devnet_dir / ".dtnsess-devnet.json").exists()
    for pid in pids.values():
        assert _wait_gone(pid), f"pid {pid} still running after down"

    down2 = dtnsess(devnet_dir, "devnet", "down")
    assert down2.returncode == 0 and "devnet is not running" in down2.stdout
    st2 = dtnsess(devnet_dir, "devnet", "status")
    assert st2.returncode == 1 and "devnet is not running" in st2.stdout


def test_devnet_up_restarts_after_its_processes_died(devnet_dir):
    state = devnet_up(devnet_dir)
    for pid in (state["pids"]["responder"], state["pids"]["anvil"]):
        os.kill(pid, signal.SIGKILL)
        assert _wait_gone(pid)
    st = dtnsess(devnet_dir, "devnet", "status", "--json")
    assert st.returncode == 1 and json.loads(st.stdout)["running"] is False
    res = dtnsess(devnet_dir, "devnet", "up", "--port", str(free_port()), "--json")
    assert res.returncode == 0, res.stderr
    fresh = json.loads(res.stdout)
    assert fresh["started"] is True and fresh["pids"] != state["pids"]


def test_devnet_up_port_in_use_is_one_line_error(devnet_dir, anvil):
    res = dtnsess(devnet_dir, "devnet", "up", "--port", str(anvil.port))
    assert res.returncode == 1
    assert res.stderr.startswith(f"error: port {anvil.port} on 127.0.0.1 is in use")
    assert "Traceback" not in res.stderr
    assert not (devnet_dir / ".dtnsess-devnet.json").exists()


def test_devnet_up_without_anvil_names_npm_ci(devnet_dir, tmp_path_factory):
    empty = tmp_path_factory.mktemp("nobin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTNSESS_")}
    env["DTNSESS_ANVIL"] = str(empty / "anvil")  # not there
    res = subprocess.run([DTNSESS, "devnet", "up", "--port", str(free_port())], cwd=devnet_dir,
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr
    assert "DTNSESS_ANVIL" in res.stderr


ANSWER_SCRIPT = r"""#!/bin/sh
# prompt on stdin; "fail" -> exit 3 with a message on stderr; "hang" -> sleeps; else UPPER CASE
p=$(cat)
case "$p" in
  *fail*) echo "the model exploded" >&2; exit 3 ;;
  *hang*) sleep 60 ;;
  *) printf '%s\n' "$p" | tr a-z A-Z ;;
esac
"""


def test_devnet_responder_command(devnet_dir):
    script = devnet_dir / "answer.sh"
    script.write_text(ANSWER_SCRIPT)
    state = devnet_up(devnet_dir, "--responder", f"sh {script}", "--responder-timeout", "2")
    chain = Chain(state)
    responder_pid = state["pids"]["responder"]

    # success: the answer is the command's stdout (without the trailing newline)
    rid = chain.request(chain.account(1), "please shout this")
    status, message, payload = chain.wait_answer(rid)
    assert status == localdtn.STATUS_SUCCESS
    assert localdtn.decode_answer(payload) == "PLEASE SHOUT THIS"

    # failure: a FAILURE answer carrying stderr, and the manager's AIRequestFailed event
    rid = chain.request(chain.account(2), "please fail")
    status, message, payload = chain.wait_answer(rid)
    assert status == localdtn.STATUS_FAILURE
    assert "the model exploded" in message and "code 3" in message
    (event,) = chain.failed_events(rid)
    assert "the model exploded" in event["args"]["error"]

    # hanging: killed after the timeout, a FAILURE answer, and the responder keeps going
    started = time.monotonic()
    rid = chain.request(chain.account(3), "please hang")
    status, message, _ = chain.wait_answer(rid)
    assert status == localdtn.STATUS_FAILURE and "timed out after 2s" in message
    assert time.monotonic() - started < ANSWER_BOUND
    assert not _gone(responder_pid)
    rid = chain.request(chain.account(4), "still there?")
    assert localdtn.decode_answer(chain.wait_answer(rid)[2]) == "STILL THERE?"

    # NOTE: the responder logs a request after its answer is mined: give the line a moment
    log_path = devnet_dir / ".dtnsess-devnet" / "responder.log"
    deadline = time.monotonic() + 5
    while log_path.read_text().count(": answered") < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    log = log_path.read_text()
    assert log.count(": answered") == 4, log


def test_devnet_answers_through_the_cli_within_bound(devnet_dir):
    devnet_up(devnet_dir)
    assert dtnsess(devnet_dir, "create", "50", "--yes").returncode == 0
    started = time.monotonic()
    res = dtnsess(devnet_dir, "request", "What is DTN?", "--wait", "--timeout",
                  str(int(ANSWER_BOUND)), "--yes", "--json")
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started < ANSWER_BOUND + 10
    doc = json.loads(res.stdout)
    assert doc["response"]["answer"] == default_answer("What is DTN?")


def test_devnet_node_min_fee_leaves_cheaper_requests_pending(devnet_dir):
    """`devnet up --node-min-fee` gives the responder a price floor, as a DTN node has: a request
    offering less per byte is skipped without an answer, and the CLI's timeout names that cause."""
    state = devnet_up(devnet_dir, "--node-min-fee", "1001")  # the manager offers 1000 per byte
    assert state["node_min_fee_per_byte"] == 1001
    made = dtnsess(devnet_dir, "create", "20", "--yes")
    assert made.returncode == 0, made.stderr
    r = dtnsess(devnet_dir, "request", "too cheap", "--wait", "--timeout", "4", "--yes")
    assert r.returncode == 10, r.stderr
    assert "priced below its minimum fee" in r.stderr
    log = (devnet_dir / ".dtnsess-devnet" / "responder.log").read_text()
    assert "priced below this node's floor (feePerByteReq 1000 < 1001)" in log
