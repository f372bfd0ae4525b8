"""Fan-out from a publisher thread into N async streams with the ``block`` policy.

Run::

    python -m benchmarks.bench_streams [--streams 10] [--events 20000] [--rounds 5]

One process, one run, interleaved rounds of two fan-outs of the same events
from one publisher thread to ``--streams`` consumers (``async for`` tasks on
one event loop in the main thread):

* **atlas-events**: ``bus.publish`` into ``N`` streams opened with
  ``policy="block"`` (``max_queue=1000``, nothing may be dropped);
* **call_soon_threadsafe fan-out** (the baseline of issue 13, goal 5): no
  bus; for each event the publisher calls
  ``loop.call_soon_threadsafe(queue.put_nowait, event)`` for each of ``N``
  unbounded ``asyncio.Queue`` consumers -- what ``streams_e2e``'s
  cross-thread peer row does for one consumer, done for ``N``;
* **one hop per event**: a stronger hand-written fan-out: one
  ``call_soon_threadsafe(fan_out, event)`` per event, ``fan_out`` putting
  into the ``N`` queues on the loop.

Neither baseline has backpressure, history, replay or filtering.
Events/s = events / (first publish .. the last consumer's last event).
Prints the median of each, the ratios, every round and the machine load
(``os.getloadavg``); goal 5 asks for atlas / call_soon_threadsafe >= 1.0.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from atlas_events import EventBus, EventType

__all__ = ["main", "run_atlas", "run_baseline", "run_one_hop"]

TYPE = EventType.TASK_STARTED
PAYLOAD = {"step": 1}


async def run_atlas(n_streams: int, n_events: int) -> float:
    """Seconds to fan ``n_events`` out of a publisher thread into ``n_streams`` block streams."""
    with EventBus(name="bench-streams") as bus:
        streams = [
            bus.stream(TYPE, max_queue=1000, policy="block", block_timeout=60)
            for _ in range(n_streams)
        ]
        publish = bus.publish

        async def consume(stream: Any) -> None:
            seen = 0
            async for _ in stream:
                seen += 1
                if seen == n_events:
                    return

        def produce() -> None:
            for _ in itertools.repeat(None, n_events):
                publish(TYPE, PAYLOAD)

        consumers = [asyncio.create_task(consume(s)) for s in streams]
        await asyncio.sleep(0)  # every consumer parked on its stream
        t0 = time.perf_counter()
        thread = threading.Thread(target=produce)
        thread.start()
        await asyncio.gather(*consumers)
        elapsed = time.perf_counter() - t0
        await asyncio.to_thread(thread.join)
        dropped = sum(s.dropped for s in streams)
        if dropped:  # the block policy must not drop: the figure would be meaningless
            raise RuntimeError(f"block streams dropped {dropped} events")
        for s in streams:
            s.close()
        return elapsed


async def _run_queues(n_streams: int, n_events: int, produce: Callable[[list[Any]], None]) -> float:
    """Seconds until ``N`` queue consumers got the ``n_events`` that ``produce(puts)`` sends."""
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(n_streams)]

    async def consume(q: asyncio.Queue[Any], n: int) -> None:
        get = q.get
        for _ in range(n):
            await get()

    consumers = [asyncio.create_task(consume(q, n_events)) for q in queues]
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    thread = threading.Thread(target=produce, args=([q.put_nowait for q in queues],))
    thread.start()
    await asyncio.gather(*consumers)
    elapsed = time.perf_counter() - t0
    await asyncio.to_thread(thread.join)
    return elapsed


async def run_baseline(n_streams: int, n_events: int) -> float:
    """Seconds for the per-consumer ``call_soon_threadsafe(queue.put_nowait)`` fan-out."""
    call = asyncio.get_running_loop().call_soon_threadsafe

    def produce(puts: list[Any]) -> None:
        for _ in itertools.repeat(None, n_events):
            for put in puts:
                call(put, PAYLOAD)

    return await _run_queues(n_streams, n_events, produce)


async def run_one_hop(n_streams: int, n_events: int) -> float:
    """Seconds for one ``call_soon_threadsafe`` per event fanning out on the loop."""
    call = asyncio.get_running_loop().call_soon_threadsafe

    def produce(puts: list[Any]) -> None:
        def fan_out(data: object) -> None:
            for put in puts:
                put(data)

        for _ in itertools.repeat(None, n_events):
            call(fan_out, PAYLOAD)

    return await _run_queues(n_streams, n_events, produce)


async def _measure(n_streams: int, n_events: int, rounds: int) -> dict[str, list[float]]:
    jobs: dict[str, Callable[[], Coroutine[Any, Any, float]]] = {
        "atlas-events block streams": lambda: run_atlas(n_streams, n_events),
        "call_soon_threadsafe fan-out": lambda: run_baseline(n_streams, n_events),
        "one hop per event": lambda: run_one_hop(n_streams, n_events),
    }
    names = list(jobs)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):  # interleaved, rotating which goes first
        k = r % len(names)
        for name in names[k:] + names[:k]:
            rates[name].append(n_events / await jobs[name]())
    return rates


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print it; exit status 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.streams < 1 or args.events < 1 or args.rounds < 1:
        parser.error("--streams, --events and --rounds must be >= 1")
    load = os.getloadavg()
    rates = asyncio.run(_measure(args.streams, args.events, args.rounds))
    atlas, base, hop = (statistics.median(v) for v in rates.values())
    print(
        f"{args.streams} streams, {args.events} events per round, {args.rounds} rounds, "
        f"python {sys.version.split()[0]}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    for name, values in rates.items():
        each = " ".join(f"{v / 1000:.1f}k" for v in values)
        print(f"  {name:<30} median {statistics.median(values) / 1000:6.1f}k events/s  ({each})")
    print(f"  ratio atlas / call_soon_threadsafe fan-out: {atlas / base:.2f}  (goal >= 1.0)")
    print(f"  ratio atlas / one hop per event: {atlas / hop:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
