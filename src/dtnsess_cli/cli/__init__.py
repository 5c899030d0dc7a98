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

__all__ = ["app", "main"]


def main(argv: Optional[list] = None) -> int:
    """Console-script entry point: the fast path for a hot command whose arguments it can parse
    with certainty, else the Typer app (every command, help, completion, Click's errors).

    DTNSESS_TYPER_PATH=1 skips the fast path (for tests and debugging: both must agree)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("DTNSESS_TYPER_PATH", "") in ("", "0"):
        from .fastpath import run

        rc = run(args)
        if rc is not None:
            return rc
    return _typer().main(args)


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
