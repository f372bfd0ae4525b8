"""How a weakly held handler's owner is found, and which companions would pin it.

A subscription held weakly ends when its *owner* is collected: the
instance behind a bound method (or behind a ``functools.partial`` that
binds a method to its instance), or the handler object itself. Anything
else the subscription keeps -- a ``filter``, for instance -- must not hold
that owner strongly, or the owner never dies. :func:`method_parts` finds
the owner of method-like handlers; :func:`pins` tells whether a companion
reaches the owner through the references a callable carries (bound
``self``, closure cells, defaults, partial arguments).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["MethodParts", "method_parts", "pins"]

# How deep pins() follows references (method -> partial -> closure -> ...):
# deep enough for decorators and partials of closures, cheap at subscribe.
_PIN_DEPTH = 4
# How many objects pins() looks at in all: a companion that reaches a huge
# structure is given up on (no warning) rather than walked at subscribe time.
_PIN_BUDGET = 5_000


class MethodParts(NamedTuple):
    """A method-like callable taken apart: ``func(owner, *args, event, **keywords)``."""

    owner: object
    func: Callable[..., Any]
    args: tuple[Any, ...]
    keywords: dict[str, Any]


def method_parts(fn: object) -> MethodParts | None:
    """Split a bound method, or a partial that binds one, into owner and function.

    ``obj.method`` gives ``(obj, method, (), {})``;
    ``functools.partial(Cls.method, obj, *args, **kw)`` and
    ``functools.partial(obj.method, *args, **kw)`` give
    ``(obj, Cls.method, args, kw)`` -- the partial is a bound method in all
    but name, and is held weakly like one. ``None`` for anything else
    (functions, lambdas, partials of plain functions, callable objects).
    """
    if isinstance(fn, types.MethodType):
        if isinstance(fn.__self__, type):  # a classmethod: the class lives on
            return None
        return MethodParts(fn.__self__, fn.__func__, (), {})
    if not isinstance(fn, functools.partial):
        return None
    inner = fn.func
    if isinstance(inner, types.MethodType) and not isinstance(inner.__self__, type):
        return MethodParts(inner.__self__, inner.__func__, fn.args, dict(fn.keywords))
    if not isinstance(inner, types.FunctionType) or not fn.args:
        return None
    owner = fn.args[0]
    name = getattr(inner, "__name__", None)
    if name is None or getattr(type(owner), name, None) is not inner:
        return None  # a plain function given an object: not a method of it
    return MethodParts(owner, inner, fn.args[1:], dict(fn.keywords))


def pins(companion: object, owner: object) -> bool:
    """Whether ``companion`` holds a strong reference path to ``owner``.

    Follows a bound method's ``__self__`` and function, a partial's
    function, arguments and keywords, a function's closure cells and
    defaults, an object's attributes (``__dict__`` and slots) and the items
    of lists, tuples, sets and dicts, up to a small depth and a budget of
    objects (not into classes or modules). A ``True`` means: keeping
    ``companion`` strongly keeps ``owner`` alive.
    """
    seen: set[int] = set()
    todo: list[tuple[object, int]] = [(companion, 0)]
    while todo and len(seen) < _PIN_BUDGET:
        obj, depth = todo.pop()
        if obj is owner:
            return True
        if depth >= _PIN_DEPTH or id(obj) in seen:
            continue
        seen.add(id(obj))
        todo.extend((ref, depth + 1) for ref in _references(obj)[:_PIN_BUDGET])
    return False


def _references(obj: object) -> list[object]:
    """The references of a callable that pins() follows."""
    if isinstance(obj, types.MethodType):
        return [obj.__self__, obj.__func__]
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if isinstance(obj, types.FunctionType):
        refs: list[object] = [*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
        for cell in obj.__closure__ or ():
            try:
                refs.append(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None:
            refs.append(wrapped)
        return refs
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, type | types.ModuleType | str | bytes | int | float):
        return []
    return _attributes(obj)


def _attributes(obj: object) -> list[object]:
    """An object's instance attributes: its ``__dict__`` values and filled slots."""
    refs: list[object] = []
    try:
        state = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        state = None
    if isinstance(state, dict):
        refs.extend(state.values())
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            try:
                refs.append(object.__getattribute__(obj, name))
            except AttributeError:  # an unset slot
                continue
    return refs
