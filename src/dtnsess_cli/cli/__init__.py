"""The ``dtnsess`` command line: parse -> config -> client -> render.

Commands are thin: they parse arguments, call a ``Client`` method and render its result. Find a
command by what it is for:

- ``app.py``: the root app, global options, the error handler, ``main`` (the console script)
- ``sessions.py``: balance, approve, create, renew, close, stats, sessions
- ``requests.py``: request, response, requests, settle, tx
- ``watch.py``: watch (requests and answers as they arrive)
- ``pool.py``: pool add/get/remove/revoke/release/status
- ``maintenance.py``: deploy, cleanup, sweep, doctor, config show/update/contract, refunds withdraw
- ``devnet.py``: devnet up/reset/status/down (over ``dtnsess_cli.devnet``)
- ``keeper.py``: keeper deploy/configure/status/check (the CRE keeper's receiver)
"""

from .app import app, main
# NOTE: importing a command module registers its commands on ``app``; this order is the order
# of ``dtnsess --help``.
from . import sessions, requests, watch, pool, maintenance, devnet, keeper  # noqa: E402,F401  isort: skip

__all__ = ["app", "main"]
