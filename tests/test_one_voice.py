"""One voice across commands (issue 15): hints only where they apply, dry runs say "would",
addresses never split, one JSON vocabulary (docs/json.md) for every command's --json."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from cli_helpers import create_via_cli, load_json
from dtnsess_cli.errors import ExitCode
from helpers import fund

DOC = Path(__file__).resolve().parents[1] / "docs" / "json.md"


@pytest.mark.parametrize("args,hint", [(["create", "-5"], True), (["renew", "1", "-5"], True),
                                       (["stats", "-1"], False), (["close", "-1"], False)])
def test_the_amounts_hint_only_where_amounts_go(args, hint, capsys, monkeypatch, tmp_path):
    """"amounts are positive" was shown on session ids and block ranges too."""
    from dtnsess_cli.cli import main

    monkeypatch.chdir(tmp_path)
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == int(ExitCode.USAGE), err
    assert ("amounts are positive" in err) is hint, err


def test_dry_runs_say_would(make_cli, system6, user):
    """A dry run said "session 1 created" and "added to the pool"."""
    cli = make_cli(system6)
    fund(system6, user, 100)  # approved: the create itself is simulated
    r = cli("create", "20", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "would create session" in r.stdout and "created" not in r.stdout
    sid = create_via_cli(cli, "20")
    r = cli("pool", "add", str(sid), "--dry-run", role="user")
    if r.exit_code == 0:  # only the owner may pool: either way nothing may claim it was done
        assert "would add session" in r.stdout and "added to" not in r.stdout
    r = cli("approve", "5", "--dry-run")
    assert r.exit_code == 0 and "would set the allowance to" in r.stdout, r.output


def test_a_request_shows_its_fee_with_the_token(make_cli, system6, user):
    """"DTN fee: 0.161" named no token, and a dry run said "session: None"."""
    cli = make_cli(system6)
    fund(system6, user, 100)
    create_via_cli(cli, "20")
    r = cli("request", "hello", "--dry-run")
    assert r.exit_code == 0 and "None" not in r.stdout, r.output
    assert re.search(r"^  DTN fee: [0-9.]+ USDT$", r.stdout, re.M), r.stdout
    r = cli("request", "hello", "--yes")
    assert r.exit_code == 0, r.output
    assert re.search(r"^  DTN fee: [0-9.]+ USDT$", r.stdout, re.M), r.stdout


def test_a_warning_is_one_line_in_a_pipe(capsys):
    """A warning was wrapped at 80 columns on stderr when it was not a terminal (a cron log,
    README's walkthrough), unlike info lines and errors."""
    from dtnsess_cli.render import Renderer

    Renderer().warn("x" * 150 + " end")
    assert capsys.readouterr().err == "warning: " + "x" * 150 + " end\n"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("env", [{}, {"NO_COLOR": "1"}, {"TERM": "dumb"}, {"TERM": "unknown"},
                                 {"FORCE_COLOR": "1"}, {"FORCE_COLOR": ""},
                                 {"TTY_COMPATIBLE": "0"}, {"TTY_COMPATIBLE": "1"}])
@pytest.mark.parametrize("tty", [True, False])
def test_a_warning_looks_as_rich_drew_it(env, tty, monkeypatch):
    """Warnings are written without rich (issue 19), yet coloured exactly when and as rich
    coloured them: on a terminal, honouring NO_COLOR, FORCE_COLOR, TTY_COMPATIBLE, TERM=dumb."""
    from rich.console import Console

    from dtnsess_cli.render import Renderer

    for k in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    err, ref = (_Tty(), _Tty()) if tty else (io.StringIO(), io.StringIO())
    monkeypatch.setattr(sys, "stderr", err)
    ui = Renderer()
    ui.warn("x" * 150 + " end")
    ui.info("a note, :smile: [b]as written[/b]")
    Console(file=ref, highlight=False).print("warning: " + "x" * 150 + " end", style="yellow",
                                             markup=False, highlight=False, soft_wrap=True)
    # NOTE: rich turned ":smile:" into an emoji even with markup off; now it prints as written
    assert err.getvalue() == ref.getvalue() + "a note, :smile: [b]as written[/b]\n"
    forced = env in ({"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"})
    assert ("\x1b[33m" in err.getvalue()) == (forced or tty and env == {})  # both are tested


def test_the_wait_status_only_on_a_terminal(monkeypatch):
    """The receipt wait's status: nothing at all in a pipe (or on TERM=dumb); on a terminal one
    line, which a note during the wait prints above, and which is gone after the wait."""
    from dtnsess_cli.render import Renderer

    monkeypatch.setenv("TERM", "xterm")
    for k in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(k, raising=False)
    for stream, shown in ((io.StringIO(), False), (_Tty(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        ui = Renderer()
        with ui.status("create: waiting for 0x12345678… to be mined"):
            ui.info("a note")
        blank = " " * len("create: waiting for 0x12345678… to be mined")
        assert stream.getvalue() == (
            "create: waiting for 0x12345678… to be mined"
            f"\r{blank}\ra note\ncreate: waiting for 0x12345678… to be mined\r{blank}\r"
            if shown else "a note\n")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setattr(sys, "stderr", _Tty())
    ui = Renderer()
    with ui.status("waiting"):
        pass
    assert sys.stderr.getvalue() == ""


def test_balance_never_splits_the_address(make_cli, system6, user):
    cli = make_cli(system6)
    r = cli("balance")
    assert r.exit_code == 0 and f"Balances of {user}" in r.stdout, r.stdout


# ----------------------------------------------------------------------------- docs/json.md


def documented_names() -> set:
    """Every name in the first column of docs/json.md's tables (`name`)."""
    names = set()
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*`([a-z0-9_]+)`", line)
        if m:
            names.add(m.group(1))
    return names


def keys_of(doc, out: set) -> set:
    """Every key of a JSON document, except inside an event's or a call's decoded arguments
    (their names are the contract's) and the rows of `config show` (values by name)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(k)
            if k not in ("args", "return_value"):
                keys_of(v, out)
    elif isinstance(doc, list):
        for v in doc:
            keys_of(v, out)
    return out


def test_every_json_field_is_documented(make_cli, system6, user, stranger):
    """Runs the commands a script uses with --json and checks every field name against
    docs/json.md: a field that drifts (`fee` here, `fee_eth` there) or is new fails until it is
    documented there."""
    cli = make_cli(system6)
    fund(system6, user, 200, approve=False)
    docs = []

    def run(*args, role="user", ok=True):
        r = cli(*args, "--json", role=role)
        assert (r.exit_code == 0) is ok, r.output
        docs.append(load_json(r))
        return docs[-1]

    created = run("create", "20", "--yes")
    sid = str(created["session_id"])
    run("create", "20", "--dry-run")
    run("renew", sid, "5", "--yes")
    req = run("request", "hello", "--yes")
    run("response", req["request_id"])
    run("requests")
    run("sessions")
    run("stats", sid)
    run("balance")
    run("approve", "1", "--yes")
    run("tx", created["transactions"][0]["tx_hash"])
    run("config", "show")
    run("config", "contract")
    run("doctor")
    run("pool", "status")
    run("stats", "999", ok=False)  # an error document
    run("close", sid, "--yes", ok=False)  # refused while a request is pending: error
    names = documented_names()
    assert names, "docs/json.md has no field table"
    found = set()
    for d in docs:
        keys_of(d, found)
    # an amount's `NAME_units` twin is documented with NAME (docs/json.md, conventions)
    missing = sorted(k for k in found - names
                     if not (k.endswith("_units") and k[:-len("_units")] in names))
    assert not missing, f"--json fields not documented in docs/json.md: {missing}"


# ----------------------------------------------------------------------------- README


def readme_commands() -> list:
    """Every `$ dtnsess ...` line of README's console blocks (not those run with a key in the
    environment, a shell's `echo`, or Base)."""
    readme = DOC.parents[1] / "README.md"
    out, inblock = [], False
    for n, line in enumerate(readme.read_text().splitlines(), 1):
        if line.startswith("```"):
            inblock = not inblock
        elif inblock and line.startswith("$ dtnsess ") and "--network base" not in line:
            out.append((n, line[2:]))
    return out


@pytest.mark.parametrize("n,line", readme_commands())
def test_readme_commands_parse_as_written(n, line):
    """Each README command line is a valid command line today: its command, arguments and
    options exist, and a request's --value is one the CLI accepts (the settle walkthrough used
    `--value 5000`, refused since). tests/test_readme_walkthrough.py runs them all, in order, on
    a devnet; this one is the quick check."""
    import shlex

    import typer

    from dtnsess_cli.cli import app
    from dtnsess_cli.manager.base import callback_gas_warning
    from dtnsess_cli.units import parse_eth_value

    argv = shlex.split(line, comments=True)[1:]
    ctx = typer.main.get_command(app).make_context("dtnsess", list(argv))
    while hasattr(ctx.command, "resolve_command"):  # a group (typer vendors click)
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
        name, sub, rest = ctx.command.resolve_command(ctx, [*protected, *ctx.args])
        ctx = sub.make_context(name, rest, parent=ctx)
    value = ctx.params.get("value")
    if ctx.info_name == "request" and value is not None:
        callback_gas_warning(parse_eth_value(value, what="--value"))  # raises below the floor
