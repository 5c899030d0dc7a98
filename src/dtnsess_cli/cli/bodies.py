"""The bodies of the hot commands (``request``, ``close``, ``create``, ``renew``, ``stats``,
``balance``, ``sessions``, ``requests``), without Typer: the fast path (``fastpath.py``) and the
Typer commands (``sessions.py``, ``requests.py``, where their options and help are declared)
run the same code here, through ``run.invoke``."""

from __future__ import annotations

import sys

from ..config import CliOptions
from ..errors import DtnsessError, ExitCode, InputError
from .run import (STDOUT_DONE, Exit, Run, debug_enabled, error_handler, fmt_time, fmt_when,
                  raise_usage, settled_lines)

# NOTE: typing costs ~20 ms of import; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, List, Optional


def balance(user: Optional[str] = None, *, g: CliOptions) -> None:
    run = Run(g)
    b = run.client.balances(user)
    from ..manager import MAX_UINT256

    allowance = "unlimited" if b.allowance.units >= MAX_UINT256 else b.allowance.human()
    run.ui.emit(b, run.ui.kv(f"Balances of {b.address}", [
        ("ETH", b.eth.human()), ("fee token", b.token.human()),
        ("allowance", allowance), ("claimable refunds", b.claimable_refunds.human())]))


def create(amount: str, approve_max: bool = False, *, g: CliOptions) -> None:
    run = Run(g)
    res = run.client.create_session(amount, approve_max)
    sid = res.data.get("session_id")
    amount = res.data["amount"].human()
    run.write(res, f"would create session {sid} with {amount}" if res.dry_run and sid
              else f"session {sid} created with {amount}" if sid
              else "session creation simulated")


def renew(session: str, amount: str, approve_max: bool = False, *, g: CliOptions) -> None:
    from ..manager import parse_session_id

    run = Run(g)
    res = run.client.renew_session(parse_session_id(session), amount, approve_max)
    nb = res.data.get("new_balance")
    done = "would be renewed" if res.dry_run else "renewed"
    run.write(res, (f"session {session} {done}" + (f": balance {nb.human()}" if nb else ""))
              if res.error is None else f"session {session} not renewed",
              settled_lines(res.to_dict()))


def close(session: Optional[str] = None, all_: bool = False, cancel: bool = False, *,
          g: CliOptions) -> None:
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


def stats(session: str, *, g: CliOptions) -> None:
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


def sessions(user: Optional[str] = None, *, g: CliOptions) -> None:
    run = Run(g)
    rows = run.client.sessions(user)
    run.ui.emit({"sessions": rows}, run.ui.table(
        f"{len(rows)} session{'s' if len(rows) != 1 else ''}", _SESSION_COLS, _session_rows(rows),
        justify={"funded": "right", "remaining (DTN)": "right"}))


def request(prompt: Optional[str] = None, file: Optional[Path] = None,
            model: Optional[str] = None, namespace: Optional[List[str]] = None,
            node: Optional[List[str]] = None, value: str = "300000",
            session: Optional[str] = None, wait: bool = False, timeout: float = 300.0,
            sessions_n: Optional[int] = None, image: Optional[str] = None,
            ipfs: bool = False, out: Optional[Path] = None, force: bool = False, *,
            g: CliOptions) -> None:
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
            raise Exit(int(ExitCode.ERROR))
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
        raise Exit(int(err.get("code") or ExitCode.ERROR))
    if not ok:
        raise Exit(int(ExitCode.ERROR))
    if wait and any(r.get("response") is None or r["response"].status != "succeeded"
                    for r in rows):
        pending = sum(1 for r in rows if r.get("response") and r["response"].status == "pending")
        if pending:
            from ..manager.base import UNANSWERED_CAUSES

            sys.stderr.write(f"error: {pending} answer{'s' if pending != 1 else ''} still pending "
                             f"after {timeout:g}s\nhint: {UNANSWERED_CAUSES}\n")
            raise Exit(int(ExitCode.TIMEOUT))
        raise Exit(int(ExitCode.ERROR))


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


def requests_(pending: bool = False, user: Optional[str] = None, *, g: CliOptions) -> None:
    run = Run(g)
    rows = run.client.requests(user, pending)
    from ..manager import ANSWERED

    stuck = sum(1 for r in rows if r.status == ANSWERED)
    run.ui.emit({"requests": rows}, run.ui.table(
        f"{len(rows)} request{'s' if len(rows) != 1 else ''}"
        + (f" ({stuck} answered, callback failed: `dtnsess settle --all`)" if stuck else ""),
        ["request id", "session", "created", "status"],
        [(r.request_id, r.session_id, fmt_time(r.created_at), r.status) for r in rows]))
