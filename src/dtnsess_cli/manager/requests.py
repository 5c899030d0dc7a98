"""AI requests: one (``make_ai_request``) or many pipelined over sessions
(``request_batch``), their status and answers, waiting for them, and settling answered ones.
"""

from __future__ import annotations

import time

from ..chain.clock import sleep
from ..errors import (
    DtnsessError,
    ExitCode,
    InputError,
    InsufficientFundsError,
    RevertError,
    RpcError,
    TxPendingError,
    WaitTimeoutError,
)
from ..units import Amount, format_amount, parse_eth_value
from .base import (
    REQUEST_STATUS,
    ANSWERED,
    DEFAULT_CALLBACK_GAS_WEI,
    MAX_PROMPT_BYTES,
    PROMPT_GAS_PER_BYTE,
    AGGREGATION_ANY,
    CALLTYPE_DIRECT,
    CALLTYPE_IPFS,
    parse_request_id,
    namespace_routing_id,
    node_routing_id,
    node_registered,
    namespace_nodes,
    NAMESPACE_NODES_SELECTOR,
    NODES_SELECTOR,
    SYSTEM_TRUST,
    system_trust_id,
    system_trust_routing,
    decode_answer,
    _hex,
    _topic_bytes,
    completion_topics,
    LOG_CHUNK,
    MAX_LOG_BLOCKS,
    _writes,
    check_prompt_placeholders,
    UNANSWERED_CAUSES,
    node_fee,
    prompt_call_len,
)
from .views import SessionView, WriteResult
from .writes import Unfolded

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional, Sequence

    from .readviews import RequestView, ResponseView

# a request unanswered this long was likely skipped by the node (it says nothing): say why it may be
LONG_PENDING_SECONDS = 300
# the manager's events of a request's life, as `watch` follows them
WATCH_EVENTS = ("AIRequestSubmitted", "AIRequestCompleted", "AIResponseReceived",
                "AIRequestFailed")


def is_image_model(name: str) -> bool:
    from ..models import spec_of

    spec = spec_of(name)
    return spec is not None and spec.kind == "image"


def media_call(prompt: Optional[str], size: Optional[tuple], ipfs: Optional[bool],
               model: Optional[str], default_model: str) -> tuple:
    """(call, call type, model) of an image and/or IPFS request: an image request is
    abi.encode(string[] lines, uint64 width, uint64 height) to an image model, always with call
    type IPFS (DTN's node cannot encode a direct ``bytes`` output: such a request is never
    answered); ``ipfs`` sends a text model's call with call type IPFS. A known model of the
    other kind is refused (its node could not decode the call)."""
    from ..chain.abi import encode
    from ..media import MAX_SIDE, MIN_SIDE
    from ..models import DEFAULT_IMAGE_MODEL, spec_of

    name = model or (DEFAULT_IMAGE_MODEL if size else default_model)
    spec = spec_of(name)
    if spec is not None and (spec.kind == "image") != bool(size):
        raise InputError("--model" if model else "model", name,
                         "an image model: give --image WxH" if spec.kind == "image"
                         else f"a text model: --image needs an image model such as "
                              f"{DEFAULT_IMAGE_MODEL}")
    if size is not None and (len(size) != 2 or not all(
            isinstance(v, int) and MIN_SIDE <= v <= MAX_SIDE for v in size)):
        raise InputError("--image", str(size), f"width and height must be {MIN_SIDE}..{MAX_SIDE}")
    if size is not None and ipfs is False:
        raise InputError("call type", "DIRECT", DIRECT_IMAGE_REFUSAL)
    check_prompt(prompt)
    lines = [prompt]  # NOTE: one line, as the prompt functions of the contract send it
    call = (encode(["string[]", "uint64", "uint64"], [lines, size[0], size[1]]) if size
            else encode(["string[]"], [lines]))
    return call, CALLTYPE_IPFS if (ipfs or size) else CALLTYPE_DIRECT, name


# NOTE: DTN-FACTS: the node's AI server returns an image as base64 text, which its encoder
# refuses for a `bytes` output; the request stays pending until the request timeout
DIRECT_IMAGE_REFUSAL = ("DTN's node cannot answer an image request with call type DIRECT (it "
                        "cannot encode a bytes output): the request would stay pending until "
                        "the request timeout; image requests go over IPFS")


def _call_lines(call: bytes, model: str) -> list:
    """The prompt lines of an encoded call, decoded with its model's input types as the node
    does (none when it does not decode: the node fails it, that is not ours to refuse)."""
    from ..chain.abi import decode
    from ..models import spec_or_text

    try:
        args = decode(list(spec_or_text(model).inputs), bytes(call))
    except Exception:  # noqa: BLE001 - the ABI decoder raises several kinds
        return []
    lines = args[0] if args else []
    return [x for x in lines if isinstance(x, str)] if isinstance(lines, (list, tuple)) else []


def check_prompt(prompt: Optional[str], what: str = "prompt") -> None:
    """Refuse, before anything is sent, a prompt DTN's node cannot answer: empty, or with
    ``{N}`` placeholders."""
    if not prompt or not prompt.strip():
        raise InputError(what, prompt or "", "empty")
    check_prompt_placeholders(prompt, what)


def set_content(view: ResponseView, kind: str, value, *, source: Optional[dict] = None) -> None:
    """Fill ``view``'s typed fields from a decoded answer (``decode_answer``), or, with
    ``source`` (gateway, verified), from the content a CID named."""
    from ..media import sniff_image

    if source is None:
        view.kind = kind
    if kind == "cid":
        view.cid, view.ipfs_url = value, f"ipfs://{value}"
        return
    if kind == "text":
        data = value.encode("utf-8")
        view.content = {"type": "text", "size": len(data)}
        if source is None:
            view.answer = value
        else:
            view.content["text"] = value
    elif kind == "image":
        data = bytes(value)
        img = sniff_image(data)
        view.content = {"type": "image", "format": img.type, "mime": img.mime,
                        "size": img.size, "width": img.width, "height": img.height}
    else:  # bytes, raw
        data = bytes(value)
        view.content = {"type": "bytes", "size": len(data)}
    if source is not None:
        view.content.update(source)
    view._data = data


class Requests:
    """Requests, answers, batches and settling."""

    def registered_models(self) -> list:
        """The models the chain has registered, from the router's model manager: dicts with
        ``name``, ``api``, ``specs`` and ``kind`` (image when the output is bytes), in
        registration order. Raises a DtnsessError when the router has no such views (3 round
        trips after the connection)."""
        from ..errors import NoContractError
        from .base import contract_at

        router = self.router.address
        try:
            (addr,) = self._calls([contract_at(router, "models").call("modelManager")],
                                  "modelManager()")
        except (RevertError, RpcError):
            # NOTE: a revert, or "0x" that does not decode, is the router lacking the view, not
            # the node failing (this read of its code raises if the node is the trouble)
            self._raw("eth_getCode", [router, "latest"], "code lookup")
            raise NoContractError(router, "this DTN router has no model registry this client "
                                  "can read (modelManager(), getModelIds(), getModelApi(id), as "
                                  "the local DTN has)") from None
        mm = contract_at(addr, "models")
        (ids,) = self._calls([mm.call("getModelIds")], "getModelIds()")
        rows = self._calls([mm.call("getModelApi", bytes(i)) for i in ids], "getModelApi")
        out = []
        for row in rows:
            name, api, specs = row[0] if len(row) == 1 else row
            out.append({"name": name, "api": api, "specs": specs,
                        "kind": "image" if specs.replace(" ", "").endswith("->bytes") else "text"})
        return out

    def request_info(self, request_id: bytes) -> RequestView:
        from .readviews import RequestView

        ((sid, user, created, status),) = self._calls(
            [self._mgr.call("requests", request_id)], "requests")
        return RequestView(_hex(request_id), int(sid), user, int(created),
                           REQUEST_STATUS.get(int(status), str(status)))

    def request_infos(self, request_ids: Sequence[bytes]) -> list:
        """``requests(id)`` of many ids in one round trip (a JSON-RPC batch), in order."""
        from .readviews import RequestView

        ids = [bytes(i) for i in request_ids]
        if not ids:
            return []
        m = self._mgr
        rows = self._calls([m.call("requests", rid) for rid in ids], "requests")
        return [RequestView(_hex(rid), int(r[0]), r[1], int(r[2]),
                            REQUEST_STATUS.get(int(r[3]), str(r[3]))) for rid, r in zip(ids, rows)]

    def requests(self, user: Optional[str] = None, pending_only: bool = False,
                 limit: int = 200) -> list:
        """The user's newest ``limit`` requests, oldest first (2-3 round trips for any count)."""
        user = self.address_arg(user, "user address") if user else self.address
        m = self._mgr
        ((ids, total),) = self._calls([m.call("getUserRequests", user, 0, limit)],
                                      "getUserRequests")
        if int(total) > limit:  # only the newest `limit`
            ((ids, _),) = self._calls([m.call("getUserRequests", user, int(total) - limit,
                                                                    limit)], "getUserRequests")
        out = self.request_infos([bytes(i) for i in ids])
        self._mark_answered(out)
        if pending_only:
            out = [r for r in out if r.status in ("pending", ANSWERED)]
        return out

    def _mark_answered(self, views: Sequence[RequestView]) -> None:
        """Pending requests the router has answered become ANSWERED (one round trip)."""
        pend = [v for v in views if v.status == "pending"]
        answered = self._answered([bytes.fromhex(v.request_id[2:]) for v in pend])
        for v in pend:
            if bytes.fromhex(v.request_id[2:]) in answered:
                v.status = ANSWERED

    def _answered(self, ids: Sequence[bytes]) -> dict:
        """{id: "succeeded" | "failed"} for those ``ids`` the router has answered: fetchResponse
        does not revert (it reverts while a request is unanswered). One round trip."""
        from ..errors import RevertError

        ids = [bytes(i) for i in ids]
        if not ids:
            return {}
        rows = self._batch([self.router.call("fetchResponse", i) for i in ids], "fetchResponse")
        out = {}
        for rid, (ok, v) in zip(ids, rows):
            if not ok and not isinstance(v, RevertError):
                raise v  # node trouble, not "unanswered"
            if ok and int(v[0]) in (1, 2):
                out[rid] = "succeeded" if int(v[0]) == 1 else "failed"
        return out

    def response(self, request_id: Any) -> ResponseView:
        """The manager's record and the router's answer of a request, both read at one block
        (at two blocks, an answer mined in between looked like a callback that did not run)."""
        from .readviews import RequestView, ResponseView

        rid = parse_request_id(request_id) if isinstance(request_id, str) else bytes(request_id)
        (latest,) = self._calls([("eth_getBlockByNumber", ["latest", False])], "latest block")
        head, now = latest["number"], int(latest["timestamp"], 16)
        m = self._mgr
        (ok, req), (answered, resp) = self._batch(
            [m.call("requests", rid), self.router.call("fetchResponse", rid)],
            ["requests", "fetchResponse"], block=head)
        if not ok:
            raise req
        sid, user, created, status = req
        info = RequestView(_hex(rid), int(sid), user, int(created),
                           REQUEST_STATUS.get(int(status), str(status)))
        if info.status == "none":
            raise InputError("request id", _hex(rid), "unknown to this session manager")
        if not answered:
            if not isinstance(resp, RevertError):
                raise resp
            # "Request not completed" while pending (decoded by selector: Error(string))
            waited = now - info.created_at
            note = (f"pending for {waited // 60} minutes: {UNANSWERED_CAUSES}"
                    if waited >= LONG_PENDING_SECONDS else None)
            return ResponseView(_hex(rid), "pending", info.status, "", None,
                                session_id=info.session_id, user=info.user,
                                created_at=info.created_at, note=note)
        status, message, data = resp
        # NOTE: NA (0) on a completed request is a node's "no answer": the manager records it
        # as failed (the router calls the failure callback)
        st = {0: "failed", 1: "succeeded", 2: "failed"}.get(int(status), "unknown")
        note = None
        if info.status == "pending" and st in ("succeeded", "failed"):
            note = (f"answered, but the manager's callback failed: run `dtnsess settle "
                    f"{_hex(rid)}` to record it")
        view = ResponseView(_hex(rid), st, info.status, message, None,
                            session_id=info.session_id, user=info.user,
                            created_at=info.created_at, note=note)
        if st == "succeeded":
            set_content(view, *decode_answer(data))
        if view.answer is None and data:
            view.response_hex = _hex(data)
        return view

    def fetch_ipfs(self, view: ResponseView, gateway: Optional[str] = None) -> bool:
        """Fetch the content of an IPFS answer (``view.kind == "cid"``) through ``gateway``
        (default: the configured DTNSESS_IPFS_GATEWAY, or the devnet's) into ``view.content``;
        False when there is no gateway. Bytes that do not hash to a raw/sha2-256 CID raise
        GatewayError (nothing is taken from a gateway that lies)."""
        from ..errors import redact_url
        from ..media import fetch_cid, parse_cid
        from .base import classify_content

        gateway = gateway or self.settings.ipfs_gateway
        cid = parse_cid(view.cid or "")
        if not gateway or cid is None:
            return False
        data, verified = fetch_cid(gateway, cid)
        kind, value = classify_content(data)
        set_content(view, kind, value, source={"gateway": redact_url(gateway),
                                               "verified": verified})
        return True

    def wait_for_answer(self, request_id: Any, timeout: float, from_block: Optional[int] = None,
                        poll: float = 1.0) -> ResponseView:
        """Wait until the request is answered: look first (it may be answered already), then
        poll eth_getLogs from ``from_block`` for the manager's or the router's completion.
        Raises WaitTimeoutError after ``timeout`` seconds, reads and their retries included."""
        rid = parse_request_id(request_id) if isinstance(request_id, str) else bytes(request_id)
        deadline = time.monotonic() + timeout

        # NOTE: the request is made and paid for: node trouble while waiting (after the read
        # retries) is waited out until the deadline, never a reason to give up early
        trouble: list = []

        def tolerant(fn):
            try:
                return fn()
            except RpcError as exc:
                trouble[:] = [exc]
                return None

        with self._reads_until(deadline):
            first = tolerant(lambda: self.response(rid))
            if first is not None and first.status != "pending":
                return first
            topics = [completion_topics(), rid]
            start = from_block
            with self.ui.status(f"waiting for the answer to {_hex(rid)[:10]}…"):
                while True:
                    head = tolerant(self._block_number)
                    if start is None:
                        start = head
                    if head is not None and head >= start:
                        logs = tolerant(lambda: self._logs(
                            start, head, [self.manager.address, self.router.address], topics))
                        if logs:
                            ans = tolerant(lambda: self.response(rid))
                            if ans is not None:
                                return ans
                        elif logs is not None:
                            start = head + 1
                    if time.monotonic() >= deadline:
                        hint = (f"{UNANSWERED_CAUSES}; check later with `dtnsess response "
                                f"{_hex(rid)}`")
                        if trouble:
                            hint += f"; the node also failed while waiting: {trouble[0].reason}"
                        raise WaitTimeoutError("the answer", timeout, request_id=_hex(rid),
                                               hint=hint)
                    sleep(min(poll, max(0.05, deadline - time.monotonic())))

    def head_block(self) -> int:
        """The latest block's number."""
        return self._block_number()

    def request_events(self, start: int, end: int, session_id: Optional[int] = None,
                       user: Optional[str] = None) -> list:
        """The manager's request events in blocks ``start..end`` (``watch``), oldest first, as
        dicts: ``event`` (its name), ``request_id``, ``session_id``, ``user``, ``status``,
        ``block``, ``block_time``, ``tx_hash``, ``log_index``, and per event ``dtn_session_id``
        (submitted), ``message`` (the router's message, or the failure's error), ``answer``
        (AIRequestCompleted: the decoded text; ``response_hex`` when it is not text).

        eth_getLogs (address and topic filters) in ranges of LOG_CHUNK blocks, one round trip;
        the answers and the blocks' times in one more, only when there are events.
        AIRequestSubmitted and AIRequestCompleted index the session and the user, so the node
        filters them; AIResponseReceived and AIRequestFailed name only the request, and are
        kept when their transaction's AIRequestCompleted passed the filter (the manager emits
        them together)."""
        m = self.manager
        topic = {ev.name: "0x" + t.hex() for t, evs in m.abi.events.by_topic.items()
                 for ev in evs}
        filtered = session_id is not None or user is not None
        queries: list = [[[topic[n] for n in WATCH_EVENTS]]]
        if filtered:
            sid_t = ("0x" + int(session_id).to_bytes(32, "big").hex()
                     if session_id is not None else None)
            user_t = ("0x" + self.address_arg(user, "user address")[2:].lower().rjust(64, "0")
                      if user else None)
            queries = [[[topic["AIRequestSubmitted"], topic["AIRequestCompleted"]], None,
                        sid_t, user_t],
                       [[topic["AIResponseReceived"], topic["AIRequestFailed"]]]]
        reqs = [("eth_getLogs", [{"fromBlock": hex(a), "toBlock": hex(min(a + LOG_CHUNK - 1, end)),
                                  "address": m.address, "topics": q}])
                for a in range(start, end + 1, LOG_CHUNK) for q in queries]
        raw = [lg for part in self._values(self._batch(reqs, "eth_getLogs")) for lg in part]
        logs = sorted(m.abi.events.decode_logs(raw), key=lambda d: (d.block_number, d.log_index))
        done = {(d.tx_hash, bytes(d.args["requestId"])): d for d in logs
                if d.name == "AIRequestCompleted"}
        if filtered:
            logs = [d for d in logs if d.name in ("AIRequestSubmitted", "AIRequestCompleted")
                    or (d.tx_hash, bytes(d.args["requestId"])) in done]
        if not logs:
            return []
        blocks = sorted({d.block_number for d in logs})
        answered = list(dict.fromkeys(bytes(d.args["requestId"]) for d in done.values()))
        rows = self._batch([("eth_getBlockByNumber", [hex(b), False]) for b in blocks]
                           + [self.router.call("fetchResponse", r) for r in answered],
                           ["block lookup"] * len(blocks) + ["fetchResponse"] * len(answered))
        times = {b: int(v["timestamp"], 16) if ok and isinstance(v, dict) else None
                 for b, (ok, v) in zip(blocks, rows)}
        answers = {r: v for r, (ok, v) in zip(answered, rows[len(blocks):]) if ok}
        out = []
        for d in logs:
            rid = bytes(d.args["requestId"])
            e = {"event": d.name, "request_id": _hex(rid), "session_id": None, "user": None,
                 "status": None, "block": d.block_number, "block_time": times.get(d.block_number),
                 "tx_hash": d.tx_hash, "log_index": d.log_index}
            if d.name == "AIRequestSubmitted":
                e.update(session_id=int(d.args["sessionId"]), user=d.args["user"],
                         status="pending", dtn_session_id=int(d.args["dtnSessionId"]))
            elif d.name == "AIRequestCompleted":
                st = "succeeded" if int(d.args["status"]) == 1 else "failed"
                e.update(session_id=int(d.args["sessionId"]), user=d.args["user"], status=st)
                resp = answers.get(rid)
                if resp is not None:
                    _, message, data = resp
                    kind, value = decode_answer(data) if st == "succeeded" else (None, None)
                    e.update(message=message, kind=kind, answer=value if kind == "text" else None)
                    if kind == "cid":
                        e.update(cid=value, ipfs_url=f"ipfs://{value}")
                    elif kind == "image":
                        e["size"] = len(value)
                    elif kind is not None:
                        e["response_hex"] = _hex(data)
            else:
                c = done.get((d.tx_hash, rid))
                if c is not None:
                    e.update(session_id=int(c.args["sessionId"]), user=c.args["user"])
                e.update(status="succeeded" if d.name == "AIResponseReceived" else "failed",
                         message=d.args.get("message", d.args.get("error")))
            out.append(e)
        return out

    def _chain_now(self) -> int:
        """The latest block's timestamp: the chain's clock decides deadlines, not ours."""
        return int(self._raw("eth_getBlockByNumber", ["latest", False], "latest block")
                   ["timestamp"], 16)

    def _block_before(self, ts: int) -> tuple:
        """(the last block before timestamp ``ts``, the head): every block from it on has the
        transactions of second ``ts`` (several blocks may share a second). A search that probes
        16 blocks per round trip, so ~6 round trips on a chain of 20M blocks."""
        head = self._raw("eth_getBlockByNumber", ["latest", False], "latest block")
        top = int(head["number"], 16)
        if int(head["timestamp"], 16) < ts:
            return top, top
        lo, hi = 0, top  # ts(lo) < ts <= ts(hi), or lo is the genesis block
        while hi - lo > 1:
            step = max(1, (hi - lo) // 16)
            probes = list(range(lo + step, hi, step))
            blocks = self._values(self._batch(
                [("eth_getBlockByNumber", [hex(n), False]) for n in probes], "block lookup"))
            for n, b in zip(probes, blocks):
                if int(b["timestamp"], 16) < ts:
                    lo = n
                else:
                    hi = n
                    break
        return lo, top

    def _session_request_ids(self, sessions: Sequence[SessionView]) -> list:
        """Ids of the requests made in ``sessions`` (anyone's: pool takers' too) since their
        pending streak began: AIRequestSubmitted logs with the sessionId topic, from the block
        before the oldest ``pending_since``, in ranges of LOG_CHUNK blocks (one round trip)."""
        from ..chain.abi import keccak

        busy = [s for s in sessions if s.pending_requests]
        if not busy:
            return []
        timeout = int(self._config_tuple()[10])
        since = min(s.pending_since or max(0, s.closable_at - timeout) for s in busy)
        start, head = self._block_before(since)
        start = max(start, head - MAX_LOG_BLOCKS + 1, 0)
        topic0 = "0x" + keccak("AIRequestSubmitted(bytes32,uint256,address,uint256)").hex()
        sids = ["0x" + s.session_id.to_bytes(32, "big").hex() for s in busy]
        reqs = [("eth_getLogs", [{"fromBlock": hex(a), "toBlock": hex(min(a + LOG_CHUNK - 1, head)),
                                  "address": self._mgr.address, "topics": [topic0, None, sids]}])
                for a in range(start, head + 1, LOG_CHUNK)]
        ids: dict = {}
        for logs in self._values(self._batch(reqs, "eth_getLogs")):
            for lg in logs:
                ids[bytes.fromhex(lg["topics"][1][2:])] = True
        return list(ids)

    def answered_pending(self, sessions: Sequence[SessionView] = (),
                         mine: bool = False) -> list:
        """Requests the manager counts pending although the router has answered them (their
        callback failed), as RequestViews (status ANSWERED, ``router`` set): those made in
        ``sessions`` during their pending streak, and with ``mine`` the caller's own."""
        ids = dict.fromkeys(self._session_request_ids(sessions))
        if mine:
            m = self._mgr
            ((own, total),) = self._calls([m.call("getUserRequests", self.address, 0, 200)],
                                          "getUserRequests")
            if int(total) > 200:  # the newest 200 (as `requests`)
                ((own, _),) = self._calls([m.call("getUserRequests",
                    self.address, int(total) - 200, 200)], "getUserRequests")
            ids.update(dict.fromkeys(bytes(i) for i in own))
        views = [v for v in self.request_infos(list(ids)) if v.status == "pending"]
        answered = self._answered([bytes.fromhex(v.request_id[2:]) for v in views])
        out = []
        for v in views:
            st = answered.get(bytes.fromhex(v.request_id[2:]))
            if st:
                v.status = ANSWERED
                out.append({"request": v, "answer": st})
        return out

    def _send_settle(self, r: WriteResult, todo: Sequence[dict], follows: Any = None):
        """One settleRequests transaction for ``todo`` (answered_pending rows); what it settled
        goes to ``r.data["settled"]``."""
        ids = [bytes.fromhex(t["request"].request_id[2:]) for t in todo]
        n = len(ids)
        m = self.manager
        what = f"settle {n} answered request{'s' if n != 1 else ''} (callback failed)"
        if n == 1:
            res = self._send(m.call("settleRequest", ids[0]), description=what, follows=follows)
        else:
            res = self._send(m.call("settleRequests", ids), description=what, follows=follows)
        r.txs.append(res)
        if res.dry_run:
            done = {t["request"].request_id: t for t in todo}
            r.data["settled"] = [{"request_id": k, "session_id": t["request"].session_id,
                                  "status": t["answer"]} for k, t in done.items()]
        else:
            r.data["settled"] = [
                {"request_id": _hex(e.args["requestId"]), "session_id": int(e.args["sessionId"]),
                 "status": "succeeded" if int(e.args["status"]) == 1 else "failed"}
                for e in self._events(res, "AIRequestCompleted")]
        return res

    def _settle_answered(self, r: WriteResult, sessions: Sequence[SessionView]):
        """Before a close or renew: settle the answered requests blocking ``sessions``, in one
        transaction (its TxResult), or None when there are none."""
        if not any(s.pending_requests for s in sessions):
            return None
        todo = self.answered_pending(sessions)
        if not todo:
            return None
        return self._send_settle(r, todo)

    @_writes
    def settle(self, request_id: Optional[str] = None) -> WriteResult:
        """Record the answers of requests whose callback failed: one ``request_id``, or all
        the caller's own and those in the caller's sessions. Nothing to settle: nothing sent."""
        from ..errors import RevertError

        r = WriteResult("settle", dry_run=self.settings.dry_run)
        r.data["settled"] = []
        if request_id is not None:
            rid = parse_request_id(request_id)
            info = self.request_info(rid)
            if info.status == "none":
                raise InputError("request id", _hex(rid), "unknown to this session manager")
            if info.status != "pending":
                r.data["note"] = f"request {_hex(rid)} is already settled ({info.status})"
                return r
            st = self._answered([rid]).get(rid)
            if st is None:
                raise RevertError(f"settling request {_hex(rid)}", "it has no answer yet",
                                  hint=f"settle records an answer whose callback failed; wait "
                                       f"for it (`dtnsess response {_hex(rid)}`)")
            info.status = ANSWERED
            todo = [{"request": info, "answer": st}]
        else:
            mine = [s for s in self.sessions() if s.active and s.owner == self.address]
            todo = self.answered_pending(mine, mine=True)
        if not todo:
            r.data["note"] = "nothing to settle"
            return r
        self._send_settle(r, todo)
        return r

    def _routing(self, namespaces: Sequence[str], nodes: Sequence[str]):
        if namespaces and nodes:
            raise InputError("routing", "--namespace/--node", "use either namespaces or nodes")
        if nodes:
            return ("nodes", ([], [node_routing_id(n) for n in nodes], 1, 8, AGGREGATION_ANY))
        if namespaces:
            return ("namespaces", [namespace_routing_id(n) for n in namespaces])
        return ("system", None)

    def _routing_reads(self, kind: str, routing: Any, router: Optional[str] = None) -> list:
        """What the router can tell about who would answer (riding in the send's batch): its
        ``nodes(id)`` of each named node, or ``namespaceNodeCount(id)`` of each trust namespace
        (system trust included). ``routing`` as :meth:`_routing` returns it. ``router``: its
        address when getConfig() is not read yet (the cache's, checked by the caller)."""
        if kind == "nodes":
            selector, ids = NODES_SELECTOR, routing[1]
        else:
            selector = NAMESPACE_NODES_SELECTOR
            ids = routing if kind == "namespaces" else [system_trust_id()]
        to = router or self.router.address
        return [("eth_call", [{"to": to, "data": selector + nid.hex()}, "latest"]) for nid in ids]

    def _check_routing(self, kind: str, names: Sequence[str], resps: Sequence[dict]) -> None:
        """Before paying: a named node nobody registered is refused; trust namespaces no node
        holds get a warning (a node may join before the request is answered). A router that
        cannot tell is said once, where the user chose the routing."""
        if kind == "nodes":
            known = [node_registered(r.get("result")) for r in resps]
            for name, ok in zip(names, known):
                if ok is False:
                    raise InputError("node", name, "no such node is registered on this chain's "
                                     "DTN router: nobody would answer (and the request is paid for)")
            if None in known:
                self._say_unchecked("node", "it has no node registry view (nodes(bytes32))")
            return
        names = list(names) or [SYSTEM_TRUST]
        counts = [namespace_nodes(r.get("result")) for r in resps]
        if None in counts:
            if kind == "namespaces":
                self._say_unchecked("namespace", "it has no namespace view "
                                    "(namespaceNodeCount(bytes32))")
            return
        if not any(counts):
            plural = "s" if len(names) > 1 else ""
            self.ui.warn(f"no node holds the trust namespace{plural} {', '.join(names)} on this "
                         f"chain's DTN router: nobody would answer, and the request is paid for "
                         f"and stays pending; route to a node you know with --node owner.name")

    def _say_unchecked(self, what: str, why: str) -> None:
        if what not in self._unchecked_said:
            self._unchecked_said.add(what)
            self.ui.info(f"note: the {what} routing was not checked against this chain's DTN "
                         f"router: {why}")

    def _request_fee(self, call_len: int) -> int:
        """What DTN charges the session for an answer to a ``call_len``-byte call, as its node
        reports sizes (call bytes + 1, none for the answer; 0 past the per-response cap)."""
        c = self._config_tuple()
        return node_fee(call_len, int(c[7]), int(c[9]))

    def _check_dtn_balance(self, s: SessionView, call_len: int) -> None:
        """Refuse a request the session cannot pay for: DTN would take it and pay the node
        what is left (0 when empty), so the answer would go unpaid."""
        if s.dtn_balance is None:  # the router does not show balances: nothing to go by
            return
        need = max(self._request_fee(call_len), 1)
        if s.dtn_balance.units < need:
            sym = self.symbol
            raise InsufficientFundsError(
                f"DTN balance in session {s.session_id}",
                f"{format_amount(s.dtn_balance.units, self.decimals)} {sym}",
                f"{format_amount(need, self.decimals)} {sym} for this {call_len}-byte call",
                hint=f"add funds with `dtnsess renew {s.session_id} AMOUNT`, or use another "
                     f"session (--session)")

    def _funded_sessions(self, ids: list, call_len: int) -> list:
        """The sessions of ``ids`` whose DTN balance can pay a ``call_len``-byte call (one round
        trip); the others are skipped with a note, and none left is a FUNDS error."""
        (views,) = self._calls_and_symbol([self._mgr.call("getSessions", list(ids))],
                                          "getSessions")
        need = max(self._request_fee(call_len), 1)
        views = [self._session_view(v) for v in views]
        ok = [v.session_id for v in views if v.dtn_balance is None or v.dtn_balance.units >= need]
        low = [v for v in views if v.session_id not in ok]
        if low and not ok:
            self._check_dtn_balance(low[0], call_len)  # raises, naming the first one
        if low:
            self.ui.info(f"skipping session{'s' if len(low) != 1 else ''} "
                         f"{', '.join(str(v.session_id) for v in low)}: DTN balance too low "
                         f"(`dtnsess renew ID AMOUNT`)")
        return ok

    def _prompt_too_large(self, size: int, session_id: Optional[int],
                          what: str = "prompt") -> DtnsessError:
        """The refusal of an oversized prompt: its size, what a byte costs (gas and DTN fee)
        and what the paying session holds. Nothing is sent."""
        c = self._config_tuple()
        sym = self.symbol
        per_byte = format_amount(int(c[7]), self.decimals)
        holds = ""
        try:
            sid = session_id
            if sid is None:
                ids = self.active_session_ids()
                sid = ids[-1] if ids else None
            if sid is not None:
                v = self.session(sid)
                bal = v.dtn_balance if v.dtn_balance is not None else v.balance
                holds = f"; session {sid} holds {bal.human()}"
        except DtnsessError:
            pass
        return InputError(
            what, f"({size} bytes)",
            f"{size} bytes is more than {MAX_PROMPT_BYTES} (a {what} costs about "
            f"{PROMPT_GAS_PER_BYTE} gas per byte to send, ~{size * PROMPT_GAS_PER_BYTE:,} gas "
            f"here, and a transaction holds at most {2**24:,}; DTN charges {per_byte} {sym} "
            f"per byte, at most {format_amount(int(c[9]), self.decimals)} {sym} per "
            f"request{holds})",
            hint=f"shorten the {what}, or split it into several requests")

    @_writes(before=lambda self, args, kwargs: self._pace_wait(kwargs.get("session_id")))
    def make_ai_request(self, prompt: Optional[str], *, model: Optional[str] = None,
                        namespaces: Sequence[str] = (), nodes: Sequence[str] = (),
                        value: int = DEFAULT_CALLBACK_GAS_WEI,
                        session_id: Optional[int] = None, call: Optional[bytes] = None,
                        calltype: int = CALLTYPE_DIRECT, image: Optional[tuple] = None,
                        ipfs: Optional[bool] = None) -> WriteResult:
        """One AI request. ``image=(width, height)`` asks an image model (by default
        model.system.openai-gpt-image-1) for a picture of the prompt, answered over IPFS (the
        network decides the size: DTN's image processor makes 1024x1024); ``ipfs=True`` has the
        node store a text output on IPFS and answer its CID. With ``call`` (the model API's
        ABI-encoded input) instead of a ``prompt``, the bytes reach DTN unchanged through
        ``makeAIRequestWithCall`` with ``calltype`` (CALLTYPE_DIRECT or CALLTYPE_IPFS).
        Refused before anything is sent: a prompt with ``{N}`` placeholders (DTN's node
        cannot parse it), and a DIRECT request to an image model (never answered).
        ``value``: wei (an int, or a str with a unit: ``"300000"``, ``"1gwei"``).

        Paced per session: a second request on a session waits until a second after the
        previous one was mined (DTN's one request per session and second)."""
        value = parse_eth_value(value)
        if image is not None or ipfs or (call is None
                                         and is_image_model(model or self.settings.model)):
            if call is not None:
                raise InputError("call", "", "give image/ipfs or an encoded call, not both")
            call, calltype, model = media_call(prompt, image, ipfs, model, self.settings.model)
            prompt = None
        if call is not None:
            if prompt is not None:
                raise InputError("prompt", prompt, "give a prompt or an encoded call, not both")
            if calltype not in (CALLTYPE_IPFS, CALLTYPE_DIRECT):
                raise InputError("call type", str(calltype), "must be 0 (IPFS) or 1 (DIRECT)")
            call = bytes(call)
            if not call:
                raise InputError("call", "", "empty")
            if calltype == CALLTYPE_DIRECT and is_image_model(model or self.settings.model):
                raise InputError("call type", "DIRECT", DIRECT_IMAGE_REFUSAL)
            for line in _call_lines(call, model or self.settings.model):
                check_prompt_placeholders(line, "call")
            size = call_len = len(call)
        else:
            check_prompt(prompt)
            size = len(prompt.encode("utf-8"))
            call_len = prompt_call_len(prompt)
        model = model or self.settings.model
        kind, routing = self._routing(namespaces, nodes)
        chosen = routing  # as _routing_reads takes it (wrapped into a DtnRouting below)
        if size > MAX_PROMPT_BYTES:
            raise self._prompt_too_large(size, session_id, "call" if call is not None else "prompt")
        # NOTE: which session pays: the given one, else the contract's choice (a live pool
        # grant, else the newest own active session); its DTN balance is read in the
        # transaction's own batch and checked before anything is sent. Usually that batch is
        # the first round trip: the connection's reads, the contract's choice and the session
        # the last request went to ride in it (``fold``); when the choice is another session,
        # nothing is sent and the usual path reads it.
        m = self._mgr
        choice_reads = [m.call("getUserActiveSessions", self.address),
                        m.call("poolGrant", self.address)]

        def choice_of(own: Sequence[int], grant: int) -> list:
            """The sessions the contract may take, in its order (a pool grant, the newest own)."""
            return ([int(grant)] if int(grant) else []) + ([int(own[-1])] if own else [])

        def choice() -> list:
            return choice_of(*self._calls(choice_reads, "getUserActiveSessions"))

        # the router's node reads ride along at the router the token cache names with the
        # token (checked against getConfig() in the same batch). NOTE: --session is not
        # folded: a session of someone else's pool needs the grant read before the request
        # is built (``_owned_active``)
        chain = self._reads_ride() if session_id is None else None
        router = self._known_router() if chain is not None else None
        candidates: Optional[list] = None
        if session_id is not None:
            self._check_dtn_balance(self._owned_active(session_id, allow_grant=True), call_len)
            candidates = []
        elif router is None:
            candidates = choice()
        if session_id is not None or call is not None:
            if kind == "namespaces":
                routing = (routing, [], 1, 8, AGGREGATION_ANY)
            elif kind == "system":
                routing = system_trust_routing()
        if call is not None:
            fn = m.call("makeAIRequestWithCall", session_id or 0, call, calltype, model, routing)
        elif session_id is not None:
            fn = m.call("makeAIRequestInSession", session_id, prompt, model, routing)
        elif kind == "nodes":
            fn = m.call("makeAIRequestWithRouting", prompt, model, routing)
        else:
            fn = m.call("makeAIRequest", prompt, model, routing or [])
        # what the session pays when DTN's node answers (sizes as the node reports them)
        # NOTE: the symbol only when known (read with the connection or cached): no round trip
        fee_of = lambda: Amount(self._request_fee(call_len), self.decimals,  # noqa: E731
                                self._symbol or "tokens")

        def send(cands: Optional[list]) -> Any:
            """The request, its candidates' sessions read along (``cands`` None: the
            contract's choice and the hinted session ride in the batch, see above)."""
            fold = cands is None
            hint = self._cached_session(chain) if fold else None
            picks = choice_reads if fold else []
            reads = picks + [m.call("getSession", c) for c in
                             (cands if not fold else [hint] if hint else [])]
            # NOTE: after the connection, which gives the router's address (or the cache's)
            routing_reads = self._routing_reads(kind, chosen, router if fold else None)

            def check(resps: list) -> None:
                known = choice_of(*self._values(self._rows(
                    picks, resps[:2], "getUserActiveSessions"))) if picks else []
                if fold and str(self._config_tuple()[0]).lower() != router.lower():
                    raise Unfolded(known)  # the routing was read at another router
                if known and known[0] != hint:  # another session pays: read it first
                    raise Unfolded(known)
                rows = self._rows(reads[len(picks):], resps[len(picks):len(reads)], "getSession")
                # the first live candidate is the one the contract uses; none known: it opens
                # one (the simulation checks it), whatever the hinted session is now
                views = [self._session_view(v, symbol="") for ok, v in rows
                         if ok and (known or not picks)]
                live = next((v for v in views if v.active), None)
                if live is None and len(known) > 1:  # the hinted one is closed: the next pays
                    raise Unfolded(known)
                self._check_routing(kind, nodes or namespaces, resps[len(reads):])
                if live is not None:
                    self._check_dtn_balance(live, call_len)

            # folded: paced as the hinted session, the one the last request went to
            paced = session_id if session_id is not None else (cands[0] if cands else hint)
            return self._paced_send(paced, lambda: self._send(
                fn, value=value, reads=reads + routing_reads, check=check, fold=fold,
                description=lambda: f"AI request to {model} (DTN fee {fee_of().human()} per "
                                    f"answer)"))

        r = WriteResult("request", dry_run=self.settings.dry_run)
        try:
            try:
                res = send(candidates)
            except Unfolded as u:  # nothing was sent
                res = send(u.value if u.value is not None else choice())
        except InsufficientFundsError as exc:
            # Without a session the contract opens one with the minimum balance; say so.
            if session_id is None and "fee token" in exc.what and not self.active_session_ids():
                minimum = format_amount(self._config_tuple()[3], self.decimals)
                exc.hint = (f"you have no active session, so the contract would open one with "
                            f"{minimum} {self.symbol}: run `dtnsess create AMOUNT` first")
            raise
        fee = fee_of()
        r.txs.append(res)
        ev = self._events(res, "AIRequestSubmitted")
        if ev and not res.dry_run:
            self._session_used(int(ev[0].args["sessionId"]))
            self._remember_session(int(ev[0].args["sessionId"]))
        rid = ev[0].args["requestId"] if ev else res.return_value
        r.data.update({"request_id": _hex(rid) if rid is not None else None,
                       "session_id": int(ev[0].args["sessionId"]) if ev else session_id,
                       "model": model, "routing": kind, "value_wei": str(value),
                       "dtn_fee": fee, "block": res.block_number})
        if call is not None:
            r.data.update(calltype="ipfs" if calltype == CALLTYPE_IPFS else "direct",
                          call_bytes=size)
        created = self._events(res, "SessionCreated")
        if created:
            r.data["created_session"] = int(created[0].args["sessionId"])
        return r

    # NOTE: DTN gives a session (and user) one request per second: a second request in the
    # same second gets the same id, which the manager refuses (RequestIdCollision). A client
    # paces itself per session: the next request on a session waits until a second after the
    # last one was seen mined (by any thread of this client); one that still collides in the
    # simulation (another client, or the chain's clock) sent nothing and is tried again after
    # a second, up to _PACE_RETRIES times.
    _PACE_SECONDS = 1.0
    _PACE_RETRIES = 3

    def _paced_send(self, session_id: Optional[int], send: Any) -> Any:
        """``send()`` once ``session_id`` may take a request; again after a collision that the
        simulation found (nothing was sent)."""
        for attempt in range(self._PACE_RETRIES + 1):
            self._pace_wait(session_id)
            try:
                return send()
            except RevertError as exc:
                if exc.name != "RequestIdCollision" or exc.tx_hash or \
                        attempt == self._PACE_RETRIES or self.settings.dry_run:
                    raise
                sleep(self._PACE_SECONDS)

    def _pace_wait(self, session_id: Any) -> None:
        """Sleep until ``session_id`` may take its next request (no-op in a dry run)."""
        if isinstance(session_id, int) and not self.settings.dry_run:
            wait = self._pace.get(session_id, 0.0) - time.monotonic()
            if wait > 0:
                sleep(wait)

    def _session_used(self, session_id: Optional[int]) -> None:
        if session_id is not None:
            self._pace[session_id] = time.monotonic() + self._PACE_SECONDS

    def active_session_ids(self) -> list:
        """The caller's usable sessions: its own active ones, plus a pool grant."""
        m = self._mgr
        own, grant = self._calls([m.call("getUserActiveSessions", self.address),
                                  m.call("poolGrant", self.address)], "getUserActiveSessions")
        ids = [int(i) for i in own]
        grant = int(grant)
        if grant and grant not in ids:
            try:
                if self.session(grant).active:
                    ids.append(grant)
            except InputError:
                pass
        return ids

    @_writes
    def request_batch(self, prompts: Sequence[str], *, model: Optional[str] = None,
                      namespaces: Sequence[str] = (), nodes: Sequence[str] = (),
                      value: int = DEFAULT_CALLBACK_GAS_WEI,
                      sessions: Optional[int] = None) -> dict:
        """Fan prompts out over the caller's usable sessions, pipelined (``tx.Pipeline``).

        DTN request ids have one-second resolution, so a session takes at most one request per
        second: with K sessions, each wave sends up to K transactions (one per session, nonces
        counted locally) without waiting in between, then collects their receipts; a session is
        used again one second after its last request was seen mined. A collision the simulation
        finds sends nothing and the prompt waits for a later second; one found in a receipt (the
        manager reverts ``RequestIdCollision``, so no request was made) is retried once.

        On the first error nothing more is sent; what was sent is waited for, and the result
        tells, per prompt: ``sent`` (request id), ``failed`` (no request was made), ``unknown``
        (check the tx hash before sending it again) or ``not sent``. Raises only when nothing
        was sent.
        """
        from collections import deque

        from ..chain import send as tx

        value = parse_eth_value(value)
        prompts = list(prompts)
        if not prompts:
            raise InputError("prompts", "", "no prompts")
        if is_image_model(model or self.settings.model):  # its node could not decode a prompt
            raise InputError("--model" if model else "model", model or self.settings.model,
                             "an image model: --file sends text prompts (use --image WxH with "
                             "one PROMPT)")
        for i, p in enumerate(prompts):
            check_prompt(p, f"prompt {i + 1}")
            if len(p.encode("utf-8")) > MAX_PROMPT_BYTES:
                err = self._prompt_too_large(len(p.encode("utf-8")), None)
                err.message = f"line {i + 1}: {err.message}"
                raise err
        ids = self.active_session_ids()
        hint = "create sessions with `dtnsess create AMOUNT` (one session serves one request " \
               "per second)"
        if not ids:
            raise InputError("sessions", "", "you have no active session", hint=hint)
        ids = self._funded_sessions(ids, max(prompt_call_len(p) for p in prompts))
        if sessions is not None:
            if sessions < 1:
                raise InputError("--sessions", str(sessions), "must be at least 1")
            if len(ids) < sessions:
                raise InputError("--sessions", str(sessions),
                                 f"you have {len(ids)} usable active session"
                                 f"{'s' if len(ids) != 1 else ''}",
                                 hint=f"create {sessions - len(ids)} more with `dtnsess create "
                                      f"AMOUNT` (one session serves one request per second)")
            ids = ids[:sessions]
        model = model or self.settings.model
        kind, routing = self._routing(namespaces, nodes)
        m = self.manager
        ctx = self.txctx
        if kind != "system":  # routing the user chose: checked before any request is paid
            self._check_routing(kind, nodes or namespaces,
                                tx.rpc_batch(ctx, self._routing_reads(kind, routing),
                                             "routing lookup"))
        if kind == "namespaces":
            routing = (routing, [], 1, 8, AGGREGATION_ANY)
        elif kind == "system":
            routing = system_trust_routing()
        n = len(prompts)
        entries = [{"index": i + 1, "prompt": p, "status": "not sent", "session_id": None,
                    "request_id": None, "tx_hash": None, "block": None, "block_timestamp": None}
                   for i, p in enumerate(prompts)]
        # what the sessions pay when DTN's node answers them all (sizes as the node reports)
        total = sum(self._request_fee(prompt_call_len(p)) for p in prompts)
        dtn_fee = Amount(total, self.decimals, self._symbol or "tokens")
        out = {"model": model, "sessions": ids, "requests": entries, "dtn_fee": dtn_fee,
               "dry_run": self.settings.dry_run, "error": None}

        def call(i: int, sid: int) -> Any:
            return tx.Call(m.call("makeAIRequestInSession", sid, prompts[i], model, routing),
                           description=f"request {i + 1} in session {sid}", value=value, tag=i)

        if self.settings.dry_run:
            preps = tx.prepare_many(ctx, [call(i, ids[i % len(ids)]) for i in range(n)])
            for e, p in zip(entries, preps):
                e["session_id"] = ids[(e["index"] - 1) % len(ids)]
                if p.error is None:
                    e.update(status="simulated", gas_estimate=p.gas_estimate)
                else:
                    e.update(status="failed", error=p.error.message)
            return out

        pipe = tx.Pipeline(ctx)
        pipe.begin()
        queue = deque(range(n))
        deferred: dict[int, int] = {}  # simulation collisions per prompt (nothing sent)
        retried: set = set()  # prompts resent after a collision in a receipt
        ready_at = {sid: 0.0 for sid in ids}  # monotonic time a session may be used again
        stop: Optional[DtnsessError] = None
        confirmed = False
        sent_any = False
        gas_used = fee = 0
        with self.ui.progress("requests", n) as advance:
            while queue and stop is None:
                now = time.monotonic()
                free = [sid for sid in ids if ready_at[sid] <= now]
                if not free:
                    sleep(max(0.01, min(ready_at.values()) - now))
                    continue
                wave = [(queue.popleft(), sid) for sid in free[:len(queue)]]
                preps = tx.prepare_many(ctx, [call(i, sid) for i, sid in wave])
                to_send, later = [], []
                for (i, sid), p in zip(wave, preps):
                    err = p.error
                    if err is None:
                        to_send.append((i, sid, p))
                    elif getattr(err, "name", None) == "RequestIdCollision" \
                            and deferred.get(i, 0) < 3:
                        # the session already has a request this second: try a later one
                        deferred[i] = deferred.get(i, 0) + 1
                        ready_at[sid] = now + 1.0
                        later.append(i)
                    else:
                        entries[i].update(session_id=sid, status="failed", error=err.message)
                        stop = err
                        break
                if stop is not None:  # send only the prompts before the failed one
                    failed_i = next(i for i, _ in wave if entries[i]["status"] == "failed")
                    pos = [i for i, _ in wave].index(failed_i)
                    to_send = [t for t in to_send if [i for i, _ in wave].index(t[0]) < pos]
                queue.extendleft(reversed(later))
                if not confirmed and to_send:
                    # NOTE: one confirmation and one funds check for the whole batch, from the
                    # largest estimate of the first wave (requests cost about the same).
                    limit = max(p.gas_limit for _, _, p in to_send)
                    est = max(p.gas_estimate for _, _, p in to_send)
                    l1 = max(p.l1_fee for _, _, p in to_send)  # OP stack's L1 data fee
                    pipe.check_funds(limit * n, value * n, n, l1 * n)
                    pipe.confirm(f"{n} requests to {model} over {len(ids)} session"
                                 f"{'s' if len(ids) != 1 else ''} (DTN fees {dtn_fee.human()} in all)",
                                 est * n, limit * n, value * n,
                                 l1_fee_total=l1 * n)
                    confirmed = True
                # one round trip for the whole wave's sends (``Pipeline.send_all``: journaled
                # first, each reply read as a single send's)
                sent = []
                if to_send:
                    for (i, sid, p), o in zip(to_send, pipe.send_all([p for _, _, p in to_send])):
                        sent.append((i, sid, o))
                        entries[i].update(session_id=sid,
                                          tx_hash=None if o.status == "failed" else o.tx_hash)
                        if o.status != "sent" and stop is None:
                            stop = o.error
                sent_any = sent_any or any(o.status != "failed" for _, _, o in sent)
                outs = [o for _, _, o in sent]
                pipe.resolve_unknown(outs)
                try:
                    pipe.collect(outs)
                except TxPendingError as exc:  # Ctrl-C: the report still names every hash
                    if exc.exit_code != ExitCode.INTERRUPTED:
                        raise
                    for o in outs:
                        if o.status == "sent":
                            o.status, o.error = "unknown", TxPendingError(
                                o.call.description, o.tx_hash, o.nonce,
                                "interrupted while waiting for the receipt", interrupted=True)
                    stop = stop or exc
                seen = time.monotonic()
                collided = []
                for i, sid, o in sent:
                    ready_at[sid] = seen + 1.0
                    e = entries[i]
                    if o.result is not None and o.result.gas_used is not None:
                        gas_used += o.result.gas_used
                        fee += o.result.fee_wei
                    if o.status == "mined":
                        ev = [x for x in self._events(o.result, "AIRequestSubmitted")]
                        rid = ev[0].args["requestId"] if ev else None
                        e.update(status="sent", request_id=_hex(rid) if rid else None,
                                 block=o.result.block_number)
                        e.pop("error", None)
                        advance(1)
                    elif (o.status == "failed" and o.tx_hash and i not in retried
                          and getattr(o.error, "name", None) == "RequestIdCollision"):
                        collided.append(i)  # reverted: no request was made, safe to resend
                    else:
                        e.update(status="unknown" if o.status == "unknown" else (
                            "not sent" if o.status == "not_sent" else "failed"),
                            error=o.error.message if o.error else None)
                        stop = stop or o.error
                for i in collided:
                    if stop is None:
                        retried.add(i)
                        entries[i]["retried"] = True
                    else:
                        entries[i].update(status="failed", error="request id collision (not "
                                          "retried: the batch stopped)")
                queue.extendleft(reversed([i for i in collided if stop is None]))
        if stop is not None and not sent_any:
            raise stop
        # the second each request landed in: its block's timestamp (one round trip)
        blocks = sorted({e["block"] for e in entries if e["block"] is not None})
        if blocks:
            try:
                resps = tx.rpc_batch(ctx, [("eth_getBlockByNumber", [hex(b), False])
                                           for b in blocks], "block lookup")
                ts = {b: int(r["result"]["timestamp"], 16) for b, r in zip(blocks, resps)
                      if isinstance(r.get("result"), dict)}
                for e in entries:
                    if e["block"] is not None:
                        e["block_timestamp"] = ts.get(e["block"])
            except DtnsessError:  # the requests are made; only the report lacks the second
                pass
        out.update(transactions=sum(1 for e in entries if e["tx_hash"]),
                   gas_used=gas_used, fee_eth=format_amount(fee, 18))
        if stop is not None:
            out["error"] = stop.to_dict()
        return out

    def wait_for_answers(self, request_ids: Sequence[str], timeout: float,
                         from_block: Optional[int] = None, poll: float = 1.0) -> list:
        """Wait for the answers to many requests at once (one eth_getLogs per poll, one
        progress bar); returns a ResponseView per id, ``pending`` for those still unanswered."""
        from .readviews import ResponseView

        rids = [parse_request_id(r) if isinstance(r, str) else bytes(r) for r in request_ids]
        done: dict[bytes, ResponseView] = {}
        infos = {bytes.fromhex(v.request_id[2:]): v for v in self.request_infos(rids)}
        for rid in rids:
            if infos[rid].status in ("succeeded", "failed"):
                done[rid] = self.response(rid)
        topics = [completion_topics()]
        start = from_block if from_block is not None else self._block_number()
        deadline = time.monotonic() + timeout
        with self._reads_until(deadline), self.ui.progress("answers", len(rids)) as advance:
            advance(len(done))
            while len(done) < len(rids):
                try:  # node trouble while waiting is waited out until the deadline
                    head = self._block_number()
                    if head >= start:
                        todo = [r for r in rids if r not in done]
                        logs = self._logs(start, head,
                                          [self.manager.address, self.router.address],
                                          topics + [todo])
                        for rid in {_topic_bytes(lg["topics"][1]) for lg in logs}:
                            if rid in todo:
                                done[rid] = self.response(rid)
                                advance(1)
                        start = head + 1
                except RpcError:
                    pass
                if len(done) == len(rids) or time.monotonic() >= deadline:
                    break
                sleep(min(poll, max(0.05, deadline - time.monotonic())))
        out = []
        for rid in rids:
            out.append(done.get(rid) or ResponseView(_hex(rid), "pending", "pending", "", None))
        return out
