"""The devnet's lifecycle: start, stop and inspect a local chain with the whole DTN system.

``start`` runs Anvil in the background on 127.0.0.1, deploys MockUSDT, LocalDtnRouter and
AdvancedSessionManager, funds the dev accounts, starts a responder that answers requests like a
DTN node, and writes ``./.dtnsess-devnet.json`` (the other commands read it as their
lowest-precedence configuration). ``status`` shows what runs; ``stop`` stops it all.

These functions return plain dicts and never print; ``dtnsess devnet`` (``cli/devnet.py``)
renders them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..config import DEVNET_STATE_FILE
from ..errors import DtnsessError, ExitCode
from ..record import record
from . import DEFAULT_PORT, FUNDED_ACCOUNTS, LOG_DIR, MINT_TOKENS
from .anvil import pid_alive, stop_pid

CHAIN_ID = 31337
DEV_ACCOUNTS = 10
WORKER_INDEX = 9
RESPONDER_MODULE = "dtnsess_cli.devnet.responder"
RESPONDER_READY_TIMEOUT = 30.0
# Deadlines (seconds) after SIGINT, then SIGTERM, then SIGKILL.


class DevnetError(DtnsessError):
    """Raised when the devnet cannot be started or stopped (Anvil missing, port taken, a
    deployment or the responder failing)."""

    def __init__(self, message: str, *, hint: Optional[str] = None,
                 exit_code: ExitCode = ExitCode.ERROR) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------
# Files and processes
# ---------------------------------------------------------------------------------------------

@record(frozen=True)
class Paths:
    """Where one working directory's devnet keeps its state and logs."""

    cwd: Path

    @property
    def state(self) -> Path:
        return self.cwd / DEVNET_STATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.cwd / LOG_DIR

    @property
    def anvil_log(self) -> Path:
        return self.log_dir / "anvil.log"

    @property
    def responder_log(self) -> Path:
        return self.log_dir / "responder.log"

    @property
    def ipfs_dir(self) -> Path:
        """The responder's content-addressed store for IPFS answers (kept with the chain)."""
        return self.log_dir / "ipfs"

    @property
    def chain_dump(self) -> Path:
        """Anvil's own state (``--state``): accounts, code, storage, blocks."""
        return self.log_dir / "anvil-state.json"

    @property
    def chain_info(self) -> Path:
        """What was deployed on that chain (the state file without pids), kept across downs."""
        return self.log_dir / "chain.json"


def read_state(paths: Paths) -> Optional[dict]:
    """The state file's content, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(paths.state.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    # NOTE: written atomically and private (0600): it holds the dev accounts' keys. They are
    # Anvil's public test keys, but a habit of leaving keys world-readable is worth not having.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def _write_state(paths: Paths, state: dict) -> None:
    _write_json(paths.state, state)
    # the addresses of what lives on the saved chain, for `up` after a `down` or a crash
    _write_json(paths.chain_info, {k: v for k, v in state.items() if k not in ("pids",)})
    if state.get("rpc_url"):
        from ..chain.journal import remember_chain

        # NOTE: a new chain may listen where the old one did (`devnet reset`, `up` again): the
        # sender lock of the next write must be this one's (else it refuses, exit 6, once)
        g = state.get("genesis")
        remember_chain(state["rpc_url"], (CHAIN_ID, g) if g else None)


def read_saved_chain(paths: Paths) -> Optional[dict]:
    """The saved chain's deployment (None when there is no saved chain to resume)."""
    if not paths.chain_dump.is_file():
        return None
    try:
        data = json.loads(paths.chain_info.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("manager") else None


def forget_chain(paths: Paths) -> bool:
    """Delete the saved chain (``devnet reset``); True when there was one."""
    had = paths.chain_dump.exists() or paths.chain_info.exists()
    for p in (paths.chain_dump, paths.chain_info):
        p.unlink(missing_ok=True)
    return had


def forget_journal(paths: Paths) -> list:
    """Forget the journal's open entries of this directory's devnet chain (``devnet reset``:
    that chain is gone; its entries could never resolve, and must not be re-broadcast on the
    new one). Its genesis comes from the state (or, from an older state, the running node).
    The entries forgotten (none when the chain's genesis is not known)."""
    from ..chain.journal import Journal

    old = read_state(paths) or read_saved_chain(paths) or {}
    genesis = old.get("genesis")
    if not genesis and old.get("rpc_url"):
        from .anvil import rpc

        try:
            genesis = (rpc(old["rpc_url"], "eth_getBlockByNumber", ["0x0", False]) or {})["hash"]
        except Exception:  # noqa: BLE001 - not running: nothing to ask
            genesis = None
    if not genesis:
        return []
    try:
        j = Journal()
    except DtnsessError:  # no journal to clean (its entries would never match the new chain)
        return []
    try:
        gone = j.open_with_genesis(genesis, CHAIN_ID)
        j.forget(gone)
        return gone
    finally:
        j.close()


def _cmdline(pid: int) -> Optional[list[str]]:
    """The argv of process ``pid`` (None when it does not exist or cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
    except OSError:
        return None
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None


def _is_ours(pid: Optional[int], role: str, state: dict, paths: Paths) -> bool:
    """Is ``pid`` alive and really the devnet's ``role`` process (not a reused pid)?"""
    if not pid or not pid_alive(int(pid)):
        return False
    argv = _cmdline(int(pid))
    if not argv:
        return False
    if role == "anvil":
        port = str(state.get("port") or "")
        return any(Path(a).name in ("anvil", "anvil.exe") for a in argv) and (
            not port or port in argv)
    return RESPONDER_MODULE in argv and str(paths.state) in argv


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can Anvil listen on ``port``? Anvil binds with SO_REUSEADDR, so a port whose last
    connections linger in TIME-WAIT (60-100 s after any Anvil exit) is free for it, and here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if os.name == "posix":  # NOTE: on Windows SO_REUSEADDR means "steal a bound port"
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------
# The library: start, stop, status
# ---------------------------------------------------------------------------------------------

def public_view(state: dict) -> dict:
    """The state without secrets: accounts by address only."""
    out = {k: v for k, v in state.items() if k != "accounts"}
    out["accounts"] = [a["address"] for a in state.get("accounts", [])]
    return out


def is_running(state: Optional[dict], paths: Paths) -> bool:
    if not state:
        return False
    pids = state.get("pids") or {}
    return (_is_ours(pids.get("anvil"), "anvil", state, paths)
            and _is_ours(pids.get("responder"), "responder", state, paths))


def start(
    cwd: Path,
    *,
    port: int = DEFAULT_PORT,
    block_time: Optional[float] = None,
    decimals: int = 6,
    responder: Optional[str] = None,
    responder_timeout: float = 30.0,
    node_min_fee_per_byte: int = 0,
    notify=lambda message: None,
) -> tuple[dict, bool]:
    """Start the devnet in ``cwd``; return ``(state, started)``.

    The chain is kept in ``.dtnsess-devnet/anvil-state.json`` (Anvil's ``--state``, also dumped
    every few seconds so a crash keeps it): ``up`` after ``down`` or after Anvil died resumes
    the same chain (sessions, balances, addresses). When this directory's devnet runs, nothing
    starts and ``started`` is False, unless only the responder died: then it alone is restarted
    (Anvil is not touched) and ``state["repaired"]`` says so. On any failure everything started
    here is stopped again and the state file removed (the saved chain stays).
    """
    paths = Paths(Path(cwd).resolve())
    if not 0 <= decimals <= 36:
        from ..errors import InputError

        raise InputError("decimals", str(decimals), "must be between 0 and 36")
    if not 1 <= port <= 65535:
        from ..errors import InputError

        raise InputError("port", str(port), "must be between 1 and 65535")
    if block_time is not None and block_time <= 0:
        from ..errors import InputError

        raise InputError("block time", str(block_time), "must be positive seconds")
    if node_min_fee_per_byte < 0:
        from ..errors import InputError

        raise InputError("node min fee", str(node_min_fee_per_byte), "must be 0 or more")
    old = read_state(paths)
    if old is not None:
        pids = old.get("pids") or {}
        if _is_ours(pids.get("anvil"), "anvil", old, paths):
            if _is_ours(pids.get("responder"), "responder", old, paths):
                return old, False
            return _repair_responder(paths, old, notify), True
        notify("anvil is not running: restarting the devnet from its saved chain")
        stop(paths.cwd)
    elif paths.state.exists():
        notify(f"removing unreadable {paths.state.name}")
        paths.state.unlink()

    if not _port_free(port):
        raise DevnetError(f"port {port} on 127.0.0.1 is in use",
                          hint="pass --port, or stop what listens there")

    from .anvil import AnvilError, AnvilProcess, find_anvil

    try:
        binary = find_anvil()
    except AnvilError as exc:
        raise DevnetError(str(exc), exit_code=ExitCode.CONFIG) from None

    try:
        paths.log_dir.mkdir(parents=True, exist_ok=True)
        for old_log in (paths.anvil_log, paths.responder_log):
            old_log.unlink(missing_ok=True)
    except OSError as exc:  # a read-only directory: say where, before anything starts
        raise DevnetError(f"cannot write the devnet's files in {paths.cwd}: {exc.strerror}",
                          hint="run it from a directory you can write to",
                          exit_code=ExitCode.CONFIG) from None

    saved = read_saved_chain(paths)
    if saved is None:
        forget_chain(paths)  # a dump without its addresses (or the reverse) is no use
    node = AnvilProcess(binary)
    responder_proc: Optional[subprocess.Popen] = None
    try:
        notify(f"starting anvil on 127.0.0.1:{port}"
               + (" with the saved chain" if saved else ""))
        _start_anvil(node, paths, port, block_time)
        state = _resume(node, paths, saved, notify) if saved else None
        if state is None:
            if saved:  # the saved chain does not hold the contracts: start a new one
                node.stop()
                forget_chain(paths)
                _start_anvil(node, paths, port, block_time)
            state = _deploy(node, paths, decimals, block_time, notify)
            _wait_dumped(paths)
        elif saved.get("decimals") != decimals and decimals != 6:
            notify(f"the saved chain's token has {saved.get('decimals')} decimals "
                   f"(`dtnsess devnet reset --decimals {decimals}` starts a new chain)")
        state["responder_command"] = responder
        state["responder_timeout"] = responder_timeout
        # the node's price floor (token units per request byte): cheaper requests stay pending
        state["node_min_fee_per_byte"] = node_min_fee_per_byte
        # the responder serves IPFS answers on this port (the CLI's default gateway here)
        state["ipfs_dir"] = str(paths.ipfs_dir)
        state["ipfs_gateway"] = f"http://127.0.0.1:{_free_port()}"
        _write_state(paths, state)

        notify("starting the responder")
        responder_proc = _start_responder(paths, responder, responder_timeout)
        state["pids"]["responder"] = responder_proc.pid
        _write_state(paths, state)
        _wait_responder(responder_proc, paths)
        return state, True
    except BaseException:
        if responder_proc is not None and responder_proc.poll() is None:
            stop_pid(responder_proc.pid)
        if node.pid is not None:
            stop_pid(node.pid)
        paths.state.unlink(missing_ok=True)
        raise


# NOTE: how often Anvil writes its state while running: what a crash (SIGKILL) can lose
STATE_INTERVAL = 1


def _start_anvil(node, paths: Paths, port: int, block_time: Optional[float]) -> None:
    from .anvil import AnvilError

    try:
        node.start(port=port, block_time=block_time, chain_id=CHAIN_ID, accounts=DEV_ACCOUNTS,
                   log_path=paths.anvil_log, detach=True,
                   extra_args=["--state", str(paths.chain_dump),
                               "--state-interval", str(STATE_INTERVAL)])
    except AnvilError as exc:
        if paths.chain_dump.exists() and "state" in str(exc).lower():
            # a dump cut short by a crash: keep it aside, and say so
            broken = paths.chain_dump.with_name(paths.chain_dump.name + ".broken")
            os.replace(paths.chain_dump, broken)
            raise DevnetError(f"anvil could not load the saved chain (moved to {broken.name})",
                              hint="run `dtnsess devnet up` again to start a new chain") from None
        raise DevnetError(str(exc).splitlines()[0], hint=f"see {paths.anvil_log}") from None


def _resume(node, paths: Paths, saved: dict, notify) -> Optional[dict]:
    """The saved deployment, if the loaded chain holds it (else None: start a new one)."""
    from .anvil import rpc

    try:
        cid = int(rpc(node.url, "eth_chainId"), 16)
        code = rpc(node.url, "eth_getCode", [saved["manager"], "latest"])
        block = int(rpc(node.url, "eth_blockNumber"), 16)
    except Exception as exc:  # noqa: BLE001 - our own fresh node: report and stop
        raise DevnetError(f"anvil does not answer after loading the saved chain: {exc}",
                          hint=f"see {paths.anvil_log}") from None
    if cid != CHAIN_ID or code in (None, "", "0x"):
        notify("the saved chain does not hold the devnet's contracts: starting a new chain")
        return None
    notify(f"resumed the saved chain at block {block} (`dtnsess devnet reset` starts empty)")
    state = dict(saved)
    state.update(rpc_url=node.url, port=node.port,
                 pids={"anvil": node.pid, "responder": None},
                 logs={"anvil": str(paths.anvil_log), "responder": str(paths.responder_log)},
                 resumed_at_block=block)
    return state


def _wait_dumped(paths: Paths, timeout: float = 10.0) -> None:
    """Wait until Anvil has written the deployment to its state file, so that a crash right
    after `up` resumes the deployed chain rather than an empty one."""
    since = time.time() + 0.2  # NOTE: a write that began before the deployment ended is no use
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if paths.chain_dump.stat().st_mtime > since:
                return
        except OSError:
            pass
        time.sleep(0.1)


def _repair_responder(paths: Paths, state: dict, notify) -> dict:
    """Anvil runs, the responder died: start a new responder on the same chain."""
    old = (state.get("pids") or {}).get("responder")
    notify(f"the responder (pid {old}) is not running: restarting it; anvil keeps running")
    proc = _start_responder(paths, state.get("responder_command"),
                            float(state.get("responder_timeout") or 30.0))
    state = dict(state, pids=dict(state.get("pids") or {}, responder=proc.pid))
    _write_state(paths, state)
    try:
        _wait_responder(proc, paths)
    except BaseException:
        if proc.poll() is None:
            stop_pid(proc.pid)
        raise
    state["repaired"] = "responder"
    return state


def _deploy(node, paths: Paths, decimals: int, block_time: Optional[float], notify) -> dict:
    from web3 import Web3

    from . import localdtn
    from .anvil import dev_private_keys

    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
    accounts = list(w3.eth.accounts)
    keys = dev_private_keys(DEV_ACCOUNTS)
    if len(accounts) < DEV_ACCOUNTS:
        raise DevnetError(f"anvil has {len(accounts)} accounts, expected {DEV_ACCOUNTS}")
    notify("deploying MockUSDT, LocalDtnRouter and AdvancedSessionManager")
    try:
        system = localdtn.deploy_system(w3, deployer=accounts[0], decimals=decimals,
                                        worker=accounts[WORKER_INDEX])
        notify(f"minting {MINT_TOKENS:,} tokens to accounts 0..{FUNDED_ACCOUNTS - 1}")
        amount = MINT_TOKENS * 10**decimals
        # NOTE: sent together, then awaited: with --block-time they share blocks.
        hashes = [system.token.functions.mint(a, amount).transact({"from": accounts[0]})
                  for a in accounts[:FUNDED_ACCOUNTS]]
        for h in hashes:
            if w3.eth.wait_for_transaction_receipt(h, timeout=120)["status"] != 1:
                raise DevnetError(f"minting tokens failed (tx 0x{bytes(h).hex()})")
    except DtnsessError:
        raise
    except Exception as exc:  # noqa: BLE001 - deployment on our own fresh chain: report and stop
        raise DevnetError(f"deploying the devnet contracts failed: {exc}",
                          hint=f"see {paths.anvil_log}") from None
    return {
        "rpc_url": node.url,
        "chain_id": w3.eth.chain_id,
        # the chain's identity with its id (the journal keys entries by both)
        "genesis": "0x" + bytes(w3.eth.get_block(0)["hash"]).hex(),
        "port": node.port,
        "block_time": block_time,
        "manager": system.manager.address,
        "router": system.router.address,
        "token": system.token.address,
        "decimals": decimals,
        "model": system.model,
        "models": localdtn.model_specs(system.model),
        "node": system.node,
        "node_id": "0x" + system.node_id.hex(),
        "worker": system.worker,
        "deployer": system.deployer,
        "start_block": w3.eth.block_number + 1,
        "pids": {"anvil": node.pid, "responder": None},
        "logs": {"anvil": str(paths.anvil_log), "responder": str(paths.responder_log)},
        "accounts": [
            {"address": Web3.to_checksum_address(a), "private_key": k}
            for a, k in zip(accounts[:DEV_ACCOUNTS], keys)
        ],
    }


def _start_responder(paths: Paths, command: Optional[str], timeout: float) -> subprocess.Popen:
    argv = [sys.executable, "-m", RESPONDER_MODULE, "--state", str(paths.state),
            "--timeout", str(timeout)]
    if command:
        argv += ["--command", command]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(paths.responder_log, "ab") as log:
        proc = subprocess.Popen(argv, cwd=paths.cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        proc.log_offset = log.tell()  # type: ignore[attr-defined] # its own lines start here
        return proc


def _new_log_lines(path: Path, offset: int) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace").splitlines()
    except OSError:
        return []


def _wait_responder(proc: subprocess.Popen, paths: Paths) -> None:
    from .responder import READY_MARK

    offset = getattr(proc, "log_offset", 0)  # a repaired responder: not the old one's lines
    deadline = time.monotonic() + RESPONDER_READY_TIMEOUT
    while time.monotonic() < deadline:
        if any(READY_MARK in line for line in _new_log_lines(paths.responder_log, offset)):
            return
        if proc.poll() is not None:
            last = (_new_log_lines(paths.responder_log, offset)[-1:] or ["(no output)"])[0]
            raise DevnetError(f"the responder exited with code {proc.returncode}: {last}",
                              hint=f"see {paths.responder_log}")
        time.sleep(0.1)
    raise DevnetError(f"the responder did not start within {RESPONDER_READY_TIMEOUT:g}s",
                      hint=f"see {paths.responder_log}")


def stop(cwd: Path) -> Optional[dict]:
    """Stop the devnet of ``cwd`` and remove its state file; None when there was none.

    Only processes verified to be this devnet's (by their command line) are signalled. Anvil
    gets SIGINT first and writes its chain to ``anvil-state.json`` on the way out: the next
    ``up`` resumes it.
    """
    paths = Paths(Path(cwd).resolve())
    state = read_state(paths)
    if state is None:
        if paths.state.exists():
            paths.state.unlink()
        return None
    result: dict[str, Any] = {"stopped": {}, "left_alone": {}, "logs": state.get("logs", {})}
    pids = state.get("pids") or {}
    # The responder first: it would otherwise log connection errors while Anvil goes away.
    for role in ("responder", "anvil"):
        pid = pids.get(role)
        if not pid:
            continue
        if _is_ours(pid, role, state, paths):
            if not stop_pid(int(pid)):
                raise DevnetError(f"{role} (pid {pid}) did not stop, even on SIGKILL")
            result["stopped"][role] = pid
        elif pid_alive(int(pid)):
            result["left_alone"][role] = pid  # the pid was reused by another program
    paths.state.unlink(missing_ok=True)
    return result


def status(cwd: Path, *, log_lines: int = 0) -> Optional[dict]:
    """What the devnet of ``cwd`` runs (None when there is no state file)."""
    paths = Paths(Path(cwd).resolve())
    state = read_state(paths)
    if state is None:
        return None
    pids = state.get("pids") or {}
    procs = {role: {"pid": pids.get(role), "alive": _is_ours(pids.get(role), role, state, paths)}
             for role in ("anvil", "responder")}
    block = None
    if procs["anvil"]["alive"]:
        from .anvil import rpc

        try:
            block = int(rpc(state["rpc_url"], "eth_blockNumber", timeout=2.0), 16)
        except Exception:  # noqa: BLE001 - shown as "not answering"
            block = None
    out = public_view(state)
    out["running"] = all(p["alive"] for p in procs.values()) and block is not None
    out["block"] = block
    out["processes"] = procs
    if log_lines:
        out["responder_log"] = _tail(paths.responder_log, log_lines)
    return out
