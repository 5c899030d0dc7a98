"""Follow answers (issue 10, section 5): `response ID --wait` and `watch`, against Anvil.

`watch` in process ends with --to-block; the live cases (events as they arrive, Ctrl-C, a flaky
node) run the installed script as a subprocess and send it SIGINT.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import answer_later, assert_error, assert_ok, create_via_cli, load_json
from dtnsess_cli.devnet.localdtn import respond
from dtnsess_cli.errors import ExitCode
from faultproxy import FaultProxy
from helpers import fund, next_second

SCRIPT = Path(sys.executable).parent / "dtnsess"
HOSTILE = "[bold red]boom[/] \x1b[2J\x1b]0;pwned\x07 line\nnext [link=file:///etc]x[/link]"


def rid_bytes(rid: str) -> bytes:
    return bytes.fromhex(rid[2:])


def ask(cli, prompt: str = "hello", session: int | None = None, role: str = "user") -> str:
    """A request through the CLI, in a later second than the last one (DTN request ids have
    one-second resolution: one request per session and second)."""
    next_second(cli.system.manager.w3)
    args = ["request", prompt] + (["--session", str(session)] if session else [])
    return cli.json(*args, role=role)["request_id"]


def answer(system, rid: str, text: str = "an answer", failure: str | None = None,
           payload: bytes | None = None) -> None:
    respond(system, rid_bytes(rid), worker=system.worker, node=system.node_id, text=text,
            failure=failure, payload=payload)


def lines(result) -> list:
    """stdout as JSON lines (one object per line, nothing else)."""
    assert_ok(result)
    return [json.loads(ln) for ln in result.stdout.splitlines()]


def watch(cli, start: int, end: int, *extra: str) -> list:
    return lines(cli("watch", "--from-block", str(start), "--to-block", str(end), "--json",
                     "--interval", "0.2", *extra))


@pytest.fixture
def cli(make_cli, system6, user):
    c = make_cli(system6)
    fund(system6, user, 200, approve=False)
    return c


# --------------------------------------------------------------------------- response --wait


def test_response_wait_returns_the_answer_as_it_arrives(cli, system6):
    create_via_cli(cli, "20")
    rid = ask(cli, "wait for me")
    t = answer_later(system6, rid_bytes(rid), delay=1.5, text="arrived later")
    started = time.monotonic()
    out = cli.json("response", rid, "--wait", "--timeout", "30")
    t.join(10)
    assert not t.errors
    assert out["status"] == "succeeded" and out["answer"] == "arrived later"
    assert out["manager_status"] == "succeeded" and out["request_id"] == rid
    assert 1.0 < time.monotonic() - started < 15
    # human output is `response`'s
    again = cli("response", rid, "--wait")
    assert_ok(again)
    assert again.stdout == cli("response", rid).stdout
    assert "arrived later" in again.stdout


def test_response_wait_failed_answer_exits_1(cli, system6):
    create_via_cli(cli, "20")
    rid = ask(cli)
    answer(system6, rid, failure="model overloaded")
    r = cli("response", rid, "--wait", "--timeout", "5", "--json")
    assert r.exit_code == int(ExitCode.ERROR)
    out = load_json(r)
    assert out["status"] == "failed" and out["message"] == "model overloaded"


def test_response_wait_times_out_with_code_10(cli, system6):
    create_via_cli(cli, "20")
    rid = ask(cli)
    started = time.monotonic()
    r = cli("response", rid, "--wait", "--timeout", "1.5")
    assert_error(r, ExitCode.TIMEOUT, "timed out", rid)
    assert 1.4 < time.monotonic() - started < 6
    assert f"dtnsess response {rid}" in r.stderr


@pytest.mark.parametrize("args", [("--timeout", "0"), ("--timeout", "-3")])
def test_response_wait_bad_timeout(cli, args):
    r = cli("response", "0x" + "11" * 32, "--wait", *args)
    assert_error(r, ExitCode.INPUT, "--timeout")


def test_response_wait_unknown_request_is_an_input_error(cli):
    r = cli("response", "0x" + "22" * 32, "--wait", "--timeout", "5")
    assert_error(r, ExitCode.INPUT, "unknown")


@pytest.mark.parametrize("method", ["eth_getLogs", "*"])
def test_response_wait_on_a_hanging_node_ends_by_its_timeout(cli, system6, anvil, method,
                                                             monkeypatch):
    """The node stops answering (each read hangs): the wait still ends within its timeout and a
    small margin, not the timeout plus the read retries (DTNSESS_RPC_RETRY_SECONDS)."""
    create_via_cli(cli, "20")
    rid = ask(cli)
    monkeypatch.setenv("DTNSESS_RPC_TIMEOUT", "30")
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "20")
    with FaultProxy(anvil.url) as proxy:
        cli.url = proxy.url
        proxy.fault(method, "hang_before", times=10_000, hang=60)
        started = time.monotonic()
        r = cli("response", rid, "--wait", "--timeout", "3")
        took = time.monotonic() - started
        assert proxy.fired, "the node never hung"
    assert_error(r, ExitCode.TIMEOUT, "timed out", rid)
    assert took < 3 + 1.5, f"took {took:.1f}s for --timeout 3"
    assert "the node also failed while waiting" in r.stderr


def test_request_wait_on_a_hanging_node_ends_by_its_timeout(cli, system6, anvil, monkeypatch):
    """The same wait serves `request --wait`: sent, then the node hangs; ends by --timeout."""
    create_via_cli(cli, "20")
    monkeypatch.setenv("DTNSESS_RPC_TIMEOUT", "30")
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "20")
    with FaultProxy(anvil.url) as proxy:
        cli.url = proxy.url
        proxy.fault("eth_getLogs", "hang_before", times=10_000, hang=60)
        started = time.monotonic()
        r = cli("request", "hang on", "--wait", "--timeout", "2", "--json")
        took = time.monotonic() - started
    assert r.exit_code == int(ExitCode.TIMEOUT), r.output
    assert load_json(r)["request_id"].startswith("0x")
    assert took < 2 + 1.5 + 3, f"took {took:.1f}s"  # the send itself takes a moment


# ------------------------------------------------------------------------------------ watch


def test_watch_json_sees_requests_and_answers_in_order(cli, system6, user, w3):
    s1 = create_via_cli(cli, "20")
    b0 = w3.eth.block_number + 1
    r1 = ask(cli, "one", s1)
    answer(system6, r1, "the first answer")
    r2 = ask(cli, "two", s1)
    answer(system6, r2, failure="model overloaded")
    end = w3.eth.block_number
    evs = watch(cli, b0, end)
    assert [(e["event"], e["request_id"]) for e in evs] == [
        ("AIRequestSubmitted", r1), ("AIRequestCompleted", r1), ("AIResponseReceived", r1),
        ("AIRequestSubmitted", r2), ("AIRequestCompleted", r2), ("AIRequestFailed", r2)]
    sub, done, got = evs[:3]
    assert sub["status"] == "pending" and sub["session_id"] == s1 and sub["user"] == user
    assert done["status"] == "succeeded" and done["answer"] == "the first answer"
    assert got["session_id"] == s1 and got["user"] == user and got["status"] == "succeeded"
    assert evs[4]["status"] == "failed" and evs[4]["message"] == "model overloaded"
    assert evs[5]["message"] == "model overloaded" and evs[5]["session_id"] == s1
    blocks = [e["block"] for e in evs]
    assert blocks == sorted(blocks) and all(b0 <= b <= end for b in blocks)
    for e in evs:  # where each event is, as the chain has it
        rc = w3.eth.get_transaction_receipt(e["tx_hash"])
        assert rc.blockNumber == e["block"]
        assert any(lg.logIndex == e["log_index"] for lg in rc.logs)
        assert e["block_time"] == w3.eth.get_block(e["block"]).timestamp


def test_watch_names_image_and_ipfs_answers(cli, system6, w3):
    from eth_abi import encode

    from dtnsess_cli.devnet.localdtn import make_png
    from dtnsess_cli.media import cid_of

    s1 = create_via_cli(cli, "20")
    b0 = w3.eth.block_number + 1
    r_img, cid = ask(cli, "a cat", s1), cid_of(b"stored on ipfs")
    png = make_png(32, 16)
    answer(system6, r_img, payload=encode(["bytes"], [png]))
    r_cid = ask(cli, "where", s1)
    answer(system6, r_cid, cid)
    done = {e["request_id"]: e for e in watch(cli, b0, w3.eth.block_number)
            if e["event"] == "AIRequestCompleted"}
    assert done[r_img]["kind"] == "image" and done[r_img]["size"] == len(png)
    assert done[r_img]["answer"] is None and "response_hex" not in done[r_img]
    assert done[r_cid]["kind"] == "cid" and done[r_cid]["cid"] == cid
    assert done[r_cid]["ipfs_url"] == f"ipfs://{cid}" and done[r_cid]["answer"] is None


def test_watch_filters_by_session_and_user(cli, system6, user, stranger, w3):
    fund(system6, stranger, 200, approve=False)
    mine = create_via_cli(cli, "20")
    other = create_via_cli(cli, "20")
    theirs = create_via_cli(cli, "20", role="stranger")
    b0 = w3.eth.block_number + 1
    ra, rb = ask(cli, "a", mine), ask(cli, "b", other)
    rc = ask(cli, "c", theirs, role="stranger")
    for r in (ra, rb, rc):
        answer(system6, r, f"answer {r[:8]}")
    end = w3.eth.block_number
    assert len(watch(cli, b0, end)) == 9  # three requests, three events each

    by_session = watch(cli, b0, end, "--session", str(other))
    assert {e["request_id"] for e in by_session} == {rb} and len(by_session) == 3
    assert all(e["session_id"] == other for e in by_session)

    # a read: no key needed
    by_user = lines(cli("watch", "--from-block", str(b0), "--to-block", str(end), "--json",
                        "--user", stranger.lower(), role=None))
    assert {e["request_id"] for e in by_user} == {rc} and len(by_user) == 3
    assert [e["event"] for e in by_user] == ["AIRequestSubmitted", "AIRequestCompleted",
                                             "AIResponseReceived"]
    both = watch(cli, b0, end, "--user", user, "--session", str(theirs))
    assert both == []
    bad = cli("watch", "--user", "0x1234")
    assert_error(bad, ExitCode.INPUT, "user address")
    bad = cli("watch", "--session", "0")
    assert_error(bad, ExitCode.INPUT, "session")


def test_watch_from_block_replays_each_event_exactly_once(cli, system6, w3):
    sid = create_via_cli(cli, "20")
    b0 = w3.eth.block_number + 1
    rids = []
    for i in range(3):
        rids.append(ask(cli, f"q{i}", sid))
        answer(system6, rids[-1], f"a{i}")
    end = w3.eth.block_number
    full = watch(cli, b0, end)
    keys = [(e["tx_hash"], e["log_index"]) for e in full]
    assert len(keys) == len(set(keys)) == 9
    assert watch(cli, b0, end) == full  # the same replay, again
    # split where a previous run would have stopped: no event twice, none lost
    mid = full[4]["block"]
    first = lines(cli("watch", "--from-block", str(b0), "--to-block", str(mid), "--json"))
    r = cli("watch", "--from-block", str(b0), "--to-block", str(mid), "--json")
    assert f"resume with --from-block {mid + 1}" in r.stderr
    second = watch(cli, mid + 1, end)
    assert first + second == full
    bad = cli("watch", "--from-block", "-1")
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    bad = cli("watch", "--from-block", "9", "--to-block", "3")
    assert_error(bad, ExitCode.INPUT, "--to-block")


def test_watch_hostile_answer_text_is_escaped(cli, system6, w3):
    """Chain text is data: exact in JSON, and in the table neither rich markup nor terminal
    escape sequences."""
    from rich.console import Console

    from dtnsess_cli.cli.watch import _Table
    from dtnsess_cli.render import Renderer

    sid = create_via_cli(cli, "20")
    b0 = w3.eth.block_number + 1
    rid = ask(cli, "say something nasty", sid)
    answer(system6, rid, HOSTILE)
    r2 = ask(cli, "fail nastily", sid)
    answer(system6, r2, failure="[red]x[/red]\x1b[31m")
    evs = watch(cli, b0, w3.eth.block_number)
    done = [e for e in evs if e["event"] == "AIRequestCompleted"]
    assert done[0]["answer"] == HOSTILE and done[1]["message"] == "[red]x[/red]\x1b[31m"
    ui = Renderer()
    buf = io.StringIO()
    ui.out = Console(file=buf, width=300, force_terminal=False, color_system=None)
    table = _Table(ui, system6.manager.address, None, None)
    for e in evs:
        table.show(e)
    table.state = {"head": w3.eth.block_number}
    ui.out.print(table._render())
    shown = buf.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown
    assert "[bold red]boom[/]" in shown and "\\x1b[2J" in shown
    assert "[red]x[/red]\\x1b[31m" in shown and "failed" in shown and "succeeded" in shown


# ------------------------------------------------------------------ live: a real process


def script_env(url: str, system) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTNSESS_")}
    env.update(DTNSESS_RPC_URL=url, DTNSESS_CONTRACT=system.manager.address,
               DTNSESS_CHAIN_ID="31337", DTNSESS_RPC_RETRY_SECONDS="1",
               DTNSESS_RPC_TIMEOUT="5", PYTHONUNBUFFERED="1")
    return env


class Reader:
    """The stdout lines of a process as they arrive (a thread, so a test can wait on them)."""

    def __init__(self, stream) -> None:
        self.lines: list = []
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream) -> None:
        for ln in stream:
            self.lines.append(ln)

    def wait_for(self, pred, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = [json.loads(ln) for ln in list(self.lines)]
            if pred(evs):
                return evs
            time.sleep(0.05)
        raise AssertionError(f"not seen in {timeout}s: {self.lines}")


def _start_watch(url: str, system, tmp_path, *args: str) -> subprocess.Popen:
    assert SCRIPT.is_file()
    return subprocess.Popen([str(SCRIPT), "watch", "--interval", "0.2", *args],
                            env=script_env(url, system), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stop(p: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    p.send_signal(sig)
    try:
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    return err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_watch_live_then_sigint_prints_the_resume_block(cli, system6, anvil, w3, tmp_path, sig):
    """Events as they arrive; Ctrl-C (or a supervisor's SIGTERM) ends it: exit 0, no traceback,
    the block to resume from on stderr."""
    sid = create_via_cli(cli, "20")
    # stdout is a pipe: JSON lines without --json
    p = _start_watch(anvil.url, system6, tmp_path)
    try:
        out = Reader(p.stdout)
        time.sleep(1.5)  # the watch has read its start block
        rid = ask(cli, "live", sid)
        answer(system6, rid, "live answer")
        evs = out.wait_for(lambda evs: any(e["event"] == "AIResponseReceived" for e in evs))
        head = w3.eth.block_number
        time.sleep(0.6)  # a poll past the head
    finally:
        err = _stop(p, sig)
    assert p.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert [e["event"] for e in evs] == ["AIRequestSubmitted", "AIRequestCompleted",
                                         "AIResponseReceived"]
    assert evs[1]["answer"] == "live answer" and evs[0]["request_id"] == rid
    assert f"resume with --from-block {head + 1}" in err
    assert all(json.loads(ln) for ln in out.lines)  # stdout: JSON lines only


def test_watch_outlives_a_node_outage(cli, system6, anvil, w3, tmp_path):
    sid = create_via_cli(cli, "20")
    with FaultProxy(anvil.url) as proxy:
        p = _start_watch(proxy.url, system6, tmp_path, "--json")
        try:
            out = Reader(p.stdout)
            time.sleep(1.5)
            proxy.fault("*", "http_before", status=503, times=10_000)
            assert proxy.wait_fired(1, timeout=20)
            rid = ask(cli, "during the outage", sid)  # straight to Anvil
            answer(system6, rid, "after the outage")
            time.sleep(2.5)  # reads retry for 1 s, then the watch says so and keeps polling
            assert out.lines == []
            proxy.clear()
            evs = out.wait_for(lambda evs: len(evs) == 3)
        finally:
            err = _stop(p)
    assert p.returncode == 0, err
    assert err.count("still watching") == 1 and "answers again" in err
    assert "Traceback" not in err
    assert [e["request_id"] for e in evs] == [rid] * 3
    assert evs[1]["answer"] == "after the outage"


def test_watch_on_a_terminal_draws_the_live_table(cli, system6, anvil, w3, tmp_path):
    """On a terminal (a pty): the rich table with the request, its status and the answer's
    preview, escaped; Ctrl-C ends it with exit 0 and the resume block, no traceback."""
    import pty
    import select

    sid = create_via_cli(cli, "20")
    b0 = w3.eth.block_number + 1
    rid = ask(cli, "table", sid)
    answer(system6, rid, "[b]not bold[/b] \x1b[31mred")
    master, slave = pty.openpty()
    env = dict(script_env(anvil.url, system6), COLUMNS="160", LINES="40", TERM="xterm")
    p = subprocess.Popen([str(SCRIPT), "watch", "--interval", "0.2", "--from-block", str(b0)],
                         env=env, cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""

    def read_for(seconds: float) -> None:
        nonlocal seen
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    return

    try:
        deadline = time.monotonic() + 30
        while b"not bold" not in seen and time.monotonic() < deadline:
            read_for(0.2)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        read_for(0.5)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    shown = seen.decode("utf-8", "replace")
    assert p.returncode == 0, shown
    assert "[b]not bold[/b] \\x1b[31mred" in shown  # neither markup nor an escape sequence
    assert rid[:10] in shown and "succeeded" in shown
    assert "resume with --from-block" in shown and "Traceback" not in shown


def test_follow_commands_never_import_web3(cli, system6, w3, tmp_path):
    """`watch` and `response --wait` stay on the fast command path (tests/test_command_imports)."""
    from test_command_imports import PROBE

    sid = create_via_cli(cli, "20")
    b0 = w3.eth.block_number + 1
    rid = ask(cli, "fast", sid)
    answer(system6, rid, "quick")
    env = script_env(cli.url, system6)
    for args in (["watch", "--from-block", str(b0), "--to-block", str(w3.eth.block_number),
                  "--json"], ["response", rid, "--wait", "--timeout", "5", "--json"]):
        p = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        report = json.loads(p.stderr.strip().splitlines()[-1].split("HEAVY ", 1)[1])
        assert report["rc"] in (0, None), p.stderr
        assert report["heavy"] == [], f"dtnsess {' '.join(args)} imported {report['heavy']}"
        assert "quick" in p.stdout


def test_jsonrpc_deadline_bounds_a_read_and_its_retries(anvil):
    """The layer under the waits: a read on a hanging node ends at ``deadline`` although its
    own timeout (30 s) and retry budget (20 s) are longer; without one it is unchanged."""
    from dtnsess_cli.chain.errors import RpcTransportError
    from dtnsess_cli.chain.jsonrpc import JsonRpc

    with FaultProxy(anvil.url) as proxy:
        rpc = JsonRpc(proxy.url, timeout=30, retry_seconds=20)
        assert int(rpc.call("eth_blockNumber"), 16) >= 0
        proxy.fault("*", "hang_before", times=10_000, hang=60)
        rpc.deadline = time.monotonic() + 1.0
        started = time.monotonic()
        with pytest.raises(RpcTransportError) as exc:
            rpc.call("eth_blockNumber")
        assert time.monotonic() - started < 1.6
        assert "timed out" in exc.value.reason
        proxy.clear()
        rpc.deadline = None
        assert int(rpc.call("eth_blockNumber"), 16) >= 0
        rpc.close()
