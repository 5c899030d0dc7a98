"""Records: the project's dataclasses, without what ``dataclasses`` costs every command.

``import dataclasses`` costs ~19 ms (it imports ``inspect``, with ``ast``, ``dis`` and
``tokenize``, for a docstring it writes only when a class has none), and each ``@dataclass``
compiles its methods, ~0.8 ms a class: together ~30 ms of a ``close``. :func:`record` builds
the same class from the same declaration with generic methods. What only introspection needs
(``__dataclass_fields__``, so ``dataclasses.fields``, ``asdict``, ``astuple``, ``replace`` and
``is_dataclass`` work, ``__dataclass_params__``, ``__signature__``, and the ``__doc__`` of a
class without a docstring) comes on first use from a
real dataclass of the same declaration, its twin. ``tests/test_record.py`` holds every record of
the package to its twin.

Supported: ``frozen``, defaults, :func:`field` with ``default``, ``default_factory``, ``repr``
and ``compare``, and ``__post_init__``. Anything else (inheritance from a record or dataclass,
``ClassVar``, ``InitVar``, ``KW_ONLY``) is refused with a TypeError: use ``@dataclass`` there.
"""

from __future__ import annotations

from _thread import get_ident

# NOTE: typing is ~7 ms of every start-up; the annotations here are never evaluated
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, TypeVar, dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_kw):  # what type checkers read; nothing at run time
        return lambda f: f


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_REPRING: set = set()  # (record id, thread) pairs being printed: a record that holds itself
# what dataclasses treats apart, and records refuse (typing.ClassVar, dataclasses.InitVar, ...)
_REFUSED = frozenset({"ClassVar", "InitVar", "KW_ONLY"})


class Field:
    """What :func:`field` puts in a class body."""

    __slots__ = ("default", "default_factory", "repr", "compare")

    def __init__(self, default: Any, default_factory: Any, repr: bool, compare: bool) -> None:
        self.default, self.default_factory = default, default_factory
        self.repr, self.compare = repr, compare


def field(*, default: Any = MISSING, default_factory: Any = MISSING, repr: bool = True,
          compare: bool = True) -> Any:
    """``dataclasses.field`` for a record (the options records support)."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, repr, compare)


@dataclass_transform(field_specifiers=(field,))
def record(cls: Any = None, /, *, frozen: bool = False) -> Any:
    """``@dataclass`` / ``@dataclass(frozen=True)`` for the declarations records support."""
    def wrap(c: Any) -> Any:
        return _build(c, frozen)

    return wrap if cls is None else wrap(cls)


def names(obj: Any) -> Optional[tuple]:
    """The field names of a record or dataclass instance (or class), else None. Imports
    nothing: an instance of a dataclass means ``dataclasses`` is loaded already."""
    cls = obj if isinstance(obj, type) else type(obj)
    own = getattr(cls, "__record_names__", None)
    if own is not None:
        return own
    import sys

    dc = sys.modules.get("dataclasses")
    if dc is not None and dc.is_dataclass(cls):
        return tuple(f.name for f in dc.fields(cls))
    return None


def replace(obj: T, /, **changes: Any) -> T:
    """``dataclasses.replace`` for a record: a new one, ``changes`` applied."""
    return type(obj)(**{**{n: getattr(obj, n) for n in obj.__record_names__}, **changes})


def _build(cls: Any, frozen: bool) -> Any:
    own = cls.__dict__
    for base in cls.__mro__[1:]:
        if "__dataclass_fields__" in base.__dict__:
            raise TypeError(f"{cls.__qualname__}: a record cannot inherit from a record or "
                            f"dataclass ({base.__qualname__}); use @dataclass")
    specs = []  # (name, annotation, Field)
    for name, ann in own.get("__annotations__", {}).items():
        text = ann if isinstance(ann, str) else getattr(ann, "__name__", repr(ann))
        if text.strip("'\" ").split("[", 1)[0].rsplit(".", 1)[-1] in _REFUSED:
            raise TypeError(f"{cls.__qualname__}.{name}: {text} is not supported in a record; "
                            f"use @dataclass")
        value = own.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(value, MISSING, True, True)
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not "
                             f"allowed: use default_factory")
        if f.default is MISSING and f.default_factory is MISSING and any(
                s[2].default is not MISSING or s[2].default_factory is not MISSING
                for s in specs):
            raise TypeError(f"non-default argument {name!r} follows default argument")
        if isinstance(value, Field):  # as dataclasses leaves it: the default, or nothing
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        specs.append((name, ann, f))

    fields = tuple(s[0] for s in specs)
    index = frozenset(fields)
    shown = tuple(s[0] for s in specs if s[2].repr)
    compared = tuple(s[0] for s in specs if s[2].compare)
    defaults = {s[0]: s[2].default for s in specs if s[2].default is not MISSING}
    factories = {s[0]: s[2].default_factory for s in specs
                 if s[2].default_factory is not MISSING}
    post_init = hasattr(cls, "__post_init__")
    put = object.__setattr__ if frozen else setattr
    qual = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(fields):
            raise TypeError(f"{qual}.__init__() takes {len(fields) + 1} positional arguments "
                            f"but {len(args) + 1} were given")
        for name, value in zip(fields, args):
            put(self, name, value)
        missing = []
        for name in fields[len(args):]:
            if name in kwargs:
                put(self, name, kwargs.pop(name))
            elif name in defaults:
                put(self, name, defaults[name])
            elif name in factories:
                put(self, name, factories[name]())
            else:
                missing.append(repr(name))
        if kwargs:
            extra = next(iter(kwargs))
            what = "multiple values for argument" if extra in index else \
                "an unexpected keyword argument"
            raise TypeError(f"{qual}.__init__() got {what} {extra!r}")
        if missing:
            raise TypeError(f"{qual}.__init__() missing {len(missing)} required argument(s): "
                            f"{', '.join(missing)}")
        if post_init:
            self.__post_init__()

    def __repr__(self: Any) -> str:
        key = (id(self), get_ident())
        if key in _REPRING:  # as dataclasses' reprlib guard
            return "..."
        _REPRING.add(key)
        try:
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
            return f"{self.__class__.__qualname__}({inner})"
        finally:
            _REPRING.discard(key)

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return tuple(getattr(self, n) for n in compared) == \
                tuple(getattr(other, n) for n in compared)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in compared))

    methods: dict = {"__init__": __init__, "__repr__": __repr__, "__eq__": __eq__}
    if frozen:
        def __setattr__(self: Any, name: str, value: Any) -> None:
            if type(self) is cls or name in index:
                from dataclasses import FrozenInstanceError

                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            super(cls, self).__setattr__(name, value)

        def __delattr__(self: Any, name: str) -> None:
            if type(self) is cls or name in index:
                from dataclasses import FrozenInstanceError

                raise FrozenInstanceError(f"cannot delete field {name!r}")
            super(cls, self).__delattr__(name)

        methods.update(__setattr__=__setattr__, __delattr__=__delattr__)
    for name, fn in methods.items():
        if name not in own:  # as dataclasses: what the class body wrote stays
            fn.__qualname__ = f"{qual}.{name}"
            setattr(cls, name, fn)
    # NOTE: dataclasses' rule for eq=True: frozen hashes its compared fields, mutable is
    # unhashable, unless the class body wrote its own __hash__ (a body's __eq__ alone sets None)
    body_hash = own.get("__hash__", MISSING)
    if body_hash is MISSING or body_hash is None and "__eq__" in own:
        __hash__.__qualname__ = f"{qual}.__hash__"
        cls.__hash__ = __hash__ if frozen else None
    if "__match_args__" not in own:
        cls.__match_args__ = fields
    cls.__record_names__ = fields
    cls.__record_spec__ = (tuple(specs), frozen)
    for attr in ("__dataclass_fields__", "__dataclass_params__", "__signature__"):
        setattr(cls, attr, _FromTwin(attr))
    if not cls.__doc__:  # dataclasses writes one from the signature: when asked, here
        cls.__doc__ = _FromTwin("__doc__")
    return cls


def _twin(cls: Any) -> Any:
    """The real dataclass of a record's declaration (what introspection reads), made once."""
    made = cls.__dict__.get("__record_twin__")
    if made is not None:
        return made
    import dataclasses

    specs, frozen = cls.__record_spec__
    made = []
    for name, ann, f in specs:
        kw: dict = {"repr": f.repr, "compare": f.compare}
        if f.default is not MISSING:
            kw["default"] = f.default
        if f.default_factory is not MISSING:
            kw["default_factory"] = f.default_factory
        made.append((name, ann, dataclasses.field(**kw)))
    doc = cls.__dict__.get("__doc__")
    twin = dataclasses.make_dataclass(cls.__name__, made, frozen=frozen, namespace={
        "__doc__": None if isinstance(doc, _FromTwin) else doc, "__qualname__": cls.__qualname__,
        "__module__": cls.__module__})
    type.__setattr__(cls, "__record_twin__", twin)
    return twin


class _FromTwin:
    """A class attribute read from the twin on first use, then kept on the class."""

    def __init__(self, attr: str) -> None:
        self.attr = attr

    def __get__(self, obj: Any, owner: Any) -> Any:
        t = _twin(owner)
        if self.attr == "__signature__":
            import inspect

            value = inspect.signature(t)
        else:
            value = getattr(t, self.attr)
        type.__setattr__(owner, self.attr, value)
        return value
