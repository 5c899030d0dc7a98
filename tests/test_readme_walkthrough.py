"""README's walkthroughs run as written (issue 15, item 6).

Every ```console block of README.md is one step of a single story on one devnet, in README's
order: each `$ ...` line runs in bash, in a fresh working directory (with the devnet's state
file, as a user's would be), and its exit code and output must be what README shows.

What the test changes, and only this (besides its own state and lock directories):
- `devnet up` gets `--port N` (a free port: 8545 may be in use by another devnet);
- an id the chain chose (a request id or tx hash README shows in full) is replaced, in later
  commands, by the id this run got at the same place of the output;
- in the comparison, values no two runs share are wildcards: tx hashes README shortens
  (`0xc57feb21…f9dbde`), block numbers, gas, ETH amounts (fees), times and ages, pids, ports
  and the working directory; `...` in README stands for any number of lines, and at the end of
  a line for the rest of it; table borders and column widths are ignored.
Exit codes: what a following `echo $?` shows, else 0, or non-zero where README shows `error:`.

A block that cannot run on a devnet is marked by the line before its fence:
`<!-- walkthrough: skip (why) -->`. The test reports them, and the list stays short
(SKIPPED_AT_MOST).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dtnsess_cli.devnet.anvil import free_port
from helpers import wait_gone

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
SKIP_MARK = re.compile(r"<!--\s*walkthrough:\s*skip\s*\((.+)\)\s*-->")
SKIPPED_AT_MOST = 3

pytestmark = pytest.mark.slow


@dataclass
class Step:
    line: int  # README line of the `$` command
    command: str
    expected: list = field(default_factory=list)  # README's output lines


@dataclass
class Block:
    line: int
    steps: list
    skip: str = ""


def readme_blocks(text: str) -> list:
    """README's ```console blocks that hold `$` commands, with their skip marks."""
    blocks, cur, prev = [], None, ""
    for n, line in enumerate(text.splitlines(), 1):
        if cur is None:
            if line.strip() == "```console":
                m = SKIP_MARK.search(prev)
                cur = Block(n, [], m.group(1) if m else "")
            if line.strip():
                prev = line
            continue
        if line.startswith("```"):
            if cur.steps:
                blocks.append(cur)
            cur, prev = None, line
        elif line.startswith("$ "):
            cur.steps.append(Step(n, line[2:]))
        elif cur.steps:
            cur.steps[-1].expected.append(line)
    return blocks


# ------------------------------------------------------------------------- comparing output

BOX = re.compile(r"[\u2500-\u257f]")
HASH64 = re.compile(r"0x[0-9a-fA-F]{64}")
# values that differ between runs: (README's form, the pattern it stands for)
VOLATILE = [
    (re.compile(r"0x[0-9a-fA-F]+…[0-9a-fA-F]*"), r"0x[0-9a-fA-F]+(?:…[0-9a-fA-F]*)?"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d"), r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d"),
    (re.compile(r"\(\d+[smhd][^)]* ago\)"), r"\([^)]*ago\)"),
    (re.compile(r"(?<=block )\d+|(?<=block_time\":)\d+|(?<=\"block\":)\d+|(?<=blocks )\d+\.\.\d+"
                r"|(?<=--from-block )\d+"), r"[\d.]+"),
    (re.compile(r"(?<=gas )~?[\d,]+|~[\d,]+(?= gas)"), r"~?[\d,]+"),
    (re.compile(r"[\d.]+(?= ETH)"), r"[\d.]+"),
    (re.compile(r"(?<=pid )\d+|(?<=127\.0\.0\.1:)\d+"), r"\d+"),
    (re.compile(r"/\S*(?=/\.dtnsess-devnet\.json)"), r"/\S*"),
]


def normalize(line: str) -> str:
    """A line as compared: no table borders, one space between words."""
    return " ".join(BOX.sub(" ", line).split())


def pattern(line: str) -> re.Pattern:
    """README's output line as a pattern: literal but for the volatile values (and the full
    ids, captured to be replaced in later commands); a line ending in `...` is a prefix."""
    if line.endswith(" ..."):
        return re.compile(pattern(line[:-4]).pattern + " .*")
    spans = []
    for rx, pat in VOLATILE:
        spans += [(m.start(), m.end(), pat) for m in rx.finditer(line)]
    spans += [(m.start(), m.end(), "(0x[0-9a-fA-F]{64})") for m in HASH64.finditer(line)]
    out, pos = "", 0
    for start, end, pat in sorted(spans):
        if start < pos:
            continue
        out += re.escape(line[pos:start]) + pat
        pos = end
    return re.compile(out + re.escape(line[pos:]))


def match(expected: list, actual: list, ids: dict) -> bool:
    """Does ``actual`` (normalized lines) show what ``expected`` does? ``...`` matches any
    lines. Full ids README shows are bound to this run's in ``ids`` (README id -> actual)."""
    exp = [normalize(e) for e in expected]
    exp = [e for e in exp if e]

    def go(i: int, j: int, bound: dict) -> dict | None:
        if i == len(exp):
            return bound if j == len(actual) else None
        if exp[i] == "...":
            for k in range(j, len(actual) + 1):
                r = go(i + 1, k, bound)
                if r is not None:
                    return r
            return None
        if j == len(actual):
            return None
        m = pattern(exp[i]).fullmatch(actual[j])
        if not m:
            return None
        new = dict(bound)
        for readme_id, got in zip(HASH64.findall(exp[i]), m.groups()):
            # one README id is one id of this run, and the other way round
            if new.get(readme_id, got) != got or (readme_id not in new and got in new.values()):
                return None
            new[readme_id] = got
        return go(i + 1, j + 1, new)

    r = go(0, 0, ids)
    if r is None:
        return False
    ids.update(r)
    return True


def expected_exit(steps: list, k: int) -> int | None:
    """The exit code README shows for step ``k``: a following `echo $?`, else 0, or None
    (any non-zero) when it shows an error."""
    nxt = steps[k + 1] if k + 1 < len(steps) else None
    if nxt is not None and nxt.command.strip() == "echo $?":
        return int(nxt.expected[0].strip())
    if any(line.startswith("error:") for line in steps[k].expected):
        return None
    return 0


# ------------------------------------------------------------------------- running them


class Shell:
    """One user's shell: a working directory and what its lines export."""

    def __init__(self, cwd: Path, state_dir: Path) -> None:
        self.cwd = cwd
        self.envfile = cwd.parent / "walkthrough.env"
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("DTNSESS_", "ETH_", "FOUNDRY_"))}
        keep.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    DTNSESS_STATE_DIR=str(state_dir), PYTHONUNBUFFERED="1",
                    # NOTE: cleanup's lock is named by chain (id, genesis) and address, which
                    # devnets started in the same second share: another test's must not hold it
                    DTNSESS_LOCK_DIR=str(state_dir / "locks"),
                    NO_COLOR="1", TERM="dumb")
        self.env = keep
        self.envfile.write_text("")

    def run(self, command: str, timeout: float = 180) -> tuple[int, str]:
        # NOTE: `set -a` keeps what a line assigns for the next lines, as in one terminal
        script = (f"set -a; . {shlex.quote(str(self.envfile))}; {command}\n"
                  f"__rc=$?; export -p > {shlex.quote(str(self.envfile))}; exit $__rc")
        proc = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return proc.returncode, proc.stdout


def as_run(command: str, port: int, ids: dict) -> str:
    """README's command as this test runs it: the devnet on a free port, this run's ids."""
    for readme_id, got in ids.items():
        command = command.replace(readme_id, got)
    if "--port" not in command:
        command = re.sub(r"^dtnsess devnet (up|reset)\b", rf"dtnsess devnet \1 --port {port}",
                         command)
    return command


def test_readme_walkthroughs_run_as_written(tmp_path, record_property):
    blocks = readme_blocks(README.read_text())
    skipped = [(b.line, b.skip) for b in blocks if b.skip]
    record_property("readme_skipped_summary",
                    "README blocks not run on a devnet: "
                    + "; ".join(f"line {n}: {why}" for n, why in skipped))
    assert len(skipped) <= SKIPPED_AT_MOST, skipped
    work = tmp_path / "work"
    work.mkdir()
    sh = Shell(work, tmp_path / "dtnsess-state")
    port, ids, failures = free_port(), {}, []
    record = os.environ.get("WALKTHROUGH_RECORD")  # a file: every command's actual output
    log = []
    try:
        for b in (b for b in blocks if not b.skip):
            for k, step in enumerate(b.steps):
                if step.command.strip() == "echo $?":
                    continue  # checked as the previous command's exit code
                rc, raw = sh.run(as_run(step.command, port, ids))
                log.append({"line": step.line, "command": step.command, "rc": rc, "out": raw})
                out = [x for x in map(normalize, raw.splitlines()) if x]
                want = expected_exit(b.steps, k)
                ok_rc = rc != 0 if want is None else rc == want
                shown = [e for e in step.expected if e.strip()]
                ok_out = match(shown, out, ids) if shown else True  # README shows no output
                if not (ok_rc and ok_out):
                    failures.append(f"README line {step.line}: $ {step.command}\n"
                                    f"  exit {rc} (README: {'non-zero' if want is None else want})"
                                    f"\n  README shows:\n    " + "\n    ".join(step.expected)
                                    + "\n  got:\n    " + "\n    ".join(out))
    finally:
        state = work / ".dtnsess-devnet.json"
        pids = json.loads(state.read_text()).get("pids") or {} if state.exists() else {}
        sh.run("dtnsess devnet down")
        for role, pid in pids.items():
            if pid and not wait_gone(pid):
                os.kill(pid, signal.SIGKILL)  # last resort, only for a pid this devnet recorded
                failures.append(f"devnet {role} pid {pid} survived `devnet down`")
        if record:
            Path(record).write_text(json.dumps(log, indent=1, ensure_ascii=False))
    assert not failures, "\n\n".join(failures)


def test_readme_parser_and_matcher():
    """The reader of README's blocks and the comparison, on a small made-up README."""
    text = ("<!-- walkthrough: skip (needs Base) -->\n```console\n$ dtnsess x\nout\n```\n\n"
            "```console\n$ dtnsess create 5 --yes\nsession 1 created\n"
            "  tx 0xab12…ef (block 3, gas 51, fee 0.01 ETH)\n\n$ echo $?\n0\n```\n")
    skipped, run = readme_blocks(text)
    assert skipped.skip == "needs Base" and not run.skip
    assert [s.command for s in run.steps] == ["dtnsess create 5 --yes", "echo $?"]
    assert expected_exit(run.steps, 0) == 0
    ids: dict = {}
    good = ["session 1 created", f"tx 0x{'cd' * 32} (block 19, gas 51234, fee 0.0123 ETH)"]
    assert match(run.steps[0].expected, good, ids)
    assert not match(run.steps[0].expected, ["session 2 created", good[1]], ids)
    rid, got = "0x" + "1" * 64, "0x" + "2" * 64
    assert match([f"request {rid} sent", "..."], [f"request {got} sent", "a", "b"], ids)
    assert ids[rid] == got and as_run(f"dtnsess response {rid}", 1, ids).endswith(got)
    assert as_run("dtnsess devnet reset", 7, {}) == "dtnsess devnet reset --port 7"
    assert not match([f"request {rid}: ok"], [f"request {'0x' + '3' * 64}: ok"], ids)
    assert not match([f"request {'0x' + '4' * 64}: ok"], [f"request {got}: ok"], ids)
    assert match(["You asked: lorem ipsum ...", "..."], ["You asked: lorem ipsum lorem", "x"], {})
    assert not match(["You asked: lorem ipsum ..."], ["You asked: dolor"], {})
