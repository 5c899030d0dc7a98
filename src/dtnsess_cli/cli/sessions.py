"""Session commands: ``balance``, ``approve``, ``create``, ``renew``, ``close``, ``stats``,
``sessions`` (each calls one ``Client`` method and renders its result)."""

from typing import Annotated, Optional

import typer

from ..config import CliOptions
from . import bodies
from .root import Run, app, command, raise_usage


@command(app, "balance")
def balance(
    user: Annotated[Optional[str], typer.Option("--user", help="another address")] = None,
    *, g: CliOptions,
) -> None:
    """ETH, fee token, allowance and claimable refunds."""
    bodies.balance(user, g=g)


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
    bodies.create(amount, approve_max, g=g)


@command(app, "renew")
def renew(
    session: Annotated[str, typer.Argument(help="session id")],
    amount: Annotated[str, typer.Argument(help="token amount to add")],
    approve_max: Annotated[bool, typer.Option("--approve-max")] = False,
    *, g: CliOptions,
) -> None:
    """Add funds to a session (its id stays the same)."""
    bodies.renew(session, amount, approve_max, g=g)


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
    bodies.close(session, all_, cancel, g=g)


@command(app, "stats")
def stats(session: Annotated[str, typer.Argument(help="session id")], *, g: CliOptions) -> None:
    """One session's full record."""
    bodies.stats(session, g=g)


@command(app, "sessions")
def sessions(
    user: Annotated[Optional[str], typer.Option("--user", help="another address")] = None,
    *, g: CliOptions,
) -> None:
    """A user's sessions, with the DTN-side remaining balance."""
    bodies.sessions(user, g=g)
