"""Input that can be known bad before a transaction is sent is refused then, with one line and
nothing sent (issue 15). On main 5e555a9 each of these was sent and paid for, or blamed the
wrong thing."""

from __future__ import annotations

import pytest

from cli_helpers import assert_error, create_via_cli, nonce
from dtnsess_cli.errors import ExitCode
from helpers import fund


@pytest.fixture
def cli(make_cli, system6, user):
    c = make_cli(system6)
    fund(system6, user, 100, approve=False)
    create_via_cli(c, "20")
    return c


@pytest.mark.parametrize("name,why", [("bad name!", "OWNER.NAME"), ("nobody", "OWNER.NAME"),
                                      ("nobody.nothing", "no such node is registered")])
def test_a_node_nobody_can_be_is_refused(cli, w3, user, name, why):
    """`--node nobody.nothing` was paid and then blocked close and renew for 15 minutes."""
    before = nonce(w3, user)
    assert_error(cli("request", "hi", "--node", name, "--yes"), ExitCode.INPUT, why)
    assert nonce(w3, user) == before


def test_a_registered_node_is_accepted(cli, system6, w3, user):
    before = nonce(w3, user)
    short = system6.node.removeprefix("node.")
    r = cli("request", "hi", "--node", short, "--yes")
    assert r.exit_code == 0, r.output
    assert nonce(w3, user) == before + 1


@pytest.mark.parametrize("gateway", ["not a url", "ftp://gw.example", "http://:80",
                                     "http://host:99999999"])
def test_an_invalid_ipfs_gateway_is_refused_before_the_request(cli, w3, user, gateway):
    before = nonce(w3, user)
    r = cli("request", "hi", "--ipfs", "--wait", "--yes", env={"DTNSESS_IPFS_GATEWAY": gateway})
    assert_error(r, ExitCode.CONFIG, "IPFS gateway", "not an http(s) URL")
    assert nonce(w3, user) == before


@pytest.mark.parametrize("args", [["request", "hi", "--wait", "--timeout", "nan"],
                                  ["request", "hi", "--wait", "--timeout", "inf"],
                                  ["response", "0x" + "00" * 32, "--wait", "--timeout", "-inf"]])
def test_nan_and_infinity_are_no_numbers(cli, w3, user, args):
    """`--timeout nan` waited forever (after paying)."""
    before = nonce(w3, user)
    assert_error(cli(*args, "--yes"), ExitCode.INPUT, "not a finite number")
    assert nonce(w3, user) == before


@pytest.mark.parametrize("args", [["request", "hi", "--file", "f.txt"],
                                  ["request", "hi", "--sessions", "2"],
                                  ["close", "1", "--all"],
                                  ["settle", "0x" + "00" * 32, "--all"]])
def test_conflicting_arguments_are_usage_errors(cli, w3, user, args):
    before = nonce(w3, user)
    r = cli(*args, "--yes")
    assert r.exit_code == int(ExitCode.USAGE), r.output
    assert "Traceback" not in r.output and nonce(w3, user) == before


def test_chain_id_is_checked_before_the_key(make_cli, system6):
    """`--chain-id 8453 create` on a devnet said "no signing key configured"."""
    c = make_cli(system6)
    r = c("create", "20", "--chain-id", "8453", "--yes", role=None)
    assert_error(r, ExitCode.CHAIN, "8453", "31337")


def test_devnet_port_out_of_range(make_cli, system6):
    """`devnet up --port 70000` was an "internal error"."""
    c = make_cli(system6)
    for port in ("70000", "0"):
        r = c("devnet", "up", "--port", port)
        assert r.exit_code == int(ExitCode.INPUT), r.output
        assert "between 1 and 65535" in r.stderr and "internal error" not in r.stderr


def test_devnet_in_a_directory_it_cannot_write(make_cli, system6, tmp_path):
    """A devnet directory it cannot write was an "internal error" (here: its log directory's
    name is taken by a file; a read-only directory fails the same way, but not for root)."""
    from dtnsess_cli.devnet import LOG_DIR
    from dtnsess_cli.devnet.anvil import free_port

    c = make_cli(system6)  # cwd is tmp_path
    (tmp_path / LOG_DIR).write_text("not a directory")
    r = c("devnet", "up", "--port", str(free_port()))
    assert r.exit_code == int(ExitCode.CONFIG), r.output
    assert "cannot write the devnet's files" in r.stderr and "internal error" not in r.stderr


def test_a_batch_to_an_unregistered_node_is_refused(cli, w3, user, tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("one\ntwo\n")
    before = nonce(w3, user)
    r = cli("request", "--file", str(f), "--node", "nobody.nothing", "--yes")
    assert_error(r, ExitCode.INPUT, "no such node is registered")
    assert nonce(w3, user) == before


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_receipt_timeout_from_the_environment_is_finite(cli, w3, user, value):
    before = nonce(w3, user)
    r = cli("request", "hi", "--yes", env={"DTNSESS_RECEIPT_TIMEOUT": value})
    assert_error(r, ExitCode.CONFIG, "DTNSESS_RECEIPT_TIMEOUT", "positive number of seconds")
    assert nonce(w3, user) == before


# ----------------------------------------------------------------------------- trust namespaces


def test_a_namespace_nobody_holds_is_warned_about_before_sending(cli, w3, user):
    """A request routed to a trust namespace no node holds was paid and stayed pending without
    a word. It is a warning, not a refusal (a node may join before it is answered), said before
    the transaction: a dry run says it too, and sends nothing."""
    before = nonce(w3, user)
    r = cli("request", "hi", "--namespace", "trust.nobody", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "no node holds the trust namespace trust.nobody" in r.stderr
    assert "--node owner.name" in r.stderr and nonce(w3, user) == before
    r = cli("request", "hi", "--namespace", "trust.nobody", "--namespace", "trust.none", "--yes")
    assert r.exit_code == 0, r.output
    assert "trust namespaces trust.nobody, trust.none" in r.stderr
    assert nonce(w3, user) == before + 1  # warned, and sent


@pytest.mark.parametrize("args", [[], ["--namespace", "trust.system.authored"]])
def test_a_namespace_a_node_holds_is_not_warned_about(cli, w3, user, args):
    r = cli("request", "hi", *args, "--yes")
    assert r.exit_code == 0, r.output
    assert "no node holds" not in r.stderr and "not checked" not in r.stderr


def test_a_held_namespace_passes_once_a_node_joins_it(cli, system6, deployer):
    from dtnsess_cli.devnet import localdtn
    from dtnsess_cli.manager import routing_id

    assert "no node holds" in cli("request", "hi", "--namespace", "trust.acme",
                                  "--dry-run").stderr
    localdtn.transact(system6.w3, system6.router.functions.addNodeToNamespace(
        system6.node_id, routing_id("trust.acme")), deployer)
    r = cli("request", "hi", "--namespace", "trust.acme", "--dry-run")
    assert r.exit_code == 0 and "no node holds" not in r.stderr, r.output


def router_without(system, *selectors: str) -> None:
    """The router as one that lacks some views: the same code with those selectors' matches
    taken out of its dispatcher (`PUSH4 selector EQ`; calls to them revert like calls to a
    function a contract does not have). The test's snapshot/revert puts the original back."""
    from helpers import rpc

    code = system.w3.eth.get_code(system.router.address).hex().removeprefix("0x")
    for sel in selectors:
        match = "63" + sel.removeprefix("0x") + "14"
        assert code.count(match) == 1, sel
        code = code.replace(match, "63deadbeef14")
    rpc(system.w3, "anvil_setCode", system.router.address, "0x" + code)


def test_a_router_that_cannot_tell_says_the_routing_was_not_checked(cli, system6, w3, user,
                                                                    tmp_path):
    """Without `nodes(bytes32)` (Base's router keeps nodes elsewhere) the node check was skipped
    without a word; without a namespace view the namespace check is. Each says so once."""
    from dtnsess_cli.manager.base import NAMESPACE_NODES_SELECTOR, NODES_SELECTOR

    router_without(system6, NODES_SELECTOR, NAMESPACE_NODES_SELECTOR)
    before = nonce(w3, user)
    r = cli("request", "hi", "--node", "nobody.nothing", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "node routing was not checked" in r.stderr and "nodes(bytes32)" in r.stderr
    r = cli("request", "hi", "--namespace", "trust.nobody", "--dry-run")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("namespace routing was not checked") == 1
    assert "no node holds" not in r.stderr
    # the default routing (system trust) is not the user's choice: nothing to say
    r = cli("request", "hi", "--dry-run")
    assert r.exit_code == 0 and "not checked" not in r.stderr, r.output
    f = tmp_path / "prompts.txt"
    f.write_text("one\ntwo\n")
    r = cli("request", "--file", str(f), "--namespace", "trust.nobody", "--dry-run")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("namespace routing was not checked") == 1
    assert nonce(w3, user) == before


def test_a_batch_to_a_namespace_nobody_holds_is_warned_about(cli, w3, user, tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("one\ntwo\n")
    r = cli("request", "--file", str(f), "--namespace", "trust.nobody", "--dry-run")
    assert r.exit_code == 0, r.output
    assert r.stderr.count("no node holds the trust namespace trust.nobody") == 1


@pytest.mark.parametrize("value,typed,wei", [("0.00002gwei", "0.00002gwei", "20,000 wei"),
                                             ("2e4", "2e4", "20,000 wei"),
                                             ("0.0001ether", "0.0001ether",
                                              "100,000,000,000,000 wei")])
def test_a_refused_value_is_echoed_as_typed(cli, w3, user, value, typed, wei):
    """`--value 0.00002gwei` was refused as "invalid --value '20000'": a number the user never
    typed. The error names what was typed and what it is in wei."""
    before = nonce(w3, user)
    line = assert_error(cli("request", "hi", "--value", value, "--yes"), ExitCode.INPUT,
                        f"--value '{typed}'", f"{typed} is {wei}")
    assert "'20000'" not in line and nonce(w3, user) == before


def test_a_low_value_warning_echoes_it_as_typed(cli):
    r = cli("request", "hi", "--value", "0.00003gwei", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "warning: --value 0.00003gwei gives the callback 30,000 gas" in r.stderr


@pytest.mark.parametrize("code", ["no modelManager()", "no code"])
def test_models_on_a_router_without_the_registry_views_says_so_plainly(make_cli, system6, code):
    """On a router without the devnet's model-registry views `models` fell back to the preset
    list with the note "not read from the chain: ... AbiDecodeError ...". The note is a
    sentence a user can act on."""
    from helpers import rpc

    from dtnsess_cli.chain.abi import keccak

    if code == "no code":
        rpc(system6.w3, "anvil_setCode", system6.router.address, "0x")
    else:
        router_without(system6, "0x" + keccak(b"modelManager()")[:4].hex())
    c = make_cli(system6)
    doc = c.json("models")
    assert doc["source"] != "chain"
    assert "AbiDecode" not in doc["note"] and "Error" not in doc["note"], doc["note"]
    assert "model registry" in doc["note"] and str(system6.router.address) in doc["note"]
    r = c("models")
    assert r.exit_code == 0 and "AbiDecode" not in r.output, r.output
