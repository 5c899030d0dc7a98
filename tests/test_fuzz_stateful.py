"""Stateful fuzzing of AdvancedSessionManager on Anvil (hypothesis RuleBasedStateMachine).

Three users and an attacker (who also runs a DTN node) drive random sessions, requests (with
valid and invalid routing, callback gas and prompt sizes), answers (success, failure, and callbacks
starved of gas), settling, closing, the pool, cleanup, withdrawals, bounded configuration changes
by the contract owner (and attempts by the attacker), token donations and sweeps, a fee-on-transfer
switch and time travel. Reverting actions are fine: they are mined and the machine goes on.

After every step the invariants of docs/security.md ("Fuzz invariants") are checked on the chain.
Every example starts from an evm_snapshot of one deployment (the session's system6) and reverts to
it at the end.

Budget: DTNSESS_FUZZ_EXAMPLES (default 15) examples of at most DTNSESS_FUZZ_STEPS (default 25)
steps, derandomized unless the budget is set (`make fuzz`). The run's totals (steps,
transactions, reverts, answers, starved callbacks, ...) are printed in the terminal summary;
DTNSESS_FUZZ_DEBUG=1 adds the revert reasons and how often each rule ran.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from eth_utils import keccak
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from web3.logs import DISCARD

from dtnsess_cli.devnet.localdtn import SYSTEM_TRUST_NAMESPACE, deploy, respond_call, transact
from dtnsess_cli.chain.errors import revert_data_of
from helpers import CALLBACK_GAS, REQ_PENDING, decoder, latest_ts, rpc, tx_revert

EXAMPLES = int(os.environ.get("DTNSESS_FUZZ_EXAMPLES", "15"))
STEPS = int(os.environ.get("DTNSESS_FUZZ_STEPS", "25"))
# CI: the same examples every run; `make fuzz` (a larger budget) explores new ones each run
# (replay one with pytest's --hypothesis-seed=N).
DERANDOMIZE = "DTNSESS_FUZZ_EXAMPLES" not in os.environ
DEBUG = os.environ.get("DTNSESS_FUZZ_DEBUG") == "1"  # count revert reasons in the summary

TX_GAS = 8_000_000
ANY, ALL = 0, 1
ATTACKER_NODE = "node.attacker.evil"
UNKNOWN_NODE_ID = keccak(text="node.nobody.ghost")
UNKNOWN_NAMESPACE = keccak(text="trust.nobody.serves")

# Routing variants (namespaces, node ids, redundancy, confidence, aggregation). "sys"/"evil" stand
# for the registered system node and the attacker's node.
ROUTES = [
    ([SYSTEM_TRUST_NAMESPACE], [], 1, 8, ANY),  # the default
    ([UNKNOWN_NAMESPACE], [], 1, 8, ANY),  # valid, but no node serves it: never answered
    ([], ["sys"], 1, 8, ANY),
    ([], ["evil"], 1, 8, ANY),  # a taker paying its own node
    ([], [UNKNOWN_NODE_ID], 1, 8, ANY),  # valid, never answered
    ([], ["sys", "evil"], 2, 8, ANY),  # invalid: redundancy 2 (the real router cannot complete it)
    ([SYSTEM_TRUST_NAMESPACE], [], 1, 8, ALL),  # invalid: aggregation
    ([], [], 1, 8, ANY),  # invalid: empty
    ([SYSTEM_TRUST_NAMESPACE], [], 0, 8, ANY),  # invalid: redundancy 0
    ([], ["sys"], 2, 8, ANY),  # invalid: redundancy above named nodes
    ([SYSTEM_TRUST_NAMESPACE], [], 1, 11, ANY),  # invalid: confidence
]

ACTOR = st.integers(0, 3)  # users 0-2, 3 = the attacker
# A session: < 24 one of the actor's own (when it has one), < 36 any known one, else an unknown id.
SID = st.integers(0, 40)
REQ = st.integers(0, 10_000)  # index into the requests made so far

STATS: Counter = Counter()


def step(**strategies):
    """@rule that counts the steps run (printed in the summary)."""

    def deco(f):
        @functools.wraps(f)
        def counted(self, **kw):
            STATS["steps"] += 1
            if DEBUG:
                STATS[f"rule:{f.__name__}"] += 1
            return f(self, **kw)

        return rule(**strategies)(counted)

    return deco


@dataclass
class Ctx:
    w3: object
    system: object
    deployer: str
    worker: str
    users: list
    attacker: str
    everyone: list
    evil_node: bytes
    supply0: int
    streak: object


CTX: Ctx | None = None


class ManagerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        c = CTX
        self.c = c
        self.w3 = c.w3
        self.s = c.system
        self.m = c.system.manager.functions
        self.unit = c.system.unit
        self.actors = c.users + [c.attacker]
        self.grantees = self.actors + [c.streak.address]  # who may hold a pool grant
        self.snapshot = rpc(self.w3, "evm_snapshot")
        self.rids: list[tuple[bytes, int, str, int]] = []  # (request id, session, user, DTN session)
        self.starved: set[bytes] = set()  # answered on the router, callback failed
        self.answered: set[bytes] = set()
        self.answerable: list[bytes] = []
        self.fee_burned = False  # an outgoing transfer paid MockUSDT's fee (burned)
        self.actor: str | None = None
        self.action = "init"
        self.prev = None
        self.attempts: dict[int, int] = {}  # session -> time of its owner's first blocked close
        self.attempt_timeout = None
        STATS["examples"] += 1

    def teardown(self):
        rpc(self.w3, "evm_revert", self.snapshot)

    # ------------------------------------------------------------------ helpers

    def _sid(self, i: int, a: int | None = None) -> int:
        n = self.m.nextSessionId().call() - 1
        if i >= 36 or n == 0:
            return n + 1 + i % 3  # unknown
        if i < 24 and a is not None:
            mine = self.m.getUserSessions(self.actors[a]).call()
            if mine:
                return mine[i % len(mine)]
        return 1 + i % n

    def _send(self, action: str, sender: str, fn, value: int = 0, gas: int = TX_GAS):
        """Mine `fn` from `sender` (no estimate: a revert is mined too); return the receipt."""
        self.action, self.actor = action, sender
        STATS["transactions"] += 1
        tx = fn.transact({"from": sender, "value": value, "gas": gas})
        r = self.w3.eth.wait_for_transaction_receipt(tx, timeout=60)
        if r["status"] != 1:
            STATS["reverted"] += 1
            if DEBUG:
                STATS[f"revert:{action}:{tx_revert(self.w3, tx).reason}"] += 1
        else:
            STATS[f"ok:{action}"] += 1
        return r

    def _step(self, action: str, actor: str | None = None):
        self.action, self.actor = action, actor

    def _node(self, name):
        return {"sys": self.s.node_id, "evil": self.c.evil_node}.get(name, name)

    # ------------------------------------------------------------------ sessions

    @initialize(tokens=st.lists(st.sampled_from([10, 12, 20, 50]), min_size=3, max_size=6),
                pooled=st.integers(0, 5), limit=st.sampled_from([None, 1, 3]), nodes=st.booleans(),
                asks=st.lists(st.tuples(st.integers(0, 5), st.sampled_from([0, 5_000, CALLBACK_GAS, CALLBACK_GAS])),
                              min_size=2, max_size=6))
    def sessions_to_start_with(self, tokens, pooled, limit, nodes, asks):
        """A few sessions (users and attacker), one pooled, and requests in them (valid routing; some
        no node serves, some with starved callbacks), so short runs reach the interesting states."""
        for k, t in enumerate(tokens):
            self._send("create", self.actors[k % 4], self.m.createSession(t * self.unit))
        sid = 1 + pooled % len(tokens)
        owner = self.actors[(sid - 1) % 4]
        fee = self.m.totalFeePerRes().call()
        fn = self.m.addToPool(sid) if limit is None else self.m.addToPoolWithLimit(sid, limit * fee, nodes)
        self._send("addToPool", owner, fn)
        for k, (route, value) in enumerate(asks):
            n = k % len(tokens)
            self._ask(n % 4, "session", 1 + n, route, value, 40, True)

    @step(a=ACTOR, tokens=st.sampled_from([0, 1, 5, 10, 20, 50]), odd=st.booleans())
    def create(self, a, tokens, odd):
        self._send("create", self.actors[a], self.m.createSession(tokens * self.unit + int(odd)))

    @step(a=ACTOR)
    def get_or_create(self, a):
        self._send("getOrCreate", self.actors[a], self.m.getOrCreateSession())

    @step(a=ACTOR, i=SID, tokens=st.sampled_from([0, 1, 10]))
    def renew(self, a, i, tokens):
        sid = self._sid(i, a)
        if self._send("renew", self.actors[a], self.m.renewSession(sid, tokens * self.unit))["status"]:
            self.attempts.pop(sid, None)  # the owner renewed instead of closing: a new start

    @step(a=ACTOR, i=SID)
    def close(self, a, i):
        self._send("close", self.actors[a], self.m.closeSession(self._sid(i, a)))

    @step(a=ACTOR)
    def close_all(self, a):
        self._send("closeAll", self.actors[a], self.m.closeAllSessions())

    @step(a=ACTOR, i=SID)
    def begin_close(self, a, i):
        self._send("beginClose", self.actors[a], self.m.beginClose(self._sid(i, a)))

    # ------------------------------------------------------------------ requests and answers

    @step(
        a=ACTOR,
        mode=st.sampled_from(["auto", "routing", "session"]),
        i=SID,
        route=st.integers(0, len(ROUTES) - 1),
        value=st.sampled_from([0, 5_000, CALLBACK_GAS, CALLBACK_GAS]),
        size=st.sampled_from([1, 40, 400, 3000]),
        new_second=st.booleans(),
    )
    def request(self, a, mode, i, route, value, size, new_second):
        sid = self._sid(i, a) if mode == "session" else None
        self._ask(a, mode, sid, route, value, size, new_second)

    def _ask(self, a, mode, sid, route, value, size, new_second):
        ns, nodes, redundancy, confidence, agg = ROUTES[route]
        routing = (ns, [self._node(n) for n in nodes], redundancy, confidence, agg)
        prompt = "p" * size
        model = self.s.model
        if new_second:  # DTN request ids have one-second resolution; same-second ones collide
            rpc(self.w3, "evm_setNextBlockTimestamp", latest_ts(self.w3) + 1)
        if mode == "auto":
            fn = self.m.makeAIRequest(prompt, model, ns)
        elif mode == "routing":
            fn = self.m.makeAIRequestWithRouting(prompt, model, routing)
        else:
            fn = self.m.makeAIRequestInSession(sid, prompt, model, routing)
        r = self._send("request", self.actors[a], fn, value=value)
        # One of our nodes may answer it (else it stays pending: the locking attack of finding 1).
        if mode == "auto":
            ours = not ns or SYSTEM_TRUST_NAMESPACE in ns
        else:
            ours = bool({"sys", "evil"} & set(nodes)) if nodes else SYSTEM_TRUST_NAMESPACE in ns
        self._track(r, ours)

    def _track(self, r, answerable: bool):
        for ev in self.s.manager.events.AIRequestSubmitted().process_receipt(r, errors=DISCARD):
            e = ev["args"]
            self.rids.append((e["requestId"], e["sessionId"], e["user"], e["dtnSessionId"]))
            if answerable:
                self.answerable.append(e["requestId"])
            if self.m.getSession(e["sessionId"]).call()[1] != e["user"]:
                STATS["taker requests"] += 1

    # The attacker's contract (StreakAttacker): takes from the pool, then settles its last request
    # and sends the next one in one transaction, with no callback gas (issue 14).
    @step()
    def streak_take(self):
        self._send("streakTake", self.c.attacker, self.c.streak.functions.take())

    @step(i=SID)
    def streak_settle_and_request(self, i):
        held = self.m.poolGrant(self.c.streak.address).call()  # mostly the session it holds
        sid = held if held and i % 4 else self._sid(i)
        fn = self.c.streak.functions.settleAndRequest(sid, self.s.model, ROUTES[0])
        self._track(self._send("streak", self.c.attacker, fn), True)

    @step(j=REQ, kind=st.sampled_from(["success", "failure", "tight"]), size=st.integers(0, 600),
          tight_gas=st.integers(250_000, 500_000))
    def answer(self, j, kind, size, tight_gas):
        # Mostly requests one of our nodes can answer; sometimes any (the router refuses those).
        pick = self.answerable if j % 5 else [r[0] for r in self.rids]
        open_ = [rid for rid in pick if rid not in self.answered]
        if not open_:
            return self._step("answer(none)")
        rid = open_[j % len(open_)]
        router = self.s.router
        stored = router.functions.getRequest(rid).call()
        ns, nodes = stored[7][0], stored[7][1]
        mine = {self.s.node_id: self.c.worker, self.c.evil_node: self.c.attacker}
        node = next((n for n in nodes if n in mine), None) if nodes else (
            self.s.node_id if SYSTEM_TRUST_NAMESPACE in ns else None)
        node = node or self.s.node_id  # not eligible: the router refuses it
        fn = respond_call(router, rid, node=node, stored=stored,
                          text=None if kind == "failure" else "a" * size,
                          failure="overloaded" if kind == "failure" else None)
        r = self._send("answer", mine[node], fn, gas=tight_gas if kind == "tight" else TX_GAS)
        if r["status"] == 1:
            self.answered.add(rid)
            STATS["answered"] += 1
            failed = [*router.events.SuccessCallbackFailed().process_receipt(r, errors=DISCARD),
                      *router.events.FailureCallbackFailed().process_receipt(r, errors=DISCARD)]
            if failed:
                self.starved.add(rid)
                STATS["callback failed"] += 1
            if DEBUG:
                STATS[f"answer:{kind}:cbgas={stored[4]}:failed={bool(failed)}"] += 1

    @step(a=ACTOR, j=REQ)
    def settle(self, a, j):
        if not self.rids:
            return self._step("settle(none)")
        self._send("settle", self.actors[a], self.m.settleRequest(self.rids[j % len(self.rids)][0]))

    @step(a=ACTOR, picks=st.lists(REQ, max_size=4), junk=st.booleans())
    def settle_many(self, a, picks, junk):
        ids = [self.rids[j % len(self.rids)][0] for j in picks] if self.rids else []
        if junk:
            ids.append(keccak(text=f"junk{len(picks)}"))
        self._send("settleMany", self.actors[a], self.m.settleRequests(ids))

    # ------------------------------------------------------------------ pool

    @step(a=ACTOR, i=SID, limit=st.sampled_from([None, 0, 1, 3, 10]), nodes=st.booleans())
    def add_to_pool(self, a, i, limit, nodes):
        sid = self._sid(i, a)
        if limit is None:
            fn = self.m.addToPool(sid)
        else:
            fn = self.m.addToPoolWithLimit(sid, limit * self.m.totalFeePerRes().call(), nodes)
        self._send("addToPool", self.actors[a], fn)

    @step(a=ACTOR)
    def get_from_pool(self, a):
        self._send("getFromPool", self.actors[a], self.m.getFromPool())

    @step(a=ACTOR, asks=st.lists(st.tuples(st.sampled_from(["auto", "session"]), st.integers(0, 5),
                                        st.sampled_from([0, 5_000, CALLBACK_GAS])), min_size=1, max_size=4))
    def take_and_use(self, a, asks):
        """A taker (often the attacker) takes a pooled session and spends its grant at once: valid
        routing, its own node, nodes nobody runs; until the grant is exhausted or refused."""
        self._send("getFromPool", self.actors[a], self.m.getFromPool())
        sid = self.m.poolGrant(self.actors[a]).call()
        for mode, route, value in asks:
            self._ask(a, mode, sid, route, value, 40, True)
        self.action, self.actor = "take and use", self.actors[a]

    @step(a=ACTOR)
    def release_grant(self, a):
        self._send("releaseGrant", self.actors[a], self.m.releaseGrant())

    def _granted(self, a: int, i: int) -> tuple[int, str] | None:
        """One of the actor's sessions some taker holds a grant on, and the taker."""
        held = []
        for sid in self.m.getUserActiveSessions(self.actors[a]).call():
            taker = self.m.getPoolOffer(sid).call()[1]
            if int(taker, 16):
                held.append((sid, taker))
        return held[i % len(held)] if held else None

    @step(a=ACTOR, i=SID, t=ACTOR, exact=st.booleans())
    def revoke_grant(self, a, i, t, exact):
        sid, user = self._sid(i, a), self.actors[t]
        if exact and (found := self._granted(a, i)):  # the owner revokes the taker it sees
            sid, user = found
        self._send("revokeGrant", self.actors[a], self.m.revokeGrant(sid, user))

    @step(a=ACTOR, i=SID, exact=st.booleans())
    def remove_from_pool(self, a, i, exact):
        sid = self._sid(i, a)
        if exact:
            offered = [x for x in self.m.getUserActiveSessions(self.actors[a]).call()
                       if self.m.getPoolOffer(x).call()[0]]
            sid = offered[i % len(offered)] if offered else sid
        self._send("removeFromPool", self.actors[a], self.m.removeFromPool(sid))

    # ------------------------------------------------------------------ maintenance and money

    @step(a=ACTOR, n=st.sampled_from([None, 1, 2]))
    def cleanup(self, a, n):
        fn = self.m.cleanupOldSessions() if n is None else self.m.cleanupOldSessionsUpTo(n)
        self._send("cleanup", self.actors[a], fn)

    @step(a=ACTOR, data=st.sampled_from([b"", b"\xff" * 32, b"junk"]))
    def upkeep(self, a, data):
        """A keeper's round by anyone, with any performData: checkUpkeep says what
        getIdleSessions says, and performUpkeep is cleanup by another name."""
        needed, _ = self.m.checkUpkeep(b"").call()
        assert needed == bool(self.m.getIdleSessions(1).call()), "checkUpkeep != idle sessions"
        self._send("cleanup", self.actors[a], self.m.performUpkeep(data))

    @step(a=ACTOR)
    def withdraw(self, a):
        self._send("withdraw", self.actors[a], self.m.withdrawRefunds())

    @step(tokens=st.sampled_from([1, 7]))
    def donate(self, tokens):
        """Tokens sent straight to the manager: not owed to anyone, sweepable."""
        self._send("donate", self.c.attacker,
                   self.s.token.functions.transfer(self.s.manager.address, tokens * self.unit))

    @step(by_owner=st.booleans(), other_token=st.booleans())
    def sweep(self, by_owner, other_token):
        sender = self.c.deployer if by_owner else self.c.attacker
        token = self.s.router.address if other_token else self.s.token.address  # router: not a token
        self._send("sweep", sender, self.m.sweep(token, sender))

    @step(a=ACTOR, i=SID, what=st.sampled_from(["create", "renew", "close", "withdraw"]))
    def with_transfer_fee(self, a, i, what):
        """One action while MockUSDT charges a USDT-like 1% transfer fee (burned): tokens coming in
        short must be refused (FeeOnTransferToken); tokens going out may arrive short."""
        self._send("transferFee", self.c.deployer, self.s.token.functions.setTransferFeeBps(100))
        fn = {"create": lambda: self.m.createSession(20 * self.unit),
              "renew": lambda: self.m.renewSession(self._sid(i, a), 5 * self.unit),
              "close": lambda: self.m.closeSession(self._sid(i, a)),
              "withdraw": lambda: self.m.withdrawRefunds()}[what]()
        r = self._send(f"{what} with fee", self.actors[a], fn)
        if r["status"] == 1:
            self.fee_burned = True
        self._send("transferFee", self.c.deployer, self.s.token.functions.setTransferFeeBps(0))
        self.action, self.actor = f"{what} with fee", self.actors[a]

    # Settings in whole tokens (fees: thousandths of a token) and seconds; valid ones and each kind
    # of out-of-bounds value. The attacker tries them too (OwnableUnauthorizedAccount).
    CONFIGS = [(10, 3600, 5), (1, 86_400, 2), (30, 1800, 1), (10, 86_400, 0), (5, 7200, 3),
               (2 * 10**6, 3600, 5), (0, 3600, 5), (10, 400 * 86_400, 5), (10, 1, 5), (10, 86_400, 101)]
    FEES = [(1, 1, 1000), (10, 10, 500), (1, 1, 3000), (2, 2, 20), (2000, 0, 1000), (0, 0, 2_000_000), (0, 0, 0)]
    TIMEOUTS = [60, 900, 3600, 8 * 86_400, 0]

    @step(by_owner=st.sampled_from([True, True, True, False]), cfg=st.sampled_from(CONFIGS))
    def update_config(self, by_owner, cfg):
        sender = self.c.deployer if by_owner else self.c.attacker
        self._send("config", sender, self.m.updateConfig(cfg[0] * self.unit, cfg[1], cfg[2]))

    @step(by_owner=st.sampled_from([True, True, True, False]), fees=st.sampled_from(FEES))
    def set_fees(self, by_owner, fees):
        sender = self.c.deployer if by_owner else self.c.attacker
        self._send("fees", sender, self.m.setFees(*(f * self.unit // 1000 for f in fees)))

    @step(by_owner=st.sampled_from([True, True, True, False]), timeout=st.sampled_from(TIMEOUTS))
    def set_request_timeout(self, by_owner, timeout):
        sender = self.c.deployer if by_owner else self.c.attacker
        self._send("timeout", sender, self.m.setRequestTimeout(timeout))

    @step(a=ACTOR, n=st.sampled_from([None, 1]))
    def idle_then_cleanup(self, a, n):
        """Everything goes idle (maxSessionAge + 1 s), then anyone's cleanup credits the refunds."""
        rpc(self.w3, "evm_increaseTime", self.m.maxSessionAge().call() + 1)
        rpc(self.w3, "evm_mine")
        fn = self.m.cleanupOldSessions() if n is None else self.m.cleanupOldSessionsUpTo(n)
        self._send("cleanup", self.actors[a], fn)

    @step(dt=st.sampled_from(["1s", "1m", "timeout", "timeout+1", "age+1", "3h", "grant"]))
    def travel(self, dt):
        self._step(f"travel {dt}")
        cfg = self.m.getConfig().call()
        # "grant": every live grant expires (the next getFromPool hands expired ones on)
        seconds = {"1s": 1, "1m": 60, "timeout": cfg[10], "timeout+1": cfg[10] + 1,
                   "age+1": cfg[4] + 1, "3h": 3 * 3600, "grant": cfg[12]}[dt]
        rpc(self.w3, "evm_increaseTime", seconds)
        rpc(self.w3, "evm_mine")

    # Hypothesis picks among rules uniformly: requests and answers, where the money moves, get
    # more weight.
    request_2 = request
    request_3 = request
    streak_2 = streak_settle_and_request
    answer_2 = answer
    get_from_pool_2 = get_from_pool
    add_to_pool_2 = add_to_pool

    # ------------------------------------------------------------------ invariants

    def _read(self):
        w3, m, s = self.w3, self.m, self.s
        n = m.nextSessionId().call() - 1
        sids = list(range(1, n + 1))
        with w3.batch_requests() as b:
            for a in self.c.everyone + [s.manager.address, s.router.address]:
                b.add(s.token.functions.balanceOf(a))
            b.add(s.token.functions.totalSupply())
            b.add(m.totalClaimable())
            b.add(m.getActiveSessions(0, 10_000))
            b.add(m.getPoolSessions())
            b.add(m.getConfig())
            b.add(m.getSessions(sids))
            for a in self.actors:
                b.add(m.getUserActiveSessions(a))
            for a in self.grantees:
                b.add(m.getGrant(a))
            for sid in sids:
                b.add(m.getPoolOffer(sid))
            for a in self.c.everyone:
                b.add(m.claimableRefunds(a))
            out = b.execute()
        k = len(self.c.everyone) + 2
        st_ = {"balances": dict(zip(self.c.everyone + ["manager", "router"], out[:k]))}
        (st_["supply"], st_["claimable"], (active, total), st_["pool"], st_["config"],
         views) = out[k:k + 6]
        st_["active"], st_["active_total"] = list(active), total
        st_["views"] = {sid: v for sid, v in zip(sids, views)}
        rest = out[k + 6:]
        na = len(self.actors)
        st_["user_active"] = dict(zip(self.actors, [list(x) for x in rest[:na]]))
        ng = len(self.grantees)
        st_["grants"] = dict(zip(self.grantees, rest[na:na + ng]))
        st_["offers"] = dict(zip(sids, rest[na + ng:na + ng + len(sids)]))
        st_["claims"] = rest[na + ng + len(sids):]
        return st_

    @staticmethod
    def _owner_state(st_):
        """The fields only a session's owner may change (cleanup may deactivate idle sessions)."""
        out = {}
        for sid, v in st_["views"].items():
            offered, _taker, limit, nodes, _expires = st_["offers"][sid]
            # view: (id, owner, balance, lastUsed, active, requestCount, dtnSessionId, pending,
            #        lastRequestAt, pooled, hasDtnBalance, dtnBalance, closableAt, closing, pendingSince)
            out[sid] = {"owner": v[1], "active": v[4], "funded": v[2], "dtnSession": v[6],
                        "closing": v[13], "offered": offered, "grantLimit": limit, "nodeRouting": nodes}
        return out

    @invariant()
    def chain_invariants(self):
        st_ = self._read()
        views, cfg = st_["views"], st_["config"]
        timeout, pool_size = cfg[10], cfg[5]
        now = latest_ts(self.w3)
        where = f"after {self.action} by {self.actor}"

        # 1. tokens are conserved: every token is held by a known account or contract
        held = sum(st_["balances"].values())
        assert held == st_["supply"], f"{where}: {st_['supply'] - held} tokens left the known holders"
        if not self.fee_burned:
            assert st_["supply"] == self.c.supply0, f"{where}: supply changed without a transfer fee"
        # 2. the manager can pay every credited refund
        assert st_["balances"]["manager"] >= st_["claimable"], (
            f"{where}: manager holds {st_['balances']['manager']} < totalClaimable {st_['claimable']}")

        assert sum(st_["claims"]) == st_["claimable"], f"{where}: claimableRefunds do not add up to totalClaimable"

        # 3. active sets match the records
        active_ids = {sid for sid, v in views.items() if v[4]}
        assert len(st_["active"]) == st_["active_total"] == len(set(st_["active"])), f"{where}: active list"
        assert set(st_["active"]) == active_ids, f"{where}: getActiveSessions {st_['active']} != {active_ids}"
        for a, ids in st_["user_active"].items():
            mine = sorted(sid for sid in active_ids if views[sid][1] == a)
            assert ids == mine, f"{where}: getUserActiveSessions({a}) {ids} != {mine}"

        # 4. the pool is a subset of the active, not-closing sessions; grants are consistent
        pool = st_["pool"]
        assert len(pool) == len(set(pool)) <= max(pool_size, len(pool)), f"{where}: pool {pool}"
        for sid in pool:
            assert views[sid][4] and not views[sid][13], f"{where}: pooled session {sid} inactive/closing"
            assert views[sid][9], f"{where}: pooled {sid} but its view says not pooled"
            assert st_["offers"][sid][1] == "0x" + "0" * 40, f"{where}: pooled {sid} is also granted"
        for a, (gsid, remaining, nodes, expires) in st_["grants"].items():
            if gsid:
                assert views[gsid][4] and not views[gsid][13], f"{where}: {a} holds a grant on dead {gsid}"
                offered, taker, limit, offer_nodes, offer_expires = st_["offers"][gsid]
                assert taker == a, f"{where}: grant of {a} on {gsid} not recorded"
                assert remaining <= limit and nodes == offer_nodes, f"{where}: grant of {a} beyond the offer"
                assert expires == offer_expires > 0, f"{where}: grant of {a} expires {expires} != {offer_expires}"
        for sid, (offered, taker, _l, _n, _e) in st_["offers"].items():
            if int(taker, 16):
                assert st_["grants"].get(taker, (0,))[0] == sid, f"{where}: {sid} taker {taker} has no grant"
                assert offered

        # 5. pending counts match the router: a request counts while the manager has no outcome for
        #    it on the session's current DTN session; only a starved callback leaves one pending
        #    that the router has completed.
        current = [(rid, sid) for rid, sid, _u, dtn in self.rids if views[sid][4] and views[sid][6] == dtn]
        out = []
        if current:  # an empty JSON-RPC batch is an invalid request
            with self.w3.batch_requests() as b:
                for rid, _sid in current:
                    b.add(self.m.requests(rid))
                for rid, _sid in current:
                    b.add(self.s.router.functions.getRequest(rid))
                out = b.execute()
        statuses, stored = out[:len(current)], out[len(current):]
        pending = Counter()
        for (rid, sid), status, req in zip(current, statuses, stored):
            completed = req[6]
            if status[3] == REQ_PENDING:
                pending[sid] += 1
                assert not completed or rid in self.starved, (
                    f"{where}: {rid.hex()} completed on the router, callback ran, still pending")
            else:
                assert completed, f"{where}: {rid.hex()} has an outcome but the router never answered it"
        for sid in active_ids:
            v = views[sid]
            assert v[7] == pending[sid], f"{where}: session {sid} pendingRequests {v[7]} != {pending[sid]}"
            if v[7] == 0:
                assert v[12] == 0 and v[14] == 0, f"{where}: session {sid} deadline without pending"
            else:
                assert 0 < v[12] <= v[14] + timeout, f"{where}: session {sid} deadline {v[12]} too late"

        # 6. only owners changed their sessions' owner-only state
        state = self._owner_state(st_)
        if self.prev is not None:
            for sid, after in state.items():
                before = self.prev.get(sid)
                if before is None or before == after or self.actor == after["owner"]:
                    continue
                changed = {k for k in after if after[k] != before[k]}
                if self.action == "cleanup" and before["active"] and not after["active"]:
                    continue  # idle sessions are closed by anyone's cleanup
                # takers spend the offer's budget; nobody but the owner ever raises it
                assert after["grantLimit"] <= before["grantLimit"], f"{where}: {sid} budget rose"
                changed.discard("grantLimit")
                if not changed:
                    continue
                if changed <= {"offered", "nodeRouting"} and not after["offered"] and (
                        len(pool) >= pool_size or after["grantLimit"] < cfg[9]):
                    # A grant ended while the pool was full, or the offer is spent: it lapses
                    # (it returns only "if the pool has room" and can pay one more answer).
                    STATS["offer lapsed (pool full or spent)"] += 1
                    continue
                pytest.fail(f"{where}: session {sid} (owner {after['owner']}) changed {changed}: "
                            f"{before} -> {after}")
        self.prev = state

        # 7. the owner's exit, from the owner's first attempt: every active session's owner tries
        #    closeSession now; refused (RequestsPending), that attempt is remembered, and on every
        #    later state (whatever anyone sent since) the close must work at attempt + requestTimeout.
        #    A change of requestTimeout by the contract owner starts the attempts afresh.
        self._owner_exit(views, active_ids, now, timeout, where)
        STATS["invariant checks"] += 1

    def _close_calls(self, views, sids, times):
        calls = [("eth_call", [{"from": views[sid][1], "to": self.s.manager.address,
                                "data": self.s.manager.encode_abi("closeSession", [sid])},
                               "latest", {}, {"time": hex(t)}]) for sid, t in zip(sids, times)]
        return self.w3.provider.make_batch_request(calls) if calls else []

    def _owner_exit(self, views, active_ids, now, timeout, where):
        if timeout != self.attempt_timeout:
            self.attempts.clear()
            self.attempt_timeout = timeout
        self.attempts = {sid: t for sid, t in self.attempts.items() if sid in active_ids and now <= t + timeout}
        fresh = sorted(active_ids - set(self.attempts))
        for sid, reply in zip(fresh, self._close_calls(views, fresh, [now] * len(fresh))):
            if "error" in reply:
                dec = decoder().decode(revert_data_of(reply["error"]) or "0x")
                assert dec.name == "RequestsPending", f"{where}: owner cannot close {sid}: {dec.reason}"
                self.attempts[sid] = now
                STATS["blocked close attempts"] += 1
        tried = sorted(self.attempts)
        times = [self.attempts[sid] + timeout for sid in tried]
        for sid, reply in zip(tried, self._close_calls(views, tried, times)):
            assert "error" not in reply, (
                f"{where}: owner of {sid}, refused at {self.attempts[sid]}, still cannot close at "
                f"that + requestTimeout: {reply['error']}")


def _prepare(w3, system, accounts, deployer, worker) -> Ctx:
    users, attacker = accounts[4:7], accounts[7]
    for a in users + [attacker]:
        transact(w3, system.token.functions.mint(a, 100_000 * system.unit), a)
        transact(w3, system.token.functions.approve(system.manager.address, 2**256 - 1), a)
    r = transact(w3, system.router.functions.registerNode(ATTACKER_NODE, attacker), deployer)
    evil = system.router.events.NodeRegistered().process_receipt(r, errors=DISCARD)[0]["args"]["nodeId"]
    supply = system.token.functions.totalSupply().call()
    streak = deploy(w3, "StreakAttacker", attacker, system.manager.address)
    return Ctx(w3, system, deployer, worker, list(users), attacker, list(accounts), evil, supply, streak)


def _check_time_override(c: Ctx) -> None:
    """The closability invariant relies on eth_call's block override of `time`: prove it is honoured."""
    w3, s, u = c.w3, c.system, c.users[0]
    snap = rpc(w3, "evm_snapshot")
    try:
        r = transact(w3, s.manager.functions.createSession(10 * s.unit), u)
        sid = s.manager.events.SessionCreated().process_receipt(r, errors=DISCARD)[0]["args"]["sessionId"]
        transact(w3, s.manager.functions.makeAIRequest("x", s.model, []), u, value=CALLBACK_GAS)
        tx = {"from": u, "to": s.manager.address,
              "data": s.manager.encode_abi("closeSession", [sid])}
        now, timeout = latest_ts(w3), s.manager.functions.requestTimeout().call()
        assert "error" in w3.provider.make_request("eth_call", [tx, "latest"]), "close should be pending"
        late = w3.provider.make_request("eth_call", [tx, "latest", {}, {"time": hex(now + timeout + 1)}])
        assert "error" not in late, f"eth_call time override not honoured: {late}"
    finally:
        rpc(w3, "evm_revert", snap)


def test_fuzz_manager_invariants(w3, system6, accounts, deployer, worker, record_property):
    """Random multi-user and attacker steps keep the invariants; the summary says how much ran."""
    global CTX
    CTX = _prepare(w3, system6, accounts, deployer, worker)
    _check_time_override(CTX)
    STATS.clear()
    started = time.monotonic()
    conf = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),  # a chain step takes milliseconds, not microseconds
    )
    try:
        run_state_machine_as_test(ManagerMachine, settings=conf)
    finally:
        CTX = None
        interesting = ", ".join(f"{k} {v}" for k, v in sorted(STATS.items())
                                if k not in ("examples", "steps", "transactions", "reverted"))
        summary = (f"fuzz: {STATS['examples']} examples, {STATS['steps']} steps, "
                   f"{STATS['transactions']} transactions ({STATS['reverted']} reverted) in "
                   f"{time.monotonic() - started:.0f} s; {interesting}")
        record_property("fuzz_summary", summary)
        print(summary)
