"""Tests for _returns: which handlers can only return None (judged from bytecode)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from atlas_events import Event, EventBus, EventType
from atlas_events._receivers import CHECK_RESULT
from atlas_events._returns import returns_only_none

ET = EventType


def _implicit(e: object) -> None:
    print(e)


def _explicit(e: object) -> None:
    if e is None:
        return None
    print(e)
    return


def _handled(e: object) -> None:
    try:
        print(e)
    except ValueError:
        return
    finally:
        print("done")


def _value(e: object) -> object:
    return e


def _maybe(e: object) -> object:
    return e if e else None  # a jump brings a value to the return


def _in_finally(e: object) -> object:
    try:
        return e
    finally:
        print("done")


def _gen(e: object) -> Iterator[object]:
    yield e


async def _coro(e: object) -> None:
    return None


class _Callable:
    def __call__(self, e: object) -> None:
        return None

    def method(self, e: object) -> None:
        return None


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (_implicit, True),
        (_explicit, True),
        (_handled, True),
        (lambda e: None, True),
        (_value, False),
        (lambda e: e, False),
        (_maybe, False),
        (_in_finally, False),
        (_gen, False),
        (_coro, False),
        (functools.partial(_implicit), False),  # not a plain function: not judged
        (print, False),
        ([].append, False),
        (_Callable(), False),
        (_Callable().method, False),
    ],
)
def test_only_plain_functions_returning_none_everywhere_qualify(
    fn: Callable[..., Any], expected: bool
) -> None:
    """Anything that could return a value, or that is not a plain function, is False."""
    assert returns_only_none(fn) is expected


def test_the_judgement_is_kept_per_code_object() -> None:
    """Two closures of one code object are judged once and alike."""

    def make() -> Callable[[object], None]:
        def handler(e: object) -> None:
            print(e)

        return handler

    assert returns_only_none(make())
    assert returns_only_none(make())


def test_entries_skip_the_result_only_for_handlers_that_return_nothing() -> None:
    """A handler that may return a value keeps the loop's look at its result."""
    bus = EventBus()
    bus.subscribe(ET.TASK_STARTED, _implicit)
    bus.subscribe(ET.TASK_STARTED, _value)
    entries = list(bus._registry.route_for(ET.TASK_STARTED))
    assert entries == [[_implicit, None], [_value, CHECK_RESULT]]
    bus.close()


def test_a_def_handler_that_returns_a_coroutine_is_still_scheduled() -> None:
    """Returning an awaitable from some calls only: judged 'may return', so never dropped."""
    ran: list[str] = []

    async def save(e: Event[Any]) -> None:
        ran.append(e.id)

    def handler(e: Event[Any]) -> object:
        if e.data == "async":
            return save(e)
        return None

    async def main() -> list[str]:
        bus = EventBus()
        bus.subscribe(ET.TASK_STARTED, handler)
        bus.publish(ET.TASK_STARTED, "sync")
        eid = bus.publish(ET.TASK_STARTED, "async")
        for _ in range(10):
            await asyncio.sleep(0)
        bus.close()
        return [eid]

    assert asyncio.run(main()) == ran


def test_a_scoped_chain_skips_and_checks_alike() -> None:
    """Forwarded deliveries (the ancestors' inlined loop) follow the same entries."""
    got: list[str] = []

    async def save(e: Event[Any]) -> None:
        got.append("async")

    async def main() -> None:
        root = EventBus()
        root.subscribe(ET.TASK_STARTED, lambda e: save(e))
        root.subscribe(ET.TASK_STARTED, lambda e: got.append("sync"))
        child = root.scope("a")
        child.publish(ET.TASK_STARTED)
        for _ in range(10):
            await asyncio.sleep(0)
        root.close()

    asyncio.run(main())
    assert sorted(got) == ["async", "sync"]
