"""Dataclasses whose methods are shared, not generated: ``@record`` instead of ``@dataclass(frozen=True)``.

On Python 3.10-3.12 the standard ``dataclass`` decorator writes the source of
``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__`` and
``__delattr__`` for every class and compiles each with ``exec``: about 0.65 ms
per frozen class on the benchmark machine, some twenty classes on the path of
``poorinit analyze``, more than analysing ten small step files costs (counted
with callgrind: about 70M of the 810M instructions of ``poorinit analyze`` on
a trial of kilobytes). A record is still a dataclass (``dataclasses.fields``,
``asdict``, ``replace`` and ``is_dataclass`` work on it, and it pickles the
same way), made with code generation switched off; the methods are these few
functions, written once, driven by the class's fields. They behave as the
generated ones do: positional or keyword arguments with defaults and default
factories, ``__post_init__``, equality and hashing over the fields that
compare, the same ``repr``, ``FrozenInstanceError`` on assignment, and
``order=True``'s comparisons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError
from reprlib import recursive_repr
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:  # type checkers see @record as they see @dataclass(frozen=True)
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda decorator: decorator

T = TypeVar("T", bound=type)

__all__ = ["record"]


@overload
def record(cls: T, /) -> T: ...


@overload
def record(*, frozen: bool = True, order: bool = False) -> Callable[[T], T]: ...


@dataclass_transform(frozen_default=True)
def record(cls: T | None = None, /, *, frozen: bool = True, order: bool = False) -> Any:
    """``@record`` (frozen), ``@record(frozen=False)`` or ``@record(order=True)``: a dataclass
    with shared methods (module docstring)."""

    def wrap(cls: T) -> T:
        return _make(cls, frozen, order)

    return wrap if cls is None else wrap(cls)


def _make(cls: T, frozen: bool, order: bool) -> T:
    # init, repr and eq off, not frozen: the standard decorator then generates
    # no code at all, and only collects the fields. (An undocumented class
    # would get a docstring from inspect.signature, which parses object's
    # signature from text: it gets its own below.)
    undocumented = cls.__dict__.get("__doc__") is None
    if undocumented:
        cls.__doc__ = cls.__name__
    cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False)  # type: ignore[assignment]
    initvar = getattr(dataclasses, "_FIELD_INITVAR", None)
    for declared in cls.__dataclass_fields__.values():  # type: ignore[attr-defined]
        if getattr(declared, "kw_only", False) is True or getattr(declared, "_field_type", None) is initvar:
            # Not needed so far: said at import rather than made wrong.
            raise TypeError(f"@record does not take keyword-only or InitVar fields ({cls.__qualname__}."
                            f"{declared.name}); use @dataclass")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = tuple(f.name for f in fields)
    shown = tuple(f.name for f in dataclasses.fields(cls) if f.repr)
    compared = tuple(f.name for f in dataclasses.fields(cls) if f.compare)
    hashed = tuple(f.name for f in dataclasses.fields(cls) if (f.hash is None and f.compare) or f.hash)
    # Per field: its default, or a factory, or neither (required).
    defaults = {f.name: f.default for f in fields if f.default is not MISSING}
    factories = {f.name: f.default_factory for f in fields if f.default_factory is not MISSING}
    post_init = getattr(cls, "__post_init__", None) is not None
    count = len(names)
    every = frozenset(names)
    qualname = cls.__qualname__

    # Every field in order, with its default (or _UNSET): the values of a call
    # start as a copy of it, so the instance's __dict__ keeps the fields' order.
    template = {name: defaults.get(name, _UNSET) for name in names}
    # Fields without a default or a factory, in order (a dataclass lists them first).
    required = tuple(name for name in names if name not in defaults and name not in factories)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        if not kwargs and len(args) == count:
            # Every field given by position: one update, as fast as the generated code.
            self.__dict__.update(zip(names, args, strict=True))
        elif len(args) <= count and kwargs.keys() <= every and kwargs.keys().isdisjoint(names[: len(args)]):
            values = template.copy()
            values.update(zip(names, args, strict=False))  # fewer arguments than fields
            values.update(kwargs)
            for name in factories:
                if values[name] is _UNSET:
                    values[name] = factories[name]()
            for name in required[len(args):]:
                if values[name] is _UNSET:  # not given: _bind raises dataclass's TypeError
                    _bind(qualname, names, defaults, factories, args, kwargs)
            self.__dict__.update(values)
        else:  # too many arguments, an unknown or a repeated one: _bind raises dataclass's TypeError
            self.__dict__.update(_bind(qualname, names, defaults, factories, args, kwargs))
        if post_init:
            self.__post_init__()

    def __repr__(self: Any) -> str:  # noqa: N807
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"

    def values(self: Any, which: tuple[str, ...] = compared) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in which])

    def __eq__(self: Any, other: object) -> Any:  # noqa: N807
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    _set(cls, "__init__", __init__)
    _set(cls, "__repr__", recursive_repr()(__repr__))
    _set(cls, "__eq__", __eq__)
    if frozen:
        def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            super(cls, self).__setattr__(name, value)  # type: ignore[arg-type]

        def __delattr__(self: Any, name: str) -> None:  # noqa: N807
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot delete field {name!r}")
            super(cls, self).__delattr__(name)  # type: ignore[arg-type]

        def __hash__(self: Any) -> int:  # noqa: N807
            return hash(values(self, hashed))

        _set(cls, "__setattr__", __setattr__)
        _set(cls, "__delattr__", __delattr__)
        if "__hash__" not in cls.__dict__ or cls.__dict__["__hash__"] is None:
            cls.__hash__ = __hash__  # type: ignore[assignment]
    elif "__hash__" not in cls.__dict__:
        cls.__hash__ = None  # type: ignore[assignment]  # eq without frozen: unhashable, as dataclass makes it
    if order:
        for name, compare in _ORDER.items():
            _set(cls, name, _comparison(name, compare, values))
    # What the standard decorator would record, so that introspection sees the class as it was declared.
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    for attribute, value in (("init", True), ("repr", True), ("eq", True), ("frozen", frozen), ("order", order)):
        if hasattr(params, attribute):
            object.__setattr__(params, attribute, value)
    cls.__signature__ = _Signature(fields)  # type: ignore[attr-defined]
    if undocumented:  # as dataclass writes it: the name and the signature
        import inspect

        cls.__doc__ = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
    return cls


_UNSET = object()


def _bind(qualname: str, names: tuple[str, ...], defaults: dict[str, Any],
          factories: dict[str, Callable[[], Any]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments to field values, with the TypeErrors the generated ``__init__`` raises."""
    if len(args) > len(names):
        required = sum(1 for name in names if name not in defaults and name not in factories)
        takes = f"{len(names) + 1}" if required == len(names) else f"from {required + 1} to {len(names) + 1}"
        raise TypeError(f"{qualname}.__init__() takes {takes} positional arguments but {len(args) + 1} were given")
    bound = dict(zip(names, args, strict=False))  # fewer arguments than fields: the rest below
    for name, value in kwargs.items():
        if name not in names:
            raise TypeError(f"{qualname}.__init__() got an unexpected keyword argument {name!r}")
        if name in bound:
            raise TypeError(f"{qualname}.__init__() got multiple values for argument {name!r}")
        bound[name] = value
    missing = [name for name in names if name not in bound and name not in defaults and name not in factories]
    if missing:
        quoted = [repr(name) for name in missing]
        listed = quoted[0] if len(quoted) == 1 else (
            f"{quoted[0]} and {quoted[1]}" if len(quoted) == 2 else f"{', '.join(quoted[:-1])}, and {quoted[-1]}")
        raise TypeError(f"{qualname}.__init__() missing {len(missing)} required positional "
                        f"argument{'s' if len(missing) > 1 else ''}: {listed}")
    for name in names:
        if name not in bound:
            bound[name] = defaults[name] if name in defaults else factories[name]()
    return {name: bound[name] for name in names}


def _set(cls: type, name: str, value: Any) -> None:
    """Add a method unless the class defines its own (as the standard decorator does)."""
    if name not in cls.__dict__:
        value.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, value)


_ORDER: dict[str, Callable[[tuple[Any, ...], tuple[Any, ...]], bool]] = {
    "__lt__": lambda a, b: a < b, "__le__": lambda a, b: a <= b,
    "__gt__": lambda a, b: a > b, "__ge__": lambda a, b: a >= b,
}


def _comparison(name: str, compare: Callable[[tuple[Any, ...], tuple[Any, ...]], bool],
                values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, Any], Any]:
    def method(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return compare(values(self), values(other))
        return NotImplemented

    method.__name__ = name
    return method


# How the generated __init__'s signature shows a default factory: <factory>.
_FACTORY = getattr(dataclasses, "_HAS_DEFAULT_FACTORY", MISSING)


class _Signature:
    """``inspect.signature(cls)``: the generated ``__init__``'s, built when first asked."""

    def __init__(self, fields: list[dataclasses.Field[Any]]) -> None:
        self._fields = fields
        self._built: Any = None

    def __get__(self, instance: Any, owner: type) -> Any:
        if self._built is None:
            import inspect

            self._built = inspect.Signature([
                inspect.Parameter(
                    f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=f.type,
                    default=f.default if f.default is not MISSING else (
                        inspect.Parameter.empty if f.default_factory is MISSING else _FACTORY
                    ),
                )
                for f in self._fields
            ], return_annotation=None)
        return self._built
