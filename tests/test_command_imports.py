"""No command imports web3 or the libraries it is built on (issue 9): each command runs in a
fresh interpreter against Anvil, and afterwards ``sys.modules`` must hold none of them. They
cost ~1.5 s of start-up per command; the chain layer (``dtnsess_cli.chain``) replaces them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from helpers import fund

HEAVY = ("web3", "eth_abi", "eth_account", "eth_utils", "eth_keys", "eth_keyfile", "eth_typing",
         "hexbytes", "rlp", "requests", "urllib3", "pydantic", "aiohttp", "tenacity")

# run one command in process, then report which heavy modules it loaded (on stderr's last line):
# packages by their top-level name, or modules by their full name (dtnsess_cli.media)
PROBE_OF = (
    "import json, sys\n"
    "from dtnsess_cli.cli import main\n"
    "try:\n"
    "    rc = main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    rc = exc.code\n"
    "heavy = sorted(({m.split('.')[0] for m in sys.modules} | set(sys.modules)) & set(%r))\n"
    "sys.stderr.write('\\nHEAVY ' + json.dumps({'rc': rc, 'heavy': heavy}) + '\\n')\n"
)
PROBE = PROBE_OF % (HEAVY,)


@pytest.fixture
def run(anvil, system6, private_keys, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DTNSESS_") and k not in ("ETH_RPC_URL", "FOUNDRY_DIR")}
    env.update(HOME=str(tmp_path), DTNSESS_LOCK_DIR=str(tmp_path), DTNSESS_RPC_URL=anvil.url,
               DTNSESS_CONTRACT=system6.manager.address, DTNSESS_CHAIN_ID="31337",
               DTNSESS_PRIVATE_KEY=private_keys[1])

    def go(*args: str, ok: bool = True, heavy: tuple = HEAVY, human: bool = False) -> Any:
        """The command's JSON document, or with ``human`` its (stdout, stderr) for people."""
        p = subprocess.run([sys.executable, "-c", PROBE_OF % (heavy,), *args,
                            *([] if human else ["--json"])], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=120)
        report = json.loads(p.stderr.strip().splitlines()[-1].split("HEAVY ", 1)[1])
        assert (report["rc"] in (0, None)) == ok, (args, p.stderr)
        assert report["heavy"] == [], f"dtnsess {' '.join(args)} imported {report['heavy']}"
        return (p.stdout, p.stderr.rsplit("\nHEAVY ", 1)[0]) if human else json.loads(p.stdout)

    return go


def test_commands_never_import_web3(run, system6, user):
    fund(system6, user, 100, approve=False)
    created = run("create", "20", "--yes")  # approve + create: signing, journal, receipts
    sid = str(created["session_id"])
    run("stats", sid)
    assert any(int(s["session_id"]) == int(sid) for s in run("sessions")["sessions"])
    run("balance")
    tx_hash = created["transactions"][-1]["tx_hash"]
    assert run("tx", tx_hash)["status"] == "mined"  # events decoded
    # issue 19: a write's JSON result needs no rich (its consoles are made when first used)
    run("close", sid, "--yes", heavy=HEAVY + ("rich",))
    other = str(run("create", "20", "--yes")["session_id"])
    assert run("request", "hello", "--session", other, "--yes")["request_id"].startswith("0x")
    assert run("request", "again", "--yes", heavy=HEAVY + ("rich",))["request_id"]
    run("requests")
    run("cleanup")
    # a revert decoded from the ABI (a stranger's session): an error, still nothing heavy
    err = run("close", "999999", "--yes", ok=False)
    assert err["error"]


def test_image_ipfs_and_model_commands_never_import_web3(run, system6, user):
    """Images, IPFS answers, models and doctor's model check: the chain layer and the stdlib."""
    from dtnsess_cli.chain.abi import encode
    from dtnsess_cli.devnet.localdtn import make_png, respond

    fund(system6, user, 100, approve=False)
    run("create", "20", "--yes")
    rid = run("request", "a cat", "--image", "64x48", "--yes")["request_id"]
    respond(system6, bytes.fromhex(rid[2:]), worker=system6.worker, node=system6.node_id,
            payload=encode(["bytes"], [make_png(64, 48)]))
    assert run("response", rid)["kind"] == "image"
    run("models")
    run("doctor")


def test_request_and_close_import_no_lock_library_nor_cffi(run, system6, user):
    """Issue 19, item 4: filelock (27-95 ms of import, measured) gave way to
    the OS's own lock (chain/oslock.py), and keccak binds pycryptodome's C code with ctypes, not
    through cffi (whose ABI mode parses C declarations with pycparser, ~50-85 ms)."""
    light = ("filelock", "asyncio", "cffi", "pycparser")
    fund(system6, user, 100, approve=False)
    asked, closed = (str(run("create", "20", "--yes")["session_id"]) for _ in range(2))
    assert run("request", "hi", "--session", asked, "--yes", heavy=light)["request_id"]
    run("close", closed, "--yes", heavy=light)  # (one with a pending request may not close)


def test_commands_on_an_http_node_import_no_http_client_email_or_ssl(run, system6, user):
    """issue 19: JSON-RPC speaks the project's own HTTP/1.1 (chain/http11.py): http.client
    (which imports email, and ssl) cost ~55 ms of import per command; an http:// node needs
    no ssl either (https:// imports it when connecting)."""
    fund(system6, user, 100, approve=False)
    lean = HEAVY + ("http", "email", "ssl")
    sid = str(run("create", "20", "--yes", heavy=lean)["session_id"])
    run("close", sid, "--yes", heavy=lean)
    other = str(run("create", "20", "--yes", heavy=lean)["session_id"])
    assert run("request", "hello", "--session", other, "--yes", heavy=lean)["request_id"]
    run("balance", heavy=lean)
    run("stats", other, heavy=lean)


def test_human_output_of_a_write_imports_no_rich(run, system6, user):
    """issue 19: rich costs ~90 ms of import; a write's lines for people (its result, info,
    warnings, the cost line) are plain text. Only tables, progress bars and live views use it."""
    no_rich = HEAVY + ("rich", "dtnsess_cli.media")  # media: images and CIDs only
    fund(system6, user, 100, approve=False)
    out, err = run("create", "20", "--yes", heavy=no_rich, human=True)  # approve + create
    sid = out.split("session ", 1)[1].split()[0]
    assert f"session {sid} created with 20 USDT" in out and "  tx 0x" in out, out
    out, _ = run("renew", sid, "5", "--yes", heavy=no_rich, human=True)
    assert f"session {sid} renewed: balance 25 USDT" in out, out
    # a warning (yellow on a terminal; a pipe here) on the same path
    out, err = run("request", "hi", "--value", "27000", "--yes", heavy=no_rich, human=True)
    assert out.startswith("request 0x") and "  DTN fee: " in out, out
    assert "warning: " in err and "\x1b" not in err, err
    out, _ = run("close", sid, "--yes", ok=False, heavy=no_rich, human=True)  # pending request
    assert f"session {sid}" in out, out



def _on_a_terminal(args: list, env: dict, cwd) -> tuple:
    """Run PROBE with ``args`` on a pty, answering "y" to every confirmation: (the report,
    everything the terminal showed, how many questions were answered)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-c", PROBE_OF % (HEAVY + ("rich",),), *args],
                         env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen, answered = b"", 0
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child is gone and its output read
                    break
                if not chunk:
                    break
                seen += chunk
            if seen.count(b"[y/N]") > answered:
                os.write(master, b"y\n")
                answered += 1
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    shown = seen.decode("utf-8", "replace")
    return json.loads(shown.strip().splitlines()[-1].split("HEAVY ", 1)[1]), shown, answered


def test_a_write_on_a_terminal_imports_no_rich(anvil, system6, private_keys, user, tmp_path):
    """The same on a terminal (a pty): the cost and the confirmation question, a yellow
    warning, the status line while the receipt is awaited, the result; and still no rich."""
    fund(system6, user, 100, approve=False)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DTNSESS_") and k not in ("ETH_RPC_URL", "FOUNDRY_DIR", "NO_COLOR",
                                                         "FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(HOME=str(tmp_path), DTNSESS_LOCK_DIR=str(tmp_path), DTNSESS_RPC_URL=anvil.url,
               DTNSESS_CONTRACT=system6.manager.address, DTNSESS_PRIVATE_KEY=private_keys[1],
               TERM="xterm", COLUMNS="160")
    report, shown, answered = _on_a_terminal(["create", "20"], env, tmp_path)  # approve, create
    assert report == {"rc": 0, "heavy": []}, shown
    assert answered == 2 and "Send this transaction? [y/N]" in shown and "gas: ~" in shown, shown
    # the status line while the receipt is awaited, blanked out before the result
    assert re.search("create a session with 20 USDT: waiting for 0x[0-9a-f]{8}… to be mined"
                     "\r +\rsession 1 created with 20 USDT\r\n", shown), shown
    report, shown, answered = _on_a_terminal(["request", "hi", "--value", "27000"], env, tmp_path)
    assert report == {"rc": 0, "heavy": []} and answered == 1, shown
    assert "\x1b[33mwarning: --value 27000 gives the callback" in shown, shown
    assert "request 0x" in shown and "  DTN fee: " in shown, shown


def test_command_modules_build_their_options_from_bytecode():
    """issue 19: with `from __future__ import annotations` every option's annotation is a string
    that @command's inspect.signature(eval_str=True) compiles again at each start-up (~35
    commands, 10-20 ms measured); without it Python builds them from the module's bytecode."""
    from pathlib import Path

    import dtnsess_cli.cli as cli

    for path in sorted(Path(cli.__file__).parent.glob("*.py")):
        if "\n@command(" in path.read_text():
            assert "from __future__ import annotations" not in path.read_text(), path.name


# issue 19, item 4: `request` and `close` through the library alone (no CLI, whose own imports
# would hide the library's), run as a user's program would: resolve_settings, Renderer, Client.
# It reports which of the entries given (a module, or "module:Name", a name defined in a module
# that is loaded) the run made.
LIBRARY_WRITE = (
    "import json, sys\n"
    "from dtnsess_cli.config import CliOptions, resolve_settings\n"
    "from dtnsess_cli.manager import Client\n"
    "from dtnsess_cli.render import Renderer\n"
    "c = Client(resolve_settings(CliOptions(yes=True)), Renderer(json_mode=False))\n"
    "what, arg, entries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])\n"
    "res = c.close_session(int(arg)) if what == 'close' else c.make_ai_request(arg)\n"
    "def made(entry):\n"
    "    module, _, name = entry.partition(':')\n"
    "    m = sys.modules.get(module)\n"
    "    return m is not None and (not name or name in vars(m))\n"
    "sys.stdout.write(json.dumps({'sent': res.tx_hashes, 'made': [e for e in entries if made(e)]}))\n"
)

# what the library's request and close no longer import or create, each with what it cost
# (marginal import times measured in fresh interpreters; dataclasses ~1.2-1.7 ms each)
NOT_ON_THE_WRITE_PATH = (
    "dtnsess_cli.chain.pipeline",  # batches only: 532 lines and three dataclasses, ~5 ms
    # the results of reads and checks: six dataclasses, ~7 ms (views names them on first use)
    *(f"dtnsess_cli.manager.views:{n}" for n in ("ConfigView", "Balances", "RequestView",
                                                  "ResponseView", "TxView", "Check")),
    "dtnsess_cli.chain.send:Deploy",  # a contract creation to send (frozen dataclass): ~1.5 ms
    "encodings.idna",  # a str host in getaddrinfo (with stringprep, unicodedata): ~5 ms
    "random",  # the jitter of read retries, drawn only when a read is retried: ~2 ms
    "pathlib",  # the write path's files are str paths (os.path): ~2.5 ms
    "decimal",  # amounts are parsed with integer arithmetic on their digits: ~2 ms
    "hmac",  # keystores only (the MAC check): ~0.4 ms
)


def test_request_and_close_through_the_library_import_only_what_they_use(
        anvil, system6, private_keys, user, tmp_path):
    from helpers import create

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DTNSESS_") and k not in ("ETH_RPC_URL", "FOUNDRY_DIR")}
    env.update(HOME=str(tmp_path), DTNSESS_LOCK_DIR=str(tmp_path), DTNSESS_RPC_URL=anvil.url,
               DTNSESS_CONTRACT=system6.manager.address, DTNSESS_PRIVATE_KEY=private_keys[1])
    fund(system6, user, 100)
    closed, _ = create(system6, user, 20)
    create(system6, user, 20)  # the request's session
    for args in (("close", str(closed)), ("request", "hi")):
        p = subprocess.run([sys.executable, "-c", LIBRARY_WRITE, *args,
                            json.dumps(NOT_ON_THE_WRITE_PATH)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        report = json.loads(p.stdout)
        assert len(report["sent"]) == 1, report["sent"]
        assert report["made"] == [], f"{args[0]} through the library made {report['made']}"


def test_hot_commands_import_no_typing_coincurve_hashlib_dataclasses_nor_socket(run, system6,
                                                                                user):
    """issue 19, third round: typing (~7 ms: annotations are never evaluated), coincurve's
    package (~15 ms: signing binds its libsecp256k1 with ctypes) and hashlib (OpenSSL, ~4 ms: the
    state dir's URL keys are keccak) are not loaded by the hot commands, reads or writes.
    Fourth round: nor dataclasses with inspect (~19 ms: the package's classes are records) nor
    socket (~5 ms: the JSON-RPC client connects with _socket)."""
    lean = HEAVY + ("typing", "coincurve", "hashlib", "_hashlib", "dataclasses", "inspect",
                    "socket")
    fund(system6, user, 100, approve=False)
    sid = str(run("create", "20", "--yes", heavy=lean)["session_id"])  # approve + create
    other = str(run("create", "20", "--yes", heavy=lean)["session_id"])
    assert run("request", "hi", "--session", sid, "--yes", heavy=lean)["request_id"]
    assert run("renew", other, "5", "--yes", heavy=lean)["transactions"]
    run("close", other, "--yes", heavy=lean)
    for args in (("stats", sid), ("balance",), ("sessions",), ("requests",)):
        run(*args, heavy=lean)


def test_request_and_close_start_without_typer(run, system6, user):
    """issue 19, item 4: `import typer` (~0.1 s) and building the app and the command modules
    cost more than a close's own work: the hot commands take the fast path (cli/fastpath.py),
    which imports none of them, nor Click (typer vendors it), nor rich."""
    others = tuple(f"dtnsess_cli.cli.{m}" for m in ("root", "sessions", "requests", "watch",
                                                    "pool", "maintenance", "devnet", "keeper"))
    typerless = HEAVY + ("typer", "click", "rich") + others
    fund(system6, user, 100, approve=False)
    sid = str(run("create", "20", "--yes", heavy=typerless)["session_id"])
    other = str(run("create", "20", "--yes", heavy=typerless)["session_id"])
    assert run("request", "hi", "--session", sid, "--yes", heavy=typerless)["request_id"]
    out, _ = run("request", "again", "--session", other, "--yes", heavy=typerless, human=True)
    assert out.startswith("request 0x"), out
    out, _ = run("close", other, "--yes", ok=False, heavy=typerless, human=True)  # pending
    assert f"session {other}" in out, out
    assert run("close", other, "--dry-run", ok=False, heavy=typerless)["error"]
    err = run("close", "--all", sid, ok=False, heavy=typerless)  # a usage error from the body
    assert err["name"] == "USAGE" and err["hint"] == "see 'dtnsess close --help'"
    # the reads with --json build no rich table either (a script's `stats --json`)
    for args in (("stats", sid), ("balance",), ("sessions",), ("requests",)):
        run(*args, heavy=typerless)
    # what the fast path declines goes to Typer, as before
    out, err = run("close", "--help", heavy=HEAVY, human=True)
    assert out.startswith("Usage: dtnsess close"), out
