"""`dtnsess pool add/get/remove/revoke/release/status` end to end against Anvil (issue 7).

The owner (`user`) bounds what a taker may spend and which routing a taker may use; a taker
(`stranger`) holds one grant at a time and can give it back; the owner can end it. Every round
trip is checked against the chain (getPoolOffer, getGrant, isPooled) and the events.
"""

from __future__ import annotations

import pytest

from cli_helpers import assert_error, assert_ok, create_via_cli, nonce, token_units
from dtnsess_cli.errors import ExitCode
from helpers import bal, events, fund, session
from test_cli_errors import fails

# the token-conservation check after every test (tests/fixtures/chain.py)
pytestmark = pytest.mark.usefixtures("conserved")


def offer(system, sid: int) -> tuple:
    """getPoolOffer(sid) without the grant's expiry: (offered, taker, grantLimit, allowNodeRouting)."""
    return tuple(system.manager.functions.getPoolOffer(sid).call())[:4]


def grant(system, who: str) -> tuple:
    """getGrant(who) without its expiry: (sessionId, remaining, allowNodeRouting)."""
    return tuple(system.manager.functions.getGrant(who).call())[:3]


def pooled(system, sid: int) -> bool:
    return system.manager.functions.isPooled(sid).call()


ZERO = "0x" + "00" * 20


def fee(system) -> int:
    return system.manager.functions.getConfig().call()[9]  # totalFeePerRes


def test_pool_add_with_limit_get_release_round_trip(make_cli, system, user, stranger, w3):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    out = cli.json("pool", "add", str(sid), "--limit", "2.5")
    assert out["grant_limit_units"] == str(token_units(system, "2.5"))
    assert out["allow_node_routing"] is False
    assert "addToPoolWithLimit" not in out["transactions"][0]["description"]  # words, not ABI
    assert offer(system, sid) == (True, ZERO, token_units(system, "2.5"), False)
    assert pooled(system, sid)

    out = cli.json("pool", "get", role="stranger")
    assert out["session_id"] == sid
    expires = system.manager.functions.getGrant(stranger).call()[3]
    assert expires == w3.eth.get_block("latest")["timestamp"] + 24 * 3600  # the default duration
    assert out["grant"] == {"session_id": sid, "remaining": "2.5",
                            "remaining_units": str(token_units(system, "2.5")),
                            "allow_node_routing": False, "expires_at": expires, "expired": False}
    assert grant(system, stranger) == (sid, token_units(system, "2.5"), False)
    assert offer(system, sid)[:2] == (True, stranger) and not pooled(system, sid)

    # the taker's view and the owner's view of the same offer
    st = cli.json("pool", "status", role="stranger")
    assert st["grant"]["session_id"] == sid and st["grant"]["remaining"] == "2.5"
    st = cli.json("pool", "status")
    assert st["grant"] is None and st["sessions"] == []
    assert st["offers"] == [{"session_id": sid, "owner": user, "pooled": False, "taker": stranger,
                             "grant_limit": "2.5",
                             "grant_limit_units": str(token_units(system, "2.5")),
                             "allow_node_routing": False, "grant_expires_at": expires,
                             "grant_expired": False}]
    r = cli("pool", "status")
    assert_ok(r)
    assert "taken" in r.stdout and stranger in r.stdout and "2.5 USDT" in r.stdout

    # one grant per address: a second get is refused, decoded, nothing sent
    fund(system, user, 100, approve=False)
    s2 = create_via_cli(cli, "20")
    cli.json("pool", "add", str(s2))
    fails(cli, ["pool", "get"], ExitCode.INPUT, "already hold a pool grant",
          f"session {sid}", role="stranger")
    assert pooled(system, s2)

    out = cli.json("pool", "release", role="stranger")
    assert out["session_id"] == sid
    assert out["grants_ended"] == [{"session_id": sid, "user": stranger, "reason": "released"}]
    assert out["pooled"] is True
    assert grant(system, stranger)[0] == 0 and pooled(system, sid)
    assert system.manager.functions.poolGrant(stranger).call() == 0

    # nothing to release: exit 0, nothing sent
    before = nonce(w3, stranger)
    r = cli("pool", "release", role="stranger")
    assert_ok(r)
    assert "nothing to release" in r.stdout and nonce(w3, stranger) == before


def test_pool_add_defaults_and_allow_nodes(make_cli, system, user, stranger):
    cli = make_cli(system)
    fund(system, user, 100, approve=False)
    s1, s2 = create_via_cli(cli, "20"), create_via_cli(cli, "20")
    r = cli("pool", "add", str(s1))
    assert_ok(r)
    default = 10 * fee(system)
    assert offer(system, s1) == (True, ZERO, default, False)
    assert "by trust namespace only" in r.stdout
    out = cli.json("pool", "add", str(s2), "--allow-nodes")
    assert offer(system, s2) == (True, ZERO, default, True)
    assert out["allow_node_routing"] is True and out["grant_limit_units"] == str(default)
    # a limit below one answer's maximum fee could never pay: refused, nothing sent
    s3 = create_via_cli(cli, "20")
    fails(cli, ["pool", "add", str(s3), "--limit", "0.000001"], ExitCode.INPUT, "--limit",
          "maximum fee")
    assert not offer(system, s3)[0]


def test_pool_taker_may_not_route_to_nodes_unless_allowed(make_cli, system6, user, stranger):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("pool", "add", str(sid))
    cli.json("pool", "get", role="stranger")
    fails(cli, ["request", "hi", "--node", "devnet.responder"], ExitCode.REVERTED,
          "trust namespace only", role="stranger")
    # trust-namespace routing works, and is reserved from the grant
    out = cli.json("request", "hi", role="stranger")
    assert out["session_id"] == sid
    assert grant(system6, stranger)[1] == 10 * fee(system6) - fee(system6)


def test_pool_revoke(make_cli, system6, user, stranger, deployer, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("pool", "add", str(sid))
    cli.json("pool", "get", role="stranger")
    # not the taker / not the owner: refused before sending
    fails(cli, ["pool", "revoke", str(sid), deployer], ExitCode.INPUT, "holds no grant",
          stranger)
    fails(cli, ["pool", "revoke", str(sid), stranger], ExitCode.AUTH, "belongs to",
          role="deployer")
    fails(cli, ["pool", "revoke", str(sid), "0x12"], ExitCode.INPUT)
    out = cli.json("pool", "revoke", str(sid), stranger)
    assert out["grants_ended"] == [{"session_id": sid, "user": stranger, "reason": "revoked"}]
    # the session stays out of the pool: the revoked taker cannot take it straight back
    assert out["pooled"] is False
    assert grant(system6, stranger)[0] == 0 and not pooled(system6, sid)
    assert offer(system6, sid)[:2] == (False, ZERO)
    fails(cli, ["pool", "get"], ExitCode.INPUT, "pool is empty", role="stranger")
    # the revoked taker's requests no longer reach the owner's session
    fund(system6, stranger, 100)
    before = system6.manager.functions.getSession(sid).call()[5]
    cli.json("request", "mine now", role="stranger")
    assert system6.manager.functions.getSession(sid).call()[5] == before
    # the owner offers it again
    r = cli("pool", "add", str(sid))
    assert_ok(r)
    assert pooled(system6, sid)


def test_pool_remove(make_cli, system6, user, stranger, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("pool", "add", str(sid))
    cli.json("pool", "get", role="stranger")
    r = cli("pool", "remove", str(sid))
    assert_ok(r)
    assert f"session {sid} removed from the pool" in r.stdout and stranger in r.stdout
    assert offer(system6, sid)[:2] == (False, ZERO)
    assert not pooled(system6, sid) and grant(system6, stranger)[0] == 0
    fails(cli, ["pool", "remove", str(sid)], ExitCode.INPUT, "not offered in the pool")
    # an offer nobody took: removed from the pool list, with its event
    cli.json("pool", "add", str(sid))
    out = cli.json("pool", "remove", str(sid))
    assert out["taker"] is None and out["grants_ended"] == []
    assert system6.manager.functions.getPoolSessions().call() == []
    rcpt = w3.eth.get_transaction_receipt(out["transactions"][0]["tx_hash"])
    assert [e["sessionId"] for e in events(system6.manager, "SessionRemovedFromPool", rcpt)] == [sid]


def test_pool_writes_dry_run_send_nothing(make_cli, system6, user, stranger, w3):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    s1, s2 = create_via_cli(cli, "20"), create_via_cli(cli, "20")
    cli.json("pool", "add", str(s1))
    cli.json("pool", "get", role="stranger")
    before = {a: nonce(w3, a) for a in (user, stranger)}
    state = (offer(system6, s1), offer(system6, s2), grant(system6, stranger))
    for args, role in ((["pool", "add", str(s2), "--limit", "3", "--allow-nodes"], "user"),
                       (["pool", "remove", str(s1)], "user"),
                       (["pool", "revoke", str(s1), stranger], "user"),
                       (["pool", "release"], "stranger")):
        out = cli.json(*args, "--dry-run", role=role)
        assert out["dry_run"] is True and out["transactions"], args
        assert all(t["dry_run"] and "tx_hash" not in t for t in out["transactions"]), args
    assert {a: nonce(w3, a) for a in (user, stranger)} == before
    assert (offer(system6, s1), offer(system6, s2), grant(system6, stranger)) == state


def test_pool_status_without_a_key_shows_the_pool(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("pool", "add", str(sid))
    st = cli.json("pool", "status", role=None)
    assert st["sessions"] == [sid] and st["grant"] is None
    assert [o["session_id"] for o in st["offers"]] == [sid] and st["offers"][0]["owner"] == user


def test_pool_grant_expiry_shown_refused_and_handed_on(make_cli, system6, user, stranger, deployer, w3):
    """Issue 14: `config update --grant-duration` (bounded, owner only, refused before sending),
    the grant's expiry in `pool get`/`pool status`, the expired grantee refused in words, and
    the next `pool get` handing the session on."""
    from helpers import latest_ts, mine

    cli = make_cli(system6)
    fails(cli, ["config", "update", "--grant-duration", "599"], ExitCode.INPUT,
          "--grant-duration", "10 minutes", role="deployer")
    fails(cli, ["config", "update", "--grant-duration", "600"], ExitCode.AUTH,
          "not the contract owner")
    out = cli.json("config", "update", "--grant-duration", "600", role="deployer")
    assert out["config"]["grant_duration"] == 600
    assert system6.manager.functions.grantDuration().call() == 600

    fund(system6, user, 100, approve=False)
    sid = create_via_cli(cli, "20")
    cli.json("pool", "add", str(sid))
    out = cli.json("pool", "get", role="stranger")
    expires = out["grant"]["expires_at"]
    assert expires == latest_ts(w3) + 600 and out["grant"]["expired"] is False
    r = cli("pool", "status", role="stranger")
    assert_ok(r)
    assert "until" in r.stdout and "expired" not in r.stdout

    mine(w3, expires)  # the chain's clock reaches the expiry
    st = cli.json("pool", "status")
    assert [(o["session_id"], o["taker"], o["grant_expires_at"], o["grant_expired"])
            for o in st["offers"]] == [(sid, stranger, expires, True)]
    r = cli("pool", "status")
    assert_ok(r)
    assert "grant expired" in r.stdout
    assert cli.json("pool", "status", role="stranger")["grant"]["expired"] is True
    fund(system6, stranger, 100)
    fails(cli, ["request", "hi", "--session", str(sid)], ExitCode.AUTH,
          f"grant on session {sid} expired", role="stranger")

    # the next taker gets it; the expired grant ends with its reason
    out = cli.json("pool", "get", role="deployer")
    assert out["session_id"] == sid and out["grant"]["expired"] is False
    rcpt = w3.eth.get_transaction_receipt(out["transactions"][0]["tx_hash"])
    assert [(e["user"], e["reason"]) for e in events(system6.manager, "GrantEnded", rcpt)] == [(stranger, 4)]
    assert grant(system6, stranger)[0] == 0 and grant(system6, deployer)[0] == sid
