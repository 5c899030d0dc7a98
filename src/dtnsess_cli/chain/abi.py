"""Solidity ABI: encode and decode values, function calls, event logs and revert data.

The types: ``uintN``/``intN``, ``address``, ``bool``, ``bytesN``, ``bytes``, ``string``, fixed
and dynamic arrays of any of them, and tuples nesting all of these (what the bundled ABIs use,
and more). Values come back as Python values: ints, checksummed address strings (EIP-55),
bools, bytes, str, lists for arrays, and tuples for tuples -- a namedtuple when every component
has a name (so ``session.balance`` and ``session[2]`` both work; it still equals the plain
tuple). That is what web3's ``ContractFunction.call()`` returns, so callers do not change.

Decoding is strict where a wrong ABI would otherwise pass unnoticed (padding, ranges, bounds)
and raises :class:`AbiDecodeError`; text that is not UTF-8 decodes with U+FFFD instead of
failing, because a hostile string on chain must not break a read.

keccak-256 is pycryptodome's C implementation, bound with ctypes (``_keccak_c``): ~12 ms of
import against ~0.2 s for eth-hash through eth-utils (measured in bench/chain_startup.py).
"""

from __future__ import annotations

import re
from collections import namedtuple

from ..record import field, record
from .errors import AbiDecodeError, AbiError

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional, Sequence, Union

    BytesLike = Union[bytes, bytearray, memoryview, str]

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

PANIC_CODES = {
    0x00: "generic compiler panic",
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupted storage byte array",
    0x31: "pop() on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory (too large an allocation)",
    0x51: "call to an uninitialized internal function",
}


# ---------------------------------------------------------------------------------- helpers

def keccak(data: Union[bytes, bytearray, str]) -> bytes:
    """keccak-256 of ``data`` (a str is hashed as its UTF-8 text, like ``keccak(text=...)``)."""
    if isinstance(data, str):
        data = data.encode()
    return (_keccak256 or _keccak_impl())(bytes(data))


# keccak-256 of b"", b"abc" and bytes(range(200)) (past the 136-byte rate: two blocks)
_KECCAK_KNOWN = (
    (b"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"),
    (b"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"),
    (bytes(range(200)), "bfb0aa97863e797943cf7c33bb7e880bb4543f3d2703c0923c6901c2af57b890"),
)
_keccak256: Optional[Callable[[bytes], bytes]] = None


def _keccak_impl() -> Callable[[bytes], bytes]:
    """The keccak-256 function, chosen on first use: pycryptodome's C code through ctypes when
    it gives the known answers, else pycryptodome's own binding. (Two threads may both choose
    at once: they choose the same.)"""
    global _keccak256
    try:
        fn = _keccak_c()
        ok = all(fn(data) == bytes.fromhex(digest) for data, digest in _KECCAK_KNOWN)
    # no library (or pycryptodome no longer finds it so), other symbols, an error code
    except (ImportError, OSError, AttributeError, ValueError):
        ok = False
    if not ok:
        from Crypto.Hash import keccak as _pycryptodome

        def fn(data: bytes) -> bytes:
            return _pycryptodome.new(data=data, digest_bits=256).digest()

    _keccak256 = fn
    return fn


def _keccak_c() -> Callable[[bytes], bytes]:
    """keccak-256 from pycryptodome's own C library (``Crypto/Hash/_keccak*``), bound with
    ctypes, with the calls ``Crypto.Hash.keccak`` makes: one state per hash, freed after.

    NOTE: not ``Crypto.Hash.keccak`` itself: where cffi is installed (coincurve needs it)
    pycryptodome binds its C code through cffi, whose ABI mode parses C declarations with
    pycparser at import, ~50-85 ms on every command (issue 19). Hiding cffi from that import
    is not safe in an embedding process with threads."""
    import ctypes
    import importlib.machinery
    import os

    # NOTE: found as pycryptodome finds it (importlib.util would cost ~10 ms more)
    from Crypto.Util._file_system import pycryptodome_filename

    paths = [pycryptodome_filename(["Crypto", "Hash"], "_keccak" + suffix)
             for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    path = next((p for p in paths if os.path.isfile(p)), None)
    if path is None:
        raise OSError("pycryptodome's _keccak library not found")
    # NOTE: RTLD_DEEPBIND as pycryptodome loads it (its symbols before any other library's)
    deep = 0 if os.getenv("PYCRYPTODOME_DISABLE_DEEPBIND") else getattr(os, "RTLD_DEEPBIND", 0)
    lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL | deep)
    ptr, size, u8, out_t = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint8, ctypes.c_char * 32
    init, absorb, digest, destroy = (lib.keccak_init, lib.keccak_absorb, lib.keccak_digest,
                                     lib.keccak_destroy)
    init.argtypes = [ctypes.POINTER(ptr), size, u8]  # (state**, capacity bytes, rounds)
    absorb.argtypes = [ptr, ctypes.c_char_p, size]
    digest.argtypes = [ptr, ctypes.POINTER(out_t), size, u8]  # (..., length, padding)
    destroy.argtypes = [ptr]
    for f in (init, absorb, digest, destroy):
        f.restype = ctypes.c_int

    def check(rc: int) -> None:
        if rc:
            raise ValueError(f"pycryptodome's keccak failed (error {rc})")

    def keccak256(data: bytes) -> bytes:
        state = ptr()
        check(init(ctypes.byref(state), 64, 24))  # capacity 2 x 32 bytes, 24 rounds
        try:
            check(absorb(state, data, len(data)))
            out = out_t()
            check(digest(state, ctypes.byref(out), 32, 0x01))  # keccak's padding, not SHA-3's
            return out.raw
        finally:
            destroy(state)

    return keccak256


def to_bytes(value: Any) -> bytes:
    """Bytes from bytes, or from 0x-hex text (what JSON-RPC gives); ``None`` -> b""."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        s = value[2:] if value[:2] in ("0x", "0X") else value
        try:
            return bytes.fromhex(s)
        except ValueError:
            raise AbiError(f"not hex: {value[:20]!r}") from None
    raise AbiError(f"expected bytes or 0x-hex, got {type(value).__name__}")


def to_hex(value: Union[bytes, bytearray, memoryview]) -> str:
    return "0x" + bytes(value).hex()


_HEX_ADDRESS = re.compile(r"^0[xX][0-9a-fA-F]{40}$")
_CHECKSUM_CACHE: dict = {}


def to_checksum_address(value: Union[str, bytes, bytearray]) -> str:
    """The EIP-55 form of a 20-byte address (bytes, or 0x-hex in any case)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) != 20:
            raise AbiError(f"an address is 20 bytes, got {len(raw)}")
        low = raw.hex()
    elif isinstance(value, str) and _HEX_ADDRESS.match(value):
        low = value[2:].lower()
    else:
        raise AbiError(f"not an address: {str(value)[:50]!r}")
    out = _CHECKSUM_CACHE.get(low)
    if out is None:
        h = keccak(low.encode()).hex()
        out = "0x" + "".join(c.upper() if h[i] in "89abcdef" else c for i, c in enumerate(low))
        if len(_CHECKSUM_CACHE) < 4096:
            _CHECKSUM_CACHE[low] = out
    return out


def is_address(value: Any) -> bool:
    """0x + 40 hex digits, and a valid EIP-55 checksum when the case is mixed."""
    if not isinstance(value, str) or not _HEX_ADDRESS.match(value):
        return False
    body = value[2:]
    if body.islower() or body.isupper() or body.isdigit():
        return True
    return to_checksum_address(value) == value


def is_checksum_address(value: Any) -> bool:
    return isinstance(value, str) and bool(_HEX_ADDRESS.match(value)) \
        and to_checksum_address(value) == value


def _address_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)) and len(value) == 20:
        return bytes(value)
    if not is_address(value):
        raise AbiError(f"not an address (or a bad EIP-55 checksum): {str(value)[:50]!r}")
    return bytes.fromhex(value[2:])


_ZERO32 = bytes(32)


def _word(data: bytes, pos: int) -> bytes:
    w = data[pos:pos + 32]
    if len(w) != 32 or pos < 0:
        raise AbiDecodeError(f"data too short: need 32 bytes at offset {pos}, have {len(data)}")
    return w


def _uint_at(data: bytes, pos: int) -> int:
    return int.from_bytes(_word(data, pos), "big")


# ---------------------------------------------------------------------------------- types

class AbiType:
    """One ABI type: ``encode(value) -> bytes`` and ``decode(data, pos) -> value``.

    ``pos`` is where the value's encoding starts: its head for a static type, its tail (what
    the head's offset points to) for a dynamic one. ``size`` is the head size.
    """

    dynamic = False
    size = 32
    canonical = ""

    def encode(self, value: Any) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, data: bytes, pos: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<abi {self.canonical}>"


class _UInt(AbiType):
    def __init__(self, bits: int) -> None:
        self.bits, self.limit, self.canonical = bits, 1 << bits, f"uint{bits}"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise AbiError(f"{self.canonical} needs an int, got {type(value).__name__}")
        if not 0 <= value < self.limit:
            raise AbiError(f"{value} does not fit {self.canonical}")
        return value.to_bytes(32, "big")

    def decode(self, data: bytes, pos: int) -> int:
        v = int.from_bytes(_word(data, pos), "big")
        if v >= self.limit:
            raise AbiDecodeError(f"value out of range for {self.canonical}")
        return v


class _Int(AbiType):
    def __init__(self, bits: int) -> None:
        self.bits, self.canonical = bits, f"int{bits}"
        self.low, self.high = -(1 << (bits - 1)), 1 << (bits - 1)

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise AbiError(f"{self.canonical} needs an int, got {type(value).__name__}")
        if not self.low <= value < self.high:
            raise AbiError(f"{value} does not fit {self.canonical}")
        return value.to_bytes(32, "big", signed=True)

    def decode(self, data: bytes, pos: int) -> int:
        v = int.from_bytes(_word(data, pos), "big", signed=True)
        if not self.low <= v < self.high:
            raise AbiDecodeError(f"value out of range for {self.canonical}")
        return v


class _Address(AbiType):
    canonical = "address"

    def encode(self, value: Any) -> bytes:
        return bytes(12) + _address_bytes(value)

    def decode(self, data: bytes, pos: int) -> str:
        w = _word(data, pos)
        if w[:12] != bytes(12):
            raise AbiDecodeError("address with non-zero padding")
        return to_checksum_address(w[12:])


class _Bool(AbiType):
    canonical = "bool"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, bool):
            raise AbiError(f"bool needs True or False, got {type(value).__name__}")
        return (1 if value else 0).to_bytes(32, "big")

    def decode(self, data: bytes, pos: int) -> bool:
        v = int.from_bytes(_word(data, pos), "big")
        if v > 1:
            raise AbiDecodeError("bool that is neither 0 nor 1")
        return v == 1


class _FixedBytes(AbiType):
    def __init__(self, n: int) -> None:
        self.n, self.canonical = n, f"bytes{n}"

    def encode(self, value: Any) -> bytes:
        raw = to_bytes(value) if isinstance(value, str) else value
        if not isinstance(raw, (bytes, bytearray)):
            raise AbiError(f"{self.canonical} needs bytes, got {type(value).__name__}")
        if len(raw) > self.n:
            raise AbiError(f"{len(raw)} bytes do not fit {self.canonical}")
        return bytes(raw).ljust(32, b"\0")

    def decode(self, data: bytes, pos: int) -> bytes:
        w = _word(data, pos)
        if w[self.n:] != bytes(32 - self.n):
            raise AbiDecodeError(f"{self.canonical} with non-zero padding")
        return w[:self.n]


def _padded(raw: bytes) -> bytes:
    return len(raw).to_bytes(32, "big") + raw + bytes(-len(raw) % 32)


def _blob(data: bytes, pos: int) -> bytes:
    n = _uint_at(data, pos)
    end = pos + 32 + n
    if end > len(data):
        raise AbiDecodeError(f"{n} bytes announced at offset {pos}, only {len(data) - pos - 32} there")
    return data[pos + 32:end]


class _Bytes(AbiType):
    canonical = "bytes"
    dynamic = True

    def encode(self, value: Any) -> bytes:
        raw = to_bytes(value) if isinstance(value, str) else value
        if not isinstance(raw, (bytes, bytearray)):
            raise AbiError(f"bytes needs bytes, got {type(value).__name__}")
        return _padded(bytes(raw))

    def decode(self, data: bytes, pos: int) -> bytes:
        return _blob(data, pos)


class _String(AbiType):
    canonical = "string"
    dynamic = True

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise AbiError(f"string needs str, got {type(value).__name__}")
        return _padded(value.encode("utf-8"))

    def decode(self, data: bytes, pos: int) -> str:
        # NOTE: "replace": text on chain is anyone's; a bad byte must not break a read
        return _blob(data, pos).decode("utf-8", errors="replace")


def _encode_seq(types: Sequence[AbiType], values: Sequence[Any]) -> bytes:
    heads, tails = [], []
    offset = sum(t.size for t in types)
    for t, v in zip(types, values):
        enc = t.encode(v)
        if t.dynamic:
            heads.append(offset.to_bytes(32, "big"))
            tails.append(enc)
            offset += len(enc)
        else:
            heads.append(enc)
    return b"".join(heads) + b"".join(tails)


def _decode_seq(types: Sequence[AbiType], data: bytes, base: int) -> list:
    out = []
    p = base
    n = len(data)
    for t in types:
        if t.dynamic:
            off = _uint_at(data, p)
            if off > n:
                raise AbiDecodeError(f"offset {off} past the end of the data ({n} bytes)")
            out.append(t.decode(data, base + off))
        else:
            out.append(t.decode(data, p))
        p += t.size
    return out


class _Array(AbiType):
    def __init__(self, elem: AbiType, length: Optional[int]) -> None:
        self.elem, self.length = elem, length
        self.dynamic = length is None or elem.dynamic
        self.size = 32 if self.dynamic else elem.size * length
        self.canonical = f"{elem.canonical}[{'' if length is None else length}]"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, (list, tuple)):
            raise AbiError(f"{self.canonical} needs a list, got {type(value).__name__}")
        if self.length is not None and len(value) != self.length:
            raise AbiError(f"{self.canonical} needs {self.length} items, got {len(value)}")
        body = _encode_seq([self.elem] * len(value), value)
        return body if self.length is not None else len(value).to_bytes(32, "big") + body

    def decode(self, data: bytes, pos: int) -> list:
        if self.length is None:
            n = _uint_at(data, pos)
            pos += 32
            # NOTE: every item takes at least one 32-byte head word: a huge announced length in
            # hostile data fails here instead of allocating
            if n * 32 > len(data) - pos:
                raise AbiDecodeError(f"array of {n} items does not fit the data")
        else:
            n = self.length
        return _decode_seq([self.elem] * n, data, pos)


class _Tuple(AbiType):
    def __init__(self, components: Sequence[AbiType], names: Sequence[str] = (),
                 struct: str = "") -> None:
        self.components = list(components)
        self.names = list(names) if names else []
        self.dynamic = any(c.dynamic for c in self.components)
        self.size = 32 if self.dynamic else sum(c.size for c in self.components)
        self.canonical = "(" + ",".join(c.canonical for c in self.components) + ")"
        self._struct = struct
        self._maker: Optional[Callable[[Any], tuple]] = None

    def _make(self, values: Any) -> tuple:
        """A namedtuple when every component is named, else a plain tuple.

        NOTE: the namedtuple class is made on first use: creating one compiles code (~0.5 ms),
        and an ABI has dozens of functions of which a command decodes a few."""
        if self._maker is None:
            self._maker = tuple
            if self.names and len(self.names) == len(self.components) and all(self.names) \
                    and len(set(self.names)) == len(self.names):
                self._maker = namedtuple(_identifier(self._struct) or "Struct", self.names,
                                         rename=True)._make
        return self._maker(values)

    def encode(self, value: Any) -> bytes:
        if isinstance(value, dict):
            if not self.names:
                raise AbiError(f"{self.canonical} has no component names: pass a tuple")
            try:
                value = [value[n] for n in self.names]
            except KeyError as exc:
                raise AbiError(f"missing tuple component {exc.args[0]!r}") from None
        if not isinstance(value, (list, tuple)):
            raise AbiError(f"{self.canonical} needs a tuple, got {type(value).__name__}")
        if len(value) != len(self.components):
            raise AbiError(f"{self.canonical} needs {len(self.components)} values, got {len(value)}")
        return _encode_seq(self.components, value)

    def decode(self, data: bytes, pos: int) -> tuple:
        return self._make(_decode_seq(self.components, data, pos))


def _identifier(text: str) -> str:
    name = text.rsplit(".", 1)[-1].rsplit(" ", 1)[-1] if text else ""
    return name if name.isidentifier() else ""


_BASE_TYPES: dict = {"address": _Address(), "bool": _Bool(), "bytes": _Bytes(),
                     "string": _String()}
_TYPE_CACHE: dict = {}


def parse_type(text: str) -> AbiType:
    """The :class:`AbiType` of a canonical type string (``"(uint256,address)[]"``)."""
    t = _TYPE_CACHE.get(text)
    if t is None:
        t = _TYPE_CACHE[text] = _parse(text.replace(" ", ""))
    return t


def _parse(s: str) -> AbiType:
    if s.endswith("]"):
        i = s.rindex("[")
        dim = s[i + 1:-1]
        if dim and not dim.isdigit():
            raise AbiError(f"bad array size in {s!r}")
        if dim and int(dim) == 0:
            raise AbiError(f"zero-length array in {s!r}")
        return _Array(_parse(s[:i]), int(dim) if dim else None)
    if s.startswith("("):
        if not s.endswith(")"):
            raise AbiError(f"unbalanced tuple type {s!r}")
        return _Tuple([_parse(p) for p in _split_top(s[1:-1])])
    if s in _BASE_TYPES:
        return _BASE_TYPES[s]
    m = re.fullmatch(r"(u?int)(\d*)", s)
    if m:
        bits = int(m.group(2) or 256)
        if bits % 8 or not 8 <= bits <= 256:
            raise AbiError(f"bad integer size in {s!r}")
        return (_UInt if m.group(1) == "uint" else _Int)(bits)
    m = re.fullmatch(r"bytes(\d+)", s)
    if m and 1 <= int(m.group(1)) <= 32:
        return _FixedBytes(int(m.group(1)))
    if s == "function":
        return _FixedBytes(24)
    raise AbiError(f"unsupported ABI type {s!r}")


def _split_top(s: str) -> list:
    if not s:
        return []
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def param_type(param: dict) -> AbiType:
    """The :class:`AbiType` of an ABI JSON parameter (``{"type": ..., "components": ...}``)."""
    t = param["type"]
    if not t.startswith("tuple"):
        return parse_type(t)
    comps = param.get("components", [])
    inner: AbiType = _Tuple([param_type(c) for c in comps], [c.get("name", "") for c in comps],
                            struct=param.get("internalType", ""))
    for dim in re.findall(r"\[(\d*)\]", t[5:]):
        inner = _Array(inner, int(dim) if dim else None)
    return inner


def canonical_type(param: dict) -> str:
    """``uint256``, ``(address,uint256)[]``: the form signatures and selectors are made of."""
    return param_type(param).canonical


def encode(types: Sequence[Union[str, AbiType]], values: Sequence[Any]) -> bytes:
    """``abi.encode(values...)`` for ``types`` (type strings or :class:`AbiType`)."""
    ts = [parse_type(t) if isinstance(t, str) else t for t in types]
    if len(ts) != len(values):
        raise AbiError(f"{len(ts)} types but {len(values)} values")
    return _encode_seq(ts, values)


def decode(types: Sequence[Union[str, AbiType]], data: BytesLike) -> tuple:
    """The values ``abi.encode`` made of ``types`` (a tuple, one item per type)."""
    ts = [parse_type(t) if isinstance(t, str) else t for t in types]
    return tuple(_decode_seq(ts, to_bytes(data), 0))


# ---------------------------------------------------------------------------------- functions

def _signature(entry: dict) -> str:
    return f"{entry['name']}({','.join(canonical_type(p) for p in entry.get('inputs', []))})"


def _arg_names(params: Sequence[dict]) -> list:
    return [p.get("name") or f"arg{i}" for i, p in enumerate(params)]


class Function:
    """One ``type == "function"`` ABI entry: call data out, return values in."""

    def __init__(self, entry: dict) -> None:
        self.abi = entry
        self.name: str = entry["name"]
        ins, outs = entry.get("inputs", []), entry.get("outputs", [])
        self.inputs = _Tuple([param_type(p) for p in ins], [p.get("name", "") for p in ins])
        self.outputs = _Tuple([param_type(p) for p in outs], [p.get("name", "") for p in outs])
        self.signature = _signature(entry)
        self.selector = keccak(self.signature)[:4]
        self.state_mutability = entry.get("stateMutability", "nonpayable")

    def encode_call(self, *args: Any, **kwargs: Any) -> bytes:
        """The call data: selector + encoded arguments (positional, or by name)."""
        if kwargs:
            if args:
                raise AbiError(f"{self.name}: pass arguments by position or by name, not both")
            unknown = sorted(set(kwargs) - set(self.inputs.names))
            if unknown:
                raise AbiError(f"{self.name}: no argument named {unknown[0]!r}")
            args = tuple(kwargs[n] if n in kwargs else _missing(self.name, n)
                         for n in self.inputs.names)
        if len(args) != len(self.inputs.components):
            raise AbiError(f"{self.name} takes {len(self.inputs.components)} arguments, "
                           f"got {len(args)}")
        return self.selector + _encode_seq(self.inputs.components, args)

    def decode_output(self, data: BytesLike) -> Any:
        """The return value as web3's ``.call()`` gives it: None for no outputs, the value for
        one, a tuple (namedtuple when all are named) for several."""
        raw = to_bytes(data)
        comps = self.outputs.components
        if not comps:
            return None
        if not raw:
            # NOTE: an eth_call to an address without code returns 0x: not this function
            raise AbiDecodeError(f"{self.name}: empty return data (no contract at the address?)")
        vals = _decode_seq(comps, raw, 0)
        return vals[0] if len(comps) == 1 else self.outputs._make(vals)

    def decode_input(self, data: BytesLike) -> tuple:
        """The arguments of call data made for this function (for showing what a tx did)."""
        raw = to_bytes(data)
        if raw[:4] != self.selector:
            raise AbiDecodeError(f"call data is not for {self.signature}")
        return self.inputs._make(_decode_seq(self.inputs.components, raw[4:], 0))

    def __repr__(self) -> str:
        return f"<Function {self.signature}>"


def _missing(fn: str, name: str) -> Any:
    raise AbiError(f"{fn}: missing argument {name!r}")


def constructor_data(abi: Sequence[dict], bytecode: BytesLike, *args: Any) -> bytes:
    """Deployment data: the creation bytecode followed by the encoded constructor arguments."""
    ctor = next((e for e in abi if e.get("type") == "constructor"), {"inputs": []})
    ins = ctor.get("inputs", [])
    if len(args) != len(ins):
        raise AbiError(f"the constructor takes {len(ins)} arguments, got {len(args)}")
    return to_bytes(bytecode) + _encode_seq([param_type(p) for p in ins], args)


# ---------------------------------------------------------------------------------- events

@record
class DecodedLog:
    """One decoded event log (the shape of ``tx.DecodedEvent``)."""

    name: str
    address: str
    args: dict
    log_index: Optional[int] = None
    block_number: Optional[int] = None
    tx_hash: str = ""
    signature: str = ""


def _int_or_none(v: Any) -> Optional[int]:
    if v is None:
        return None
    if isinstance(v, int):
        return v
    return int(v, 16) if isinstance(v, str) else int(v)


class Event:
    """One ``type == "event"`` ABI entry: its topic, and the decoding of its logs."""

    def __init__(self, entry: dict) -> None:
        self.abi = entry
        self.name: str = entry["name"]
        self.anonymous = bool(entry.get("anonymous"))
        inputs = entry.get("inputs", [])
        self.signature = _signature(entry)
        self.topic = keccak(self.signature)
        self.names = _arg_names(inputs)
        self._indexed = [(i, param_type(p)) for i, p in enumerate(inputs) if p.get("indexed")]
        self._data_idx = [i for i, p in enumerate(inputs) if not p.get("indexed")]
        self._data = [param_type(inputs[i]) for i in self._data_idx]
        self.n_topics = len(self._indexed) + (0 if self.anonymous else 1)

    def decode(self, topics: Sequence[BytesLike], data: BytesLike) -> dict:
        """The event's arguments by name. An indexed string, bytes, array or tuple is only
        its keccak hash in the topic: it comes back as those 32 bytes (as web3 does)."""
        ts = [to_bytes(t) for t in topics]
        if len(ts) != self.n_topics:
            raise AbiDecodeError(f"{self.name}: {len(ts)} topics, expected {self.n_topics}")
        if not self.anonymous and ts[0] != self.topic:
            raise AbiDecodeError(f"not a {self.signature} log")
        vals: list = [None] * len(self.names)
        for (i, t), topic in zip(self._indexed, ts[0 if self.anonymous else 1:]):
            if len(topic) != 32:
                raise AbiDecodeError(f"{self.name}: a topic is 32 bytes")
            hashed = isinstance(t, (_Bytes, _String, _Array, _Tuple))
            vals[i] = topic if hashed else t.decode(topic, 0)
        for i, v in zip(self._data_idx, _decode_seq(self._data, to_bytes(data), 0)):
            vals[i] = v
        return dict(zip(self.names, vals))


class EventDecoder:
    """Decodes logs against the events of one or more ABIs (unknown logs are skipped)."""

    def __init__(self, abis: Iterable[Sequence[dict]] = ()) -> None:
        self.by_topic: dict = {}
        for abi in abis:
            self.add(abi)

    def add(self, abi: Sequence[dict]) -> None:
        for entry in abi:
            if entry.get("type") == "event" and not entry.get("anonymous"):
                ev = Event(entry)
                cands = self.by_topic.setdefault(ev.topic, [])
                if not any(c.abi == entry for c in cands):
                    cands.append(ev)

    def decode_log(self, log: dict) -> Optional[DecodedLog]:
        """A JSON-RPC log (hex strings) or a web3 one (HexBytes), decoded; None if unknown."""
        topics = log.get("topics") or []
        if not topics:
            return None
        t0 = to_bytes(topics[0])
        for ev in self.by_topic.get(t0, ()):
            if len(topics) != ev.n_topics:
                continue  # same topic, other indexed layout (ERC-20 vs ERC-721 Transfer)
            try:
                args = ev.decode(topics, log.get("data") or b"")
            except AbiError:
                continue
            txh = log.get("transactionHash")
            return DecodedLog(
                name=ev.name, address=to_checksum_address(log["address"]), args=args,
                log_index=_int_or_none(log.get("logIndex")),
                block_number=_int_or_none(log.get("blockNumber")),
                tx_hash=(txh if isinstance(txh, str) else to_hex(txh)) if txh is not None else "",
                signature=ev.signature)
        return None

    def decode_logs(self, logs: Iterable[dict]) -> list:
        return [d for d in (self.decode_log(log) for log in logs) if d is not None]


# ---------------------------------------------------------------------------------- reverts

@record
class DecodedRevert:
    """What a revert said (the shape of ``tx.DecodedRevert``)."""

    name: Optional[str]  # "Error", "Panic", a custom error's name, or None (unknown / empty)
    args: tuple = ()
    arg_names: tuple = ()
    reason: str = ""
    data: str = "0x"


class ErrorDecoder:
    """Decodes revert data by its selector: ``Error(string)``, ``Panic(uint256)`` and the
    ``type == "error"`` entries of the given ABIs -- never by the node's message text."""

    def __init__(self, abis: Iterable[Sequence[dict]] = ()) -> None:
        self.errors: dict = {}
        for abi in abis:
            for entry in abi:
                if entry.get("type") == "error":
                    sel = keccak(_signature(entry))[:4]
                    self.errors.setdefault(sel, entry)
        self._types: dict = {}

    def decode(self, data: Any) -> DecodedRevert:
        try:
            raw = to_bytes(data)
        except AbiError:
            raw = b""
        hexdata = to_hex(raw)
        if not raw:
            return DecodedRevert(None, reason="reverted without a reason", data=hexdata)
        sel, body = raw[:4], raw[4:]
        try:
            if sel == ERROR_STRING_SELECTOR:
                (msg,) = decode(["string"], body)
                return DecodedRevert("Error", (msg,), ("reason",), msg, hexdata)
            if sel == PANIC_SELECTOR:
                (code,) = decode(["uint256"], body)
                text = PANIC_CODES.get(code, "unknown panic code")
                return DecodedRevert("Panic", (code,), ("code",), f"panic 0x{code:02x}: {text}",
                                     hexdata)
            entry = self.errors.get(sel)
            if entry is not None:
                inputs = entry.get("inputs", [])
                args = tuple(_decode_seq([param_type(p) for p in inputs], body, 0))
                shown = ", ".join(_fmt_arg(a) for a in args)
                return DecodedRevert(entry["name"], args, tuple(_arg_names(inputs)),
                                     f"{entry['name']}({shown})", hexdata)
        except AbiError:  # malformed data for the selector: fall through to "unknown"
            pass
        return DecodedRevert(None, reason=f"unknown error (data {hexdata[:74]}"
                             f"{'...' if len(hexdata) > 74 else ''})", data=hexdata)


def _fmt_arg(a: Any) -> str:
    if isinstance(a, (bytes, bytearray)):
        return "0x" + bytes(a).hex()
    if isinstance(a, str) and not a.startswith("0x"):
        return repr(a)
    return str(a)


# ---------------------------------------------------------------------------------- a whole ABI

@record
class ContractAbi:
    """The functions, events and errors of one ABI JSON, each parsed once, when first used.

    NOTE: parsing every function of the manager's ABI (types, signature, selector) cost a
    command ~15 ms of CPU for the two or three it calls (issue 19)."""

    abi: Sequence[dict]
    functions: dict = field(default_factory=dict)  # name (first overload) and signature -> Function

    def __post_init__(self) -> None:
        self._entries: dict = {}  # name -> its ABI entries, overloads in ABI order
        for entry in self.abi:
            if entry.get("type") == "function":
                self._entries.setdefault(entry.get("name", ""), []).append(entry)
        self._events: Optional[EventDecoder] = None
        self._errors: Optional[ErrorDecoder] = None

    def function(self, name: str) -> Function:
        """By name (the first overload) or by signature (``"approve(address,uint256)"``)."""
        fn = self.functions.get(name)
        if fn is None:
            for entry in self._entries.get(name.split("(", 1)[0], ()):
                f = Function(entry)
                self.functions.setdefault(f.name, f)
                self.functions[f.signature] = f
            fn = self.functions.get(name)
        if fn is None:
            raise AbiError(f"no function {name!r} in this ABI")
        return fn

    @property
    def events(self) -> EventDecoder:
        if self._events is None:
            self._events = EventDecoder([self.abi])
        return self._events

    @property
    def errors(self) -> ErrorDecoder:
        if self._errors is None:
            self._errors = ErrorDecoder([self.abi])
        return self._errors
