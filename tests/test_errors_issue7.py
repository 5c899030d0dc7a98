"""The manager's new errors (issue 7) decoded by selector from the bundled ABI into one
readable line with a hint (no chain needed)."""

import pytest
from eth_abi import encode
from eth_utils import keccak

from dtnsess_cli.artifacts import all_abis
from dtnsess_cli.errors import RevertError
from dtnsess_cli.chain.abi import ErrorDecoder
from dtnsess_cli.manager.reverts import friendly as _friendly

USER = "0x" + "ab" * 20


def data(sig: str, types: list, values: list) -> str:
    return "0x" + (keccak(text=sig)[:4] + encode(types, values)).hex()


@pytest.mark.parametrize("sig, types, values, fragments, hint", [
    ("AlreadyHoldsGrant(address,uint256)", ["address", "uint256"], [USER, 3],
     ["already holds a pool grant (session 3)"], "pool release"),
    ("GrantExhausted(uint256,address,uint256)", ["uint256", "address", "uint256"],
     [3, USER, 500_000], ["grant on session 3 is spent", "0.5 USDT left"], "pool get"),
    ("GrantExpired(uint256,address,uint256)", ["uint256", "address", "uint256"],
     [3, USER, 1_700_000_000], ["pool grant on session 3 expired at 2023-11-"],
     "pool get"),
    ("InvalidConfig(uint8)", ["uint8"], [15],
     ["invalid configuration: grant duration out of range (10 minutes to 30 days)"], None),
    ("RoutingNotAllowed(uint256)", ["uint256"], [4], ["session 4", "trust namespace only"],
     "--node"),
    ("SessionBalanceTooLow(uint256,uint256,uint256)", ["uint256"] * 3, [2, 0, 128_000],
     ["session 2 has 0 USDT left", "0.128 USDT"], "renew"),
    ("InvalidRouting(uint8)", ["uint8"], [0],
     ["invalid routing: aggregation must be ANY"], None),
    ("FeeOnTransferToken(uint256,uint256)", ["uint256", "uint256"], [10**6, 990_000],
     ["delivered 0.99 USDT of 1 USDT"], None),
])
def test_new_errors_read_well(sig, types, values, fragments, hint):
    dec = ErrorDecoder(all_abis().values()).decode(data(sig, types, values))
    assert dec.name == sig.split("(")[0]
    err = _friendly(dec, "a call", None, 6, "USDT")
    assert isinstance(err, RevertError)
    for f in fragments:
        assert f in err.message, err.message
    assert (hint in err.hint) if hint else err.hint is None
