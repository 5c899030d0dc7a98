"""Records (dtnsess_cli.record) behave as the dataclasses of the same declarations.

Issue 19, item 4: ``import dataclasses`` (~19 ms, it loads ``inspect``) and compiling each
dataclass's methods (~0.8 ms a class) were ~30 ms of every write. A record is built from the same
declaration with generic methods; these tests hold every record of the package, and random
declarations, to the real dataclass of the same class body.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import pkgutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dtnsess_cli
from dtnsess_cli import record
from dtnsess_cli.record import field

GENERATED = {"__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"}
# what record() adds to a class, besides the methods it generated
ADDED = {"__match_args__", "__record_names__", "__record_spec__", "__record_twin__",
         "__dataclass_fields__",
         "__dataclass_params__", "__signature__", "__dict__", "__weakref__"}


def package_records() -> list:
    found = {}
    for mod in pkgutil.walk_packages(dtnsess_cli.__path__, "dtnsess_cli."):
        if mod.name.endswith("__main__"):
            continue  # runs the CLI
        m = importlib.import_module(mod.name)
        for obj in vars(m).values():
            if isinstance(obj, type) and "__record_spec__" in obj.__dict__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


RECORDS = package_records()


def as_dataclass(cls: type) -> type:
    """The class body a record was declared with, made by ``@dataclass`` instead."""
    specs, frozen = cls.__record_spec__
    ns = {}
    for k, v in cls.__dict__.items():
        if k in ADDED:
            continue
        if k in GENERATED and getattr(v, "__code__", None) is not None \
                and v.__code__.co_filename == record.__file__:
            continue
        if k == "__hash__" and v is None or isinstance(v, record._FromTwin):  # a lazy __doc__
            continue
        ns[k] = v
    for name, _ann, f in specs:
        kw = {"repr": f.repr, "compare": f.compare}
        if f.default is not record.MISSING:
            kw["default"] = f.default
        if f.default_factory is not record.MISSING:
            kw["default_factory"] = f.default_factory
        ns[name] = dataclasses.field(**kw)
    return dataclasses.dataclass(frozen=frozen)(type(cls.__name__, cls.__bases__, ns))


def same_outcome(make_a, make_b):
    """Both calls return, or both raise the same type: (a, b) or (None, None)."""
    try:
        a = make_a()
    except Exception as exc:  # noqa: BLE001 -- the type is what is compared
        with pytest.raises(type(exc)):
            make_b()
        return None, None
    return a, make_b()


def assert_alike(R: type, D: type, a, b) -> None:
    """A record instance ``a`` and a dataclass instance ``b`` of the same values."""
    assert repr(a) == repr(b)
    assert dataclasses.is_dataclass(a) and dataclasses.is_dataclass(R)
    assert [(f.name, f.type, f.default, f.default_factory, f.repr, f.compare, f.init, f.hash)
            for f in dataclasses.fields(a)] == \
        [(f.name, f.type, f.default, f.default_factory, f.repr, f.compare, f.init, f.hash)
         for f in dataclasses.fields(b)]
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    assert dataclasses.astuple(a) == dataclasses.astuple(b)
    assert record.names(a) == record.names(b) == tuple(f.name for f in dataclasses.fields(b))
    assert a == a and (a == b) is False and a != b  # another class is never equal
    assert (R.__hash__ is None) == (D.__hash__ is None)
    if R.__hash__ is not None:
        ha, hb = same_outcome(lambda: hash(a), lambda: hash(b))  # a list field: both refuse
        assert ha == hb
    assert R.__match_args__ == D.__match_args__
    assert str(inspect.signature(R)) == str(inspect.signature(D))
    assert R.__dataclass_params__.frozen == D.__dataclass_params__.frozen
    for name in record.names(a):
        a2, b2 = same_outcome(lambda: dataclasses.replace(a, **{name: "changed"}),
                              lambda: dataclasses.replace(b, **{name: "changed"}))
        if a2 is not None:
            assert repr(a2) == repr(b2)
            assert (a2 == a) == (b2 == b)
            assert repr(record.replace(a, **{name: "changed"})) == repr(b2)
        same_outcome(lambda: setattr(a, name, "set"), lambda: setattr(b, name, "set"))
        assert repr(a) == repr(b)
    same_outcome(lambda: setattr(a, "not_a_field", 1), lambda: setattr(b, "not_a_field", 1))


@pytest.mark.parametrize("R", RECORDS, ids=lambda c: c.__qualname__)
def test_every_record_of_the_package_is_its_dataclass(R):
    """The package's records, against ``@dataclass`` of the same body: same fields, signature,
    repr, equality, hash, frozenness, asdict/astuple/replace, and docstring (a dataclass writes
    one for a class without)."""
    D = as_dataclass(R)
    assert R.__doc__ == D.__doc__
    specs, _ = R.__record_spec__
    tried = 0
    for value in ("v", (), None, 0):
        given_ = [f"{value}{i}" if isinstance(value, str) else value for i in range(len(specs))]
        required = [n for n, _a, f in specs
                    if f.default is record.MISSING and f.default_factory is record.MISSING]
        a, b = same_outcome(lambda: R(*given_), lambda: D(*given_))
        if a is None:
            continue
        tried += 1
        assert_alike(R, D, a, b)
        assert repr(copy.deepcopy(a)) == repr(a) and repr(copy.copy(a)) == repr(a)
        assert repr(pickle.loads(pickle.dumps(a))) == repr(a)
        kw = dict(zip(required, given_))
        a, b = same_outcome(lambda: R(**kw), lambda: D(**kw))  # defaults and factories
        if a is not None:
            made = {n: getattr(a, n) for n, _a, f in specs
                    if f.default_factory is not record.MISSING}
            assert {n: type(v) for n, v in made.items()} == \
                {n: type(getattr(b, n)) for n in made}
            assert_alike(R, D, a, D(**kw, **made))  # a factory's value, e.g. time.monotonic()
        same_outcome(lambda: R(*given_, "one too many"), lambda: D(*given_, "one too many"))
        same_outcome(lambda: R(*given_, nope=1), lambda: D(*given_, nope=1))
        if specs:
            same_outcome(lambda: R(*given_, **{specs[0][0]: 1}),
                         lambda: D(*given_, **{specs[0][0]: 1}))
    assert tried, f"no values made a {R.__qualname__}"


def test_the_package_has_records_and_the_write_path_builds_them():
    names = {c.__qualname__ for c in RECORDS}
    assert {"Amount", "WriteResult", "SessionView", "TxResult", "TxContext", "CliOptions",
            "ChainFacts", "Entry", "ConfigView", "Check"} <= names


FIELD = st.tuples(st.sampled_from(["none", "default", "factory"]), st.booleans(), st.booleans())


@settings(max_examples=150, deadline=None)
@given(decl=st.lists(FIELD, max_size=5), frozen=st.booleans(), data=st.data())
def test_random_declarations_behave_as_dataclasses(decl, frozen, data):
    """Any declaration records support: both build or both refuse; then any call of the
    constructor (too few, too many, repeated or unknown arguments) fails or succeeds alike, and
    what it builds is alike."""
    def body():
        ns = {"__doc__": data.draw(st.sampled_from([None, "A declaration."])),
              "__annotations__": {}}
        for i, (kind, shown, compared) in enumerate(decl):
            ns["__annotations__"][f"f{i}"] = "int"
            opts = {"repr": shown, "compare": compared}
            if kind == "default":
                opts["default"] = -i
            elif kind == "factory":
                opts["default_factory"] = list
            ns[f"f{i}"] = (opts, kind)
        return ns

    def make(deco, fld):
        ns = body()
        for k, v in list(ns.items()):
            if isinstance(v, tuple):
                opts, kind = v
                if kind == "none" and opts == {"repr": True, "compare": True}:
                    del ns[k]  # a bare annotation
                else:
                    ns[k] = fld(**opts)
        return deco(type("Decl", (), ns))

    R, D = same_outcome(lambda: make(record.record(frozen=frozen), field),
                        lambda: make(dataclasses.dataclass(frozen=frozen), dataclasses.field))
    if R is None:
        return
    n = len(decl)
    npos = data.draw(st.integers(0, n + 1))
    args = data.draw(st.lists(st.integers(), min_size=npos, max_size=npos))
    keys = data.draw(st.lists(st.sampled_from([f"f{i}" for i in range(n)] + ["zz"]),
                              unique=True, max_size=n + 1))
    kwargs = {k: data.draw(st.integers()) for k in keys}
    a, b = same_outcome(lambda: R(*args, **kwargs), lambda: D(*args, **kwargs))
    if a is not None:
        assert_alike(R, D, a, b)


def test_what_records_do_not_support_is_refused():
    with pytest.raises(TypeError, match="not supported"):
        @record.record
        class WithClassVar:
            """x"""
            n: "ClassVar[int]" = 1

    @record.record
    class Base:
        """x"""
        a: int = 0

    with pytest.raises(TypeError, match="cannot inherit"):
        @record.record
        class Child(Base):
            """x"""
            b: int = 1

    with pytest.raises(ValueError, match="mutable default"):
        @record.record
        class Mutable:
            """x"""
            a: list = []  # noqa: RUF012

    with pytest.raises(ValueError, match="both default and default_factory"):
        field(default=1, default_factory=list)


def test_a_record_that_holds_itself_prints_as_a_dataclass_does():
    @record.record
    class Node:
        """x"""
        next: object = None

    n = Node()
    n.next = n
    assert repr(n) == "test_a_record_that_holds_itself_prints_as_a_dataclass_does.<locals>." \
                      "Node(next=...)"


def test_records_do_not_load_dataclasses_nor_inspect_until_asked():
    """The point of records: making them, comparing, printing and the renderer's JSON load
    neither module; the first introspection does."""
    code = (
        "import sys\n"
        "from dtnsess_cli.manager.views import WriteResult\n"
        "from dtnsess_cli.chain.context import TxResult\n"
        "from dtnsess_cli.render import to_jsonable\n"
        "from dtnsess_cli.units import Amount\n"
        "t = TxResult('close', False, '0x1', '0x2', 0, 21000, 25000, 10, tx_hash='0xab')\n"
        "w = WriteResult('close', txs=[t], data={'refund': Amount(5, 1)})\n"
        "j = to_jsonable(w); r = repr(w); e = w == w; h = hash(Amount(1, 2))\n"
        "assert 'dataclasses' not in sys.modules and 'inspect' not in sys.modules, 'loaded'\n"
        "import dataclasses\n"
        "want = {'refund': {'units': 5, 'decimals': 1, 'symbol': ''}}\n"
        "assert dataclasses.asdict(w)['data'] == want, dataclasses.asdict(w)\n"
        "print(j['data'], j['txs'][0]['tx_hash'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "{'refund': '0.5', 'refund_units': '5'} 0xab\n", out.stdout
