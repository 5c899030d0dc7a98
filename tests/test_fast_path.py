"""The hot commands' start-up path without Typer (issue 19, item 4; src/dtnsess_cli/cli/fastpath.py).

Its parser is a strict subset of Click's: for any command line it either declines (the Typer
path runs) or gives the body exactly what the Typer command gives it (arguments, merged global
options, the journal's intent); its spec is generated from the Typer app and must be fresh; and
a run gives the same output, exit code and journal entries on both paths.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtnsess_cli.cli import _typer, fastpath as fast
from dtnsess_cli.cli._fastspec import COMMANDS, ROOT
from helpers import fund, rpc


def test_the_spec_is_generated_from_the_typer_app():
    """Like abi/'s freshness check: an option added to a Typer command reaches the fast path
    (or the test says to regenerate), never drifts from it."""
    spec = Path(fast.__file__).with_name("_fastspec.py")
    assert spec.read_text() == fast.spec_text(), "stale: run python -m dtnsess_cli.cli.fastpath"


def _typer_parse(argv: list):
    """What the Typer path hands a command body for ``argv``: (body name, kwargs, g, intent),
    or None when Click refuses the command line (or runs no body: help, version)."""
    assert not any("completion" in a for a in argv), "Click would install it in $HOME"
    root = _typer()
    seen = []

    def capture(body, kwargs, g, intent):
        seen.append((body.func.__name__, kwargs, g, intent))

    with mock.patch.object(root, "invoke", capture), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        root.main(list(argv))
    return seen[0] if seen else None


def _fast_parse(argv: list):
    parsed = fast.parse(list(argv), environ={})
    if parsed is None:
        return None
    name, kwargs, g, intent = parsed
    return fast.FAST[name], kwargs, g, intent


def _same(argv: list) -> bool:
    """Assert the fast parse is a decline or the Typer path's own; True when it parsed."""
    mine = _fast_parse(argv)
    if mine is not None:
        assert mine == _typer_parse(argv), argv
    return mine is not None


@pytest.mark.parametrize("argv", [
    ["close", "1", "--yes"], ["close", "1", "-y", "--json"], ["--json", "close", "7", "--yes"],
    ["close", "--all", "--dry-run"], ["close", "3", "--cancel"], ["close"],
    ["--rpc-url", "http://127.0.0.1:1", "close", "--nonce", "0", "2", "--gas-limit=90000"],
    ["--max-fee", "3gwei", "close", "1", "--priority-gas-price", "1gwei"],
    ["request", "hi", "--yes"], ["request", "hi there", "--session=4", "--yes", "--json"],
    ["request", "x", "--namespace", "a", "--namespace=b", "--node", "n.1", "--timeout", "2.5"],
    ["request", "x", "--model", "model.system.openai-gpt-5", "--value", "5e5", "--wait",
     "--timeout=.5"],
    ["request", "--sessions", "3", "x"], ["-y", "request", "hi", "--from", "0xab", "--unlocked"],
    ["create", "20", "--approve-max", "--yes"], ["renew", "1", "5", "--chain-id", "31337"],
    ["stats", "1"], ["balance", "--user", "0x" + "11" * 20], ["sessions"],
    ["requests", "--pending", "--json"], ["--account", "me", "--keystore", "k", "balance",
                                         "--password-file", "p"],
])
def test_the_fast_path_parses_what_typer_parses(argv):
    assert _same(argv), f"the fast path declined {argv}"


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["close", "--help"], ["close", "-h"], ["--version"], ["--version", "close"],
    ["close", "--", "1"], ["close", "-1"], ["create", "-5"], ["renew", "1", "-5"], ["close", "-yy"],
    ["close", "1", "--yes", "--yes"], ["--json", "close", "1", "--json"],
    ["--max-fee", "1", "close", "1", "--gas-price", "2"], ["close", "1", "2"], ["renew", "1"],
    ["stats"], ["request", "hi", "--timeout", "nan"], ["request", "hi", "--timeout", "1e3"],
    ["request", "hi", "--sessions", "+3"], ["close", "1", "--nonce", "-1"],
    ["close", "1", "--gas-limit", "0"], ["request", "--file", "p.txt"], ["close", "1", "--yes=1"],
    ["close", "1", "--no-such"], ["close", "1", "--rpc-url"], ["pool", "status"], ["stat", "1"],
    ["approve", "5"], ["--show-completion", "close"],
    # int() refuses a str of over 4,300 digits: a ValueError here was a traceback
    ["close", "1", "--nonce", "1" * 5000], ["--chain-id", "9" * 81, "close", "1"],
])
def test_the_fast_path_declines_on_any_doubt(argv):
    assert _fast_parse(argv) is None


def test_a_completion_run_goes_to_click():
    assert fast.parse(["close", "1"], environ={"_DTNSESS_COMPLETE": "complete_bash"}) is None
    assert fast.parse(["close", "1"], environ={}) is not None


VALUES = ["1", "0", "42", "007", "1.5", ".5", "5.", "", "abc", "hi there", "0x10", "300000",
          "a=b", "=", " 1"]
ODD_VALUES = ["-1", "-5", "1e3", "nan", "inf", "+3", "\u0663", "--json", "-y", "--", "-"]
ODD_OPTIONS = ["--nope", "-x", "-yy", "-Y", "-h", "--help", "--version", "--", "-", "--json=1",
               "--yes=true", "--all=", "--JSON"]


TYPED = {"int": ["1", "0", "42", "007", "31337"], "float": ["1.5", ".5", "5.", "2", "300"]}


def _kinds(spec: dict) -> dict:
    return {o: p[0] for p in spec.values() if p[0] != "arg" for o in p[1]}


def _types(spec: dict) -> dict:
    return {o: p[2] for p in spec.values() for o in p[1]}


@st.composite
def command_lines(draw):
    """Mostly command lines a person would type; one token in six or so is odd."""
    name = draw(st.sampled_from(sorted(fast.FAST)))
    kinds = {**_kinds(ROOT), **_kinds(COMMANDS[name])}
    types = {**_types(ROOT), **_types(COMMANDS[name])}
    odd = lambda: draw(st.integers(0, 5)) == 0  # noqa: E731

    def value(o: str = "") -> str:
        return draw(st.sampled_from(ODD_VALUES if odd() else TYPED.get(types.get(o), VALUES)))

    def option(o: str) -> list:
        if odd():
            o = draw(st.sampled_from(ODD_OPTIONS + [o]))
            return draw(st.sampled_from([[o], [o, value()], [f"{o}={value()}"]]))
        if kinds[o] == "flag":
            return [o]
        return draw(st.sampled_from([[o, value(o)], [f"{o}={value(o)}"]]))

    # NOTE: never the root's --install-completion: Click would install it in $HOME
    root = sorted(o for o, k in _kinds(ROOT).items() if k != "never")
    own = sorted(set(_kinds(COMMANDS[name])) | set(root))  # its own and the global options
    before = [t for o in draw(st.lists(st.sampled_from(root), max_size=3, unique=True))
              for t in option(o)]
    args = [p[1][0] for p in COMMANDS[name].values() if p[0] == "arg"] + (["extra"] if odd() else [])
    words = [[value(a)] for a in args][:draw(st.integers(0, len(args)))]
    words += [option(o) for o in draw(st.lists(st.sampled_from(own), max_size=4, unique=True))]
    return before + [name] + [t for w in draw(st.permutations(words)) for t in w]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_the_fast_path_declines_or_agrees_with_click(argv):
    """Options in any order, globals before and after the command, `=` forms, odd values,
    negative numbers, repeated and unknown options."""
    _same(argv)


# --------------------------------------------------------------- end to end, on both paths

# what differs between two runs from the same state: hashes and ids (a block's time), the
# block a transaction lands in, its fee (the base fee moves) and gas (storage the first run
# left warm or not: a request's id is new each second)
NOISE = [(re.compile(r"0x[0-9a-f]{64}"), "0xH"),
         (re.compile(r"(block|fee|at most|gas|gas ~) [0-9.]+"), r"\1 N"),
         (re.compile(r'("[a-z_]*(?:block|fee|price|time|_at|gas)[a-z_]*": )("[^"]*"|[0-9.]+)'),
          r'\1"N"')]


def _quiet(text: str) -> str:
    for pattern, repl in NOISE:
        text = pattern.sub(repl, text)
    return text


@pytest.fixture
def both(anvil, w3, system6, private_keys, tmp_path):
    """``both(*args)``: run ``dtnsess ARGS`` as a script on the fast path and on the Typer path,
    from the same chain state (a snapshot, reverted between); assert the same exit code,
    stdout, stderr (``NOISE`` aside) and journal entries.
    Returns the fast path's (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DTNSESS_", "ETH_")) and k != "FOUNDRY_DIR"}
    env.update(HOME=str(tmp_path), DTNSESS_LOCK_DIR=str(tmp_path), DTNSESS_RPC_URL=anvil.url,
               DTNSESS_CONTRACT=system6.manager.address, DTNSESS_CHAIN_ID="31337",
               DTNSESS_PRIVATE_KEY=private_keys[1])

    def one(args: tuple, typer_path: bool, state: Path) -> tuple:
        # NOTE: each its own HOME and lock dir too: a first run leaves hints a second uses
        e = dict(env, DTNSESS_STATE_DIR=str(state), HOME=str(state), DTNSESS_LOCK_DIR=str(state),
                 **({"DTNSESS_TYPER_PATH": "1"} if typer_path else {}))
        p = subprocess.run([sys.executable, "-m", "dtnsess_cli.cli", *args], cwd=tmp_path, env=e,
                           capture_output=True, text=True, timeout=120)
        rows = []
        if (state / "journal.sqlite3").exists():
            db = sqlite3.connect(state / "journal.sqlite3")
            rows = [(d, json.loads(i), s) for d, i, s in db.execute(
                "SELECT description, intent, status FROM txs ORDER BY nonce")]
            db.close()
        return p.returncode, _quiet(p.stdout), _quiet(p.stderr), rows

    runs = iter(range(1000))

    def go(*args: str, fast_path: bool = True) -> tuple:
        assert (fast.parse(list(args), environ={}) is not None) is fast_path, args
        n = next(runs)
        snap = rpc(w3, "evm_snapshot")
        typer_run = one(args, True, tmp_path / f"typer{n}")
        rpc(w3, "evm_revert", snap)
        fast_run = one(args, False, tmp_path / f"fast{n}")
        assert fast_run == typer_run, args
        return fast_run

    return go


def test_close_and_request_behave_the_same_on_both_paths(both, system6, user):
    fund(system6, user, 100, approve=False)
    rc, out, _, rows = both("create", "20", "--yes")
    assert rc == 0 and "session 1 created with 20 USDT" in out
    assert [i["argv"] for _, i, _ in rows] == ["dtnsess create 20"] * 2  # approve, create
    assert both("create", "20", "--yes", "--json")[0] == 0  # session 2 (the fast run's stays)
    rc, out, _, rows = both("close", "2", "--yes")
    assert rc == 0 and "closed 1 session" in out and rows[0][1]["argv"] == "dtnsess close 2"
    rc, out, _, rows = both("--json", "request", "hi there", "--yes", "--namespace", "a")
    assert rc == 0 and json.loads(out)["request_id"] and rows[0][1]["argv"] == \
        "dtnsess request 'hi there' --namespace a"
    rc, out, _, rows = both("request", "hi", "--session", "1", "--yes", "--value", "27000")
    assert rc == 0 and out.startswith("request 0xH sent") and rows[0][1]["argv"] == \
        "dtnsess request hi --value 27000 --session 1"
    # refused (a pending request): the same error document, nothing sent
    rc, out, err, rows = both("close", "1", "--dry-run", "--json")
    assert rc == 7 and json.loads(out)["error"] and err.startswith("error: ") and rows == []


def test_errors_behave_the_same_on_both_paths(both, system6, user):
    fund(system6, user, 100, approve=False)
    for args, code in ((("close", "abc", "--yes"), 4), (("close", "--all", "1"), 2),
                       (("close", "--all", "1", "--json"), 2), (("request", "--json"), 2),
                       (("request", "hi", "--session", "abc", "--yes"), 4),
                       (("request", "hi", "--timeout", "0", "--yes", "--json"), 4),
                       (("close", "999999", "--yes", "--json"), 4),
                       (("stats", "999999"), None)):
        rc, out, err, rows = both(*args)
        assert rows == [], (args, rows)  # nothing signed, nothing sent
        assert rc != 0 and err.startswith("error: "), (args, err)
        assert code is None or rc == code, (args, rc, err)
        if "--json" in args:
            assert json.loads(out)["error"] is True
    _, _, err, _ = both("close", "--all", "1")
    assert err == ("error: give a SESSION id or --all (not both; --cancel takes an id)\n"
                   "hint: see 'dtnsess close --help'\n")
    # Click's own errors: the fast path declines, the Typer path prints them
    both("close", "-1", fast_path=False)
    both("close", "1", "2", fast_path=False)
    rc, _, err, _ = both("close", "1", "--nonce", "1" * 5000, fast_path=False)
    assert rc == 2 and err.startswith("error: Invalid value for '--nonce'"), err


def test_the_other_hot_commands_behave_the_same_on_both_paths(both, system6, user):
    fund(system6, user, 100, approve=False)
    both("create", "20", "--yes", "--json")
    both("balance")
    both("sessions", "--json")
    both("requests", "--pending")
    both("stats", "1", "--json")
    rc, out, _, rows = both("renew", "1", "5", "--yes")
    assert rc == 0 and "session 1 renewed: balance 25 USDT" in out, out
    assert {i["argv"] for _, i, _ in rows} == {"dtnsess renew 1 5"}


def _declined_on_a_terminal(args: list, env: dict, cwd) -> tuple:
    """Run ``dtnsess ARGS`` on a pty and end the input (Ctrl-D) at the first question: (exit
    code, what the terminal showed)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "dtnsess_cli.cli", *args], env=env, cwd=cwd,
                         stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen, asked = b"", False
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and p.poll() is None:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
            if b"[y/N]" in seen and not asked:
                os.write(master, b"\x04")
                asked = True
        p.wait(timeout=30)
        try:
            while select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 65536)
        except OSError:
            pass
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    return p.returncode, seen.decode("utf-8", "replace")


def test_a_question_left_unanswered_aborts_on_both_paths(anvil, system6, private_keys, user,
                                                         tmp_path):
    """End of input at the confirmation (Click's Abort, from the prompt typer asks): "aborted",
    exit 13, nothing sent, whichever path parsed the command line."""
    fund(system6, user, 100, approve=False)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DTNSESS_", "ETH_")) and k not in ("FOUNDRY_DIR", "NO_COLOR",
                                                                   "FORCE_COLOR")}
    env.update(HOME=str(tmp_path), DTNSESS_LOCK_DIR=str(tmp_path), DTNSESS_RPC_URL=anvil.url,
               DTNSESS_CONTRACT=system6.manager.address, DTNSESS_PRIVATE_KEY=private_keys[1],
               DTNSESS_STATE_DIR=str(tmp_path / "state"), TERM="xterm")
    for extra in ({}, {"DTNSESS_TYPER_PATH": "1"}):
        rc, shown = _declined_on_a_terminal(["create", "20"], dict(env, **extra), tmp_path)
        assert rc == 13 and "error: aborted" in shown and "Traceback" not in shown, shown
    assert not (tmp_path / "state" / "journal.sqlite3").exists() or not sqlite3.connect(
        tmp_path / "state" / "journal.sqlite3").execute("SELECT * FROM txs").fetchall()


@pytest.mark.parametrize("typer_path", [False, True])
def test_the_switch_to_the_typer_path(typer_path, tmp_path):
    """DTNSESS_TYPER_PATH=1 (tests, debugging) runs a hot command through Typer: the runs
    above compare two paths, not one path twice. A usage error needs no chain."""
    code = ("import sys\nfrom dtnsess_cli.cli import main\nrc = main(['close', '--all', '1'])\n"
            "print(rc, 'typer' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTNSESS_")}
    env.update(HOME=str(tmp_path), **({"DTNSESS_TYPER_PATH": "1"} if typer_path else {}))
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.split() == ["2", str(typer_path)], p.stderr
    assert p.stderr == ("error: give a SESSION id or --all (not both; --cancel takes an id)\n"
                        "hint: see 'dtnsess close --help'\n")
