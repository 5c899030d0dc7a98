"""The public Python API (``from dtnsess_cli import Client``) against Anvil, without the CLI.

A program builds the client from an RPC URL, the manager's address and a signer (eth-account's
LocalAccount, our LocalSigner, or any object with ``.address`` and ``.sign_transaction``). The
tests check that tokens move as the contract says, that nothing is printed or asked, that no
``.env`` / devnet file / DTNSESS_* variable is read, and that failures raise the CLI's errors
with its exit codes (nothing sent).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import dtnsess_cli
from dtnsess_cli import (
    ChainMismatchError,
    Client,
    ConfigError,
    DtnsessError,
    ExitCode,
    InputError,
    InsufficientFundsError,
    NoContractError,
    NotAuthorizedError,
    NotRepeatedError,
    RpcError,
    SessionView,
    WriteResult,
    signer_from_key,
)
from helpers import bal, fund, next_second, session

ROOT = Path(__file__).resolve().parents[1]


def nonce(w3, address: str) -> int:
    return w3.eth.get_transaction_count(address, "pending")


def answer_later(system, request_id: str, text: str, delay: float = 0.5) -> threading.Thread:
    """The DTN node answers ``request_id`` from a thread after ``delay`` seconds."""
    import time

    from dtnsess_cli.devnet.localdtn import respond

    def run() -> None:
        time.sleep(delay)
        respond(system, bytes.fromhex(request_id[2:]), worker=system.worker,
                node=system.node_id, text=text)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t

pytestmark = pytest.mark.usefixtures("conserved")


class TerminalStdin:
    """A stdin that claims to be a terminal and fails the test when anything reads it: the
    API must not prompt even where a person could be asked."""

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("no fd")

    def read(self, *a):
        raise AssertionError("the API read stdin (a prompt)")

    readline = read


@pytest.fixture
def quiet(monkeypatch, capsys):
    """No stdin to prompt on; afterwards, nothing on stdout or stderr."""
    monkeypatch.setattr(sys, "stdin", TerminalStdin())
    yield
    out, err = capsys.readouterr()
    assert out == "" and err == "", f"the API printed: {out!r} {err!r}"


class DuckSigner:
    """Not an eth-account object: an address in lower case and a sign_transaction that wraps
    our LocalSigner (counting the transactions it signed)."""

    def __init__(self, key: str) -> None:
        self._inner = signer_from_key(key)
        self.address = self._inner.address.lower()
        self.signed: list[dict] = []

    def sign_transaction(self, tx: dict):
        self.signed.append(dict(tx))
        return self._inner.sign_transaction(tx)


def _close_refund(res: WriteResult) -> int:
    (closed,) = res.data["closed"]
    return closed["refund"].units


# ----------------------------------------------------------------------------- the main job


def test_local_account_create_request_answer_close(anvil, system6, private_keys, user, quiet):
    from eth_account import Account

    s = system6
    fund(s, user, 100, approve=False)
    start = bal(s, user)
    client = Client(anvil.url, s.manager.address, signer=Account.from_key(private_keys[1]),
                    chain_id=31337)
    assert client.address == user

    b = client.balances()
    assert b.token.units == start and b.allowance.units == 0 and b.eth.units > 0

    created = client.create_session("20")
    assert isinstance(created, WriteResult) and not created.dry_run
    sid = created.session_id
    assert isinstance(sid, int) and len(created.tx_hashes) == 2  # the approval, then create
    assert bal(s, user) == start - 20 * s.unit
    view = client.session(sid)
    assert isinstance(view, SessionView) and view.owner == user and view.active
    assert view.balance.units == 20 * s.unit

    req = client.make_ai_request("What is DTN?", session_id=sid)
    rid = req.request_id
    assert re.fullmatch(r"0x[0-9a-f]{64}", rid) and req.session_id == sid
    t = answer_later(s, rid, "a decentralised AI network")
    ans = client.wait_for_answer(rid, timeout=30, poll=0.2)
    t.join()
    assert (ans.status, ans.answer, ans.session_id) == ("succeeded", "a decentralised AI network",
                                                         sid)
    assert client.requests()[-1].status == "succeeded"

    before_close = bal(s, user)
    closed = client.close_session(sid)
    refund = _close_refund(closed)
    assert 0 < refund < 20 * s.unit  # the answer was paid for
    assert bal(s, user) == before_close + refund
    assert not session(s, sid)["active"]


def test_image_and_ipfs_requests(anvil, system6, private_keys, user, quiet):
    from eth_abi import decode, encode

    from dtnsess_cli.devnet.localdtn import make_png, respond
    from dtnsess_cli.media import cid_of

    s = system6
    fund(s, user, 100, approve=False)
    client = Client(anvil.url, s.manager.address, signer=signer_from_key(private_keys[1]),
                    chain_id=31337)
    sid = client.create_session("20").session_id
    rid = client.make_ai_request("a red fox", image=(64, 32), session_id=sid).request_id
    call, _, calltype, *_ = s.router.functions.getRequest(rid).call()[8]
    # an image goes over IPFS: DTN's node cannot answer a DIRECT bytes output
    assert calltype == 0 and decode(["string[]", "uint64", "uint64"], call) == (("a red fox",), 64, 32)
    assert s.router.functions.getRequest(rid).call()[1] == s.router.functions.modelId(
        "model.system.openai-gpt-image-1").call()
    png = make_png(64, 32)  # what another router might answer: decoded by its magic bytes
    respond(s, bytes.fromhex(rid[2:]), worker=s.worker, node=s.node_id,
            payload=encode(["bytes"], [png]))
    ans = client.response(rid)
    assert (ans.kind, ans.data, ans.content["width"], ans.content["height"]) == ("image", png, 64, 32)

    # IPFS: the call type says so, and the answer is a CID
    next_second(s.manager.w3)  # DTN request ids have one-second resolution
    rid2 = client.make_ai_request("hello", ipfs=True, session_id=sid).request_id
    call2, _, calltype2, *_ = s.router.functions.getRequest(rid2).call()[8]
    assert calltype2 == 0 and decode(["string[]"], call2) == (("hello",),)
    cid = cid_of(b"hello back")
    respond(s, bytes.fromhex(rid2[2:]), worker=s.worker, node=s.node_id, text=cid)
    ans2 = client.response(rid2)
    assert (ans2.kind, ans2.cid, ans2.ipfs_url) == ("cid", cid, f"ipfs://{cid}")

    # a text model cannot draw: refused before anything is sent
    with pytest.raises(InputError):
        client.make_ai_request("x", image=(64, 64), model="model.system.openai-gpt-5")
    with pytest.raises(InputError):
        client.make_ai_request("x", image=(8, 64))
    with pytest.raises(InputError, match="DIRECT"):
        client.make_ai_request("x", image=(64, 64), ipfs=False)


def test_duck_typed_signer_and_our_signer(anvil, system6, private_keys, user, quiet):
    s = system6
    fund(s, user, 100, approve=True)  # allowance in place: create is one transaction
    duck = DuckSigner(private_keys[1])
    client = Client(anvil.url, s.manager.address, duck)
    assert client.address == user  # checksummed from the signer's lower-case address
    res = client.create_session("15")
    assert len(duck.signed) == 1 and duck.signed[0]["chainId"] == 31337
    assert res.session_id and session(s, res.session_id)["owner"] == user
    assert bal(s, user) == 85 * s.unit

    ours = Client(anvil.url, s.manager.address, signer_from_key(private_keys[1]))
    closed = ours.close_session(res.session_id)
    assert bal(s, user) == 85 * s.unit + _close_refund(closed)
    assert _close_refund(closed) == 15 * s.unit  # no request: all of it back


def test_manager_client_without_a_ui_writes(anvil, system6, private_keys, user, quiet):
    """The internal client (the CLI's) with ``ui=None``: it used to fail on the first write."""
    from dtnsess_cli.config import Settings
    from dtnsess_cli.manager import Client as ManagerClient

    fund(system6, user, 50, approve=False)
    settings = Settings(rpc_url=anvil.url, contract=system6.manager.address,
                        private_key=private_keys[1], key_kind="private_key")
    res = ManagerClient(settings, None).create_session("10")
    assert res.session_id and bal(system6, user) == 40 * system6.unit


# ----------------------------------------------------------------------------- nothing hidden


def test_reads_no_dotenv_devnet_file_or_environment(anvil, system6, private_keys, user, stranger,
                                                    tmp_path, monkeypatch, quiet):
    """A hostile ./.env, devnet state file and DTNSESS_* environment: all ignored, and the
    files in the working directory are not even opened."""
    app = tmp_path / "app"
    app.mkdir()
    dead = "0x" + "de" * 20
    hostile = {"DTNSESS_RPC_URL": "http://127.0.0.1:9", "ETH_RPC_URL": "http://127.0.0.1:9",
               "DTNSESS_CONTRACT": dead, "DTNSESS_CHAIN_ID": "1",
               "DTNSESS_PRIVATE_KEY": private_keys[2], "DTNSESS_MODEL": "model.evil",
               "DTNSESS_RECEIPT_TIMEOUT": "not-a-number", "DTNSESS_RPC_TIMEOUT": "nope",
               "DTNSESS_RPC_RETRY_SECONDS": "nope", "DTNSESS_NETWORK": "base"}
    (app / ".env").write_text("".join(f"{k}={v}\n" for k, v in hostile.items()))
    (app / ".dtnsess-devnet.json").write_text(json.dumps(
        {"rpc_url": "http://127.0.0.1:9", "manager": dead, "chain_id": 1,
         "accounts": [{}, {"private_key": private_keys[2]}]}))
    for k, v in hostile.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DTNSESS_DEVNET_STATE", str(app / ".dtnsess-devnet.json"))
    monkeypatch.chdir(app)

    opened: list[str] = []
    watching = threading.Event()

    def hook(event, args):
        if watching.is_set() and event == "open" and args and isinstance(args[0], (str, bytes)):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)  # NOTE: cannot be removed; inert once `watching` is cleared
    fund(system6, user, 100, approve=False)
    watching.set()
    (app / "probe").write_text("the hook sees opens")
    assert opened == [str(app / "probe")]
    opened.clear()
    try:
        ro = Client(anvil.url, system6.manager.address, address=user)
        cfg = ro.config()
        assert cfg.manager == system6.manager.address and cfg.fee_token == system6.token.address
        assert ro.balances().token.units == 100 * system6.unit  # the given address, not .env's
        with pytest.raises(ConfigError) as no_key:  # the .env key is not taken
            ro.create_session("10")
        assert no_key.value.exit_code == ExitCode.CONFIG
        rw = Client(anvil.url, system6.manager.address, signer_from_key(private_keys[1]))
        sid = rw.create_session("10").session_id
        res = rw.make_ai_request("hi", session_id=sid)
        assert res.request_id and res.data["model"] == dtnsess_cli.DEFAULT_MODEL
    finally:
        watching.clear()
    assert not [p for p in opened if Path(p).resolve().is_relative_to(app.resolve())], opened
    assert session(system6, sid)["owner"] == user != stranger
    assert bal(system6, user) == 90 * system6.unit


def test_state_dir_default_explicit_and_disabled(anvil, system6, private_keys, user, tmp_path,
                                                 quiet):
    fund(system6, user, 100, approve=True)
    key = private_keys[1]
    default = Client(anvil.url, system6.manager.address, signer_from_key(key))
    assert default.state_dir == dtnsess_cli.default_state_dir() == tmp_path / "dtnsess-state"
    mine = tmp_path / "backend-state"
    c = Client(anvil.url, system6.manager.address, signer_from_key(key), state_dir=mine)
    res = c.create_session("10")
    journal = mine / "journal.sqlite3"
    assert journal.is_file()
    assert c.tx_view(res.tx_hashes[-1]).what.startswith("create a session")
    c.close()

    off = tmp_path / "off-state"
    none = Client(anvil.url, system6.manager.address, signer_from_key(key), state_dir=False)
    assert none.state_dir is None
    assert none.create_session("10").session_id
    assert not off.exists() and not (tmp_path / "dtnsess-state").exists()


def test_dry_run_sends_nothing(anvil, w3, system6, private_keys, user, quiet):
    fund(system6, user, 100, approve=True)
    client = Client(anvil.url, system6.manager.address, signer_from_key(private_keys[1]))
    n = nonce(w3, user)
    sim = client.simulating().create_session("20")
    assert sim.dry_run and sim.tx_hashes == [] and sim.txs[0].gas_estimate > 0
    assert nonce(w3, user) == n and bal(system6, user) == 100 * system6.unit
    assert not client.dry_run  # the original still sends


def test_a_rerun_after_a_lost_outcome_is_not_repeated(anvil, w3, system6, private_keys, user,
                                                      tmp_path, quiet, caplog):
    """A call whose transaction's outcome was not known (the journal entry still open) and
    was mined: the same call again raises NotRepeatedError and sends nothing; once more sends."""
    fund(system6, user, 100, approve=True)
    state = tmp_path / "st"
    client = Client(anvil.url, system6.manager.address, signer_from_key(private_keys[1]),
                    state_dir=state)
    first = client.create_session("10")
    client.close()
    db = sqlite3.connect(state / "journal.sqlite3")
    db.execute("UPDATE txs SET status = 'open' WHERE tx_hash = ?", (first.tx_hashes[-1],))
    db.commit()
    db.close()
    n = nonce(w3, user)
    caplog.set_level("INFO", logger=dtnsess_cli.LOGGER_NAME)
    with pytest.raises(NotRepeatedError) as exc:
        client.create_session("10")
    # what the CLI would say on stderr goes to the logger
    assert any("mined in block" in r.getMessage() for r in caplog.records)
    assert exc.value.exit_code == ExitCode.ABORTED and exc.value.tx_hash == first.tx_hashes[-1]
    assert "create_session('10')" in exc.value.message
    assert nonce(w3, user) == n
    assert client.create_session("10").session_id == first.session_id + 1


# ----------------------------------------------------------------------------- errors


def test_errors_are_raised_with_the_cli_exit_codes(anvil, w3, system6, private_keys, user,
                                                   stranger, quiet):
    m = system6.manager.address
    key = signer_from_key(private_keys[1])

    def code(thunk) -> int:
        with pytest.raises(DtnsessError) as exc:
            thunk()
        assert exc.value.message and "\n" not in exc.value.message
        return exc.value.exit_code

    # construction: checked at once, no network
    assert code(lambda: Client("ftp://x", m, key)) == ExitCode.CONFIG
    assert code(lambda: Client(anvil.url, "0x1234", key)) == ExitCode.INPUT
    assert code(lambda: Client(anvil.url, m, object())) == ExitCode.INPUT
    assert code(lambda: Client(anvil.url, m, key, address=user)) == ExitCode.INPUT
    assert code(lambda: signer_from_key("0x12")) == ExitCode.CONFIG

    client = Client(anvil.url, m, key)
    n = nonce(w3, user)
    with pytest.raises(InputError):
        client.create_session("-5")
    with pytest.raises(InsufficientFundsError) as funds:  # no tokens yet
        client.create_session("20")
    assert funds.value.exit_code == ExitCode.FUNDS
    fund(system6, stranger, 100, approve=True)
    other = Client(anvil.url, m, signer_from_key(private_keys[2])).create_session("10")
    with pytest.raises(NotAuthorizedError) as auth:
        client.close_session(other.session_id)
    assert auth.value.exit_code == ExitCode.AUTH
    assert nonce(w3, user) == n  # nothing sent by any of them

    assert code(lambda: Client(anvil.url, m, key, chain_id=1).config()) == ExitCode.CHAIN
    with pytest.raises(ChainMismatchError):
        Client(anvil.url, m, key, chain_id=1).balances()
    with pytest.raises(NoContractError) as nocode:
        Client(anvil.url, "0x" + "11" * 20, key).config()
    assert nocode.value.exit_code == ExitCode.CHAIN
    with pytest.raises(RpcError) as rpc:
        Client("http://127.0.0.1:9", m, key, rpc_retry_seconds=0, rpc_timeout=2).config()
    assert rpc.value.exit_code == ExitCode.RPC


def test_signer_from_keystore(private_keys, user, tmp_path):
    from eth_account import Account

    from dtnsess_cli import KeystoreError, signer_from_keystore

    doc = Account.encrypt(private_keys[1], "hunter22", kdf="pbkdf2", iterations=1000)
    path = tmp_path / "ks.json"
    path.write_text(json.dumps(doc))
    assert signer_from_keystore(doc, "hunter22").address == user
    assert signer_from_keystore(str(path), "hunter22").address == user
    with pytest.raises(KeystoreError) as wrong:
        signer_from_keystore(path, "nope")
    assert wrong.value.exit_code == ExitCode.AUTH and "hunter22" not in wrong.value.message
    with pytest.raises(KeystoreError) as missing:
        signer_from_keystore(tmp_path / "none.json", "x")
    assert missing.value.exit_code == ExitCode.CONFIG


# ----------------------------------------------------------------------------- the package


def test_public_names_and_cheap_import():
    import dtnsess_cli.api as api

    assert set(dtnsess_cli.__all__) == set(api.__all__) | {"__version__"}
    for name in api.__all__:
        assert getattr(dtnsess_cli, name) is getattr(api, name)
    assert (Path(dtnsess_cli.__file__).parent / "py.typed").is_file()
    code = ("import sys, dtnsess_cli\n"
            "before = sorted(m for m in sys.modules if m.startswith('dtnsess_cli.'))\n"
            "from dtnsess_cli import Client, LocalSigner, TxResult, signer_from_key\n"
            "heavy = {'web3', 'eth_account', 'eth_abi', 'eth_utils', 'eth_keys', 'requests',\n"
            "         'rich', 'typer', 'dotenv', 'pydantic', 'aiohttp'}\n"
            "print(before, sorted({m.split('.')[0] for m in sys.modules} & heavy),\n"
            "      sorted(m for m in ('dtnsess_cli.cli', 'dtnsess_cli.render') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[] [] []"  # nothing but the root; no web3 & co.; not the CLI


DOC_BLOCKS = [(doc, i, block) for doc in ("docs/api.md", "README.md")
              for i, block in enumerate(re.findall(r"```python\n(.*?)```",
                                                   (ROOT / doc).read_text(), re.S))]


@pytest.mark.parametrize("doc,index,example", DOC_BLOCKS,
                         ids=[f"{d}#{i}" for d, i, _ in DOC_BLOCKS])
def test_docs_example_runs(anvil, w3, system6, private_keys, user, tmp_path, doc, index,
                           example):
    """Every ```python block of docs/api.md and README.md, as written, in a fresh interpreter
    (a devnet responder answers the requests)."""
    from dtnsess_cli.devnet.responder import Responder

    script = tmp_path / "example.py"
    script.write_text(example)
    fund(system6, user, 100, approve=False)
    responder = Responder(w3, system6.router, system6.worker, system6.node_id,
                          from_block=w3.eth.block_number, poll=0.1)
    thread = threading.Thread(target=responder.run, daemon=True)
    thread.start()
    env = dict(os.environ, RPC_URL=anvil.url, MANAGER_ADDRESS=system6.manager.address,
               PRIVATE_KEY=private_keys[1])
    try:
        p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=180,
                           stdin=subprocess.DEVNULL)
    finally:
        responder.stop()
        thread.join(10)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    if "wait_for_answer" in example:
        assert "[devnet answer] You asked: What is DTN?" in p.stdout
        assert bal(system6, user) < 100 * system6.unit  # the answer was paid for
    if "closed, refund" in example:
        assert re.search(r"session \d+ closed, refund \d", p.stdout), p.stdout


def test_a_namespace_nobody_holds_is_a_logged_warning(anvil, w3, system6, private_keys, user,
                                                      tmp_path, quiet, caplog):
    """The API says what the CLI warns about on stderr, at WARNING, and never prints."""
    fund(system6, user, 100, approve=True)
    client = Client(anvil.url, system6.manager.address, signer_from_key(private_keys[1]),
                    state_dir=tmp_path / "st")
    client.create_session("20")
    caplog.set_level("INFO", logger=dtnsess_cli.LOGGER_NAME)
    client.simulating().make_ai_request("hi", namespaces=["trust.nobody"])
    warned = [r for r in caplog.records if "no node holds" in r.getMessage()]
    assert warned and warned[0].levelname == "WARNING"
