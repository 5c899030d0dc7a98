"""Session commands: ``balance``, ``approve``, ``create``, ``renew``, ``close``, ``stats``,
``sessions`` (each calls one ``Client`` method and renders its result)."""

from typing import Annotated, Optional

import typer

from ..config import CliOptions
from .app import Run, app, command, fmt_time, fmt_when, raise_usage, settled_lines


@command(app, "balance")
def balance(
    user: Annotated[Optional[str], typer.Option("--user", help="another address")] = None,
    *, g: CliOptions,
) -> None:
    """ETH, fee token, allowance and claimable refunds."""
    run = Run(g)
    b = run.client.balances(user)
    from ..manager import MAX_UINT256

    allowance = "unlimited" if b.allowance.units >= MAX_UINT256 else b.allowance.human()
    run.ui.emit(b, run.ui.kv(f"Balances of {b.address}", [
        ("ETH", b.eth.human()), ("fee token", b.token.human()),
        ("allowance", allowance), ("claimable refunds", b.claimable_refunds.human())]))


@command(app, "approve")
def approve(
    amount: Annotated[Optional[str], typer.Argument(help="token amount, e.g. 50 or 12.5")] = None,
    unlimited: Annotated[bool, typer.Option("--max", help="approve an unlimited amount")] = False,
    *, g: CliOptions,
) -> None:
    """Let the session manager spend your fee token (create/renew approve by themselves)."""
    if (amount is None) == (not unlimited):
        raise_usage("give an AMOUNT or --max (not both)")
    run = Run(g)
    res = run.client.approve(amount, unlimited)
    to = res.data["allowance"]
    run.write(res, f"would set the allowance to {to}" if res.dry_run else f"allowance set to {to}")


@command(app, "create")
def create(
    amount: Annotated[str, typer.Argument(help="token amount to fund the session with")],
    approve_max: Annotated[bool, typer.Option("--approve-max", help="approve unlimited if an "
                                               "approval is needed")] = False,
    *, g: CliOptions,
) -> None:
    """Approve if needed, create a session, print the new session id."""
    run = Run(g)
    res = run.client.create_session(amount, approve_max)
    sid = res.data.get("session_id")
    amount = res.data["amount"].human()
    run.write(res, f"would create session {sid} with {amount}" if res.dry_run and sid
              else f"session {sid} created with {amount}" if sid
              else "session creation simulated")


@command(app, "renew")
def renew(
    session: Annotated[str, typer.Argument(help="session id")],
    amount: Annotated[str, typer.Argument(help="token amount to add")],
    approve_max: Annotated[bool, typer.Option("--approve-max")] = False,
    *, g: CliOptions,
) -> None:
    """Add funds to a session (its id stays the same)."""
    from ..manager import parse_session_id

    run = Run(g)
    res = run.client.renew_session(parse_session_id(session), amount, approve_max)
    nb = res.data.get("new_balance")
    done = "would be renewed" if res.dry_run else "renewed"
    run.write(res, (f"session {session} {done}" + (f": balance {nb.human()}" if nb else ""))
              if res.error is None else f"session {session} not renewed",
              settled_lines(res.to_dict()))


@command(app, "close")
def close(
    session: Annotated[Optional[str], typer.Argument(help="session id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="close all your sessions")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="undo a close that began (session open again)")] = False,
    *, g: CliOptions,
) -> None:
    """Close a session (or --all); the refund comes back to you.

    Settles answered requests first. Still blocked by unanswered ones: marks it closing
    (`close ID --cancel` undoes that).
    """
    # NOTE: blocked, `close ID` sends beginClose (others can no longer add requests) and exits 7
    # with the time to retry; `close --all` closes the others and lists the skipped ones (exit 7
    # only when none could close). Typer keeps docstring line breaks: one line per paragraph.
    from ..manager import parse_session_id

    if (session is None) == (not all_) or (cancel and all_):
        raise_usage("give a SESSION id or --all (not both; --cancel takes an id)")
    run = Run(g)
    if cancel:
        res = run.client.cancel_close(parse_session_id(session))
        run.write(res, f"would reopen session {session}" if res.dry_run else f"session {session} open again")
        return
    res = run.client.close_all_sessions() if all_ else run.client.close_session(parse_session_id(session))
    closed = res.data.get("closed") or []
    lines = settled_lines(res.to_dict()) + [
        (f"session {c['session_id']}", f"refund {c['refund'].human()}"
         + (" (credited: `dtnsess refunds withdraw`)" if c["credited"] else ""))
        for c in closed]
    lines += [(f"session {k['session_id']}", f"skipped: unanswered requests, retry after "
               f"{fmt_when(k['retry_after'])}") for k in res.data.get("skipped") or []]
    closing = res.data.get("closing")
    if closing:
        lines.append((f"session {closing['session_id']}",
                      ("now closing" if closing["began"] else "closing") + ": no new requests "
                      f"from others; close it after {fmt_when(closing['closable_at'])}"))
    head = f"closed {len(closed)} session{'s' if len(closed) != 1 else ''}"
    if res.dry_run:
        head = "close simulated"
    elif session is not None and not closed:
        head = f"session {session} not closed"
    run.write(res, head, lines)


def _session_rows(sessions):
    return [(s.session_id, f"{s.owner[:6]}…{s.owner[-4:]}", s.balance, s.dtn_balance, s.active, s.pooled,
             s.request_count, s.pending_requests, _closable(s), fmt_time(s.last_used))
            for s in sessions]


def _closable(s) -> str:
    """When a session with pending requests may close anyway; "closing" once its owner began."""
    if not s.active:
        return "-"
    when = fmt_when(s.closable_at) if s.pending_requests else "now"
    return f"closing, {when}" if s.closing else when


_SESSION_COLS = ["id", "owner", "funded", "remaining (DTN)", "active", "pooled", "requests",
                 "pending", "closable", "last used"]


@command(app, "stats")
def stats(session: Annotated[str, typer.Argument(help="session id")], *, g: CliOptions) -> None:
    """One session's full record."""
    from ..manager import parse_session_id

    run = Run(g)
    s = run.client.session(parse_session_id(session))
    run.ui.emit(s, run.ui.kv(f"Session {s.session_id}", [
        ("owner", s.owner), ("active", s.active), ("funded", s.balance),
        ("remaining (DTN)", s.dtn_balance if s.dtn_balance is not None else "unknown"),
        ("requests", s.request_count), ("pending", s.pending_requests),
        ("pending since", fmt_time(s.pending_since)), ("closing", s.closing),
        ("closable", _closable(s)),
        ("last used", fmt_time(s.last_used)), ("last request", fmt_time(s.last_request_at)),
        ("pooled", s.pooled), ("DTN session", s.dtn_session_id)]))


@command(app, "sessions")
def sessions(
    user: Annotated[Optional[str], typer.Option("--user", help="another address")] = None,
    *, g: CliOptions,
) -> None:
    """A user's sessions, with the DTN-side remaining balance."""
    run = Run(g)
    rows = run.client.sessions(user)
    run.ui.emit({"sessions": rows}, run.ui.table(
        f"{len(rows)} session{'s' if len(rows) != 1 else ''}", _SESSION_COLS, _session_rows(rows),
        justify={"funded": "right", "remaining (DTN)": "right"}))
