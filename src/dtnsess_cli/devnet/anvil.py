"""Run a local Anvil node: used by the test suite and by ``dtnsess devnet``.

The binary is the pinned one from ``node_modules`` (``npm ci``). The native
binary of the platform package is preferred over the node launcher
(``node_modules/.bin/anvil``) so that signals reach Anvil directly.

Only the standard library is imported here.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

ENV_ANVIL = "DTNSESS_ANVIL"

# Anvil's well-known default mnemonic; its first accounts are public test keys.
DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"


class AnvilError(RuntimeError):
    """Raised when Anvil cannot be found, does not start, or stops answering."""


def _platform_package() -> str:
    system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"anvil-{system}-{arch}"


def _candidates_in(node_modules: Path) -> list[Path]:
    exe = "anvil.exe" if sys.platform == "win32" else "anvil"
    found = [node_modules / "@foundry-rs" / _platform_package() / "bin" / exe]
    found += sorted((node_modules / "@foundry-rs").glob(f"anvil-{sys.platform}-*/bin/{exe}"))
    found.append(node_modules / ".bin" / "anvil")
    return found


def find_anvil() -> str:
    """Return the path of an Anvil executable.

    Order: ``$DTNSESS_ANVIL``; ``node_modules`` searched upward from the current
    directory, then from the source checkout (native platform binary first, then
    the node launcher); ``anvil`` on PATH.
    """
    env = os.environ.get(ENV_ANVIL)
    if env:
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise AnvilError(f"{ENV_ANVIL}={env} is not an executable file")
        return env
    # the source checkout this module runs from (src/dtnsess_cli/devnet/anvil.py)
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parents[3]]
    seen: set[Path] = set()
    for start in starts:
        for directory in (start, *start.parents):
            nm = directory / "node_modules"
            if nm in seen:
                continue
            seen.add(nm)
            for candidate in _candidates_in(nm):
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    return str(candidate)
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise AnvilError(
        "anvil not found: run `npm ci` in the dtnsess source tree (it installs the pinned "
        f"@foundry-rs/anvil), install Foundry, or set {ENV_ANVIL}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def rpc(url: str, method: str, params: list | None = None, timeout: float = 5.0):
    """Make one JSON-RPC call with urllib; return ``result`` or raise AnvilError."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    req = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise AnvilError(f"{method}: {reply['error']}")
    return reply["result"]


def dev_private_keys(count: int = 10, mnemonic: str = DEFAULT_MNEMONIC) -> list[str]:
    """Private keys (0x hex) of Anvil's first ``count`` dev accounts."""
    from eth_account import Account  # lazy: heavy import

    Account.enable_unaudited_hdwallet_features()
    return [
        Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}").key.to_0x_hex()
        for i in range(count)
    ]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone; our own zombie children are reaped)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: the usual case for a detached node started by another process
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


_live: "weakref.WeakSet[AnvilProcess]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # NOTE: last resort if a caller forgets stop()
    for proc in list(_live):
        proc.stop()


class AnvilProcess:
    """One Anvil node on 127.0.0.1. Use as a context manager or call stop()."""

    host = "127.0.0.1"

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary
        self.port: int | None = None
        self.chain_id: int | None = None
        self.log_path: Path | None = None
        self.detached = False
        self._proc: subprocess.Popen | None = None
        self._log = None

    # -- properties --------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise AnvilError("anvil is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------
    def start(
        self,
        port: int | None = None,
        block_time: float | None = None,
        chain_id: int = 31337,
        accounts: int = 10,
        balance: int = 10000,
        extra_args: tuple | list = (),
        log_path: str | Path | None = None,
        detach: bool = False,
        timeout: float = 30.0,
    ) -> "AnvilProcess":
        """Launch Anvil and wait until ``eth_chainId`` answers.

        ``detach=True`` starts it in a new session (survives this process, for
        ``dtnsess devnet up``); it is then not stopped at interpreter exit.
        """
        if self.running:
            raise AnvilError(f"anvil already running (pid {self.pid})")
        binary = self.binary or find_anvil()
        self.port = port or free_port(self.host)
        self.chain_id = chain_id
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="dtnsess-anvil-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            binary,
            "--host", self.host,
            "--port", str(self.port),
            "--chain-id", str(chain_id),
            "--accounts", str(accounts),
            "--balance", str(balance),
        ]
        if block_time is not None:
            cmd += ["--block-time", str(block_time)]
        cmd += [str(a) for a in extra_args]

        self._log = open(self.log_path, "ab")
        self.detached = detach
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
        )
        if not detach:
            _live.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            code = self._proc.poll()
            if code is not None:
                raise AnvilError(
                    f"anvil exited with code {code} before answering; log {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                rpc(self.url, "eth_chainId", timeout=1.0)
                return
            except (OSError, urllib.error.URLError, ValueError, AnvilError):
                pass
            if time.monotonic() > deadline:
                raise AnvilError(
                    f"anvil did not answer on {self.url} within {timeout:.0f}s; "
                    f"log {self.log_path}:\n" + self.log_tail()
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """Stop Anvil: SIGINT, then SIGTERM, then SIGKILL. Safe to call twice."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        try:
            if proc is not None and proc.poll() is None:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                    try:
                        proc.send_signal(sig)
                    except ProcessLookupError:
                        break
                    try:
                        proc.wait(timeout=timeout)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                # reap in every case so no zombie stays behind
                if proc.poll() is None:
                    proc.wait(timeout=timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> "AnvilProcess":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid} at {self.url}" if self.running else "stopped"
        return f"<AnvilProcess {state}>"


def stop_pid(pid: int, deadlines: tuple = (5.0, 3.0, 2.0)) -> bool:
    """Stop a process by pid: SIGINT, then SIGTERM, then SIGKILL, each with a deadline (seconds).

    True once the process is gone (also when it was not running)."""
    for sig, deadline in zip((signal.SIGINT, signal.SIGTERM, signal.SIGKILL), deadlines):
        if not pid_alive(pid):
            return True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
    return not pid_alive(pid)
