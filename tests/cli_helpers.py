"""Helpers for the CLI tests (tests/test_cli_*.py): run `dtnsess` in process against Anvil.

Configuration reaches the CLI only through environment variables set with monkeypatch
(DTNSESS_RPC_URL, DTNSESS_CONTRACT, DTNSESS_CHAIN_ID, DTNSESS_PRIVATE_KEY), never a key on the
command line. Each test runs in its own tmp directory with HOME pointing there, so a developer's
./.env, ~/.foundry or devnet state file cannot leak in.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Optional

import pytest
from typer.testing import CliRunner

from dtnsess_cli.cli import app
from dtnsess_cli.errors import ExitCode

ROLES = {"deployer": 0, "user": 1, "stranger": 2, "worker": 3}

# Every variable the configuration reads (config.py), cleared before each CLI test.
_CONFIG_VARS = ("ETH_RPC_URL", "FOUNDRY_DIR", "ETH_KEYSTORE", "ETH_KEYSTORE_ACCOUNT", "ETH_PASSWORD")


class Cli:
    """``cli("create", "50", "--json")``: one in-process run as ``role`` (default: user)."""

    def __init__(self, system: Any, private_keys: list, monkeypatch: pytest.MonkeyPatch,
                 url: str) -> None:
        self.system = system
        self.keys = private_keys
        self.mp = monkeypatch
        self.url = url
        self.runner = CliRunner()

    def key(self, role: str = "user") -> str:
        return self.keys[ROLES[role]]

    def __call__(self, *args: str, role: Optional[str] = "user", key: Optional[str] = None,
                 input: Optional[str] = None, env: Optional[dict] = None):
        """Run ``dtnsess ARGS``; ``key`` overrides the role's key, ``role=None`` sets none."""
        self.mp.setenv("DTNSESS_RPC_URL", self.url)
        self.mp.setenv("DTNSESS_CONTRACT", self.system.manager.address)
        self.mp.setenv("DTNSESS_CHAIN_ID", "31337")
        k = key or (self.key(role) if role else None)
        if k:
            self.mp.setenv("DTNSESS_PRIVATE_KEY", k)
        else:
            self.mp.delenv("DTNSESS_PRIVATE_KEY", raising=False)
        # per-call overrides (None removes a variable), restored when the run ends
        result = self.runner.invoke(app, list(args), input=input, env=env,
                                    catch_exceptions=True)
        # a bug in the CLI shows as an exception that is not SystemExit: never acceptable
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            tb = "".join(traceback.format_exception(result.exception))
            pytest.fail(f"dtnsess {' '.join(args)} raised:\n{tb}\nstderr: {result.stderr}")
        return result

    def json(self, *args: str, **kw: Any) -> Any:
        """Run with --json, expect success and exactly one JSON document on stdout."""
        r = self(*args, "--json", **kw)
        assert_ok(r)
        return load_json(r)


def isolate_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No developer configuration: fresh cwd and HOME, no DTNSESS_* variables."""
    for name in list(os.environ):
        if name.startswith("DTNSESS_") or name in _CONFIG_VARS:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    locks = tmp_path / "locks"
    locks.mkdir(exist_ok=True)
    monkeypatch.setenv("DTNSESS_LOCK_DIR", str(locks))
    # NOTE: reads retry for 20 s by default; a test that meets a dead node should not wait that
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "1")


# ----------------------------------------------------------------------------- assertions


def load_json(result) -> Any:
    """stdout is exactly one JSON document (json.loads fails on anything else)."""
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        pytest.fail(f"stdout is not one JSON document ({exc}):\n{result.stdout!r}")


def no_traceback(result) -> None:
    assert "Traceback" not in result.output, result.output


def assert_ok(result) -> None:
    assert result.exit_code == 0, (
        f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}")
    no_traceback(result)


def assert_error(result, code: ExitCode, *fragments: str, secrets: tuple = ()) -> str:
    """One `error:` line on stderr naming ``fragments``, exit ``code``, no traceback, no secret,
    nothing on stdout. Returns the error line."""
    assert result.exit_code == int(code), (
        f"expected exit {int(code)} ({code.name}), got {result.exit_code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}")
    no_traceback(result)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, f"expected one error line:\n{result.stderr}"
    line = lines[0]
    for frag in fragments:
        assert frag.lower() in line.lower(), f"{frag!r} not in {line!r}"
    for s in secrets:
        for form in {s, s.lower(), s[2:] if s.startswith("0x") else s}:
            assert form not in result.output, "a secret appeared in the output"
    assert result.stdout.strip() == "", f"stdout should be empty on error: {result.stdout!r}"
    return line


# ----------------------------------------------------------------------------- round trips


class RoundTrips:
    """Counts HTTP POSTs to the node (single requests and JSON-RPC batches) and their methods."""

    def __init__(self) -> None:
        self.posts = 0
        self.methods: list[str] = []

    def __repr__(self) -> str:
        return f"{self.posts} round trips: {self.methods}"


@contextmanager
def count_round_trips(monkeypatch):
    """Count HTTP POSTs (what a remote node's latency is paid for), JSON-RPC batches as they
    really are: every request of the client goes through ``chain.jsonrpc.JsonRpc._exchange``."""
    from dtnsess_cli.chain.jsonrpc import JsonRpc

    rt = RoundTrips()
    exchange = JsonRpc._exchange

    def counted(self, payload, label, **kwargs):
        rt.posts += 1
        rt.methods.append("batch[" + ",".join(r["method"] for r in payload) + "]"
                          if isinstance(payload, list) else payload["method"])
        return exchange(self, payload, label, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(JsonRpc, "_exchange", counted)
        yield rt


# ----------------------------------------------------------------------------- chain helpers


def nonce(w3, address: str) -> int:
    return w3.eth.get_transaction_count(address, "pending")


def token_units(system, tokens: str | int) -> int:
    from decimal import Decimal

    return int(Decimal(str(tokens)) * 10**system.decimals)


def answer_later(system, request_id: bytes, delay: float = 1.0, text: str = "later answer",
                 failure: Optional[str] = None) -> threading.Thread:
    """Answer ``request_id`` from a background thread after ``delay`` seconds (a DTN node)."""
    from dtnsess_cli.devnet.localdtn import respond

    errors: list = []

    def run() -> None:
        time.sleep(delay)
        try:
            respond(system, request_id, worker=system.worker, node=system.node_id, text=text,
                    failure=failure)
        except Exception as exc:  # surfaced by join()
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t


def create_via_cli(cli, amount: str = "50", role: str = "user") -> int:
    """Create a session through the CLI; its id."""
    return int(cli.json("create", amount, role=role)["session_id"])
