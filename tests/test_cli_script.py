"""The installed console script `.venv/bin/dtnsess` in a subprocess: the main flow once more,
errors, and a `--help` that does not import web3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dtnsess_cli.errors import ExitCode
from dtnsess_cli.devnet.localdtn import respond
from helpers import bal, dtn_balance, fund, next_second, session

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")

SCRIPT = Path(sys.executable).parent / "dtnsess"


def _base_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DTNSESS_") and k not in ("ETH_RPC_URL", "FOUNDRY_DIR")}
    env.update(HOME=str(tmp_path), DTNSESS_LOCK_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture
def script(anvil, system6, private_keys, tmp_path):
    """``script("create", "50", "--json")`` -> CompletedProcess of the console script, as user."""
    assert SCRIPT.is_file(), f"{SCRIPT} is not installed (pip install -e .)"
    env = _base_env(tmp_path)
    env.update(DTNSESS_RPC_URL=anvil.url, DTNSESS_CONTRACT=system6.manager.address,
               DTNSESS_CHAIN_ID="31337", DTNSESS_PRIVATE_KEY=private_keys[1])

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        p = subprocess.run([str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=timeout)
        assert "Traceback" not in p.stderr + p.stdout, p.stderr
        assert private_keys[1][2:] not in p.stderr + p.stdout
        return p

    return run


def ok_json(p: subprocess.CompletedProcess):
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stderr}"
    return json.loads(p.stdout)


def test_main_flow_through_the_console_script(script, system6, user, w3):
    fund(system6, user, 100, approve=False)
    start = bal(system6, user)

    out = ok_json(script("create", "25.5", "--json"))
    sid = out["session_id"]
    assert start - bal(system6, user) == 25_500_000 == int(out["amount_units"])

    rid = ok_json(script("request", "What is DTN?", "--json"))["request_id"]
    assert ok_json(script("response", rid, "--json"))["status"] == "pending"
    respond(system6, bytes.fromhex(rid[2:]), worker=system6.worker, node=system6.node_id,
            text="A network of trusted AI nodes.")
    ans = ok_json(script("response", rid, "--json"))
    assert (ans["status"], ans["answer"]) == ("succeeded", "A network of trusted AI nodes.")

    # a second request, answered by a node while the script waits
    next_second(w3)
    m = system6.manager.functions

    def node():
        for _ in range(300):
            ids, total = m.getUserRequests(user, 0, 10).call()
            if total == 2:
                time.sleep(1.0)
                respond(system6, bytes(ids[1]), worker=system6.worker, node=system6.node_id,
                        text="waited for")
                return
            time.sleep(0.05)

    t = threading.Thread(target=node, daemon=True)
    t.start()
    p = script("request", "and now?", "--wait", "--timeout", "30")
    t.join(20)
    assert p.returncode == 0, p.stderr
    assert "succeeded" in p.stdout and "waited for" in p.stdout

    stats = ok_json(script("stats", str(sid), "--json"))
    assert stats["request_count"] == 2 and stats["pending_requests"] == 0
    remaining = dtn_balance(system6, sid)
    assert int(stats["dtn_balance_units"]) == remaining < 25_500_000
    p = script("stats", str(sid))
    assert p.returncode == 0 and f"Session {sid}" in p.stdout

    before = bal(system6, user)
    out = ok_json(script("close", str(sid), "--json"))
    assert out["closed"][0]["refund_units"] == str(remaining)
    assert bal(system6, user) - before == remaining
    assert session(system6, sid)["active"] is False


def test_console_script_errors(script, system6):
    p = script("stats", "999")
    assert p.returncode == int(ExitCode.INPUT)
    assert p.stdout == "" and p.stderr.startswith("error: ") and "no such session" in p.stderr
    p = script("create", "--", "1.0000001")
    assert p.returncode == int(ExitCode.INPUT) and "fractional digits" in p.stderr
    p = script("balance", "--chain-id", "1")
    assert p.returncode == int(ExitCode.CHAIN) and p.stderr.startswith("error: ")
    p = script("no-such-command")
    assert p.returncode == int(ExitCode.USAGE)
    assert p.stderr.splitlines()[0] == "error: No such command 'no-such-command'."


@pytest.mark.parametrize("args, first_line", [
    (("create", "-5"), "error: No such option: -5"),
    (("create",), "error: Missing argument 'amount'."),
    (("balance", "--chain-id", "x"), "error: Invalid value for '--chain-id': "),
    (("cleanup", "--max", "0"), "error: Invalid value for '--max': "),
])
def test_usage_errors_are_one_line(script, args, first_line):
    """Click's usage errors read like every other error: one line and a hint, exit 2, no box."""
    p = script(*args)
    assert p.returncode == int(ExitCode.USAGE)
    lines = p.stderr.splitlines()
    assert lines[0].startswith(first_line) and lines[1].startswith("hint: ") and len(lines) == 2
    assert p.stdout == "" and "╭" not in p.stderr


def test_help_does_not_import_web3(tmp_path):
    env = _base_env(tmp_path)
    p = subprocess.run([str(SCRIPT), "--help"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "Usage" in p.stdout and "create" in p.stdout
    code = ("import sys\n"
            "from dtnsess_cli.cli import main\n"
            "for argv in (['--help'], ['create', '--help'], ['request', '--help'],\n"
            "             ['pool', '--help'], ['devnet', '--help']):\n"
            "    try:\n"
            "        rc = main(argv)\n"
            "    except SystemExit as exc:\n"
            "        rc = exc.code\n"
            "    assert rc in (0, None), (argv, rc)\n"
            "print('WEB3', 'web3' in sys.modules, 'eth_account' in sys.modules)\n"
            # NOTE: rich help (typer.rich_utils, rich.markdown) and typer 0.29's pydantic
            # coercion each cost ~0.1 s of a 0.12 s budget (bench/startup.py)
            "print('HEAVY', sorted(m for m in ('rich', 'pydantic', 'markdown_it') if m in sys.modules))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-2:] == ["WEB3 False False", "HEAVY []"]


def test_shell_completion_works_without_importing_web3(tmp_path):
    env = _base_env(tmp_path)
    env.update(_DTNSESS_COMPLETE="complete_bash", COMP_WORDS="dtnsess pool a", COMP_CWORD="2")
    p = subprocess.run([str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.split() == ["add"], p.stderr
    code = ("import sys\n"
            "from dtnsess_cli.cli import main\n"
            "try:\n"
            "    main([])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('WEB3', 'web3' in sys.modules, 'pydantic' in sys.modules, 'rich' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.strip().splitlines()[-1] == "WEB3 False False False", p.stderr


def test_a_command_builds_only_itself(tmp_path):
    """`dtnsess close 1` turns only `close` into a Click command (Typer otherwise inspects all
    ~40 commands first, ~40 ms of every run); global options before the command, its own help
    and an unknown command still work, and the root help still lists every command."""
    from dtnsess_cli.cli import app
    from dtnsess_cli.cli.root import _app_for

    for args, only in ((["close", "1"], "close"), (["--rpc-url", "http://x", "--json", "close"], "close"),
                       (["--network=local", "pool", "add", "3"], "pool")):
        narrow = _app_for(args)
        names = [c.name for c in narrow.registered_commands] + [g.name for g in narrow.registered_groups]
        assert names == [only], args
    for args in (["--help"], ["--help", "close"], ["no-such-command"], [], ["--json"], ["--", "close"]):
        assert _app_for(args) is app, args
    env = _base_env(tmp_path)
    env.update(DTNSESS_RPC_URL="http://127.0.0.1:9", DTNSESS_RPC_RETRY_SECONDS="0")
    run = lambda *a: subprocess.run([str(SCRIPT), *a], cwd=tmp_path, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    p = run("--json", "close", "--help")
    assert p.returncode == 0 and p.stdout.startswith("Usage: dtnsess close [OPTIONS]")
    p = run("--rpc-url", "http://127.0.0.1:9", "--contract", "0x" + "12" * 20, "stats", "1")
    assert p.returncode == int(ExitCode.RPC) and p.stderr.startswith("error: RPC node")
    p = run("stat", "1")
    assert p.returncode == int(ExitCode.USAGE) and "Did you mean 'stats'" in p.stderr
    p = run("--help")
    assert all(f"  {c} " in p.stdout for c in ("close", "request", "pool", "devnet", "keeper"))


def test_the_script_skips_teardown_and_loses_nothing(anvil, system6, private_keys, user, tmp_path):
    """issue 19, third round: after a command the fast path ran, the script ends without
    Python's teardown (~15 ms). Output through a pipe, block-buffered (no PYTHONUNBUFFERED), is
    whole, the exit code is the command's, and the journal's connection was closed first: no
    -wal or -shm file is left beside it, and its entry is there."""
    import sqlite3

    fund(system6, user, 100, approve=False)
    env = {k: v for k, v in _base_env(tmp_path).items() if k != "PYTHONUNBUFFERED"}
    env.update(DTNSESS_RPC_URL=anvil.url, DTNSESS_CONTRACT=system6.manager.address,
               DTNSESS_PRIVATE_KEY=private_keys[1])

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)

    out = ok_json(run("create", "20", "--json"))  # approve + create: two sends
    state = tmp_path / ".local" / "state" / "dtnsess"
    left = sorted(p.name for p in state.iterdir() if p.name.startswith("journal"))
    assert left == ["journal.sqlite3"], left
    with sqlite3.connect(state / "journal.sqlite3") as db:
        hashes = {r[0] for r in db.execute("SELECT tx_hash FROM txs")}
    sent = {t["tx_hash"].lower() for t in out["transactions"]}
    assert len(sent) == 2 and sent <= hashes
    # a long human output (every session, a table) arrives whole
    for _ in range(3):
        ok_json(run("create", "10", "--json"))
    p = run("sessions")
    assert p.returncode == 0 and p.stdout.count("\n") >= 4, p.stdout
    assert p.stdout.endswith("\n")
    p = run("close", "999")  # the fast path's error: its exit code
    assert p.returncode == int(ExitCode.INPUT) and p.stderr.startswith("error: ")


@pytest.mark.parametrize("what", ["atexit", "thread"])
def test_the_script_keeps_the_normal_exit_for_what_wants_it(tmp_path, what):
    """A callback registered with atexit, or a thread that is not a daemon, gets the normal
    exit (it runs / it finishes) after a fast-path command."""
    setup = {"atexit": "import atexit\natexit.register(print, 'atexit ran', flush=True)\n",
             "thread": "import threading, time\n"
                       "threading.Thread(target=lambda: (time.sleep(0.5), "
                       "print('thread done', flush=True))).start()\n"}[what]
    code = (setup + "import sys\nfrom dtnsess_cli.cli import console\n"
            "sys.argv = ['dtnsess', 'stats', 'x']\nconsole()\n")
    env = _base_env(tmp_path)
    env.update(DTNSESS_RPC_URL="http://127.0.0.1:9", DTNSESS_CONTRACT="0x" + "11" * 20)
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == int(ExitCode.INPUT), p.stderr  # 'x' is not a session id
    assert p.stdout.strip() == {"atexit": "atexit ran", "thread": "thread done"}[what]


def test_the_script_with_a_closed_stdout_exits_without_a_traceback(tmp_path):
    """Started with stdout closed (cron's `>&-`): sys.stdout is None; the exit still works."""
    env = _base_env(tmp_path)
    env.update(DTNSESS_RPC_URL="http://127.0.0.1:9", DTNSESS_CONTRACT="0x" + "11" * 20)
    p = subprocess.run(["sh", "-c", f'"{SCRIPT}" stats x >&-'], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == int(ExitCode.INPUT), p.stderr
    assert "Traceback" not in p.stderr and p.stderr.startswith("error: ")
