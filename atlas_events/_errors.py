"""Handler failures: naming them, and keeping a reported exception from pinning objects."""

from __future__ import annotations

import sys
from types import FrameType

__all__ = ["release_frames"]


def release_frames(exc: BaseException) -> None:
    """Stop a reported exception, kept in a ``HANDLER_ERROR`` event, from pinning objects.

    The event outlives the dispatch (history, stream queues). Through its
    traceback the exception would keep the failed dispatch's whole stack
    alive -- every frame's locals, the failed handler's ``self``, and the
    weakly subscribed component the dispatch loop touched last, which then
    never dies -- since a finished frame holds on to its caller's frame.
    ``HANDLER_ERROR`` subscribers (and the log) saw the traceback; afterwards
    the bus drops it, and those of the exceptions chained to it that were
    raised and caught inside the handler. An exception that code still
    running is handling (a publish from an ``except`` block) is left alone.
    """
    running = set()
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        running.add(frame)
        frame = frame.f_back
    exc.__traceback__ = None
    seen = {id(exc)}
    todo: list[BaseException | None] = [exc.__cause__, exc.__context__]
    if isinstance(exc, BaseExceptionGroup):
        todo.extend(exc.exceptions)
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        tb = e.__traceback__
        while tb is not None and tb.tb_frame not in running:
            tb = tb.tb_next
        if tb is not None:  # still being handled by a running frame: not ours
            continue
        e.__traceback__ = None
        todo += [e.__cause__, e.__context__]
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
