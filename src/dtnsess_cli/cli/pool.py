"""``dtnsess pool ...``: offer a session in the shared pool, take one, end grants."""

from typing import Annotated, Optional

import typer

from ..config import CliOptions
from .root import Run, app, command, fmt_when, group

pool_app = group(help="The shared session pool.")
app.add_typer(pool_app, name="pool")


@command(pool_app, "add")
def pool_add(
    session: Annotated[str, typer.Argument(help="session id")],
    limit: Annotated[Optional[str], typer.Option(
        "--limit", help="the offer's budget: tokens takers may spend in all, across every grant "
                        "and re-take (default: 10 answers' maximum fee)", show_default=False)] = None,
    allow_nodes: Annotated[bool, typer.Option(
        "--allow-nodes", help="let takers route to node ids (default: trust namespaces only; "
                              "a taker could route to a node of their own)")] = False,
    *, g: CliOptions,
) -> None:
    """Offer one of your active sessions in the shared pool."""
    from ..manager import parse_session_id

    run = Run(g)
    res = run.client.add_to_pool(parse_session_id(session), limit, allow_nodes)
    run.write(res, f"would add session {session} to the pool" if res.dry_run
              else f"session {session} added to the pool",
              [("budget", res.data["grant_limit"].human()),
               ("takers may route", "to node ids and namespaces" if allow_nodes
                else "by trust namespace only")])


@command(pool_app, "get")
def pool_get(*, g: CliOptions) -> None:
    """Take a session from the pool; your requests use it from then on."""
    run = Run(g)
    res = run.client.get_from_pool()
    grant = res.data.get("grant")
    run.write(res, f"{'would take' if res.dry_run else 'took'} session "
                   f"{res.data.get('session_id')} from the pool",
              [("you may spend", grant["remaining"].human()),
               ("until", fmt_when(grant["expires_at"])),
               ("routing", "node ids and namespaces" if grant["allow_node_routing"]
                else "trust namespaces only")] if grant else [])


@command(pool_app, "remove")
def pool_remove(session: Annotated[str, typer.Argument(help="session id")], *,
                g: CliOptions) -> None:
    """Take your session out of the pool (ends its taker's grant)."""
    from ..manager import parse_session_id

    run = Run(g)
    res = run.client.remove_from_pool(parse_session_id(session))
    taker = res.data.get("taker")
    run.write(res, f"would remove session {session} from the pool" if res.dry_run
              else f"session {session} removed from the pool",
              [("grant ended", taker)] if taker else [])


@command(pool_app, "revoke")
def pool_revoke(
    session: Annotated[str, typer.Argument(help="session id")],
    address: Annotated[str, typer.Argument(help="the taker's address")],
    *, g: CliOptions,
) -> None:
    """End a taker's grant on your session (it stays out of the pool until you add it again)."""
    from ..manager import parse_session_id

    run = Run(g)
    res = run.client.revoke_grant(parse_session_id(session), address)
    lines = [] if res.dry_run else [("back in the pool", "yes" if res.data.get("pooled") else
                                     f"no (offer it again with `dtnsess pool add {session}`)")]
    run.write(res, f"{'would revoke' if res.dry_run else 'revoked'} {res.data['user']}'s "
                   f"grant on session {session}", lines)


@command(pool_app, "release")
def pool_release(*, g: CliOptions) -> None:
    """Give back the pooled session you hold (it returns to the pool)."""
    run = Run(g)
    res = run.client.release_grant()
    sid = res.data.get("session_id")
    lines = [] if res.dry_run or not sid else [
        ("back in the pool", "yes" if res.data.get("pooled") else "no")]
    run.write(res, f"{'would release' if res.dry_run else 'released'} your grant on session "
                   f"{sid}" if sid
              else "you hold no pool grant: nothing to release", lines)


@command(pool_app, "status")
def pool_status(*, g: CliOptions) -> None:
    """Pool size, capacity, offers (takers, budgets left, grant expiry) and your own grant."""
    run = Run(g)
    st = run.client.pool_status()
    grant = st["grant"]

    def state(o: dict) -> str:
        if o["pooled"]:
            return "in the pool"
        return "grant expired" if o["grant_expired"] else "taken"

    def human(out) -> None:
        out.print(run.ui.kv("Pool", [
            ("size", f"{st['pool_size']} / {st['max_size']}"),
            ("sessions", ", ".join(map(str, st["sessions"])) or "-"),
            ("your grant", f"session {grant['session_id']}, {grant['remaining'].human()} left"
             + (", node routing allowed" if grant["allow_node_routing"] else "")
             + (f", expired {fmt_when(grant['expires_at'])}: `dtnsess pool get` takes again"
                if grant["expired"] else f", until {fmt_when(grant['expires_at'])}")
             if grant else "-")]))
        if st["offers"]:
            out.print(run.ui.table("Offers", ["session", "owner", "state", "taker",
                                              "grant until", "budget left", "node routing"],
                                   [(o["session_id"], o["owner"], state(o), o["taker"],
                                     fmt_when(o["grant_expires_at"]), o["grant_limit"],
                                     o["allow_node_routing"])
                                    for o in st["offers"]]))
    run.ui.emit(st, human)
