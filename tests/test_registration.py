"""Declarative registration: @bus.on / bus.off, @handles and subscribe_component."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, cast

import pytest

from atlas_events import Event, EventBus, EventType, handles
from atlas_events.exceptions import InvalidEventTypeError, InvalidHandlerError

from .conftest import Color, collect


def test_on_returns_the_function_unchanged_and_subscribes(bus: EventBus) -> None:
    """@bus.on subscribes the function and hands it back as it was (still callable)."""
    seen: list[Any] = []

    def record(event: Event[Any]) -> None:
        seen.append(event.data)

    decorated = bus.on(EventType.TASK_STARTED)(record)
    assert decorated is record
    bus.publish(EventType.TASK_STARTED, 1)
    record(Event.create(EventType.TASK_STARTED, 2))  # still a plain function
    assert seen == [1, 2]


def test_on_passes_subscribe_options(bus: EventBus) -> None:
    """filter= and once= given to @bus.on apply to the subscription."""
    seen: list[Any] = []

    @bus.on(Color.RED, filter=lambda e: e.data > 0, once=True)
    def positive(event: Event[Any]) -> None:
        seen.append(event.data)

    for value in (-1, 5, 6):
        bus.publish(Color.RED, value)
    assert seen == [5]
    assert bus.subscriber_count(Color.RED) == 0


def test_off_unsubscribes_a_decorated_function(bus: EventBus) -> None:
    """bus.off(type, fn) ends fn's subscriptions to that type and counts them."""
    seen: list[Any] = []

    @bus.on(EventType.TASK_STARTED)
    @bus.on(EventType.TASK_COMPLETED)
    def record(event: Event[Any]) -> None:
        seen.append(event.type)

    assert bus.off(EventType.TASK_STARTED, record) == 1
    assert bus.off(EventType.TASK_STARTED, record) == 0
    bus.publish(EventType.TASK_STARTED)
    bus.publish(EventType.TASK_COMPLETED)
    assert seen == [EventType.TASK_COMPLETED]


def test_off_finds_bound_methods_and_policy_wrapped_handlers(bus: EventBus) -> None:
    """off() matches a bound method (weak) and a handler wrapped by a policy option."""

    class Worker:
        def handle(self, event: Event[Any]) -> None:
            pass

    w = Worker()
    bus.subscribe(EventType.TASK_STARTED, w.handle, max_failures=3)
    bus.subscribe(EventType.TASK_STARTED, w.handle)

    def plain(event: Event[Any]) -> None:
        pass

    bus.subscribe(EventType.TASK_STARTED, plain, slow_threshold=1.0)
    assert bus.off(EventType.TASK_STARTED, w.handle) == 2
    assert bus.off(EventType.TASK_STARTED, plain) == 1
    assert bus.subscriber_count() == 0


def test_on_rejects_bad_type_and_unknown_options_at_once(bus: EventBus) -> None:
    """A bad event type or an option subscribe() lacks fails when bus.on() is called."""
    with pytest.raises(InvalidEventTypeError):
        bus.on(cast(Any, "task.started"))
    with pytest.raises(TypeError, match="colour"):
        bus.on(EventType.TASK_STARTED, colour="red")
    assert bus.subscriber_count() == 0


class Planner:
    """A component with marked handlers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    @handles(EventType.TASK_STARTED)
    def on_start(self, event: Event[Any]) -> None:
        self.seen.append(("start", event.data))

    @handles(EventType.TASK_COMPLETED, EventType.TASK_FAILED)
    def on_end(self, event: Event[Any]) -> None:
        self.seen.append(("end", event.data))

    @handles(Color.RED, filter=lambda e: e.data == "keep")
    def on_red(self, event: Event[Any]) -> None:
        self.seen.append(("red", event.data))

    def not_marked(self, event: Event[Any]) -> None:
        self.seen.append(("never", event.data))


def test_component_subscribes_every_marked_method_with_one_token(bus: EventBus) -> None:
    """subscribe_component wires each @handles method; the one token removes them all."""
    p = Planner()
    token = bus.subscribe_component(p)
    assert token.active
    bus.publish(EventType.TASK_STARTED, 1)
    bus.publish(EventType.TASK_FAILED, 2)
    bus.publish(Color.RED, "drop")
    bus.publish(Color.RED, "keep")
    assert p.seen == [("start", 1), ("end", 2), ("red", "keep")]
    assert bus.subscriber_count() == 4
    assert token() is True
    assert token() is False
    assert not token.active
    assert bus.subscriber_count() == 0


def test_component_is_held_weakly(bus: EventBus) -> None:
    """A component's subscriptions end when it is garbage-collected."""
    p = Planner()
    token = bus.subscribe_component(p)
    del p
    collect()
    bus.publish(EventType.TASK_STARTED, 1)
    assert bus.subscriber_count() == 0
    assert not token.active


def test_component_inherits_and_overrides_marks(bus: EventBus) -> None:
    """Marks are inherited; an override without @handles is not subscribed."""

    class Quiet(Planner):
        def on_start(self, event: Event[Any]) -> None:  # no mark: not a handler
            self.seen.append(("quiet", event.data))

    q = Quiet()
    bus.subscribe_component(q)
    bus.publish(EventType.TASK_STARTED, 1)
    bus.publish(EventType.TASK_COMPLETED, 2)
    assert q.seen == [("end", 2)]


def test_component_with_async_handler(bus: EventBus) -> None:
    """An async marked method subscribed before any loop runs is awaited on the dispatching loop."""

    class AsyncComponent:
        def __init__(self) -> None:
            self.seen: list[Any] = []

        @handles(EventType.TASK_STARTED)
        async def on_start(self, event: Event[Any]) -> None:
            await asyncio.sleep(0)
            self.seen.append(event.data)

    component = AsyncComponent()
    bus.subscribe_component(component)

    async def main() -> None:
        await bus.publish_async(EventType.TASK_STARTED, "a", timeout=10)

    asyncio.run(main())
    assert component.seen == ["a"]


def test_component_registration_is_all_or_nothing(bus: EventBus) -> None:
    """If one marked method is refused, the ones already subscribed are undone."""

    class Broken:
        @handles(EventType.TASK_STARTED)
        def fine(self, event: Event[Any]) -> None:
            pass

        @handles(EventType.TASK_COMPLETED, timeout=1.0)  # timeout= needs an async handler
        def bad(self, event: Event[Any]) -> None:
            pass

    with pytest.raises(ValueError, match="timeout"):
        bus.subscribe_component(Broken())
    assert bus.subscriber_count() == 0


def test_component_errors(bus: EventBus) -> None:
    """No marks, unweakreferenceable components and bad marks are refused clearly."""
    with pytest.raises(ValueError, match="no methods marked"):
        bus.subscribe_component(object())

    class Slotted:
        __slots__ = ()

        @handles(EventType.TASK_STARTED)
        def on(self, event: Event[Any]) -> None:
            pass

    with pytest.raises(InvalidHandlerError, match="weakly"):
        bus.subscribe_component(Slotted())
    with pytest.raises(TypeError, match="at least one"):
        handles()
    with pytest.raises(TypeError, match="weak"):
        handles(EventType.TASK_STARTED, weak=False)
    with pytest.raises(InvalidEventTypeError):
        handles("task.started")  # type: ignore[arg-type]
    assert bus.subscriber_count() == 0


def test_component_on_a_scope(bus: EventBus) -> None:
    """Components can be subscribed on a ScopedEventBus."""
    scope = bus.scope("agents")
    p = Planner()
    with scope.subscribe_component(p):
        scope.publish(EventType.TASK_STARTED, "s")
    scope.publish(EventType.TASK_STARTED, "after")
    assert p.seen == [("start", "s")]


def test_on_and_off_on_a_scope(bus: EventBus) -> None:
    """@scope.on and scope.off work on a ScopedEventBus; the root is unaffected."""
    scope = bus.scope("agents")
    seen: list[Any] = []

    @scope.on(EventType.AGENT_STARTED)
    def record(event: Event[Any]) -> None:
        seen.append(event.scope)

    scope.publish(EventType.AGENT_STARTED)
    bus.publish(EventType.AGENT_STARTED)  # the root's events do not go down
    assert seen == [("agents",)]
    assert bus.off(EventType.AGENT_STARTED, record) == 0
    assert scope.off(EventType.AGENT_STARTED, record) == 1


def test_handles_on_a_staticmethod_or_classmethod_object_is_refused() -> None:
    """@handles over @staticmethod/@classmethod raises TypeError naming the kind, at once."""
    for kind in (staticmethod, classmethod):
        with pytest.raises(TypeError, match=kind.__name__):
            handles(EventType.TASK_STARTED)(cast(Any, kind(print)))


def test_component_refuses_marked_static_and_class_methods(bus: EventBus) -> None:
    """A marked staticmethod/classmethod cannot be held by the component: TypeError, nothing added.

    Before, a marked classmethod was subscribed dead (a weak reference to a
    throwaway bound method), and a marked staticmethod outlived the component.
    """

    class WithStatic:
        @handles(EventType.TASK_STARTED)
        def fine(self, event: Event[Any]) -> None:
            pass

        @staticmethod
        @handles(EventType.TASK_COMPLETED)
        def st(event: Event[Any]) -> None:
            pass

    class WithClassMethod:
        @classmethod
        @handles(EventType.TASK_COMPLETED)
        def cm(cls, event: Event[Any]) -> None:
            pass

    with pytest.raises(TypeError, match=r"WithStatic\.st.*staticmethod"):
        bus.subscribe_component(WithStatic())
    with pytest.raises(TypeError, match=r"WithClassMethod\.cm.*classmethod"):
        bus.subscribe_component(WithClassMethod())
    assert bus.subscriber_count() == 0


def test_component_token_twice_and_after_collection(bus: EventBus) -> None:
    """The token ends all handlers once (True, then False), and is inactive once collected."""

    class Comp:
        @handles(EventType.TASK_STARTED, EventType.TASK_COMPLETED)
        def on(self, event: Event[Any]) -> None:
            pass

    token = bus.subscribe_component(Comp())  # no other reference: collected at once
    collect()
    assert not token.active
    assert token() is False
    assert bus.subscriber_count() == 0
    kept = Comp()
    token = bus.subscribe_component(kept)
    assert bus.subscriber_count() == 2
    assert token() is True
    assert token() is False
    assert bus.subscriber_count() == 0


def test_off_finds_a_partial_binding_a_method(bus: EventBus) -> None:
    """off() with the partial that was subscribed ends it, with or without a policy."""

    class Worker:
        def handle(self, tag: str, event: Event[Any]) -> None:
            pass

    w = Worker()
    bound = functools.partial(Worker.handle, w, "a")
    bus.subscribe(EventType.TASK_STARTED, bound)
    bus.subscribe(EventType.TASK_STARTED, bound, slow_threshold=5.0)
    bus.subscribe(EventType.TASK_STARTED, functools.partial(Worker.handle, w, "other"))
    assert bus.off(EventType.TASK_STARTED, bound) == 2
    assert bus.subscriber_count() == 1
