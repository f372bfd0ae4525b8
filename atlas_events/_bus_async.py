"""The facade's async and sink methods: ``publish_async``, ``stream``, ``attach_sink``."""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from ._checks import check_event_type, check_seconds
from ._event import ANY, Event, EventKey
from ._history import History
from ._receivers import ASYNC_COLLECTOR
from ._recorder import Recorder, Registration, Sink
from ._streams import EventStream
from ._subscription import Subscription
from .exceptions import BusClosedError

if TYPE_CHECKING:
    from ._buslike import BusLike
    from ._locks import RegistryLock
    from ._streams import Policy, Replay

__all__ = ["StreamsAndSinks"]


class StreamsAndSinks:
    """Part of :class:`EventBus`: async publishing, streams and sinks."""

    name: str
    _closed: bool
    _recorder: Recorder
    _wlock: RegistryLock

    # Provided by EventBus:
    publish: Callable[..., str]
    _must_defer: Callable[[], bool]
    _defer: Callable[[Callable[[], object]], None]

    # ------------------------------------------------------------------ async

    async def publish_async(
        self,
        event_type: enum.Enum | EventKey[Any],
        data: Any = None,
        *,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        propagate: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - bounds the handlers, not this call
    ) -> str:
        """Publish, then await the async handlers of the event on this loop.

        Sync handlers run as in :meth:`publish`; coroutine handlers
        subscribed from the running loop are awaited concurrently. After
        ``timeout`` seconds the unfinished ones are cancelled and counted in
        ``stats()["async_handler_timeouts"]``. Handler errors are reported
        as ``HANDLER_ERROR``, never raised here.

        Raises:
            TypeError, ValueError: ``timeout`` is not a finite number > 0 or None.
            and as for :meth:`publish`.
        """
        check_seconds("timeout", timeout, allow_none=True)
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Future[Any]] = []
        token = ASYNC_COLLECTOR.set((loop, tasks))
        try:
            event_id = self.publish(event_type, data, source, metadata, correlation_id, propagate)
        finally:
            ASYNC_COLLECTOR.reset(token)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                for task in pending:
                    task.cancel()
                self._recorder.count("async_timeouts", len(pending))
                await asyncio.wait(pending)
        return event_id

    def stream(
        self,
        event_type: enum.Enum | EventKey[Any] = ANY,
        *,
        filter: Callable[[Event[Any]], bool] | None = None,
        correlation_id: str | None = None,
        replay: Replay = False,
        since_seq: int | None = None,
        max_queue: int = 1000,
        policy: Policy = "drop_oldest",
        block_timeout: float = 1.0,
        name: str | None = None,
    ) -> EventStream:
        """Open an async stream of events with its own bounded queue.

        See :class:`atlas_events.EventStream` and ``docs/async.md``.
        """
        et = check_event_type(event_type, allow_any=True)
        return EventStream(
            cast("BusLike", self),
            et,
            filter=filter,
            correlation_id=correlation_id,
            replay=replay,
            since_seq=since_seq,
            max_queue=max_queue,
            policy=policy,
            block_timeout=block_timeout,
            name=name,
        )

    # ------------------------------------------------------------------ sinks

    def attach_sink(
        self, sink: Sink, *, replay_from: Callable[[History], list[Event[Any]]] | None = None
    ) -> tuple[Subscription, list[Event[Any]]]:
        """Attach ``sink`` (an async stream, a bridge outbox, your own consumer).

        Every event recorded after the attach is pushed to the sink, in
        ``seq`` order; events recorded before it are in the returned list (as
        selected by ``replay_from``, empty without it): never both, never
        neither. The returned :class:`Subscription` detaches the sink.

        Raises:
            BusClosedError: The bus is closed.
        """
        if self._closed:
            raise BusClosedError(self.name, "attach a stream")
        rec = Registration(sink, self._detach_sink)
        with self._wlock:  # close() takes the sinks under this lock
            if self._closed:  # again: close() may have run since the check above
                raise BusClosedError(self.name, "attach a stream")
            replay = self._recorder.add_sink(rec, replay_from)
        return Subscription(rec, f"{sink.kind} sink"), replay

    def _detach_sink(self, rec: Registration) -> bool:
        if not rec.active:
            return False
        rec.active = False
        if self._must_defer():
            self._defer(functools.partial(self._recorder.remove_sink, rec))
        else:
            self._recorder.remove_sink(rec)
        return True
