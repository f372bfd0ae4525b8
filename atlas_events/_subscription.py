"""Unsubscribe tokens."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, final

__all__ = ["Cancellable", "Subscription"]


class Cancellable(Protocol):
    """What a :class:`Subscription` controls (a receiver, a middleware, a stream)."""

    @property
    def active(self) -> bool: ...

    def cancel(self) -> bool:
        """Undo the registration; ``True`` only for the call that did it."""
        ...


@final
class Subscription:
    """A token that undoes one registration: a handler, a middleware, a sink.

    Calling it unsubscribes; it is idempotent and thread-safe: the first call
    returns ``True``, every later call (or a call after the handler's owner
    was garbage-collected, or after a ``once`` handler fired) returns
    ``False``. It is also a context manager::

        with bus.subscribe(EventType.TASK_STARTED, on_task):
            run()          # on_task is subscribed only inside the block
    """

    __slots__ = ("_target", "description")

    def __init__(self, target: Cancellable, description: str) -> None:
        self._target = target
        self.description = description

    def __call__(self) -> bool:
        """Unsubscribe. Return ``True`` if this call did it, ``False`` otherwise."""
        return self._target.cancel()

    def unsubscribe(self) -> bool:
        """Same as calling the token."""
        return self._target.cancel()

    @property
    def active(self) -> bool:
        """``True`` while the registration is in force."""
        return self._target.active

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._target.cancel()

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        state = "active" if self._target.active else "inactive"
        return f"<Subscription {self.description} ({state})>"
