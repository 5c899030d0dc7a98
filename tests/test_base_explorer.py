"""Explorer links (issue 10, section 4): on a known chain every tx hash in human output is
followed by its explorer page; --json stays as it is; devnets and unknown chains get no link.

Base is a second Anvil started with --chain-id 8453 (its own free 127.0.0.1 port, stopped after
this module) with the local system deployed on it.
"""

from __future__ import annotations

import re

import pytest

from cli_helpers import Cli, assert_ok, isolate_env, load_json
from dtnsess_cli.render import Renderer, explorer_url
from helpers import fund

HASH = "0x" + "ab" * 32


def test_known_chains_link_to_their_explorer():
    assert explorer_url(8453, HASH) == f"https://basescan.org/tx/{HASH}"
    assert explorer_url(84532, HASH) == f"https://sepolia.basescan.org/tx/{HASH}"
    assert explorer_url(1, HASH) == f"https://etherscan.io/tx/{HASH}"
    assert explorer_url(10, HASH) == f"https://optimistic.etherscan.io/tx/{HASH}"
    for unknown in (31337, 1337, 424242, None):
        assert explorer_url(unknown, HASH) is None
    ui = Renderer()
    assert ui.tx_ref(HASH) == HASH  # the chain is not known yet
    ui.chain_id = 84532
    assert ui.tx_ref(HASH) == f"{HASH} (https://sepolia.basescan.org/tx/{HASH})"


@pytest.fixture(scope="module")
def base_chain(tmp_path_factory):
    """(AnvilProcess, LocalSystem) on an Anvil that calls itself Base."""
    from web3 import Web3

    from dtnsess_cli.devnet.anvil import AnvilProcess
    from dtnsess_cli.devnet.localdtn import deploy_system

    node = AnvilProcess()
    try:
        node.start(chain_id=8453, log_path=tmp_path_factory.mktemp("anvil-base") / "anvil.log")
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 30}))
        accounts = w3.eth.accounts
        yield node, deploy_system(w3, accounts[0], 6, worker=accounts[3])
    finally:
        node.stop()


BASE = {"DTNSESS_CHAIN_ID": "8453"}


def test_on_base_every_tx_hash_has_its_basescan_link(base_chain, private_keys, monkeypatch,
                                                     tmp_path):
    node, system = base_chain
    isolate_env(monkeypatch, tmp_path)
    cli = Cli(system, private_keys, monkeypatch, node.url)
    user = system.w3.eth.accounts[1]
    fund(system, user, 100, approve=False)
    r = cli("create", "10", "--yes", env=BASE)  # approve + create: two hashes
    assert_ok(r)
    linked = re.findall(r"tx (0x[0-9a-f]{64}) \(https://basescan\.org/tx/\1\)", r.stdout)
    assert len(linked) == 2 and len(set(re.findall(r"0x[0-9a-f]{64}", r.stdout))) == 2, r.stdout
    # the tx command too
    r = cli("tx", linked[1], env=BASE)
    assert_ok(r)
    assert f"tx {linked[1]} (https://basescan.org/tx/{linked[1]}): mined" in r.stdout, r.stdout
    # --json is unchanged: no link field
    r = cli("create", "10", "--yes", "--json", env=BASE)
    assert_ok(r)
    assert "basescan" not in r.stdout and "explorer" not in r.stdout
    assert all(set(t) >= {"tx_hash", "fee_eth"} for t in load_json(r)["transactions"])


def test_a_devnet_gets_no_link(make_cli, system6, user):
    cli = make_cli(system6)
    fund(system6, user, 100, approve=False)
    r = cli("create", "10", "--yes")
    assert_ok(r)
    assert re.search(r"tx 0x[0-9a-f]{64} \(block", r.stdout) and "https://" not in r.stdout
