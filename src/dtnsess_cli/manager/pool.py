"""The session pool: offers, grants, taking and giving back a pooled session.
"""

from __future__ import annotations


from ..errors import DtnsessError, InputError, NotAuthorizedError
from ..units import format_amount
from .base import _writes
from .views import WriteResult

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

# the latest block, read in the same batch: grant expiry is the chain's clock, not ours
LATEST_BLOCK = ("eth_getBlockByNumber", ["latest", False])
# expired grants `pool status` lists at most (getFromPool hands them out oldest first)
EXPIRED_PEEK = 50


class Pool:
    """The session pool."""

    def pool_status(self) -> dict:
        """The pool, every offer (pooled sessions, the caller's own offered ones and those
        whose grants expired, taken or not) with its taker, budget and grant expiry, and the
        caller's own grant (2 round trips)."""
        m = self._mgr
        try:
            me = self.address
        except DtnsessError:  # no key: the pool alone
            me = None
        reads = [LATEST_BLOCK, m.call("getPoolStatus"), m.call("getPoolSessions"),
                 m.call("getExpiredGrants", EXPIRED_PEEK)]
        if me:
            reads += [m.call("getUserActiveSessions", me), m.call("getGrant", me)]
        got = self._calls(reads, ["latest block", "getPoolStatus", "getPoolSessions",
                                  "getExpiredGrants", "getUserActiveSessions",
                                  "getGrant"][:len(reads)])
        now = int(got[0]["timestamp"], 16)
        (size, max_size), ids = got[1], [int(i) for i in got[2]]
        expired = [int(i) for i in got[3]]
        own = [int(i) for i in got[4]] if me else []
        cands = list(dict.fromkeys(ids + expired + own))
        rows = self._calls_and_symbol([m.call("getPoolOffer", i) for i in cands]
                                      + ([m.call("getSessions", cands)] if cands else []),
                                      "getPoolOffer")
        owners = {int(v[0]): v[1] for v in rows[-1]} if cands else {}
        offers = []
        for sid, (offered, taker, limit, nodes, expires) in zip(cands, rows):
            if not offered:
                continue
            offers.append({"session_id": sid, "owner": owners.get(sid), "pooled": sid in ids,
                           "taker": None if int(taker, 16) == 0 else taker,
                           "grant_limit": self.amount(limit), "allow_node_routing": bool(nodes),
                           **self._expiry(expires, now, "grant_")})
        return {"pool_size": int(size), "max_size": int(max_size), "sessions": ids,
                "offers": offers, "grant": self._grant_dict(got[5], now) if me else None}

    @staticmethod
    def _expiry(expires_at: int, now: int, prefix: str = "") -> dict:
        """A grant's expiry as the chain's clock sees it (the latest block's time): the
        contract refuses a grant's requests from that second on."""
        at = int(expires_at) or None
        return {f"{prefix}expires_at": at, f"{prefix}expired": at is not None and now >= at}

    def _grant_dict(self, row, now: int) -> Optional[dict]:
        """getGrant's row as a dict, or None when there is no grant."""
        sid, remaining, nodes, expires = row
        if not int(sid):
            return None
        return {"session_id": int(sid), "remaining": self.amount(remaining),
                "allow_node_routing": bool(nodes), **self._expiry(expires, now)}

    @_writes
    def add_to_pool(self, session_id: int, limit: Optional[str] = None,
                    allow_nodes: bool = False) -> WriteResult:
        """addToPool (default grant limit: 10 answers' maximum fee; takers route by trust
        namespace only), or addToPoolWithLimit with ``limit`` tokens and/or ``allow_nodes``."""
        s = self._owned_active(session_id)
        if s.pooled:
            raise InputError("session", str(session_id), "already in the pool")
        if s.closing:
            raise InputError("session", str(session_id), "the session is closing")
        ((size, max_size),) = self._calls([self._mgr.call("getPoolStatus")],
                                          "getPoolStatus")
        if size >= max_size:
            raise InputError("session", str(session_id), f"the pool is full ({size}/{max_size})")
        fee = int(self._config_tuple()[9])
        units = 10 * fee if limit is None else self.parse(limit, "--limit")
        if units >= 2**96:  # the contract stores a grant in 96 bits
            raise InputError("--limit", limit, "too large")
        if units < fee:
            raise InputError("--limit", limit, f"below one answer's maximum fee "
                             f"({format_amount(fee, self.decimals)} {self.symbol}): a taker could "
                             f"not make a single request")
        m = self.manager
        shown = f"{format_amount(units, self.decimals)} {self.symbol}"
        r = WriteResult("pool-add", dry_run=self.settings.dry_run)
        if limit is None and not allow_nodes:
            fn = m.call("addToPool", session_id)
        else:
            fn = m.call("addToPoolWithLimit", session_id, units, allow_nodes)
        r.txs.append(self._send(fn, description=f"add session {session_id} to the pool (grant "
                                                f"limit {shown}" + (", node routing allowed"
                                                                    if allow_nodes else "") + ")"))
        r.data.update({"session_id": session_id, "grant_limit": self.amount(units),
                       "allow_node_routing": allow_nodes})
        return r

    def _pool_offer(self, session_id: int) -> dict:
        ((offered, taker, limit, nodes, _),) = self._calls(
            [self._mgr.call("getPoolOffer", session_id)], "getPoolOffer")
        taker = None if int(taker, 16) == 0 else taker
        return {"offered": bool(offered), "taker": taker, "grant_limit": int(limit),
                "allow_node_routing": bool(nodes)}

    def _grant_ended(self, r: WriteResult, res) -> None:
        reasons = {0: "released", 1: "revoked", 2: "exhausted", 3: "removed"}
        r.data["grants_ended"] = [{"session_id": int(e.args["sessionId"]),
                                   "user": e.args["user"],
                                   "reason": reasons.get(int(e.args["reason"]),
                                                         str(e.args["reason"]))}
                                  for e in self._events(res, "GrantEnded")]

    @_writes
    def remove_from_pool(self, session_id: int) -> WriteResult:
        """removeFromPool: the session leaves the pool and its taker's grant ends."""
        s = self._session_view(self._session_tuple(session_id), symbol=self._symbol or "")
        if s.owner != self.address:
            raise NotAuthorizedError(f"session {session_id} belongs to {s.owner}, not to "
                                     f"{self.address}")
        offer = self._pool_offer(session_id)
        if not offer["offered"]:
            raise InputError("session", str(session_id), "not offered in the pool")
        r = WriteResult("pool-remove", dry_run=self.settings.dry_run)
        res = self._send(self.manager.call("removeFromPool", session_id),
                         description=f"remove session {session_id} from the pool"
                         + (f" (ends the grant of {offer['taker']})" if offer["taker"] else ""))
        r.txs.append(res)
        r.data.update({"session_id": session_id, "taker": offer["taker"]})
        if not res.dry_run:
            self._grant_ended(r, res)
        return r

    @_writes
    def revoke_grant(self, session_id: int, user: str) -> WriteResult:
        """revokeGrant: ``user``'s grant on the session ends; the session stays out of the pool
        (the revoked taker could take it straight back) until its owner adds it again."""
        who = self.address_arg(user, "taker address")
        s = self._session_view(self._session_tuple(session_id), symbol=self._symbol or "")
        if s.owner != self.address:
            raise NotAuthorizedError(f"session {session_id} belongs to {s.owner}, not to "
                                     f"{self.address}")
        offer = self._pool_offer(session_id)
        if offer["taker"] != who:
            raise InputError("taker address", user, f"holds no grant on session {session_id}"
                             + (f" (its taker is {offer['taker']})" if offer["taker"] else ""))
        r = WriteResult("pool-revoke", dry_run=self.settings.dry_run)
        res = self._send(self.manager.call("revokeGrant", session_id, who),
                         description=f"revoke {who}'s grant on session {session_id}")
        r.txs.append(res)
        r.data.update({"session_id": session_id, "user": who})
        if not res.dry_run:
            self._grant_ended(r, res)
            r.data["pooled"] = self._is_pooled(session_id)
        return r

    def _is_pooled(self, session_id: int) -> bool:
        (pooled,) = self._calls([self._mgr.call("isPooled", session_id)], "isPooled")
        return bool(pooled)

    def grant(self, user: Optional[str] = None) -> Optional[dict]:
        """The pool grant ``user`` (default: the caller) holds, or None; an expired grant
        (``expired``) is listed until ``pool get`` ends it."""
        who = self.address_arg(user, "user address") if user else self.address
        block, row = self._calls([LATEST_BLOCK, self._mgr.call("getGrant", who)],
                                 ["latest block", "getGrant"])
        return self._grant_dict(row, int(block["timestamp"], 16))

    @_writes
    def release_grant(self) -> WriteResult:
        """releaseGrant: the caller's grant ends (the session returns to the pool). Holding
        none is not an error: nothing is sent."""
        r = WriteResult("pool-release", dry_run=self.settings.dry_run)
        g = self.grant()
        r.data["grant"] = g
        if g is None:
            r.data["note"] = "you hold no pool grant"
            return r
        res = self._send(self.manager.call("releaseGrant"),
                         description=f"release your grant on session {g['session_id']}")
        r.txs.append(res)
        r.data["session_id"] = g["session_id"]
        if not res.dry_run:
            self._grant_ended(r, res)
            r.data["pooled"] = self._is_pooled(g["session_id"])
        return r

    @_writes
    def get_from_pool(self) -> WriteResult:
        m = self._mgr
        block, (size, _), held, expired = self._calls(
            [LATEST_BLOCK, m.call("getPoolStatus"), m.call("getGrant", self.address),
             m.call("getExpiredGrants", 1)],
            ["latest block", "getPoolStatus", "getGrant", "getExpiredGrants"])
        mine = self._grant_dict(held, int(block["timestamp"], 16))
        # one live grant per address (the contract: AlreadyHoldsGrant); an expired one ends here
        if mine and not mine["expired"]:
            raise InputError("pool", "get", f"you already hold a pool grant (session "
                             f"{mine['session_id']})",
                             hint="one pooled session per address: `dtnsess pool release` first")
        if not size and not expired and not mine:
            raise InputError("pool", "get", "the pool is empty",
                             hint="no session is offered and no grant has expired")
        r = WriteResult("pool-get", dry_run=self.settings.dry_run)
        res = self._send(self.manager.call("getFromPool"), description="take a session from the pool")
        r.txs.append(res)
        ev = self._events(res, "SessionTakenFromPool")
        r.data["session_id"] = int(ev[0].args["sessionId"]) if ev else (
            int(res.return_value) if res.return_value is not None else None)
        if not res.dry_run:
            r.data["grant"] = self.grant()
        return r
