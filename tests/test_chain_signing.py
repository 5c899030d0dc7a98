"""dtnsess_cli.chain.signing against eth-account (the reference, kept for tests), and on Anvil.

Random keys and transactions (EIP-1559 and legacy, with and without EIP-155, creations, access
lists) must give the same raw bytes, hash and signature as eth-account; keystores eth-account
writes (scrypt and pbkdf2, light parameters) must decrypt to the same key, and a wrong password
must say so. A transaction signed here is accepted and mined by Anvil.
"""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtnsess_cli.chain.abi import keccak, to_checksum_address
from dtnsess_cli.chain.errors import (InvalidKeyError, KeystoreError, TransactionError,
                                      WrongPasswordError)
from dtnsess_cli.chain.signing import (SECP256K1_N, LocalSigner, decrypt_keystore,
                                       recover_address, rlp_encode)

KEYS = st.integers(1, SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
ADDRESSES = st.binary(min_size=20, max_size=20).map(to_checksum_address)
U64 = st.integers(0, 2**64 - 1)
U256 = st.integers(0, 2**256 - 1)
ACCESS_LIST = st.lists(st.fixed_dictionaries({
    "address": ADDRESSES,
    "storageKeys": st.lists(st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
                            max_size=2)}), max_size=2)


@st.composite
def transactions(draw):
    tx = {
        "nonce": draw(U64),
        "gas": draw(st.integers(21000, 2**63 - 1)),
        "value": draw(U256),
        "data": draw(st.one_of(st.binary(max_size=100), st.binary(max_size=100).map(
            lambda b: "0x" + b.hex()))),
    }
    if draw(st.booleans()):  # a creation has no "to"
        tx["to"] = draw(ADDRESSES)
    if draw(st.integers(0, 2)):
        tip = draw(U256)
        tx.update(type=2, chainId=draw(st.integers(1, 2**63)), maxPriorityFeePerGas=tip,
                  maxFeePerGas=draw(st.integers(tip, 2**256 - 1)))
        if draw(st.booleans()):
            tx["accessList"] = draw(ACCESS_LIST)
    else:
        tx["gasPrice"] = draw(U256)
        if draw(st.booleans()):
            tx["chainId"] = draw(st.integers(1, 2**32))
    return tx


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(KEYS, transactions())
def test_signing_matches_eth_account(key, tx):
    ours = LocalSigner(key).sign_transaction(tx)
    ref = Account.from_key(key).sign_transaction(tx)
    assert ours.raw_transaction == bytes(ref.raw_transaction)
    assert ours.hash == bytes(ref.hash)
    assert (ours.r, ours.s, ours.v) == (ref.r, ref.s, ref.v)
    assert ours.s <= SECP256K1_N // 2  # low-s (EIP-2)


@settings(max_examples=200, deadline=None)
@given(KEYS)
def test_address_matches_eth_account(key):
    assert LocalSigner(key).address == Account.from_key(key).address
    assert LocalSigner("0x" + key.hex()).address == Account.from_key(key).address


@settings(max_examples=100, deadline=None)
@given(KEYS, st.binary(min_size=32, max_size=32))
def test_sign_hash_recovers_the_signer(key, digest):
    s = LocalSigner(key)
    rec, r, sig_s = s.sign_hash(digest)
    assert rec in (0, 1) and sig_s <= SECP256K1_N // 2
    assert recover_address(digest, rec, r, sig_s) == s.address


def _secp_ctypes_chosen() -> bool:
    from dtnsess_cli.chain import signing

    return signing._secp is not None and signing._secp[1].__qualname__.startswith("_secp256k1_c.")


@settings(max_examples=200, deadline=None)
@given(KEYS, st.binary(min_size=32, max_size=32))
def test_secp256k1_through_ctypes_matches_coincurve(key, digest):
    """issue 19: signing binds coincurve's libsecp256k1 with ctypes (importing coincurve cost
    ~15 ms of every write): the same public keys and recoverable signatures as coincurve."""
    from coincurve import PrivateKey

    s = LocalSigner(key)
    assert _secp_ctypes_chosen()  # it gave the known answers
    rec, r, sig_s = s.sign_hash(digest)
    want = PrivateKey(key).sign_recoverable(digest, hasher=None)
    assert (r.to_bytes(32, "big") + sig_s.to_bytes(32, "big") + bytes([rec])) == want
    assert s.address == to_checksum_address(
        keccak(PrivateKey(key).public_key.format(compressed=False)[1:])[12:])


def test_secp256k1_context_is_shared_by_threads_signing_at_once():
    """One randomized context for the process: threads sign with it at once, each signature
    the one coincurve gives."""
    import threading

    from coincurve import PrivateKey

    keys = [bytes([i + 1]) * 32 for i in range(6)]
    digests = [bytes([i]) * 32 for i in range(40)]
    want = {(k, d): PrivateKey(k).sign_recoverable(d, hasher=None) for k in keys for d in digests}
    wrong: list = []

    def sign_all(k: bytes) -> None:
        s = LocalSigner(k)
        for _ in range(5):
            for d in digests:
                rec, r, sig_s = s.sign_hash(d)
                if r.to_bytes(32, "big") + sig_s.to_bytes(32, "big") + bytes([rec]) != want[k, d]:
                    wrong.append((k, d))

    threads = [threading.Thread(target=sign_all, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert wrong == [] and _secp_ctypes_chosen()


@pytest.mark.parametrize("breakage", ["no coincurve", "no library", "other symbols",
                                      "wrong answers", "refused"])
def test_secp256k1_falls_back_to_coincurve(monkeypatch, breakage):
    """When coincurve's library cannot be found, lacks the symbols, gives a wrong answer to the
    known vector or refuses it, signing is coincurve's own binding, with the same results."""
    import ctypes
    import importlib.machinery

    from dtnsess_cli.chain import signing

    monkeypatch.setattr(signing, "_secp", None)  # choose again
    if breakage == "no coincurve":
        monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec",
                            classmethod(lambda cls, name, *a: None))
    elif breakage == "no library":
        monkeypatch.setattr(importlib.machinery, "EXTENSION_SUFFIXES", [".not-there.so"])
    elif breakage == "other symbols":
        monkeypatch.setattr(ctypes, "CDLL", lambda *args, **kw: object())
    elif breakage == "wrong answers":
        monkeypatch.setattr(signing, "_secp256k1_c", lambda: (lambda k: b"\4" + bytes(64),
                                                            lambda k, h: bytes(65)))
    else:
        def refused():
            raise ValueError("libsecp256k1: no context")
        monkeypatch.setattr(signing, "_secp256k1_c", refused)
    key, digest, sig, pub = signing._SECP_KNOWN
    s = LocalSigner("0x" + key)
    rec, r, sig_s = s.sign_hash(digest)
    assert (r.to_bytes(32, "big") + sig_s.to_bytes(32, "big") + bytes([rec])).hex() == sig
    assert signing._secp is not None and not _secp_ctypes_chosen()
    assert s.address == Account.from_key(bytes.fromhex(key)).address


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.one_of(st.binary(max_size=70), U256),
                    lambda inner: st.lists(inner, max_size=5), max_leaves=12))
def test_rlp_matches_the_rlp_package(item):
    import rlp

    def ref_form(x):  # the rlp package takes ints through its big-endian sedes
        if isinstance(x, int):
            return x.to_bytes((x.bit_length() + 7) // 8, "big")
        return [ref_form(y) for y in x] if isinstance(x, list) else x

    assert rlp_encode(item) == rlp.encode(ref_form(item))


def test_from_mismatch_and_missing_fields_are_refused():
    s = LocalSigner("0x" + "11" * 32)
    base = {"nonce": 0, "gas": 21000, "to": s.address, "chainId": 1,
            "maxFeePerGas": 2, "maxPriorityFeePerGas": 1}
    with pytest.raises(TransactionError):
        s.sign_transaction(dict(base, **{"from": "0x" + "22" * 20}))
    s.sign_transaction(dict(base, **{"from": s.address.lower()}))  # any case of our address
    for f in ("nonce", "gas", "chainId", "maxFeePerGas"):
        with pytest.raises(TransactionError):
            s.sign_transaction({k: v for k, v in base.items() if k != f})
    with pytest.raises(TransactionError):
        s.sign_transaction(dict(base, maxPriorityFeePerGas=3))
    with pytest.raises(TransactionError):
        s.sign_transaction(dict(base, type=1))
    with pytest.raises(TransactionError):
        s.sign_transaction(dict(base, to="0x" + "ab" * 19))


@pytest.mark.parametrize("key", ["", "0x", "0x" + "00" * 32, hex(SECP256K1_N), "0x" + "zz" * 32,
                                 "0x" + "11" * 31, b"\x01" * 31, "0x" + "ff" * 32])
def test_invalid_keys_are_refused_without_echoing_them(key):
    with pytest.raises(InvalidKeyError) as exc:
        LocalSigner(key)
    text = str(exc.value)
    if isinstance(key, str) and len(key) > 4:
        assert key[2:10] not in text


def test_repr_and_slots_do_not_show_the_key():
    key = "0x" + "5a" * 32
    s = LocalSigner(key)
    assert "5a5a" not in repr(s) and "5a5a" not in str(s)
    assert not hasattr(s, "__dict__")


# ------------------------------------------------------------------------------ keystores

PASSWORDS = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)


@settings(max_examples=25, deadline=None)
@given(KEYS, PASSWORDS, st.sampled_from(["scrypt", "pbkdf2"]))
def test_keystores_from_eth_account_decrypt_to_the_same_key(key, password, kdf):
    iterations = 2**4 if kdf == "scrypt" else 8  # light parameters: tests, not security
    ks = Account.encrypt(key, password, kdf=kdf, iterations=iterations)
    assert decrypt_keystore(ks, password) == key
    assert decrypt_keystore(json.dumps(ks), password) == key
    assert LocalSigner.from_keystore(ks, password).address == Account.from_key(key).address
    with pytest.raises(WrongPasswordError):
        decrypt_keystore(ks, password + "x")


def test_foundry_style_keystore_with_capitalised_crypto_and_default_scrypt():
    key = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    ks = Account.encrypt(key, "hunter2", kdf="scrypt", iterations=2**13)  # Foundry's n
    ks["Crypto"] = ks.pop("crypto")  # geth writes "Crypto"
    assert decrypt_keystore(ks, "hunter2") == key


@pytest.mark.parametrize("mutate, error", [
    (lambda ks: ks.pop("crypto"), KeystoreError),
    (lambda ks: ks.update(version=4), KeystoreError),
    (lambda ks: ks["crypto"].update(cipher="aes-256-gcm"), KeystoreError),
    (lambda ks: ks["crypto"].update(kdf="argon2"), KeystoreError),
    (lambda ks: ks["crypto"]["kdfparams"].update(n=3), KeystoreError),  # not a power of two
    (lambda ks: ks["crypto"].update(mac="00" * 32), WrongPasswordError),
    (lambda ks: ks["crypto"].update(ciphertext="zz"), KeystoreError),
])
def test_malformed_keystores_are_refused(mutate, error):
    ks = Account.encrypt(b"\x01" * 32, "pw", kdf="scrypt", iterations=2**4)
    mutate(ks)
    with pytest.raises(error):
        decrypt_keystore(ks, "pw")


def test_keystore_not_json():
    with pytest.raises(KeystoreError):
        decrypt_keystore("{nope", "pw")


# ------------------------------------------------------------------------------ on Anvil

def wait_receipt(rpc, h, timeout=30.0):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = rpc.call("eth_getTransactionReceipt", [h])
        if r is not None:
            return r
        time.sleep(0.05)
    raise AssertionError(f"no receipt for {h}")


def test_signed_type2_and_legacy_transactions_are_mined_by_anvil(anvil, private_keys, accounts):
    from dtnsess_cli.chain.jsonrpc import JsonRpc

    rpc = JsonRpc(anvil.url)
    s = LocalSigner(private_keys[5])
    assert s.address == accounts[5]
    to = accounts[6]
    chain_id = int(rpc.call("eth_chainId"), 16)
    nonce = int(rpc.call("eth_getTransactionCount", [s.address, "pending"]), 16)
    before = int(rpc.call("eth_getBalance", [to, "latest"]), 16)
    block = rpc.call("eth_getBlockByNumber", ["latest", False])
    base = int(block["baseFeePerGas"], 16)
    t2 = s.sign_transaction({"to": to, "value": 12345, "nonce": nonce, "gas": 21000,
                             "chainId": chain_id, "maxPriorityFeePerGas": 10**9,
                             "maxFeePerGas": 2 * base + 10**9})
    legacy = s.sign_transaction({"to": to, "value": 1, "nonce": nonce + 1, "gas": 21000,
                                 "chainId": chain_id, "gasPrice": 2 * base + 10**9})
    for signed in (t2, legacy):
        h = rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
        assert h == "0x" + signed.hash.hex()
        rcpt = wait_receipt(rpc, h)
        assert rcpt["status"] == "0x1" and rcpt["from"].lower() == s.address.lower()
    assert int(rpc.call("eth_getBalance", [to, "latest"]), 16) == before + 12346
    rpc.close()
