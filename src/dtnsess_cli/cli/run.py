"""One command run, without Typer: ``Run`` (settings, renderer and the client), the one error
handler, the journal's intent, the usage-error lines and the small formatters the commands
share.

Both start-up paths run a command through ``invoke``: the Typer commands (``app.command``) and
the fast path of the hot commands (``fastpath.py``), so a command body behaves the same whichever
parsed its arguments. Nothing here imports typer or click: bodies end with ``Exit`` or
``UsageError``, which the Typer path turns into Click's own exceptions.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys

from ..config import CliOptions, resolve_settings
from ..errors import DtnsessError, ExitCode, InputError

# NOTE: typing costs ~20 ms of import; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator, NoReturn, Optional


class Exit(Exception):
    """Raised when a command ends with a non-zero exit code, its output already printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = int(code)


class UsageError(Exception):
    """Raised when a command's arguments do not go together (or one is missing): exit 2 and a
    hint to the command's --help, like the usage errors Click raises itself."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# the clients the command's Runs made: ``invoke`` closes them as the body ends (no journal
# connection is left for Python's teardown, which the ``dtnsess`` script skips: cli.console)
_OPENED: contextvars.ContextVar = contextvars.ContextVar("dtnsess_cli_opened")

# NOTE: set on an exception whose command already printed its one JSON document (e.g. a
# request that was sent before its wait failed): the error then goes to stderr only.
STDOUT_DONE = "dtnsess_stdout_done"


def debug_enabled(opts: Optional[CliOptions] = None) -> bool:
    return bool(opts and opts.debug) or os.environ.get("DTNSESS_DEBUG", "") not in ("", "0")


def _from_click(exc: BaseException) -> bool:
    """Click's own exceptions (typer.Exit, Abort, a usage error; typer vendors click), raised
    by Typer-only code or a prompt: left to the Typer path's handling, as they were."""
    return type(exc).__module__.split(".")[0] in ("click", "typer")


@contextlib.contextmanager
def error_handler(debug: bool = False, json_mode: bool = False) -> Iterator[None]:
    """THE error handler: a DtnsessError becomes one `error:` line (+ hint) on stderr, with
    ``--json`` also one JSON document on stdout, and ``Exit`` with its exit code."""
    try:
        yield
    except (Exit, UsageError):
        raise
    except DtnsessError as exc:
        report(exc, debug, json_mode)
        raise Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt as exc:
        err = DtnsessError("interrupted")
        setattr(err, STDOUT_DONE, getattr(exc, STDOUT_DONE, False))
        report(err, False, json_mode, ExitCode.INTERRUPTED)
        raise Exit(int(ExitCode.INTERRUPTED)) from None
    except Exception as exc:  # noqa: BLE001 - classified below, never a bare traceback
        if _from_click(exc):
            raise
        mapped = classify(exc)
        report(mapped, debug, json_mode)
        raise Exit(int(mapped.exit_code)) from None


def classify(exc: BaseException) -> DtnsessError:
    from ..errors import scrub

    name = type(exc).__name__
    if name in ("RpcTransportError", "RpcResponseError"):  # the chain layer's, if one slips by
        from ..chain.send import rpc_error

        return rpc_error(exc, None)
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return DtnsessError(f"internal error: {name}: {scrub(first)}",
                        hint="rerun with --debug for the traceback, and please report it")


def report(exc: DtnsessError, debug: bool, json_mode: bool = False,
           code: Optional[ExitCode] = None) -> None:
    from ..errors import scrub

    if debug:
        import traceback

        # NOTE: library messages quote the RPC URL (requests' "... for url: ..."): redacted
        sys.stderr.write(scrub(traceback.format_exc()))
    from ..render import clean

    # one line, whatever the message holds, and no terminal control (a revert reason, a node's
    # message come from the chain)
    sys.stderr.write("error: " + " ".join(clean(scrub(exc.message)).split()) + "\n")
    if exc.hint:
        sys.stderr.write(f"hint: {clean(scrub(exc.hint))}\n")
    sys.stderr.flush()
    if json_mode and not getattr(exc, STDOUT_DONE, False):
        import json

        doc = exc.to_dict()
        if code is not None:
            doc.update(code=int(code), name=code.name)
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        sys.stdout.flush()


def report_usage(message: str, command_path: str, json_mode: bool,
                 amounts_hint: bool = False) -> int:
    """A usage error as both paths print it: one line, a hint to the command's help (with
    ``--json`` also one JSON document); returns the exit code, 2."""
    message = " ".join(message.split())
    sys.stderr.write(f"error: {message}\n")
    hint = f"see '{command_path} --help'"
    if amounts_hint:
        hint += "; amounts are positive (put '--' before an argument that starts with '-')"
    sys.stderr.write(f"hint: {hint}\n")
    if json_mode:
        import json

        sys.stdout.write(json.dumps({"error": True, "code": int(ExitCode.USAGE),
                                     "name": "USAGE", "type": "UsageError",
                                     "message": message, "hint": hint}, indent=2) + "\n")
    return int(ExitCode.USAGE)


def report_aborted(json_mode: bool) -> int:
    """The user declined a prompt (Ctrl-C or end of input at the question)."""
    report(DtnsessError("aborted"), False, json_mode, ExitCode.ABORTED)
    return int(ExitCode.ABORTED)


def invoke(body: Callable[..., Any], kwargs: dict, g: CliOptions, intent: str) -> Any:
    """Run one command body with the global options ``g``: the journal's intent (the command
    line as ``intent_argv`` wrote it), SIGTERM as Ctrl-C, the error handler."""
    from ..chain.journal import INTENT

    token, opened = INTENT.set({"argv": intent}), _OPENED.set([])
    term = _on_sigterm_interrupt()
    try:
        with error_handler(debug_enabled(g), g.json):
            _check_numbers(kwargs)
            return body(g=g, **kwargs)
    finally:
        term()
        for client in _OPENED.get():
            # the command's result stands: only tidying (a second Ctrl-C here included)
            with contextlib.suppress(Exception, KeyboardInterrupt):
                client.close()
        _OPENED.reset(opened)
        INTENT.reset(token)


def _on_sigterm_interrupt() -> Callable[[], Any]:
    """SIGTERM (a supervisor, `timeout`, a container stop) ends a command as Ctrl-C does: a
    transaction already sent is named (exit 130), never lost with the process. Returns the
    undo."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, old)


def intent_argv(command_path: str, params: list) -> str:
    """The command line as the journal records it (``dtnsess create 20``): the command's own
    arguments and options, not the global ones (a key is never an argument). ``params``:
    (is_argument, first option string, default, value) of each own parameter, in order."""
    import shlex

    words = [command_path]
    for is_argument, opt, default, v in params:
        if v in (None, False, (), []) or v == default:
            continue
        opt = [] if is_argument else [opt]
        if v is True:
            words += opt
            continue
        for item in (v if isinstance(v, (list, tuple)) else [v]):
            text = str(item)
            words += opt + [shlex.quote(text if len(text) <= 80 else text[:77] + "...")]
    return " ".join(words)


def _check_numbers(kwargs: dict) -> None:
    """NaN and infinity are no number of seconds, blocks or gwei (a ``--timeout nan`` waited
    forever): refused for every float option of every command."""
    import math

    for name, v in kwargs.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise InputError("--" + name.replace("_", "-"), str(v), "not a finite number")


class Run:
    """One command run: settings, renderer and (lazily) the client."""

    def __init__(self, g: CliOptions) -> None:
        from ..render import Renderer

        self.g = g
        self.settings = resolve_settings(g)
        self.ui = Renderer(json_mode=g.json)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from ..manager import Client  # the chain layer: only when a command needs the chain

            self._client = Client(self.settings, self.ui)
            opened = _OPENED.get(None)
            if opened is not None:
                opened.append(self._client)
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
                sm = t.summary()
                l1 = f" incl. L1 data fee {sm['l1_fee_eth']} ETH" if sm.get("l1_fee_eth") else ""
                if t.dry_run:
                    out.print(f"  would send: {t.description} (gas ~{t.gas_estimate}, at most "
                              f"{sm.get('max_fee_eth')} ETH{l1})", markup=False)
                else:
                    out.print(f"  tx {self.ui.tx_ref(t.tx_hash)} (block {t.block_number}, "
                              f"gas {t.gas_used}, fee {sm.get('fee_eth')} ETH{l1})",
                              markup=False)
        self.ui.emit(data, human)
        self.fail_after(res)

    @staticmethod
    def fail_after(res: Any) -> None:
        """A result that carries an error (something was sent, then the command was refused):
        the error line follows the result, with its exit code."""
        err = getattr(res, "error", None)
        if err is not None:
            report(err, False)
            raise Exit(int(err.exit_code))


def settled_lines(data: dict) -> list:
    verb = "to settle" if data.get("dry_run") else "settled"
    return [(f"{verb} {x['request_id']}", f"{x['status']} (session {x['session_id']})")
            for x in data.get("settled") or []]


def fmt_when(ts: int) -> str:
    """A deadline: the local time, no "ago" (the chain's clock may run ahead of ours)."""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ts))) if ts else "-"


def fmt_time(ts: int) -> str:
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


def raise_input(what: str, value: str, reason: str) -> NoReturn:
    raise InputError(what, value, reason)


def raise_usage(message: str) -> NoReturn:
    """Arguments that do not go together (or one missing): a usage error, exit 2."""
    raise UsageError(message)
