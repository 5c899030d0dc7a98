"""The one sleep of the send path and the manager (receipt polls, request pacing, waits for
the sender lock): ``time.sleep``, unless the async client (``api/aio.py``) runs that code on
its event loop, where it sets ``SLEEP`` to a sleep that lets the loop run other tasks."""

from __future__ import annotations

import contextvars
import time

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional

SLEEP: contextvars.ContextVar[Optional[Callable[[float], None]]] = contextvars.ContextVar(
    "dtnsess_sleep", default=None)


def sleep(seconds: float) -> None:
    # NOTE: time.sleep looked up at each call (not bound at import), as before this hook
    (SLEEP.get() or time.sleep)(seconds)
