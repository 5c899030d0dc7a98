"""Owner and operator commands: ``deploy``, ``cleanup`` (cron), ``sweep``, ``doctor``,
``config show|update|contract`` and ``refunds withdraw``."""

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import CliOptions
from ..errors import ExitCode, GasPriceTooHighError, LockedError
from .root import (Run, app, command, debug_enabled, error_handler, group, raise_input,
                  raise_usage)

config_app = group(help="Show or change configuration.")
refunds_app = group(help="Refunds credited by cleanup.")
journal_app = group(help="The local journal of signed transactions.")
app.add_typer(config_app, name="config")
app.add_typer(refunds_app, name="refunds")
app.add_typer(journal_app, name="journal")


@command(app, "deploy")
def deploy(
    ai: Annotated[Optional[str], typer.Option("--ai", help="DTN router address (default: the "
                                               "network preset's router) [env: DTNSESS_ROUTER]")] = None,
    write_env: Annotated[bool, typer.Option("--write-env", help="write DTNSESS_CONTRACT to ./.env")] = False,
    *, g: CliOptions,
) -> None:
    """Deploy the bundled AdvancedSessionManager."""
    run = Run(g)
    ai = ai or run.settings.router
    if not ai:
        raise_input("--ai", "", "the DTN router address is required (no network preset gives one)")
    env_file = Path.cwd() / ".env"
    if write_env:  # refused before paying for the deployment
        _check_writable(env_file)
    res = run.client.deploy(ai)
    addr = res.data.get("contract")
    if write_env and addr and not res.dry_run:
        from ..config import write_env_value
        from ..errors import ConfigError

        try:
            write_env_value(env_file, "DTNSESS_CONTRACT", addr)
            res.data["wrote_env"] = str(env_file)
        except OSError as exc:  # deployed all the same: the result is shown, then this
            res.error = ConfigError(f"deployed at {addr}, but {env_file} could not be "
                                    f"written: {exc.strerror or exc}",
                                    hint=f"set DTNSESS_CONTRACT={addr} yourself")
    run.write(res, f"AdvancedSessionManager deployed at {addr}" if addr else "deploy simulated",
              [("DTN router", res.data["ai"]), ("fee token", res.data["fee_token"])])


def _check_writable(path: Path) -> None:
    """InputError unless ``path`` can be written as a file (it need not exist yet)."""
    if path.is_dir():
        raise_input("--write-env", str(path), "is a directory, not a file")
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        raise_input("--write-env", str(path), "is not writable")


def _rows(entries: list) -> list:
    return [{"tx_hash": e.tx_hash, "nonce": e.nonce, "chain_id": e.chain_id, "sender": e.sender,
             "description": e.description, "command": e.argv or None, "legacy": e.legacy}
            for e in entries]


@command(journal_app, "list")
def journal_list(*, g: CliOptions) -> None:
    """The open entries of this machine's journal (any key, any chain): sends whose outcome
    is not known here yet (the next write from the key resolves its chain's), and those an
    older dtnsess wrote without their chain (never resolved: `journal forget --legacy`)."""
    run = Run(g)
    entries = run.client.open_entries()

    def human(out) -> None:
        out.print(f"{len(entries)} open journal entr{'y' if len(entries) == 1 else 'ies'}",
                  markup=False)
        for e in entries:
            out.print(f"  {e.label()}: {e.description}, from {e.sender} on "
                      f"{e.chain_label()}", markup=False)
        if any(e.legacy for e in entries):
            out.print("  an older dtnsess wrote those without a genesis: check each with "
                      "`dtnsess tx HASH`, then `dtnsess journal forget --legacy`", markup=False)

    run.ui.emit({"action": "journal list", "open": _rows(entries)}, human)


@command(journal_app, "forget")
def journal_forget(
    genesis: Annotated[Optional[str], typer.Argument(
        help="genesis block hash of the chain that is gone (named by the write that found its "
             "entries)")] = None,
    legacy: Annotated[bool, typer.Option(
        "--legacy", help="instead: the open entries an older dtnsess wrote without their chain "
                         "(shown by `dtnsess tx HASH`)")] = False,
    chain_id_of: Annotated[Optional[int], typer.Option(
        "--of-chain-id", help="only entries of this chain id")] = None,
    *, g: CliOptions,
) -> None:
    """Forget the open entries of a chain that no longer exists (a reset devnet, a stopped
    fork), or with --legacy those whose chain was not recorded: they are never re-broadcast
    nor waited for again."""
    if (genesis is None) == (not legacy):
        raise_usage("give a GENESIS hash or --legacy (not both)")
    run = Run(g)
    if legacy:
        gone, kept = run.client.forget_legacy(chain_id_of), []
    else:
        gone, kept = run.client.forget_chain(genesis, chain_id_of)

    data = {"action": "journal forget", "genesis": genesis.strip().lower() if genesis else None,
            "forgotten": _rows(gone), "kept": _rows(kept)}

    def human(out) -> None:
        out.print(f"forgot {len(gone)} open journal entr{'y' if len(gone) == 1 else 'ies'}",
                  markup=False)
        for e in gone:
            out.print(f"  {e.label()}: {e.description}", markup=False)
        for e in kept:
            out.print(f"  kept {e.label()}: it is of the RPC node's chain (it resolves by "
                      f"itself: `dtnsess tx {e.tx_hash}`)", markup=False)

    run.ui.emit(data, human)


@command(app, "cleanup")
def cleanup(
    max_: Annotated[Optional[int], typer.Option(
        "--max", help="close at most N sessions in all (default: every idle one, in as many "
                      "transactions as needed, each under 2^24 gas)", min=1,
        show_default=False)] = None,
    max_gas: Annotated[Optional[int], typer.Option(
        "--max-gas", help="send no further transaction once this much gas is used", min=1,
        show_default=False)] = None,
    max_gas_price: Annotated[Optional[str], typer.Option(
        "--max-gas-price", help="do nothing (exit 11) above this gas price, in gwei")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="only show what a keeper's performUpkeep would do now (read-only, no "
                        "key): exit 14 when an upkeep is needed, 0 when not")] = False,
    *, g: CliOptions,
) -> None:
    """For cron: close idle sessions; never prompts; locked; one line of output.

    The lock file is kept in DTNSESS_LOCK_DIR (default: the temp dir).
    """
    from ..units import format_gwei, parse_gwei

    g.yes = True  # NOTE: cron never answers a prompt
    with error_handler(debug_enabled(g), g.json):
        if check and (max_ is not None or max_gas is not None or max_gas_price is not None):
            raise_input("--check", "", "--max, --max-gas and --max-gas-price do not apply: it shows what "
                        "one performUpkeep would do (at most 50 sessions), sending nothing")
        limit = parse_gwei(max_gas_price, "--max-gas-price") if max_gas_price else None
    run = Run(g)
    if check:
        return _cleanup_check(run, g)
    c = run.client
    with error_handler(debug_enabled(g), g.json):
        from ..chain.oslock import LockHeld

        lock = _cleanup_lock(run)
        try:
            lock.acquire()
        except LockHeld:  # another run holds it
            raise LockedError(lock.lock_file) from None
        try:
            if limit is not None:
                price = c.gas_price()
                if price > limit:
                    raise GasPriceTooHighError(format_gwei(price), format_gwei(limit))
            res = c.cleanup(max_, max_gas)
        finally:
            lock.release()
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
        ids = ",".join(str(x["session_id"]) for x in closed[:20]) or "-"
        if len(closed) > 20:
            ids += ",..."
        n = len(res.txs)
        txs = run.ui.tx_ref(res.txs[0].tx_hash) if n == 1 else f"{n} transactions"
        line = (f"cleanup: closed {len(closed)} session{'s' if len(closed) != 1 else ''} [{ids}], "
                f"refunds credited {refunds.human() if refunds else 0}, "
                f"{'tx ' if n == 1 else ''}{txs}, {res.data['gas_used']:,} gas")
        if res.data.get("failed"):
            line += f", failed {res.data['failed']}"
    run.ui.emit(res.to_dict(), line)


def _cleanup_check(run: Run, g: CliOptions) -> None:
    """``cleanup --check``: checkUpkeep and what performUpkeep would close, nothing sent. Exit
    14 (UPKEEP_NEEDED) when an upkeep is needed, 0 when not: monitoring tells them apart from
    errors (their own codes)."""
    with error_handler(debug_enabled(g), g.json):
        data = run.client.upkeep_check()
    data = {"action": "cleanup-check", **data}
    n, ids = data["count"], data["would_close"]
    if not data["upkeep_needed"]:
        line = "upkeep not needed: no idle session"
    elif data["estimated_gas"] is None:
        idle = data["idle"]
        line = (f"upkeep needed: {len(idle)} idle session{'s' if len(idle) != 1 else ''} "
                f"[{','.join(map(str, idle))}], but performUpkeep would revert: "
                f"{data['perform_reverts']}")
    else:
        line = (f"upkeep needed: performUpkeep would close {n} idle session{'s' if n != 1 else ''}"
                f" [{','.join(map(str, ids))}]")
        if data["more_idle"]:
            line += ", more wait for the next one"
        line += f", ~{data['estimated_gas']:,} gas"
    run.ui.emit(data, line)
    if data["upkeep_needed"]:
        raise typer.Exit(int(ExitCode.UPKEEP_NEEDED))


def _cleanup_lock(run: Run):
    """One lock per (chain, contract): the same address on two chains is two contracts, and a
    chain is its id and genesis hash, as the journal and the sender lock key it (a fork and
    its origin, or two devnets, share an id)."""
    import tempfile

    from ..chain.journal import chain_tag
    from ..chain.oslock import FileLock

    lock_dir = Path(os.environ.get("DTNSESS_LOCK_DIR") or tempfile.gettempdir())
    contract = (run.settings.contract or "none").lower()
    # NOTE: the chain last seen behind this URL (no round trip), checked before anything is
    # signed, as for the sender lock; else read now (once per URL: one round trip more)
    chain = chain_tag(run.client.chain_key())
    return FileLock(lock_dir / f"dtnsess-cleanup-{chain}{contract}.lock")


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
    grant_duration: Annotated[Optional[int], typer.Option("--grant-duration", help="seconds a pool grant lasts from its take, 600 (10 minutes) to 2592000 (30 days); live grants too", min=1)] = None,
    *, g: CliOptions,
) -> None:
    """Change the contract's configuration (owner only)."""
    run = Run(g)
    res = run.client.update_config(
        min_balance=min_balance, max_age=max_age, pool_size=pool_size,
        fee_per_byte_req=fee_per_byte_req, fee_per_byte_res=fee_per_byte_res,
        max_fee_per_response=max_fee_per_response, request_timeout=request_timeout,
        grant_duration=grant_duration)
    run.write(res, "configuration updated" if not res.dry_run else "configuration update simulated")


@command(config_app, "contract")
def config_contract(*, g: CliOptions) -> None:
    """The contract's on-chain configuration (fees, limits, pool)."""
    run = Run(g)
    cfg = run.client.config()
    run.ui.emit(cfg, run.ui.kv("AdvancedSessionManager",
                               [(k, getattr(cfg, k)) for k in cfg.__record_names__]))


@command(refunds_app, "withdraw")
def refunds_withdraw(*, g: CliOptions) -> None:
    """Withdraw refunds credited to you by cleanup."""
    run = Run(g)
    res = run.client.withdraw_refunds()
    amount = res.data["amount"]
    run.write(res, f"{'would withdraw' if res.dry_run else 'withdrew'} {amount.human()}"
              if amount.units else "nothing to withdraw")


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
