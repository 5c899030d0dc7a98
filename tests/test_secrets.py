"""Secrets never reach any output: a private key, a keystore password and an RPC URL with
credentials (user:pass@, /v2/KEY, ?apikey=) go through succeeding and failing commands, with and
without --debug and --json; none of them may appear on stdout or stderr. Files holding a secret
that others can read get a one-line warning."""

from __future__ import annotations

import json
import os

import pytest
from eth_account import Account

from cli_helpers import Cli, assert_ok, create_via_cli
from dtnsess_cli.errors import redact_url, scrub
from faultproxy import FaultProxy
from helpers import fund

PASSWORD = "Tr0ub4dor&3-horse"
USERINFO_PASS = "s3cretPassw0rd"
PATH_KEY = "AbCdEf0123456789KeyZz"
QUERY_KEY = "qwerty9876543210"


def _secret_url(base: str) -> str:
    host = base.split("://", 1)[1]
    return f"http://alice:{USERINFO_PASS}@{host}/v2/{PATH_KEY}?apikey={QUERY_KEY}"


def _assert_clean(r, *secrets):
    text = (r.stdout or "") + (r.stderr or "")
    for s in secrets:
        for form in {s, s.lower(), s[2:] if s.startswith("0x") else s}:
            assert form not in text, f"secret {form[:6]}... in output of exit {r.exit_code}:\n{text}"


@pytest.fixture
def proxy(anvil):
    with FaultProxy(anvil.url) as p:
        yield p


@pytest.fixture
def scli(make_cli, system6, proxy, private_keys, monkeypatch):
    make_cli(system6)
    return Cli(system6, private_keys, monkeypatch, _secret_url(proxy.url))


COMMANDS = [
    ["balance"], ["doctor"], ["config", "show"], ["sessions"], ["stats", "1"],
    ["create", "20", "--yes"], ["request", "hello", "--yes"], ["requests"],
    ["cleanup"], ["stats", "999"], ["close", "999", "--yes"], ["response", "0x" + "00" * 32],
    ["request", "hi", "--value", "1"],
]


@pytest.mark.parametrize("extra", [[], ["--debug"], ["--json"], ["--debug", "--json"]])
def test_secrets_sweep_healthy_node(scli, system6, user, extra):
    fund(system6, user, 200, approve=False)
    create_via_cli(scli, "20")
    key = scli.key("user")
    for args in COMMANDS:
        r = scli(*args, *extra)
        _assert_clean(r, key, USERINFO_PASS, PATH_KEY, QUERY_KEY)
    r = scli("config", "show", "--json")
    shown = {row["name"]: row["value"] for row in json.loads(r.stdout)["config"]}
    assert shown["rpc_url"].endswith("/v2/***?***") and "***@" in shown["rpc_url"]


@pytest.mark.parametrize("extra", [[], ["--debug"], ["--json"], ["--debug", "--json"]])
@pytest.mark.parametrize("kind,status", [("http_before", 500), ("http_before", 401),
                                         ("badjson_before", 502), ("drop_before", 502),
                                         ("cut_after", 502)])
def test_secrets_sweep_failing_node(scli, proxy, monkeypatch, extra, kind, status):
    monkeypatch.setenv("DTNSESS_RPC_RETRY_SECONDS", "0.3")
    proxy.fault("*", kind, times=10_000, status=status)
    for args in (["balance"], ["doctor"], ["create", "20", "--yes"], ["stats", "1"]):
        r = scli(*args, *extra)
        assert r.exit_code == 5, (args, r.output)
        _assert_clean(r, scli.key("user"), USERINFO_PASS, PATH_KEY, QUERY_KEY)
        assert "127.0.0.1" in r.stdout + r.stderr  # the host is named, the secrets hidden


def test_keystore_password_never_shown(scli, system6, user, tmp_path):
    key = scli.key("user")
    ks = Account.encrypt(key, PASSWORD, kdf="pbkdf2", iterations=1000)
    path = tmp_path / "ks.json"
    path.write_text(json.dumps(ks))
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    os.chmod(pw, 0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("not " + PASSWORD + "\n")
    os.chmod(wrong, 0o600)
    for pwfile in (pw, wrong):
        for extra in ([], ["--debug"], ["--json"]):
            for args in (["balance"], ["approve", "1", "--yes"], ["doctor"]):
                r = scli(*args, "--keystore", str(path), *extra, role=None,
                         env={"DTNSESS_PASSWORD_FILE": str(pwfile)})
                _assert_clean(r, key, PASSWORD, USERINFO_PASS, PATH_KEY, QUERY_KEY)
                assert "readable by other users" not in r.stderr


def test_env_file_with_a_key_readable_by_others_warns(make_cli, system6, tmp_path):
    cli = make_cli(system6)  # cwd is tmp_path
    env = tmp_path / ".env"
    env.write_text(f"DTNSESS_PRIVATE_KEY={cli.key('user')}\n")
    os.chmod(env, 0o644)
    r = cli("config", "show", role=None)
    assert_ok(r)
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and str(env) in warnings[0] and "chmod 600" in warnings[0]
    _assert_clean(r, cli.key("user"))
    os.chmod(env, 0o600)
    r = cli("config", "show", role=None)
    assert "warning" not in r.stderr


def test_env_file_without_secrets_does_not_warn(make_cli, system6, tmp_path):
    cli = make_cli(system6)
    env = tmp_path / ".env"
    env.write_text("DTNSESS_MODEL=model.system.openai-gpt-4\nDTNSESS_RPC_URL=http://127.0.0.1:1\n")
    os.chmod(env, 0o644)
    assert "warning" not in cli("config", "show").stderr
    env.write_text(f"DTNSESS_RPC_URL=https://eth.example.io/v2/{PATH_KEY}\n")
    r = cli("config", "show")
    assert "readable by other users" in r.stderr
    _assert_clean(r, PATH_KEY)


def test_password_file_readable_by_others_warns(scli, tmp_path):
    key = scli.key("user")
    path = tmp_path / "ks.json"
    path.write_text(json.dumps(Account.encrypt(key, PASSWORD, kdf="pbkdf2", iterations=1000)))
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    os.chmod(pw, 0o640)
    r = scli("balance", "--keystore", str(path), role=None,
             env={"DTNSESS_PASSWORD_FILE": str(pw)})
    assert_ok(r)
    assert f"warning: {pw} holds a keystore password and is readable by other users" in r.stderr
    _assert_clean(r, PASSWORD, key)


@pytest.mark.parametrize("url,shown", [
    ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
    ("https://mainnet.base.org", "https://mainnet.base.org"),
    ("https://u:p@host.io/rpc", "https://***@host.io/rpc"),
    ("https://eth-mainnet.g.alchemy.com/v2/KEY", "https://eth-mainnet.g.alchemy.com/v2/***"),
    ("https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef",
     "https://mainnet.infura.io/v3/***"),
    ("https://x.quiknode.pro/abcd1234abcd1234abcd/", "https://x.quiknode.pro/***/"),
    ("https://rpc.ankr.com/eth/a1b2c3", "https://rpc.ankr.com/eth/***"),
    ("https://host.io/rpc?apikey=abc", "https://host.io/rpc?***"),
    ("http://[::1]:8545/", "http://[::1]:8545/"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_scrub_finds_urls_and_quoted_paths():
    text = ("HTTPError: 500 for url: https://a:b@h.io/v2/SECRET?k=v and "
            "Max retries exceeded with url: /v2/SECRET?apikey=zz (Caused by x)")
    out = scrub(text)
    assert "SECRET" not in out and "a:b" not in out and "zz" not in out and "k=v" not in out
    assert "h.io" in out


def test_scrub_leaves_a_sentence_s_punctuation_out_of_the_url():
    """The responder's ready line said "at <unparseable url>, from block 22": the comma after
    the URL was read as part of its port."""
    assert scrub("on router 0xab at http://127.0.0.1:8545, from block 22.") == \
        "on router 0xab at http://127.0.0.1:8545, from block 22."
    assert scrub("see https://u:p@h.io/v2/KEYKEYKEYKEYKEY.") == "see https://***@h.io/v2/***."


def test_responder_log_lines_are_redacted():
    import logging

    from dtnsess_cli.devnet.responder import _Redacting

    fmt = _Redacting(logging.Formatter("%(levelname)s %(message)s"))
    try:
        raise ConnectionError(f"Max retries exceeded with url: /v2/{PATH_KEY}?apikey={QUERY_KEY}")
    except ConnectionError:
        import sys

        rec = logging.LogRecord("r", logging.ERROR, __file__, 1, "poll failed at %s",
                                (f"https://alice:{USERINFO_PASS}@h.io/v2/{PATH_KEY}",),
                                sys.exc_info())
    text = fmt.format(rec)
    assert "h.io" in text and "Traceback" in text
    for s in (USERINFO_PASS, PATH_KEY, QUERY_KEY):
        assert s not in text


@pytest.mark.parametrize("var", ["ETH_PASSWORD", "DTNSESS_PASSWORD_FILE", None])
def test_a_password_given_as_its_file_is_never_echoed(scli, tmp_path, var):
    """The password itself where its file is expected (Foundry's ETH_PASSWORD names a file):
    on main 5e555a9 it was echoed in the error, in --json and with --debug."""
    key = scli.key("user")
    path = tmp_path / "ks.json"
    path.write_text(json.dumps(Account.encrypt(key, PASSWORD, kdf="pbkdf2", iterations=1000)))
    flag = ["--password-file", PASSWORD] if var is None else []
    env = {var: PASSWORD} if var else {}
    for extra in ([], ["--debug"], ["--json"], ["--debug", "--json"]):
        for args in (["balance"], ["approve", "1", "--yes"], ["config", "show"]):
            r = scli(*args, "--keystore", str(path), *flag, *extra, role=None, env=env)
            _assert_clean(r, key, PASSWORD)
            if args != ["config", "show"]:
                assert r.exit_code == 3 and "password file" in r.stderr, r.output
