"""A DTN node for the devnet: answers the requests of a LocalDtnRouter like DTN's own node software.

Started by ``dtnsess devnet up`` as ``python -m dtnsess_cli.devnet.responder --state FILE``. It polls
``eth_getLogs`` for ``RequestCreated`` from the router (no node-side filters), reads each request
with ``getRequest``, decodes the prompt and answers with ``respondToRequest`` from the node's
worker account (an unlocked Anvil account).

It follows what DTN's node software does (DTN-FACTS, "What DTN's own node software does"), so
the devnet shows users the costs and outcomes of the real network:
- the call is decoded with the input types of the request's model's API (``string[]`` for the
  text models, ``string[], uint64, uint64`` for the image model); an undecodable one is a FAILURE;
- sizes as the node reports them: request size = call bytes + 1 (0 when that fee would pass the
  per-response cap), response size 0; a failure is charged at the router's failure rate;
- ``{0}``, ``{1}``, ... in a prompt without ``extraParams``: FAILURE "P0011: Call not parsable",
  charged 0;
- a DIRECT request for a ``bytes`` output (an image without IPFS) is never answered: the node
  cannot encode it, and the request stays pending;
- an image is 1024x1024 whatever size the call asks for;
- requests priced below the node's floor (``--min-fee-per-byte``) are skipped without a word.

A text answer is a deterministic text built from the prompt, or, with ``--command``, the stdout
of a shell command that gets the prompt on stdin (a FAILURE answer carrying its stderr when it
exits non-zero or runs past ``--timeout``); an image answer is a small generated PNG. IPFS
requests get the output stored in a content-addressed directory and ``abi.encode(string CID)``
(CIDv1, raw, sha2-256), and the responder serves that directory as an IPFS HTTP gateway on
127.0.0.1 (``GET /ipfs/<cid>``). Requests it cannot answer (not eligible, aggregation other than
ANY, closed session: the transaction would revert) are simulated first and skipped with the
reason in the log. Restarts are safe: a request already completed, or already answered by this
node, is skipped. One log line per request on stdout (the devnet points it at its log file).

Dev-only: it sends from an unlocked node account and never sees a user's key.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..record import record
from . import localdtn

DEFAULT_TIMEOUT = 30.0
DEFAULT_POLL = 0.25
# Give up when the chain has not answered for this long (the devnet was stopped under us).
RPC_GIVE_UP_SECONDS = 20.0
MAX_MESSAGE = 500  # characters of a command's stderr carried in a FAILURE answer
LOG_CHUNK = 5_000  # blocks per eth_getLogs call
MAX_ATTEMPTS = 3  # transient failures (RPC errors) before a request is given up
READY_MARK = "responder ready"
# NOTE: DTN's image processor makes 1024x1024 whatever the call asks for
IMAGE_SIDE = 1024
UNPARSABLE = "P0011: Call not parsable"

log = logging.getLogger("dtnsess.responder")


def default_answer(prompt: str) -> str:
    """The devnet's deterministic answer to ``prompt``."""
    words = len(prompt.split())
    return f"[devnet answer] You asked: {prompt} ({words} word{'s' if words != 1 else ''})"


@record
class Answer:
    """What the node answers: a success ``text`` (or image ``data``) or a ``failure`` message."""

    text: Optional[str] = None
    failure: Optional[str] = None
    data: Optional[bytes] = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _trim(text: str, limit: int = MAX_MESSAGE) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop a command and everything it started (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=1.0)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(command: str, prompt: str, timeout: float,
                should_stop: Callable[[], bool] = lambda: False) -> Answer:
    """Run ``command`` in a shell with ``prompt`` on stdin; its stdout is the answer.

    A non-zero exit or a run longer than ``timeout`` seconds (the command and its children are
    then killed) gives a failure carrying the trimmed stderr.
    """
    proc = subprocess.Popen(
        command, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    data: Optional[bytes] = prompt.encode()
    while True:
        # NOTE: short slices so that SIGTERM (should_stop) is honoured while a command runs;
        # retrying communicate() after TimeoutExpired loses no output.
        try:
            out, err = proc.communicate(data, timeout=max(0.01, min(0.2, deadline - time.monotonic())))
            break
        except subprocess.TimeoutExpired:
            data = None
            if should_stop() or time.monotonic() >= deadline:
                _kill_group(proc)
                try:
                    out, err = proc.communicate(timeout=2.0)
                except subprocess.TimeoutExpired:  # a grandchild holds the pipes
                    out, err = b"", b""
                stderr = _trim(err.decode(errors="replace"))
                reason = "responder stopping" if should_stop() else f"command timed out after {timeout:g}s"
                return Answer(failure=f"{reason}: {stderr}" if stderr else reason)
    if proc.returncode != 0:
        stderr = _trim(err.decode(errors="replace"))
        head = f"command exited with code {proc.returncode}"
        return Answer(failure=f"{head}: {stderr}" if stderr else head)
    return Answer(text=out.decode(errors="replace").rstrip("\n"))


class Responder:
    """Polls a router for new requests and answers them as one registered node."""

    def __init__(self, w3, router, worker: str, node_id: bytes, *, from_block: int,
                 command: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                 poll: float = DEFAULT_POLL, ipfs: Optional["IpfsStore"] = None,
                 min_fee_per_byte: int = 0) -> None:
        from eth_utils import keccak

        from ..artifacts import all_abis
        from .reverts import ErrorDecoder

        self.w3 = w3
        self.router = router
        self.worker = worker
        self.node_id = node_id
        self.next_block = from_block
        self.command = command
        self.timeout = timeout
        self.poll = poll
        self.ipfs = ipfs
        self.min_fee_per_byte = min_fee_per_byte
        self.stopping = False
        self.topic = "0x" + keccak(text="RequestCreated(bytes32,uint256,address)").hex()
        self.errors = ErrorDecoder(all_abis().values())
        # (request id, block, log index) of every RequestCreated handled: answered or skipped.
        self.handled: set[tuple[bytes, int, int]] = set()
        self.attempts: dict[tuple[bytes, int, int], int] = {}
        self.retry: list[tuple[tuple[bytes, int, int], Any]] = []
        self.answered = 0

    # -- the loop ------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        failing_since: Optional[float] = None
        while not self.stopping:
            try:
                self.poll_once()
                failing_since = None
            except Exception as exc:  # noqa: BLE001 - a dev node must survive RPC hiccups
                if not _is_connection_error(exc):
                    log.exception("poll failed: %s", exc)
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > RPC_GIVE_UP_SECONDS:
                    log.error("chain unreachable for %.0fs (%s); exiting", now - failing_since, exc)
                    return 1
            self._sleep(self.poll)
        log.info("responder stopping (answered %d request%s)", self.answered,
                 "" if self.answered == 1 else "s")
        return 0

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def poll_once(self) -> int:
        """Handle the RequestCreated logs of new blocks (and retries); return how many."""
        count = 0
        retry, self.retry = self.retry, []
        for key, entry in retry:
            count += self._handle(key, entry)
        latest = self.w3.eth.block_number
        while self.next_block <= latest and not self.stopping:
            to_block = min(latest, self.next_block + LOG_CHUNK - 1)
            logs = self.w3.eth.get_logs({
                "address": self.router.address,
                "fromBlock": self.next_block,
                "toBlock": to_block,
                "topics": [self.topic],
            })
            for entry in sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"])):
                key = (bytes(entry["topics"][1]), entry["blockNumber"], entry["logIndex"])
                if key not in self.handled:
                    count += self._handle(key, entry)
            self.next_block = to_block + 1
        return count

    # -- one request -----------------------------------------------------------------------
    def _handle(self, key: tuple[bytes, int, int], entry: Any) -> int:
        request_id = key[0]
        rid = "0x" + request_id.hex()
        session = int.from_bytes(bytes(entry["topics"][2]), "big")
        try:
            outcome = self.answer_request(request_id)
        except Exception as exc:  # noqa: BLE001 - retried, then given up; never crash the node
            attempts = self.attempts.get(key, 0) + 1
            self.attempts[key] = attempts
            if attempts < MAX_ATTEMPTS and not self.stopping:
                log.warning("request %s dtn session %d: error (%s), will retry", rid, session, exc)
                self.retry.append((key, entry))
                return 0
            log.error("request %s dtn session %d: gave up after %d attempts: %s",
                      rid, session, attempts, exc)
            outcome = "failed"
        self.handled.add(key)
        self.attempts.pop(key, None)
        log.info("request %s dtn session %d: %s", rid, session, outcome)
        return 1

    def answer_request(self, request_id: bytes) -> str:
        """Answer one request if this node can; return a one-line outcome for the log."""
        stored = self.router.functions.getRequest(request_id).call()
        if stored[5] == 0:  # createdAt
            return "skipped: request not found"
        if stored[6]:  # completed
            return "skipped: already completed"
        if self.router.functions.nodeResponded(request_id, self.node_id).call():
            return "skipped: this node already responded (request id reused in the same second)"
        dtn_request = stored[8]  # call, extraParams, calltype, feePerByteReq, feePerByteRes, cap
        if int(dtn_request[3]) < self.min_fee_per_byte:
            return (f"skipped: priced below this node's floor (feePerByteReq {int(dtn_request[3])} "
                    f"< {self.min_fee_per_byte}); it stays pending")
        # Simulate with a placeholder first: a request this node cannot answer is skipped
        # before a command runs for it.
        probe = localdtn.respond_call(self.router, request_id, node=self.node_id, text="",
                                      stored=stored)
        reason = self._revert_reason(lambda: probe.call({"from": self.worker}))
        if reason is not None:
            return f"skipped: would revert ({reason})"

        prompt, answer = self._answer(localdtn.spec_of_id(bytes(stored[1])), dtn_request)
        if answer.data is not None and int(dtn_request[2]) == localdtn.CALL_DIRECT:
            # NOTE: DTN's node gets an image as base64 text, which its encoder refuses for a
            # bytes output: it never answers
            return ("skipped: a DIRECT request for a bytes output cannot be encoded (DTN's node "
                    "answers images over IPFS only); it stays pending")
        payload = None
        if answer.ok:
            payload, answer = self._encode(answer, int(dtn_request[2]))
        sizes = (0, 0) if answer.failure == UNPARSABLE else node_sizes(dtn_request)
        fn = localdtn.respond_call(self.router, request_id, node=self.node_id,
                                   failure=answer.failure, payload=payload, stored=stored,
                                   sizes=sizes)
        gas_box: list[int] = []
        reason = self._revert_reason(lambda: gas_box.append(fn.estimate_gas({"from": self.worker})))
        if reason is not None:
            return f"skipped: would revert ({reason})"
        # NOTE: the router does not check that gas is left for the callback (like the deployed
        # one), so the estimate alone may starve it: add the callback's full allowance.
        gas = localdtn.respond_gas(self.w3, gas_box[0], int(stored[4]))
        receipt = localdtn.transact(self.w3, fn, self.worker, gas=gas)
        self.answered += 1
        what = "answered" if answer.ok else f"answered FAILURE ({_trim(answer.failure, 120)})"
        size = len(payload) if answer.ok else 0
        return (f"{what}; prompt {_short(prompt)}; response {size} bytes; reported sizes "
                f"{sizes[0]}/{sizes[1]}; tx 0x{bytes(receipt['transactionHash']).hex()} "
                f"gas {receipt['gasUsed']}")

    def _answer(self, spec: Any, dtn_request: Any) -> tuple:
        """(prompt, Answer) for a request: its call decoded with its model's input types
        (undecodable: a FAILURE answer, as a node's decoding error would be)."""
        from ..manager.base import find_placeholder

        try:
            args = localdtn.decode_call(spec, bytes(dtn_request[0]))
        except ValueError as exc:
            return "", Answer(failure=str(exc)[:MAX_MESSAGE])
        prompt = "\n".join(args[0])
        if not bytes(dtn_request[1]) and find_placeholder(prompt) is not None:
            return prompt, Answer(failure=UNPARSABLE)
        if spec.kind == "image":
            return prompt, Answer(data=localdtn.make_png(IMAGE_SIDE, IMAGE_SIDE, prompt.encode()))
        if self.command:
            return prompt, run_command(self.command, prompt, self.timeout, lambda: self.stopping)
        return prompt, Answer(text=default_answer(prompt))

    def _encode(self, answer: Answer, calltype: int) -> tuple:
        """(response bytes, answer): DIRECT abi-encodes the output as a string; IPFS stores it
        and abi-encodes its CID."""
        if calltype == localdtn.CALL_IPFS:
            if self.ipfs is None:
                return None, Answer(failure="this node has no IPFS store")
            output = answer.data if answer.data is not None else (answer.text or "").encode()
            return localdtn.encode_answer(self.ipfs.put(output)), answer
        return localdtn.encode_answer(answer.text or ""), answer

    def _revert_reason(self, thunk: Callable[[], Any]) -> Optional[str]:
        """None when ``thunk`` (a call or an estimate) succeeds, else the decoded revert reason."""
        from .reverts import revert_data_from_exception

        try:
            thunk()
        except Exception as exc:  # noqa: BLE001 - non-reverts are re-raised below
            data = revert_data_from_exception(exc)
            if data is None:
                raise
            return self.errors.decode(data).reason
        return None


def node_sizes(dtn_request: Any) -> tuple:
    """(requestSize, responseSize) as DTN's node reports them for a stored DtnRequest."""
    from ..manager.base import node_request_size

    return node_request_size(len(bytes(dtn_request[0])), int(dtn_request[3]),
                             int(dtn_request[5])), 0


class IpfsStore:
    """A content-addressed directory: one file per CID (CIDv1, raw codec, sha2-256)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        from ..media import cid_of

        cid = cid_of(data)
        path = self.root / cid
        if not path.exists():
            tmp = path.with_name(f".{cid}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return cid

    def get(self, cid: str) -> Optional[bytes]:
        from ..media import parse_cid

        # NOTE: only a well-formed CID names a file here (no paths from the URL)
        if parse_cid(cid) is None or not cid.isalnum():
            return None
        try:
            return (self.root / cid).read_bytes()
        except OSError:
            return None


class Gateway:
    """An IPFS HTTP gateway for an IpfsStore on 127.0.0.1 (``GET /ipfs/<cid>``), in a thread."""

    def __init__(self, store: IpfsStore, port: int = 0, host: str = "127.0.0.1") -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                data = store.get(parts[1]) if len(parts) == 2 and parts[0] == "ipfs" else None
                if data is None:
                    self.send_error(404, "not found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.info("gateway: %s", fmt % args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "Gateway":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return json.dumps(flat if len(flat) <= limit else flat[: limit - 3] + "...")


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError, TimeoutError))


# -- entry point -------------------------------------------------------------------------------

def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dtnsess_cli.devnet.responder", description=__doc__.split("\n")[0])
    p.add_argument("--state", required=True, help="the devnet state file (.dtnsess-devnet.json)")
    p.add_argument("--command", default=None,
                   help="shell command: prompt on stdin, answer on stdout (default: built-in text)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds a --command may run (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--min-fee-per-byte", type=int, default=None,
                   help="skip requests offering less per request byte, in token units, as a "
                        "node's price floor does (default: the state file's, else 0)")
    p.add_argument("--poll", type=float, default=DEFAULT_POLL, help="seconds between polls")
    p.add_argument("--from-block", type=int, default=None,
                   help="first block to scan (default: the state file's start_block)")
    p.add_argument("--ipfs-dir", default=None,
                   help="content-addressed store for IPFS answers (default: the state file's)")
    p.add_argument("--gateway-port", type=int, default=None,
                   help="serve the store on 127.0.0.1:PORT (default: the port of the state "
                        "file's ipfs_gateway; 0 picks one)")
    return p.parse_args(argv)


class _Redacting(logging.Formatter):
    """The log format, with every URL (and the run's RPC URL secrets) redacted."""

    def __init__(self, inner: Optional[logging.Formatter]) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        from ..errors import scrub

        return scrub(self.inner.format(record))


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    for handler in logging.getLogger().handlers:  # URLs in messages and tracebacks: redacted
        handler.setFormatter(_Redacting(handler.formatter))
    responder: Optional[Responder] = None
    stop_early = {"flag": False}

    def on_signal(signum: int, _frame: Any) -> None:
        stop_early["flag"] = True
        if responder is not None:
            responder.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        state = json.loads(Path(args.state).read_text())
    except (OSError, ValueError) as exc:
        log.error("cannot read state file %s: %s", args.state, exc)
        return 2

    from web3 import Web3

    from ..errors import redact_url, remember_url

    remember_url(state["rpc_url"])
    shown_url = redact_url(state["rpc_url"])
    w3 = Web3(Web3.HTTPProvider(state["rpc_url"], request_kwargs={"timeout": 30}))
    router = localdtn.contract(w3, "LocalDtnRouter", Web3.to_checksum_address(state["router"]))
    worker = Web3.to_checksum_address(state["worker"])
    node = bytes.fromhex(state["node_id"].removeprefix("0x"))
    try:
        start = args.from_block if args.from_block is not None else state.get("start_block")
        if start is None:
            start = w3.eth.block_number
        if not w3.eth.get_code(router.address):
            log.error("no router contract at %s on %s", router.address, shown_url)
            return 1
    except Exception as exc:  # noqa: BLE001
        log.error("chain at %s unreachable: %s", shown_url, exc)
        return 1
    store = gateway = None
    ipfs_dir = args.ipfs_dir or state.get("ipfs_dir")
    if ipfs_dir:
        store = IpfsStore(Path(ipfs_dir))
        port = args.gateway_port
        if port is None and state.get("ipfs_gateway"):
            from urllib.parse import urlsplit

            port = urlsplit(state["ipfs_gateway"]).port
        try:
            gateway = Gateway(store, port or 0).start()
        except OSError as exc:
            log.error("cannot serve the IPFS gateway on 127.0.0.1:%s: %s", port, exc)
            return 1
    responder = Responder(w3, router, worker, node, from_block=int(start), command=args.command,
                          timeout=args.timeout, poll=args.poll, ipfs=store,
                          min_fee_per_byte=int(args.min_fee_per_byte
                                               if args.min_fee_per_byte is not None
                                               else state.get("node_min_fee_per_byte") or 0))
    if stop_early["flag"]:
        return 0
    log.info("%s: node %s (worker %s) on router %s at %s, from block %d, answering with %s%s",
             READY_MARK, state.get("node", "0x" + node.hex()), worker, router.address,
             shown_url, start,
             f"command {args.command!r} (timeout {args.timeout:g}s)" if args.command else "built-in text",
             f"; IPFS gateway {gateway.url}" if gateway else "")
    sys.stdout.flush()
    try:
        return responder.run()
    finally:
        if gateway is not None:
            gateway.stop()


if __name__ == "__main__":
    sys.exit(main())
