"""The contract-agnostic chain layer: JSON-RPC, ABI, signing. No web3 on this path.

- :mod:`.abi`       ABI encode/decode, function calls, event logs, revert data; keccak; EIP-55
- :mod:`.contract`  a contract at an address: ``eth_call`` requests and their decoding
- :mod:`.jsonrpc`   HTTP JSON-RPC: batches, read retries, URL redaction, proxies
- :mod:`.http11`    HTTP/1.1 without I/O (requests, reply parsing, limits), both clients' own
- :mod:`.signing`   a private key or a v3 keystore -> address; EIP-1559 and legacy signing
- :mod:`.errors`    the exceptions of this layer (one family, :class:`ChainError`)
- :mod:`.send`      the one way to send a transaction: simulate, estimate, fees, sign, journal,
                    send once, receipt (the entry point; it names everything below)
- :mod:`.context`   what a send's steps share: TxContext, TxResult, JSON-RPC calls and errors
- :mod:`.fees`      gas limit, EIP-1559 and L1 data fees, the ETH check, the confirmation
- :mod:`.simulate`  eth_call before the send, revert errors, a failed receipt's replay
- :mod:`.broadcast` journal first, then the send; lost replies looked up by hash; the receipt
- :mod:`.pipeline`  batches: pipelined sends and sends back to back in one batch
- :mod:`.deploy`    a contract creation to send
- :mod:`.replace`   a stuck transaction replaced at its nonce (tx speedup / tx cancel)
- :mod:`.journal`   every signed transaction on disk before its send; the per-(chain, sender) lock
- :mod:`.oslock`    the inter-process lock of a file (flock; filelock on Windows only)

NOTE: this package imports nothing from web3, eth-abi, eth-account, eth-utils, requests,
pydantic or aiohttp (a test checks ``sys.modules``): those cost about 1.5 s of start-up per
command. It needs only the standard library, pycryptodome (keccak, AES) and, for signing,
coincurve (secp256k1). Import the submodules you need; this file imports none of them.
"""
