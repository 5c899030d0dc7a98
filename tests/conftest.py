"""Shared fixtures: one Anvil per test session, contracts deployed once,
snapshot/revert around every test, accounts named by role.

Anvil is the pinned binary from node_modules (`npm ci`); it listens on a free
127.0.0.1 port and is always stopped at the end of the session, also when
tests fail or the run is interrupted.
"""

from __future__ import annotations

import importlib

import pytest

from dtnsess_cli.devnet.anvil import AnvilProcess

# Session-scoped fixtures that change chain state. The autouse snapshot
# fixture instantiates the ones a test uses *before* taking its snapshot, so
# a deployment made on first use is not reverted after that test.
CHAIN_SESSION_FIXTURES = ("system6", "system18")


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    """Each test's own dtnsess state directory (the transaction journal, the sender locks):
    never the developer's, and no open entry of one test (on a reverted chain) in the next."""
    monkeypatch.setenv("DTNSESS_STATE_DIR", str(tmp_path / "dtnsess-state"))


@pytest.fixture(scope="session")
def anvil(tmp_path_factory):
    """The session's Anvil node (an AnvilProcess: .url, .pid, .port)."""
    log = tmp_path_factory.mktemp("anvil") / "anvil.log"
    node = AnvilProcess()
    try:
        node.start(log_path=log)
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def w3(anvil):
    from web3 import Web3

    web3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
    assert web3.is_connected(), f"anvil at {anvil.url} does not answer"
    return web3


@pytest.fixture(scope="session")
def accounts(w3):
    """Anvil's unlocked dev accounts (checksum addresses), 10000 ETH each."""
    return list(w3.eth.accounts)


@pytest.fixture(scope="session")
def private_keys():
    """Private keys of the dev accounts, same order as `accounts` (public test keys)."""
    from dtnsess_cli.devnet.anvil import dev_private_keys

    return dev_private_keys(10)


@pytest.fixture(scope="session")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def user(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def owner(user):
    """Alias of `user`: the owner of the sessions a test creates."""
    return user


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def worker(accounts):
    return accounts[3]


def _deploy(w3, deployer, worker, decimals):
    try:
        localdtn = importlib.import_module("dtnsess_cli.devnet.localdtn")
    except ModuleNotFoundError as exc:
        if exc.name != "dtnsess_cli.devnet.localdtn":
            raise
        pytest.skip("dtnsess_cli.devnet.localdtn (deploy_system) does not exist yet")
    return localdtn.deploy_system(w3, deployer, decimals=decimals, worker=worker)


@pytest.fixture(scope="session")
def system6(w3, deployer, worker):
    """MockUSDT (6 decimals) + LocalDtnRouter + AdvancedSessionManager, deployed once.

    The node's worker is the `worker` account.
    """
    return _deploy(w3, deployer, worker, 6)


@pytest.fixture(scope="session")
def system18(w3, deployer, worker):
    """The same system with an 18-decimal fee token."""
    return _deploy(w3, deployer, worker, 18)


def _session_chain_fixtures(request) -> list[str]:
    names = set(CHAIN_SESSION_FIXTURES)
    # NOTE: also pick up session/module-scoped fixtures other test modules add,
    # so their deployments are made before the snapshot (pytest internals,
    # stable since pytest 3; fall back to the fixed list if they move).
    try:
        defs = request._pyfuncitem._fixtureinfo.name2fixturedefs
        for name, fixturedefs in defs.items():
            if fixturedefs and fixturedefs[-1].scope in ("session", "package", "module"):
                names.add(name)
    except AttributeError:
        pass
    return [n for n in request.fixturenames if n in names]


@pytest.fixture(autouse=True)
def _isolate_chain(request):
    """evm_snapshot before each test and evm_revert after it (only for tests on the chain)."""
    if "anvil" not in request.fixturenames:
        # A test that does not touch the chain does not start Anvil.
        yield
        return
    for name in _session_chain_fixtures(request):
        request.getfixturevalue(name)
    web3 = request.getfixturevalue("w3")
    snapshot = web3.provider.make_request("evm_snapshot", [])["result"]
    try:
        yield
    finally:
        reply = web3.provider.make_request("evm_revert", [snapshot])
        assert reply.get("result") is True, f"evm_revert({snapshot}) failed: {reply}"


def pytest_terminal_summary(terminalreporter):
    """Print what tests recorded as `*_summary` properties (the fuzz run's step counts)."""
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name.endswith("_summary") and report.when == "call":
                    terminalreporter.write_line(str(value))
