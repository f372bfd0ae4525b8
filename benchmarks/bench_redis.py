"""End-to-end benchmark of the Redis Streams bridge between two OS processes.

Run (Redis on 127.0.0.1:6379)::

    python benchmarks/bench_redis.py [--url redis://127.0.0.1:6379/0] [--events 100000]

One run measures, against one Redis:

* **baselines**: plain redis-py, for scale on this machine at this moment:
  pipelined ``XADD`` from one thread, and the ``XADD`` + ``XREAD`` round trip;
  the pipelined ``XADD`` rate is measured for a second right before and
  right after the throughput run, and the end-to-end rate is printed as a
  ratio to their mean (absolute figures on a shared machine swing; the ratio
  less so);
* **throughput**: this process publishes ``--events`` events as fast as it
  can; a second process (started by this script) receives them through its
  own bus and bridge. Events/s = events / (first publish .. last receipt).
  Also the CPU time each process (and redis-server) spent per event;
* **latency**: publish time to receipt time (``time.time()``, same host) at
  full speed and at a paced rate (``--paced-rate`` events/s), p50 and p99;
* **publisher overhead**: ``bus.publish`` with no bridge, with a bridge
  attached but its threads not started (the inline work: the publish check
  and the outbox push), and with a running bridge (adds the sender
  thread's share of the GIL); interleaved rounds, median reported.

Prints a table and writes ``benchmarks/results/redis-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis

from atlas_events import Event, EventBus, EventType
from atlas_events.bridges.redis import RedisBridge

RESULTS = Path(__file__).resolve().parent / "results"
TYPE = EventType.TASK_COMPLETED
DONE = EventType.TASK_FAILED  # the publisher's "that was all" marker
PAYLOAD = {"task": "t", "ok": True}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --------------------------------------------------------------------- receiver


def receiver(url: str, namespace: str, batch_size: int, phases: int) -> int:
    """Receive phases of events; report each phase's timings as one JSON line."""
    bus = EventBus(history_limit=0, name="receiver")
    latencies: list[float] = []
    state = {"first": 0.0, "last": 0.0, "count": 0}

    def on_event(ev: Event[Any]) -> None:
        now = time.time()
        if not state["count"]:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        latencies.append(now - ev.timestamp)

    # The marker comes from the same origin, so it arrives after every event
    # of its phase (per-origin order): wait for it without polling, which
    # would take the GIL from the bridge's reader a thousand times a second.
    marker = threading.Event()
    bus.subscribe(TYPE, on_event)
    bus.subscribe(DONE, lambda ev: marker.set())
    with RedisBridge(bus, url, namespace, node_id="bench-receiver", batch_size=batch_size):
        print("ready", flush=True)
        for _ in range(phases):
            cpu0 = time.process_time()
            marker.wait(300)
            marker.clear()
            report = {
                "received": state["count"],
                "first": state["first"],
                "last": state["last"],
                "cpu_s": time.process_time() - cpu0,
                "p50_ms": _percentile(latencies, 0.50) * 1e3,
                "p99_ms": _percentile(latencies, 0.99) * 1e3,
                "max_ms": max(latencies, default=float("nan")) * 1e3,
            }
            print(json.dumps(report), flush=True)
            latencies.clear()
            state.update(first=0.0, last=0.0, count=0)
    return 0


# -------------------------------------------------------------------- baselines


def pipelined_xadd_rate(url: str, namespace: str, seconds: float = 1.0) -> float:
    """Plain redis-py: pipelined ``XADD`` (500 per pipeline) from one thread, events/s."""
    client = redis.Redis.from_url(url)
    key = f"{{{namespace}-raw}}:events"
    body = {"e": json.dumps({"v": 1, "t": "task.completed", "d": PAYLOAD}).encode()}
    try:
        n, batch = 0, 500
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            pipe = client.pipeline(transaction=False)
            for _ in range(batch):
                pipe.xadd(key, body, maxlen=100_000, approximate=True)
            pipe.execute()
            n += batch
        return n / (time.perf_counter() - t0)
    finally:
        client.delete(key)
        client.close()


def baselines(url: str, namespace: str) -> dict[str, float]:
    """Plain redis-py figures: the ``XADD`` + ``XREAD`` round trip."""
    client = redis.Redis.from_url(url)
    key = f"{{{namespace}-raw}}:events"
    body = {"e": json.dumps({"v": 1, "t": "task.completed", "d": PAYLOAD}).encode()}
    try:
        trips = []
        last = client.xadd(key, body)
        for _ in range(500):
            t0 = time.perf_counter()
            client.xadd(key, body)
            reply = client.xread({key: last}, count=10)
            trips.append(time.perf_counter() - t0)
            last = reply[0][1][-1][0]
        return {"xadd_xread_p50_ms": _percentile(trips, 0.5) * 1e3}
    finally:
        client.delete(key)
        client.close()


# -------------------------------------------------------------------- publisher


def _publish_loop(bus: EventBus, n: int) -> float:
    """Seconds per publish of ``n`` events (GC paused)."""
    publish = bus.publish
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            publish(TYPE, PAYLOAD, source="bench")
        return (time.perf_counter() - t0) / n
    finally:
        gc.enable()


def _inline_costs(url: str, namespace: str, rounds: int) -> dict[str, float]:
    """Best ns per publish over many short loops: no bridge, bridge attached.

    The attached bridge's threads are not started, so this is exactly the
    work a publish does inline (the publish check and the outbox push);
    short loops and the minimum keep other processes' noise out.
    """
    plain = EventBus(history_limit=0, name="plain")
    plain.subscribe(TYPE, lambda e: None)
    paused = EventBus(history_limit=0, name="paused")
    paused.subscribe(TYPE, lambda e: None)
    idle = RedisBridge(paused, url, namespace + "-idle", outbox_size=2_000, node_id="bench-idle")
    check = paused.add_middleware(idle._outbound.check)
    sink, _ = paused.attach_sink(idle._outbox)
    best = {"none": float("inf"), "attached": float("inf")}
    try:
        for _ in range(rounds * 20):
            for label, bus in (("none", plain), ("attached", paused)):
                best[label] = min(best[label], _publish_loop(bus, 1_000) * 1e9)
                idle._outbox.clear()
    finally:
        sink()
        check()
        plain.close()
        paused.close()
    return best


def publisher_overhead(url: str, namespace: str, n: int, rounds: int) -> dict[str, Any]:
    """ns per publish: inline cost (best of short loops); and with a running bridge.

    "running" publishes ``n`` events per round with the bridge's sender and
    reader threads working in the same process (they share the GIL with the
    publisher), against a bus without a bridge, interleaved; medians.
    """
    inline = _inline_costs(url, namespace, rounds)
    plain = EventBus(history_limit=0, name="plain")
    plain.subscribe(TYPE, lambda e: None)
    live = EventBus(history_limit=0, name="live")
    live.subscribe(TYPE, lambda e: None)
    bridge = RedisBridge(live, url, namespace + "-live", node_id="bench-live", outbox_size=n + 1)
    bridge.start()
    samples: dict[str, list[float]] = {"none": [], "running": []}
    try:
        for r in range(rounds):
            order = [("none", plain), ("running", live)]
            for label, bus in order if r % 2 else order[::-1]:
                samples[label].append(_publish_loop(bus, n) * 1e9)
                # Let the live bridge finish sending, and reading its own
                # entries back, before the next measurement starts.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    health = bridge.health()
                    if not health["outbox_depth"] and health["own_skipped"] >= health["sent"]:
                        break
                    time.sleep(0.005)
    finally:
        bridge.stop()
        plain.close()
        live.close()
        admin = redis.Redis.from_url(url)
        admin.delete(bridge.stream_key)  # ~n entries per round: do not leave them in Redis
        admin.close()
    return {
        "inline_none": inline["none"],
        "inline_attached": inline["attached"],
        "none": statistics.median(samples["none"]),
        "running": statistics.median(samples["running"]),
        "rounds": rounds,
        "events_per_round": n,
    }


def end_to_end(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--role", "receiver", "--url", args.url]
    cmd += ["--namespace", namespace, "--batch-size", str(args.batch_size)]
    cmd += ["--phases", str(1 + len(args.paced_rates))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    if proc.stdout is None:  # pragma: no cover - PIPE always gives one
        raise RuntimeError("no pipe to the receiver")
    bus = EventBus(history_limit=0, name="publisher")
    admin = redis.Redis.from_url(args.url)
    results: dict[str, Any] = {}
    try:
        with RedisBridge(
            bus,
            args.url,
            namespace,
            node_id="bench-publisher",
            outbox_size=args.events + 1,
            batch_size=args.batch_size,
        ) as bridge:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the receiver did not start")

            # 1. throughput at full speed, between two baseline measurements
            # (load on a shared machine drifts: the ratio uses their mean)
            xadd_before = pipelined_xadd_rate(args.url, namespace)
            n = args.events
            redis_cpu0, cpu0 = _redis_cpu(admin), time.process_time()
            t0 = time.time()
            for _ in range(n):
                bus.publish(TYPE, PAYLOAD, source="bench")
            t_pub = time.time() - t0
            bus.publish(DONE, {"sent": n})
            full = json.loads(proc.stdout.readline())
            cpu_pub, cpu_redis = time.process_time() - cpu0, _redis_cpu(admin) - redis_cpu0
            span = full["last"] - t0
            xadd_after = pipelined_xadd_rate(args.url, namespace)
            results["pipelined_xadd_per_s"] = {"before": xadd_before, "after": xadd_after}
            results["throughput"] = {
                "events": n,
                "received": full["received"],
                "publish_s": t_pub,
                "end_to_end_s": span,
                "events_per_s": full["received"] / span if span > 0 else 0.0,
                "latency_p50_ms": full["p50_ms"],
                "latency_p99_ms": full["p99_ms"],
                "cpu_us_per_event": {
                    "publisher": cpu_pub / n * 1e6,
                    "receiver": full["cpu_s"] / n * 1e6,
                    "redis": cpu_redis / n * 1e6,
                },
            }

            # 2. latency at paced rates
            results["paced"] = []
            for rate in args.paced_rates:
                count = int(rate * args.paced_seconds)
                start = time.perf_counter()
                for i in range(count):
                    target = start + i / rate
                    while (left := target - time.perf_counter()) > 0:
                        time.sleep(min(left, 0.0005))
                    bus.publish(TYPE, PAYLOAD, source="bench")
                bus.publish(DONE, {"sent": count})
                paced = json.loads(proc.stdout.readline())
                results["paced"].append(
                    {
                        "rate": rate,
                        "events": count,
                        "received": paced["received"],
                        "latency_p50_ms": paced["p50_ms"],
                        "latency_p99_ms": paced["p99_ms"],
                        "latency_max_ms": paced["max_ms"],
                    }
                )
            results["publisher_health"] = dict(bridge.health())
    finally:
        proc.wait(60)
        bus.close()
        admin.delete(f"{{{namespace}}}:events")
        admin.close()
    return results


def _parser_name(url: str) -> str:
    client = redis.Redis.from_url(url, protocol=2, single_connection_client=True)
    try:
        return type(getattr(client.connection, "_parser", None)).__name__
    finally:
        client.close()


def _table(report: dict[str, Any]) -> str:
    meta, base, xadd = report["meta"], report["baselines"], report["pipelined_xadd_per_s"]
    thr, paced, ovh = report["throughput"], report["paced"], report["publisher_overhead_ns"]
    cpu = thr["cpu_us_per_event"]
    rows = [
        ("plain redis-py, for scale", ""),
        (
            "  pipelined XADD, one thread (before/after)",
            f"{xadd['before']:,.0f} / {xadd['after']:,.0f} /s",
        ),
        ("  XADD + XREAD round trip p50", f"{base['xadd_xread_p50_ms']:.2f} ms"),
        ("bridge, process -> Redis -> process", ""),
        ("  end-to-end throughput", f"{thr['events_per_s']:,.0f} events/s"),
        ("  ratio to pipelined XADD (same run)", f"{report['ratio_to_pipelined_xadd']:.2f}x"),
        ("  events received / sent", f"{thr['received']:,} / {thr['events']:,}"),
        (
            "  CPU per event: publisher/receiver/redis",
            f"{cpu['publisher']:.1f} / {cpu['receiver']:.1f} / {cpu['redis']:.1f} us",
        ),
        (
            "  latency p50 / p99, full speed",
            f"{thr['latency_p50_ms']:,.1f} / {thr['latency_p99_ms']:,.1f} ms",
        ),
        *(
            (
                f"  latency p50 / p99 at {run['rate']:,}/s",
                f"{run['latency_p50_ms']:.2f} / {run['latency_p99_ms']:.2f} ms",
            )
            for run in paced
        ),
        ("publisher side, ns per publish", ""),
        ("  no bridge (best of 1,000-event loops)", f"{ovh['inline_none']:,.0f} ns"),
        (
            "  bridge attached, threads idle (inline)",
            f"{ovh['inline_attached']:,.0f} ns "
            f"(+{ovh['inline_attached'] - ovh['inline_none']:,.0f})",
        ),
        (
            f"  no bridge (median, {ovh['events_per_round']:,}-event loops)",
            f"{ovh['none']:,.0f} ns",
        ),
        (
            "  bridge running (+ its threads' GIL share)",
            f"{ovh['running']:,.0f} ns (+{ovh['running'] - ovh['none']:,.0f})",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    head = (
        f"Redis bridge benchmark: {meta['cpus']} CPUs (load {meta['load_before']}), "
        f"Python {meta['python']}, redis-py {meta['redis_py']} ({meta['resp_parser']}), "
        f"Redis {meta['redis_server']}"
    )
    return "\n".join([head, *(f"  {label:<{width}}  {value}" for label, value in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument(
        "--paced-rates",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1_000, 10_000],
        help="comma-separated event rates for the latency runs",
    )
    parser.add_argument("--paced-seconds", type=float, default=2.0)
    parser.add_argument("--overhead-events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=500, help="the bridges' batch_size")
    parser.add_argument("--role", choices=["publisher", "receiver"], default="publisher")
    parser.add_argument("--namespace", default="bench")
    parser.add_argument("--phases", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    args = parser.parse_args(argv)
    if args.role == "receiver":
        return receiver(args.url, args.namespace, args.batch_size, phases=args.phases)

    namespace = f"bench{os.getpid()}"
    client = redis.Redis.from_url(args.url)
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "redis_py": redis.__version__,
        "resp_parser": _parser_name(args.url),
        "redis_server": client.info("server")["redis_version"],
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python benchmarks/bench_redis.py", *(argv or sys.argv[1:])]),
    }
    client.close()
    report: dict[str, Any] = {"meta": meta, "baselines": baselines(args.url, namespace)}
    report.update(end_to_end(args, namespace))
    report["publisher_overhead_ns"] = publisher_overhead(
        args.url, namespace, args.overhead_events, args.rounds
    )
    report["ratio_to_pipelined_xadd"] = report["throughput"]["events_per_s"] / statistics.mean(
        report["pipelined_xadd_per_s"].values()
    )
    meta["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(_table(report))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"redis-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
