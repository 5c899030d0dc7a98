"""The one renderer: plain lines and rich tables for people, one JSON document for scripts.

stdout carries the result only: with ``--json`` exactly one JSON document and nothing else.
Spinners, progress bars, prompts and warnings go to stderr, and only decorate a terminal.
Lines of text (a write's result, info, warnings, the wait status) are written without rich:
its import costs ~90 ms of every write; tables, progress bars and live views still use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from enum import Enum

from . import record
from .units import Amount, is_decimal

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator, Optional, Sequence


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types. Amounts become ``{"amount": "12.5", "units": "12500000"}``-style
    pairs (see :func:`_flatten`); bytes become 0x-hex; big ints stay exact."""
    if isinstance(obj, Amount):
        return str(obj)
    names = None if isinstance(obj, type) else record.names(obj)  # a record or a dataclass
    if names is not None:
        return _flatten({n: getattr(obj, n) for n in names if not n.startswith("_")})
    if isinstance(obj, dict):
        return _flatten(obj)
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return "0x" + bytes(obj).hex()
    if isinstance(obj, Enum):
        return obj.name.lower()
    if is_decimal(obj):
        return str(obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, float)):
        return obj
    if isinstance(obj, int):
        # NOTE: JSON readers in many languages lose precision above 2**53
        return obj if abs(obj) < 2**53 else str(obj)
    if hasattr(obj, "hex") and callable(obj.hex):  # HexBytes and friends
        h = obj.hex()
        return h if h.startswith("0x") else "0x" + h
    return str(obj)


def _flatten(d: dict) -> dict:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Amount):
            out[k] = str(v)
            out[f"{k}_units"] = str(v.units)
        else:
            out[str(k)] = to_jsonable(v)
    return out


def _plain(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, Amount):
        return v.human()
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    return str(v)


# Escape sequences (ESC or its C1 form, 0x9b CSI, 0x9d OSC, ...) and their payloads: CSI (colours,
# cursor moves, screen clears), OSC (window titles, hyperlinks, clipboard writes) and the string
# sequences DCS/SOS/PM/APC, each up to its terminator; then any other ESC + one character.
# NOTE: both are compiled by re's cache when first needed (~1 ms): most lines are printable.
_ESCAPES = (r"(?s)(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
            r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
            r"|\x1b.?")
# what is left that a terminal acts on: C0 but tab and newline, DEL, C1, and the bidirectional
# overrides that make text display in another order than it reads
_CONTROLS = ("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
             "\u2066-\u2069]")


def clean(s: str) -> str:
    """Text from the chain (answers, node messages, names, revert reasons) made safe for a
    terminal: escape sequences and control characters removed, tab and newline kept. Only for
    what a terminal shows: ``--json`` and ``--out`` keep the exact content."""
    if not s or s.isprintable():
        return s
    return re.sub(_CONTROLS, "", re.sub(_ESCAPES, "", s))


def text(v: Any) -> Any:
    """``v`` as literal text for rich: never parsed as markup, never terminal control (see
    :func:`clean`). Prompts, answers, model names, error text and addresses come from users or
    the chain, and ``[/b]`` or ``[node1]`` in them must print as written (rich would raise
    MarkupError, or swallow the brackets)."""
    from rich.text import Text

    if isinstance(v, Text):
        return _clean_text(v)
    if hasattr(v, "__rich_console__"):
        return v
    return Text(clean(_plain(v)))


def _clean_text(t: Any) -> Any:
    c = clean(t.plain)
    return t if c == t.plain else type(t)(c, style=t.style)


def _console(**kw: Any) -> Any:
    """A rich Console whose ``print`` cleans every string and Text it is given (:func:`clean`):
    every line a command writes for people goes through one of these."""
    from rich.console import Console
    from rich.text import Text

    class SafeConsole(Console):
        def print(self, *objects: Any, **kwargs: Any) -> None:
            super().print(*(clean(o) if isinstance(o, str) else
                            _clean_text(o) if isinstance(o, Text) else o
                            for o in objects), **kwargs)

    return SafeConsole(**kw)


_cell = text

# Block explorers of known chains: human output links every tx hash to its page there. JSON
# stays as it is (a script has the chain id and the hash); devnets and other chains get no link.
EXPLORERS = {
    1: "https://etherscan.io",
    10: "https://optimistic.etherscan.io",
    8453: "https://basescan.org",
    84532: "https://sepolia.basescan.org",
    11155111: "https://sepolia.etherscan.io",
}


def explorer_url(chain_id: Optional[int], tx_hash: Optional[str]) -> Optional[str]:
    """The explorer page of ``tx_hash`` on ``chain_id`` (None on an unknown chain)."""
    base = EXPLORERS.get(chain_id) if chain_id is not None else None
    return f"{base}/tx/{tx_hash}" if base and tx_hash else None


def _titled(title: str, table: Any) -> Any:
    """A table under its title line. NOTE: not rich's own table title, which is wrapped to the
    table's width: a narrow table split the address of "Balances of 0x…" over three lines;
    a line of its own wraps only at the terminal's width."""
    from rich.console import Group

    return Group(text(title), table)


def _terminal(stream: Any) -> Optional[str]:
    """What rich makes of ``stream`` (its Console.is_terminal and is_dumb_terminal, rich 13-15):
    None when it is not a terminal, "dumb" for TERM=dumb/unknown, else "ansi"."""
    env = os.environ
    if env.get("TTY_COMPATIBLE", "") in ("0", "1"):
        tty = env["TTY_COMPATIBLE"] == "1"
    elif "FORCE_COLOR" in env:
        tty = env["FORCE_COLOR"] != ""
    else:
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
    if not tty:
        return None
    return "dumb" if env.get("TERM", "").lower() in ("dumb", "unknown") else "ansi"


def _yellow(stream: Any) -> bool:
    """Would rich colour a warning on ``stream``? NOTE: never on Windows, where rich drives a
    legacy console through the win32 API rather than escape sequences."""
    return (_terminal(stream) == "ansi" and os.environ.get("NO_COLOR", "") == ""
            and sys.platform != "win32")


class _Lines:
    """What a result's callable prints to (``emit``): strings become plain lines on stdout,
    cleaned (:func:`clean`); anything else (a table) goes to the rich console."""

    def __init__(self, ui: "Renderer") -> None:
        self._ui = ui

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", **kw: Any) -> None:
        # NOTE: once rich's stdout console exists (a table, a live view), text goes through it
        # too, so the two never interleave out of order
        if all(isinstance(o, str) for o in objects) and self._ui._out is None:
            self._ui._stdout.write(clean(sep.join(objects)) + end)
            self._ui._stdout.flush()
        else:
            self._ui.out.print(*objects, sep=sep, end=end, **kw)


class Renderer:
    """Output for one command run. Create one per invocation (no global consoles)."""

    def __init__(self, json_mode: bool = False, *, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        # the chain the client is connected to (it sets this): tx hashes get explorer links
        self.chain_id: Optional[int] = None
        # NOTE: consoles bind to sys.stdout/sys.stderr as they are now, so CliRunner's
        # swapped streams are honoured and nothing leaks between in-process runs. They are
        # made when first used (tables, progress bars, live views): lines of text need no rich
        self._stdout, self._stderr = sys.stdout, sys.stderr
        self._out: Any = None
        self._err: Any = None
        self._emitted = False
        self._status: Optional[str] = None  # the status line shown on stderr, if any

    @property
    def out(self) -> Any:
        if self._out is None:
            try:
                tty = self._stdout.isatty()
            except (AttributeError, ValueError):
                tty = False
            # NOTE: rich wraps at 80 columns when stdout is a pipe; tables with addresses and
            # request ids need more, and a pipe has no width to respect.
            self._out = _console(file=self._stdout, highlight=False, soft_wrap=False,
                                 width=None if tty else 200)
        return self._out

    @out.setter
    def out(self, console: Any) -> None:
        self._out = console

    @property
    def err(self) -> Any:
        if self._err is None:
            self._err = _console(file=self._stderr, highlight=False, stderr=True)
        return self._err

    @err.setter
    def err(self, console: Any) -> None:
        self._err = console

    # ---- terminal facts -------------------------------------------------------------
    @property
    def interactive(self) -> bool:
        """May we ask questions? Only when stdin and stderr are terminals."""
        try:
            return sys.stdin.isatty() and sys.stderr.isatty()
        except (AttributeError, ValueError):
            return False

    @property
    def decorate(self) -> bool:
        """May we draw spinners / progress bars (on stderr)?"""
        try:
            return sys.stderr.isatty()
        except (AttributeError, ValueError):
            return False

    # ---- results ---------------------------------------------------------------------
    def tx_ref(self, tx_hash: Optional[str]) -> str:
        """A tx hash as people see it: followed by its explorer link on a known chain."""
        url = explorer_url(self.chain_id, tx_hash)
        return f"{tx_hash} ({url})" if url else str(tx_hash)

    def emit(self, data: Any, human: Any = None) -> None:
        """The command's result: ``data`` as JSON, or ``human`` (a rich renderable, a string,
        or a callable taking the console) for people. Exactly once per command."""
        if self.json_mode:
            if self._emitted:  # pragma: no cover - a programming error
                raise RuntimeError("one JSON document per command")
            sys.stdout.write(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")
            sys.stdout.flush()
        else:
            if human is None:
                human = self.kv(None, to_jsonable(data) if not isinstance(data, dict) else data)
            if callable(human) and not hasattr(human, "__rich_console__"):
                human(_Lines(self))
            elif isinstance(human, str):
                _Lines(self).print(human)
            else:
                self.out.print(human)
        self._emitted = True

    def kv(self, title: Optional[str], rows: Any):
        """A two-column key/value table; None with --json, where ``emit`` never shows it (and
        a read for a script need not import rich for it)."""
        if self.json_mode:
            return None
        from rich.table import Table

        t = Table(show_header=False, box=None, pad_edge=False)
        t.add_column(style="bold")
        t.add_column(overflow="fold")
        items = rows.items() if isinstance(rows, dict) else rows
        for k, v in items:
            t.add_row(text(k), text(v))
        return t if title is None else _titled(title, t)

    def table(self, title: Optional[str], columns: Sequence[str],
              rows: Iterable[Sequence[Any]], *, justify: Optional[dict] = None):
        """A table with a header; None with --json (as ``kv``)."""
        if self.json_mode:
            return None
        from rich.table import Table

        t = Table()
        justify = justify or {}
        for c in columns:
            t.add_column(text(c), justify=justify.get(c, "left"), overflow="fold")
        for r in rows:
            t.add_row(*(text(v) for v in r))
        return t if title is None else _titled(title, t)

    # ---- stderr chatter ------------------------------------------------------------------
    def _say(self, line: str, style: Optional[str] = None) -> None:
        """One line on stderr, never wrapped (a cron log or a pipe has no width to wrap at),
        coloured as rich would colour it. NOTE: once rich's stderr console exists (a progress
        bar), lines go through it, so they print above the bar, not into it."""
        if self._err is not None:
            self._err.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
            return
        line = clean(line)
        if style == "yellow" and _yellow(self._stderr):
            line = f"\x1b[33m{line}\x1b[0m"
        if self._status:  # the status line gives way to the line, then comes back under it
            line = f"\r{' ' * len(self._status)}\r{line}\n{self._status}"
        else:
            line += "\n"
        self._stderr.write(line)
        self._stderr.flush()

    def info(self, message: str) -> None:
        if not self.quiet:
            self._say(message)

    def warn(self, message: str) -> None:
        self._say(f"warning: {message}", style="yellow")

    def error(self, message: str, hint: Optional[str] = None) -> None:
        sys.stderr.write(f"error: {clean(message)}\n")
        if hint:
            sys.stderr.write(f"hint: {clean(hint)}\n")
        sys.stderr.flush()

    def confirm(self, question: str) -> bool:
        import typer

        return typer.confirm(clean(question), default=False, err=True)

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[Any]:
        """A status line on stderr while a block runs, gone after it: only on a terminal that
        rich would animate (not TERM=dumb), and not under a progress bar (rich's own)."""
        if not self.decorate or self._err is not None or _terminal(self._stderr) != "ansi":
            yield None
            return
        import shutil

        # NOTE: one line that fits (a wrapped one could not be taken back with "\r")
        self._status = clean(message).replace("\n", " ")[:shutil.get_terminal_size().columns - 1]
        self._stderr.write(self._status)
        self._stderr.flush()
        try:
            yield None
        finally:
            self._stderr.write(f"\r{' ' * len(self._status)}\r")
            self._stderr.flush()
            self._status = None

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[Any]:
        """A progress bar on stderr; yields ``advance(n=1)``."""
        if not self.decorate:
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=self.err, transient=False) as prog:
            task = prog.add_task(description, total=total)
            yield lambda n=1: prog.advance(task, n)
