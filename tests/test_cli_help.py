"""Every command's `--help` names the environment variables it reads (plain Click help: rich
markup used to swallow the `[env: ...]` notes), in sections: arguments, the command's own
options, the global options. No chain needed."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from dtnsess_cli.cli import app

# What every command that talks to the chain reads (the global options' notes).
GLOBAL_ENV = ("DTNSESS_RPC_URL", "ETH_RPC_URL", "DTNSESS_CONTRACT", "DTNSESS_NETWORK",
              "DTNSESS_CHAIN_ID", "DTNSESS_ACCOUNT", "DTNSESS_KEYSTORE", "DTNSESS_PRIVATE_KEY",
              "DTNSESS_PASSWORD_FILE", "DTNSESS_DEBUG", "ETH_KEYSTORE", "ETH_KEYSTORE_ACCOUNT",
              "ETH_PASSWORD")
# ... and what some commands read on top.
OWN_ENV = {
    ("request",): ["DTNSESS_MODEL"],
    ("deploy",): ["DTNSESS_ROUTER"],
    ("cleanup",): ["DTNSESS_LOCK_DIR"],
    ("devnet", "up"): ["DTNSESS_ANVIL"],
    ("devnet", "reset"): ["DTNSESS_ANVIL"],
}


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _help(*argv: str) -> str:
    r = CliRunner().invoke(app, [*argv, "--help"])
    assert r.exit_code == 0, r.output
    return " ".join(r.stdout.split())  # Click wraps long notes over two lines


def test_the_tree_has_every_command():
    assert len(COMMANDS) >= 30 and ("pool", "add") in COMMANDS and ("devnet", "up") in COMMANDS


def test_root_help_lists_the_global_options_with_their_env_vars():
    text = _help()
    assert "Global options:" in text and "Commands:" in text and "╭" not in text
    for var in GLOBAL_ENV:
        assert var in text, var
    assert "--rpc-url <str> JSON-RPC URL [env: DTNSESS_RPC_URL, ETH_RPC_URL]" in text
    assert "[env: DTNSESS_CONTRACT]" in text


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_help_shows_its_env_vars(path):
    text = _help(*path)
    takes_globals = any(p.name == "rpc_url" for p in COMMANDS[path].params)
    expected = list(GLOBAL_ENV if takes_globals else ()) + OWN_ENV.get(path, [])
    assert takes_globals or path[0] == "devnet"  # devnet runs its own chain: no RPC to point at
    for var in expected:
        assert var in text, f"dtnsess {' '.join(path)} --help does not name {var}"


def test_command_help_sections():
    text = _help("request")
    args, rest = text.split("Arguments:", 1)[1].split("Options:", 1)
    own, glob = rest.split("Global options:", 1)
    assert "prompt" in args
    assert "--model <str> full model name [env: DTNSESS_MODEL]" in own and "--rpc-url" not in own
    assert "--rpc-url" in glob and "--model" not in glob
