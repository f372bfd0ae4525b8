"""The scenarios: each measures atlas-events and every peer in one process run.

A scenario returns a :class:`ScenarioResult`: for each implementation (row)
the median ns/event of the rounds, every round's figure, and the ratio to
raw ``blinker.Signal.send`` measured in the same scenario.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from atlas_events import EventBus

from . import peers as _peers
from ._result import PAYLOAD, Row, ScenarioResult, make_result, noop_handlers
from ._timing import Settings, measure_interleaved
from .peers import (
    PEERS,
    TYPE,
    Atlas,
    BenchType,
    Blinker,
    Handler,
    Implementation,
    PlainType,
    passthrough,
)
from .stalls import stalls
from .threads import threads

__all__ = ["SCENARIOS", "Row", "ScenarioResult", "noop_handlers"]

ATLAS = Atlas.name
BLINKER = Blinker.name


@contextmanager
def _impls(
    kinds: Sequence[type[Implementation]] | None = None,
) -> Iterator[list[Implementation]]:
    impls = [kind() for kind in (_peers.IMPLEMENTATIONS if kinds is None else kinds)]
    try:
        yield impls
    finally:
        for impl in impls:
            impl.close()


# --------------------------------------------------------------- fan-out


def _fanout(n_subs: int) -> Callable[[Settings], ScenarioResult]:
    def scenario(settings: Settings) -> ScenarioResult:
        with _impls() as impls:
            loops = {impl.name: impl.fanout(noop_handlers(n_subs), PAYLOAD) for impl in impls}
            runs = measure_interleaved(loops, settings)
        return make_result(
            f"subs_{n_subs}",
            f"{n_subs} subscriber(s), one event type"
            " (atlas-events: history 1000 + one pass-through middleware)",
            runs,
        )

    return scenario


def features(settings: Settings) -> ScenarioResult:
    """What history and middleware cost atlas-events, 1 subscriber."""
    variants = {
        f"{ATLAS} (no history, no middleware)": Atlas(history_limit=0, middleware=0),
        f"{ATLAS} (history)": Atlas(history_limit=1000, middleware=0),
        f"{ATLAS} (history + 1 middleware)": Atlas(history_limit=1000, middleware=1),
        f"{ATLAS} (history + 3 middlewares)": Atlas(history_limit=1000, middleware=3),
        f"{ATLAS} (history + 1 middleware, plain Enum type)": Atlas(
            history_limit=1000, middleware=1, event_type=PlainType.STARTED
        ),
    }
    try:
        with _impls(PEERS) as peers:
            loops = {name: v.fanout(noop_handlers(1), PAYLOAD) for name, v in variants.items()}
            loops.update({p.name: p.fanout(noop_handlers(1), PAYLOAD) for p in peers})
            runs = measure_interleaved(loops, settings)
    finally:
        for v in variants.values():
            v.close()
    return make_result("features", "1 subscriber: atlas-events with history / middleware", runs)


def types_100(settings: Settings) -> ScenarioResult:
    """100 event types, one subscriber each, published round-robin."""
    types = list(BenchType)
    single = Atlas()
    try:
        with _impls() as impls:
            loops = {
                impl.name: impl.round_robin(types, noop_handlers(len(types)), PAYLOAD)
                for impl in impls
            }
            loops[f"{ATLAS} (1 type, same loop)"] = single.round_robin(
                types[:1], noop_handlers(1), PAYLOAD
            )
            runs = measure_interleaved(loops, settings)
    finally:
        single.close()
    res = make_result(
        "types_100",
        "100 event types round-robin, 1 subscriber each (a StrEnum like EventType)",
        runs,
    )
    rows = res["rows"]
    res["extra"]["atlas_100_types_vs_1_type"] = (
        rows[ATLAS]["ns"] / rows[f"{ATLAS} (1 type, same loop)"]["ns"]
    )
    return res


def scoped(settings: Settings) -> ScenarioResult:
    """A bus two levels deep: leaf -> middle -> root, one subscriber per level."""
    with _impls() as impls:
        loops = {impl.name: impl.scoped(noop_handlers(3), PAYLOAD) for impl in impls}
        runs = measure_interleaved(loops, settings)
    return make_result(
        "scoped_2",
        "scoped bus two levels deep, 1 subscriber per level (peers: 3 sends;"
        " PyPubSub: its topic tree)",
        runs,
    )


# --------------------------------------------------------------- streams


def _queue_handler(q: asyncio.Queue[Any]) -> Handler:
    def handler(data: object) -> None:
        q.put_nowait(data)

    return handler


def _drain(queues: Sequence[asyncio.Queue[Any]]) -> None:
    for q in queues:
        while not q.empty():
            q.get_nowait()


async def _streams_sync(settings: Settings) -> ScenarioResult:
    runs: dict[str, list[float]]
    atlas0, atlas3 = Atlas(), Atlas()
    streams = []
    queues: list[asyncio.Queue[Any]] = []
    try:
        with _impls(PEERS) as peers:
            loops = {
                f"{ATLAS} (0 streams)": atlas0.fanout(noop_handlers(1), PAYLOAD),
                f"{ATLAS} (3 streams)": atlas3.fanout(noop_handlers(1), PAYLOAD),
            }
            streams = [atlas3.buses[0].stream(max_queue=10**9) for _ in range(3)]
            for p in peers:
                qs: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(3)]
                queues.extend(qs)
                loops[f"{p.name} (0 queues)"] = p.fanout(noop_handlers(1), PAYLOAD)
                loops[f"{p.name} (3 queues)"] = p.fanout(
                    [*noop_handlers(1), *map(_queue_handler, qs)], PAYLOAD
                )

            def drain() -> None:
                for s in streams:
                    while s.get_nowait() is not None:
                        pass
                _drain(queues)

            runs = measure_interleaved(loops, settings, after=drain)
    finally:
        for s in streams:
            s.close()
        atlas0.close()
        atlas3.close()
    res = make_result(
        "streams_sync",
        "sync publish cost with 0 / 3 attached async streams, 1 subscriber"
        " (peers: 3 asyncio.Queue.put_nowait receivers)",
        runs,
        base=f"{BLINKER} (0 queues)",
    )
    rows = res["rows"]
    per_stream = {
        ATLAS: (rows[f"{ATLAS} (3 streams)"]["ns"] - rows[f"{ATLAS} (0 streams)"]["ns"]) / 3
    }
    for kind in PEERS:
        per_stream[kind.name] = (
            rows[f"{kind.name} (3 queues)"]["ns"] - rows[f"{kind.name} (0 queues)"]["ns"]
        ) / 3
    res["extra"]["ns_per_stream"] = per_stream
    return res


def streams_sync(settings: Settings) -> ScenarioResult:
    return asyncio.run(_streams_sync(settings))


async def _e2e_atlas_same_loop(n: int, batch: int) -> float:
    with EventBus(name="bench") as bus:
        bus.add_middleware(passthrough)
        stream = bus.stream(TYPE, max_queue=batch)
        publish = bus.publish

        async def produce() -> None:
            for _ in range(n // batch):
                for _ in itertools.repeat(None, batch):
                    publish(TYPE, PAYLOAD)
                await asyncio.sleep(0)

        async def consume() -> None:
            seen = 0
            async for _ in stream:
                seen += 1
                if seen == n:
                    break

        t0 = time.perf_counter()
        await asyncio.gather(consume(), produce())
        elapsed = time.perf_counter() - t0
        if stream.dropped:  # pragma: no cover - would make the figure meaningless
            raise RuntimeError(f"e2e stream dropped {stream.dropped} events")
        stream.close()
        return elapsed


async def _e2e_peer_same_loop(impl: Implementation, n: int, batch: int) -> float:
    q: asyncio.Queue[Any] = asyncio.Queue()
    run = impl.fanout([_queue_handler(q)], PAYLOAD)

    async def produce() -> None:
        for _ in range(n // batch):
            run(batch)
            await asyncio.sleep(0)

    async def consume() -> None:
        get = q.get
        for _ in range(n):
            await get()

    t0 = time.perf_counter()
    await asyncio.gather(consume(), produce())
    return time.perf_counter() - t0


async def _e2e_atlas_threaded(n: int) -> float:
    with EventBus(name="bench") as bus:
        bus.add_middleware(passthrough)
        stream = bus.stream(TYPE, max_queue=1000, policy="block", block_timeout=30)
        publish = bus.publish

        def produce() -> None:
            for _ in itertools.repeat(None, n):
                publish(TYPE, PAYLOAD)

        t0 = time.perf_counter()
        thread = threading.Thread(target=produce)
        thread.start()
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == n:
                break
        elapsed = time.perf_counter() - t0
        await asyncio.to_thread(thread.join)
        if stream.dropped:  # pragma: no cover
            raise RuntimeError(f"e2e stream dropped {stream.dropped} events")
        stream.close()
        return elapsed


async def _e2e_blinker_threaded(n: int) -> float:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue()
    put = q.put_nowait

    def handler(data: object) -> None:
        loop.call_soon_threadsafe(put, data)

    impl = Blinker()
    run = impl.fanout([handler], PAYLOAD)
    t0 = time.perf_counter()
    thread = threading.Thread(target=run, args=(n,))
    thread.start()
    for _ in range(n):
        await q.get()
    elapsed = time.perf_counter() - t0
    await asyncio.to_thread(thread.join)
    impl.close()
    return elapsed


async def _streams_e2e(settings: Settings) -> ScenarioResult:
    n = settings.stream_events
    batch = 100
    n -= n % batch
    same_atlas = f"{ATLAS} -> stream (same loop)"
    cross_atlas = f"{ATLAS} -> stream (publisher thread, policy=block)"
    cross_blinker = f"{BLINKER} -> call_soon_threadsafe(Queue.put_nowait) (publisher thread)"
    seconds: dict[str, list[float]] = {}
    with _impls(PEERS) as peers:
        jobs: dict[str, Callable[[], Any]] = {
            same_atlas: lambda: _e2e_atlas_same_loop(n, batch),
            cross_atlas: lambda: _e2e_atlas_threaded(n),
            cross_blinker: lambda: _e2e_blinker_threaded(n),
        }
        for p in peers:
            jobs[f"{p.name} -> asyncio.Queue (same loop)"] = functools.partial(
                _e2e_peer_same_loop, p, n, batch
            )
        names = list(jobs)
        for r in range(settings.repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                seconds.setdefault(name, []).append(await jobs[name]())
    res = make_result(
        "streams_e2e",
        "end to end into one async stream: publish -> queue -> `async for` consumer"
        " (ns per event; peers: a receiver feeding an asyncio.Queue)",
        {name: [s * 1e9 / n for s in values] for name, values in seconds.items()},
        base=f"{BLINKER} -> asyncio.Queue (same loop)",
    )
    res["extra"]["events_per_s"] = {name: 1e9 / row["ns"] for name, row in res["rows"].items()}
    return res


def streams_e2e(settings: Settings) -> ScenarioResult:
    return asyncio.run(_streams_e2e(settings))


SCENARIOS: dict[str, Callable[[Settings], ScenarioResult]] = {
    "subs_0": _fanout(0),
    "subs_1": _fanout(1),
    "subs_10": _fanout(10),
    "subs_100": _fanout(100),
    "features": features,
    "types_100": types_100,
    "scoped_2": scoped,
    "threads": threads,
    "stalls": stalls,
    "streams_sync": streams_sync,
    "streams_e2e": streams_e2e,
}
