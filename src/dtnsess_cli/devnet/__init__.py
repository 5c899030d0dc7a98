"""Local tooling: a devnet with the whole DTN system, for demos and tests.

- ``stack``: start, stop and inspect the devnet (``dtnsess devnet up/down/status/reset``)
- ``anvil``: the pinned Anvil process (also the test suite's node)
- ``localdtn``: deploy the local DTN system (token, router, manager) and answer as a node
- ``responder``: the devnet's DTN node (``python -m dtnsess_cli.devnet.responder``)

It uses the same layers as a user (config, errors, render, the client), never the command line.
Only these constants are defined here: ``dtnsess --help`` reads them without importing the rest.
"""

LOG_DIR = ".dtnsess-devnet"
DEFAULT_PORT = 8545
FUNDED_ACCOUNTS = 9  # accounts 0..8; account 9 is the node's worker
MINT_TOKENS = 1_000_000
