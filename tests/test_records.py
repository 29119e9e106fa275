"""sipstack.records behaves as the standard ``dataclasses`` for what the project uses.

Each behaviour is checked against the standard library's own result where one
exists (the same class declared with both decorators), so a difference shows up
as a failing comparison rather than as an expectation we wrote by hand.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import subprocess
import sys
from typing import ClassVar

import pytest

from sipstack import records


def _both(
    body: dict[str, object], annotations: dict[str, str], **options: bool
) -> tuple[type, type]:
    """The same class, once through dataclasses and once through records."""
    made = []
    for module in (dataclasses, records):  # the same field() spelled each module's way
        namespace = {**body, "__annotations__": dict(annotations), "__module__": __name__}
        namespace = {
            k: module.field(**v.kwargs) if isinstance(v, _FieldSpec) else v
            for k, v in namespace.items()
        }
        made.append(module.dataclass(**options)(type("Point", (), namespace)))
    return made[0], made[1]


def _unannotated(signature: inspect.Signature) -> inspect.Signature:
    """Records keep no annotations on ``__init__`` (memory); compare the rest."""
    empty = inspect.Parameter.empty
    return signature.replace(
        parameters=[p.replace(annotation=empty) for p in signature.parameters.values()],
        return_annotation=empty,
    )


class _FieldSpec:
    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs


ANNOTATIONS = {"x": "int", "y": "int", "tags": "list[str]", "note": "str"}
BODY = {
    "y": 2,
    "tags": _FieldSpec(default_factory=list),
    "note": _FieldSpec(default="", repr=False),
}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"frozen": True},
        {"frozen": True, "slots": True},
        {"slots": True},
        {"frozen": True, "slots": True, "order": True},
        {"eq": False},
        {"unsafe_hash": True},
    ],
)
def test_same_results_as_dataclasses(options: dict[str, bool]) -> None:
    std, ours = _both(BODY, ANNOTATIONS, **options)
    assert str(inspect.signature(ours)) == str(_unannotated(inspect.signature(std)))
    a_std, a_ours = std(1), ours(1)
    assert repr(a_ours) == repr(a_std)  # note has repr=False
    assert a_ours.tags == [] and a_ours.tags is not ours(1).tags  # a fresh list each
    assert (ours(1) == ours(1)) == (std(1) == std(1))
    assert (ours(1) == ours(2)) == (std(1) == std(2))
    assert ours(1).__eq__(object()) is NotImplemented or not options.get("eq", True)
    assert (type(ours).__hash__ is None) == (type(std).__hash__ is None)
    assert (ours.__hash__ is None) == (std.__hash__ is None)
    if std.__hash__ is not None and (options.get("frozen") or options.get("unsafe_hash")):
        a, b = ours(1, 2, None), ours(1, 2, None)  # a list field would be unhashable
        assert hash(a) == hash(b)
    assert ours.__match_args__ == std.__match_args__
    assert hasattr(ours(1), "__dict__") == hasattr(std(1), "__dict__")
    assert [f.name for f in records.fields(ours)] == [f.name for f in dataclasses.fields(std)]
    if options.get("order"):
        values = [(3, 1), (1, 2), (1, 1)]
        assert [(p.x, p.y) for p in sorted(ours(x, y) for x, y in values)] == [
            (p.x, p.y) for p in sorted(std(x, y) for x, y in values)
        ]


def test_frozen_refuses_assignment_and_deletion() -> None:
    @records.dataclass(frozen=True, slots=True)
    class Pair:
        a: int
        b: int = 0

    pair = Pair(1)
    with pytest.raises(records.FrozenInstanceError):
        pair.a = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):  # FrozenInstanceError is one, as in dataclasses
        del pair.b
    assert pair == Pair(1, 0) and pair != Pair(1, 1)
    assert {pair: "x"}[Pair(1)] == "x"


def test_argument_errors_match_python_s_own() -> None:
    @records.dataclass
    class Needs:
        a: int
        b: str = "b"

    with pytest.raises(TypeError, match="missing 1 required positional argument: 'a'"):
        Needs()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
        Needs(1, c=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="non-default argument 'c' follows default argument"):

        @records.dataclass
        class Bad:
            a: int = 0
            c: int  # type: ignore[misc]

    with pytest.raises(ValueError, match="mutable default list"):

        @records.dataclass
        class Mutable:
            a: list[int] = []  # noqa: RUF012  # type: ignore[assignment]


def test_post_init_classvar_and_inheritance() -> None:
    seen: list[int] = []

    @records.dataclass(frozen=True, slots=True)
    class Base:
        LIMIT: ClassVar[int] = 10
        a: int

        def __post_init__(self) -> None:
            seen.append(self.a)

    @records.dataclass(frozen=True, slots=True)
    class Child(Base):
        b: str = "x"

    child = Child(3)
    assert (child.a, child.b, Child.LIMIT) == (3, "x", 10)
    assert seen == [3]
    assert [f.name for f in records.fields(child)] == ["a", "b"]
    assert repr(child) == "test_post_init_classvar_and_inheritance.<locals>.Child(a=3, b='x')"
    assert Child(3) != Base(3)  # different classes are never equal


def test_replace_fields_is_dataclass_asdict() -> None:
    @records.dataclass(frozen=True, slots=True)
    class Inner:
        v: int

    @records.dataclass
    class Outer:
        inner: Inner
        items: list[Inner]
        table: dict[str, Inner]

    outer = Outer(Inner(1), [Inner(2)], {"k": Inner(3)})
    assert records.asdict(outer) == {
        "inner": {"v": 1},
        "items": [{"v": 2}],
        "table": {"k": {"v": 3}},
    }
    changed = records.replace(Inner(1), v=5)
    assert changed == Inner(5) and type(changed) is Inner
    with pytest.raises(TypeError):
        records.replace(Inner(1), w=5)  # type: ignore[call-arg]
    assert records.is_dataclass(outer) and records.is_dataclass(Outer)
    assert not records.is_dataclass(object())
    with pytest.raises(TypeError):
        records.fields(object())


def test_copy_and_pickle_of_frozen_slotted_records() -> None:
    original = _Pickled(1, ("a",))
    assert copy.copy(original) == original
    assert copy.deepcopy(original) == original
    assert pickle.loads(pickle.dumps(original)) == original


def test_match_statement_uses_the_fields() -> None:
    match _Pickled(7, ()):
        case _Pickled(n, ()):
            assert n == 7
        case _:
            pytest.fail("did not match")


def test_recursive_repr_does_not_recurse_forever() -> None:
    @records.dataclass
    class Node:
        child: object = None

    node = Node()
    node.child = node
    assert repr(node) == "test_recursive_repr_does_not_recurse_forever.<locals>.Node(child=...)"


def test_importing_records_loads_neither_dataclasses_nor_inspect() -> None:
    """The point of the module: the firmware never pays for ``dataclasses``."""
    code = (
        "import sys, sipstack.records, firmware.app; "
        "print(sorted({'dataclasses', 'inspect', 'ast'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


@records.dataclass(frozen=True, slots=True)
class _Pickled:
    n: int
    names: tuple[str, ...]
