"""The `dtnsess` command line: parse -> config -> client -> render.

Commands are thin: they parse arguments, call a ``Client`` method and render its result.
No web3 calls here; ``client`` (and so web3) is imported only when a command runs, so
``dtnsess --help`` starts fast and never imports web3.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, List, NoReturn, Optional

import typer

from .config import CliOptions, resolve_settings
from .errors import DtnsessError, ExitCode, InputError, LockedError, GasPriceTooHighError, RpcError

HELP = """Client for the Deep Trust Network AdvancedSessionManager contract.

Configuration comes from flags, then DTNSESS_* environment variables, then ./.env, then
--network presets, then a local devnet's .dtnsess-devnet.json. A private key is never a flag:
set DTNSESS_PRIVATE_KEY (environment or .env) or use a Foundry keystore (--account / --keystore).

Exit codes: 0 ok, 1 error, 2 usage, 3 config, 4 input, 5 rpc, 6 chain, 7 reverted, 8 funds,
9 auth, 10 timeout, 11 gas price, 12 locked, 13 aborted, 130 interrupted.
"""

app = typer.Typer(
    name="dtnsess",
    help=HELP,
    no_args_is_help=True,
    add_completion=True,
    # NOTE: locals can hold a key: never let Typer print them
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
pool_app = typer.Typer(help="The shared session pool.", no_args_is_help=True)
config_app = typer.Typer(help="Show or change configuration.", no_args_is_help=True)
refunds_app = typer.Typer(help="Refunds credited by cleanup.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")
app.add_typer(config_app, name="config")
app.add_typer(refunds_app, name="refunds")

# ------------------------------------------------------------------------------- global options

# Click's UsageError (newer typer releases vendor click; reach it through its subclass)
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

_G = "Global options"
RpcUrlOpt = Annotated[Optional[str], typer.Option(
    "--rpc-url", help="JSON-RPC URL [env: DTNSESS_RPC_URL, ETH_RPC_URL]", rich_help_panel=_G,
    show_default=False)]
ContractOpt = Annotated[Optional[str], typer.Option(
    "--contract", help="AdvancedSessionManager address [env: DTNSESS_CONTRACT]",
    rich_help_panel=_G, show_default=False)]
NetworkOpt = Annotated[Optional[str], typer.Option(
    "--network", help="preset: base | local [env: DTNSESS_NETWORK]", rich_help_panel=_G,
    show_default=False)]
ChainIdOpt = Annotated[Optional[int], typer.Option(
    "--chain-id", help="refuse to run on another chain [env: DTNSESS_CHAIN_ID]",
    rich_help_panel=_G, show_default=False)]
AccountOpt = Annotated[Optional[str], typer.Option(
    "--account", help="Foundry keystore name (~/.foundry/keystores/NAME) [env: DTNSESS_ACCOUNT]",
    rich_help_panel=_G, show_default=False)]
KeystoreOpt = Annotated[Optional[str], typer.Option(
    "--keystore", help="keystore file path [env: DTNSESS_KEYSTORE]", rich_help_panel=_G,
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout",
                                       rich_help_panel=_G)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation",
                                      rich_help_panel=_G)]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="simulate only; send nothing",
                                         rich_help_panel=_G)]
DebugOpt = Annotated[bool, typer.Option("--debug", help="show tracebacks [env: DTNSESS_DEBUG=1]",
                                        rich_help_panel=_G)]

_GLOBALS = [
    ("rpc_url", RpcUrlOpt, None), ("contract", ContractOpt, None), ("network", NetworkOpt, None),
    ("chain_id", ChainIdOpt, None), ("account", AccountOpt, None), ("keystore", KeystoreOpt, None),
    ("json", JsonOpt, False), ("yes", YesOpt, False), ("dry_run", DryRunOpt, False),
    ("debug", DebugOpt, False),
]
_GLOBAL_NAMES = [n for n, _, _ in _GLOBALS]


@app.callback()
def _root(ctx: typer.Context, rpc_url: RpcUrlOpt = None, contract: ContractOpt = None,
          network: NetworkOpt = None, chain_id: ChainIdOpt = None, account: AccountOpt = None,
          keystore: KeystoreOpt = None, json: JsonOpt = False, yes: YesOpt = False,
          dry_run: DryRunOpt = False, debug: DebugOpt = False) -> None:
    ctx.obj = CliOptions(rpc_url, contract, network, chain_id, account, keystore, json, yes,
                         dry_run, debug)


def _debug_enabled(opts: Optional[CliOptions] = None) -> bool:
    return bool(opts and opts.debug) or os.environ.get("DTNSESS_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def error_handler(debug: bool = False, json_mode: bool = False) -> Iterator[None]:
    """THE error handler: a DtnsessError becomes one `error:` line (+ hint) on stderr, with
    ``--json`` also one JSON document on stdout, and its exit code.

    Used by every command (so in-process CliRunner runs get exit codes) and by ``main()``.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, _UsageError):
        raise
    except DtnsessError as exc:
        _report(exc, debug, json_mode)
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt as exc:
        err = DtnsessError("interrupted")
        setattr(err, STDOUT_DONE, getattr(exc, STDOUT_DONE, False))
        _report(err, False, json_mode, ExitCode.INTERRUPTED)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as exc:  # noqa: BLE001 - classified below, never a bare traceback
        mapped = _classify(exc)
        _report(mapped, debug, json_mode)
        raise typer.Exit(int(mapped.exit_code)) from None


def _classify(exc: BaseException) -> DtnsessError:
    from .errors import scrub

    mod = type(exc).__module__ or ""
    name = type(exc).__name__
    if mod.startswith(("requests", "urllib3", "aiohttp")) or name in (
            "ProviderConnectionError", "RequestTimedOut"):
        from .rpc import describe

        return RpcError(None, describe(exc))
    if mod.startswith("web3") and name in ("Web3RPCError", "MethodUnavailable"):
        return RpcError(None, f"node error: {scrub(str(getattr(exc, 'message', exc)))}")
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    err = DtnsessError(f"internal error: {name}: {scrub(first)}",
                       hint="rerun with --debug for the traceback, and please report it")
    return err


# NOTE: set on an exception whose command already printed its one JSON document (e.g. a
# request that was sent before its wait failed): the error then goes to stderr only.
STDOUT_DONE = "dtnsess_stdout_done"


def _report(exc: DtnsessError, debug: bool, json_mode: bool = False,
            code: Optional[ExitCode] = None) -> None:
    from .errors import scrub

    if debug:
        import traceback

        # NOTE: library messages quote the RPC URL (requests' "... for url: ..."): redacted
        sys.stderr.write(scrub(traceback.format_exc()))
    # one line, whatever the message holds
    sys.stderr.write("error: " + " ".join(scrub(exc.message).split()) + "\n")
    if exc.hint:
        sys.stderr.write(f"hint: {scrub(exc.hint)}\n")
    sys.stderr.flush()
    if json_mode and not getattr(exc, STDOUT_DONE, False):
        import json

        doc = exc.to_dict()
        if code is not None:
            doc.update(code=int(code), name=code.name)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        sys.stdout.flush()


def command(typer_app: typer.Typer, name: Optional[str] = None, **kw: Any) -> Callable:
    """Register a command that also accepts every global option after its name
    (``dtnsess create 50 --json``) and receives them merged as ``g: CliOptions``."""

    def deco(func: Callable) -> Callable:
        sig = inspect.signature(func, eval_str=True)  # `from __future__ import annotations`
        own = [p for p in sig.parameters.values() if p.name != "g"]
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
                 for n, a, d in _GLOBALS]
        # Typer injects the click context into a parameter annotated typer.Context
        extra.append(inspect.Parameter("dtnsess_ctx", inspect.Parameter.KEYWORD_ONLY,
                                       annotation=typer.Context))

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from .journal import INTENT

            local = CliOptions(**{n: kwargs.pop(n) for n in _GLOBAL_NAMES})
            click_ctx = kwargs.pop("dtnsess_ctx")
            root = click_ctx.find_root().obj
            g = local.merged_over(root if isinstance(root, CliOptions) else CliOptions())
            token = INTENT.set({"argv": _intent_argv(click_ctx)})
            try:
                with error_handler(_debug_enabled(g), g.json):
                    return func(*args, g=g, **kwargs)
            finally:
                INTENT.reset(token)

        wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**{p.name: p.annotation for p in own},
                                   **{n: a for n, a, _ in _GLOBALS},
                                   "dtnsess_ctx": typer.Context}
        typer_app.command(name, **kw)(wrapper)
        return func

    return deco


def _intent_argv(ctx: Any) -> str:
    """The command line as the journal records it (``dtnsess create 20``): the command's own
    arguments and options, not the global ones (a key is never an argument)."""
    import shlex

    names = []
    c = ctx
    while c is not None and c.parent is not None:
        names.insert(0, c.info_name)
        c = c.parent
    words = ["dtnsess"] + names
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if p.name in _GLOBAL_NAMES or v in (None, False, (), []) or v == p.default:
            continue
        opt = [] if p.param_type_name == "argument" else [p.opts[0]]
        if v is True:
            words += opt
            continue
        for item in (v if isinstance(v, (list, tuple)) else [v]):
            text = str(item)
            words += opt + [shlex.quote(text if len(text) <= 80 else text[:77] + "...")]
    return " ".join(words)


class Run:
    """One command run: settings, renderer and (lazily) the client."""

    def __init__(self, g: CliOptions) -> None:
        from .render import Renderer

        self.g = g
        self.settings = resolve_settings(g)
        self.ui = Renderer(json_mode=g.json)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from .client import Client  # imports web3: only when a command needs the chain

            self._client = Client(self.settings, self.ui)
        return self._client

    def write(self, res: Any, headline: str, lines: Optional[list] = None) -> None:
        """Render a WriteResult."""
        data = res.to_dict()
        if self.g.json:
            self.ui.emit(data)
            self.fail_after(res)
            return

        def human(out) -> None:
            tag = "[dry run] " if res.dry_run else ""
            out.print(f"{tag}{headline}", markup=False)
            for k, v in (lines or []):
                out.print(f"  {k}: {v}", markup=False)
            for t in res.txs:
                if t.dry_run:
                    out.print(f"  would send: {t.description} (gas ~{t.gas_estimate}, at most "
                              f"{t.summary().get('max_fee_eth')} ETH)", markup=False)
                else:
                    out.print(f"  tx {t.tx_hash} (block {t.block_number}, gas {t.gas_used}, "
                              f"fee {t.summary().get('fee_eth')} ETH)", markup=False)
        self.ui.emit(data, human)
        self.fail_after(res)

    @staticmethod
    def fail_after(res: Any) -> None:
        """A result that carries an error (something was sent, then the command was refused):
        the error line follows the result, with its exit code."""
        err = getattr(res, "error", None)
        if err is not None:
            _report(err, False)
            raise typer.Exit(int(err.exit_code))


def _settled_lines(data: dict) -> list:
    verb = "to settle" if data.get("dry_run") else "settled"
    return [(f"{verb} {x['request_id']}", f"{x['status']} (session {x['session_id']})")
            for x in data.get("settled") or []]


def _fmt_when(ts: int) -> str:
    """A deadline: the local time, no "ago" (the chain's clock may run ahead of ours)."""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ts))) if ts else "-"


def _fmt_time(ts: int) -> str:
    import time

    if not ts:
        return "-"
    age = int(time.time()) - int(ts)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ts)))
    if age < 0:
        return when
    if age < 120:
        return f"{when} ({age}s ago)"
    if age < 7200:
        return f"{when} ({age // 60}m ago)"
    return f"{when} ({age // 3600}h ago)"


# ------------------------------------------------------------------------------------ commands

@command(app, "deploy")
def deploy(
    ai: Annotated[Optional[str], typer.Option("--ai", help="DTN router address (default: the "
                                               "network preset's router)")] = None,
    write_env: Annotated[bool, typer.Option("--write-env", help="write DTNSESS_CONTRACT to ./.env")] = False,
    *, g: CliOptions,
) -> None:
    """Deploy the bundled AdvancedSessionManager."""
    run = Run(g)
    ai = ai or run.settings.router
    if not ai:
        raise_input("--ai", "", "the DTN router address is required (no network preset gives one)")
    res = run.client.deploy(ai)
    addr = res.data.get("contract")
    if write_env and addr and not res.dry_run:
        from .config import write_env_value

        write_env_value(Path.cwd() / ".env", "DTNSESS_CONTRACT", addr)
        res.data["wrote_env"] = str(Path.cwd() / ".env")
    run.write(res, f"AdvancedSessionManager deployed at {addr}" if addr else "deploy simulated",
              [("DTN router", res.data["ai"]), ("fee token", res.data["fee_token"])])


def raise_input(what: str, value: str, reason: str) -> NoReturn:
    raise InputError(what, value, reason)


@command(app, "balance")
def balance(
    user: Annotated[Optional[str], typer.Option("--user", help="another address")] = None,
    *, g: CliOptions,
) -> None:
    """ETH, fee token, allowance and claimable refunds."""
    run = Run(g)
    b = run.client.balances(user)
    from .client import MAX_UINT256

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
    if amount is None and not unlimited:
        raise_input("amount", "", "give an AMOUNT or --max")
    run = Run(g)
    res = run.client.approve(amount, unlimited)
    run.write(res, f"allowance set to {res.data['allowance']}")


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
    run.write(res, f"session {sid} created with {res.data['amount'].human()}" if sid
              else "session creation simulated")


@command(app, "renew")
def renew(
    session: Annotated[str, typer.Argument(help="session id")],
    amount: Annotated[str, typer.Argument(help="token amount to add")],
    approve_max: Annotated[bool, typer.Option("--approve-max")] = False,
    *, g: CliOptions,
) -> None:
    """Add funds to a session (its id stays the same)."""
    from .client import parse_session_id

    run = Run(g)
    res = run.client.renew_session(parse_session_id(session), amount, approve_max)
    nb = res.data.get("new_balance")
    run.write(res, (f"session {session} renewed" + (f": balance {nb.human()}" if nb else ""))
              if res.error is None else f"session {session} not renewed",
              _settled_lines(res.to_dict()))


@command(app, "close")
def close(
    session: Annotated[Optional[str], typer.Argument(help="session id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="close all your sessions")] = False,
    *, g: CliOptions,
) -> None:
    """Close a session (or --all); the refund comes back to you.

    Settles answered requests first. Still blocked by unanswered ones: marks it closing.
    """
    # NOTE: blocked, `close ID` sends beginClose (others can no longer add requests) and exits 7
    # with the time to retry; `close --all` closes the others and lists the skipped ones (exit 7
    # only when none could close). Typer keeps docstring line breaks: one line per paragraph.
    from .client import parse_session_id

    if (session is None) == (not all_):
        raise_input("arguments", session or "", "give a SESSION id or --all (not both)")
    run = Run(g)
    res = run.client.close_all_sessions() if all_ else run.client.close_session(parse_session_id(session))
    closed = res.data.get("closed") or []
    lines = _settled_lines(res.to_dict()) + [
        (f"session {c['session_id']}", f"refund {c['refund'].human()}"
         + (" (credited: `dtnsess refunds withdraw`)" if c["credited"] else ""))
        for c in closed]
    lines += [(f"session {k['session_id']}", f"skipped: unanswered requests, retry after "
               f"{_fmt_when(k['retry_after'])}") for k in res.data.get("skipped") or []]
    closing = res.data.get("closing")
    if closing:
        lines.append((f"session {closing['session_id']}",
                      ("now closing" if closing["began"] else "closing") + ": no new requests "
                      f"from others; close it after {_fmt_when(closing['closable_at'])}"))
    head = f"closed {len(closed)} session{'s' if len(closed) != 1 else ''}"
    if res.dry_run:
        head = "close simulated"
    elif session is not None and not closed:
        head = f"session {session} not closed"
    run.write(res, head, lines)


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
                                       "30000 to 10000000")] = "300000",
    session: Annotated[Optional[str], typer.Option("--session", help="use this session")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the answer")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for the answer")] = 300.0,
    sessions_n: Annotated[Optional[int], typer.Option(
        "--sessions", help="with --file: use N of your active sessions (N requests per second)",
        show_default=False)] = None,
    *, g: CliOptions,
) -> None:
    """Make an AI request (system trust unless --namespace/--node); print the request id."""
    from .units import parse_eth_value

    if (prompt is None) == (file is None):
        raise_input("arguments", prompt or "", "give a PROMPT or --file (not both)")
    with error_handler(_debug_enabled(g), g.json):
        wei = parse_eth_value(value, what="--value")
        _check_callback_value(value, wei)
        if timeout <= 0:
            raise InputError("--timeout", str(timeout), "must be positive")
    run = Run(g)
    c = run.client
    if file is not None:
        _request_file(run, file, model, namespace or [], node or [], wei, sessions_n,
                      wait, timeout)
        return
    if sessions_n is not None:
        raise_input("--sessions", str(sessions_n), "only with --file (use --session for one)")
    from .client import parse_session_id

    sid = parse_session_id(session) if session else None
    res = c.make_ai_request(prompt, model=model, namespaces=namespace or [], nodes=node or [],
                            value=wei, session_id=sid)
    rid = res.data.get("request_id")
    if wait and rid and not res.dry_run:
        if not g.json:
            run.ui.info(f"request {rid} sent; waiting for the answer")
        try:
            ans = c.wait_for_answer(rid, timeout, from_block=res.data.get("block"))
        except (DtnsessError, KeyboardInterrupt) as exc:
            # NOTE: the request is sent and paid for: with --json a script still gets its id
            # on stdout (or it might send it again), with the error in the same document
            if g.json:
                res.data["response"] = None
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
    run.write(res, f"request {rid} sent" if rid and not res.dry_run else "request simulated",
              [("session", res.data.get("session_id")), ("model", res.data["model"])])


# NOTE: the value is also the callback gas, one wei per gas unit (DTN-FACTS): the node's answer
# must carry that much gas, so more than a transaction may hold (2^24 on newer forks) makes the
# request unanswerable (1gwei asks for 10^9 gas). Too little and the callback runs out of gas on
# the real DTN (measured: ~26k gas for a short answer, 37k at 2 KB, 71k at 8 KB, 118.5k at 16 KB):
# the answer stands but the manager never records it.
MAX_CALLBACK_VALUE_WEI = 10_000_000
MIN_CALLBACK_VALUE_WEI = 30_000


def _check_callback_value(text: str, wei: int) -> None:
    if wei < MIN_CALLBACK_VALUE_WEI:
        raise InputError("--value", text, f"{wei} wei is {wei} gas for the callback; an answer "
                         f"needs about 26000 (short) to 118500 (16 KB), so at least "
                         f"{MIN_CALLBACK_VALUE_WEI}",
                         hint="the value is the callback gas in wei; the default 300000 covers "
                              "answers up to ~16 KB")
    if wei > MAX_CALLBACK_VALUE_WEI:
        raise InputError("--value", text, f"{wei} wei asks for {wei} gas for the callback, more "
                         f"than a node's answer can carry (at most {MAX_CALLBACK_VALUE_WEI} wei)",
                         hint="the value is the callback gas in wei; the default is 300000")


def _request_file(run: Run, path: Path, model, namespaces, nodes, wei: int,
                  sessions_n: Optional[int], wait: bool, timeout: float) -> None:
    """`request --file`: the batch's report (a table, or JSON) whatever happened; exit non-zero
    unless every prompt got a request id (and, with --wait, an answer)."""
    with error_handler(_debug_enabled(run.g), run.g.json):
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
                   r["status"] + (f" (tx {r['tx_hash']})" if r["status"] == "unknown" else ""),
                   r["prompt"] if len(r["prompt"]) <= 40 else r["prompt"][:39] + "…"]
            if wait:
                a = r.get("response")
                row.append(None if a is None else (a.answer if a.status == "succeeded"
                                                   else f"[{a.status}] {a.message}".strip()))
            return row
        run.ui.emit(out, run.ui.table(title, cols, [cells(r) for r in rows]))
    if err:
        sys.stderr.write("error: " + " ".join(str(err["message"]).split())
                         + " (the batch stopped; see the table for what was sent)\n")
        if err.get("hint"):
            sys.stderr.write(f"hint: {err['hint']}\n")
        raise typer.Exit(int(err.get("code") or ExitCode.ERROR))
    if not ok:
        raise typer.Exit(int(ExitCode.ERROR))
    if wait and any(r.get("response") is None or r["response"].status != "succeeded"
                    for r in rows):
        pending = sum(1 for r in rows if r.get("response") and r["response"].status == "pending")
        if pending:
            sys.stderr.write(f"error: {pending} answer{'s' if pending != 1 else ''} still pending "
                             f"after {timeout:g}s\n")
            raise typer.Exit(int(ExitCode.TIMEOUT))
        raise typer.Exit(int(ExitCode.ERROR))


def _response_human(ans):
    def human(out) -> None:
        out.print(f"request {ans.request_id}: {ans.status}", markup=False)
        if ans.note:
            out.print(f"note: {ans.note}", markup=False)
        if ans.message:
            out.print(f"message: {ans.message}", markup=False)
        if ans.answer is not None:
            out.print(ans.answer, markup=False)
        elif ans.response_hex:
            out.print(f"response (raw): {ans.response_hex}", markup=False)
    return human


@command(app, "response")
def response(
    request_id: Annotated[str, typer.Argument(help="0x request id")],
    *, g: CliOptions,
) -> None:
    """Status and decoded answer of a request."""
    run = Run(g)
    ans = run.client.response(request_id)
    run.ui.emit(ans, _response_human(ans))


@command(app, "requests")
def requests_(
    pending: Annotated[bool, typer.Option("--pending", help="only pending ones")] = False,
    user: Annotated[Optional[str], typer.Option("--user", help="another address")] = None,
    *, g: CliOptions,
) -> None:
    """A user's requests: session, age, status (stuck ones visible)."""
    run = Run(g)
    rows = run.client.requests(user, pending)
    from .client import ANSWERED

    stuck = sum(1 for r in rows if r.status == ANSWERED)
    run.ui.emit({"requests": rows}, run.ui.table(
        f"{len(rows)} request{'s' if len(rows) != 1 else ''}"
        + (f" ({stuck} answered, callback failed: `dtnsess settle --all`)" if stuck else ""),
        ["request id", "session", "created", "status"],
        [(r.request_id, r.session_id, _fmt_time(r.created_at), r.status) for r in rows]))


@command(app, "tx")
def tx_(
    tx_hash: Annotated[str, typer.Argument(help="0x transaction hash")],
    *, g: CliOptions,
) -> None:
    """A transaction: pending/mined/failed/unknown, block, gas, fee, events, what it did."""
    run = Run(g)
    v = run.client.tx_view(tx_hash)

    def human(out) -> None:
        head = f"tx {v.tx_hash}: {v.status}"
        if v.block is not None:
            head += f" in block {v.block}"
        out.print(head, markup=False)
        if v.what:
            out.print(f"  what: {v.what}" + (f" (`{v.command}`)" if v.command else ""),
                      markup=False)
        for k, val in (("from", v.sender), ("to", v.to), ("nonce", v.nonce),
                       ("gas used", v.gas_used), ("fee", v.fee.human() if v.fee else None),
                       ("reverted", v.revert)):
            if val is not None:
                out.print(f"  {k}: {val}", markup=False)
        for e in v.events:
            args = ", ".join(f"{k}={_event_arg(a)}" for k, a in e["args"].items())
            out.print(f"  event {e['name']}({args})", markup=False)
        if v.status == "unknown":
            out.print("  the node does not know this transaction (never sent, dropped, or "
                      "another chain)", markup=False)

    run.ui.emit(v, human)
    if v.status == "unknown":
        raise typer.Exit(int(ExitCode.ERROR))


def _event_arg(a: Any) -> str:
    if isinstance(a, (bytes, bytearray)):
        return "0x" + bytes(a).hex()
    return str(a)


@command(pool_app, "add")
def pool_add(
    session: Annotated[str, typer.Argument(help="session id")],
    limit: Annotated[Optional[str], typer.Option(
        "--limit", help="tokens a taker may spend before the grant ends (default: 10 answers' "
                        "maximum fee)", show_default=False)] = None,
    allow_nodes: Annotated[bool, typer.Option(
        "--allow-nodes", help="let takers route to node ids (default: trust namespaces only; "
                              "a taker could route to a node of their own)")] = False,
    *, g: CliOptions,
) -> None:
    """Offer one of your active sessions in the shared pool."""
    from .client import parse_session_id

    run = Run(g)
    res = run.client.add_to_pool(parse_session_id(session), limit, allow_nodes)
    run.write(res, f"session {session} added to the pool",
              [("grant limit", res.data["grant_limit"].human()),
               ("takers may route", "to node ids and namespaces" if allow_nodes
                else "by trust namespace only")])


@command(pool_app, "get")
def pool_get(*, g: CliOptions) -> None:
    """Take a session from the pool; your requests use it from then on."""
    run = Run(g)
    res = run.client.get_from_pool()
    grant = res.data.get("grant")
    run.write(res, f"took session {res.data.get('session_id')} from the pool",
              [("you may spend", grant["remaining"].human()),
               ("routing", "node ids and namespaces" if grant["allow_node_routing"]
                else "trust namespaces only")] if grant else [])


@command(pool_app, "remove")
def pool_remove(session: Annotated[str, typer.Argument(help="session id")], *,
                g: CliOptions) -> None:
    """Take your session out of the pool (ends its taker's grant)."""
    from .client import parse_session_id

    run = Run(g)
    res = run.client.remove_from_pool(parse_session_id(session))
    taker = res.data.get("taker")
    run.write(res, f"session {session} removed from the pool",
              [("grant ended", taker)] if taker else [])


@command(pool_app, "revoke")
def pool_revoke(
    session: Annotated[str, typer.Argument(help="session id")],
    address: Annotated[str, typer.Argument(help="the taker's address")],
    *, g: CliOptions,
) -> None:
    """End a taker's grant on your session (it stays out of the pool until you add it again)."""
    from .client import parse_session_id

    run = Run(g)
    res = run.client.revoke_grant(parse_session_id(session), address)
    lines = [] if res.dry_run else [("back in the pool", "yes" if res.data.get("pooled") else
                                     f"no (offer it again with `dtnsess pool add {session}`)")]
    run.write(res, f"revoked {res.data['user']}'s grant on session {session}", lines)


@command(pool_app, "release")
def pool_release(*, g: CliOptions) -> None:
    """Give back the pooled session you hold (it returns to the pool)."""
    run = Run(g)
    res = run.client.release_grant()
    sid = res.data.get("session_id")
    lines = [] if res.dry_run or not sid else [
        ("back in the pool", "yes" if res.data.get("pooled") else "no")]
    run.write(res, f"released your grant on session {sid}" if sid
              else "you hold no pool grant: nothing to release", lines)


@command(pool_app, "status")
def pool_status(*, g: CliOptions) -> None:
    """Pool size, capacity, offers (takers, grant limits) and your own grant."""
    run = Run(g)
    st = run.client.pool_status()
    grant = st["grant"]

    def human(out) -> None:
        out.print(run.ui.kv("Pool", [
            ("size", f"{st['pool_size']} / {st['max_size']}"),
            ("sessions", ", ".join(map(str, st["sessions"])) or "-"),
            ("your grant", f"session {grant['session_id']}, {grant['remaining'].human()} left"
             + (", node routing allowed" if grant["allow_node_routing"] else "")
             if grant else "-")]))
        if st["offers"]:
            out.print(run.ui.table("Offers", ["session", "owner", "state", "taker",
                                              "grant limit", "node routing"],
                                   [(o["session_id"], o["owner"],
                                     "in the pool" if o["pooled"] else "taken", o["taker"],
                                     o["grant_limit"], o["allow_node_routing"])
                                    for o in st["offers"]]))
    run.ui.emit(st, human)


@command(app, "settle")
def settle(
    request_id: Annotated[Optional[str], typer.Argument(help="0x request id")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every answered request still pending: "
                                       "yours, and those in your sessions")] = False,
    *, g: CliOptions,
) -> None:
    """Record answers whose callback failed (they block close and renew until settled)."""
    if (request_id is None) == (not all_):
        raise_input("arguments", request_id or "", "give a REQUEST_ID or --all (not both)")
    run = Run(g)
    res = run.client.settle(request_id)
    n = len(res.data["settled"])
    head = (res.data.get("note") if not res.txs
            else f"{'would settle' if res.dry_run else 'settled'} {n} request{'s' if n != 1 else ''}")
    run.write(res, head, _settled_lines(res.to_dict()))


def _session_rows(sessions):
    return [(s.session_id, f"{s.owner[:6]}…{s.owner[-4:]}", s.balance, s.dtn_balance, s.active, s.pooled,
             s.request_count, s.pending_requests, _closable(s), _fmt_time(s.last_used))
            for s in sessions]


def _closable(s) -> str:
    """When a session with pending requests may close anyway; "closing" once its owner began."""
    if not s.active:
        return "-"
    when = _fmt_when(s.closable_at) if s.pending_requests else "now"
    return f"closing, {when}" if s.closing else when


_SESSION_COLS = ["id", "owner", "funded", "remaining (DTN)", "active", "pooled", "requests",
                 "pending", "closable", "last used"]


@command(app, "stats")
def stats(session: Annotated[str, typer.Argument(help="session id")], *, g: CliOptions) -> None:
    """One session's full record."""
    from .client import parse_session_id

    run = Run(g)
    s = run.client.session(parse_session_id(session))
    run.ui.emit(s, run.ui.kv(f"Session {s.session_id}", [
        ("owner", s.owner), ("active", s.active), ("funded", s.balance),
        ("remaining (DTN)", s.dtn_balance if s.dtn_balance is not None else "unknown"),
        ("requests", s.request_count), ("pending", s.pending_requests),
        ("pending since", _fmt_time(s.pending_since)), ("closing", s.closing),
        ("closable", _closable(s)),
        ("last used", _fmt_time(s.last_used)), ("last request", _fmt_time(s.last_request_at)),
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


@command(app, "cleanup")
def cleanup(
    max_: Annotated[int, typer.Option(
        "--max", help="close at most N sessions (150 keeps a transaction under 2^24 gas)",
        min=1, max=150)] = 50,
    max_gas_price: Annotated[Optional[str], typer.Option(
        "--max-gas-price", help="do nothing (exit 11) above this gas price, in gwei")] = None,
    *, g: CliOptions,
) -> None:
    """For cron: close idle sessions; never prompts; locked; one line of output."""
    from .units import format_gwei, parse_gwei

    g.yes = True  # NOTE: cron never answers a prompt
    with error_handler(_debug_enabled(g), g.json):
        limit = parse_gwei(max_gas_price, "--max-gas-price") if max_gas_price else None
    run = Run(g)
    c = run.client
    with error_handler(_debug_enabled(g), g.json):
        lock = _cleanup_lock(run)
        try:
            with lock.acquire(timeout=0):
                if limit is not None:
                    price = c.gas_price()
                    if price > limit:
                        raise GasPriceTooHighError(format_gwei(price), format_gwei(limit))
                res = c.cleanup(max_)
        except Exception as exc:
            if type(exc).__name__ == "Timeout":  # filelock.Timeout: held by another run
                raise LockedError(lock.lock_file) from None
            raise
    closed = res.data.get("closed", [])
    refunds = res.data.get("refunds_credited")
    if g.json:
        run.ui.emit(res.to_dict())
        return
    if not res.data.get("idle"):
        line = "cleanup: nothing to do"
    elif res.dry_run:
        line = f"cleanup (dry run): would close {len(res.data['idle'])} idle sessions"
    else:
        ids = ",".join(str(x["session_id"]) for x in closed) or "-"
        line = (f"cleanup: closed {len(closed)} session{'s' if len(closed) != 1 else ''} [{ids}], "
                f"refunds credited {refunds.human() if refunds else 0}, tx {res.txs[0].tx_hash}")
        if res.data.get("failed"):
            line += f", failed {res.data['failed']}"
    run.ui.emit(res.to_dict(), line)


def _cleanup_lock(run: Run):
    """One lock per (chain, contract): the same address on two chains is two contracts."""
    import tempfile

    from filelock import FileLock

    lock_dir = Path(os.environ.get("DTNSESS_LOCK_DIR") or tempfile.gettempdir())
    contract = (run.settings.contract or "none").lower()
    # NOTE: a pinned chain id is checked against the node before anything is sent; otherwise
    # ask the node (the connect batch then skips its eth_chainId)
    chain = run.settings.chain_id or run.client.chain_id
    return FileLock(str(lock_dir / f"dtnsess-cleanup-{chain}-{contract}.lock"))


@command(config_app, "show")
def config_show(*, g: CliOptions) -> None:
    """The resolved configuration and where each value came from (secrets redacted)."""
    run = Run(g)
    rows = run.settings.show()
    run.ui.emit({"config": rows}, run.ui.table("Configuration", ["name", "value", "source"],
                                                [(r["name"], r["value"] or "-", r["source"])
                                                 for r in rows]))


@command(config_app, "update")
def config_update(
    min_balance: Annotated[Optional[str], typer.Option("--min-balance", help="tokens, at most 1000000")] = None,
    max_age: Annotated[Optional[int], typer.Option("--max-age", help="seconds, at most 31536000 (365 days)", min=1)] = None,
    pool_size: Annotated[Optional[int], typer.Option("--pool-size", help="at most 100", min=0)] = None,
    fee_per_byte_req: Annotated[Optional[str], typer.Option("--fee-per-byte-req", help="tokens, at most the max fee per response")] = None,
    fee_per_byte_res: Annotated[Optional[str], typer.Option("--fee-per-byte-res", help="tokens, at most the max fee per response")] = None,
    max_fee_per_response: Annotated[Optional[str], typer.Option("--max-fee-per-response", help="tokens, at most 1000")] = None,
    request_timeout: Annotated[Optional[int], typer.Option("--request-timeout", help="seconds, at most 604800 (7 days) and the max age", min=1)] = None,
    *, g: CliOptions,
) -> None:
    """Change the contract's configuration (owner only)."""
    run = Run(g)
    res = run.client.update_config(
        min_balance=min_balance, max_age=max_age, pool_size=pool_size,
        fee_per_byte_req=fee_per_byte_req, fee_per_byte_res=fee_per_byte_res,
        max_fee_per_response=max_fee_per_response, request_timeout=request_timeout)
    run.write(res, "configuration updated" if not res.dry_run else "configuration update simulated")


@command(app, "sweep")
def sweep(
    to: Annotated[str, typer.Argument(help="recipient address")],
    token: Annotated[Optional[str], typer.Option("--token", help="token address (default: the "
                                                 "fee token)", show_default=False)] = None,
    *, g: CliOptions,
) -> None:
    """Owner only: send tokens the contract holds but owes nobody (never credited refunds)."""
    run = Run(g)
    res = run.client.sweep(to, token)
    amount = res.data["amount"]
    shown = amount.human() if hasattr(amount, "human") else f"{amount} units"
    run.write(res, f"swept {shown} to {res.data['to']}" if res.txs and not res.dry_run
              else ("nothing to sweep" if not res.txs else f"would sweep {shown}"))


@command(config_app, "contract")
def config_contract(*, g: CliOptions) -> None:
    """The contract's on-chain configuration (fees, limits, pool)."""
    run = Run(g)
    cfg = run.client.config()
    run.ui.emit(cfg, run.ui.kv("AdvancedSessionManager",
                               [(k, getattr(cfg, k)) for k in cfg.__dataclass_fields__]))


@command(refunds_app, "withdraw")
def refunds_withdraw(*, g: CliOptions) -> None:
    """Withdraw refunds credited to you by cleanup."""
    run = Run(g)
    res = run.client.withdraw_refunds()
    amount = res.data["amount"]
    run.write(res, f"withdrew {amount.human()}" if amount.units else "nothing to withdraw")


@command(app, "doctor")
def doctor(*, g: CliOptions) -> None:
    """Check RPC, chain, contract, token, key and gas funds."""
    run = Run(g)
    checks = run.client.doctor()
    mark = {True: "ok", False: "FAIL", None: "info"}
    run.ui.emit({"checks": checks, "ok": all(c.ok is not False for c in checks if c.required)},
                run.ui.table("dtnsess doctor", ["check", "result", "detail"],
                             [(c.name, mark[c.ok] if c.required or c.ok is not False else "warn",
                               c.detail) for c in checks]))
    failed = [c for c in checks if c.ok is False and c.required]
    if failed:  # the exit code of the first failed check (a dead RPC is 5, as in README)
        raise typer.Exit(int(failed[0].code or ExitCode.ERROR))


# ---------------------------------------------------------------------- optional sub-apps
# `dtnsess devnet ...` lives in dtnsess_cli/devnet.py: a module-level Typer named `app` (or
# `devnet_app`) is mounted here as the `devnet` group.
# NOTE for its authors: keep web3 imports inside the command functions; this import runs on
# every start-up, including `--help`.
def _mount_devnet() -> None:
    if importlib.util.find_spec("dtnsess_cli.devnet") is None:
        return
    from . import devnet

    sub = getattr(devnet, "app", None) or getattr(devnet, "devnet_app", None)
    if isinstance(sub, typer.Typer):
        app.add_typer(sub, name="devnet")


_mount_devnet()


def main(argv: Optional[list] = None) -> int:
    """Console-script entry point. Commands turn DtnsessError into exit codes themselves (so
    CliRunner sees them too); this catches what happens outside a command body."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or _debug_enabled()
    json_mode = "--json" in args
    try:
        with error_handler(debug, json_mode):
            # NOTE: not standalone, so usage errors reach us and print as one line, like the rest
            rc = app(args=args, prog_name="dtnsess", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except _UsageError as exc:
        message = " ".join(exc.format_message().split())
        if not message:  # a group called without a command: its help was printed
            return int(ExitCode.USAGE)
        sys.stderr.write(f"error: {message}\n")
        cmd = exc.ctx.command_path if exc.ctx else "dtnsess"
        hint = f"see '{cmd} --help'"
        if any(a.startswith("-") and a[1:2].isdigit() for a in args):
            hint += "; amounts are positive (put '--' before an argument that starts with '-')"
        sys.stderr.write(f"hint: {hint}\n")
        if json_mode:
            import json

            sys.stdout.write(json.dumps({"error": True, "code": int(ExitCode.USAGE),
                                         "name": "USAGE", "type": "UsageError",
                                         "message": message, "hint": hint}, indent=2) + "\n")
        return int(ExitCode.USAGE)
    except typer.Abort:
        _report(DtnsessError("aborted"), False, json_mode, ExitCode.ABORTED)
        return int(ExitCode.ABORTED)
    return int(rc) if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
