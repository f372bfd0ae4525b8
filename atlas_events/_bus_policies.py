"""The facade's policy methods: middleware (own and inherited) and payload declarations."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._chain import MiddlewareChain, inherits_by_default
from ._checks import check_bool, check_event_type
from ._event import EventKey, MemberMap
from ._receivers import callable_name, check_one_arg_callable
from ._recorder import Registration
from ._subscription import Subscription
from .exceptions import BusClosedError, PayloadTypeError

if TYPE_CHECKING:
    from ._registry import Registry, Route
    from ._scoped import Node
    from .middleware import Middleware

__all__ = ["Policies"]


class Policies:
    """Part of :class:`EventBus`: what the bus enforces on every event."""

    name: str
    _closed: bool
    _node: Node
    _chain: MiddlewareChain
    _declared: MemberMap[type[Any]]
    _registry: Registry
    # Provided by EventBus:
    _must_defer: Callable[[], bool]
    _defer: Callable[[Callable[[], object]], None]

    # ------------------------------------------------------------- middleware

    def add_middleware(self, fn: Middleware, *, inherit: bool | None = None) -> Subscription:
        """Append ``fn`` to the middleware chain; return a token that removes it.

        ``fn(event)`` returns the event (possibly a changed copy) or ``None``
        to drop it. Middlewares run in the order added, before the event is
        recorded or delivered.

        Args:
            fn: The middleware.
            inherit: Also run ``fn`` on every event published in this bus's
                scopes, at any depth, *before* that scope's own middleware,
                history, streams and handlers see it (and not again when
                the event is forwarded here). Default: the middleware's own
                ``inherit`` attribute if it has one (:class:`Redact` does:
                a redaction policy covers the whole tree), else ``False``.

        Raises:
            InvalidHandlerError: ``fn`` is not a one-argument callable.
            TypeError: ``inherit`` is not a bool or ``None``.
            BusClosedError: The bus is closed.
        """
        check_one_arg_callable(fn, "middleware")
        check_bool("inherit", inherit, allow_none=True)
        if self._closed:
            raise BusClosedError(self.name, "add middleware")
        inh = inherits_by_default(fn) if inherit is None else inherit
        rec = Registration((fn, inh), self._remove_middleware)
        with self._node.tree.lock:
            if self._closed:  # again: close() may have run since the check above
                raise BusClosedError(self.name, "add middleware")
            self._chain.add(rec)
            if inh:
                self._node.refresh_inherited()
        return Subscription(rec, f"middleware {callable_name(fn)}")

    def _remove_middleware(self, rec: Registration) -> bool:
        if not rec.active:
            return False
        rec.active = False
        if self._must_defer():
            self._defer(functools.partial(self._unlink_middleware, rec))
        else:
            self._unlink_middleware(rec)
        return True

    def _unlink_middleware(self, rec: Registration) -> None:
        with self._node.tree.lock:
            if self._chain.remove(rec):
                self._node.refresh_inherited()

    # ---------------------------------------------------------- typed payloads

    def declare(self, key: EventKey[Any]) -> None:
        """Check payloads of ``key.type`` against ``key.payload`` on this bus tree.

        After this, publishing ``key.type`` with a payload that is not a
        ``key.payload`` raises :class:`PayloadTypeError`, even through the
        bare enum member. Declarations are shared by a root bus and all its
        scopes.

        Raises:
            TypeError: ``key`` is not an :class:`EventKey`.
            ValueError: ``key.type`` is already declared with another class.
        """
        if not isinstance(key, EventKey):
            raise TypeError(f"declare() takes an EventKey (see atlas_events.declare), got {key!r}")
        with self._node.tree.lock:
            existing = self._declared.get(key.type)
            if existing is not None and existing is not key.payload:
                raise ValueError(
                    f"{key.type!r} is already declared to carry {existing.__qualname__}, "
                    f"not {getattr(key.payload, '__qualname__', key.payload)}"
                )
            self._declared[key.type] = key.payload

    def _check_payload(self, event_type: enum.Enum, data: object) -> None:
        declared = self._declared.get(event_type)
        if declared is not None and not isinstance(data, declared):
            raise PayloadTypeError(event_type, declared, type(data))

    def _resolve(self, event_type: object, data: object) -> tuple[enum.Enum, Route]:
        """Slow path of publish: validate the type, check a typed key's payload."""
        if isinstance(event_type, EventKey) and not isinstance(data, event_type.payload):
            raise PayloadTypeError(event_type.type, event_type.payload, type(data))
        et = check_event_type(event_type, allow_any=False)
        self._check_payload(et, data)
        return et, self._registry.route_for(et)
