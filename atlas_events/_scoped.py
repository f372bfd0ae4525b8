"""The scope tree: one :class:`Node` per bus (its pieces and options), linked parent to children."""

from __future__ import annotations

import enum
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Literal

from ._chain import MiddlewareChain
from ._event import EventType, MemberMap
from ._history import History
from ._locks import Deferred
from ._recorder import Recorder
from ._registry import Registry

__all__ = ["Nested", "Node", "Tree", "close_tree"]

Nested = Literal["queued", "immediate"]


class Tree:
    """What a root bus shares with all its scopes.

    Attributes:
        lock: Serialises changes to the tree's shape and to inherited
            middleware (rare; never taken by publish).
        declared: Payload classes declared per event type (tree-wide).
    """

    __slots__ = ("declared", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.declared: MemberMap[type[Any]] = MemberMap()


class Node:
    """The core of one bus: its recorder, registry, middleware chain, options and tree links.

    The :class:`EventBus` facade owns one node; the publish loop
    (``_dispatch``) works on nodes, and forwarding follows :attr:`parent`.
    """

    __slots__ = (
        "__weakref__",
        "chain",
        "children",
        "closed",
        "deferred",
        "mark_closed",
        "max_depth",
        "name",
        "nested",
        "parent",
        "path",
        "queued",
        "raise_handler_errors",
        "recorder",
        "registry",
        "terminal_ids",
        "terminal_types",
        "tree",
    )

    def __init__(
        self,
        *,
        name: str,
        parent: Node | None,
        path: tuple[str, ...],
        history: History,
        max_depth: int,
        raise_handler_errors: bool,
        terminal_types: tuple[enum.Enum, ...],
        nested: Nested,
        registry: Registry,
        deferred: Deferred,
    ) -> None:
        self.name = name
        self.parent = parent
        self.path = path
        self.tree: Tree = Tree() if parent is None else parent.tree
        self.children: weakref.WeakSet[Node] = weakref.WeakSet()
        self.closed = False
        # Tells the facade it is closed (a weak method: the facade owns the node).
        self.mark_closed: Callable[[], Callable[[], None] | None] = lambda: None
        self.deferred = deferred
        self.recorder = Recorder(history, deferred)
        self.recorder.set_tail(forwards=parent is not None, raises=raise_handler_errors)
        self.registry = registry
        self.chain = MiddlewareChain(self._count_drop)
        self.max_depth = max_depth
        self.raise_handler_errors = raise_handler_errors
        self.nested = nested
        self.queued = nested == "queued"  # a bool for the publish loop to test
        self.terminal_types: frozenset[enum.Enum] = frozenset(
            (EventType.SYSTEM_SHUTDOWN, *terminal_types)
        )
        # By identity: IntEnum / StrEnum members of other enums may be equal.
        self.terminal_ids: frozenset[int] = frozenset(map(id, self.terminal_types))

    def _count_drop(self) -> None:
        self.recorder.count("dropped")

    def ancestors(self) -> Iterator[Node]:
        """This node's parent, grandparent, ... up to the root (no recursion)."""
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def descendants(self) -> list[Node]:
        """Every node below this one, parents before children (no recursion)."""
        out: list[Node] = []
        todo = list(self.children)
        while todo:
            node = todo.pop()
            out.append(node)
            todo.extend(node.children)
        return out

    def refresh_inherited(self) -> None:
        """Recompute the inherited policies of every descendant (holds the tree lock)."""
        with self.tree.lock:
            todo = [self]
            while todo:
                node = todo.pop()
                for child in list(node.children):
                    child.chain.set_inherited(node.chain.inheritable())
                    todo.append(child)


def close_tree(top: Node) -> None:
    """Close ``top`` and every scope below it: all are marked closed first, then torn down.

    Marking happens under the tree lock, so a concurrent ``scope()`` either
    lands in the list or is refused; no scope stays open under a closed one.
    Tear-down runs children first, and one failing sink does not stop the
    others.

    Raises:
        ExceptionGroup: Sinks raised while being closed (after everything closed).
    """
    with top.tree.lock:
        if top.closed:
            return
        nodes = [top, *(n for n in top.descendants() if not n.closed)]
        for node in nodes:
            node.closed = True
            mark = node.mark_closed()
            if mark is not None:
                mark()
    failures: list[Exception] = []
    for node in reversed(nodes):
        failures += _teardown(node)
    if failures:
        raise ExceptionGroup(f"closing {top.name!r}: {len(failures)} sink(s) failed", failures)


def _teardown(node: Node) -> list[Exception]:
    with node.registry.locks.write:
        node.registry.close_locked()
        sinks = node.recorder.take_sinks()
    with node.tree.lock:
        node.chain.clear()
    failures: list[Exception] = []
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # close every other sink first
            failures.append(exc)
    if node.parent is not None:
        node.parent.children.discard(node)
    return failures
