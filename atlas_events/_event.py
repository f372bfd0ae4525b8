"""The immutable ``Event[T]``, the core ``EventType`` enum and typed event keys."""

from __future__ import annotations

import builtins
import enum
import math
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Generic, TypeVar, final, overload

import attrs

from ._context import read_context
from ._ids import new_id
from .exceptions import InvalidEventTypeError

__all__ = [
    "ANY",
    "EMPTY_METADATA",
    "Event",
    "EventKey",
    "EventType",
    "MemberMap",
    "copy_event",
    "declare",
    "in_context",
    "trusted_event",
]

T = TypeVar("T")


class EventType(enum.StrEnum):
    """Core lifecycle event types.

    A ``StrEnum``: members hash as fast as strings (the bus looks
    them up in a dict on every publish); members still compare by identity
    with each other, and the bus never accepts a plain string as a type.
    Members of any other :class:`enum.Enum` are accepted as event types too.
    """

    SYSTEM_INIT = "system.init"
    SYSTEM_SHUTDOWN = "system.shutdown"
    PROVIDER_CREATED = "provider.created"
    PROVIDER_CONNECTED = "provider.connected"
    PROVIDER_DISCONNECTED = "provider.disconnected"
    STREAM_STARTED = "stream.started"
    STREAM_FINISHED = "stream.finished"
    AGENT_STARTED = "agent.started"
    AGENT_STOPPED = "agent.stopped"
    TASK_STARTED = "task.started"
    TASK_COMPLETED = "task.completed"
    TASK_FAILED = "task.failed"
    WORKFLOW_NODE_ENTERED = "workflow.node_entered"
    WORKFLOW_NODE_EXITED = "workflow.node_exited"
    HANDLER_ERROR = "handler.error"
    HANDLER_REMOVED = "handler.removed"
    BRIDGE_CONNECTED = "bridge.connected"
    BRIDGE_DISCONNECTED = "bridge.disconnected"
    BRIDGE_RECONNECTED = "bridge.reconnected"
    BRIDGE_FAILED = "bridge.failed"
    BRIDGE_DEAD_LETTERED = "bridge.dead_lettered"
    BRIDGE_EVENTS_LOST = "bridge.events_lost"
    BRIDGE_HANDLER_EXIT = "bridge.handler_exit"

    def __repr__(self) -> str:
        return f"EventType.{self.name}"


@final
class _AnyType(enum.Enum):
    """The type of :data:`ANY` (an enum so it hashes and pickles cleanly)."""

    ANY = "*"

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _AnyType.ANY
"""Subscribe with ``ANY`` to receive events of every type."""

EMPTY_METADATA: Final[Mapping[str, Any]] = MappingProxyType({})


@attrs.define(slots=True, eq=False, repr=False, init=True)
class _EventFields(Generic[T]):
    """The storage layout of :class:`Event`, with a fast, mutable ``__init__``.

    The bus builds events with this class's plain ``__init__`` and then turns
    them into frozen :class:`Event` instances (the two share one slot layout),
    which costs a quarter of a frozen attrs ``__init__``. Never exposed.
    """

    id: str
    type: enum.Enum
    data: T
    timestamp: float
    source: str | None
    metadata: Mapping[str, Any]
    scope: tuple[str, ...]
    parent_id: str | None
    seq: int
    correlation_id: str | None
    origin: str | None


def _check_type(_inst: object, _attr: object, value: object) -> None:
    if not isinstance(value, enum.Enum) or value is ANY:
        raise InvalidEventTypeError(value, allow_any=False)


@attrs.frozen(slots=True, repr=True, eq=False, field_transformer=None)
class Event(_EventFields[T]):
    """An immutable event.

    Attributes:
        id: Unique id (per process and across processes).
        type: An :class:`EventType` or a member of any user ``Enum``.
        data: The payload (``None`` when there is none; ``Event[None]``).
        timestamp: Creation time, epoch seconds.
        source: Optional name of the component that published it.
        metadata: Read-only mapping of extra information.
        scope: Scope path the event was published in, ``()`` on a root bus;
            ``("agents", "planner")`` for a bus two levels down.
        parent_id: Id of the event whose handler published this one
            (causation), else ``None``.
        seq: Position in the recording bus's history (monotonic per bus);
            ``-1`` until a bus records it, so middleware sees ``-1``.
        correlation_id: The run / request this event belongs to, if any.
        origin: ``None`` for events published in this process; the origin
            node's id for events received through a bridge.

    Events are normally created by :meth:`EventBus.publish`; build one
    directly (and send it with :meth:`EventBus.publish_event`) with
    :meth:`Event.create`. Use :func:`attrs.evolve` to derive a changed copy
    (e.g. in middleware).

    Identity: an event *is* its :attr:`id`. Two events are equal exactly
    when their ids are equal, and ``hash(event) == hash(event.id)``, so
    events work in sets and as dict keys whatever their payload. The copies
    of one event recorded at several scope levels (or received through a
    bridge) share the id and differ only in ``seq`` / ``scope`` / ``origin``:
    they are equal, and a set keeps one of them. A middleware's changed copy
    (:func:`attrs.evolve`) keeps the id, so it equals the original; compare
    fields (``a.data == b.data``) to tell such copies apart.
    """

    def __attrs_post_init__(self) -> None:
        _check_type(self, None, self.type)
        _check_fields(self)
        if not isinstance(self.metadata, MappingProxyType):
            object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        if not isinstance(self.scope, tuple):
            object.__setattr__(self, "scope", tuple(self.scope))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Event):
            return self.id == other.id
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if isinstance(other, Event):
            return self.id != other.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    @overload
    @classmethod
    def create(
        cls,
        event_type: enum.Enum,
        data: None = None,
        *,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> Event[None]: ...

    @overload
    @classmethod
    def create(
        cls,
        event_type: enum.Enum,
        data: T,
        *,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> Event[T]: ...

    @classmethod
    def create(
        cls,
        event_type: enum.Enum,
        data: Any = None,
        *,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
    ) -> Event[Any]:
        """Build a new, unrecorded event with a fresh id and timestamp.

        Inside a :func:`correlate` block the event carries the block's
        correlation id, and inside a handler the id of the event being
        handled as its ``parent_id`` -- as :meth:`EventBus.publish` would
        give them -- unless ``correlation_id`` is passed. Its :attr:`id` is
        known at once, before any handler runs (see the request/reply
        pattern in ``docs/guide.md``).

        Args:
            event_type: An enum member (not :data:`ANY`).
            data: The payload.
            source: Name of the publishing component, or ``None``.
            metadata: Extra information (copied into a read-only mapping).
            correlation_id: The run this event belongs to (a non-empty
                ``str``); default: the enclosing ``correlate`` block's.

        Returns:
            An unrecorded event (``seq == -1``, ``scope == ()``).

        Raises:
            InvalidEventTypeError: ``event_type`` is not an enum member.
            TypeError: ``source``, ``metadata`` or ``correlation_id`` has the
                wrong type.
            ValueError: ``correlation_id`` is empty.
        """
        if not isinstance(event_type, enum.Enum) or event_type is ANY:
            raise InvalidEventTypeError(event_type, allow_any=False)
        if source is not None and not isinstance(source, str):
            raise TypeError(f"source must be a str or None, got {type(source).__name__}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
        ctx = read_context()
        parent_id = None
        if ctx is not None:
            parent_id = ctx[0]
            if correlation_id is None:
                correlation_id = ctx[2]
        if correlation_id is not None:
            _check_correlation_id(correlation_id)
        return trusted_event(
            new_id(),
            event_type,
            data,
            time.time(),
            source,
            EMPTY_METADATA if not metadata else MappingProxyType(dict(metadata)),
            (),
            parent_id,
            -1,
            correlation_id,
            None,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The read-only metadata proxy cannot be pickled: send a dict.
        return (
            _unpickle_event,
            (
                self.id,
                self.type,
                self.data,
                self.timestamp,
                self.source,
                dict(self.metadata),
                self.scope,
                self.parent_id,
                self.seq,
                self.correlation_id,
                self.origin,
            ),
        )

    @property
    def is_remote(self) -> bool:
        """``True`` when the event arrived through a bridge from another node."""
        return self.origin is not None

    @property
    def type_name(self) -> str:
        """The event type as a readable ``Enum.MEMBER`` string."""
        t = self.type
        return f"{type(t).__name__}.{t.name}"


# Fast construction (see _EventFields): plain __init__, then a class swap.
_SEQ_SET = _EventFields.__dict__["seq"].__set__
_new = object.__new__
_KEEP: Any = object()  # "keep the event's own value" in copy_event


V = TypeVar("V")


class MemberMap(Generic[V]):
    """A mapping keyed by enum members *by identity*.

    Members of ``IntEnum`` / ``StrEnum`` (and other mixin enums) hash and
    compare by value, so in a plain dict ``A.X`` and ``B.Y`` with equal values
    share a key. Every registry keyed by event type uses this instead.
    """

    __slots__ = ("by_id",)

    def __init__(self) -> None:
        # Public for the publish loop, which truth-tests it without a Python
        # call (``__len__`` would cost one per publish); read it, never write it.
        self.by_id: dict[int, tuple[enum.Enum, V]] = {}

    def get(self, member: enum.Enum) -> V | None:
        item = self.by_id.get(id(member))
        return item[1] if item is not None and item[0] is member else None

    def __setitem__(self, member: enum.Enum, value: V) -> None:
        self.by_id[id(member)] = (member, value)  # holds the member: its id stays unique

    def __contains__(self, member: object) -> bool:
        item = self.by_id.get(id(member))
        return item is not None and item[0] is member

    def __len__(self) -> int:
        return len(self.by_id)

    def items(self) -> list[tuple[enum.Enum, V]]:
        """A snapshot of the ``(member, value)`` pairs."""
        return list(self.by_id.values())

    def clear(self) -> None:
        self.by_id.clear()


def trusted_event(
    event_id: str,
    event_type: enum.Enum,
    data: Any,
    timestamp: float,
    source: str | None,
    metadata: Mapping[str, Any],
    scope: tuple[str, ...],
    parent_id: str | None,
    seq: int,
    correlation_id: str | None,
    origin: str | None,
) -> Event[Any]:
    """Build an :class:`Event` from fields the caller has already validated.

    Skips the frozen ``__init__`` and its checks: the mutable layout is
    filled positionally and the class swapped (see :class:`_EventFields`).
    ``metadata`` must already be read-only.
    """
    ev = _EventFields(
        event_id,
        event_type,
        data,
        timestamp,
        source,
        metadata,
        scope,
        parent_id,
        seq,
        correlation_id,
        origin,
    )
    ev.__class__ = Event
    return ev  # type: ignore[return-value]


def _unpickle_event(
    event_id: str,
    event_type: enum.Enum,
    data: Any,
    timestamp: float,
    source: str | None,
    metadata: dict[str, Any],
    *rest: Any,
) -> Event[Any]:
    # Pickled with a plain dict for metadata: make it read-only again.
    frozen = MappingProxyType(metadata) if metadata else EMPTY_METADATA
    return trusted_event(event_id, event_type, data, timestamp, source, frozen, *rest)


def copy_event(
    ev: Event[Any],
    seq: int,
    *,
    scope: tuple[str, ...] | None = None,
    correlation_id: str | None = _KEEP,
    parent_id: str | None = _KEEP,
) -> Event[Any]:
    """Return a copy of ``ev`` recorded at ``seq`` (and moved to ``scope``).

    Skips validation: ``ev`` is already a valid event. Every scope level an
    event is forwarded through records such a copy, so it is filled slot by
    slot (no ``__init__`` frame), like :meth:`EventBus.publish` builds events.
    ``correlation_id`` / ``parent_id``, when given, replace the event's own.
    """
    new: _EventFields[Any] = _new(_EventFields)
    new.id = ev.id
    new.type = ev.type
    new.data = ev.data
    new.timestamp = ev.timestamp
    new.source = ev.source
    new.metadata = ev.metadata
    new.scope = ev.scope if scope is None else scope
    new.parent_id = ev.parent_id if parent_id is _KEEP else parent_id
    new.seq = seq
    new.correlation_id = ev.correlation_id if correlation_id is _KEEP else correlation_id
    new.origin = ev.origin
    new.__class__ = Event
    return new  # type: ignore[return-value]


def in_context(event: Event[Any]) -> Event[Any]:
    """``event``, tagged with the current correlation id and cause where it has none.

    What :meth:`EventBus.publish_event` applies to a prebuilt event, so that
    an event built outside a :func:`correlate` block (or outside the handler
    that publishes it) joins the run and the causal chain it is published
    in. Returns ``event`` itself when there is nothing to add.
    """
    ctx = read_context()
    if ctx is None:
        return event
    parent_id, cid = ctx[0], ctx[2]
    add_cid = event.correlation_id is None and cid is not None
    add_parent = event.parent_id is None and parent_id is not None and parent_id != event.id
    if not (add_cid or add_parent):
        return event
    return copy_event(
        event,
        event.seq,
        correlation_id=cid if add_cid else event.correlation_id,
        parent_id=parent_id if add_parent else event.parent_id,
    )


def _check_correlation_id(value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"correlation_id must be a str or None, got {type(value).__name__}")
    if not value:
        raise ValueError("correlation_id must be a non-empty str")


def _check_fields(ev: _EventFields[Any]) -> None:
    """Validate the fields of an event built with the public constructor.

    Each check tests the common exact type first (a float timestamp, a
    ``MappingProxyType``, an empty scope), so a valid event costs a few
    identity tests (``publish_event``, the bridges' inbound path).
    """
    if type(ev.id) is not str or not ev.id:
        _check_id(ev.id)
    ts = ev.timestamp
    if type(ts) is not float or not math.isfinite(ts):
        _check_timestamp(ts)
    _check_optional_str("source", ev.source)
    _check_optional_str("parent_id", ev.parent_id)
    _check_optional_str("origin", ev.origin)
    if ev.correlation_id is not None:
        _check_correlation_id(ev.correlation_id)
    if type(ev.metadata) is not MappingProxyType and not isinstance(ev.metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(ev.metadata).__name__}")
    scope = ev.scope
    if scope and (type(scope) is not tuple or not all(type(part) is str for part in scope)):
        _check_scope(scope)
    seq = ev.seq
    if type(seq) is not int or seq < -1:
        _check_seq(seq)


def _check_id(value: object) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"id must be a non-empty str, got {value!r}")


def _check_scope(scope: Any) -> None:
    if isinstance(scope, str) or not all(isinstance(part, str) for part in scope):
        raise TypeError(f"scope must be a tuple of str, got {scope!r}")


def _check_seq(seq: object) -> None:
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < -1:
        raise ValueError(f"seq must be an int >= -1, got {seq!r}")


def _check_timestamp(ts: object) -> None:
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise ValueError(f"timestamp must be a finite number of epoch seconds, got {ts!r}")


def _check_optional_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")


@final
@attrs.frozen(slots=True)
class EventKey(Generic[T]):
    """An event type bound to a payload class, for type-checked publishing.

    Create one with :func:`declare`. Publishing through the key makes ``mypy``
    check the payload, and the bus checks it at run time too::

        TASK_DONE = declare(EventType.TASK_COMPLETED, TaskResult)
        bus.publish(TASK_DONE, TaskResult(...))      # ok
        bus.publish(TASK_DONE, "oops")               # mypy error, and TypeError
        bus.subscribe(TASK_DONE, on_done)            # on_done(Event[TaskResult])

    Attributes:
        type: The underlying enum member.
        payload: The payload class.
    """

    type: enum.Enum
    payload: builtins.type[T]

    def __repr__(self) -> str:
        return f"EventKey({self.type!r}, {getattr(self.payload, '__qualname__', self.payload)})"


def declare(event_type: enum.Enum, payload: type[T]) -> EventKey[T]:
    """Bind ``event_type`` to ``payload`` and return a typed :class:`EventKey`.

    Pass the key to :meth:`EventBus.declare` as well to have the bus check
    payloads published with the bare enum member.

    Raises:
        InvalidEventTypeError: ``event_type`` is not an enum member.
        TypeError: ``payload`` is not a class.
    """
    if not isinstance(event_type, enum.Enum) or event_type is ANY:
        raise InvalidEventTypeError(event_type, allow_any=False)
    if not isinstance(payload, type):
        raise TypeError(f"payload must be a class, got {payload!r}")
    return EventKey(event_type, payload)
