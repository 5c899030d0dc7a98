"""What the session manager's methods return: dataclasses (records here, see :mod:`..record`;
the renderer shows them, ``--json`` prints them).

Those of the reads and checks (``ConfigView``, ``Balances``, ``RequestView``, ``ResponseView``,
``TxView``, ``Check``) live in ``readviews`` and are named here on first use (PEP 562): a write
needs none of them, and every module a write does not import is start-up saved (issue 19)."""

from __future__ import annotations

from ..errors import DtnsessError
from ..record import field, record
from ..units import Amount

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Optional

    from ..chain.send import TxResult
    from .readviews import Balances, Check, ConfigView, RequestView, ResponseView, TxView

__all__ = ["ConfigView", "SessionView", "Balances", "RequestView", "ResponseView",
           "WriteResult", "TxView", "Check"]
READ_VIEWS = frozenset({"ConfigView", "Balances", "RequestView", "ResponseView", "TxView", "Check"})


def __getattr__(name: str) -> Any:
    if name in READ_VIEWS:
        from . import readviews

        return getattr(readviews, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@record
class SessionView:
    """One session's full record, with its balance on DTN's side when it was read."""

    session_id: int
    owner: str
    balance: Amount
    last_used: int
    active: bool
    request_count: int
    dtn_session_id: int
    pending_requests: int
    last_request_at: int
    pooled: bool
    dtn_balance: Optional[Amount]
    closable_at: int = 0  # when pending requests stop blocking close/renew (0: none pending)
    closing: bool = False
    pending_since: int = 0


@record
class WriteResult:
    """A write's outcome: the transactions sent (or simulated) and what they produced."""

    action: str
    txs: "list[TxResult]" = field(default_factory=list)
    data: "dict[str, Any]" = field(default_factory=dict)
    dry_run: bool = False
    # what stopped the command after it sent something (close blocked by pending requests):
    # the result is still shown, then this error, and its exit code
    error: Optional[DtnsessError] = None

    # typed views of ``data`` for programs (the CLI renders ``to_dict()``)
    @property
    def session_id(self) -> Optional[int]:
        """The session created, renewed, requested in or taken (None when the write has none)."""
        v = self.data.get("session_id")
        return int(v) if v is not None else None

    @property
    def request_id(self) -> Optional[str]:
        """The request id (0x-hex) of ``make_ai_request``."""
        return self.data.get("request_id")

    @property
    def tx_hashes(self) -> "list[str]":
        """The hashes of the transactions sent, in order (none for a dry run)."""
        return [t.tx_hash for t in self.txs if t.tx_hash]

    def to_dict(self) -> dict:
        out = {"action": self.action, "dry_run": self.dry_run}
        out.update(self.data)
        out["transactions"] = [t.summary() for t in self.txs]
        if self.error is not None:
            out["error"] = self.error.to_dict()
        return out
