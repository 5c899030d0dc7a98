"""The contract-agnostic chain layer: JSON-RPC, ABI, signing. No web3 on this path.

- :mod:`.abi`       ABI encode/decode, function calls, event logs, revert data; keccak; EIP-55
- :mod:`.contract`  a contract at an address: ``eth_call`` requests and their decoding
- :mod:`.jsonrpc`   HTTP JSON-RPC over ``http.client``: batches, read retries, URL redaction
- :mod:`.signing`   a private key or a v3 keystore -> address; EIP-1559 and legacy signing
- :mod:`.errors`    the exceptions of this layer (one family, :class:`ChainError`)
- :mod:`.send`      the one way to send a transaction: simulate, estimate, fees, sign, journal,
                    send once, receipt; and pipelined batches of them
- :mod:`.journal`   every signed transaction on disk before its send; the per-sender lock

NOTE: this package imports nothing from web3, eth-abi, eth-account, eth-utils, requests,
pydantic or aiohttp (a test checks ``sys.modules``): those cost about 1.5 s of start-up per
command. It needs only the standard library, pycryptodome (keccak, AES) and, for signing,
coincurve (secp256k1). Import the submodules you need; this file imports none of them.
"""
