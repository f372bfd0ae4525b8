"""Exceptions raised by atlas-events.

Every exception derives from :class:`AtlasEventsError` *and* from the builtin
that best describes the mistake, so callers can catch either
``AtlasEventsError`` or the familiar builtin (``TypeError``, ``ValueError``,
``RuntimeError``...). Each carries the context needed to act on it as
attributes.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "AtlasEventsError",
    "BridgeConnectionError",
    "BusClosedError",
    "CodecError",
    "HandlerError",
    "HandlerLoopError",
    "HandlerTimeoutError",
    "InvalidEventTypeError",
    "InvalidHandlerError",
    "InvalidMiddlewareResultError",
    "InvalidOptionError",
    "MiddlewareError",
    "OutboxFullError",
    "PayloadTooLargeError",
    "PayloadTypeError",
    "RecursionDepthError",
    "ScopeError",
    "StreamClosedError",
    "SubscriptionLeakWarning",
    "UnregisteredTypeError",
]


_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 120


def _describe(value: object) -> str:
    """``repr(value)`` for an error message: shortened, and never raising.

    A huge list passed by mistake does not become a megabyte-long message,
    and an object whose ``__repr__`` raises does not replace the error.
    """
    return _REPR.repr(value)


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "(str() of the exception failed)"


class AtlasEventsError(Exception):
    """Base class of every exception raised by atlas-events."""


class BusClosedError(AtlasEventsError, RuntimeError):
    """The bus was closed; it accepts no more events or subscriptions.

    Attributes:
        bus_name: A readable name of the closed bus (its scope path).
    """

    def __init__(self, bus_name: str, action: str = "publish") -> None:
        super().__init__(f"cannot {action}: event bus {bus_name!r} is closed")
        self.bus_name = bus_name
        self.action = action


class InvalidEventTypeError(AtlasEventsError, TypeError):
    """An event type was not a member of an :class:`enum.Enum` (or ``ANY``).

    Attributes:
        value: The rejected value.
    """

    def __init__(self, value: object, *, allow_any: bool = True, hint: str | None = None) -> None:
        expected = "an Enum member (EventType.X or a member of your own Enum)"
        if allow_any:
            expected += " or atlas_events.ANY"
        super().__init__(
            f"event type must be {expected}, got {_describe(value)} ({type(value).__name__})"
            + (f"; {hint}" if hint else "")
        )
        self.value = value


class InvalidHandlerError(AtlasEventsError, TypeError):
    """A handler, filter or middleware was not usable as given.

    Attributes:
        value: The rejected object.
        role: What it was meant to be (``"handler"``, ``"filter"``, ``"middleware"``...).
    """

    def __init__(self, value: object, role: str, reason: str | None = None) -> None:
        why = reason or f"expected a callable, got {type(value).__name__}"
        super().__init__(f"invalid {role} {_describe(value)}: {why}")
        self.value = value
        self.role = role


class PayloadTypeError(AtlasEventsError, TypeError):
    """A payload did not match the class declared for its event type.

    Attributes:
        event_type: The event type whose declaration was violated.
        expected: The declared payload class.
        actual: The class of the payload that was given.
    """

    def __init__(self, event_type: object, expected: type[Any], actual: type[Any]) -> None:
        super().__init__(
            f"event type {event_type!r} carries {expected.__qualname__} payloads, "
            f"got {actual.__qualname__}; nothing was published"
        )
        self.event_type = event_type
        self.expected = expected
        self.actual = actual


class MiddlewareError(AtlasEventsError, RuntimeError):
    """A middleware raised; the event was neither recorded nor delivered.

    The original exception is available as ``__cause__``.

    Attributes:
        middleware: The middleware that failed.
        event_id: The id of the event being processed.
    """

    def __init__(self, middleware: object, event_id: str, cause: BaseException) -> None:
        name = getattr(middleware, "__qualname__", None) or _describe(middleware)
        super().__init__(
            f"middleware {name} raised {type(cause).__name__}: {_text(cause)} "
            f"(event {event_id} was dropped)"
        )
        self.middleware = middleware
        self.event_id = event_id


class InvalidMiddlewareResultError(MiddlewareError, TypeError):
    """A middleware returned something other than an ``Event`` or ``None``.

    Its ``__cause__`` is a ``TypeError`` naming the type returned.

    Attributes:
        result: The value the middleware returned.
    """

    def __init__(self, middleware: object, event_id: str, result: object) -> None:
        cause = TypeError(f"expected Event or None, got {type(result).__name__}")
        super().__init__(middleware, event_id, cause)
        self.result = result
        # Set here, not by ``raise ... from``: every path that raises it carries it.
        self.__cause__ = cause


class HandlerError(AtlasEventsError, RuntimeError):
    """Details of a failed handler, carried as the payload of ``HANDLER_ERROR``.

    Also raised (inside an :class:`ExceptionGroup`) by buses created with
    ``raise_handler_errors=True``.

    Attributes:
        event_id: The id of the event whose delivery failed.
        handler_name: The qualified name of the handler that raised.
        exception: The exception the handler raised.
    """

    def __init__(self, event_id: str, handler_name: str, exception: BaseException) -> None:
        super().__init__(
            f"handler {handler_name} raised {type(exception).__name__}: {_text(exception)} "
            f"while handling event {event_id}"
        )
        self.event_id = event_id
        self.handler_name = handler_name
        self.exception = exception

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.event_id, self.handler_name, self.exception))


class HandlerTimeoutError(AtlasEventsError, TimeoutError):
    """An async handler ran longer than its subscription's ``timeout`` and was cancelled.

    Reported as the ``exception`` of a ``HANDLER_ERROR`` event.

    Attributes:
        handler_name: The qualified name of the handler.
        timeout: The limit it exceeded, in seconds.
        event_id: The id of the event it was handling.
    """

    def __init__(self, handler_name: str, timeout: float, event_id: str) -> None:
        super().__init__(
            f"handler {handler_name} did not finish within {timeout} s "
            f"on event {event_id} and was cancelled"
        )
        self.handler_name = handler_name
        self.timeout = timeout
        self.event_id = event_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.handler_name, self.timeout, self.event_id))


class RecursionDepthError(AtlasEventsError, RecursionError):
    """Handlers re-published events deeper than the bus's ``max_depth``.

    Attributes:
        depth: The nesting depth that was refused.
        limit: The configured limit.
        event_type: The type of the event that was refused.
    """

    def __init__(self, depth: int, limit: int, event_type: object) -> None:
        super().__init__(
            f"publishing {event_type!r} would nest dispatch {depth} levels deep "
            f"(max_depth={limit}); a handler is probably re-publishing in a loop"
        )
        self.depth = depth
        self.limit = limit
        self.event_type = event_type


class InvalidOptionError(AtlasEventsError, TypeError, ValueError):
    """An option or argument has the wrong type or is out of range.

    Both a ``TypeError`` and a ``ValueError``, so either ``except`` catches it.

    Attributes:
        option: The name of the option (``"history_limit"``, ``"limit"``...).
        value: The value that was refused.
    """

    def __init__(self, option: str, value: object, expected: str) -> None:
        super().__init__(f"{option} must be {expected}, got {_describe(value)}")
        self.option = option
        self.value = value


class ScopeError(AtlasEventsError, ValueError):
    """A scope name or parent was not acceptable (empty name, a cycle...)."""


class StreamClosedError(AtlasEventsError, RuntimeError):
    """An operation needed an open stream, but it was closed."""


class CodecError(AtlasEventsError, ValueError):
    """An event could not be encoded for the wire, or a wire entry decoded.

    Attributes:
        reason: A short machine-readable cause (``"malformed"``,
            ``"version"``, ``"unknown-type"``, ``"unknown-payload"``,
            ``"bad-payload"``, ``"oversized"``, ``"unencodable"``...), also
            used as the dead-letter reason.
        event_id: The id of the event concerned, when known.
        entry_id: The broker's id of the wire entry concerned (a Redis
            stream entry id), when the error is about a received entry.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        event_id: str | None = None,
        entry_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.event_id = event_id
        self.entry_id = entry_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_with_state, (type(self), self.args, self.__dict__))


def _rebuild_with_state(
    cls: type[Exception], args: tuple[Any, ...], state: dict[str, Any]
) -> Exception:
    """Unpickle an exception whose ``__init__`` takes other arguments than ``args``."""
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class PayloadTooLargeError(CodecError):
    """An event's encoded payload and metadata exceed the codec's size cap.

    Raised at publish time (wrapped in a :class:`MiddlewareError`, as its
    ``__cause__``) for a local event a bridge would send; nothing is
    published.

    Attributes:
        size: The encoded size of ``data`` plus ``metadata``, in bytes.
        limit: The cap (``Codec.max_payload_bytes``).
    """

    def __init__(
        self, size: int, limit: int, *, event_id: str | None = None, event_type: object = None
    ) -> None:
        what = f"event {event_id} ({event_type!r})" if event_id else "the entry"
        super().__init__(
            "oversized",
            f"{what} encodes to {size} bytes of payload and metadata, over the "
            f"{limit}-byte cap of the bridge codec; send a reference (a key, a URL) "
            "instead of the data, or raise Codec(max_payload_bytes=...)",
            event_id=event_id,
        )
        self.size = size
        self.limit = limit


class UnregisteredTypeError(CodecError):
    """An event type or payload class has no wire name in the codec registry.

    Attributes:
        value: The event type member, payload class or wire name concerned.
        kind: ``"event type"`` or ``"payload class"``.
    """

    def __init__(self, value: object, kind: str, *, event_id: str | None = None) -> None:
        label = getattr(value, "__qualname__", None) or repr(value)
        reason = "unknown-type" if kind == "event type" else "unknown-payload"
        super().__init__(
            reason,
            f"{kind} {label} is not registered with the bridge codec; register it on "
            "every node (Codec.register_enum / register_type / register_payload)",
            event_id=event_id,
        )
        self.value = value
        self.kind = kind


class OutboxFullError(AtlasEventsError, BufferError):
    """A bridge's outbox is full and its policy is ``"raise"``.

    Raised at publish time (as the ``__cause__`` of a :class:`MiddlewareError`);
    nothing is published.

    Attributes:
        capacity: The outbox capacity.
        node_id: The bridge's node id.
    """

    def __init__(self, capacity: int, node_id: str) -> None:
        super().__init__(
            f"bridge {node_id!r}: outbox full ({capacity} events waiting for the broker); "
            "the event was not published"
        )
        self.capacity = capacity
        self.node_id = node_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_with_state, (type(self), self.args, self.__dict__))


class BridgeConnectionError(AtlasEventsError, ConnectionError):
    """A bridge could not reach or set up its broker in time.

    Attributes:
        url: The broker URL, password masked.
        reason: The last error seen.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot connect the bridge to {url}: {reason}")
        self.url = url
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_with_state, (type(self), self.args, self.__dict__))


class HandlerLoopError(AtlasEventsError, RuntimeError):
    """Async work of a handler had no usable event loop to run on.

    Reported as a ``HANDLER_ERROR`` (or raised by a bus with
    ``raise_handler_errors=True``) instead of dropping the work: an async
    handler dispatched before any loop it could bind to was running, or a
    sync handler that returned a coroutine with no loop to schedule it on.

    Attributes:
        handler: The qualified name of the handler.
        reason: What was missing.
    """

    def __init__(self, handler: str, reason: str) -> None:
        super().__init__(f"cannot run async handler {handler}: {reason}")
        self.handler = handler
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.handler, self.reason))


class SubscriptionLeakWarning(UserWarning):
    """A weakly held subscription has a companion that keeps its owner alive.

    Issued by ``subscribe`` when, for example, the ``filter`` of a weakly
    held bound-method handler is a closure over the same component: the
    bus must keep the filter strongly, so the component is never collected
    and the subscription never ends. Make the filter a method of the
    component (held weakly like the handler), or subscribe with
    ``weak=False`` and unsubscribe explicitly.
    """
