"""Record classes: the ``dataclasses`` decorator API at a fraction of its memory.

The stack, the hardware layer and the firmware declare about 200 small value
classes. With the standard ``dataclasses`` each one costs five or six methods
compiled from source at import (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__``, ...), and the module itself imports ``inspect``,
``ast`` and ``dis``: about 1.5 MiB of a resident set that a Pi Zero pays for
the whole day (docs/benchmarks.md, "Where the firmware's idle RSS goes").

Here only ``__init__`` is compiled per class (it has the class's own signature,
and a generated one is as fast as ``dataclasses``'); ``__repr__``, ``__eq__``,
``__hash__``, ordering and the frozen guards are shared functions that read the
class's field names, with the field values fetched by one C ``attrgetter``.

Supported: ``init``, ``repr``, ``eq``, ``order``, ``frozen``, ``slots``,
``unsafe_hash``; ``field(default=, default_factory=, repr=, compare=, hash=,
init=)``; ``__post_init__``; inheritance from other records; ``ClassVar``
annotations are not fields; ``replace``, ``fields``, ``is_dataclass``,
``asdict``. Not supported (unused here): ``InitVar``, ``KW_ONLY``, ``kw_only``,
``weakref_slot``, ``match_args=False``. mypy reads the decorator through
``dataclass_transform`` (PEP 681), so constructor calls are type-checked as
with ``dataclasses``. ``hal`` and ``firmware`` use it too: it depends on
nothing but the standard library.
"""

from __future__ import annotations

import reprlib
import sys
from collections.abc import Callable
from operator import attrgetter, ge, gt, le, lt
from typing import Any, ClassVar, TypeVar, dataclass_transform, overload

__all__ = [
    "Field",
    "FrozenInstanceError",
    "asdict",
    "dataclass",
    "field",
    "fields",
    "is_dataclass",
    "replace",
]

T = TypeVar("T")

_FIELDS = "__record_fields__"
_KEY = "__record_key__"  # the compared fields' values, as a tuple
_HASH_KEY = "__record_hash_key__"  # the hashed fields' values (field(hash=...) may differ)


class _Missing:
    """The 'no default' marker (``None`` is a valid default)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class _Factory:
    """The ``__init__`` default of a field with a default_factory (as dataclasses)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY: Any = _Factory()


class FrozenInstanceError(AttributeError):
    """Assigning to or deleting a field of a frozen record."""


class Field:
    """One field of a record: its name, its default and what it takes part in."""

    __slots__ = ("name", "default", "default_factory", "repr", "compare", "hash", "init")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Any = MISSING,
        repr: bool = True,
        compare: bool = True,
        hash: bool | None = None,
        init: bool = True,
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.hash = hash
        self.init = init

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r})"


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | Any = MISSING,
    repr: bool = True,
    compare: bool = True,
    hash: bool | None = None,
    init: bool = True,
) -> Any:
    """Describe a field with more than a plain default (as ``dataclasses.field``)."""
    return Field(default, default_factory, repr, compare, hash, init)


@overload
def dataclass(cls: type[T], /) -> type[T]: ...


@overload
def dataclass(
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = True,
    order: bool = False,
    unsafe_hash: bool = False,
    frozen: bool = False,
    slots: bool = False,
) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(field, Field))
def dataclass(
    cls: type[T] | None = None,
    /,
    *,
    init: bool = True,
    repr: bool = True,
    eq: bool = True,
    order: bool = False,
    unsafe_hash: bool = False,
    frozen: bool = False,
    slots: bool = False,
) -> type[T] | Callable[[type[T]], type[T]]:
    """Make ``cls`` a record: the same options and results as ``dataclasses.dataclass``."""

    def wrap(cls: type[T]) -> type[T]:
        return _build(cls, init, repr, eq, order, unsafe_hash, frozen, slots)

    return wrap if cls is None else wrap(cls)


def is_dataclass(obj: object) -> bool:
    """True for a record class or instance."""
    cls = obj if isinstance(obj, type) else type(obj)
    return hasattr(cls, _FIELDS)


def fields(obj: object) -> tuple[Field, ...]:
    """The record's fields, in declaration order (bases first)."""
    cls = obj if isinstance(obj, type) else type(obj)
    try:
        found: tuple[Field, ...] = getattr(cls, _FIELDS)
    except AttributeError:
        raise TypeError(f"{cls.__name__} is not a record") from None
    return found


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of record ``obj`` with some fields changed, built through ``__init__``."""
    for f in fields(obj):
        if not f.init:
            if f.name in changes:
                raise ValueError(f"field {f.name} is not an __init__ argument: cannot replace it")
            continue
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


def asdict(obj: object) -> dict[str, Any]:
    """The record's fields as a dict, nested records, lists, tuples and dicts too."""
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError("asdict() wants a record instance")
    return {f.name: _asdict_value(getattr(obj, f.name)) for f in fields(obj)}


def _asdict_value(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_asdict_value(v) for v in value))
    if isinstance(value, list | tuple):
        return type(value)(_asdict_value(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_asdict_value(k), _asdict_value(v)) for k, v in value.items())
    return value


# -- building a class ---------------------------------------------------------------------


def _is_classvar(annotation: object) -> bool:
    if isinstance(annotation, str):  # `from __future__ import annotations`
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return getattr(annotation, "__origin__", annotation) is ClassVar


def _collect_fields(cls: type) -> list[Field]:
    found: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get(_FIELDS, ()):
            found[f.name] = f
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(f.default, list | dict | set):
            raise ValueError(
                f"mutable default {type(f.default).__name__} for field {name}: use default_factory"
            )
        found[name] = f
    seen_default = False
    for f in found.values():
        if not f.init:
            continue
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        seen_default = seen_default or has_default
    return list(found.values())


def _make_init(
    cls: type, fields_: list[Field], frozen: bool, module_globals: dict[str, Any]
) -> Any:
    """Compile ``__init__`` with the class's own signature (fast, and its errors name
    the missing argument the way Python's do)."""
    closure: dict[str, Any] = {"_set": object.__setattr__, "_FACTORY": _FACTORY}
    params = ["self"]
    body = []
    for i, f in enumerate(fields_):
        name = f.name
        if f.init:
            if f.default_factory is not MISSING:
                closure[f"_f{i}"] = f.default_factory
                params.append(f"{name}=_FACTORY")
                value = f"_f{i}() if {name} is _FACTORY else {name}"
            elif f.default is not MISSING:
                closure[f"_d{i}"] = f.default
                params.append(f"{name}=_d{i}")
                value = name
            else:
                params.append(name)
                value = name
        elif f.default_factory is not MISSING:
            closure[f"_f{i}"] = f.default_factory
            value = f"_f{i}()"
        elif f.default is not MISSING:
            closure[f"_d{i}"] = f.default
            value = f"_d{i}"
        else:
            continue
        body.append(f"_set(self, {name!r}, {value})" if frozen else f"self.{name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("self.__post_init__()")
    source = (
        f"def __make__({', '.join(closure)}):\n"
        f" def __init__({', '.join(params)}):\n"
        + "".join(f"  {line}\n" for line in body or ["pass"])
        + " return __init__\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, module_globals, namespace)  # noqa: S102 - our own field names only
    function: Any = namespace["__make__"](**closure)
    function.__qualname__ = f"{cls.__qualname__}.__init__"
    return function


def _build(
    cls: type[T],
    init: bool,
    repr_: bool,
    eq: bool,
    order: bool,
    unsafe_hash: bool,
    frozen: bool,
    slots: bool,
) -> type[T]:
    fields_ = _collect_fields(cls)
    names = tuple(f.name for f in fields_)
    own = cls.__dict__
    new: dict[str, Any] = {_FIELDS: tuple(fields_)}
    compared = [f.name for f in fields_ if f.compare]
    new[_KEY] = staticmethod(_key_of(compared))  # a plain function would bind to the instance
    new["__record_repr_names__"] = tuple(f.name for f in fields_ if f.repr)
    if "__match_args__" not in own:
        new["__match_args__"] = tuple(f.name for f in fields_ if f.init)
    if init and "__init__" not in own:
        module = sys.modules.get(cls.__module__)
        new["__init__"] = _make_init(cls, fields_, frozen, vars(module) if module else {})
    if repr_ and "__repr__" not in own:
        new["__repr__"] = _record_repr
    if eq and "__eq__" not in own:
        new["__eq__"] = _record_eq
    if order:
        for name, function in _ORDER.items():
            if name in own:
                raise TypeError(f"cannot overwrite {name} in {cls.__name__} (order=True)")
            new[name] = function
    if frozen:
        for name in ("__setattr__", "__delattr__"):
            if name in own:
                raise TypeError(f"cannot overwrite {name} in frozen {cls.__name__}")
        new["__setattr__"] = _frozen_setattr
        new["__delattr__"] = _frozen_delattr
    # the __hash__ rules of dataclasses (its _hash_action table)
    class_hash = own.get("__hash__", MISSING)
    explicit_hash = not (class_hash is MISSING or (class_hash is None and "__eq__" in own))
    if unsafe_hash:
        if explicit_hash:
            raise TypeError(f"cannot overwrite __hash__ in {cls.__name__} (unsafe_hash=True)")
        new["__hash__"] = _record_hash
    elif eq and not explicit_hash:
        new["__hash__"] = _record_hash if frozen else None
    hashed = [f.name for f in fields_ if (f.compare if f.hash is None else f.hash)]
    new[_HASH_KEY] = new[_KEY] if hashed == compared else staticmethod(_key_of(hashed))
    if slots:
        return _with_slots(cls, names, new, frozen)
    for f in fields_:  # as dataclasses: the class attribute is the default, if any
        if isinstance(own.get(f.name), Field):
            if f.default is MISSING:
                delattr(cls, f.name)
            else:
                setattr(cls, f.name, f.default)
    for name, value in new.items():
        setattr(cls, name, value)
    return cls


def _with_slots(cls: type[T], names: tuple[str, ...], new: dict[str, Any], frozen: bool) -> type[T]:
    """A new class with ``__slots__`` for the fields (slots cannot be added later)."""
    namespace = dict(cls.__dict__)
    inherited = {s for base in cls.__mro__[1:] for s in base.__dict__.get("__slots__", ())}
    namespace["__slots__"] = tuple(n for n in names if n not in inherited)
    for name in names:
        namespace.pop(name, None)  # the defaults live in __init__
    namespace.pop("__dict__", None)
    namespace.pop("__weakref__", None)
    namespace.update(new)
    if frozen:  # copy and pickle restore state with setattr, which frozen refuses
        namespace["__getstate__"] = _frozen_getstate
        namespace["__setstate__"] = _frozen_setstate
    metaclass: Any = type(cls)
    made: type[T] = metaclass(cls.__name__, cls.__bases__, namespace)
    made.__qualname__ = cls.__qualname__
    return made


# -- the shared methods -------------------------------------------------------------------


def _no_key(_obj: object) -> tuple[()]:
    return ()


def _key_of(names: list[str]) -> Callable[[object], Any]:
    """The values of ``names`` as a tuple (one C attrgetter call when there are two or more)."""
    if not names:
        return _no_key
    if len(names) > 1:
        return attrgetter(*names)
    get = attrgetter(names[0])  # with one name, attrgetter gives the value, not a tuple

    def key(obj: object) -> tuple[Any]:
        return (get(obj),)

    return key


@reprlib.recursive_repr()
def _record_repr(self: Any) -> str:
    values = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_repr_names__)
    return f"{type(self).__qualname__}({values})"


def _record_eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        key = self.__record_key__
        return key(self) == key(other)
    return NotImplemented


def _record_hash(self: Any) -> int:
    return hash(self.__record_hash_key__(self))


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def method(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            key = self.__record_key__
            return op(key(self), key(other))
        return NotImplemented

    return method


_ORDER = {
    "__lt__": _compare(lt),
    "__le__": _compare(le),
    "__gt__": _compare(gt),
    "__ge__": _compare(ge),
}


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _frozen_getstate(self: object) -> list[Any]:
    return [getattr(self, f.name) for f in fields(self)]


def _frozen_setstate(self: object, state: list[Any]) -> None:
    for f, value in zip(fields(self), state, strict=True):
        object.__setattr__(self, f.name, value)
