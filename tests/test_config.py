"""Configuration precedence: flags > env > .env > network preset > devnet state."""

import json
from pathlib import Path

import pytest

from dtnsess_cli.config import CliOptions, resolve_settings
from dtnsess_cli.errors import ConfigError, InputError

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
C = "0x" + "cc" * 20
KEY1 = "0x" + "11" * 32
KEY2 = "0x" + "22" * 32


def test_flags_beat_env_beat_dotenv(tmp_path):
    (tmp_path / ".env").write_text(f"DTNSESS_CONTRACT={C}\nDTNSESS_RPC_URL=http://dotenv\n")
    env = {"DTNSESS_CONTRACT": B}
    s = resolve_settings(CliOptions(contract=A), env=env, cwd=tmp_path)
    assert s.contract == A and s.sources["contract"] == "flag"
    s = resolve_settings(CliOptions(), env=env, cwd=tmp_path)
    assert s.contract == B and s.sources["contract"].startswith("env")
    s = resolve_settings(CliOptions(), env={}, cwd=tmp_path)
    assert s.contract == C and s.sources["contract"].startswith(".env")
    assert s.rpc_url == "http://dotenv"


def test_dotenv_does_not_pollute_environ(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("DTNSESS_PRIVATE_KEY", raising=False)
    (tmp_path / ".env").write_text(f"DTNSESS_PRIVATE_KEY={KEY1}\n")
    s = resolve_settings(CliOptions(), env={}, cwd=tmp_path)
    assert s.key_kind == "private_key"
    assert "DTNSESS_PRIVATE_KEY" not in os.environ


def test_eth_rpc_url_fallback(tmp_path):
    s = resolve_settings(CliOptions(), env={"ETH_RPC_URL": "http://x"}, cwd=tmp_path)
    assert s.rpc_url == "http://x"
    s = resolve_settings(CliOptions(), env={"ETH_RPC_URL": "http://x", "DTNSESS_RPC_URL": "http://y"},
                         cwd=tmp_path)
    assert s.rpc_url == "http://y"


def test_network_preset(tmp_path):
    s = resolve_settings(CliOptions(network="base"), env={}, cwd=tmp_path)
    assert s.chain_id == 8453 and s.router == "0x45B80f551646fDaC777A4991FbdA748Fc5A72194"
    s = resolve_settings(CliOptions(network="local"), env={"DTNSESS_CHAIN_ID": "1337"}, cwd=tmp_path)
    assert s.chain_id == 1337 and s.rpc_url == "http://127.0.0.1:8545"
    with pytest.raises(ConfigError):
        resolve_settings(CliOptions(network="mars"), env={}, cwd=tmp_path)


def _devnet(tmp_path, rpc="http://127.0.0.1:8545"):
    (tmp_path / ".dtnsess-devnet.json").write_text(json.dumps({
        "rpc_url": rpc, "chain_id": 31337, "manager": A, "router": B, "token": C,
        "model": "model.dev.x", "node": "node.devnet.responder", "pids": {},
        "accounts": [{"address": A, "private_key": KEY1}, {"address": B, "private_key": KEY2}]}))


def test_devnet_is_lowest_and_its_dev_key_is_labelled(tmp_path):
    _devnet(tmp_path)
    s = resolve_settings(CliOptions(), env={}, cwd=tmp_path)
    assert (s.rpc_url, s.chain_id, s.contract, s.model) == ("http://127.0.0.1:8545", 31337, A, "model.dev.x")
    assert s.private_key == KEY2 and s.devnet_key
    shown = {r["name"]: r for r in s.show()}
    assert "devnet" in shown["key"]["value"] and KEY2 not in json.dumps(s.show())
    s = resolve_settings(CliOptions(contract=B), env={"DTNSESS_PRIVATE_KEY": KEY1}, cwd=tmp_path)
    assert s.contract == B and s.private_key == KEY1 and not s.devnet_key


def test_devnet_ignored_for_another_rpc(tmp_path):
    _devnet(tmp_path)
    s = resolve_settings(CliOptions(rpc_url="https://remote.example"), env={}, cwd=tmp_path)
    assert s.contract is None and s.key_kind is None and s.chain_id is None


def test_keystore_from_account_name(tmp_path):
    s = resolve_settings(CliOptions(account="alice"), env={"DTNSESS_PRIVATE_KEY": KEY1,
                                                          "FOUNDRY_DIR": str(tmp_path)}, cwd=tmp_path)
    assert s.key_kind == "keystore" and s.keystore == str(tmp_path / "keystores" / "alice")
    with pytest.raises(InputError):
        resolve_settings(CliOptions(account="../x"), env={}, cwd=tmp_path)


def test_secrets_never_in_repr_or_show(tmp_path):
    s = resolve_settings(CliOptions(), env={"DTNSESS_PRIVATE_KEY": KEY1,
                                            "DTNSESS_RPC_URL": "https://u:secretpw@h/v2/abcdefghijklmnopqrstuvwxyz"},
                         cwd=tmp_path)
    text = repr(s) + json.dumps(s.show())
    assert KEY1 not in text and KEY1[2:] not in text and "secretpw" not in text
    assert "abcdefghijklmnopqrst" not in json.dumps(s.show())


def test_bad_values(tmp_path):
    with pytest.raises(InputError):
        resolve_settings(CliOptions(contract="0x123"), env={}, cwd=tmp_path)
    with pytest.raises(ConfigError):
        resolve_settings(CliOptions(), env={"DTNSESS_CHAIN_ID": "abc"}, cwd=tmp_path)


def test_options_after_command_merge_over_root():
    root = CliOptions(rpc_url="http://a", json=True)
    local = CliOptions(rpc_url="http://b")
    m = local.merged_over(root)
    assert m.rpc_url == "http://b" and m.json is True


def test_signer_never_leaks_key(tmp_path):
    from dtnsess_cli.signer import load_account

    bad = "0x" + "zz" * 32
    s = resolve_settings(CliOptions(), env={"DTNSESS_PRIVATE_KEY": bad}, cwd=tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_account(s)
    assert "zz" not in str(ei.value)
    s = resolve_settings(CliOptions(), env={"DTNSESS_PRIVATE_KEY": KEY1}, cwd=tmp_path)
    assert load_account(s).address.startswith("0x")


def test_keystore_wrong_password(tmp_path):
    from eth_account import Account

    from dtnsess_cli.errors import KeystoreError
    from dtnsess_cli.signer import load_account

    ks = tmp_path / "ks.json"
    ks.write_text(json.dumps(Account.encrypt(KEY1, "right", iterations=2)))
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    s = resolve_settings(CliOptions(keystore=str(ks)), env={"DTNSESS_PASSWORD_FILE": str(pw)}, cwd=tmp_path)
    with pytest.raises(KeystoreError) as ei:
        load_account(s)
    assert ei.value.exit_code == 9
    pw.write_text("right\n")
    # the signer keeps its key to itself: the address proves the right one was decrypted
    assert load_account(s).address == Account.from_key(KEY1).address


@pytest.mark.parametrize("xdg", [None, "", "   ", "/tmp/xdg-state"])
def test_the_state_dir_is_platformdirs_own(monkeypatch, tmp_path, xdg):
    """chain.journal.state_dir() computes platformdirs' Linux path itself (its import costs
    ~30 ms of every write): the same answer, whatever XDG_STATE_HOME says."""
    import platformdirs

    from dtnsess_cli.chain.journal import STATE_ENV, state_dir

    monkeypatch.delenv(STATE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)
    assert state_dir() == Path(platformdirs.user_state_dir("dtnsess", appauthor=False))
