"""Thread helpers for the bridges' asyncio variants: work in a thread, awaited uncancellably."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["in_thread", "wait_uncancellable"]

_R = TypeVar("_R")


def in_thread(fn: Callable[[], _R], name: str) -> concurrent.futures.Future[_R]:
    """Run ``fn`` in a new daemon thread; its future cannot be cancelled."""
    future: concurrent.futures.Future[_R] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()  # running: cancel() now returns False

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


async def wait_uncancellable(future: concurrent.futures.Future[Any]) -> None:
    """Wait for ``future`` to finish, absorbing cancellations until it has; then re-raise one."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            cancelled = True
        except BaseException:
            break
    if cancelled:
        raise asyncio.CancelledError
