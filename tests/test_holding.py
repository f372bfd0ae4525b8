"""Tests for _holding: finding a weak handler's owner and the companions that pin it."""

from __future__ import annotations

import functools
from typing import Any

from atlas_events._holding import MethodParts, method_parts, pins


class Owner:
    """A component with methods to bind."""

    def handle(self, e: Any) -> None:
        pass

    def tagged(self, tag: str, e: Any, *, loud: bool = False) -> None:
        pass

    @classmethod
    def make(cls, e: Any) -> None:
        pass


def free(owner: Owner, e: Any) -> None:
    """A plain function that takes an owner: not a method of it."""


def test_method_parts_of_bound_methods_and_method_partials() -> None:
    """Bound methods and partials binding a method to its instance give owner and function."""
    o = Owner()
    assert method_parts(o.handle) == MethodParts(o, Owner.handle, (), {})
    assert method_parts(functools.partial(Owner.handle, o)) == MethodParts(o, Owner.handle, (), {})
    parts = method_parts(functools.partial(o.tagged, "t", loud=True))
    assert parts == MethodParts(o, Owner.tagged, ("t",), {"loud": True})


def test_method_parts_refuses_what_is_not_a_method_of_its_object() -> None:
    """Functions, classmethods, partials of free functions and empty partials give None."""
    o = Owner()
    assert method_parts(free) is None
    assert method_parts(Owner.make) is None  # bound to the class, which outlives us
    assert method_parts(functools.partial(free, o)) is None
    assert method_parts(functools.partial(Owner.handle)) is None
    assert method_parts(functools.partial(Owner.make, o)) is None
    assert method_parts(lambda e: None) is None


def test_pins_follows_closures_defaults_partials_and_wrappers() -> None:
    """The pinning check sees the owner through the references a callable carries."""
    owner = Owner()

    def by_default(e: object, o: object = owner) -> bool:
        return True

    def by_kwdefault(e: object, *, o: object = owner) -> bool:
        return True

    @functools.wraps(by_default)
    def wrapper(e: object) -> bool:
        return True

    assert pins(lambda e: owner, owner)
    assert pins(by_default, owner)
    assert pins(by_kwdefault, owner)
    assert pins(functools.partial(print, owner), owner)
    assert pins(functools.partial(print, key=owner), owner)
    assert pins(wrapper, owner)
    assert pins(owner.handle, owner)
    assert not pins(lambda e: True, owner)
    assert not pins(Owner().handle, owner)


def test_pins_stops_at_its_depth_and_survives_cycles_and_empty_cells() -> None:
    """Deeply nested references are not followed forever; an empty cell is skipped."""
    owner = Owner()
    deep: Any = owner
    for _ in range(10):
        deep = functools.partial(print, deep)
    assert not pins(deep, owner)

    def make() -> Any:
        def inner(e: object) -> object:
            return later  # noqa: F821 - a local of make(), deleted below: an empty cell

        empty_cell = inner
        later = None  # assigned after: inner's cell is filled only now...
        del later  # ...and emptied again
        return empty_cell

    assert not pins(make(), owner)

    def cyclic(e: object) -> object:
        return cyclic

    assert not pins(cyclic, owner)


class Helper:
    """An object the owner hands out, keeping a reference back to it."""

    def __init__(self, owner: object) -> None:
        self.owner = owner

    def wants(self, e: Any) -> bool:
        return True


class SlottedHelper:
    """The same, with __slots__ instead of a __dict__."""

    __slots__ = ("owner",)

    def __init__(self, owner: object) -> None:
        self.owner = owner

    def wants(self, e: Any) -> bool:
        return True


def test_pins_follows_attributes_and_containers() -> None:
    """A helper's attribute, a slot, or a list/dict/tuple captured by a filter pins the owner.

    Before, only methods, partials, closures and defaults were followed, so
    these companions kept a "weak" subscription's owner alive silently.
    """
    owner = Owner()
    assert pins(Helper(owner).wants, owner)
    assert pins(SlottedHelper(owner).wants, owner)
    box = [owner]
    assert pins(lambda e, box=box: True, owner)
    table = {"me": owner}
    assert pins(lambda e: table["me"] is e, owner)
    assert pins(functools.partial(print, ("a", (owner,))), owner)
    keyed = {owner: 1}
    assert pins(lambda e, keyed=keyed: True, owner)


def test_pins_is_bounded_on_large_structures() -> None:
    """A companion reaching a huge unrelated structure is checked quickly, without a warning."""
    owner = Owner()
    big = [[i] for i in range(200_000)]
    assert not pins(lambda e, big=big: True, owner)
    assert not pins(Helper(big).wants, owner)
    assert not pins(Helper(Owner).wants, owner)  # a class is not followed into
