"""``dtnsess devnet up|reset|status|down``: the commands over ``dtnsess_cli.devnet.stack``.

The devnet package is imported when one of these commands runs, not on every start.
"""

import contextlib
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from ..config import DEVNET_STATE_FILE
from ..devnet import DEFAULT_PORT, EXTRA, FUNDED_ACCOUNTS, LOG_DIR, MINT_TOKENS, missing_extra
from ..errors import ConfigError, ExitCode
from .root import app, debug_enabled, error_handler, group

devnet_app = group(help="A local chain with the whole DTN system (Anvil, token, router, "
                        "manager) that answers requests.")


@contextlib.contextmanager
def _handled(ctx: typer.Context, json_mode: bool = False) -> Iterator[None]:
    """The CLI's one error handler (a DtnsessError becomes one line and its exit code)."""
    obj = ctx.find_root().obj if ctx is not None else None
    with error_handler(debug_enabled(obj), json_mode):
        missing = missing_extra()
        if missing:
            raise ConfigError(f"`dtnsess devnet` needs the {EXTRA} extra ({', '.join(missing)} "
                              f"not installed)", hint=f"pip install 'dtnsess[{EXTRA}]'")
        yield


def _json_mode(ctx: typer.Context, flag: bool) -> bool:
    """--json on this command, or the CLI's global --json (ctx.obj), whichever is set."""
    if flag:
        return True
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, dict):
        return bool(obj.get("json"))
    return bool(getattr(obj, "json", False))


def _summary_rows(state: dict) -> list[tuple[str, Any]]:
    pids = state.get("pids") or {}
    logs = state.get("logs") or {}
    n = len(state.get("accounts") or [])
    answering = (f"command {state['responder_command']!r}" if state.get("responder_command")
                 else "built-in text") + " (images: a generated 1024x1024 PNG, over IPFS only)"
    floor = state.get("node_min_fee_per_byte")
    return [
        ("rpc_url", state.get("rpc_url")),
        ("chain_id", state.get("chain_id")),
        ("manager", state.get("manager")),
        ("router", state.get("router")),
        ("token", f"{state.get('token')} ({state.get('decimals')} decimals)"),
        ("model", state.get("model")),
        ("models", f"{len(state.get('models') or [])} registered (`dtnsess models`)"),
        ("ipfs", f"gateway {state.get('ipfs_gateway')}, store {_rel(state.get('ipfs_dir'))}"),
        ("node", f"{state.get('node')} (worker {state.get('worker')})"
                 + (f", skips requests under {floor} units per byte" if floor else "")),
        ("accounts", f"{n} dev accounts; 0..{FUNDED_ACCOUNTS - 1} hold "
                     f"{MINT_TOKENS:,} tokens each (keys in {DEVNET_STATE_FILE})"),
        ("anvil", f"pid {pids.get('anvil')}, log {_rel(logs.get('anvil'))}"),
        ("responder", f"pid {pids.get('responder')}, answers with {answering}, "
                      f"log {_rel(logs.get('responder'))}"),
    ]


def _rel(path: Optional[str]) -> str:
    if not path:
        return "-"
    try:
        return str(Path(path).relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


_PORT = typer.Option(DEFAULT_PORT, "--port", help="Port for Anvil on 127.0.0.1.")
_BLOCK_TIME = typer.Option(None, "--block-time", metavar="S",
                           help="Mine a block every S seconds (default: a block per transaction).")
_DECIMALS = typer.Option(6, "--decimals", help="Decimals of the mock fee token (a new chain).")
_RESPONDER = typer.Option(
    None, "--responder", metavar="COMMAND",
    help="Shell command that answers: the prompt on stdin, the answer on stdout "
         "(non-zero exit or timeout: a FAILURE answer with its stderr).")
_RESPONDER_TIMEOUT = typer.Option(30.0, "--responder-timeout", metavar="S",
                                  help="Seconds the --responder command may run.")
_NODE_MIN_FEE = typer.Option(
    0, "--node-min-fee", metavar="UNITS",
    help="The responder's price floor, like a DTN node's: requests offering less than UNITS "
         "token base units per request byte are skipped without an answer (they stay pending).")
_JSON = typer.Option(False, "--json", help="Print one JSON document.")


@devnet_app.command("up")
def up_cmd(
    ctx: typer.Context,
    port: int = _PORT,
    block_time: Optional[float] = _BLOCK_TIME,
    decimals: int = _DECIMALS,
    responder: Optional[str] = _RESPONDER,
    responder_timeout: float = _RESPONDER_TIMEOUT,
    node_min_fee: int = _NODE_MIN_FEE,
    json_out: bool = _JSON,
) -> None:
    """Start Anvil, deploy the system, fund dev accounts 0..8, start the responder.

    Writes ./.dtnsess-devnet.json, which the other commands read (lowest precedence). The chain
    is saved in .dtnsess-devnet/: `up` after `down` (or after Anvil died) resumes it.

    If this directory's devnet already runs, reports it and starts nothing (a dead responder is
    restarted; Anvil is not touched).

    Anvil is the pinned binary from node_modules (`npm ci`), or the one in DTNSESS_ANVIL.
    """
    _up(ctx, port, block_time, decimals, responder, responder_timeout, node_min_fee, json_out,
        reset=False)


@devnet_app.command("reset")
def reset_cmd(
    ctx: typer.Context,
    port: int = _PORT,
    block_time: Optional[float] = _BLOCK_TIME,
    decimals: int = _DECIMALS,
    responder: Optional[str] = _RESPONDER,
    responder_timeout: float = _RESPONDER_TIMEOUT,
    node_min_fee: int = _NODE_MIN_FEE,
    json_out: bool = _JSON,
) -> None:
    """Stop the devnet, forget its saved chain, and start a new, empty one (as `up`).

    Anvil is the pinned binary from node_modules (`npm ci`), or the one in DTNSESS_ANVIL.
    """
    _up(ctx, port, block_time, decimals, responder, responder_timeout, node_min_fee, json_out,
        reset=True)


def _up(ctx, port, block_time, decimals, responder, responder_timeout, node_min_fee, json_out,
        *, reset: bool) -> None:
    from ..devnet.stack import Paths, forget_chain, forget_journal, public_view, start, stop
    from ..render import Renderer

    r = Renderer(_json_mode(ctx, json_out))
    with _handled(ctx, r.json_mode), r.status("starting the devnet"):
        if reset:
            paths = Paths(Path.cwd().resolve())
            gone = forget_journal(paths)  # before stop: an older state names no genesis
            if gone:
                r.info(f"forgot {len(gone)} open journal entr{'y' if len(gone) == 1 else 'ies'}"
                       f" of the old chain: " + ", ".join(e.tx_hash for e in gone))
            if stop(paths.cwd) is not None:
                r.info("stopped the running devnet")
            if forget_chain(paths):
                r.info("deleted the saved chain")
        state, started = start(Path.cwd(), port=port, block_time=block_time, decimals=decimals,
                               responder=responder, responder_timeout=responder_timeout,
                               node_min_fee_per_byte=node_min_fee, notify=r.info)
    if not started:
        r.info("devnet already running: nothing started (`dtnsess devnet down` first to change "
               "its options)")
    data = dict(public_view(state), started=started)
    title = ("devnet repaired (responder restarted)" if state.get("repaired")
             else "devnet resumed" if state.get("resumed_at_block") is not None and started
             else "devnet started" if started else "devnet already running")
    r.emit(data, lambda con: (con.print(r.kv(title, _summary_rows(state))),
                              con.print("next: dtnsess create 50", markup=False)))


@devnet_app.command("status")
def status_cmd(
    ctx: typer.Context,
    logs: bool = typer.Option(False, "--logs", help="Also print the tail of the responder log."),
    lines: int = typer.Option(20, "--lines", "-n", help="How many log lines with --logs."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show what the devnet runs and where. Exit 0 when it runs, 1 when not (or degraded)."""
    from ..devnet.stack import status
    from ..render import Renderer

    r = Renderer(_json_mode(ctx, json_out))
    with _handled(ctx, r.json_mode):
        st = status(Path.cwd(), log_lines=lines if logs else 0)
    if st is None:
        r.emit({"running": False}, "devnet is not running")
        raise typer.Exit(ExitCode.ERROR)

    def human(con) -> None:
        procs = st["processes"]
        rows = [("state", "running" if st["running"] else "NOT RUNNING (degraded)"),
                ("block", st["block"] if st["block"] is not None else "not answering")]
        rows += _summary_rows(st)
        for i, (name, _) in enumerate(rows):
            if name in procs:
                p = procs[name]
                rows[i] = (name, f"{'alive' if p['alive'] else 'DEAD'}, " + rows[i][1])
        con.print(r.kv("devnet", rows))
        if logs:
            con.print(f"--- {_rel(st['logs'].get('responder'))} (last {lines} lines)",
                      markup=False)
            for line in st.get("responder_log", []):
                con.print(line, markup=False, highlight=False, soft_wrap=True)

    r.emit(st, human)
    if not st["running"]:
        raise typer.Exit(ExitCode.ERROR)


@devnet_app.command("down")
def down_cmd(
    ctx: typer.Context,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Stop the devnet's Anvil and responder and remove the state file (safe to repeat).

    The chain is saved in .dtnsess-devnet/ (the next `up` resumes it; `reset` starts empty)."""
    from ..devnet.stack import Paths, stop
    from ..render import Renderer

    r = Renderer(_json_mode(ctx, json_out))
    with _handled(ctx, r.json_mode):
        result = stop(Path.cwd())
    if result is None:
        r.emit({"running": False, "stopped": {}}, "devnet is not running")
        return
    for role, pid in result["left_alone"].items():
        r.warn(f"pid {pid} is no longer the devnet's {role}; left alone")
    stopped = ", ".join(f"{role} pid {pid}" for role, pid in result["stopped"].items()) or "nothing"
    logs = result.get("logs") or {}
    where = _rel(str(Path(logs["anvil"]).parent)) if logs.get("anvil") else LOG_DIR
    saved = Paths(Path.cwd().resolve()).chain_dump.exists()
    r.emit(dict(result, running=False, chain_saved=saved),
           f"devnet stopped ({stopped}); logs kept in {where}/"
           + ("; the chain is saved there: `dtnsess devnet up` resumes it, `dtnsess devnet "
              "reset` starts empty" if saved else ""))


app.add_typer(devnet_app, name="devnet")
