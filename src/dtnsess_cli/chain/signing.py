"""A minimal local signer: private key or v3 keystore -> address; signs transactions.

:class:`LocalSigner` has the shape of eth-account's ``LocalAccount`` where the send path
touches it -- ``.address`` and ``.sign_transaction(tx) -> .raw_transaction, .hash`` -- so
either can be handed to it. It signs EIP-1559 (type 2) transactions and legacy ones (EIP-155
when ``chainId`` is given: the send path falls back to ``gasPrice`` on chains without a base
fee). RLP is written here (a dozen lines); secp256k1 is the libsecp256k1 that coincurve ships,
bound with ctypes (``_secp256k1``), else coincurve itself: coincurve imports in ~0.05 s against
~0.7 s for eth-account (its eth-keyfile pulls py_ecc's BLS).

Keystores: Web3 Secret Storage v3 as Foundry (``cast wallet import``) and geth write them:
scrypt or pbkdf2-sha256, aes-128-ctr, MAC = keccak(dk[16:32] + ciphertext).

NOTE: the key lives only in the signer's private attribute; no repr, message or exception here
ever shows it (nor the password).
"""

from __future__ import annotations

import json
import os
from collections import namedtuple

from .abi import keccak, to_bytes, to_checksum_address, is_address
from .errors import (AbiError, InvalidKeyError, KeystoreError, TransactionError,
                     WrongPasswordError)

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Sequence, Union

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2


# ---------------------------------------------------------------------------------- RLP

def rlp_encode(item: Any) -> bytes:
    """Recursive Length Prefix: bytes, non-negative ints (big-endian, minimal), lists."""
    if isinstance(item, int) and not isinstance(item, bool):
        if item < 0:
            raise TransactionError("RLP cannot encode a negative integer")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")  # 0 -> b""
    if isinstance(item, (bytes, bytearray)):
        b = bytes(item)
        if len(b) == 1 and b[0] < 0x80:
            return b
        return _rlp_prefix(len(b), 0x80) + b
    if isinstance(item, (list, tuple)):
        payload = b"".join(rlp_encode(x) for x in item)
        return _rlp_prefix(len(payload), 0xC0) + payload
    raise TransactionError(f"RLP cannot encode {type(item).__name__}")


def _rlp_prefix(n: int, offset: int) -> bytes:
    if n < 56:
        return bytes([offset + n])
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(ln)]) + ln


def rlp_decode(data: bytes) -> Any:
    """The item (bytes, or a list of items) that ``rlp_encode`` made ``data`` from."""
    item, end = _rlp_item(bytes(data), 0)
    if end != len(data):
        raise TransactionError("RLP: bytes after the item")
    return item


def _rlp_item(b: bytes, i: int) -> tuple:
    if i >= len(b):
        raise TransactionError("RLP: cut short")
    p = b[i]
    if p < 0x80:
        return b[i:i + 1], i + 1
    short, offset = (p < 0xB8, 0x80) if p < 0xC0 else (p < 0xF8, 0xC0)
    if short:
        start, n = i + 1, p - offset
    else:
        k = p - offset - 55
        start, n = i + 1 + k, int.from_bytes(b[i + 1:i + 1 + k], "big")
    end = start + n
    if end > len(b):
        raise TransactionError("RLP: cut short")
    if offset == 0x80:
        return b[start:end], end
    items, j = [], start
    while j < end:
        item, j = _rlp_item(b, j)
        items.append(item)
    return items, end


def decode_transaction(raw: bytes) -> dict:
    """The fields of a signed transaction (type 2 or legacy), as ``sign_transaction`` takes
    them (``to`` None for a creation); the signature is left out."""
    def num(x: bytes) -> int:
        return int.from_bytes(x, "big")

    def to(x: bytes) -> Optional[str]:
        return to_checksum_address("0x" + x.hex()) if x else None

    raw = bytes(raw)
    if raw[:1] == b"\x02":
        f = rlp_decode(raw[1:])
        return {"type": 2, "chainId": num(f[0]), "nonce": num(f[1]),
                "maxPriorityFeePerGas": num(f[2]), "maxFeePerGas": num(f[3]), "gas": num(f[4]),
                "to": to(f[5]), "value": num(f[6]), "data": "0x" + f[7].hex()}
    if raw[:1] and raw[0] >= 0xC0:
        f = rlp_decode(raw)
        v = num(f[6])
        out = {"type": 0, "nonce": num(f[0]), "gasPrice": num(f[1]), "gas": num(f[2]),
               "to": to(f[3]), "value": num(f[4]), "data": "0x" + f[5].hex()}
        if v >= 35:  # EIP-155
            out["chainId"] = (v - 35) // 2
        return out
    raise TransactionError("transaction type not supported (only 0 and 2)")


# ---------------------------------------------------------------------------------- keys

def _key_bytes(key: Union[str, bytes, bytearray]) -> bytes:
    if isinstance(key, str):
        s = key.strip()
        s = s[2:] if s[:2] in ("0x", "0X") else s
        if len(s) != 64:
            raise InvalidKeyError("a private key is 0x followed by 64 hex digits")
        try:
            raw = bytes.fromhex(s)
        except ValueError:
            raise InvalidKeyError("a private key is 0x followed by 64 hex digits") from None
    elif isinstance(key, (bytes, bytearray)) and len(key) == 32:
        raw = bytes(key)
    else:
        raise InvalidKeyError("a private key is 32 bytes")
    if not 0 < int.from_bytes(raw, "big") < SECP256K1_N:
        raise InvalidKeyError("the private key is outside the secp256k1 range")
    return raw


# a key, a hash, and what coincurve 21's sign_recoverable (RFC 6979, no extra entropy: the same
# bytes from every libsecp256k1) and public_key.format(compressed=False) give for them
_SECP_KNOWN = (
    "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
    bytes(range(32)),
    "4ca3aca3a41bc1ca96d67707e525ac6bd77ddc197a34b4c020be1ee636e29617"
    "199556ded3234058daafff2bc3153da60d402d0c71389a11a790b9f1a5862e8000",
    "044e3b81af9c2234cad09d679ce6035ed1392347ce64ce405f5dcd36228a25de6e"
    "47fd35c4215d1edf53e6f83de344615ce719bdb0fd878f6ed76f06dd277956de",
)
# (public key of a private key: 65 bytes, sign: (private key, hash) -> r || s || recovery id)
_secp: Optional[tuple] = None


def _secp256k1() -> tuple:
    """(public_key, sign), chosen on first use: coincurve's libsecp256k1 through ctypes when it
    gives the known answers, else coincurve's own binding. (Two threads may both choose at
    once: they choose the same.)"""
    global _secp
    if _secp is not None:
        return _secp
    key, digest, sig, pub = _SECP_KNOWN
    try:
        fns = _secp256k1_c()
        ok = (fns[1](bytes.fromhex(key), digest).hex() == sig
              and fns[0](bytes.fromhex(key)).hex() == pub)
    # no library (or not where coincurve keeps it), symbols not exported, a call refused
    except (ImportError, OSError, AttributeError, ValueError):
        ok = False
    if not ok:
        from coincurve import PrivateKey

        fns = (lambda k: PrivateKey(k).public_key.format(compressed=False),
               lambda k, h: PrivateKey(k).sign_recoverable(h, hasher=None))
    _secp = fns
    return fns


def _secp256k1_c() -> tuple:
    """(public_key, sign) from the libsecp256k1 inside coincurve's extension module, bound
    with ctypes, with the calls coincurve makes: one context, randomized, for the process.

    NOTE: not ``import coincurve``: its package imports typing, hashlib (OpenSSL), base64 and
    cffi's backend, ~15 ms of every write (bench/RESULTS.md), for two C calls."""
    import ctypes
    import importlib.machinery

    spec = importlib.machinery.PathFinder.find_spec("coincurve")
    dirs = list(spec.submodule_search_locations or ()) if spec else []
    paths = [os.path.join(d, "_libsecp256k1" + suffix) for d in dirs
             for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    path = next((p for p in paths if os.path.isfile(p)), None)
    if path is None:
        raise OSError("coincurve's libsecp256k1 not found")
    lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    ptr, buf = ctypes.c_void_p, ctypes.c_char_p
    create, randomize = lib.secp256k1_context_create, lib.secp256k1_context_randomize
    create.argtypes, create.restype = [ctypes.c_uint], ptr
    randomize.argtypes, randomize.restype = [ptr, buf], ctypes.c_int
    pub_create, pub_serialize = lib.secp256k1_ec_pubkey_create, lib.secp256k1_ec_pubkey_serialize
    pub_create.argtypes, pub_create.restype = [ptr, buf, buf], ctypes.c_int
    pub_serialize.argtypes = [ptr, buf, ctypes.POINTER(ctypes.c_size_t), buf, ctypes.c_uint]
    pub_serialize.restype = ctypes.c_int
    sign, compact = (lib.secp256k1_ecdsa_sign_recoverable,
                     lib.secp256k1_ecdsa_recoverable_signature_serialize_compact)
    sign.argtypes, sign.restype = [ptr, buf, buf, buf, ptr, ptr], ctypes.c_int
    compact.argtypes = [ptr, buf, ctypes.POINTER(ctypes.c_int), buf]
    compact.restype = ctypes.c_int

    ctx = create(0x0201)  # SECP256K1_CONTEXT_SIGN (the same as NONE since libsecp256k1 0.2)
    # a blinded context against side channels, as coincurve makes its own (never freed: one
    # per process, shared by threads, which may sign with it at once)
    if not ctx or randomize(ctx, os.urandom(32)) != 1:
        raise ValueError("libsecp256k1: no context")

    new = ctypes.create_string_buffer

    def public_key(seckey: bytes) -> bytes:
        raw, out, n = new(64), new(65), ctypes.c_size_t(65)
        # 2: SECP256K1_EC_UNCOMPRESSED
        if pub_create(ctx, raw, seckey) != 1 or pub_serialize(ctx, out, ctypes.byref(n), raw, 2) != 1:
            raise ValueError("libsecp256k1 refused the key")
        return out.raw[:n.value]

    def sign_recoverable(seckey: bytes, msg_hash: bytes) -> bytes:
        raw, out, rec = new(65), new(64), ctypes.c_int()
        if (sign(ctx, raw, msg_hash, seckey, None, None) != 1
                or compact(ctx, out, ctypes.byref(rec), raw) != 1):
            raise ValueError("libsecp256k1 refused to sign")
        return out.raw + bytes([rec.value])

    return public_key, sign_recoverable


def address_of_public_key(public_key_uncompressed: bytes) -> str:
    """The checksummed address of a 65-byte uncompressed public key (0x04 || X || Y)."""
    return to_checksum_address(keccak(public_key_uncompressed[1:])[12:])


class SignedTransaction(namedtuple("SignedTransaction", "raw_transaction hash r s v")):
    """What eth-account's ``sign_transaction`` returns, field for field: ``raw_transaction``
    and ``hash`` (bytes), ``r``, ``s``, ``v`` (ints)."""

    __slots__ = ()


_INT_FIELDS = ("nonce", "gas", "value", "chainId", "maxFeePerGas", "maxPriorityFeePerGas",
               "gasPrice")


def _int_field(tx: dict, name: str, required: bool = True) -> int:
    v = tx.get(name)
    if v is None:
        if required:
            raise TransactionError(f"the transaction has no {name!r}")
        return 0
    if isinstance(v, str):
        try:
            v = int(v, 16) if v[:2] in ("0x", "0X") else int(v)
        except ValueError:
            raise TransactionError(f"{name!r} is not a number") from None
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise TransactionError(f"{name!r} must be a non-negative integer")
    return v


def _to_field(tx: dict) -> bytes:
    to = tx.get("to")
    if to in (None, "", b"", "0x"):
        return b""  # contract creation
    if isinstance(to, (bytes, bytearray)) and len(to) == 20:
        return bytes(to)
    if not is_address(to):
        raise TransactionError("'to' is not an address (or has a bad EIP-55 checksum)")
    return bytes.fromhex(to[2:])


def _access_list(tx: dict) -> list:
    out = []
    for item in tx.get("accessList") or ():
        addr = item["address"] if isinstance(item, dict) else item[0]
        keys = item["storageKeys"] if isinstance(item, dict) else item[1]
        out.append([_to_field({"to": addr}), [to_bytes(k).rjust(32, b"\0") for k in keys]])
    return out


def _tx_type(tx: dict) -> int:
    t = tx.get("type")
    if t is None:
        if "maxFeePerGas" in tx or "maxPriorityFeePerGas" in tx:
            return 2
        return 0
    if isinstance(t, str):
        t = int(t, 16) if t[:2] in ("0x", "0X") else int(t)
    return int(t)


class LocalSigner:
    """A private key held in memory: ``.address``, ``.sign_transaction``, ``.sign_hash``."""

    __slots__ = ("_key", "address")

    def __init__(self, private_key: Union[str, bytes, bytearray]) -> None:
        self._key = _key_bytes(private_key)
        self.address: str = address_of_public_key(_secp256k1()[0](self._key))

    @classmethod
    def from_key(cls, private_key: Union[str, bytes, bytearray]) -> "LocalSigner":
        return cls(private_key)

    @classmethod
    def from_keystore(cls, keyfile: Union[dict, str, bytes], password: Union[str, bytes]) -> "LocalSigner":
        return cls(decrypt_keystore(keyfile, password))

    def __repr__(self) -> str:
        return f"LocalSigner({self.address})"

    def sign_hash(self, msg_hash: bytes) -> tuple:
        """(recovery id 0/1, r, s) of a 32-byte hash, s in the lower half (EIP-2)."""
        if len(msg_hash) != 32:
            raise TransactionError("a message hash is 32 bytes")
        sig = _secp256k1()[1](self._key, bytes(msg_hash))
        r = int.from_bytes(sig[:32], "big")
        s = int.from_bytes(sig[32:64], "big")
        rec = sig[64]
        if s > _HALF_N:  # libsecp256k1 already signs low-s; kept so the rule is visible here
            s, rec = SECP256K1_N - s, rec ^ 1
        return rec, r, s

    def sign_transaction(self, tx: dict) -> SignedTransaction:
        """Sign a transaction dict in eth-account's form (ints or 0x-hex; ``to`` and ``data``
        as hex or bytes; ``type`` 2 or inferred from the fee fields; ``from``, if present, must
        be this signer)."""
        frm = tx.get("from")
        if frm is not None:
            try:
                same = to_checksum_address(frm) == self.address
            except AbiError:
                same = False
            if not same:
                raise TransactionError("'from' is not the signing account")
        kind = _tx_type(tx)
        data = to_bytes(tx.get("data") or tx.get("input") or b"")
        to = _to_field(tx)
        nonce, gas = _int_field(tx, "nonce"), _int_field(tx, "gas")
        value = _int_field(tx, "value", required=False)
        if kind == 2:
            chain_id = _int_field(tx, "chainId")
            tip = _int_field(tx, "maxPriorityFeePerGas")
            max_fee = _int_field(tx, "maxFeePerGas")
            if "gasPrice" in tx:
                raise TransactionError("a type-2 transaction has no 'gasPrice'")
            if tip > max_fee:
                raise TransactionError("'maxPriorityFeePerGas' is above 'maxFeePerGas'")
            fields = [chain_id, nonce, tip, max_fee, gas, to, value, data, _access_list(tx)]
            digest = keccak(b"\x02" + rlp_encode(fields))
            rec, r, s = self.sign_hash(digest)
            raw = b"\x02" + rlp_encode(fields + [rec, r, s])
            v = rec
        elif kind == 0:
            if tx.get("accessList"):
                raise TransactionError("an access list needs a typed transaction")
            gas_price = _int_field(tx, "gasPrice")
            fields = [nonce, gas_price, gas, to, value, data]
            chain_id = tx.get("chainId")
            if chain_id is not None:  # EIP-155 replay protection
                chain_id = _int_field(tx, "chainId")
                rec, r, s = self.sign_hash(keccak(rlp_encode(fields + [chain_id, 0, 0])))
                v = rec + 35 + 2 * chain_id
            else:
                rec, r, s = self.sign_hash(keccak(rlp_encode(fields)))
                v = rec + 27
            raw = rlp_encode(fields + [v, r, s])
        else:
            raise TransactionError(f"transaction type {kind} is not supported (only 0 and 2)")
        return SignedTransaction(raw, keccak(raw), r, s, v)


def recover_address(msg_hash: bytes, rec: int, r: int, s: int) -> str:
    """The signer's address of a (recovery id, r, s) signature over ``msg_hash``."""
    from coincurve import PublicKey

    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([rec])
    pub = PublicKey.from_signature_and_message(sig, msg_hash, hasher=None)
    return address_of_public_key(pub.format(compressed=False))


# ---------------------------------------------------------------------------------- keystores

def decrypt_keystore(keyfile: Union[dict, str, bytes], password: Union[str, bytes]) -> bytes:
    """The 32-byte private key in a v3 keystore. :class:`WrongPasswordError` when the MAC does
    not match, :class:`KeystoreError` when the document is not a supported keystore."""
    import hashlib  # NOTE: keystores only; hmac is not imported by a write otherwise
    import hmac

    if isinstance(keyfile, (str, bytes)):
        try:
            keyfile = json.loads(keyfile)
        except ValueError:
            raise KeystoreError("not a JSON keystore file") from None
    if not isinstance(keyfile, dict):
        raise KeystoreError("not a JSON keystore file")
    crypto = keyfile.get("crypto") or keyfile.get("Crypto")
    try:
        version = int(keyfile.get("version", 3))
        kdf = crypto["kdf"]
        params = crypto["kdfparams"]
        cipher = crypto["cipher"]
        iv = bytes.fromhex(crypto["cipherparams"]["iv"])
        ciphertext = bytes.fromhex(crypto["ciphertext"])
        mac = bytes.fromhex(crypto["mac"])
        salt = bytes.fromhex(params["salt"])
        dklen = int(params.get("dklen", 32))
    except (KeyError, TypeError, ValueError):
        raise KeystoreError("not a Web3 Secret Storage keystore (missing or bad fields)") from None
    if version != 3:
        raise KeystoreError(f"keystore version {version} is not supported (only 3)")
    if cipher != "aes-128-ctr":
        raise KeystoreError(f"cipher {cipher!r} is not supported (only aes-128-ctr)")
    if dklen < 32:
        raise KeystoreError("keystore dklen below 32")
    pw = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    try:
        if kdf == "scrypt":
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            # NOTE: geth's "standard" n=2^18, r=8 needs 256 MiB, above hashlib's 32 MiB default
            derived = hashlib.scrypt(pw, salt=salt, n=n, r=r, p=p, dklen=dklen,
                                     maxmem=128 * r * (n + p + 2) + (1 << 20))
        elif kdf == "pbkdf2":
            if params.get("prf", "hmac-sha256") != "hmac-sha256":
                raise KeystoreError(f"pbkdf2 prf {params.get('prf')!r} is not supported")
            derived = hashlib.pbkdf2_hmac("sha256", pw, salt, int(params["c"]), dklen)
        else:
            raise KeystoreError(f"key derivation {kdf!r} is not supported (scrypt, pbkdf2)")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, KeystoreError):
            raise
        raise KeystoreError("keystore KDF parameters are invalid") from None
    if not hmac.compare_digest(keccak(derived[16:32] + ciphertext), mac):
        raise WrongPasswordError("wrong password (the keystore MAC does not match)")
    from Crypto.Cipher import AES
    from Crypto.Util import Counter

    ctr = Counter.new(128, initial_value=int.from_bytes(iv, "big"))
    key = AES.new(derived[:16], AES.MODE_CTR, counter=ctr).decrypt(ciphertext)
    if len(key) != 32:
        raise KeystoreError("the keystore does not hold a 32-byte key")
    return key


def load_signer(key: Optional[Union[str, bytes]] = None, *, keystore: Optional[Union[dict, str]] = None,
                password: Optional[Union[str, bytes]] = None) -> LocalSigner:
    """A signer from a raw key, or from a keystore document and its password."""
    if key is not None:
        return LocalSigner(key)
    if keystore is None or password is None:
        raise KeystoreError("a key, or a keystore and its password, is needed")
    return LocalSigner.from_keystore(keystore, password)


__all__: Sequence[str] = ("LocalSigner", "SignedTransaction", "decrypt_keystore", "load_signer",
                          "recover_address", "rlp_encode", "SECP256K1_N")
