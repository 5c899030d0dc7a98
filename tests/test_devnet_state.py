"""The devnet keeps the user's chain: `down`/`up` and an Anvil crash resume the same chain
(sessions, balances, requests, addresses); `up` repairs a dead responder without touching a
healthy Anvil; `devnet reset` starts empty on purpose; the port check matches what Anvil can bind
(a port in TIME-WAIT after an Anvil exit is free)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

from dtnsess_cli.devnet.anvil import free_port
from dtnsess_cli.devnet.stack import _port_free
from test_devnet import Chain, _wait_gone, devnet_dir, dtnsess  # noqa: F401 - fixture


def _state(d) -> dict:
    return json.loads((d / ".dtnsess-devnet.json").read_text())


def _up(d, port, *extra) -> dict:
    res = dtnsess(d, "devnet", "up", "--port", str(port), "--json", *extra)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _ok(d, *args) -> dict:
    res = dtnsess(d, *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _wait_dumped(d, since: float, timeout: float = 10.0) -> None:
    """Anvil writes its state every second: wait for a write after ``since`` that has finished.

    NOTE: the mtime changes with the first bytes of a write; a SIGKILL then truncates the file
    (Anvil does not write it atomically), so the write must also parse as JSON.
    """
    dump = d / ".dtnsess-devnet" / "anvil-state.json"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if dump.exists() and dump.stat().st_mtime > since + 0.05:
            try:
                json.loads(dump.read_text())
                return
            except ValueError:  # still being written
                pass
        time.sleep(0.05)
    raise AssertionError("anvil did not write its state")


def test_down_then_up_resumes_the_same_chain(devnet_dir):
    port = free_port()
    first = _up(devnet_dir, port)
    sid = _ok(devnet_dir, "create", "50", "--yes")["session_id"]
    req = _ok(devnet_dir, "request", "remember me", "--wait", "--timeout", "60", "--yes")
    assert req["response"]["status"] == "succeeded"
    before = _ok(devnet_dir, "stats", str(sid))
    bal = _ok(devnet_dir, "balance")
    down = dtnsess(devnet_dir, "devnet", "down")
    assert down.returncode == 0 and "resumes it" in down.stdout
    for pid in first["pids"].values():
        assert _wait_gone(pid)

    # the same port at once: Anvil's connections linger in TIME-WAIT, which must not block it
    again = _up(devnet_dir, port)
    assert again["started"] is True and again["resumed_at_block"] >= req["block"]
    for key in ("manager", "router", "token", "model", "node_id", "accounts"):
        assert again[key] == first[key], key
    assert _state(devnet_dir)["manager"] == first["manager"]
    assert _ok(devnet_dir, "stats", str(sid)) == before
    assert _ok(devnet_dir, "balance") == bal
    ans = _ok(devnet_dir, "response", req["request_id"])
    assert ans["status"] == "succeeded" and ans["answer"] == req["response"]["answer"]
    # and the chain goes on: a new request on the old session is answered
    more = _ok(devnet_dir, "request", "still here", "--session", str(sid), "--wait",
               "--timeout", "60", "--yes")
    assert more["response"]["status"] == "succeeded"


def test_an_anvil_crash_resumes_the_saved_chain(devnet_dir):
    port = free_port()
    first = _up(devnet_dir, port)
    sid = _ok(devnet_dir, "create", "20", "--yes")["session_id"]
    # a write that began after the session was mined (Anvil writes every second)
    _wait_dumped(devnet_dir, time.time() + 1.0)
    os.kill(first["pids"]["anvil"], signal.SIGKILL)
    assert _wait_gone(first["pids"]["anvil"])

    again = _up(devnet_dir, port)
    assert again["started"] is True and again["manager"] == first["manager"]
    assert again["pids"]["anvil"] != first["pids"]["anvil"]
    assert _wait_gone(first["pids"]["responder"])  # the old responder was stopped
    st = _ok(devnet_dir, "stats", str(sid))
    assert st["active"] is True and st["balance"] == "20"
    out = _ok(devnet_dir, "request", "after the crash", "--wait", "--timeout", "60", "--yes")
    assert out["response"]["status"] == "succeeded"


def test_up_repairs_a_dead_responder_and_leaves_anvil_alone(devnet_dir):
    port = free_port()
    first = _up(devnet_dir, port)
    sid = _ok(devnet_dir, "create", "20", "--yes")["session_id"]
    os.kill(first["pids"]["responder"], signal.SIGKILL)
    assert _wait_gone(first["pids"]["responder"])
    res = dtnsess(devnet_dir, "devnet", "up", "--port", str(port), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["repaired"] == "responder" and "anvil keeps running" in res.stderr
    assert doc["pids"]["anvil"] == first["pids"]["anvil"]
    assert doc["pids"]["responder"] != first["pids"]["responder"]
    assert _state(devnet_dir)["pids"] == doc["pids"]
    assert _ok(devnet_dir, "stats", str(sid))["active"] is True
    out = _ok(devnet_dir, "request", "repaired?", "--wait", "--timeout", "60", "--yes")
    assert out["response"]["status"] == "succeeded"
    st = dtnsess(devnet_dir, "devnet", "status", "--json")
    assert st.returncode == 0 and json.loads(st.stdout)["running"] is True


def test_reset_starts_an_empty_chain(devnet_dir):
    port = free_port()
    _up(devnet_dir, port)
    _ok(devnet_dir, "create", "20", "--yes")
    assert len(_ok(devnet_dir, "sessions")["sessions"]) == 1
    res = dtnsess(devnet_dir, "devnet", "reset", "--port", str(port), "--json")
    assert res.returncode == 0, res.stderr
    assert "deleted the saved chain" in res.stderr
    assert json.loads(res.stdout)["started"] is True
    assert _ok(devnet_dir, "sessions")["sessions"] == []
    # and a plain down/up after a reset resumes the new (empty) chain, not the old one
    assert dtnsess(devnet_dir, "devnet", "down").returncode == 0
    _up(devnet_dir, port)
    assert _ok(devnet_dir, "sessions")["sessions"] == []


def test_port_check_accepts_time_wait_and_refuses_a_listener():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    assert not _port_free(port)  # something listens
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: its port goes to TIME-WAIT
    time.sleep(0.1)
    cli.close()
    srv.close()
    assert _port_free(port)


def test_reset_forgets_the_old_chains_open_entries(devnet_dir, tmp_path):
    """An open journal entry of the devnet's chain (an approval left pending: automine off) used
    to block every write on the reset chain for the receipt timeout, and nothing cleared it
    (issue 15). `devnet reset` now forgets it, and the next write goes straight on."""
    import subprocess
    import urllib.request

    from test_devnet import DTNSESS

    env = {k: v for k, v in os.environ.items() if not k.startswith("DTNSESS_")}
    env.update(DTNSESS_STATE_DIR=str(tmp_path / "state"), DTNSESS_RECEIPT_TIMEOUT="2")

    def run(*args):
        return subprocess.run([DTNSESS, *args], cwd=devnet_dir, env=env, capture_output=True,
                              text=True, timeout=120)

    port = free_port()
    _up(devnet_dir, port)
    url = _state(devnet_dir)["rpc_url"]
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "evm_setAutomine",
                       "params": [False]}).encode()
    urllib.request.urlopen(urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}), timeout=10).read()
    stuck = run("approve", "5", "--yes")
    assert stuck.returncode == 10, stuck.stderr
    reset = run("devnet", "reset", "--port", str(port))
    assert reset.returncode == 0, reset.stderr
    assert "forgot 1 open journal entry of the old chain" in reset.stderr
    t0 = time.monotonic()
    after = run("create", "20", "--yes")
    assert after.returncode == 0, after.stderr
    assert "earlier tx" not in after.stderr and "another chain" not in after.stderr
    assert time.monotonic() - t0 < 30
