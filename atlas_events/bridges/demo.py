"""Two processes exchanging events through Redis: ``atlas-events demo --redis URL``.

The *planner* (this process) starts a *worker* process
(``python -m atlas_events.bridges.demo --worker URL NAMESPACE``). Each has
its own bus and :class:`~atlas_events.bridges.redis.RedisBridge` on a fresh
namespace. The planner publishes ``TASK_STARTED`` events carrying a typed
``TaskRequest``; the worker's handler answers each with ``TASK_COMPLETED``
carrying a ``TaskResult``, which arrives back in the planner with the
request's id as its ``parent_id`` and the same correlation id. A
``SYSTEM_SHUTDOWN`` event then ends the worker, and both sides print what
their bridges counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Final, TextIO

import attrs
import redis
from redis.cluster import RedisCluster

from .. import Event, EventBus, EventType, correlate
from ..exceptions import BridgeConnectionError
from .codec import Codec
from .redis import RedisBridge, redact_url
from .redis._cluster import is_cluster

__all__ = ["TaskRequest", "TaskResult", "demo_codec", "run_redis_demo", "run_worker"]

_TASKS = (
    ("summarise", "the quick brown fox jumps over the lazy dog"),
    ("translate", "atlas events cross process boundaries"),
    ("classify", "redis streams keep a total order per stream"),
    ("extract", "consumer groups keep a durable cursor per node"),
    ("review", "duplicates are dropped by origin and sequence"),
)


@attrs.frozen
class TaskRequest:
    """What the planner asks for."""

    task: str
    text: str


@attrs.frozen
class TaskResult:
    """What the worker answers."""

    task: str
    words: int
    worker_pid: int


def demo_codec() -> Codec:
    """The codec both demo processes use (the payload classes registered)."""
    codec = Codec()
    codec.register_payload(TaskRequest, "atlas-demo.TaskRequest")
    codec.register_payload(TaskResult, "atlas-demo.TaskResult")
    return codec


def run_worker(url: str, namespace: str, out: TextIO) -> int:
    """The worker process: answer each remote ``TASK_STARTED``; stop on ``SYSTEM_SHUTDOWN``."""
    bus = EventBus(name="worker")
    done = threading.Event()

    def on_task(ev: Event[Any]) -> None:
        request = ev.data
        if not ev.is_remote or not isinstance(request, TaskRequest):
            return
        bus.publish(
            EventType.TASK_COMPLETED,
            TaskResult(request.task, len(request.text.split()), os.getpid()),
            source="worker",
        )

    def on_shutdown(ev: Event[Any]) -> None:
        if ev.is_remote:
            done.set()

    bus.subscribe(EventType.TASK_STARTED, on_task)
    bus.subscribe(EventType.SYSTEM_SHUTDOWN, on_shutdown)
    bridge = RedisBridge(
        bus, url, namespace, codec=demo_codec(), types=[EventType.TASK_COMPLETED], block_ms=100
    )
    try:
        bridge.start()
    except BridgeConnectionError as exc:
        print(json.dumps({"error": str(exc)}), file=out, flush=True)
        return 2
    try:
        print("ready", file=out, flush=True)
        done.wait(60)
    finally:
        bridge.stop()
        bus.close()
    health = bridge.health()
    counters: Mapping[str, Any] = health
    summary = {"node_id": health["node_id"], **{k: counters[k] for k in _SHOWN}}
    print(json.dumps(summary), file=out, flush=True)
    return 0 if done.is_set() else 1


def run_redis_demo(url: str, out: TextIO) -> int:
    """Run the planner here and a worker in a second process, through Redis at ``url``.

    Args:
        url: The broker URL (``redis://host:6379/0``).
        out: Where to print the timeline.

    Returns:
        The exit code: 0 on success, 1 if an answer went missing, 2 if the
        broker could not be reached.
    """
    namespace = f"atlas-demo-{os.getpid()}-{os.urandom(3).hex()}"
    safe = redact_url(url)
    print(f"atlas-events: two processes, one mesh, through Redis at {safe}", file=out)
    print(f"  stream {{{namespace}}}:events", file=out)
    bus = EventBus(name="planner")
    results: list[tuple[float, Event[Any]]] = []
    arrived = threading.Condition()

    def on_result(ev: Event[Any]) -> None:
        if ev.is_remote:
            with arrived:
                results.append((time.perf_counter(), ev))
                arrived.notify_all()

    bus.subscribe(EventType.TASK_COMPLETED, on_result)
    bridge = RedisBridge(
        bus,
        url,
        namespace,
        codec=demo_codec(),
        types=[EventType.TASK_STARTED, EventType.SYSTEM_SHUTDOWN],
        block_ms=100,
    )
    try:
        bridge.start(timeout=3)
    except BridgeConnectionError as exc:
        print(f"  cannot reach Redis: {exc}", file=out)
        bus.close()
        return 2
    worker = subprocess.Popen(
        [sys.executable, "-m", "atlas_events.bridges.demo", "--worker", url, namespace],
        stdout=subprocess.PIPE,
        text=True,
    )
    code = 0
    try:
        ready = worker.stdout.readline().strip() if worker.stdout is not None else ""
        if ready != "ready":
            print(f"  the worker did not start: {ready or worker.wait(10)}", file=out)
            return 2
        print(f"  planner pid {os.getpid()} (node {bridge.node_id})", file=out)
        print(f"  worker  pid {worker.pid} started\n", file=out)
        sent: dict[str, tuple[float, str]] = {}
        with correlate(f"demo-run-{os.getpid()}"):
            for task, text in _TASKS:
                event_id = bus.publish(
                    EventType.TASK_STARTED, TaskRequest(task, text), source="planner"
                )
                sent[event_id] = (time.perf_counter(), task)
                print(f"  -> planner  task.started    {task:<10} id={event_id}", file=out)
        with arrived:
            arrived.wait_for(lambda: len(results) >= len(_TASKS), timeout=10)
        print(file=out)
        for when, ev in results:
            started, task = sent.get(ev.parent_id or "", (when, "?"))
            result = ev.data
            if not isinstance(result, TaskResult):
                continue
            print(
                f"  <- worker   task.completed  {result.task:<10} {result.words} words, "
                f"pid {result.worker_pid}, origin={ev.origin}, "
                f"parent={'ok' if task == result.task else 'MISMATCH'}, "
                f"correlation={ev.correlation_id}, {(when - started) * 1e3:.1f} ms",
                file=out,
            )
        if len(results) < len(_TASKS):
            print(f"  only {len(results)} of {len(_TASKS)} answers arrived", file=out)
            code = 1
        bus.publish(EventType.SYSTEM_SHUTDOWN, {"reason": "demo finished"}, source="planner")
        tail, _ = worker.communicate(timeout=15)
        worker_summary = json.loads(tail.strip().splitlines()[-1]) if tail.strip() else {}
        if worker.returncode != 0:
            code = code or 1
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        bridge.stop()
        bus.close()
        _drop_stream(url, namespace)
    health = bridge.health()
    print("\n  bridge counters", file=out)
    print(_counters_line("planner", health), file=out)
    if worker_summary:
        print(_counters_line("worker", worker_summary), file=out)
    print("  ok" if code == 0 else "  FAILED", file=out)
    return code


_SHOWN: Final = ("sent", "received", "delivered", "own_skipped", "duplicates", "dead_lettered")


def _counters_line(label: str, counters: Mapping[str, Any]) -> str:
    """One node's counters, the same fields for every node."""
    shown = ", ".join(f"{name.replace('_', ' ')} {counters.get(name, '?')}" for name in _SHOWN)
    return f"    {label + ':':<9}{shown}"


def _drop_stream(url: str, namespace: str) -> None:
    options: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}
    try:
        # Both keys share one hash tag, so one DEL also works on a cluster.
        client: redis.Redis | RedisCluster
        if is_cluster(url, options):
            client = RedisCluster.from_url(url, **options)
        else:
            client = redis.Redis.from_url(url, **options)
        try:
            client.delete(f"{{{namespace}}}:events", f"{{{namespace}}}:dead")
        finally:
            client.close()
    except redis.RedisError:
        pass


def main(argv: list[str]) -> int:
    """``python -m atlas_events.bridges.demo [--worker] URL [NAMESPACE]``."""
    if argv[:1] == ["--worker"] and len(argv) == 3:
        return run_worker(argv[1], argv[2], sys.stdout)
    if len(argv) == 1:
        return run_redis_demo(argv[0], sys.stdout)
    print("usage: python -m atlas_events.bridges.demo URL", file=sys.stderr)
    return 2


if __name__ == "__main__":
    # Run the importable module's main, so its classes are the ones other
    # modules see (not duplicates living in ``__main__``).
    from atlas_events.bridges import demo

    sys.exit(demo.main(sys.argv[1:]))
