"""A contract creation to send (``send_and_wait(ctx, Deploy(init_code), ...)``).

NOTE: a module of its own: only deploys make one, and every module a write does not import is
start-up saved (issue 19); ``chain.send`` names it on first use.
"""

from __future__ import annotations

from ..record import record


@record(frozen=True)
class Deploy:
    """A contract creation to send: its init code (bytecode + constructor arguments)."""

    data: str
    to: None = None
    function: None = None
