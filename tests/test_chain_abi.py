"""dtnsess_cli.chain.abi against eth-abi / eth-utils (the reference libraries, kept for tests).

Property tests: random ABI types (every base type, fixed and dynamic arrays, nested tuples) with
random values must encode to the same bytes as eth_abi.encode and decode to the same values as
eth_abi.decode; corrupted encodings must either decode as eth_abi does or fail with AbiError
(never another exception). Then every function, event and error of the bundled ABIs: selectors,
topics and call data as eth-utils/web3 compute them.
"""

from __future__ import annotations

import eth_abi
import pytest
from eth_utils import (event_abi_to_log_topic, function_abi_to_4byte_selector,
                       to_checksum_address as ref_checksum)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dtnsess_cli.artifacts import all_abis
from dtnsess_cli.chain import abi
from dtnsess_cli.chain.errors import AbiDecodeError, AbiError

# ------------------------------------------------------------------------------ strategies

BASE_TYPES = st.one_of(
    st.integers(1, 32).map(lambda n: f"uint{8 * n}"),
    st.integers(1, 32).map(lambda n: f"int{8 * n}"),
    st.sampled_from(["address", "bool", "bytes", "string", "uint256", "bytes32"]),
    st.integers(1, 32).map(lambda n: f"bytes{n}"),
)


def _array_of(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.tuples(inner, st.one_of(st.none(), st.integers(1, 3))).map(
        lambda t: f"{t[0]}[{'' if t[1] is None else t[1]}]")


def _tuple_of(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, min_size=1, max_size=4).map(lambda ts: "(" + ",".join(ts) + ")")


TYPES = st.recursive(BASE_TYPES, lambda inner: st.one_of(_array_of(inner), _tuple_of(inner)),
                     max_leaves=6)
TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=70)


def values_for(t: abi.AbiType) -> st.SearchStrategy:
    """A strategy for values of the (parsed) type ``t``."""
    if isinstance(t, abi._UInt):
        return st.integers(0, t.limit - 1)
    if isinstance(t, abi._Int):
        return st.integers(t.low, t.high - 1)
    if isinstance(t, abi._Address):
        # checksummed or lower case: both are valid inputs for both libraries
        return st.tuples(st.binary(min_size=20, max_size=20), st.booleans()).map(
            lambda x: ref_checksum(x[0]) if x[1] else "0x" + x[0].hex())
    if isinstance(t, abi._Bool):
        return st.booleans()
    if isinstance(t, abi._FixedBytes):
        return st.binary(min_size=t.n, max_size=t.n)
    if isinstance(t, abi._Bytes):
        return st.binary(max_size=80)
    if isinstance(t, abi._String):
        return TEXT
    if isinstance(t, abi._Array):
        n = (0, 3) if t.length is None else (t.length, t.length)
        return st.lists(values_for(t.elem), min_size=n[0], max_size=n[1])
    if isinstance(t, abi._Tuple):
        return st.tuples(*[values_for(c) for c in t.components])
    raise AssertionError(t)


@st.composite
def typed_values(draw, max_types: int = 4):
    types = draw(st.lists(TYPES, min_size=1, max_size=max_types))
    values = [draw(values_for(abi.parse_type(t))) for t in types]
    return types, values


def norm(v):
    """eth_abi's and ours side by side: arrays as tuples, addresses lower case."""
    if isinstance(v, (list, tuple)):
        return tuple(norm(x) for x in v)
    if isinstance(v, str) and len(v) == 42 and v.startswith("0x"):
        return v.lower()
    return v


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------ codec

@SETTINGS
@given(typed_values())
def test_encode_matches_eth_abi(tv):
    types, values = tv
    assert abi.encode(types, values) == eth_abi.encode(types, values)


@SETTINGS
@given(typed_values())
def test_decode_matches_eth_abi_and_round_trips(tv):
    types, values = tv
    data = eth_abi.encode(types, values)
    ours = abi.decode(types, data)
    assert norm(ours) == norm(eth_abi.decode(types, data))
    assert norm(ours) == norm(values)


@SETTINGS
@given(typed_values())
def test_decoded_addresses_are_checksummed(tv):
    types, values = tv
    decoded = abi.decode(types, abi.encode(types, values))
    for t, v in zip(types, decoded):
        _check_addresses(abi.parse_type(t), v)


def _check_addresses(t, v):
    if isinstance(t, abi._Address):
        assert v == ref_checksum(v)
    elif isinstance(t, abi._Array):
        assert isinstance(v, list)
        for x in v:
            _check_addresses(t.elem, x)
    elif isinstance(t, abi._Tuple):
        assert isinstance(v, tuple)
        for c, x in zip(t.components, v):
            _check_addresses(c, x)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(typed_values(max_types=3), st.data())
def test_corrupted_data_decodes_like_eth_abi_or_fails_cleanly(tv, data):
    """Hostile bytes: where eth_abi accepts them we agree; otherwise only AbiDecodeError."""
    types, values = tv
    enc = bytearray(eth_abi.encode(types, values))
    assume(enc)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(enc) - 1))
        enc[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(enc)))
    enc = bytes(enc[:cut]) if data.draw(st.booleans()) else bytes(enc)
    try:
        ref = eth_abi.decode(types, enc)
    except Exception:  # eth_abi refuses: ours may refuse too (only with AbiDecodeError)
        ref = None
    try:
        ours = abi.decode(types, enc)
    except AbiDecodeError:
        ours = None
    if ref is not None:
        assert ours is not None and norm(ours) == norm(ref)


@pytest.mark.parametrize("t,value", [
    ("uint8", 256), ("uint8", -1), ("int8", 128), ("int8", -129), ("uint256", True),
    ("bool", 1), ("bytes2", b"abc"), ("address", "0x" + "ab" * 19),
    ("address", "0xABaBaBaBABabABabAbAbABAbABabababaBaBABab"),  # bad EIP-55 checksum
    ("uint256[2]", [1]), ("(uint8,bool)", (1,)), ("string", b"x"), ("bytes", 5),
])
def test_encode_refuses_values_that_do_not_fit(t, value):
    with pytest.raises(AbiError):
        abi.encode([t], [value])


@pytest.mark.parametrize("t", ["fixed128x18", "uint7", "uint264", "bytes0", "bytes33", "(uint8",
                               "foo", "uint[0]", "uint[x]"])
def test_unsupported_types_are_refused(t):
    with pytest.raises(AbiError):
        abi.parse_type(t)


def test_hostile_lengths_fail_without_allocating():
    # a dynamic array announcing 2^255 items in 64 bytes of data
    data = (32).to_bytes(32, "big") + (2**255).to_bytes(32, "big")
    with pytest.raises(AbiDecodeError):
        abi.decode(["uint256[]"], data)
    with pytest.raises(AbiDecodeError):
        abi.decode(["bytes"], (32).to_bytes(32, "big") + (2**200).to_bytes(32, "big"))


def test_invalid_utf8_text_decodes_with_replacement_characters():
    data = eth_abi.encode(["bytes"], [b"ok \xff\xfe end"])  # same layout as a string
    assert abi.decode(["string"], data) == ("ok \ufffd\ufffd end",)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_checksum_matches_eth_utils(raw):
    ref = ref_checksum(raw)
    assert abi.to_checksum_address(raw) == ref
    assert abi.to_checksum_address(ref.lower()) == ref
    assert abi.is_checksum_address(ref) and abi.is_address(ref.lower())
    assert abi.is_address(ref.upper().replace("0X", "0x"))
    flipped = ref[:2] + ref[2:].swapcase()
    if flipped[2:] != ref[2:] and not flipped[2:].islower() and not flipped[2:].isupper():
        assert not abi.is_address(flipped)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_keccak_matches_eth_utils(data):
    from eth_utils import keccak as ref

    assert abi.keccak(data) == ref(data)


def _ctypes_chosen() -> bool:
    return abi._keccak256 is not None and abi._keccak256.__qualname__.startswith("_keccak_c.")


def test_keccak_through_ctypes_matches_pycryptodome():
    """keccak binds pycryptodome's C code with ctypes (issue 19: Crypto.Hash.keccak binds it
    through cffi, which parses C declarations with pycparser at import): the digests of
    pycryptodome's own binding at every length from 0 to 300 (the rate is 136 bytes) and at
    random longer ones, also from threads hashing at once (one state per hash)."""
    import random
    import threading

    from Crypto.Hash import keccak as ref

    abi.keccak(b"")
    assert _ctypes_chosen()  # it gave the known answers
    rnd = random.Random(19)
    inputs = [rnd.randbytes(n) for n in range(301)]
    inputs += [rnd.randbytes(rnd.randrange(301, 5000)) for _ in range(50)]
    want = [ref.new(data=d, digest_bits=256).digest() for d in inputs]
    assert [abi.keccak(d) for d in inputs] == want
    assert abi.keccak(bytearray(inputs[200])) == abi.keccak(memoryview(inputs[200])) == want[200]
    wrong: list = []

    def hash_all() -> None:
        for _ in range(5):
            wrong.extend(i for i, d in enumerate(inputs) if abi.keccak(d) != want[i])

    threads = [threading.Thread(target=hash_all) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert wrong == []


@pytest.mark.parametrize("breakage", ["no finder", "no library", "other symbols",
                                      "wrong answers"])
def test_keccak_falls_back_to_pycryptodome(monkeypatch, breakage):
    """When pycryptodome's library cannot be found, lacks the symbols, or gives a wrong answer
    to the known vectors, keccak is pycryptodome's own binding."""
    import ctypes
    import importlib.machinery
    import sys

    monkeypatch.setattr(abi, "_keccak256", None)  # choose again
    if breakage == "no finder":  # a pycryptodome without Crypto.Util._file_system
        monkeypatch.setitem(sys.modules, "Crypto.Util._file_system", None)
    elif breakage == "no library":
        monkeypatch.setattr(importlib.machinery, "EXTENSION_SUFFIXES", [".not-there.so"])
    elif breakage == "other symbols":
        monkeypatch.setattr(ctypes, "CDLL", lambda *args, **kw: object())
    else:
        monkeypatch.setattr(abi, "_keccak_c", lambda: (lambda data: bytes(32)))
    assert abi.keccak("abc").hex() == \
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    assert abi._keccak256 is not None and not _ctypes_chosen()
    assert abi.keccak(bytes(range(200))).hex() == abi._KECCAK_KNOWN[2][1]


# ------------------------------------------------------------------------------ bundled ABIs

def _entries(kind):
    out = []
    for name, entries in sorted(all_abis().items()):
        for e in entries:
            if e.get("type") == kind:
                out.append(pytest.param(name, e, id=f"{name}.{e.get('name')}"))
    return out


@pytest.mark.parametrize("contract,entry", _entries("function"))
def test_function_selectors_match_eth_utils(contract, entry):
    assert abi.Function(entry).selector == function_abi_to_4byte_selector(entry)


@pytest.mark.parametrize("contract,entry", _entries("event"))
def test_event_topics_match_eth_utils(contract, entry):
    assert abi.Event(entry).topic == event_abi_to_log_topic(entry)


@pytest.mark.parametrize("contract,entry", _entries("error"))
def test_error_selectors_match_eth_utils(contract, entry):
    dec = abi.ErrorDecoder([[entry]])
    sel = function_abi_to_4byte_selector(dict(entry, type="function"))
    assert list(dec.errors) == [sel]


_FUNCTIONS = [(c, e) for c, entries in sorted(all_abis().items()) for e in entries
              if e.get("type") == "function"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_call_data_and_returns_match_web3_for_every_bundled_function(data):
    from eth_utils import get_abi_input_types, get_abi_output_types

    _, entry = data.draw(st.sampled_from(_FUNCTIONS))
    fn = abi.Function(entry)
    args = data.draw(st.tuples(*[values_for(t) for t in fn.inputs.components]))
    ref = function_abi_to_4byte_selector(entry) + eth_abi.encode(get_abi_input_types(entry), args)
    assert fn.encode_call(*args) == ref
    assert norm(fn.decode_input(ref)) == norm(args)
    out_types = get_abi_output_types(entry)
    if out_types:
        outs = data.draw(st.tuples(*[values_for(t) for t in fn.outputs.components]))
        got = fn.decode_output(eth_abi.encode(out_types, outs))
        assert norm(got) == norm(outs[0] if len(outs) == 1 else outs)


def test_structs_decode_as_named_tuples():
    m = abi.ContractAbi(all_abis()["AdvancedSessionManager"])
    fn = m.function("getSession")
    types = [c.canonical for c in fn.outputs.components]
    assert len(types) == 1 and types[0].startswith("(")
    comps = fn.outputs.components[0].components
    values = tuple(abi.decode([c.canonical], abi.encode([c.canonical], [v]))[0]
                   for c, v in zip(comps, [_sample(c) for c in comps]))
    got = fn.decode_output(abi.encode(types, [values]))
    assert got == values  # still equal to the plain tuple web3 returns
    assert got.owner == values[1] and got.sessionId == values[0]


def _sample(t):
    return {abi._UInt: 7, abi._Bool: True, abi._Address: "0x" + "12" * 20}.get(type(t), b"\x01" * 32
                                                                             if isinstance(t, abi._FixedBytes) else 0)


def test_encode_call_by_name_and_wrong_arity():
    tok = abi.ContractAbi(all_abis()["MockUSDT"])
    approve = tok.function("approve")
    spender = "0x" + "ab" * 20
    assert approve.encode_call(spender, 5) == approve.encode_call(spender=spender, value=5)
    with pytest.raises(AbiError):
        approve.encode_call(spender)
    with pytest.raises(AbiError):
        approve.encode_call(spender=spender, value=5, amount=5)
    with pytest.raises(AbiError):
        approve.encode_call(spender=spender)
    with pytest.raises(AbiError):
        tok.function("nope")
    with pytest.raises(AbiDecodeError):
        tok.function("decimals").decode_output("0x")  # no contract at the address


def test_constructor_data_appends_encoded_arguments():
    art_abi = all_abis()["MockUSDT"]
    data = abi.constructor_data(art_abi, "0x6001", "Mock", "M", 6)
    assert data == bytes.fromhex("6001") + eth_abi.encode(["string", "string", "uint8"], ["Mock", "M", 6])
