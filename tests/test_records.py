"""poorinit.records: a record behaves as the standard dataclass it replaces."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from dataclasses import field

import pytest

from poorinit.records import record


def twins(frozen: bool = True, order: bool = False) -> tuple[type, type]:
    """The same class made by @record and by @dataclass."""

    def body() -> type:
        class Point:
            x: int
            y: float = 1.5
            tags: list[str] = field(default_factory=list)
            note: str | None = field(default=None, compare=False, repr=False)

        return Point

    return (record(frozen=frozen, order=order)(body()),
            dataclasses.dataclass(frozen=frozen, order=order)(body()))


@pytest.mark.parametrize("frozen", [True, False])
def test_construction_repr_equality_as_dataclass(frozen: bool) -> None:
    ours, std = twins(frozen)
    for args, kwargs in [((1,), {}), ((1, 2.0), {}), ((1, 2.0, ["a"], "n"), {}), ((), {"x": 3, "note": "z"}),
                         ((4,), {"tags": ["b"], "y": 0.5}), ((), {"x": 1, "y": 2, "tags": [], "note": None})]:
        a, b = ours(*args, **kwargs), std(*args, **kwargs)
        assert repr(a) == repr(b)
        assert dataclasses.asdict(a) == dataclasses.asdict(b)
        assert a == ours(*args, **kwargs)
        assert (a != ours(*args, **kwargs)) is False
        assert a.__eq__(b) is NotImplemented  # another class: never equal, as dataclasses do
    assert ours(1, note="a") == ours(1, note="b")  # compare=False is left out of equality
    assert ours(1).tags is not ours(1).tags  # a fresh default from the factory each time
    assert [f.name for f in dataclasses.fields(ours)] == ["x", "y", "tags", "note"]
    assert dataclasses.is_dataclass(ours)
    assert ours.__match_args__ == std.__match_args__
    assert str(inspect.signature(ours)) == str(inspect.signature(std))
    assert ours.__dataclass_params__.frozen is frozen and ours.__dataclass_params__.eq
    assert ours.__doc__ == std.__doc__  # undocumented: the name and the signature


@pytest.mark.parametrize(("args", "kwargs"), [((), {}), ((1, 2, [], None, 5), {}), ((1,), {"x": 2}),
                                              ((1,), {"z": 2}), ((), {"y": 2})])
def test_wrong_arguments_raise_the_same_type_error(args: tuple, kwargs: dict) -> None:
    ours, std = twins()
    with pytest.raises(TypeError) as theirs:
        std(*args, **kwargs)
    with pytest.raises(TypeError) as mine:
        ours(*args, **kwargs)
    # The generated __init__ is named by its qualified name, ours by the class's.
    assert str(mine.value).split("__init__()")[1] == str(theirs.value).split("__init__()")[1]


def test_frozen_hash_replace_pickle_copy() -> None:
    ours, std = twins()
    point = ours(1, 2.0, ("a",))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'x'"):
        point.x = 3
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'y'"):
        del point.y
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.other = 1
    assert hash(ours(1, 2.0, ())) == hash(ours(1, 2.0, ())) == hash(std(1, 2.0, ()))  # type: ignore[arg-type]
    moved = dataclasses.replace(point, y=5.0)
    assert (moved.x, moved.y, moved.tags) == (1, 5.0, ("a",)) and point.y == 2.0
    assert copy.deepcopy(point) == point and copy.copy(point) == point
    assert pickle.loads(pickle.dumps(Pickled(3, "a"))) == Pickled(3, "a")


def test_not_frozen_is_mutable_and_unhashable() -> None:
    ours, std = twins(frozen=False)
    point = ours(1)
    point.x = 2
    assert point.x == 2
    assert ours.__hash__ is None and std.__hash__ is None


def test_order() -> None:
    ours, std = twins(order=True)
    values = [(3, 1.0), (1, 2.0), (1, 1.0)]
    assert [(p.x, p.y) for p in sorted(ours(*v) for v in values)] == [(p.x, p.y) for p in
                                                                      sorted(std(*v) for v in values)]
    assert ours(1) < ours(2) and ours(2) >= ours(2) and not ours(3) <= ours(2)
    with pytest.raises(TypeError):
        _ = ours(1) < std(1)


def test_post_init_and_own_methods_kept() -> None:
    seen = []

    @record
    class Checked:
        value: int

        def __post_init__(self) -> None:
            seen.append(self.value)
            if self.value < 0:
                raise ValueError("negative")

        def __repr__(self) -> str:
            return "mine"

    assert repr(Checked(2)) == "mine" and seen == [2]
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_recursive_repr() -> None:
    @record(frozen=False)
    class Node:
        children: list

    node = Node([])
    node.children.append(node)
    assert repr(node).endswith(".Node(children=[...])")  # the qualified name, as dataclasses give it


@record
class Pickled:
    number: int
    name: str


def test_keyword_only_and_initvar_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="keyword-only or InitVar"):
        @record
        class KeywordOnly:
            a: int
            b: int = field(default=0, kw_only=True)

    with pytest.raises(TypeError, match="keyword-only or InitVar"):
        @record
        class WithInitVar:
            a: int
            scale: dataclasses.InitVar[int] = 1
