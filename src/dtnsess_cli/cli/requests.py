"""Request commands: ``request`` (one prompt, or ``--file`` fanned out over sessions),
``response``, ``requests``, ``settle``, ``tx``."""

from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from ..config import CliOptions
from ..errors import DtnsessError, ExitCode
from . import bodies
from .bodies import _deliver, _response_human
from .root import STDOUT_DONE, Run, app, command, group, raise_input, raise_usage, settled_lines


@command(app, "request")
def request(
    prompt: Annotated[Optional[str], typer.Argument(help="the prompt")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="one prompt per line; fans out "
                                                 "over your active sessions")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="full model name [env: DTNSESS_MODEL]")] = None,
    namespace: Annotated[Optional[List[str]], typer.Option("--namespace", help="trust namespace "
                                                          "(name or 0x id); repeatable")] = None,
    node: Annotated[Optional[List[str]], typer.Option("--node", help="node name, e.g. "
                                                     "tester.node1; repeatable")] = None,
    value: Annotated[str, typer.Option("--value", help="ETH sent as the callback gas, 1 wei per "
                                       "gas unit: 300000 (wei), 5e5, 0x493e0, 500000wei; "
                                       "27000 to 10000000 (measured needs: 25.2k gas for a "
                                       "short answer, 46.5k at 4,000 characters, 117k at 16 "
                                       "KB)")] = "300000",
    session: Annotated[Optional[str], typer.Option("--session", help="use this session")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the answer")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for the answer")] = 300.0,
    sessions_n: Annotated[Optional[int], typer.Option(
        "--sessions", help="with --file: use N of your active sessions (N requests per second)",
        show_default=False)] = None,
    image: Annotated[Optional[str], typer.Option(
        "--image", metavar="WxH", help="an image request (answered over IPFS), to "
        "model.system.openai-gpt-image-1 unless --model; WxH (16..4096 a side) is sent, but the "
        "network decides the size: DTN's image processor makes 1024x1024",
        show_default=False)] = None,
    ipfs: Annotated[bool, typer.Option("--ipfs", help="call type IPFS: the node answers the "
                                       "output's CID (fetched through DTNSESS_IPFS_GATEWAY); "
                                       "implied by --image")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="with --wait: write the answer's "
                                                "content (image bytes) to FILE")] = None,
    force: Annotated[bool, typer.Option("--force", help="let --out overwrite an existing file")] = False,
    *, g: CliOptions,
) -> None:
    """Make an AI request (system trust unless --namespace/--node); print the request id."""
    bodies.request(prompt, file, model, namespace, node, value, session, wait, timeout, sessions_n,
                image, ipfs, out, force, g=g)


@command(app, "response")
def response(
    request_id: Annotated[str, typer.Argument(help="0x request id")],
    out: Annotated[Optional[Path], typer.Option("--out", help="write the answer's content "
                                                "(image bytes) to FILE")] = None,
    force: Annotated[bool, typer.Option("--force", help="let --out overwrite an existing file")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the answer (or the failure); "
                                       "exit 10 when --timeout passes, 1 on a failed "
                                       "answer")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="with --wait: seconds to wait, "
                                           "node retries included")] = 300.0,
    *, g: CliOptions,
) -> None:
    """Status and decoded answer of a request (text, image, or IPFS CID)."""
    from ..media import check_output

    if wait and timeout <= 0:
        raise_input("--timeout", str(timeout), "must be positive")
    check_output(out, force)
    run = Run(g)
    # --wait: the one wait helper `request --wait` uses (it looks first, then follows the logs)
    ans = run.client.wait_for_answer(request_id, timeout) if wait else run.client.response(request_id)
    try:
        _deliver(run, ans, out, force)
    except DtnsessError as exc:
        # NOTE: what the chain says is shown all the same (a CID, its status); then the error
        run.ui.emit(ans, _response_human(ans))
        setattr(exc, STDOUT_DONE, True)
        raise
    run.ui.emit(ans, _response_human(ans))
    if wait and ans.status == "failed":  # as `request --wait`: a script can tell an answer from a failure
        raise typer.Exit(int(ExitCode.ERROR))


@command(app, "models")
def models(*, g: CliOptions) -> None:
    """The models the chain registered, with their APIs (read from the router's model manager);
    when that cannot be read, the devnet's or the network preset's list, saying so. The
    configured default is marked."""
    from ..models import spec_of

    run = Run(g)
    s = run.settings
    rows: Optional[list] = None
    note = None
    if s.contract and s.rpc_url:
        try:
            rows = run.client.registered_models()
            source = "chain"
        except DtnsessError as exc:
            note = f"not read from the chain: {' '.join(exc.message.split())}"
    if rows is None:
        source = ("devnet state" if s.devnet_file and s.models else
                  f"preset {s.network}" if s.models else None)
        rows = []
        for n in s.models:
            spec = spec_of(n)
            rows.append({"name": n, "kind": spec.kind if spec else None,
                         "api": spec.api if spec else None, "specs": spec.specs if spec else None})
        if source:
            note = (note + "; " if note else "") + f"this is the {source}'s list, which may differ"
    listed = [r["name"] for r in rows]
    for r in rows:
        r.update(default=r["name"] == s.model, listed=True)
    if s.model not in listed:  # the configured one, whatever the list says
        spec = spec_of(s.model)
        rows.append({"name": s.model, "kind": spec.kind if spec else None,
                     "api": spec.api if spec else None, "specs": spec.specs if spec else None,
                     "default": True, "listed": False})
    doc = {"models": rows, "default": s.model, "source": source, "note": note}

    def human(out) -> None:
        out.print(run.ui.table(
            f"{len(listed)} model{'s' if len(listed) != 1 else ''} "
            + (f"({'registered on the chain' if source == 'chain' else source})" if source
               else "(no list: a contract on a chain, a devnet or --network base gives one)"),
            ["model", "kind", "api", "specs", "default"],
            [(r["name"], r["kind"] or "?", r["api"] or "?", r["specs"] or "?",
              "default" + ("" if r["listed"] else " (not in the list)") if r["default"] else "")
             for r in rows]))
        if note:
            out.print(f"note: {note}", markup=False)

    run.ui.emit(doc, human)


@command(app, "requests")
def requests_(
    pending: Annotated[bool, typer.Option("--pending", help="only pending ones")] = False,
    user: Annotated[Optional[str], typer.Option("--user", help="another address")] = None,
    *, g: CliOptions,
) -> None:
    """A user's requests: session, age, status (stuck ones visible)."""
    bodies.requests_(pending, user, g=g)


@command(app, "settle")
def settle(
    request_id: Annotated[Optional[str], typer.Argument(help="0x request id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every answered request still pending: "
                                       "yours, and those in your sessions")] = False,
    *, g: CliOptions,
) -> None:
    """Record answers whose callback failed (they block close and renew until settled)."""
    if (request_id is None) == (not all_):
        raise_usage("give a REQUEST_ID or --all (not both)")
    run = Run(g)
    res = run.client.settle(request_id)
    n = len(res.data["settled"])
    head = (res.data.get("note") if not res.txs
            else f"{'would settle' if res.dry_run else 'settled'} {n} request{'s' if n != 1 else ''}")
    run.write(res, head, settled_lines(res.to_dict()))


tx_app = group(default=True, help="A transaction of ours: what it did (`dtnsess tx HASH`); "
                                  "replace a stuck one (speedup, cancel).")
app.add_typer(tx_app, name="tx")


@command(tx_app, "show")
def tx_(
    tx_hash: Annotated[str, typer.Argument(help="0x transaction hash")],
    *, g: CliOptions,
) -> None:
    """A transaction: pending/mined/failed/unknown, block, gas, fee, events, what it did (the
    default: `dtnsess tx HASH`)."""
    run = Run(g)
    v = run.client.tx_view(tx_hash)

    def human(out) -> None:
        head = f"tx {run.ui.tx_ref(v.tx_hash)}: {v.status}"
        if v.block is not None:
            head += f" in block {v.block}"
        out.print(head, markup=False)
        if v.what:
            out.print(f"  what: {v.what}" + (f" (`{v.command}`)" if v.command else ""),
                      markup=False)
            out.print(f"  journal: {v.journal} on {v.journal_chain}"
                      + (", another chain than the node's" if v.other_chain else ""),
                      markup=False)
        for k, val in (("from", v.sender), ("to", v.to), ("nonce", v.nonce),
                       ("gas used", v.gas_used), ("fee", f"{v.fee_eth} ETH" if v.fee_eth else None),
                       ("reverted", v.revert)):
            if val is not None:
                out.print(f"  {k}: {val}", markup=False)
        for e in v.events:
            args = ", ".join(f"{k}={_event_arg(a)}" for k, a in e["args"].items())
            out.print(f"  event {e['name']}({args})", markup=False)
        for m in v.family or []:
            out.print(f"  variant at its nonce: {m['variant']} tx {m['tx_hash']} "
                      f"({m['journal']})", markup=False)
        if v.status == "unknown":
            out.print("  the node does not know this transaction (never sent, dropped, or "
                      "another chain)", markup=False)

    run.ui.emit(v, human)
    if v.status == "unknown":
        raise typer.Exit(int(ExitCode.ERROR))


def _replace(tx_hash: str, cancel: bool, g: CliOptions) -> None:
    run = Run(g)
    res = run.client.replace_tx(tx_hash, cancel=cancel)
    d = res.data
    verb = "cancel" if cancel else "speed up"
    if res.dry_run:
        head = f"would {verb} tx {d['replaces']} (nonce {d['nonce']})"
    elif d["mined"] == "original":
        head = f"the original tx {d['replaces']} was mined first; the replacement was not"
    else:
        head = (f"{'cancelled' if cancel else 'sped up'}: tx {d['replaces']} (nonce "
                f"{d['nonce']}) replaced")
    run.write(res, head)


@command(tx_app, "speedup")
def tx_speedup(
    tx_hash: Annotated[str, typer.Argument(help="0x hash of a pending transaction of ours")],
    *, g: CliOptions,
) -> None:
    """Send a pending transaction again at the same nonce with both fees raised by at least
    10% (or to what the chain asks now; --priority-gas-price / --max-fee set them, never below
    that minimum): one of the two is mined, never both. A node that wants more gets +10% more,
    a few times at most, each confirmed, never above --max-fee."""
    _replace(tx_hash, False, g)


@command(tx_app, "cancel")
def tx_cancel(
    tx_hash: Annotated[str, typer.Argument(help="0x hash of a pending transaction of ours")],
    *, g: CliOptions,
) -> None:
    """Replace a pending transaction with a 0-value transfer to yourself at its nonce, fees
    raised (or set) as for speedup: if the cancel is mined, nothing of the original is done."""
    _replace(tx_hash, True, g)


def _event_arg(a: Any) -> str:
    if isinstance(a, (bytes, bytearray)):
        return "0x" + bytes(a).hex()
    return str(a)
