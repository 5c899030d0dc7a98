"""Text from users and from the chain is never rich markup: prompts, answers, model names, error
text and addresses print exactly as written, in every renderer (tables, key/value lists, plain
lines, errors). A prompt that broke the renderer after it was sent made users pay twice."""

from __future__ import annotations

import re
import threading
import time

import pytest

from cli_helpers import (
    assert_error,
    assert_ok,
    create_via_cli,
    load_json,
)
from dtnsess_cli.errors import ExitCode
from dtnsess_cli.devnet.localdtn import respond
from helpers import fail, fund

HOSTILE = "[/b] close a tag that is not open [bold]and[/] [link=http://x]y[/link] \\[x]"


def _requests_of(system, user):
    ids, total = system.manager.functions.getUserRequests(user, 0, 100).call()
    return [bytes(i) for i in ids]


def _answer_all(system, user, expected: int, text_of, deadline: float = 30.0):
    """A DTN node in a thread: answers each request of ``user`` as it appears."""
    done: list = []

    def run():
        end = time.monotonic() + deadline
        while time.monotonic() < end and len(done) < expected:
            for rid in _requests_of(system, user):
                if rid not in done and system.manager.functions.requests(rid).call()[3] == 1:
                    respond(system, rid, worker=system.worker, node=system.node_id,
                            text=text_of(len(done)))
                    done.append(rid)
            time.sleep(0.1)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, done


def test_a_markup_prompt_prints_its_request_id(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    r = cli("request", HOSTILE, "--yes")
    assert_ok(r)
    (rid,) = _requests_of(system6, user)
    assert f"request 0x{rid.hex()} sent" in r.stdout
    assert "MarkupError" not in r.output


def test_markup_answers_keep_their_brackets(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    t, done = _answer_all(system6, user, 1, lambda i: f"[tester.node1] answer [/b] {HOSTILE}")
    r = cli("request", "hi", "--wait", "--timeout", "30", "--yes")
    t.join(5)
    assert_ok(r)
    assert f"[tester.node1] answer [/b] {HOSTILE}" in r.stdout
    # and `response` later
    r = cli("response", "0x" + done[0].hex())
    assert_ok(r)
    assert "[tester.node1] answer [/b]" in r.stdout


def test_request_file_table_keeps_brackets(make_cli, system6, user, tmp_path):
    cli = make_cli(system6)
    fund(system6, user, 200, approve=False)
    create_via_cli(cli, "20")
    create_via_cli(cli, "20")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("[/b] first\n[bold]second[/bold]\n")
    t, done = _answer_all(system6, user, 2, lambda i: f"[tester.node1] answer {i}")
    r = cli("request", "--file", str(prompts), "--wait", "--timeout", "30", "--yes")
    t.join(5)
    assert_ok(r)
    out = r.stdout
    assert "[tester.node1] answer 0" in out and "[tester.node1] answer 1" in out
    assert "[/b] first" in out and "[bold]second[/bold]" in out
    assert all("0x" + rid.hex() in out for rid in done)


def test_failure_message_with_markup(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    assert_ok(cli("request", "fail me", "--yes"))
    (rid,) = _requests_of(system6, user)
    fail(system6, rid, "[red]model[/] exploded [/b]")
    r = cli("response", "0x" + rid.hex())
    assert r.exit_code == 0, r.output
    assert "message: [red]model[/] exploded [/b]" in r.stdout


def test_model_name_with_markup_in_error_and_config(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    model = "[bold]no[/] such [/b] model"
    r = cli("request", "hi", "--model", model, "--yes")
    line = assert_error(r, ExitCode.REVERTED, "Model does not exist")
    assert model in line
    assert _requests_of(system6, user) == []
    r = cli("config", "show", env={"DTNSESS_MODEL": model})
    assert_ok(r)
    assert model in r.stdout


def test_error_text_with_markup_from_the_node_prints_as_is(make_cli, system6, user):
    """An address argument is echoed in its error; brackets stay."""
    cli = make_cli(system6)
    r = cli("balance", "--user", "[/b]0x12")
    assert_error(r, ExitCode.INPUT, "[/b]0x12")
    r = cli("sessions", "--user", "[red]x[/red]")
    assert_error(r, ExitCode.INPUT, "[red]x[/red]")


def test_renderer_never_parses_markup():
    """The renderer itself, on every shape it draws."""
    import io
    import sys

    from dtnsess_cli.render import Renderer

    buf = io.StringIO()
    old = sys.stdout
    sys.stdout = buf
    try:
        ui = Renderer()
        ui.emit({}, HOSTILE)
        ui.emit({}, ui.kv(f"title {HOSTILE}", [(f"key {HOSTILE}", f"value {HOSTILE}")]))
        ui.emit({}, ui.table(f"t {HOSTILE}", [f"c {HOSTILE}"], [[f"cell {HOSTILE}"]]))
    finally:
        sys.stdout = old
    text = buf.getvalue()
    for prefix in ("", "title ", "key ", "value ", "t ", "c ", "cell "):
        assert prefix + HOSTILE in text, (prefix, text)


# Escape sequences from the chain: an answer that recolours, retitles, clears or rewrites the
# user's terminal (on main 5e555a9 `response` and `request --wait` wrote them raw; only \a \b \r
# were stripped). The terminal gets the text without them; --json keeps the exact content.
ESCAPES = ("\x1b]0;owned title\x07\x1b[31mred\x1b[0m \x1b[2J\x9b2Jcleared \x1b]8;;http://x\x1b\\"
           "link\x1b]8;;\x1b\\ \x1bP+q\x1b\\ \x07\x08\x7f\x85 \u202eevil\nsecond line\ttab")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_escape_sequences_from_the_chain_never_reach_the_terminal(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    t, done = _answer_all(system6, user, 1, lambda i: ESCAPES)
    r = cli("request", "hi", "--wait", "--timeout", "30", "--yes")
    t.join(5)
    assert_ok(r)
    assert not CONTROL.search(r.stdout) and not CONTROL.search(r.stderr), repr(r.stdout)
    assert "red cleared link" in r.stdout and "evil\nsecond line" in r.stdout
    rid = "0x" + done[0].hex()
    shown = cli("response", rid)
    assert_ok(shown)
    assert not CONTROL.search(shown.stdout) and "red cleared link" in shown.stdout
    assert load_json(cli("response", rid, "--json"))["answer"] == ESCAPES  # exact


def test_escape_sequences_in_a_node_message_and_an_error(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(cli, "20")
    assert_ok(cli("request", "fail me", "--yes"))
    (rid,) = _requests_of(system6, user)
    fail(system6, rid, "\x1b[31mmodel\x1b[0m exploded\x1b]0;t\x07")
    r = cli("response", "0x" + rid.hex())
    assert r.exit_code == 0, r.output
    assert "message: model exploded" in r.stdout and not CONTROL.search(r.stdout)
    bad = cli("request", "hi", "--model", "\x1b[2Jno\x9b31m model", "--yes")
    assert bad.exit_code != 0 and not CONTROL.search(bad.stderr)
    assert "no model" in bad.stderr


def test_the_renderer_cleans_every_shape():
    import io
    import sys

    from dtnsess_cli.render import Renderer

    buf = io.StringIO()
    old = sys.stdout
    sys.stdout = buf
    try:
        ui = Renderer()
        ui.emit({}, ESCAPES)
        ui.emit({}, ui.kv(f"title {ESCAPES}", [(f"key {ESCAPES}", f"value {ESCAPES}")]))
        ui.emit({}, ui.table(f"t {ESCAPES}", [f"c {ESCAPES}"], [[f"cell {ESCAPES}"]]))
        ui.emit({}, lambda out: out.print(f"line {ESCAPES}", markup=False))
    finally:
        sys.stdout = old
    assert not CONTROL.search(buf.getvalue()), repr(buf.getvalue())


def test_plain_lines_on_a_terminal_are_cleaned(monkeypatch):
    """A write's lines are written without rich (issue 19): on a terminal too, the result, info,
    warnings and the wait status carry no escape sequence but the warning's own colour."""
    import io
    import sys

    from dtnsess_cli.render import Renderer

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for k in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out, err = Tty(), Tty()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    ui = Renderer()
    with ui.status(f"waiting {ESCAPES}"):
        ui.info(f"info {ESCAPES}")
        ui.warn(f"warn {ESCAPES}")
    ui.emit({}, lambda o: o.print(f"line {ESCAPES}", markup=False))
    shown = err.getvalue()
    assert "\x1b[33mwarning: warn red cleared link" in shown, repr(shown)
    ours = shown.replace("\x1b[33m", "").replace("\x1b[0m", "").replace("\r", "")
    assert not CONTROL.search(ours) and not CONTROL.search(out.getvalue()), repr(shown)
    assert "line red cleared link" in out.getvalue() and "info red cleared link" in shown
