"""A contract creation to send (``send_and_wait(ctx, Deploy(init_code), ...)``).

NOTE: a module of its own: only deploys make one, and making a dataclass cost ~1.5 ms of every
write's start-up (issue 19); ``chain.send`` names it on first use.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Deploy:
    """A contract creation to send: its init code (bytecode + constructor arguments)."""

    data: str
    to: None = None
    function: None = None
