"""The inter-process locks (issue 19, item 4): ``chain.oslock.FileLock`` on the OS's flock,
in place of filelock (~95 ms of import on every write), and the cleanup lock keyed by chain id
*and* genesis hash, as the journal and the sender lock key a chain.

The lock: another process waits, then proceeds; a killed holder leaves no stale lock; re-entrant
for the thread (and greenlet) that holds it, refused to any other; a forked child does not
inherit its parent's hold; the file stays in place."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_helpers import Cli, assert_error, assert_ok, isolate_env
from helpers import lock_held_elsewhere, wait_gone
from dtnsess_cli.chain.oslock import FileLock, LockHeld
from dtnsess_cli.errors import ConfigError, ExitCode

# polls the lock like the sender lock does, then says when it got it
WAITER = ("import sys, time\n"
          "from dtnsess_cli.chain.oslock import FileLock, LockHeld\n"
          "lock = FileLock(sys.argv[1])\n"
          "print('polling', flush=True)\n"
          "while True:\n"
          "    try:\n"
          "        lock.acquire()\n"
          "        break\n"
          "    except LockHeld:\n"
          "        time.sleep(0.02)\n"
          "print('got', flush=True)\n")


def test_another_process_waits_for_the_lock_then_proceeds(tmp_path):
    path = tmp_path / "a.lock"
    mine = FileLock(path).acquire()
    waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert waiter.stdout.readline().strip() == "polling"
        time.sleep(0.5)
        assert waiter.poll() is None  # still waiting while this process holds it
        mine.release()
        assert waiter.stdout.readline().strip() == "got"
        assert waiter.wait(10) == 0
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait(10)
    assert path.exists()  # never unlinked: a waiter may hold it, or be about to lock it
    FileLock(path).acquire().release()  # the waiter exited: free again


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "b.lock"
    with lock_held_elsewhere(path) as holder:
        with pytest.raises(LockHeld) as info:
            FileLock(path).acquire()
        assert info.value.lock_file == str(path)
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        assert wait_gone(holder.pid)
        holder.wait(10)
        lock = FileLock(path).acquire()  # the kernel released it with the process
        assert lock.is_locked
        lock.release()
    assert path.exists()


def test_reentrant_for_its_holder_only(tmp_path):
    path = tmp_path / "c.lock"
    lock = FileLock(path)
    with lock:
        with lock:  # the same thread again: counted
            assert lock.is_locked
        assert lock.is_locked  # the inner release keeps the outer hold
        with pytest.raises(LockHeld):
            FileLock(path).acquire()  # another instance, as another process
    assert not lock.is_locked
    with pytest.raises(RuntimeError):
        lock.release()  # not held: a bug of the caller, never a silent no-op
    FileLock(path).acquire().release()


def test_another_thread_is_refused_the_same_instance(tmp_path):
    """A client shared by threads: a second thread using the same lock object must not enter
    a hold it does not own, nor release it."""
    path = tmp_path / "d.lock"
    lock = FileLock(path).acquire()
    seen: list = []

    def other() -> None:
        for attempt in (lock.acquire, FileLock(path).acquire, lock.release):
            try:
                attempt()
                seen.append("entered")
            except (LockHeld, RuntimeError) as exc:
                seen.append(type(exc).__name__)

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert seen == ["LockHeld", "LockHeld", "RuntimeError"]
    lock.release()
    t = threading.Thread(target=lambda: seen.append(lock.acquire().release()))
    t.start()
    t.join(10)
    assert seen[-1] is None and not lock.is_locked  # free: the other thread took it and let go


def test_another_greenlet_is_refused_the_same_instance(tmp_path):
    """The async client runs each call as a greenlet of the loop's thread: one call's hold is
    not another call's."""
    import greenlet

    lock = FileLock(tmp_path / "e.lock")
    seen: list = []

    def first() -> None:
        with lock:
            seen.append("first holds")
            second.switch()
            seen.append("first releases")

    def try_second() -> None:
        try:
            lock.acquire()
            seen.append("second entered")
        except LockHeld:
            seen.append("second refused")
        first_g.switch()

    first_g, second = greenlet.greenlet(first), greenlet.greenlet(try_second)
    first_g.switch()
    assert seen == ["first holds", "second refused", "first releases"]
    assert not lock.is_locked


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_does_not_inherit_the_hold(tmp_path):
    """A child forked while the lock is held (a pre-forking server embedding the client) must
    not think it holds it, and its exit must not release the parent's lock."""
    path = tmp_path / "f.lock"
    lock = FileLock(path).acquire()
    pid = os.fork()
    if pid == 0:  # the child: only os._exit, never back into pytest
        code = 1
        try:
            if not lock.is_locked:
                try:
                    lock.acquire()
                    code = 2  # it entered the parent's hold
                except LockHeld:
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with pytest.raises(LockHeld):
        FileLock(path).acquire()  # still held by this process after the child is gone
    lock.release()
    FileLock(path).acquire().release()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to run a process as another user")
def test_another_users_lock_file_in_a_shared_dir():
    """Cleanup's default lock directory is the temp dir, shared by the users of a machine: a
    lock file another user made (0644, not writable to others) is opened read-only and still
    locks both ways."""
    import tempfile

    probe = ("import sys\n"
             "from dtnsess_cli.chain.oslock import FileLock, LockHeld\n"
             "try:\n"
             "    FileLock(sys.argv[1]).acquire().release()\n"
             "    print('got')\n"
             "except LockHeld:\n"
             "    print('held')\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    with tempfile.TemporaryDirectory() as shared:  # (pytest's tmp_path is root's only)
        os.chmod(shared, 0o1777)
        path = Path(shared) / "dtnsess-cleanup.lock"

        def as_nobody() -> str:
            return subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                 "-c", probe, str(path)], capture_output=True, text=True, timeout=60,
                env={**os.environ, "PYTHONPATH": src}).stdout.strip()

        lock = FileLock(path).acquire()  # made by this user (root)
        assert path.stat().st_uid == 0 and not path.stat().st_mode & 0o002
        try:
            assert as_nobody() == "held"
        finally:
            lock.release()
        assert as_nobody() == "got"


def test_a_lock_that_cannot_be_opened_is_a_config_error(tmp_path):
    lock = FileLock(tmp_path / "missing-dir" / "g.lock")
    with pytest.raises(ConfigError, match="cannot lock"):
        lock.acquire()
    assert not lock.is_locked


# -------------------------------------------------------- the cleanup lock, keyed by genesis


@pytest.fixture(scope="module")
def twin_devnets(tmp_path_factory, accounts):
    """Two Anvils with the same chain id (31337) and the same deployment (the same account's
    first transactions: the same manager address), each with its own genesis."""
    from web3 import Web3

    from dtnsess_cli.devnet import localdtn
    from dtnsess_cli.devnet.anvil import AnvilProcess

    nodes, systems = [], []
    try:
        for i, ts in enumerate(("1700000000", "1710000000")):
            node = AnvilProcess()
            nodes.append(node)
            node.start(log_path=tmp_path_factory.mktemp(f"anvil-twin{i}") / "anvil.log",
                       extra_args=["--timestamp", ts])
            w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
            systems.append((w3, localdtn.deploy_system(w3, accounts[0], decimals=6,
                                                       worker=accounts[3])))
        yield list(zip(nodes, systems))
    finally:
        for node in nodes:
            node.stop()


def test_cleanup_lock_is_per_genesis(twin_devnets, private_keys, monkeypatch, tmp_path):
    """Before: the cleanup lock was named by chain id and contract, so a cleanup on one devnet
    was refused while another devnet with the same id and address ran its own. Now each
    chain has its own lock, and two runs on one chain still exclude each other, whether the
    run knew the chain from an earlier one or read it from the node."""
    from helpers import chain_of

    isolate_env(monkeypatch, tmp_path)
    (node_a, (w3_a, sys_a)), (node_b, (w3_b, sys_b)) = twin_devnets
    assert sys_a.manager.address == sys_b.manager.address
    assert chain_of(w3_a)[0] == chain_of(w3_b)[0] and chain_of(w3_a)[1] != chain_of(w3_b)[1]
    cli_a = Cli(sys_a, private_keys, monkeypatch, node_a.url)
    cli_b = Cli(sys_b, private_keys, monkeypatch, node_b.url)
    locks = tmp_path / "locks"

    def lock_of(w3) -> str:
        cid, genesis = chain_of(w3)
        return str(locks / f"dtnsess-cleanup-{cid}-{genesis[2:]}-{sys_a.manager.address.lower()}.lock")

    with lock_held_elsewhere(lock_of(w3_a)):  # a cleanup running on A
        assert_ok(cli_b("cleanup"))  # B, with the same id and address, is not blocked
        assert_error(cli_a("cleanup"), ExitCode.LOCKED, "another cleanup is running",
                     lock_of(w3_a))  # A is, from a run that read its chain from the node
        assert_error(cli_a("cleanup"), ExitCode.LOCKED, lock_of(w3_a))  # and from one that knew it
    assert_ok(cli_a("cleanup"))
    assert sorted(p.name for p in locks.iterdir()) == sorted(
        os.path.basename(lock_of(w3)) for w3 in (w3_a, w3_b))
