"""Request commands: ``request`` (one prompt, or ``--file`` fanned out over sessions),
``response``, ``requests``, ``settle``, ``tx``."""

import sys
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from ..config import CliOptions
from ..errors import DtnsessError, ExitCode, InputError
from .app import (STDOUT_DONE, Run, app, command, debug_enabled, error_handler, fmt_time, group,
                  raise_input, raise_usage, settled_lines)


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
    from ..units import parse_eth_value

    if (prompt is None) == (file is None):
        raise_usage("give a PROMPT or --file (not both)")
    if file is not None and (image or ipfs or out):
        raise_usage("--image, --ipfs and --out take one PROMPT, not --file")
    with error_handler(debug_enabled(g), g.json):
        from ..manager.base import callback_gas_warning

        wei = parse_eth_value(value, what="--value")
        warning = callback_gas_warning(wei, value)
        if timeout <= 0:
            raise InputError("--timeout", str(timeout), "must be positive")
        size = _media_checks(image, out, force, wait)
    run = Run(g)
    if warning:
        run.ui.warn(warning)
    c = run.client
    if file is not None:
        _request_file(run, file, model, namespace or [], node or [], wei, sessions_n,
                      wait, timeout)
        return
    if sessions_n is not None:
        raise_usage("--sessions goes only with --file (use --session for one)")
    from ..manager import parse_session_id

    sid = parse_session_id(session) if session else None
    _gateway_check(run, (ipfs or size is not None) and (wait or out is not None), out)
    res = c.make_ai_request(prompt, model=model, namespaces=namespace or [], nodes=node or [],
                            value=wei, session_id=sid, image=size, ipfs=ipfs or None)
    rid = res.data.get("request_id")
    if wait and rid and not res.dry_run:
        if not g.json:
            run.ui.info(f"request {rid} sent; waiting for the answer")
        ans = None
        try:
            ans = c.wait_for_answer(rid, timeout, from_block=res.data.get("block"))
            _deliver(run, ans, out, force, res.data)
        except (DtnsessError, KeyboardInterrupt) as exc:
            # NOTE: the request is sent and paid for: with --json a script still gets its id
            # on stdout (or it might send it again), with the error in the same document
            if g.json:
                res.data["response"] = ans  # None unless the content could not be delivered
                res.data["error"] = (exc.to_dict() if isinstance(exc, DtnsessError) else
                                     {"error": True, "code": int(ExitCode.INTERRUPTED),
                                      "name": "INTERRUPTED", "message": "interrupted"})
                run.ui.emit(res.to_dict())
                setattr(exc, STDOUT_DONE, True)
            raise
        res.data["response"] = ans
        data = res.to_dict()
        if g.json:
            run.ui.emit(data)
        else:
            run.ui.emit(data, _response_human(ans))
        if ans.status == "failed":
            raise typer.Exit(int(ExitCode.ERROR))
        return
    fee, sid = res.data.get("dtn_fee"), res.data.get("session_id")
    # NOTE: the fee with its symbol, as everywhere a person reads an amount ("DTN fee: 0.161"
    # said nothing of the token); a dry run without --session leaves the choice to the contract
    run.write(res, f"request {rid} sent" if rid and not res.dry_run else "request simulated",
              ([("session", sid)] if sid is not None else [])
              + [("model", res.data["model"]),
                 ("DTN fee", fee.human() if fee is not None else None)])


def _media_checks(image: Optional[str], out: Optional[Path], force: bool,
                  wait: bool) -> Optional[tuple]:
    """What --image/--out need, checked before anything is read or sent: (width, height)."""
    if image is None and out is None:
        return None  # a text request: no need of the media module (nor its imports)
    from ..media import check_output, parse_size

    size = parse_size(image) if image is not None else None
    if out is not None:
        if not wait:
            raise InputError("--out", str(out), "needs --wait (or later: `dtnsess response ID "
                             "--out FILE`)")
        check_output(out, force)
    return size


def _gateway_check(run: Run, fetch: bool, out: Optional[Path]) -> None:
    """Before the request is paid for: the gateway an IPFS answer will be fetched from."""
    from urllib.parse import urlsplit

    from ..errors import ConfigError

    gw = run.settings.ipfs_gateway
    if fetch and out is not None and not gw:
        raise ConfigError("--out with --ipfs or --image needs an IPFS gateway to fetch the "
                          "answer from",
                          hint="set DTNSESS_IPFS_GATEWAY, e.g. https://ipfs.io")
    if fetch and gw:
        try:
            u = urlsplit(gw)
            ok = u.scheme in ("http", "https") and bool(u.hostname) and u.port != 0
        except ValueError:  # a port that is not a number, a broken IPv6 address
            ok = False
        if not ok:
            src = run.settings.sources.get("ipfs_gateway", "DTNSESS_IPFS_GATEWAY")
            raise ConfigError(f"the IPFS gateway from {src} is not an http(s) URL",
                              hint="e.g. DTNSESS_IPFS_GATEWAY=https://ipfs.io")


def _deliver(run: Run, ans: Any, out: Optional[Path], force: bool,
             data: Optional[dict] = None) -> None:
    """An answer's content: fetched through the IPFS gateway when it is a CID and a gateway
    is set, and written to ``out``. A gateway error is raised after the fetch is recorded in
    ``ans.content``; nothing is written then."""
    from ..errors import ConfigError
    from ..media import GatewayError, write_output

    if ans.status != "succeeded":
        if out is not None:
            raise DtnsessError(f"request {ans.request_id} is {ans.status}: nothing written to "
                               f"{out}")
        return
    if ans.kind == "cid" and run.settings.ipfs_gateway:
        try:
            run.client.fetch_ipfs(ans)
        except GatewayError as exc:
            ans.content = {"error": exc.message}
            raise
    if out is None:
        return
    if ans._data is None:
        raise ConfigError(f"the answer is the IPFS CID {ans.cid}: nothing to write without a "
                          f"gateway", hint="set DTNSESS_IPFS_GATEWAY, e.g. https://ipfs.io")
    write_output(out, ans._data, force)
    written = {"path": str(out), "size": len(ans._data)}
    if ans.content is not None:
        ans.content["written"] = written
    if data is not None:
        data["out"] = written


def _request_file(run: Run, path: Path, model, namespaces, nodes, wei: int,
                  sessions_n: Optional[int], wait: bool, timeout: float) -> None:
    """`request --file`: the batch's report (a table, or JSON) whatever happened; exit non-zero
    unless every prompt got a request id (and, with --wait, an answer)."""
    with error_handler(debug_enabled(run.g), run.g.json):
        try:
            prompts = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        except OSError as exc:
            raise InputError("--file", str(path), exc.strerror or "cannot read") from None
        except UnicodeDecodeError:
            raise InputError("--file", str(path), "not UTF-8 text") from None
        if not prompts:
            raise InputError("--file", str(path), "no prompts in the file")
        c = run.client
        out = c.request_batch(prompts, model=model, namespaces=namespaces, nodes=nodes,
                              value=wei, sessions=sessions_n)
        rows = out["requests"]
        ok = all(r["status"] in ("sent", "simulated") for r in rows)
        if wait and ok and not out["dry_run"]:
            first = min(r["block"] for r in rows)
            answers = c.wait_for_answers([r["request_id"] for r in rows], timeout,
                                         from_block=first)
            for r, a in zip(rows, answers):
                r["response"] = a
    err = out.get("error")
    if run.g.json:
        run.ui.emit(out)
    else:
        counts: dict = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        title = (f"{len(rows)} prompt{'s' if len(rows) != 1 else ''} over "
                 f"{len(out['sessions'])} session{'s' if len(out['sessions']) != 1 else ''}: "
                 + ", ".join(f"{v} {k}" for k, v in counts.items()))
        cols = ["#", "session", "request id", "status", "prompt"]
        if wait:
            cols += ["answer"]

        def cells(r):
            row = [r["index"], r.get("session_id"), r.get("request_id"),
                   r["status"] + (f" (tx {run.ui.tx_ref(r['tx_hash'])})"
                                  if r["status"] == "unknown" else ""),
                   r["prompt"] if len(r["prompt"]) <= 40 else r["prompt"][:39] + "…"]
            if wait:
                a = r.get("response")
                row.append(None if a is None else (a.answer if a.status == "succeeded"
                                                   else f"[{a.status}] {a.message}".strip()))
            return row
        run.ui.emit(out, run.ui.table(title, cols, [cells(r) for r in rows]))
    if err:
        from ..render import clean

        sys.stderr.write("error: " + " ".join(clean(str(err["message"])).split())
                         + " (the batch stopped; see the table for what was sent)\n")
        if err.get("hint"):
            sys.stderr.write(f"hint: {clean(err['hint'])}\n")
        raise typer.Exit(int(err.get("code") or ExitCode.ERROR))
    if not ok:
        raise typer.Exit(int(ExitCode.ERROR))
    if wait and any(r.get("response") is None or r["response"].status != "succeeded"
                    for r in rows):
        pending = sum(1 for r in rows if r.get("response") and r["response"].status == "pending")
        if pending:
            from ..manager.base import UNANSWERED_CAUSES

            sys.stderr.write(f"error: {pending} answer{'s' if pending != 1 else ''} still pending "
                             f"after {timeout:g}s\nhint: {UNANSWERED_CAUSES}\n")
            raise typer.Exit(int(ExitCode.TIMEOUT))
        raise typer.Exit(int(ExitCode.ERROR))


def _response_human(ans):
    def human(out) -> None:
        out.print(f"request {ans.request_id}: {ans.status}", markup=False)
        if ans.note:
            out.print(f"note: {ans.note}", markup=False)
        if ans.message:
            out.print(f"message: {ans.message}", markup=False)
        if ans.cid:
            out.print(f"cid: {ans.cid}", markup=False)
            out.print(f"url: {ans.ipfs_url}", markup=False)
        content = ans.content or {}
        if content.get("gateway"):
            check = ("verified: hashes to the CID" if content.get("verified")
                     else "not verified: the gateway sent no blocks to check against the CID")
            out.print(f"fetched from {content['gateway']} ({check})", markup=False)
        elif ans.kind == "cid" and "error" not in content:
            out.print("not fetched: set DTNSESS_IPFS_GATEWAY to fetch it", markup=False)
        if ans.answer is not None:
            out.print(ans.answer, markup=False)
        elif content.get("type") == "text":
            out.print(content.get("text", ""), markup=False)
        elif content.get("type") == "image":
            dims = (f", {content['width']}x{content['height']}"
                    if content.get("width") and content.get("height") else "")
            out.print(f"image: {content['format'].upper()}{dims}, {content['size']:,} bytes",
                      markup=False)
        elif content.get("type") == "bytes":
            out.print(f"content: {content['size']:,} bytes (not text or a known image type)",
                      markup=False)
        if content.get("written"):
            w = content["written"]
            unverified = content.get("gateway") and not content.get("verified")
            out.print(f"wrote {w['size']:,} bytes to {w['path']}"
                      + (" (UNVERIFIED: the gateway's bytes could not be checked against the "
                         "CID)" if unverified else ""), markup=False)
        elif content.get("type") in ("image", "bytes"):
            out.print("(save it with --out FILE)", markup=False)
        if ans.answer is None and ans.kind in (None, "raw", "bytes") and ans.response_hex:
            out.print(f"response (raw): {ans.response_hex}", markup=False)
    return human


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
    run = Run(g)
    rows = run.client.requests(user, pending)
    from ..manager import ANSWERED

    stuck = sum(1 for r in rows if r.status == ANSWERED)
    run.ui.emit({"requests": rows}, run.ui.table(
        f"{len(rows)} request{'s' if len(rows) != 1 else ''}"
        + (f" ({stuck} answered, callback failed: `dtnsess settle --all`)" if stuck else ""),
        ["request id", "session", "created", "status"],
        [(r.request_id, r.session_id, fmt_time(r.created_at), r.status) for r in rows]))


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
