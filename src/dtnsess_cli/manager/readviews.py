"""What the session manager's reads and checks return (see ``views``, which names them too):
imported when one is first made, since a write (``request``, ``close``) makes none."""

from __future__ import annotations

from ..errors import scrub
from ..record import field, record
from ..units import Amount

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional


@record
class ConfigView:
    """The manager's configuration and its fee token (``getConfig()`` and the token's facts)."""

    manager: str
    owner: str
    ai: str
    fee_token: str
    token_symbol: str
    token_decimals: int
    min_session_balance: Amount
    max_session_age: int
    session_pool_size: int
    pool_length: int
    fee_per_byte_req: Amount
    fee_per_byte_res: Amount
    total_fee_per_res: Amount
    request_timeout: int
    active_count: int
    grant_duration: int


@record
class Balances:
    """An address's ETH, fee token, allowance to the manager and claimable refunds."""

    address: str
    eth: Amount
    token: Amount
    allowance: Amount
    claimable_refunds: Amount
    token_address: str
    spender: str


@record
class RequestView:
    """One request of a user: its session, when it was made and its status."""

    request_id: str
    session_id: int
    user: str
    created_at: int
    status: str


@record
class ResponseView:
    """A request's status and, once answered, its decoded answer (text, image, CID, bytes)."""

    request_id: str
    status: str  # pending | succeeded | failed | unknown
    manager_status: str
    message: str
    answer: Optional[str]
    response_hex: Optional[str] = None
    session_id: Optional[int] = None
    user: Optional[str] = None
    created_at: Optional[int] = None
    note: Optional[str] = None
    # what a success answer carries: text | image | cid (an IPFS answer) | bytes | raw
    kind: Optional[str] = None
    cid: Optional[str] = None
    ipfs_url: Optional[str] = None
    # the content: {"type": "text"|"image"|"bytes", "size", and for images "format", "mime",
    # "width", "height"; fetched from a gateway also "gateway" and "verified"}
    content: Optional[dict] = None
    _data: Optional[bytes] = field(default=None, repr=False)  # the content's bytes (--out)

    @property
    def data(self) -> Optional[bytes]:
        """The content's bytes (an image, text as UTF-8, or what a CID named once fetched with
        ``Client.fetch_ipfs``); None while there are none."""
        return self._data


@record
class TxView:
    """``dtnsess tx HASH``: what the chain says about a transaction, and what it was for."""

    tx_hash: str
    status: str  # pending | mined | failed | unknown
    block: Optional[int] = None
    sender: Optional[str] = None
    to: Optional[str] = None
    nonce: Optional[int] = None
    gas_used: Optional[int] = None
    # in ETH, as every transaction summary names it (gas used x price + the OP-stack L1 fee)
    fee_eth: Optional[str] = None
    events: "list[dict[str, Any]]" = field(default_factory=list)  # {"name", "address", "args"}
    revert: Optional[str] = None
    what: Optional[str] = None  # the journal's description, when this machine sent it
    command: Optional[str] = None  # the journal's command line
    journal: Optional[str] = None  # the journal's status
    # the chain the journal recorded it on: ``chain 31337 (genesis 0x…)``; and whether that is
    # another chain than the node's (same id, another genesis: never resolved against this one)
    journal_chain: Optional[str] = None
    other_chain: bool = False
    # the variants of its intent at its nonce (``tx speedup``/``tx cancel``), first one first:
    # {"tx_hash", "variant": original | speedup | cancel, "journal"}; one at most is mined
    family: "Optional[list[dict[str, Any]]]" = None


@record
class Check:
    """One check of ``doctor``: passed (True), failed (False) or informational (None)."""

    name: str
    ok: Optional[bool]  # None = skipped / informational
    detail: str
    required: bool = True
    # the exit code a failed check stands for (README's table: rpc 5, chain 6, config 3, ...);
    # 0 for a check that did not fail
    code: int = 1

    def __post_init__(self) -> None:
        self.detail = scrub(self.detail)
        self.code = 0 if self.ok is not False else (self.code or 1)
