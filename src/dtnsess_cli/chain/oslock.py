"""An inter-process lock on a file, taken with the OS's own lock: the sender lock
(``journal.sender_lock``) and the cleanup lock (``cli.maintenance``).

POSIX: ``flock(LOCK_EX | LOCK_NB)``. The kernel releases it when the holding process ends,
however it ends (kill -9 included), so a crash leaves no stale lock. The file stays in place:
unlinking a file that another process may hold or be about to lock would let two processes
each hold "the" lock, on two inodes. Windows: filelock's lock, imported there only.

NOTE: not filelock on POSIX: its import (21 modules and logging with 4.3.1) cost 27-95 ms on
every write (issue 19).
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import weakref

from ..errors import ConfigError

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class LockHeld(Exception):
    """Raised by :meth:`FileLock.acquire` when another process (or another instance, thread or
    greenlet) holds the lock: the caller decides whether to poll or give up."""

    def __init__(self, lock_file: str) -> None:
        super().__init__(f"lock {lock_file} is held")
        self.lock_file = lock_file


def _owner() -> tuple:
    """Who acquires: this thread and, within it, this greenlet (the async client runs each
    call as a greenlet of the loop's thread: the thread alone would let a second call in)."""
    g = sys.modules.get("greenlet")
    # the greenlet itself, not its id: an id may be reused once a greenlet is gone
    return threading.get_ident(), (g.getcurrent() if g is not None else None)


class FileLock:
    """A non-blocking, re-entrant lock of ``path`` between processes. ``acquire()`` tries once
    and raises :class:`LockHeld` when the lock is taken (callers poll through their own sleep,
    so the async client's tasks run meanwhile). Re-entrant for its owner (the thread and
    greenlet that acquired it: counted, released by the last ``release()``); another owner of
    the same instance gets ``LockHeld``, as another instance on the same file does."""

    def __init__(self, path: Any) -> None:
        self.lock_file = str(path)
        self._mutex = threading.Lock()
        self._count = 0
        self._owner: Any = None
        self._handle: Any = None  # the locked descriptor (POSIX) or filelock's lock (Windows)

    @property
    def is_locked(self) -> bool:
        """Does this instance hold the lock?"""
        return self._count > 0

    def acquire(self) -> "FileLock":
        me = _owner()
        with self._mutex:
            if self._count == 0:
                self._handle = _lock(self.lock_file)
                self._owner = me
                _HELD.add(self)
            elif self._owner != me:
                raise LockHeld(self.lock_file)
            self._count += 1
        return self

    def release(self) -> None:
        with self._mutex:
            if self._count == 0 or self._owner != _owner():
                raise RuntimeError(f"lock {self.lock_file} is not held by this thread")
            self._count -= 1
            if self._count == 0:
                handle, self._handle, self._owner = self._handle, None, None
                _HELD.discard(self)
                _unlock(handle)

    __enter__ = acquire

    def __exit__(self, *exc: Any) -> None:
        self.release()


# the instances holding their lock in this process (for a forked child: ``_forget_in_child``)
_HELD: "weakref.WeakSet[FileLock]" = weakref.WeakSet()


def _open_error(path: str, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot lock {path}: {exc.strerror or exc}")


if sys.platform == "win32":  # pragma: no cover - not testable here: filelock's own lock

    def _lock(path: str) -> Any:
        from filelock import FileLock as _WindowsLock
        from filelock import Timeout

        lock = _WindowsLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise LockHeld(path) from None
        except OSError as exc:
            raise _open_error(path, exc) from None
        return lock

    def _unlock(lock: Any) -> None:
        lock.release()

else:
    import fcntl

    def _lock(path: str) -> int:
        try:
            # NOTE: read-write as filelock opens it (flock over NFS needs it); read-only when
            # the file is another user's (a shared lock directory such as /tmp): flock needs
            # no write access. Nothing is ever written to the file.
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except PermissionError:
                fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise _open_error(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeld(path) from None
            raise _open_error(path, exc) from None
        return fd

    def _unlock(fd: int) -> None:
        # NOTE: unlock before close: a child forked while the lock was held shares the open
        # file, and a close alone would leave the lock held until that child exits
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _forget_in_child() -> None:
        """A forked child does not hold its parent's locks: it forgets them (its copies of the
        descriptors closed without LOCK_UN, which would release the parent's lock) and may
        take them anew, like any other process."""
        for lock in list(_HELD):
            fd, lock._handle, lock._count, lock._owner = lock._handle, None, 0, None
            lock._mutex = threading.Lock()  # another thread may have held it at the fork
            os.close(fd)
        _HELD.clear()

    os.register_at_fork(after_in_child=_forget_in_child)
