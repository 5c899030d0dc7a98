"""The session manager's, its fee token's and DTN's reverts, in words a user can act on.

``friendly`` is the ``TxContext.friendly`` of the manager's send path: a decoded revert
(``chain.abi.DecodedRevert``) becomes the DtnsessError a command shows.
"""

from __future__ import annotations


from ..chain.abi import DecodedRevert, _fmt_arg
from ..errors import DtnsessError, InsufficientFundsError, NotAuthorizedError, RevertError
from ..units import format_amount
from .base import _when

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


def requests_pending_error(description: str, session_id: int, pending: int, retry_after: int, *,
                           data: Optional[str] = None,
                           tx_hash: Optional[str] = None) -> RevertError:
    """The manager's RequestsPending(sessionId, pending, retryAfter), for people."""
    return RevertError(
        description,
        f"session {session_id} has {pending} pending request{'s' if pending != 1 else ''}; "
        f"retry after {_when(retry_after)}",
        name="RequestsPending", args=(session_id, pending, retry_after), data=data,
        tx_hash=tx_hash,
        hint="wait for the answers (`dtnsess requests --pending`); closing now would strand them",
    )


# The manager's InvalidConfig(ConfigProblem) and InvalidRouting(RoutingProblem), by enum value
# (the order of the enums in contracts/AdvancedSessionManager.sol).
CONFIG_PROBLEMS = (
    "minimum session balance is zero", "minimum session balance too high",
    "max session age is zero", "max session age too high",
    "max session age below request timeout", "pool size too high",
    "pool size below current pool", "max fee per response is zero",
    "max fee per response too high", "fee per byte above max fee per response",
    "request timeout is zero", "request timeout too high",
    "request timeout above max session age", "renounce disabled", "grant limit out of range",
    "grant duration out of range (10 minutes to 30 days)",
)
ROUTING_PROBLEMS = (
    "aggregation must be ANY", "no namespace and no node",
    "redundancy must be 1 (the DTN router cannot complete more)", "confidence level above 10",
)


def _problem(table: tuple, code: int) -> str:
    return table[code] if 0 <= code < len(table) else f"reason {code}"


# Friendly messages for well-known reverts of the manager, the token and the DTN router.
def friendly(dec: DecodedRevert, description: str, tx_hash: Optional[str],
              token_decimals: Optional[int], token_symbol: str) -> DtnsessError:
    a = dec.args

    def tok(n: int) -> str:
        if token_decimals is None:
            return f"{n} units"
        return f"{format_amount(n, token_decimals)} {token_symbol}".rstrip()

    name = dec.name
    if name == "OwnableUnauthorizedAccount":
        return NotAuthorizedError(f"{description}: {a[0]} is not the contract owner",
                                  hint="only the deployer (owner) may do this")
    if name == "NotAllowedToUseSession":
        return NotAuthorizedError(f"{description}: {a[1]} may not use session {a[0]}",
                                  hint="use your own session, or take one with `dtnsess pool get`")
    if name == "NotSessionOwner":
        return NotAuthorizedError(f"{description}: {a[1]} is not the owner of session {a[0]}")
    if name == "NotDtn":
        return NotAuthorizedError(f"{description}: only the DTN router may call this ({a[0]} is not)")
    if name == "RequestsPending":
        return requests_pending_error(description, *a, data=dec.data, tx_hash=tx_hash)
    if name == "RequestIdCollision":
        return RevertError(
            description, f"request id {_fmt_arg(a[0])} is already in use this second",
            name=name, args=a, data=dec.data, tx_hash=tx_hash,
            hint="DTN allows one request per session and user per second: retry in a second "
                 "or use another session",
        )
    if name == "ERC20InsufficientBalance":
        return InsufficientFundsError("fee token balance", tok(a[1]), tok(a[2]))
    if name == "ERC20InsufficientAllowance":
        return InsufficientFundsError("fee token allowance", tok(a[1]), tok(a[2]),
                                      hint="run `dtnsess approve AMOUNT`")
    if name == "NothingToWithdraw":
        return RevertError(description, "no refunds to withdraw", name=name, args=a,
                           data=dec.data, tx_hash=tx_hash)
    if name == "InvalidConfig":
        return RevertError(description, f"invalid configuration: {_problem(CONFIG_PROBLEMS, a[0])}",
                           name=name, args=a,
                           data=dec.data, tx_hash=tx_hash)
    if name == "ZeroAmount":
        return RevertError(description, "amount must be greater than zero", name=name,
                           data=dec.data, tx_hash=tx_hash)
    # the pool, routing and token errors of the security fixes (issue 7)
    known = {
        "AlreadyHoldsGrant": lambda: (
            f"{a[0]} already holds a pool grant (session {a[1]})",
            "one pooled session per address: `dtnsess pool release` first"),
        "GrantExhausted": lambda: (
            f"the pool grant on session {a[0]} is spent ({tok(a[2])} left, less than one "
            f"answer's maximum fee)", "take another with `dtnsess pool get`, or use your own session"),
        "GrantExpired": lambda: (
            f"{a[1]}'s pool grant on session {a[0]} expired at {_when(a[2])}",
            "take a session again with `dtnsess pool get`, or use your own session"),
        "RoutingNotAllowed": lambda: (
            f"the owner of session {a[0]} lets pool takers route by trust namespace only",
            "drop --node (use --namespace, or the default system trust)"),
        "SessionBalanceTooLow": lambda: (
            f"session {a[0]} has {tok(a[1])} left, less than the {tok(a[2])} one answer needs",
            "add funds with `dtnsess renew SESSION AMOUNT`, or use another session"),
        "InvalidRouting": lambda: (f"invalid routing: {_problem(ROUTING_PROBLEMS, a[0])}", None),
        "SessionNotActive": lambda: (f"session {a[0]} is not active (closed or unknown)",
                                     "`dtnsess sessions` lists your active sessions"),
        "AlreadyClosing": lambda: (
            f"session {a[0]} is closing already",
            "`dtnsess close ID` once its requests are answered, or cancel with `dtnsess close ID --cancel`"),
        "SessionIsClosing": lambda: (
            f"session {a[0]} is closing", "cancel the close first (`dtnsess close ID --cancel`)"),
        "AlreadyPooled": lambda: (f"session {a[0]} is in the pool already", None),
        "NotPooled": lambda: (f"session {a[0]} is not in the pool", None),
        "PoolFull": lambda: (f"the pool is full ({a[0]} sessions)",
                             "remove one of yours (`dtnsess pool remove ID`) or wait"),
        "PoolEmpty": lambda: ("the pool is empty", "create a session of your own (`dtnsess create AMOUNT`)"),
        "NoGrant": lambda: (f"{a[0]} holds no pool grant", None),
        "NoSuchGrant": lambda: (f"{a[1]} holds no grant on session {a[0]}", None),
        "BalanceTooLow": lambda: (
            f"{tok(a[0])} is below the minimum session balance of {tok(a[1])}",
            "the amount is below the contract's minimum session balance (`dtnsess config show`)"),
        "EmptyCall": lambda: ("the encoded call is empty", None),
        "RequestNotPending": lambda: (f"request {_fmt_arg(a[0])} is not pending (unknown or settled)",
                                      None),
        "NothingClosed": lambda: ("nothing closed: no session is idle, or DTN refused every close",
                                  None),
        "OutOfGas": lambda: ("ran out of gas", "retry with more gas or fewer ids"),
        "TooManySessions": lambda: ("the manager has run out of session ids", None),
        "FeeOnTransferToken": lambda: (
            f"the fee token delivered {tok(a[1])} of {tok(a[0])}: tokens that take a fee on "
            f"transfer are not supported", None),
    }
    if name in known:
        reason, hint = known[name]()
        return RevertError(description, reason, name=name, args=a, data=dec.data,
                           tx_hash=tx_hash, hint=hint)
    hint = None
    if name == "Error" and a and a[0] == "Model does not exist":
        hint = ("use a full registry name such as model.system.openai-gpt-5-nano (--model; "
                "`dtnsess models` lists the known ones)")
    elif name == "Error" and a and a[0] == "Insufficient callback gas":
        hint = "raise --value (it must cover the callback gas)"
    return RevertError(description, dec.reason, name=name, args=a, data=dec.data,
                       tx_hash=tx_hash, hint=hint)
