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
