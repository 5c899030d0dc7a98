"""``watch``: follow requests and their answers as the manager's events arrive.

A poll is two round trips: the head, then eth_getLogs over the new blocks (plus one for the
answers and the blocks' times when there are events). Each poll also re-reads the last
REREAD blocks and drops what it already showed, by (tx hash, log index): a short reorg, or a
provider whose log index lags its head, still shows each event once.
"""

import json
import sys
import time
from typing import Annotated, Any, Optional

import typer

from ..config import CliOptions
from ..errors import RpcError
from .root import Run, app, command, raise_input

# blocks re-read on each poll (see the module's note); Base's sequencer does not reorg deeper
REREAD = 3
# at most this many blocks per poll, so a replay from an old block shows progress and can stop
MAX_POLL_BLOCKS = 50_000
TABLE_ROWS = 30  # the terminal table shows the newest requests
PREVIEW = 60  # characters of an answer in the table


@command(app, "watch")
def watch(
    session: Annotated[Optional[str], typer.Option("--session", help="only this session's "
                                                   "requests")] = None,
    user: Annotated[Optional[str], typer.Option("--user", help="only this address's "
                                                "requests")] = None,
    from_block: Annotated[Optional[int], typer.Option(
        "--from-block", help="start at this block (replays past events); default: the latest",
        show_default=False)] = None,
    to_block: Annotated[Optional[int], typer.Option(
        "--to-block", help="stop after this block (default: follow until Ctrl-C)",
        show_default=False)] = None,
    interval: Annotated[float, typer.Option("--interval", help="seconds between polls")] = 2.0,
    *, g: CliOptions,
) -> None:
    """Follow requests and their answers as they arrive (a live table on a terminal; one JSON
    line per event with --json or when stdout is not a terminal). Ctrl-C ends it (exit 0) and
    prints the block to resume from with --from-block."""
    from ..manager import parse_session_id

    if not 0.1 <= interval <= 3600:
        raise_input("--interval", str(interval), "must be 0.1 to 3600 seconds")
    for name, b in (("--from-block", from_block), ("--to-block", to_block)):
        if b is not None and b < 0:
            raise_input(name, str(b), "block numbers start at 0")
    if from_block is not None and to_block is not None and to_block < from_block:
        raise_input("--to-block", str(to_block), f"before --from-block {from_block}")
    sid = parse_session_id(session) if session is not None else None
    run = Run(g)
    c = run.client
    who = c.address_arg(user, "user address") if user else None
    head = c.head_block()
    start = head if from_block is None else from_block
    if start > head + 1:  # not an error (a watch may wait for a block to come), but say so
        run.ui.info(f"--from-block {start} is ahead of the chain's head (block {head}): "
                    f"waiting for it")
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    view = _Lines() if g.json or not tty else _Table(run.ui, c.manager_address, sid, who)
    state = {"next": start, "head": head}
    try:
        with view:
            _follow(c, view, state, start, to_block, sid, who, interval, run.ui)
    except KeyboardInterrupt:
        pass  # Ctrl-C (or SIGTERM from a supervisor: see cli.run.invoke) is how a watch ends
    except BrokenPipeError:  # `dtnsess watch | head`: the reader is gone
        import os

        try:  # NOTE: no second BrokenPipeError when the interpreter flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
    nxt = state["next"]
    msg = (f"watched blocks {start}..{nxt - 1}; resume with --from-block {nxt}" if nxt > start
           else f"no block watched yet; resume with --from-block {nxt}")
    if isinstance(view, _Table):
        run.ui.out.print(msg, markup=False, highlight=False)
    else:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()


def _follow(c: Any, view: Any, state: dict, start: int, to_block: Optional[int],
            sid: Optional[int], who: Optional[str], interval: float, ui: Any) -> None:
    seen: dict = {}  # (tx hash, log index) -> block, for the re-read blocks
    down = False
    while True:
        behind = False
        try:
            head = c.head_block()
            state["head"] = head
            last = head if to_block is None else min(head, to_block)
            nxt = state["next"]
            lo, hi = max(start, nxt - REREAD), min(last, nxt + MAX_POLL_BLOCKS - 1)
            if hi >= lo:
                events = c.request_events(lo, hi, sid, who)
                new = [e for e in events if (e["tx_hash"], e["log_index"]) not in seen]
                _show_all(view, new, state)
                for e in new:
                    seen[(e["tx_hash"], e["log_index"])] = e["block"]
                state["next"] = max(nxt, hi + 1)
                for k in [k for k, b in seen.items() if b < state["next"] - REREAD]:
                    del seen[k]
                behind = hi < last
            view.refresh(state)
            if down:
                ui.info("the node answers again; watching")
                down = False
        except RpcError as exc:
            # NOTE: a watch outlives an outage: say so once, keep polling
            if not down:
                ui.warn(f"the node is not answering ({exc.reason}); still watching, from block "
                        f"{state['next']}")
                down = True
        if to_block is not None and state["next"] > to_block:
            return
        if not behind:
            time.sleep(interval)


def _show_all(view: Any, events: list, state: dict) -> None:
    """Show a poll's events; Ctrl-C while they are written waits for the last one, so the
    resume block never repeats or skips a line. A reader gone mid-poll (a broken pipe): the
    resume block is the block of the first line it missed."""
    interrupted = False
    for e in events:
        while True:
            try:
                view.show(e)
                break
            except KeyboardInterrupt:
                interrupted = True
            except BrokenPipeError:
                state["next"] = max(state["next"], e["block"])
                raise
    if interrupted:
        raise KeyboardInterrupt


def _preview(e: dict) -> Optional[str]:
    """What the table shows of an answer: its text, or what kind of content it is."""
    if e.get("answer") is not None:
        return e["answer"]
    if e.get("kind") == "cid":
        return f"ipfs://{e['cid']}"
    if e.get("kind") == "image":
        return f"[image, {e['size']} bytes]"
    return e.get("message") or e.get("response_hex")


class _Lines:
    """One JSON object per line per event, flushed at once (for scripts and pipes)."""

    def __enter__(self) -> "_Lines":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def show(self, e: dict) -> None:
        from ..render import to_jsonable

        sys.stdout.write(json.dumps(to_jsonable(e), separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def refresh(self, state: dict) -> None:
        pass


def safe_text(s: Any, limit: Optional[int] = None) -> str:
    """Chain text for one table cell: control characters (escape sequences, newlines) shown
    as escapes, never sent to the terminal; cut to ``limit`` characters."""
    if s is None:
        return "-"
    out = []
    for ch in str(s):
        if ch.isprintable():
            out.append(ch)
        elif ch in "\n\r\t":
            out.append(" ")
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    t = "".join(out)
    return t if limit is None or len(t) <= limit else t[:limit - 1] + "…"


def _short(h: Optional[str]) -> str:
    return "-" if not h else f"{h[:10]}…{h[-4:]}"


class _Table:
    """A rich Live table of the newest requests, one row each, updated as events arrive."""

    def __init__(self, ui: Any, manager: str, sid: Optional[int], who: Optional[str]) -> None:
        self.ui = ui
        self.rows: dict = {}  # request id -> row
        self.state: dict = {}
        what = []
        if sid is not None:
            what.append(f"session {sid}")
        if who:
            what.append(f"user {who}")
        self.title = f"requests to {manager}" + (f" ({', '.join(what)})" if what else "")
        self.live: Any = None

    def __enter__(self) -> "_Table":
        from rich.live import Live

        self.live = Live(get_renderable=self._render, console=self.ui.out,
                         refresh_per_second=1, transient=False)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(None, None, None)

    def show(self, e: dict) -> None:
        r = self.rows.setdefault(e["request_id"], {"session": None, "user": None,
                                                   "status": None, "since": None,
                                                   "answer": None})
        r["session"] = e.get("session_id") or r["session"]
        r["user"] = e.get("user") or r["user"]
        if r["since"] is None or e["event"] == "AIRequestSubmitted":
            r["since"] = e.get("block_time")
        if e["event"] == "AIRequestSubmitted":
            r["status"] = r["status"] or "pending"
        else:
            r["status"] = e["status"]
        if e["event"] == "AIRequestCompleted":
            r["answer"] = _preview(e)
        elif e["event"] == "AIRequestFailed" and not r["answer"]:
            r["answer"] = e.get("message")
        while len(self.rows) > TABLE_ROWS:
            self.rows.pop(next(iter(self.rows)))

    def refresh(self, state: dict) -> None:
        self.state = dict(state)
        self.live.refresh()

    def _render(self) -> Any:
        from ..render import text

        now = int(time.time())
        title = f"{self.title}: block {self.state.get('head', '?')}, Ctrl-C to stop"
        rows = []
        for rid, r in self.rows.items():
            age = "-" if r["since"] is None else _age(max(0, now - int(r["since"])))
            rows.append((_short(rid), r["session"], _short(r["user"]), r["status"], age,
                         safe_text(r["answer"], PREVIEW) if r["answer"] is not None else "-"))
        return self.ui.table(text(title), ["request", "session", "user", "status", "age",
                                           "answer"], rows)


def _age(s: int) -> str:
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"
