"""Stalls scenario: the worst publish latency while another thread queries a full bus.

One thread publishes flat out (1 subscriber, one pass-through middleware, one
event in 100 of a second type) into a bus whose history is full
(``Settings.stall_history`` events, 1,000,000 by default) and which has
``Settings.stall_types`` event types with a subscriber each; it times every
``publish`` with ``perf_counter_ns``. Meanwhile a second thread runs one
operation over and over (``clear_history`` once, as the last operation).
The figure per operation is the slowest single publish of the window: an
operation that holds a lock the publisher needs shows up as a publish that
waited that long. Each publish is timed from the end of the previous one,
so a stall that starts while the publisher is between two publishes (the
interpreter may hand the GIL over at the loop's jump as well as inside
``publish``) counts too; the loop's own overhead adds well under a
microsecond.

Three reference rows give the floor: ``idle`` (the second thread sleeps),
``pure-Python loop`` (it spins in Python for 10 ms per run, touching no
bus: the GIL alone) and ``short pure-Python runs`` (about 20 us of Python
per run, the length of a short query, in the same loop as the operations).
The operations run on an event loop (``stream()`` needs one) that is
entered once per millisecond, not after every run: each pass of the loop
releases and re-takes the GIL in ``epoll``, and CPython's GIL then starves
the publisher (a waiting thread asks the holder to drop the GIL only when
no switch happened during the whole interval, and every such release
counts as one): with a pass after each short run, a loop touching no bus
at all kept the publisher out for 60-110 ms.
While the scenario runs, the interpreter's switch interval is set to
``Settings.switch_interval`` (0.5 ms; CPython's default is 5 ms), so a thread
that runs Python code hands the GIL over within about that long and a stall
of a few milliseconds stands out above the floor. A single C call (copying a
million-item deque, freeing a million events) holds the GIL throughout and
stalls the publisher whatever the switch interval. The cyclic garbage
collector is off during the windows (its full pauses are measured in the
memory report).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import gc
import sys
import threading
import time
from collections.abc import Callable

from atlas_events import ANY, EventBus, EventType

from . import peers as _peers
from ._result import PAYLOAD, ScenarioResult, make_result
from ._timing import Settings, median
from .peers import TYPE, Atlas, passthrough

__all__ = ["OPS", "stalls"]

RARE = EventType.TASK_COMPLETED
"""The second type: one publish in 100 (what ``history(RARE, limit=10)`` looks for)."""

Op = Callable[["_Bench"], object]


@functools.cache
def _many_types(n: int) -> type[enum.Enum]:
    """An enum of ``n`` members (built once per run: 20k members take ~1 s)."""
    return enum.Enum("StallType", [f"T{i}" for i in range(n)])  # type: ignore[return-value]


def _handler(event: object) -> None:
    return None


class _Bench:
    """One bus filled for the scenario, and its publisher loop."""

    def __init__(self, impl: Atlas, settings: Settings) -> None:
        self.bus: EventBus = impl.bus_class(history_limit=settings.stall_history, name="stalls")
        self.bus.add_middleware(passthrough)
        self.bus.subscribe(TYPE, _handler)
        for member in _many_types(settings.stall_types):
            self.bus.subscribe(member, _handler)
        publish = self.bus.publish
        for i in range(settings.stall_history):
            publish(RARE if i % 100 == 0 else TYPE, PAYLOAD)

    def publish_for(self, seconds: float, done: threading.Event) -> tuple[int, int, int]:
        """Publish until ``seconds`` have passed and ``done`` is set.

        Returns:
            The slowest publish (ns), the publishes slower than 1 ms, and the
            number of publishes.
        """
        publish = self.bus.publish
        now = time.perf_counter_ns
        end = now() + int(seconds * 1e9)
        worst = slow = count = 0
        t = now()
        while t < end or not done.is_set():
            for i in range(100):
                t0 = t  # from the previous publish's end: a hand-over between two counts too
                publish(TYPE if i else RARE, PAYLOAD)
                t = now()
                dt = t - t0
                if dt > 1_000_000:
                    slow += 1
                if dt > worst:
                    worst = dt
            count += 100
        return worst, slow, count


def _spin(bench: _Bench) -> None:
    deadline = time.perf_counter() + 0.01
    while time.perf_counter() < deadline:
        pass


def _short_spin(bench: _Bench) -> None:
    total = 0
    for i in range(300):  # ~20 us of bytecode, about a short query's length
        total += i


def _stream_open_close(bench: _Bench) -> None:
    bench.bus.stream(replay=10).close()


def _subscribe_any(bench: _Bench) -> None:
    bench.bus.subscribe(ANY, _handler)()


OPS: dict[str, Op | None] = {
    "idle (reference)": None,
    "pure-Python loop, no bus (GIL reference)": _spin,
    "short pure-Python runs, no bus (GIL reference)": _short_spin,
    "history(limit=10)": lambda b: b.bus.history(limit=10),
    "history(event_type, limit=10), type 1 in 100": lambda b: b.bus.history(RARE, limit=10),
    "stream(replay=10) open + close": _stream_open_close,
    "stats()": lambda b: b.bus.stats(),
    "subscribe(ANY) + unsubscribe": _subscribe_any,
    "clear_history()": lambda b: b.bus.clear_history(),
}
"""What the second thread runs (``None``: it sleeps). ``clear_history`` runs once, last."""
ONCE = "clear_history()"
_LOOP_PASS_S = 0.001
"""How often the operations' thread lets its event loop run (seconds)."""


def _window(bench: _Bench, op: Op | None, seconds: float, once: bool) -> dict[str, float]:
    """One window: the publisher against ``op``; the figures of that window."""
    done = threading.Event()
    durations: list[float] = []
    errors: list[BaseException] = []

    async def repeat() -> None:  # on a loop: stream() needs one
        if op is None:
            return
        end = time.perf_counter() + seconds
        next_pass = time.perf_counter() + _LOOP_PASS_S
        while True:
            t0 = time.perf_counter()
            op(bench)
            t = time.perf_counter()
            durations.append(t - t0)
            if once or t >= end:
                return
            if t >= next_pass:  # see the module docstring: not after every run
                next_pass = t + _LOOP_PASS_S
                await asyncio.sleep(0)

    def other() -> None:
        try:
            if op is None:
                time.sleep(seconds)
            else:
                time.sleep(seconds / 4)  # the publisher is up to speed first
                asyncio.run(repeat())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=other)
    thread.start()
    worst, slow, count = bench.publish_for(seconds, done)
    thread.join()
    if errors:
        raise errors[0]
    return {
        "worst_ms": worst / 1e6,
        "slow_publishes": slow,
        "publishes": count,
        "op_runs": len(durations),
        "op_median_ms": median(durations) * 1e3 if durations else 0.0,
    }


def stalls(settings: Settings) -> ScenarioResult:
    """Worst publish latency per operation, for atlas-events (and its baseline copy).

    Rows are ``<implementation>: <operation>`` with the median over rounds of
    each window's slowest publish, in ns; ``extra`` has, per row, the worst
    of all rounds, the publishes slower than 1 ms and how long the operation
    itself took.
    """
    kinds = [k for k in _peers.IMPLEMENTATIONS if issubclass(k, Atlas)]
    impls = [k() for k in kinds]
    interval = sys.getswitchinterval()
    enabled = gc.isenabled()
    gc.disable()
    benches: dict[str, _Bench] = {}
    figures: dict[str, list[dict[str, float]]] = {}
    try:
        sys.setswitchinterval(settings.switch_interval)
        for impl in impls:
            benches[impl.name] = _Bench(impl, settings)
        names = list(benches)
        for r in range(settings.stall_rounds):
            last = r == settings.stall_rounds - 1
            k = r % len(names)
            for name in names[k:] + names[:k]:
                for label, op in OPS.items():
                    if label == ONCE and not last:
                        continue
                    fig = _window(benches[name], op, settings.stall_window_s, label == ONCE)
                    figures.setdefault(f"{name}: {label}", []).append(fig)
    finally:
        sys.setswitchinterval(interval)
        for bench in benches.values():
            bench.bus.close()
        benches.clear()
        for impl in impls:
            impl.close()
        if enabled:
            gc.enable()
        gc.collect()
    res = make_result(
        "stalls",
        f"slowest publish while another thread runs each operation; history full at"
        f" {settings.stall_history:,} events, {settings.stall_types:,} types subscribed,"
        f" switch interval {settings.switch_interval * 1e3:g} ms",
        {row: [f["worst_ms"] * 1e6 for f in figs] for row, figs in figures.items()},
        unit="ns worst publish",
        base="",
    )
    res["extra"]["per_operation"] = {
        row: {
            "worst_ms_all_rounds": max(f["worst_ms"] for f in figs),
            "publishes_over_1ms": sum(f["slow_publishes"] for f in figs),
            "publishes": sum(f["publishes"] for f in figs),
            "op_runs": sum(f["op_runs"] for f in figs),
            "op_median_ms": median([f["op_median_ms"] for f in figs]),
        }
        for row, figs in figures.items()
    }
    res["extra"]["history_limit"] = settings.stall_history
    res["extra"]["types"] = settings.stall_types
    res["extra"]["switch_interval_ms"] = settings.switch_interval * 1e3
    return res
