"""The node and the manager: the JSON-RPC connection, the chain id, getConfig() and the
fee token, and the batched reads every view is made of (one round trip each).
"""

from __future__ import annotations

import contextlib
import os
import threading

from ..config import Settings, check_address
from ..errors import (
    DtnsessError,
    ChainMismatchError,
    InputError,
    NoContractError,
)
from ..units import Amount, parse_amount
from .base import ERC20_ABI, check_rpc_url, _hex, contract_at, env_seconds

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Iterator, Optional, Sequence

    from .readviews import ConfigView


class Connection:
    """Connection handling, configuration and batched reads (the base of ``Client``)."""

    def __init__(self, settings: Settings, ui: Any = None, *, signer: Any = None,
                 receipt_timeout: Optional[float] = None, state_dir: Any = None,
                 rpc_timeout: Optional[float] = None,
                 rpc_retry_seconds: Optional[float] = None, transport: Any = None) -> None:
        """``ui``: the CLI's renderer; None is ``QuietUI`` (never asks, never prints).
        ``signer``: anything with ``.address`` and ``.sign_transaction``; None loads the key
        ``settings`` name when a write first needs it. ``state_dir``: the journal, sender
        locks and token cache (None: ``chain.journal.state_dir()``; False: none of them).
        The timeouts left None come from the environment (``DTNSESS_RECEIPT_TIMEOUT``,
        ``DTNSESS_RPC_TIMEOUT``, ``DTNSESS_RPC_RETRY_SECONDS``). ``transport``: a JSON-RPC
        transport to use instead of connecting to the settings' URL (``chain.transport``),
        shared by the threads."""
        # NOTE: what one call works with is the calling thread's own (the kept-alive HTTP
        # connection, the send context, the write in progress): a Client may be shared by
        # threads; the sender lock orders their writes, the journal has a connection per thread
        self._local = self._local_factory()
        self._rpcs: list = []  # every thread's connection, for close()
        self._rpcs_lock = threading.Lock()
        self._threads_lock = threading.RLock()  # this client's writers, before the file lock
        # session id -> time.monotonic() when it may take its next request (requests.py)
        self._pace: dict = {}
        # routing checks this router could not make, said once per client (requests.py)
        self._unchecked_said: set = set()
        if ui is None:
            from .quiet import QuietUI

            ui = QuietUI()
        self.settings = settings
        self.ui = ui
        self.receipt_timeout = (env_seconds("DTNSESS_RECEIPT_TIMEOUT", 120.0)
                                if receipt_timeout is None else receipt_timeout)
        self._state = state_dir
        self._rpc_timeout = rpc_timeout
        self._rpc_retry = rpc_retry_seconds
        self._transport = transport
        self._rpc = None
        self._account = signer
        self._chain_id: Optional[int] = None
        self._chain_seen: Optional[tuple] = None  # (genesis, anchor): see Writes._chain_key
        self._lock_chain: Optional[tuple] = None  # the sender lock's chain, to check
        self._manager = None
        self._config_raw: Optional[tuple] = None
        self._token = None
        self._router = None
        self._symbol: Optional[str] = None
        self._txctx = None
        self._errors = None
        self._journal = None
        self._writing = False
        self._done: list = []  # TxResults mined by this write (see _writes)

    # the calling thread's state (see __init__); the async client's: the calling task's
    _local_factory: Any = threading.local
    _rpc = property(lambda self: getattr(self._local, "rpc", None),
                    lambda self, v: setattr(self._local, "rpc", v))
    _txctx = property(lambda self: getattr(self._local, "txctx", None),
                      lambda self, v: setattr(self._local, "txctx", v))
    _writing = property(lambda self: getattr(self._local, "writing", False),
                        lambda self, v: setattr(self._local, "writing", v))
    _done = property(lambda self: self._local.__dict__.setdefault("done", []),
                     lambda self, v: setattr(self._local, "done", v))

    @property
    def rpc(self):
        """This thread's JSON-RPC connection (``chain.jsonrpc.JsonRpc``: kept alive, reads
        retried)."""
        if self._rpc is None:
            if self._transport is not None:  # the program's own: it closes it
                self._rpc = self._transport
                return self._rpc
            from ..rpc import connect

            self._rpc = connect(check_rpc_url(self.settings.require_rpc()),
                                timeout=self._rpc_timeout, retry_for=self._rpc_retry)
            with self._rpcs_lock:
                self._rpcs.append(self._rpc)
        return self._rpc

    def close(self) -> None:
        """Close the node connections (every thread's) and the journal (the client reconnects
        if used again). Call it when no other thread is using the client."""
        self._close_connections()
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _close_connections(self) -> None:
        """Close every thread's node connection; each reconnects on its next call."""
        with self._rpcs_lock:
            rpcs, self._rpcs = self._rpcs, []
        for rpc in rpcs:
            rpc.close()
        self._local = self._local_factory()

    @contextlib.contextmanager
    def _reads_until(self, deadline: float) -> Iterator[None]:
        """Reads (and their retries) end by ``deadline`` (time.monotonic()): a wait's total
        time stays its timeout, however slow or flaky the node."""
        rpc = self.rpc
        before, rpc.deadline = rpc.deadline, deadline
        try:
            yield
        finally:
            rpc.deadline = before

    def _raw(self, method: str, params: Sequence[Any], what: str) -> Any:
        """One JSON-RPC read's result: node trouble becomes RpcError, a revert a decoded
        RevertError."""
        from ..chain import send as tx

        resp = tx.raw_request(self._read_ctx(), method, list(params))
        if "error" in resp:
            raise tx.response_error(self._read_ctx(), resp, what)
        return resp["result"]

    def _block_number(self) -> int:
        return int(self._raw("eth_blockNumber", [], "block number"), 16)

    def _logs(self, start: int, end: int, address: Any, topics: Sequence[Any]) -> list:
        """eth_getLogs over blocks ``start..end`` (raw logs: hex strings)."""
        def hx(t: Any) -> Any:
            if t is None or isinstance(t, str):
                return t
            if isinstance(t, (list, tuple)):
                return [hx(x) for x in t]
            return _hex(t)

        return self._raw("eth_getLogs", [{"fromBlock": hex(start), "toBlock": hex(end),
                                          "address": address, "topics": hx(list(topics))}],
                         "eth_getLogs")

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._check_chain(int(self._raw("eth_chainId", [], "chain id"), 16))
        return self._chain_id

    def _check_chain(self, cid: int) -> None:
        expected = self.settings.chain_id
        if expected is not None and cid != expected:
            src = self.settings.sources.get("chain_id", "the configuration")
            raise ChainMismatchError(expected, cid, source=src)
        self._chain_id = cid
        if hasattr(self.ui, "chain_id"):  # the renderer links tx hashes to this chain's explorer
            self.ui.chain_id = cid

    @staticmethod
    def address_arg(value: str, what: str = "address") -> str:
        from ..chain.abi import is_checksum_address, to_checksum_address

        v = check_address(value, what)
        body = v[2:]
        if body != body.lower() and body != body.upper() and not is_checksum_address(v):
            raise InputError(what, value, "bad checksum (mixed case that is not EIP-55)")
        return to_checksum_address(v)

    @property
    def manager_address(self) -> str:
        return self.address_arg(self.settings.require_contract(), "contract address")

    @property
    def _mgr(self):
        """The manager's contract object (no round trip; ``manager`` is the checked one)."""
        if self._manager is None:
            self._manager = contract_at(self.manager_address, "AdvancedSessionManager")
        return self._manager

    @property
    def manager(self):
        # NOTE: the chain id and getConfig() before the first use of the address, whatever it
        # is: a view of a codeless address otherwise surfaces as a node error
        self._config_tuple()
        return self._mgr

    def _config_tuple(self) -> tuple:
        if self._config_raw is None:
            self._connect()
        return self._config_raw

    def _connect_requests(self) -> list:
        """What ``_take_connect`` checks: the chain id (unless known) and getConfig(); and the
        genesis and latest block while this URL's chain is not remembered (the next write's
        sender lock needs it: ``Writes._chain_key``), in the batch made anyway."""
        from ..chain.journal import known_chain

        head: list = [] if self._chain_id is not None else [("eth_chainId", [])]
        state = self._state_path()
        if self._chain_seen is None and state is not None \
                and known_chain(self.settings.rpc_url or "", state) is None:
            from ..chain.send import CHAIN_REQUESTS

            head += list(CHAIN_REQUESTS)
        return head + [self._mgr.call("getConfig")]  # last (doctor takes it alone)

    def _take_connect(self, rows: list, asked: Sequence[Any]) -> None:
        """Check the chain id, then getConfig(); only when getConfig() fails is the code looked
        at, to tell "no contract code" from "not an AdvancedSessionManager". ``asked``: the
        requests ``rows`` answer (from ``_connect_requests``)."""
        rows = list(rows)
        # NOTE: whether the chain id is among the rows is decided by what was asked, not by
        # self._chain_id, which another thread may have set since
        asked = list(asked)
        if asked and asked[0] == ("eth_chainId", []):
            ok, cid = rows.pop(0)
            asked.pop(0)
            if not ok:
                raise cid
            self._check_chain(int(cid, 16))
        from ..chain.send import GENESIS_REQUEST

        if asked and asked[0] == GENESIS_REQUEST:  # and the latest block (_connect_requests)
            self._take_chain_seen([{"result": v} if good else {} for good, v in rows[:2]])
            rows = rows[2:]
        ok, cfg = rows.pop(0)
        if not ok:
            addr = self._mgr.address
            (code,) = self._values(self._batch([("eth_getCode", [addr, "latest"])],
                                               "code lookup"))
            if code in (None, "", "0x"):
                raise NoContractError(addr)
            raise NoContractError(addr, "not an AdvancedSessionManager (getConfig() failed)")
        self._config_raw = tuple(cfg)
        if self._symbol is None:
            hit = self._cached_token()
            if hit is not None and hit.get("token") == self._config_raw[1]:
                self._symbol = hit["symbol"]
                if hit.get("router") != str(self._config_raw[0]):  # an entry without it
                    self._remember_token(self._config_raw[1], self._symbol)

    def _connect(self, also: Sequence[Any] = (), what: Any = "read") -> list:
        """Chain id and getConfig() in one round trip, with ``also`` (reads that need only the
        manager's address) riding along; returns the results of ``also``."""
        head = self._connect_requests()
        labels = what if isinstance(what, str) else ["getConfig()"] * len(head) + list(what)
        rows = self._batch(head + list(also), labels)
        self._take_connect(rows[:len(head)], head)
        return self._values(rows[len(head):])

    @property
    def decimals(self) -> int:
        return int(self._config_tuple()[2])

    @property
    def token(self):
        if self._token is None:
            self._token = contract_at(self._config_tuple()[1], "ERC20")
        return self._token

    @property
    def symbol(self) -> str:
        if self._symbol is None:
            self._calls_and_symbol([], "symbol()")
        return self._symbol

    def _symbol_requests(self) -> list:
        """[symbol()] while the symbol is unknown (to ride in a batch; see ``_take_symbol``)."""
        if self._symbol is not None or not self.settings.contract:
            return []
        return [self.token.call("symbol")]

    def _take_symbol(self, rows: list) -> None:
        if rows:
            ok, sym = rows[0]
            self._symbol = str(sym)[:16] if ok else "tokens"  # symbol() is optional in ERC-20
            if ok and self._config_raw is not None:
                self._remember_token(self._config_raw[1], self._symbol)

    # NOTE: the fee token's address and symbol are remembered per manager between runs, so a
    # read needs no second round trip for symbol() (the token is only known from getConfig()).
    # Every run still reads getConfig(): a cached entry is used only when its token is the one
    # getConfig() names, on the same chain. A cache that cannot be read or written is no cache.
    def _state_path(self) -> Optional[str]:
        """The state directory, or None when this client keeps no state."""
        if self._state is False:
            return None
        if self._state is None:
            from ..chain.journal import state_path

            return state_path()
        return os.path.expanduser(os.fspath(self._state))

    def _cached_token(self) -> Optional[dict]:
        entry = self._hint("tokens.json", self.manager_address)
        if not isinstance(entry, dict) or not isinstance(entry.get("symbol"), str):
            return None
        if self._chain_id is not None and entry.get("chain") != self._chain_id:
            return None
        return entry

    def _remember_token(self, token: str, symbol: str) -> None:
        # the router too: a request's routing reads ride in its first batch (Requests)
        self._remember("tokens.json", self.manager_address,
                       {"chain": self._chain_id, "token": token, "symbol": symbol,
                        "router": str(self._config_raw[0])})

    def _known_router(self) -> Optional[str]:
        """The DTN router without a read: getConfig()'s once connected, else the one the token
        cache names for this manager (None: not known)."""
        if self._config_raw is not None:
            return str(self._config_tuple()[0])
        r = (self._cached_token() or {}).get("router")
        return r if isinstance(r, str) and r else None

    def _state_file(self, name: str) -> Optional[str]:
        """The state dir's file ``name``, None when no state is kept or none can be."""
        try:
            d = self._state_path()
        except (OSError, DtnsessError):  # no state dir to be had: no hints
            return None
        return None if d is None else os.path.join(d, name)

    def _hint(self, name: str, key: str) -> Any:
        """``key`` of the state file ``name`` (None: no state dir, no file, no such key)."""
        from ..chain.journal import read_json

        path = self._state_file(name)
        return None if path is None else read_json(path).get(key)

    def _remember(self, name: str, key: str, value: Any) -> None:
        """Set ``key`` in the state file ``name`` (a JSON object; journal.update_json)."""
        from ..chain.journal import update_json

        def change(data: dict) -> bool:
            if data.get(key) == value:
                return False
            data[key] = value
            return True

        path = self._state_file(name)
        if path is not None:
            update_json(path, change)

    # NOTE: the session this key's last request went to, per chain and manager, so that the
    # next request's first batch can read it along (a hint only: the contract's choice is read
    # in the same batch, and a miss costs the read it saves). Unreadable: no hint.
    def _session_hint_key(self, chain: Optional[int]) -> str:
        return f"{chain}/{self.manager_address}/{self.address}"

    def _cached_session(self, chain: Optional[int]) -> Optional[int]:
        sid = self._hint("sessions.json", self._session_hint_key(chain))
        return sid if isinstance(sid, int) and not isinstance(sid, bool) and sid > 0 else None

    def _remember_session(self, sid: int) -> None:
        self._remember("sessions.json", self._session_hint_key(self._chain_id), int(sid))

    @property
    def router(self):
        if self._router is None:
            self._router = contract_at(self._config_tuple()[0], "router")
        return self._router

    def amount(self, units: int) -> Amount:
        return Amount(int(units), self.decimals, self.symbol)

    def parse(self, value: Any, what: str = "amount", allow_zero: bool = False) -> int:
        """An exact amount of the fee token in base units (see ``units.parse_amount``)."""
        return parse_amount(value, self.decimals, what=what, allow_zero=allow_zero)

    def _event_abis(self) -> list:
        from ..artifacts import load_artifact

        return [load_artifact("AdvancedSessionManager")["abi"], load_artifact("IDtnAi")["abi"],
                ERC20_ABI]

    def _events(self, res, name: str, address: Optional[str] = None) -> list:
        addr = address or self.manager.address
        return [e for e in res.events if e.name == name and e.address == addr]

    def owner(self) -> str:
        return self._calls([self._mgr.call("owner")], "owner()")[0]

    def config(self) -> ConfigView:
        from .readviews import ConfigView

        c = self._config_tuple()
        (owner,) = self._calls_and_symbol([self._mgr.call("owner")], "owner()")
        a = self.amount
        return ConfigView(
            manager=self.manager.address, owner=owner, ai=c[0], fee_token=c[1],
            token_symbol=self.symbol, token_decimals=int(c[2]), min_session_balance=a(c[3]),
            max_session_age=int(c[4]), session_pool_size=int(c[5]), pool_length=int(c[6]),
            fee_per_byte_req=a(c[7]), fee_per_byte_res=a(c[8]), total_fee_per_res=a(c[9]),
            request_timeout=int(c[10]), active_count=int(c[11]), grant_duration=int(c[12]),
        )

    @staticmethod
    def _requests(reads: Sequence[Any], block: Any = "latest") -> list:
        out = []
        for r in reads:
            if isinstance(r, tuple):
                out.append(r)
            else:
                out.append(r.request(block))
        return out

    def _rows(self, reads: Sequence[Any], resps: Sequence[dict], what: Any) -> list:
        """``(ok, value)`` per read: the decoded result, or the DtnsessError it failed with."""
        from ..chain import send as tx

        ctx = self._read_ctx()
        out = []
        for i, (r, resp) in enumerate(zip(reads, resps)):
            label = what if isinstance(what, str) else what[i]
            if "error" in resp or "result" not in resp:
                out.append((False, tx.response_error(ctx, resp, label)))
            elif isinstance(r, tuple):
                out.append((True, resp["result"]))
            else:
                try:
                    out.append((True, tx._decode_return(ctx, r, resp["result"])))
                except Exception as exc:  # e.g. "0x" from an address without code
                    out.append((False, tx.to_rpc_error(exc, self.settings.rpc_url)))
        return out

    def _batch(self, reads: Sequence[Any], what: Any, block: Any = "latest") -> list:
        from ..chain import send as tx

        if not reads:
            return []
        resps = tx.rpc_batch(self._read_ctx(), self._requests(reads, block), "read")
        return self._rows(reads, resps, what)

    @staticmethod
    def _values(rows: list) -> list:
        for ok, v in rows:
            if not ok:
                raise v
        return [v for _, v in rows]

    def _calls(self, fns: Sequence[Any], what: Any) -> list:
        """The results of several reads, in order, in one round trip; the first failed read
        raises its error. ``what``: one label, or one per read. The first batch of a run also
        carries the chain id and getConfig() (``_connect``)."""
        if self._config_raw is None and self.settings.contract:
            return self._connect(fns, what)
        return self._values(self._batch(fns, what))

    def _calls_and_symbol(self, fns: Sequence[Any], what: Any) -> list:
        """``_calls`` with the token's symbol() riding along while it is unknown."""
        self._config_tuple()
        sym = self._symbol_requests()
        labels = what if isinstance(what, str) else list(what) + ["symbol()"]
        rows = self._batch(list(fns) + sym, labels)
        self._take_symbol(rows[len(fns):])
        return self._values(rows[:len(fns)])
