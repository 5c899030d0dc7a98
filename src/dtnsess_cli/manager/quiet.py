"""The UI of a client without a person: never asks, never prints.

The CLI hands the client its ``render.Renderer`` (spinners, progress bars, the confirmation
prompt); a program using the Python API gets this instead. Notes that the renderer would show
on stderr (an earlier transaction from this key was found mined, a session skipped for its
balance) go to the ``dtnsess`` logger at INFO: silent unless the program configures logging.
"""

from __future__ import annotations

import contextlib
import logging

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

__all__ = ["QuietUI", "LOGGER_NAME"]

LOGGER_NAME = "dtnsess"
# the library convention: without the program's own logging set up, nothing is printed (not
# even warnings, which Python's last-resort handler would otherwise write to stderr)
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())


class QuietUI:
    """The ``ui`` hooks of ``Client`` (see render.Renderer), without a terminal."""

    # NOTE: False is what keeps every write from asking: chain.send confirms only when
    # ``ui.interactive`` (and not --yes); a program's stdin being a terminal changes nothing.
    interactive = False
    decorate = False

    def __init__(self, logger: "logging.Logger | None" = None) -> None:
        self.log = logger or logging.getLogger(LOGGER_NAME)

    def info(self, message: str) -> None:
        self.log.info("%s", message)

    def warn(self, message: str) -> None:
        self.log.warning("%s", message)

    def confirm(self, question: str) -> bool:  # never reached (interactive is False)
        return False

    @contextlib.contextmanager
    def status(self, message: str) -> Iterator[Any]:
        yield None

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[Any]:
        yield lambda n=1: None
