"""Foundry's conventions (issue 10, section 4): ETH_KEYSTORE, ETH_KEYSTORE_ACCOUNT, ETH_PASSWORD
(in Foundry the variable of --password-file: a path, never the password), --password-file,
--version, and --network completed from the presets.

Precedence (config.py): flags, then the environment, then ./.env; within a layer a DTNSESS_*
name beats its Foundry alias; between a keystore and DTNSESS_PRIVATE_KEY the higher layer wins,
and in the same layer a DTNSESS_* name beats a Foundry alias (on a full tie: the keystore).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import assert_error, assert_ok, load_json
from dtnsess_cli.config import CliOptions, resolve_settings
from dtnsess_cli.errors import ExitCode

KEY1 = "0x" + "11" * 32
SCRIPT = Path(sys.executable).parent / "dtnsess"
PASSWORD = "c0rrect-h0rse"


def settings(tmp_path, env: dict, dotenv: str = "", **flags):
    (tmp_path / ".env").write_text(dotenv)
    return resolve_settings(CliOptions(**flags), env=env, cwd=tmp_path)


def test_foundry_names_are_read(tmp_path):
    s = settings(tmp_path, {"ETH_KEYSTORE": "/k/ks.json", "ETH_PASSWORD": "/k/pw"})
    assert (s.key_kind, s.keystore, s.password_file) == ("keystore", "/k/ks.json", "/k/pw")
    assert s.sources["keystore"] == "env ETH_KEYSTORE"
    assert s.sources["password_file"] == "env ETH_PASSWORD"
    s = settings(tmp_path, {"ETH_KEYSTORE_ACCOUNT": "alice", "FOUNDRY_DIR": "/f"})
    assert (s.key_kind, s.account, s.keystore) == ("keystore", "alice", "/f/keystores/alice")
    # from ./.env as well
    s = settings(tmp_path, {}, "ETH_KEYSTORE=/d/ks.json\nETH_PASSWORD=/d/pw\n")
    assert (s.keystore, s.password_file) == ("/d/ks.json", "/d/pw")


def test_dtnsess_names_beat_foundry_names_in_a_layer(tmp_path):
    s = settings(tmp_path, {"ETH_KEYSTORE": "/eth", "DTNSESS_KEYSTORE": "/dtn",
                            "ETH_PASSWORD": "/eth-pw", "DTNSESS_PASSWORD_FILE": "/dtn-pw"})
    assert (s.keystore, s.password_file) == ("/dtn", "/dtn-pw")
    s = settings(tmp_path, {"ETH_KEYSTORE_ACCOUNT": "eth", "DTNSESS_ACCOUNT": "dtn",
                            "FOUNDRY_DIR": "/f"})
    assert s.account == "dtn"
    # a raw key in DTNSESS_PRIVATE_KEY beats a Foundry keystore variable of the same layer
    s = settings(tmp_path, {"ETH_KEYSTORE": "/eth", "DTNSESS_PRIVATE_KEY": KEY1})
    assert s.key_kind == "private_key"
    s = settings(tmp_path, {"ETH_KEYSTORE_ACCOUNT": "eth", "DTNSESS_PRIVATE_KEY": KEY1})
    assert s.key_kind == "private_key"
    # ... but not DTNSESS_KEYSTORE (as before: on a tie the keystore wins)
    s = settings(tmp_path, {"DTNSESS_KEYSTORE": "/dtn", "DTNSESS_PRIVATE_KEY": KEY1})
    assert s.key_kind == "keystore"


def test_layers_come_first(tmp_path):
    # the environment beats ./.env, whatever the names
    s = settings(tmp_path, {"ETH_KEYSTORE": "/eth"}, f"DTNSESS_PRIVATE_KEY={KEY1}\n")
    assert (s.key_kind, s.keystore) == ("keystore", "/eth")
    s = settings(tmp_path, {"ETH_PASSWORD": "/eth-pw"}, "DTNSESS_PASSWORD_FILE=/dtn-pw\n")
    assert s.password_file == "/eth-pw"
    s = settings(tmp_path, {"ETH_KEYSTORE_ACCOUNT": "eth", "FOUNDRY_DIR": "/f"},
                 "DTNSESS_KEYSTORE=/dotenv\n")
    assert s.keystore == "/f/keystores/eth"
    # flags beat both
    s = settings(tmp_path, {"ETH_KEYSTORE": "/eth", "ETH_PASSWORD": "/eth-pw",
                            "DTNSESS_PASSWORD_FILE": "/dtn-pw"},
                 keystore="/flag", password_file="/flag-pw")
    assert (s.keystore, s.password_file) == ("/flag", "/flag-pw")
    assert s.sources["password_file"] == "flag"
    s = settings(tmp_path, {"ETH_KEYSTORE": "/eth", "DTNSESS_PRIVATE_KEY": KEY1},
                 account="alice")
    assert (s.key_kind, s.account) == ("keystore", "alice")


# --------------------------------------------------------------------------- on the chain

@pytest.fixture
def keystore(tmp_path, private_keys):
    from eth_account import Account

    path = tmp_path / "user.json"
    path.write_text(json.dumps(Account.encrypt(private_keys[1], PASSWORD, kdf="pbkdf2",
                                               iterations=1000)))
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    os.chmod(pw, 0o600)
    return path, pw


def test_a_foundry_keystore_from_eth_variables_signs(make_cli, system6, user, keystore, w3):
    cli = make_cli(system6)
    path, pw = keystore
    nonce = w3.eth.get_transaction_count(user)
    out = cli.json("approve", "1", "--yes", role=None,
                   env={"ETH_KEYSTORE": str(path), "ETH_PASSWORD": str(pw)})
    assert out["transactions"][0]["from"] == user
    assert w3.eth.get_transaction_count(user) == nonce + 1
    rows = {row["name"]: row for row in cli.json(
        "config", "show", role=None,
        env={"ETH_KEYSTORE": str(path), "ETH_PASSWORD": str(pw)})["config"]}
    assert rows["key"]["source"] == "env ETH_KEYSTORE"
    assert rows["password_file"]["source"] == "env ETH_PASSWORD"


def test_password_file_flag(make_cli, system6, user, keystore, tmp_path):
    cli = make_cli(system6)
    path, pw = keystore
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    os.chmod(wrong, 0o600)
    # the flag beats the variables (here: a wrong one)
    out = cli.json("balance", "--keystore", str(path), "--password-file", str(pw), role=None,
                   env={"ETH_PASSWORD": str(wrong)})
    assert user in json.dumps(out)
    r = cli("balance", "--keystore", str(path), "--password-file", str(wrong), role=None,
            env={"DTNSESS_PASSWORD_FILE": str(pw)})
    assert_error(r, ExitCode.AUTH, "wrong password", secrets=(PASSWORD,))


def test_a_password_file_from_eth_password_others_can_read_warns(make_cli, system6, keystore):
    cli = make_cli(system6)
    path, pw = keystore
    os.chmod(pw, 0o644)
    r = cli("balance", role=None, env={"ETH_KEYSTORE": str(path), "ETH_PASSWORD": str(pw)})
    assert_ok(r)
    assert f"warning: {pw} holds a keystore password and is readable by other users" in r.stderr
    assert PASSWORD not in r.stdout + r.stderr


# --------------------------------------------------------------------------- the script

def _env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DTNSESS_", "ETH_")) and k != "FOUNDRY_DIR"}
    env.update(HOME=str(tmp_path), **extra)
    return env


def test_version_is_fast(tmp_path):
    from dtnsess_cli import __version__

    p = subprocess.run([str(SCRIPT), "--version"], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == f"dtnsess {__version__}\n" and p.stderr == ""
    code = ("import sys\n"
            "from dtnsess_cli.cli import main\n"
            "rc = main(['--version'])\n"
            "print('HEAVY', rc, sorted(m for m in ('web3', 'eth_account', 'eth_abi', 'rich',\n"
            "      'pydantic', 'dotenv', 'coincurve', 'Crypto') if m in sys.modules))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip().splitlines()[-1] == "HEAVY 0 []", p.stdout + p.stderr


@pytest.mark.parametrize("words,cword,expected", [
    ("dtnsess --network ", 2, ["base", "local"]),
    ("dtnsess --network b", 2, ["base"]),
    ("dtnsess stats --network l", 3, ["local"]),
])
def test_network_completes_to_the_presets(tmp_path, words, cword, expected):
    env = _env(tmp_path, _DTNSESS_COMPLETE="complete_bash", COMP_WORDS=words,
               COMP_CWORD=str(cword))
    p = subprocess.run([str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.split() == expected, p.stderr


def test_a_keystore_folder_is_refused_with_a_hint(make_cli, system6, tmp_path):
    """Foundry's ETH_KEYSTORE may name a folder; dtnsess wants the file (or --account)."""
    cli = make_cli(system6)
    folder = tmp_path / "keystores"
    folder.mkdir()
    r = cli("balance", role=None, env={"ETH_KEYSTORE": str(folder)})
    assert_error(r, ExitCode.CONFIG, "is a directory")
    assert "--account NAME" in r.stderr
