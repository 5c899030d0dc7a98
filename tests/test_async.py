"""``AsyncClient`` (issue 18, item 2) against Anvil: asyncio tasks share one client on the one
send path (greenlets driven by the loop, no threads); every send journaled, nonces in
sequence, the devnet's node answers every request; the loop keeps running while a write waits;
a task cancelled mid-wait names the transaction it paid for; proxies as the sync client."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
from pathlib import Path

import pytest

from dtnsess_cli import AsyncClient, Client, ConfigError, TxPendingError, signer_from_key
from helpers import bal, chain_of, fund
from test_library import (_TunnelProxy, forward_proxy,  # noqa: F401 - shared
                          tls_node_behind_a_tunnel)

pytestmark = pytest.mark.usefixtures("conserved")


def journal_rows(state: Path) -> list:
    db = sqlite3.connect(str(state / "journal.sqlite3"))
    try:
        return db.execute("SELECT nonce, status, tx_hash FROM txs ORDER BY nonce").fetchall()
    finally:
        db.close()


def pending_nonce(w3, address: str) -> int:
    return w3.eth.get_transaction_count(address, "pending")


def test_tasks_share_one_async_client(anvil, w3, system6, private_keys, user, tmp_path,
                                      make_node):
    """N tasks make requests on M sessions through one AsyncClient while other tasks read:
    every transaction is journaled and mined with consecutive nonces, no request collides, and
    the devnet's node answers all of them."""
    s = system6
    fund(s, user, 1000, approve=False)
    make_node(s)
    state = tmp_path / "state"
    n, m = 12, 4
    read_errors: list = []

    async def main() -> tuple:
        async with AsyncClient(anvil.url, s.manager.address,
                               signer=signer_from_key(private_keys[1]),
                               state_dir=state) as client:
            await client.approve("100")
            start = pending_nonce(w3, user)
            created = await asyncio.gather(*(client.create_session("10") for _ in range(m)))
            sids = [c.session_id for c in created]

            async def ask(i: int) -> str:
                return (await client.make_ai_request(f"question {i}",
                                                     session_id=sids[i % m])).request_id

            async def reader() -> None:
                for _ in range(4):
                    try:
                        assert (await client.balances()).address == user
                        await client.sessions()
                        assert (await client.decimals) == 6
                    except Exception as exc:  # noqa: BLE001 - reported by the test
                        read_errors.append(repr(exc))

            out = await asyncio.gather(*(ask(i) for i in range(n)),
                                       *(reader() for _ in range(3)))
            rids = out[:n]
            answers = await client.wait_for_answers(rids, timeout=90, poll=0.2)
            return start, sids, rids, answers

    start, sids, rids, answers = asyncio.run(main())
    assert not read_errors, read_errors
    assert len(set(sids)) == m and len(set(rids)) == n
    assert [a.status for a in answers] == ["succeeded"] * n
    assert all("You asked: question" in a.answer for a in answers)
    assert pending_nonce(w3, user) == start + m + n  # no reverted attempt, no gap
    rows = [r for r in journal_rows(state) if r[0] >= start]
    assert [r[0] for r in rows] == list(range(start, start + m + n))
    assert {r[1] for r in rows} == {"mined"}
    assert bal(s, user) == (1000 - 10 * m) * s.unit  # the sessions' funds, nothing more


@pytest.fixture
def manual_mining(w3):
    """``manual_mining()``: from then on Anvil mines only when told (evm_mine); automine again
    after the test."""
    yield lambda: w3.provider.make_request("evm_setAutomine", [False])
    w3.provider.make_request("evm_setAutomine", [True])


async def _until(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


class Heartbeat:
    """A task on the running loop that ticks every 20 ms: a loop blocked by a wait shows no
    ticks while it lasts."""

    def __init__(self) -> None:
        self.ticks: list = []
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            self.ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    def ticks_in(self, since: float, seconds: float) -> int:
        return len([t for t in self.ticks if since <= t <= since + seconds])

    async def stop(self) -> None:
        self._stop.set()
        await self._task


def test_the_loop_runs_while_a_write_waits_for_its_receipt(anvil, w3, system6, private_keys,
                                                           user, tmp_path, manual_mining):
    """A heartbeat task keeps ticking while a create waits for a block; the write completes
    once the block is mined."""
    s = system6
    fund(s, user, 100)
    manual_mining()

    async def main() -> int:
        client = AsyncClient(anvil.url, s.manager.address,
                             signer=signer_from_key(private_keys[1]), state_dir=tmp_path)
        await client.config()
        before = pending_nonce(w3, user)
        beat = Heartbeat()
        write = asyncio.create_task(client.create_session("20"))
        await _until(lambda: pending_nonce(w3, user) > before)  # sent, not mined
        waiting_since = time.monotonic()
        await asyncio.sleep(1.0)
        assert not write.done()
        w3.provider.make_request("evm_mine", [])
        sid = (await write).session_id
        await beat.stop()
        await client.aclose()
        # NOTE: ~50 at 20 ms; a loop blocked by the receipt polls would show 0-2
        assert beat.ticks_in(waiting_since, 1.0) >= 15, beat.ticks
        return sid

    sid = asyncio.run(main())
    assert sid in s.manager.functions.getUserActiveSessions(user).call()


def test_another_process_sender_lock_is_awaited_without_blocking(anvil, w3, system6, private_keys,
                                                                 user, tmp_path):
    """While another process holds this key's sender lock, a write waits for it on the loop
    (a heartbeat keeps ticking), then sends once the lock is free."""
    from dtnsess_cli.chain.journal import sender_lock

    s = system6
    fund(s, user, 100)
    other = sender_lock(user, tmp_path, chain_of(w3))  # a lock of its own, as another process has
    other.acquire()

    async def main() -> int:
        async with AsyncClient(anvil.url, s.manager.address,
                               signer=signer_from_key(private_keys[1]),
                               state_dir=tmp_path) as client:
            await client.config()
            beat = Heartbeat()
            write = asyncio.create_task(client.create_session("20"))
            since = time.monotonic()
            await asyncio.sleep(1.0)
            assert not write.done()
            other.release()
            sid = (await write).session_id
            await beat.stop()
            assert beat.ticks_in(since, 1.0) >= 15, beat.ticks
            return sid

    try:
        sid = asyncio.run(main())
    finally:
        if other.is_locked:
            other.release()
    assert sid in s.manager.functions.getUserActiveSessions(user).call()


def test_a_task_cancelled_mid_wait_names_the_paid_tx(anvil, w3, system6, private_keys, user,
                                                     tmp_path, manual_mining):
    """Cancelling a task whose request was sent but not mined: the task ends cancelled, the
    CancelledError names the hash (its cause: a TxPendingError, exit code 130 as Ctrl-C), the
    journal keeps the entry open, and once mined the next write finds it and goes on."""
    s = system6
    fund(s, user, 100)
    manual_mining()

    async def main() -> tuple:
        client = AsyncClient(anvil.url, s.manager.address,
                             signer=signer_from_key(private_keys[1]), state_dir=tmp_path)
        created = asyncio.create_task(client.create_session("20"))
        await asyncio.sleep(0.5)
        w3.provider.make_request("evm_mine", [])
        sid = (await created).session_id
        before = pending_nonce(w3, user)
        task = asyncio.create_task(client.make_ai_request("hello", session_id=sid))
        await _until(lambda: pending_nonce(w3, user) > before)
        await asyncio.sleep(0.2)  # in the receipt polls
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as info:
            await task
        assert task.cancelled()
        rows = journal_rows(tmp_path)
        w3.provider.make_request("evm_mine", [])
        # the next write of this key resolves the open entry first (found mined)
        again = asyncio.create_task(client.make_ai_request("again", session_id=sid))
        await asyncio.sleep(1.5)
        w3.provider.make_request("evm_mine", [])
        await _until(again.done)
        await again
        await client.aclose()
        return info.value, rows

    err, rows = asyncio.run(main())
    cause = err.__cause__
    assert isinstance(cause, TxPendingError) and cause.exit_code == 130
    assert cause.tx_hash in str(err) and "interrupted" in str(err)
    assert (rows[-1][2], rows[-1][1]) == (cause.tx_hash, "open")
    final = {h: st for _, st, h in journal_rows(tmp_path)}
    assert final[cause.tx_hash] == "mined"


def test_a_timeout_around_a_write_keeps_the_paid_tx_in_its_chain(anvil, w3, system6,
                                                                 private_keys, user, tmp_path,
                                                                 manual_mining):
    """asyncio.wait_for around a write that was sent but not mined: TimeoutError, whose cause
    is the CancelledError naming the transaction, whose cause is the TxPendingError."""
    s = system6
    fund(s, user, 100)
    manual_mining()

    async def main() -> BaseException:
        async with AsyncClient(anvil.url, s.manager.address,
                               signer=signer_from_key(private_keys[1]),
                               state_dir=tmp_path) as client:
            await client.config()
            with pytest.raises(asyncio.TimeoutError) as info:
                await asyncio.wait_for(client.create_session("20"), 1.5)
            return info.value

    err = asyncio.run(main())
    cancelled = err.__cause__
    assert isinstance(cancelled, asyncio.CancelledError)
    pending = cancelled.__cause__
    assert isinstance(pending, TxPendingError) and pending.tx_hash in str(cancelled)
    assert [(r[2], r[1]) for r in journal_rows(tmp_path)] == [(pending.tx_hash, "open")]
    w3.provider.make_request("evm_mine", [])  # nothing left in the pool for the next test


def test_a_task_cancelled_before_its_send_sends_nothing(anvil, w3, system6, private_keys,
                                                        user, tmp_path):
    """Cancelled while it waits for its session's next second (DTN's one request per second):
    the task ends cancelled, nothing was signed or sent, and the client goes on working."""
    s = system6
    fund(s, user, 100)

    async def main() -> None:
        async with AsyncClient(anvil.url, s.manager.address,
                               signer=signer_from_key(private_keys[1]),
                               state_dir=tmp_path) as client:
            sid = (await client.create_session("20")).session_id
            await client.make_ai_request("first", session_id=sid)
            before = pending_nonce(w3, user)
            task = asyncio.create_task(client.make_ai_request("second", session_id=sid))
            await asyncio.sleep(0.3)  # in the pacing wait (about a second)
            task.cancel()
            with pytest.raises(asyncio.CancelledError) as info:
                await task
            assert info.value.__cause__ is None
            assert pending_nonce(w3, user) == before
            assert (await client.make_ai_request("third", session_id=sid)).request_id

    asyncio.run(main())
    rows = journal_rows(tmp_path)
    assert len(rows) == 3 and {r[1] for r in rows} == {"mined"}  # create, first, third


def test_same_methods_as_the_sync_client():
    """Every public member of Client is the AsyncClient's, as a coroutine function, but the
    few documented otherwise; signatures are the sync ones."""
    plain = {"address", "account", "dry_run", "state_dir", "manager_address", "address_arg",
             "simulating"}
    awaitable = {"chain_id", "manager", "router", "token", "decimals", "symbol"}
    left_out = {"rpc", "txctx"}
    for name in dir(Client):
        if name.startswith("_") or name in left_out:
            continue
        assert hasattr(AsyncClient, name), name
        if name in plain | awaitable:
            continue
        member = getattr(AsyncClient, name)
        assert inspect.iscoroutinefunction(member), name
        if name not in ("close", "fetch_ipfs"):
            assert inspect.signature(member) == inspect.signature(getattr(Client, name)), name
    for name in awaitable:
        assert isinstance(inspect.getattr_static(AsyncClient, name), property), name


def test_async_client_refuses_what_it_cannot_drive(system6, tmp_path):
    from web3 import Web3

    for url in ("ws://127.0.0.1:8545", Web3.HTTPProvider("http://127.0.0.1:1")):
        with pytest.raises(ConfigError):
            AsyncClient(url, system6.manager.address)


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_an_async_web3_provider_as_the_transport(anvil, system6, private_keys, user, tmp_path,
                                                 kind):
    """web3's async providers (a websocket too: Anvil serves one on its port) carry the async
    client's requests, awaited on the loop; batches in one request."""
    from web3 import AsyncHTTPProvider, WebSocketProvider

    s = system6
    fund(s, user, 100)

    async def main() -> tuple:
        if kind == "http":
            provider = AsyncHTTPProvider(anvil.url)
        else:
            provider = WebSocketProvider(anvil.url.replace("http://", "ws://"))
            await provider.connect()
        try:
            client = AsyncClient(provider, s.manager.address,
                                 signer=signer_from_key(private_keys[1]), state_dir=tmp_path)
            created = await asyncio.gather(client.create_session("10"),
                                           client.create_session("12"))
            views = await asyncio.gather(*(client.session(c.session_id) for c in created))
            dry = await client.simulating().create_session("10")
            checks = {c.name: c for c in await client.doctor()}
            await client.aclose()
            return [v.balance.units for v in views], dry, checks
        finally:
            if kind == "websocket":
                await provider.disconnect()

    balances, dry, checks = asyncio.run(main())
    assert sorted(balances) == [10 * s.unit, 12 * s.unit]
    assert dry.dry_run and bal(s, user) == 78 * s.unit
    assert checks["rpc"].ok and anvil.url not in checks["rpc"].detail
    assert {r[1] for r in journal_rows(tmp_path)} == {"mined"}


def test_async_client_over_ipc(anvil, system6, private_keys, user, tmp_path):
    """A node's IPC socket path: tasks share unix-socket connections on the loop."""
    s = system6
    fund(s, user, 100)

    async def main() -> tuple:
        async with AsyncClient(anvil.ipc_path, s.manager.address,
                               signer=signer_from_key(private_keys[1]),
                               state_dir=tmp_path) as client:
            created = await asyncio.gather(client.create_session("10"),
                                           client.create_session("11"))
            views = await asyncio.gather(*(client.session(c.session_id) for c in created))
            return [v.balance.units for v in views], await client.balances()

    balances, b = asyncio.run(main())
    assert sorted(balances) == [10 * s.unit, 11 * s.unit]
    assert b.token.units == 79 * s.unit
    assert {r[1] for r in journal_rows(tmp_path)} == {"mined"}


def test_async_reads_go_through_the_proxy_the_environment_names(anvil, system6, user,
                                                                monkeypatch, forward_proxy):
    proxy, seen = forward_proxy
    with monkeypatch.context() as mp:
        for name in ("NO_PROXY", "no_proxy", "http_proxy", "all_proxy", "ALL_PROXY"):
            mp.delenv(name, raising=False)
        mp.setenv("HTTP_PROXY", proxy.replace("http://", "http://u:secret@"))

        async def balances(client: AsyncClient) -> str:
            async with client:
                return (await client.balances()).address

        via = AsyncClient(anvil.url, system6.manager.address, address=user, state_dir=False)
        assert asyncio.run(balances(via)) == user
        assert seen and all(path.startswith(anvil.url) for path, _ in seen)
        assert seen[0][1] == "Basic dTpzZWNyZXQ="
        n = len(seen)
        mp.setenv("NO_PROXY", "127.0.0.1")
        direct = AsyncClient(anvil.url, system6.manager.address, address=user,
                             state_dir=False)
        assert asyncio.run(balances(direct)) == user
        assert len(seen) == n


def test_https_through_a_connect_tunnel_on_the_loop(tmp_path):
    """The async transport's https:// through an http proxy: CONNECT, then TLS to the node
    (certificate checked); a refusing proxy is the sync client's one line."""
    from dtnsess_cli.chain.aio import AsyncHttp, greenlet_spawn
    from dtnsess_cli.chain.errors import RpcTransportError

    with tls_node_behind_a_tunnel(tmp_path) as (url, via, ctx, port):
        async def chain_id() -> str:
            pool = AsyncHttp(url, timeout=10, retry_seconds=0, proxy=via, ssl_context=ctx)
            try:
                return await greenlet_spawn(lambda: pool.rpc().call("eth_chainId"))
            finally:
                await pool.aclose()

        assert asyncio.run(chain_id()) == "0x2105"
        (connect, auth), = _TunnelProxy.seen
        assert connect.startswith(f"CONNECT localhost:{port} HTTP/")
        assert auth == "Basic dTpwdw=="
        _TunnelProxy.refuse = "407 Proxy Authentication Required"
        with pytest.raises(RpcTransportError) as info:
            asyncio.run(chain_id())
        msg = str(info.value)
        assert "the proxy refused the tunnel: 407 Proxy Authentication Required" in msg, msg
        assert "SECRETKEY" not in msg and "u:pw" not in msg
