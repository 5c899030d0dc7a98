"""The error family: exit codes, one-line messages, revert decoding by selector."""

import pytest

from dtnsess_cli import errors as E
from dtnsess_cli.errors import ExitCode


def test_exit_codes_are_stable():
    assert [int(c) for c in (ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE, ExitCode.CONFIG,
                             ExitCode.INPUT, ExitCode.RPC, ExitCode.CHAIN, ExitCode.REVERTED,
                             ExitCode.FUNDS, ExitCode.AUTH, ExitCode.TIMEOUT,
                             ExitCode.GAS_PRICE, ExitCode.LOCKED, ExitCode.ABORTED)] == list(range(14))


@pytest.mark.parametrize("exc,code", [
    (E.ConfigError("x"), ExitCode.CONFIG),
    (E.InputError("amount", "x", "bad"), ExitCode.INPUT),
    (E.RpcError("http://h", "down"), ExitCode.RPC),
    (E.ChainMismatchError(1, 2), ExitCode.CHAIN),
    (E.NoContractError("0x" + "0" * 40), ExitCode.CHAIN),
    (E.RevertError("create", "Balance too low"), ExitCode.REVERTED),
    (E.InsufficientFundsError("ETH", "0", "1"), ExitCode.FUNDS),
    (E.NotAuthorizedError("no"), ExitCode.AUTH),
    (E.KeystoreError("/k", "wrong password"), ExitCode.AUTH),
    (E.WaitTimeoutError("the answer", 3), ExitCode.TIMEOUT),
    (E.GasPriceTooHighError("50", "10"), ExitCode.GAS_PRICE),
    (E.LockedError("/tmp/l"), ExitCode.LOCKED),
    (E.BlockGasLimitError("closing one session", 150_000), ExitCode.CHAIN),
    (E.AbortedError(), ExitCode.ABORTED),
    (E.ArtifactError("X", "missing"), ExitCode.CONFIG),
])
def test_each_error_has_its_code_and_a_docstring(exc, code):
    assert isinstance(exc, E.DtnsessError)
    assert exc.exit_code == code
    assert type(exc).__doc__.strip().startswith("Raised when")
    assert "\n" not in str(exc)
    assert exc.to_dict()["code"] == int(code)
    assert exc.to_dict()["name"] == code.name and exc.to_dict()["error"] is True


def test_revert_messages_say_whether_sent():
    assert "would revert" in str(E.RevertError("create", "x"))
    assert "0xabc" in str(E.RevertError("create", "x", tx_hash="0xabc"))


def test_redact_url_hides_credentials_and_api_keys():
    out = E.redact_url("https://user:pw@base-mainnet.g.alchemy.com/v2/abcdefghijklmnopqrstuvwxyz123456?key=s")
    assert "pw" not in out and "abcdefghijklmnop" not in out and "key=s" not in out
    assert E.redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"


def _abi_error(name, *types):
    return {"type": "error", "name": name,
            "inputs": [{"name": f"a{i}", "type": t} for i, t in enumerate(types)]}


def test_decode_revert_by_selector():
    from eth_abi import encode
    from eth_utils import keccak

    from dtnsess_cli.chain.abi import ErrorDecoder

    dec = ErrorDecoder([[_abi_error("RequestsPending", "uint256", "uint256", "uint256"),
                         _abi_error("NothingToWithdraw")]])
    err = bytes.fromhex("08c379a0") + encode(["string"], ["Balance too low"])
    d = dec.decode("0x" + err.hex())
    assert (d.name, d.reason) == ("Error", "Balance too low")
    d = dec.decode(bytes.fromhex("4e487b71") + encode(["uint256"], [0x11]))
    assert d.name == "Panic" and "overflow" in d.reason
    sel = keccak(text="RequestsPending(uint256,uint256,uint256)")[:4]
    d = dec.decode(sel + encode(["uint256"] * 3, [3, 1, 99]))
    assert d.name == "RequestsPending" and d.args == (3, 1, 99)
    d = dec.decode(keccak(text="NothingToWithdraw()")[:4])
    assert d.name == "NothingToWithdraw"
    assert dec.decode("0x").name is None
    assert dec.decode("0xdeadbeef").name is None


def test_friendly_mapping_of_owner_errors():
    from eth_abi import encode
    from eth_utils import keccak

    from dtnsess_cli.chain.abi import ErrorDecoder
    from dtnsess_cli.chain.send import TxContext
    from dtnsess_cli.manager.reverts import friendly

    ctx = TxContext(rpc=None, account=None, chain_id=1, ui=None, friendly=friendly,
                    errors=ErrorDecoder([[_abi_error("OwnableUnauthorizedAccount", "address")]]))
    data = keccak(text="OwnableUnauthorizedAccount(address)")[:4] + encode(["address"], ["0x" + "11" * 20])
    exc = ctx.revert_error(data, "config update")
    assert isinstance(exc, E.NotAuthorizedError)


def test_gas_limit_margin_never_crosses_the_per_transaction_cap():
    from dtnsess_cli.chain.send import TX_GAS_CAP, gas_limit_for

    assert gas_limit_for(100_000) == 120_000
    assert gas_limit_for(14_000_000) == TX_GAS_CAP  # 16.8M would exceed 2^24
    assert gas_limit_for(TX_GAS_CAP) == TX_GAS_CAP
    assert gas_limit_for(TX_GAS_CAP + 1) > TX_GAS_CAP  # does not fit anyway: no pretending
