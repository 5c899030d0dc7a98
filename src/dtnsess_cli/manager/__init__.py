"""The AdvancedSessionManager, its fee token and DTN as Python methods (``Client``).

Methods mirror the contract's functions in snake_case, take token amounts as exact human
strings or Amounts, return plain dataclasses (``views``) and never print. Every write goes
through ``chain.send`` (simulate, estimate, journal, sign, send once, receipt). Only the chain
layer (``dtnsess_cli.chain``) talks to the node: no web3 on the command path.

By domain: ``connect`` (the node, getConfig(), batched reads), ``writes`` (key, sender lock,
journal, the one send), ``sessions``, ``requests`` (one, many, answers, settling), ``pool``,
``maintenance`` (cleanup, refunds, configuration, sweep, deploy, doctor), ``keeper`` (the CRE
keeper's receiver); ``base`` holds ids,
routing and constants, ``reverts`` the manager's errors in words.
"""

from __future__ import annotations


from .base import (  # noqa: F401 - the public names of the session manager
    AGGREGATION_ANY,
    ANSWERED,
    CALLTYPE_DIRECT,
    CALLTYPE_IPFS,
    DEFAULT_CALLBACK_GAS_WEI,
    ERC20_ABI,
    MAX_PROMPT_BYTES,
    MAX_UINT256,
    REQUEST_STATUS,
    SYSTEM_TRUST,
    check_rpc_url,
    namespace_routing_id,
    node_routing_id,
    parse_request_id,
    parse_session_id,
    routing_id,
    system_trust_id,
    system_trust_routing,
)
from .connect import Connection
from .keeper import Keeper
from .maintenance import Maintenance
from .pool import Pool
from .requests import Requests
from .sessions import Sessions
from . import views
from .views import SessionView, WriteResult  # noqa: F401
from .writes import Writes

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - at run time: __getattr__
    from typing import Any

    from .readviews import Balances, Check, ConfigView, RequestView, ResponseView, TxView


def __getattr__(name: str) -> Any:
    # NOTE: the results of reads and checks on first use (see views.READ_VIEWS)
    if name in views.READ_VIEWS:
        return getattr(views, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Client", "Balances", "Check", "ConfigView", "RequestView", "ResponseView", "SessionView",
    "TxView", "WriteResult", "AGGREGATION_ANY", "ANSWERED", "DEFAULT_CALLBACK_GAS_WEI",
    "ERC20_ABI", "MAX_PROMPT_BYTES", "MAX_UINT256", "REQUEST_STATUS", "SYSTEM_TRUST",
    "check_rpc_url", "namespace_routing_id", "node_routing_id",
    "parse_request_id", "parse_session_id", "routing_id", "system_trust_id",
    "system_trust_routing",
]


class Client(Connection, Writes, Sessions, Requests, Pool, Maintenance, Keeper):
    """One connection to one AdvancedSessionManager; caches what does not change per run.

    Built from resolved ``Settings`` and a UI (the CLI's ``Run.client``); programs use
    ``dtnsess_cli.api.Client``, the same class built from an RPC URL, an address and a signer.
    """
