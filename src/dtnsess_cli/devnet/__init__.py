"""Local tooling: a devnet with the whole DTN system, for demos and tests.

- ``stack``: start, stop and inspect the devnet (``dtnsess devnet up/down/status/reset``)
- ``anvil``: the pinned Anvil process (also the test suite's node)
- ``localdtn``: deploy the local DTN system (token, router, manager) and answer as a node
- ``responder``: the devnet's DTN node (``python -m dtnsess_cli.devnet.responder``)

It uses the same layers as a user (config, errors, render, the client), never the command line.
Only these constants (and ``missing_extra``) are defined here: ``dtnsess --help`` reads them
without importing the rest.
"""

LOG_DIR = ".dtnsess-devnet"
DEFAULT_PORT = 8545
FUNDED_ACCOUNTS = 9  # accounts 0..8; account 9 is the node's worker
MINT_TOKENS = 1_000_000

# NOTE: the devnet runs on web3 & co., which a plain install leaves out (a backend embedding the
# client keeps its own web3, whatever major version): they come with `dtnsess[devnet]`
EXTRA = "devnet"
EXTRA_MODULES = ("web3", "eth_abi", "eth_account", "eth_utils", "requests")


def missing_extra() -> list:
    """The modules of the ``devnet`` extra that are not installed (looked up, not imported)."""
    import importlib.util

    return [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
