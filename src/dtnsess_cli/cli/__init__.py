"""The ``dtnsess`` command line: parse -> config -> client -> render.

Commands are thin: they parse arguments, call a ``Client`` method and render its result. Find a
command by what it is for:

- ``root.py``: the Typer root app (``dtnsess_cli.cli.app``), the global options, Typer's side of
  the error handling, the Typer path's ``main``
- ``run.py``: one command run without Typer: ``Run``, the error handler, the journal's intent
- ``fastpath.py``: the hot commands' start-up path without Typer (its spec: ``_fastspec.py``)
- ``bodies.py``: the bodies of the hot commands (request, close, create, renew, stats, ...)
- ``sessions.py``: balance, approve, create, renew, close, stats, sessions
- ``requests.py``: request, response, requests, settle, tx
- ``watch.py``: watch (requests and answers as they arrive)
- ``pool.py``: pool add/get/remove/revoke/release/status
- ``maintenance.py``: deploy, cleanup, sweep, doctor, config show/update/contract, refunds withdraw
- ``devnet.py``: devnet up/reset/status/down (over ``dtnsess_cli.devnet``)
- ``keeper.py``: keeper deploy/configure/status/check (the CRE keeper's receiver)

NOTE: importing this package imports no typer: ``import typer`` and building the app cost
~0.1-0.2 s of every run, more than a hot command's own work. ``app`` is imported on first use.
"""

from __future__ import annotations

import os
import sys

# NOTE: typing costs ~20 ms of import; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = ["app", "main", "console"]


def main(argv: Optional[list] = None) -> int:
    """The command line ``argv`` (default: the process's) run, its exit code returned: the fast
    path for a hot command whose arguments it can parse with certainty, else the Typer app
    (every command, help, completion, Click's errors).

    DTNSESS_TYPER_PATH=1 skips the fast path (for tests and debugging: both must agree)."""
    return _main(argv)[0]


def _main(argv: Optional[list]) -> tuple:
    """(exit code, whether the fast path ran the command)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("DTNSESS_TYPER_PATH", "") in ("", "0"):
        from .fastpath import run

        rc = run(args)
        if rc is not None:
            return rc, True
    return _typer().main(args), False


def console() -> None:
    """The ``dtnsess`` script (and ``python -m dtnsess_cli.cli``): ``main()``, then the exit.

    After a command the fast path ran, the process ends without Python's teardown: freeing the
    objects of the ~170 modules a write loads costs ~15 ms, a tenth of a ``close`` (issue 19,
    bench/RESULTS.md), and such a command leaves nothing for it to do: ``run.invoke`` closed
    its clients (node connections, the journal), and the output is flushed here. Anything that
    may still want the normal exit gets it: a callback registered with atexit, a thread that
    is not a daemon, output that cannot be flushed (a closed pipe)."""
    code, fast = _main(None)
    if fast and _nothing_left_for_teardown():
        os._exit(code)
    sys.exit(code)


def _nothing_left_for_teardown() -> bool:
    import atexit

    count = getattr(atexit, "_ncallbacks", None)  # CPython's; elsewhere: the normal exit
    if count is None or count():
        return False
    threading = sys.modules.get("threading")
    if threading is not None:
        main = threading.main_thread()
        if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
            return False
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: started without them (pythonw, a closed descriptor)
                stream.flush()
    except Exception:  # a closed pipe (BrokenPipeError), a closed file: Python's exit reports it
        return False
    return True


def _typer() -> Any:
    """``root`` (the Typer app and its ``main``) with every command registered."""
    from . import root
    # NOTE: importing a command module registers its commands on ``app``; this order is the
    # order of ``dtnsess --help``.
    from . import sessions, requests, watch, pool, maintenance, devnet, keeper  # noqa: F401  isort: skip

    return root


def __getattr__(name: str) -> Any:
    """``from dtnsess_cli.cli import app``: the Typer app, imported on first use (PEP 562)."""
    if name == "app":
        return _typer().app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
