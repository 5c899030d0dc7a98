"""The app every command hangs on: the Typer root, the global options, the ``@command``
decorator (global options after any command), Typer's side of the error handling and ``main``
(the Typer path; ``dtnsess_cli.cli.main`` tries the hot commands' fast path first).

No chain calls here; ``manager`` (and the chain layer) is imported only when a command runs, so
``dtnsess --help`` starts fast. ``run.py`` holds what a command run needs without Typer.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
from typing import Annotated, Any, Callable, Iterator, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from ..config import PRESETS, CliOptions
from ..errors import ExitCode
# NOTE: Run, fmt_when, raise_input, raise_usage, settled_lines, STDOUT_DONE and debug_enabled
# are here for the Typer command modules too (`from .root import ...`)
from .run import (STDOUT_DONE, Exit, Run, UsageError, debug_enabled, fmt_when,  # noqa: F401
                  intent_argv, invoke, raise_input, raise_usage, report_aborted, report_usage,
                  settled_lines)
from .run import error_handler as _error_handler

HELP = """Client for the Deep Trust Network AdvancedSessionManager contract.

Configuration comes from flags, then DTNSESS_* environment variables, then ./.env, then
--network presets, then a local devnet's .dtnsess-devnet.json. A private key is never a flag:
set DTNSESS_PRIVATE_KEY (environment or .env) or use a Foundry keystore (--account / --keystore,
or Foundry's ETH_KEYSTORE_ACCOUNT / ETH_KEYSTORE, its password file from --password-file or
ETH_PASSWORD; a DTNSESS_* variable beats its Foundry name).

Exit codes: 0 ok, 1 error, 2 usage, 3 config, 4 input, 5 rpc, 6 chain, 7 reverted, 8 funds,
9 auth, 10 timeout, 11 gas price, 12 locked, 13 aborted, 130 interrupted.
"""


def _format_options(cmd: Any, ctx: Any, formatter: Any) -> None:
    """Arguments, the command's own options, then the global ones, each in its own section
    (the sections rich help drew as panels, without importing rich)."""
    sections: dict = {"Arguments": [], "Options": []}
    for param in cmd.get_params(ctx):
        row = param.get_help_record(ctx)
        if row is not None:
            title = ("Arguments" if param.param_type_name == "argument"
                     else getattr(param, "rich_help_panel", None) or "Options")
            sections.setdefault(title, []).append(row)
    for title, rows in sections.items():
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


class _Command(TyperCommand):
    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_options(self, ctx, formatter)


class _Group(TyperGroup):
    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_options(self, ctx, formatter)
        self.format_commands(ctx, formatter)


class _DefaultGroup(_Group):
    """A group whose first subcommand is the default: ``dtnsess tx HASH`` is ``dtnsess tx show
    HASH``, next to ``dtnsess tx speedup HASH``."""

    def parse_args(self, ctx: Any, args: list) -> list:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [next(iter(self.commands))] + list(args)
        return super().parse_args(ctx, args)


def group(default: bool = False, **kw: Any) -> typer.Typer:
    """A Typer app (the root or a command group) with plain Click help; ``default``: its
    first command runs when none is named (``_DefaultGroup``).

    NOTE: rich help (Typer's default) imports typer.rich_utils -> rich.markdown/markdown_it,
    ~0.1 s of every ``--help`` and completion, and its markup swallows the ``[env: ...]``
    notes of the options' help.
    """
    return typer.Typer(cls=_DefaultGroup if default else _Group, rich_markup_mode=None,
                       no_args_is_help=True,
                       # NOTE: locals can hold a key: never let Typer print them
                       pretty_exceptions_enable=False, pretty_exceptions_show_locals=False, **kw)


app = group(name="dtnsess", help=HELP, add_completion=True,
            context_settings={"help_option_names": ["-h", "--help"]})

# ------------------------------------------------------------------------------- global options

# Click's UsageError (newer typer releases vendor click; reach it through its subclass)
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

_G = "Global options"


def _complete_network(incomplete: str) -> list:
    """Shell completion of --network: the presets."""
    return [n for n in sorted(PRESETS) if n.startswith(incomplete.strip().lower())]


RpcUrlOpt = Annotated[Optional[str], typer.Option(
    "--rpc-url", help="JSON-RPC URL [env: DTNSESS_RPC_URL, ETH_RPC_URL]", rich_help_panel=_G,
    show_default=False)]
ContractOpt = Annotated[Optional[str], typer.Option(
    "--contract", help="AdvancedSessionManager address [env: DTNSESS_CONTRACT]",
    rich_help_panel=_G, show_default=False)]
NetworkOpt = Annotated[Optional[str], typer.Option(
    "--network", help="preset: base | local [env: DTNSESS_NETWORK]", rich_help_panel=_G,
    show_default=False, autocompletion=_complete_network)]
ChainIdOpt = Annotated[Optional[int], typer.Option(
    "--chain-id", help="refuse to run on another chain [env: DTNSESS_CHAIN_ID]",
    rich_help_panel=_G, show_default=False)]
AccountOpt = Annotated[Optional[str], typer.Option(
    "--account", help="Foundry keystore name (~/.foundry/keystores/NAME) [env: DTNSESS_ACCOUNT, "
                      "ETH_KEYSTORE_ACCOUNT]; a raw key only from the environment or .env "
                      "[env: DTNSESS_PRIVATE_KEY]",
    rich_help_panel=_G, show_default=False)]
KeystoreOpt = Annotated[Optional[str], typer.Option(
    "--keystore", help="keystore file path [env: DTNSESS_KEYSTORE, ETH_KEYSTORE]",
    rich_help_panel=_G, show_default=False)]
PasswordFileOpt = Annotated[Optional[str], typer.Option(
    "--password-file", help="file holding the keystore password (never the password itself) "
                            "[env: DTNSESS_PASSWORD_FILE, ETH_PASSWORD]", rich_help_panel=_G,
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout",
                                       rich_help_panel=_G)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation",
                                      rich_help_panel=_G)]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="simulate only; send nothing",
                                         rich_help_panel=_G)]
DebugOpt = Annotated[bool, typer.Option("--debug", help="show tracebacks [env: DTNSESS_DEBUG=1]",
                                        rich_help_panel=_G)]

_W = "Transaction options (every write; cast's names)"
NonceOpt = Annotated[Optional[int], typer.Option(
    "--nonce", help="the nonce of the (first) transaction; below the chain's next is refused "
                    "[env: DTNSESS_NONCE, ETH_NONCE]", rich_help_panel=_W, show_default=False,
    min=0)]
GasLimitOpt = Annotated[Optional[int], typer.Option(
    "--gas-limit", help="gas limit of each transaction; below the estimate is refused "
                        "[env: DTNSESS_GAS_LIMIT, ETH_GAS_LIMIT]", rich_help_panel=_W,
    show_default=False, min=1)]
PriorityFeeOpt = Annotated[Optional[str], typer.Option(
    "--priority-gas-price", help="max priority fee per gas: wei, or with a unit (2gwei) "
                                 "[env: DTNSESS_PRIORITY_GAS_PRICE, ETH_PRIORITY_GAS_PRICE]",
    rich_help_panel=_W, show_default=False)]
MaxFeeOpt = Annotated[Optional[str], typer.Option(
    "--max-fee", "--gas-price", help="max fee per gas (the gas price on a chain without "
                                     "EIP-1559): wei, or with a unit (30gwei) "
                                     "[env: DTNSESS_MAX_FEE, ETH_GAS_PRICE]",
    rich_help_panel=_W, show_default=False)]

UnlockedOpt = Annotated[bool, typer.Option(
    "--unlocked", help="send from a node-held account (eth_sendTransaction: the node signs, no "
                       "key here; Anvil's dev accounts, a local signer); needs --from",
    rich_help_panel=_W)]
FromOpt = Annotated[Optional[str], typer.Option(
    "--from", help="the account --unlocked sends from [env: DTNSESS_FROM, ETH_FROM]",
    rich_help_panel=_W, show_default=False)]

_GLOBALS = [
    ("rpc_url", RpcUrlOpt, None), ("contract", ContractOpt, None), ("network", NetworkOpt, None),
    ("chain_id", ChainIdOpt, None), ("account", AccountOpt, None), ("keystore", KeystoreOpt, None),
    ("json", JsonOpt, False), ("yes", YesOpt, False), ("dry_run", DryRunOpt, False),
    ("debug", DebugOpt, False), ("password_file", PasswordFileOpt, None),
    ("nonce", NonceOpt, None), ("gas_limit", GasLimitOpt, None),
    ("priority_gas_price", PriorityFeeOpt, None), ("max_fee", MaxFeeOpt, None),
    ("unlocked", UnlockedOpt, False), ("from_", FromOpt, None),
]
_GLOBAL_NAMES = [n for n, _, _ in _GLOBALS]


def _version(value: bool) -> None:
    """--version: the package's version, printed before anything else is loaded."""
    if value:
        from .. import __version__

        sys.stdout.write(f"dtnsess {__version__}\n")
        raise typer.Exit()


VersionOpt = Annotated[bool, typer.Option("--version", help="print the version and exit",
                                          is_eager=True, callback=_version)]


@app.callback()
def _root(ctx: typer.Context, rpc_url: RpcUrlOpt = None, contract: ContractOpt = None,
          network: NetworkOpt = None, chain_id: ChainIdOpt = None, account: AccountOpt = None,
          keystore: KeystoreOpt = None, json: JsonOpt = False, yes: YesOpt = False,
          dry_run: DryRunOpt = False, debug: DebugOpt = False,
          password_file: PasswordFileOpt = None, nonce: NonceOpt = None,
          gas_limit: GasLimitOpt = None, priority_gas_price: PriorityFeeOpt = None,
          max_fee: MaxFeeOpt = None, unlocked: UnlockedOpt = False, from_: FromOpt = None,
          version: VersionOpt = False) -> None:
    ctx.obj = CliOptions(rpc_url, contract, network, chain_id, account, keystore, json, yes,
                         dry_run, debug, password_file=password_file, nonce=nonce,
                         gas_limit=gas_limit, priority_gas_price=priority_gas_price,
                         max_fee=max_fee, unlocked=unlocked, from_=from_)


@contextlib.contextmanager
def _click_exits() -> Iterator[None]:
    """A body's ``Exit``/``UsageError`` as Click's own exceptions, for Click (and CliRunner)
    to handle as before: exit codes, and usage errors with the command's context."""
    try:
        yield
    except Exit as exc:
        raise typer.Exit(exc.code) from None
    except UsageError as exc:
        raise _UsageError(exc.message) from None


@contextlib.contextmanager
def error_handler(debug: bool = False, json_mode: bool = False) -> Iterator[None]:
    """``run.error_handler`` for the Typer-only commands (their bodies and group callbacks)."""
    with _click_exits(), _error_handler(debug, json_mode):
        yield


def command(typer_app: typer.Typer, name: Optional[str] = None, **kw: Any) -> Callable:
    """Register a command that also accepts every global option after its name
    (``dtnsess create 50 --json``) and receives them merged as ``g: CliOptions``."""

    def deco(func: Callable) -> Callable:
        # NOTE: the command modules do without `from __future__ import annotations`: Python
        # then builds their Annotated[..., typer.Option(...)] from bytecode, where evaluating
        # the strings here compiled each one again (~35 commands, 10-20 ms of every start-up)
        sig = inspect.signature(func, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "g"]
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
                 for n, a, d in _GLOBALS]
        # Typer injects the click context into a parameter annotated typer.Context
        extra.append(inspect.Parameter("dtnsess_ctx", inspect.Parameter.KEYWORD_ONLY,
                                       annotation=typer.Context))

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            local = CliOptions(**{n: kwargs.pop(n) for n in _GLOBAL_NAMES})
            click_ctx = kwargs.pop("dtnsess_ctx")
            root = click_ctx.find_root().obj
            g = local.merged_over(root if isinstance(root, CliOptions) else CliOptions())
            with _click_exits():
                return invoke(functools.partial(func, *args), kwargs, g, _intent_argv(click_ctx))

        wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**{p.name: p.annotation for p in own},
                                   **{n: a for n, a, _ in _GLOBALS},
                                   "dtnsess_ctx": typer.Context}
        typer_app.command(name, cls=_Command, **kw)(wrapper)
        return func

    return deco


def _intent_argv(ctx: Any) -> str:
    """The journal's command line (``run.intent_argv``) from Click's parse."""
    names = []
    c = ctx
    while c is not None and c.parent is not None:
        names.insert(0, c.info_name)
        c = c.parent
    return intent_argv(" ".join(["dtnsess"] + names), [
        (p.param_type_name == "argument", p.opts[0], p.default, ctx.params.get(p.name))
        for p in ctx.command.params if p.name not in _GLOBAL_NAMES])


# the commands whose arguments are token amounts
_AMOUNT_COMMANDS = ("create", "renew", "approve")


# the global options that take a value (the others are flags)
_VALUE_OPTIONS = frozenset("--" + n.replace("_", "-") for n, _, d in _GLOBALS if d is None)


def _app_for(args: list) -> typer.Typer:
    """The app to run ``args`` with: when they name a command (or group), an app holding only
    that one, else the whole app.

    NOTE: Typer turns every registered command into a Click command before it looks at the
    arguments (inspecting each signature: ~40 ms of every run, more than any import of the
    write path); a command needs only itself. The root's help, completion and an unknown
    command (its error lists the others) keep the whole app.
    """
    if os.environ.get("_DTNSESS_COMPLETE"):
        return app
    it = iter(args)
    for a in it:
        if a in ("-h", "--help", "--"):
            return app
        if a.startswith("-"):
            if a in _VALUE_OPTIONS:
                next(it, None)
            continue
        import copy

        narrow = copy.copy(app)
        narrow.registered_commands = [c for c in app.registered_commands if c.name == a]
        narrow.registered_groups = [g for g in app.registered_groups if g.name == a]
        return narrow if narrow.registered_commands or narrow.registered_groups else app
    return app


def main(argv: Optional[list] = None) -> int:
    """The Typer path of the console script. Commands turn DtnsessError into exit codes
    themselves (so CliRunner sees them too); this catches what happens outside a command body."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or debug_enabled()
    json_mode = "--json" in args
    try:
        with error_handler(debug, json_mode):
            # NOTE: not standalone, so usage errors reach us and print as one line, like the rest
            rc = _app_for(args)(args=args, prog_name="dtnsess", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group called without a command
            sys.stdout.write(exc.format_message() + "\n")
            return int(ExitCode.USAGE)
        # NOTE: the amounts hint only where an amount was expected (not on session ids,
        # blocks or ranges)
        return report_usage(exc.format_message(), exc.ctx.command_path if exc.ctx else "dtnsess",
                            json_mode, exc.ctx is not None and exc.ctx.info_name in _AMOUNT_COMMANDS
                            and any(a.startswith("-") and a[1:2].isdigit() for a in args))
    except typer.Abort:
        return report_aborted(json_mode)
    return int(rc) if isinstance(rc, int) else 0

