"""Scoped child buses."""

from __future__ import annotations

from typing import Any

from ._bus import EventBus
from .exceptions import ScopeError

__all__ = ["ScopedEventBus"]


class ScopedEventBus(EventBus):
    """A child bus: a full :class:`EventBus` that forwards its events upward.

    An event published on a scoped bus is delivered to the scope's own
    subscribers, then forwarded to the parent, and so on up to the root.
    Upstream it is the *same event* (same id); every level runs its own
    middleware, records its own history (with its own ``seq``) and calls its
    own subscribers. ``event.scope`` names the path, e.g.
    ``("agents", "planner")`` for ``root.scope("agents").scope("planner")``,
    so a parent's subscriber can tell where an event came from.

    ``publish(..., propagate=False)`` keeps an event in its scope. Closing a
    scope stops forwarding, disposes its subscriptions and closes its own
    child scopes; closing the parent closes its scopes.

    Args:
        parent: The bus to forward to.
        scope_name: This scope's name (non-empty, no ``"/"``).
        **options: :class:`EventBus` options (``history_limit``...); by
            default a scope shares its root's ``max_depth``,
            ``raise_handler_errors`` and terminal types.

    Raises:
        ScopeError: The name is empty or has a ``"/"``, or ``parent`` is
            this bus or one of its descendants.
    """

    def __init__(self, parent: EventBus, scope_name: str, **options: Any) -> None:
        if not isinstance(parent, EventBus):
            raise TypeError(f"parent must be an EventBus, got {type(parent).__name__}")
        if not isinstance(scope_name, str) or not scope_name or "/" in scope_name:
            raise ScopeError(f"scope name must be a non-empty str without '/', got {scope_name!r}")
        options.setdefault("max_depth", parent.max_depth)
        options.setdefault("raise_handler_errors", parent.raise_handler_errors)
        options.setdefault("terminal_types", tuple(parent.terminal_types))
        options.setdefault("name", "/".join((*parent.scope_path, scope_name)))
        super().__init__(**options)
        parent._adopt(self)
        self._parent = parent
        self._scope = (*parent.scope_path, scope_name)
        self._declared = parent._declared  # payload declarations are tree-wide
        self.scope_name = scope_name
