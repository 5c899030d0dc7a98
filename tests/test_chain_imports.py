"""The chain layer stays lean: it never imports web3 or the libraries web3 is built on.

A fresh interpreter imports every module of dtnsess_cli.chain and runs each code path that
imports lazily (signing, both keystore KDFs, ABI, events, reverts, a JSON-RPC error path), then
reports sys.modules. A static check also catches an import hidden in a branch not run here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import dtnsess_cli.chain

FORBIDDEN = {"web3", "eth_abi", "eth_account", "eth_utils", "eth_keys", "eth_keyfile",
             "eth_hash", "eth_typing", "hexbytes", "rlp", "requests", "urllib3", "pydantic",
             "aiohttp", "websockets", "py_ecc", "ckzg", "cytoolz", "toolz"}

PROBE = r"""
import json, sys
keystores = json.loads(sys.stdin.read())
import dtnsess_cli.chain as chain
after_package = sorted(m for m in sys.modules if m.startswith("dtnsess_cli.chain."))
from dtnsess_cli.chain import abi, contract, errors, jsonrpc, signing
from dtnsess_cli.artifacts import all_abis

s = signing.LocalSigner("0x" + "11" * 32)
s.sign_transaction({"to": s.address, "nonce": 0, "gas": 21000, "chainId": 1,
                    "maxFeePerGas": 2, "maxPriorityFeePerGas": 1})
s.sign_transaction({"to": s.address, "nonce": 0, "gas": 21000, "gasPrice": 1})
for ks in keystores:
    assert signing.decrypt_keystore(ks, "pw") == b"\x11" * 32
    try:
        signing.decrypt_keystore(ks, "wrong")
    except errors.WrongPasswordError:
        pass
abis = all_abis()
m = contract.Contract("0x" + "12" * 20, abis["AdvancedSessionManager"])
m.call("getSession", 1).request()
abi.EventDecoder(abis.values())
abi.ErrorDecoder(abis.values()).decode("0x4e487b71" + "00" * 31 + "11")
abi.decode(["(uint256,string)[]"], abi.encode(["(uint256,string)[]"], [[(1, "x")]]))
rpc = jsonrpc.JsonRpc("http://127.0.0.1:9", retry_seconds=0, timeout=0.5)
try:
    rpc.call("eth_chainId")
except errors.RpcTransportError:
    pass
jsonrpc.redact_url("https://u:p@h/v2/KEY?x=1")
print(json.dumps({"after_package": after_package, "modules": sorted(sys.modules)}))
"""


def test_chain_layer_imports_no_heavy_library():
    from eth_account import Account

    keystores = [Account.encrypt(b"\x11" * 32, "pw", kdf="scrypt", iterations=2**4),
                 Account.encrypt(b"\x11" * 32, "pw", kdf="pbkdf2", iterations=4)]
    proc = subprocess.run([sys.executable, "-c", PROBE], input=json.dumps(keystores),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    top = {m.split(".")[0] for m in info["modules"]}
    assert not top & FORBIDDEN, f"the chain layer imported {sorted(top & FORBIDDEN)}"
    assert "typer" not in top and "rich" not in top
    # importing the package itself loads none of its modules (each command takes what it needs)
    assert info["after_package"] == []


def test_no_heavy_import_anywhere_in_the_source():
    pat = re.compile(r"^\s*(?:from|import)\s+(" + "|".join(sorted(FORBIDDEN)) + r")\b", re.M)
    root = Path(dtnsess_cli.chain.__file__).parent
    files = sorted(root.glob("*.py"))
    assert len(files) >= 5
    for f in files:
        hits = pat.findall(f.read_text())
        assert not hits, f"{f.name} imports {hits}"
