"""Scaling benchmark: the sharded Redis bridge on a local Redis Cluster of 1, 2 and 3 primaries.

Run (needs ``redis-server`` and ``redis-cli``; starts its own clusters on free ports)::

    python benchmarks/bench_cluster.py [--primaries 1,2,3] [--publishers 2] [--receivers 1]
                                       [--events 20000] [--shards-per-primary 1]

For each cluster size it starts a cluster of that many primaries (no
replicas), then ``--receivers`` node processes that read every stream and
``--publishers`` node processes that only send (``read_scopes=[]``), all
with a :class:`~atlas_events.bridges.redis.ShardedRedisBridge` of
``primaries * shards-per-primary`` streams. Each publisher sends
``--events`` events as fast as it can, spread evenly over the streams (by
scope). It reports:

* **aggregate events/s**: events published by all publishers / (first
  publish .. last receipt at the slowest receiver);
* **CPU per event per role**: a publisher process's CPU time (user + sys) /
  events it sent, a receiver's / events it received, and the primaries'
  (``INFO cpu``) / events written;
* **latency** publish -> receipt (``time.time()``, same host), p50 and p99,
  at full speed (so mostly queueing: a saturated pipeline's latency);
* **own traffic**: a node that publishes N events while reading the same
  stream (one ``RedisBridge``: it reads and skips its own entries) against
  the same node with a sharded bridge that reads only another scope's
  stream; CPU per published event of the node and of Redis.

Every process here (publishers, receivers, redis-servers) shares the
machine's cores: on a 2-core machine the cores, not Redis, are the ceiling,
so adding primaries cannot show its real gain; the report prints
``os.cpu_count()`` and the load average. Writes
``benchmarks/results/cluster-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from atlas_events import EventBus, EventType  # noqa: E402
from atlas_events.bridges.redis import (  # noqa: E402
    RedisBridge,
    ShardedRedisBridge,
    ShardLayout,
)
from tests.bridges._cluster import LocalCluster  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NAMESPACE = "bench"


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def scopes_covering(layout: ShardLayout) -> list[str]:
    """One top-level scope name per shard, routed to that shard (publishers cycle over them)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < layout.shards:
        name = f"s{n}"
        found.setdefault(layout.index_of_key(name), name)
        n += 1
    return [found[i] for i in range(layout.shards)]


# ------------------------------------------------------------------ node roles


def run_publisher(args: argparse.Namespace) -> dict[str, Any]:
    bus = EventBus(name="pub")
    bridge = ShardedRedisBridge(
        bus, args.url, NAMESPACE, shards=args.shards, node_id=f"pub{args.index}",
        read_scopes=[], outbox_size=args.events + 1, maxlen=10 * args.events, cluster=True,
    )  # fmt: skip
    bridge.start(30)
    scopes = [bus.scope(s) for s in scopes_covering(bridge.layout)]
    _wait_file(Path(args.go))
    cpu0, start = _cpu(), time.time()
    for i in range(args.events):
        scopes[i % len(scopes)].publish(EventType.TASK_COMPLETED, {"t": time.time(), "i": i})
    while bridge.health()["totals"]["sent"] < args.events:
        time.sleep(0.002)
    end, cpu = time.time(), _cpu() - cpu0
    bridge.stop()
    return {"role": "publisher", "start": start, "end": end, "cpu": cpu, "events": args.events}


def run_receiver(args: argparse.Namespace) -> dict[str, Any]:
    bus = EventBus(name="recv")
    latencies: list[float] = []
    last = [0.0]

    def got(ev: Any) -> None:
        now = time.time()
        latencies.append(now - ev.data["t"])
        last[0] = now

    bus.subscribe(EventType.TASK_COMPLETED, got)
    bridge = ShardedRedisBridge(
        bus, args.url, NAMESPACE, shards=args.shards, node_id=f"recv{args.index}",
        batch_size=1000, cluster=True,
    )  # fmt: skip
    bridge.start(30)
    Path(args.ready).write_text("ready")
    _wait_file(Path(args.go))
    cpu0 = _cpu()
    deadline = time.monotonic() + args.timeout
    while len(latencies) < args.expect and time.monotonic() < deadline:
        time.sleep(0.005)
    cpu = _cpu() - cpu0
    bridge.stop()
    lat = sorted(latencies)
    return {
        "role": "receiver", "end": last[0], "cpu": cpu, "events": len(lat),
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None,
    }  # fmt: skip


def _wait_file(path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path}")
        time.sleep(0.002)


# ---------------------------------------------------------------- coordinator


def _redis_cpu(cluster: LocalCluster) -> float:
    total = 0.0
    for node in cluster.primary_nodes():
        info = node.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def _spawn(role: str, **options: Any) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--role", role]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE)


def _result(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"a node process failed ({proc.returncode})")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def scaling_run(primaries: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cluster = LocalCluster(work / f"p{primaries}", primaries=primaries, replicas=0)
    cluster.start()
    try:
        shards = primaries * args.shards_per_primary
        go, total = work / f"go{primaries}", args.publishers * args.events
        common = {"url": cluster.url, "shards": shards, "go": go}
        receivers = []
        for i in range(args.receivers):
            ready = work / f"ready{primaries}-{i}"
            receivers.append((ready, _spawn("receiver", index=i, expect=total, ready=ready,
                                            timeout=args.timeout, **common)))  # fmt: skip
        for ready, _ in receivers:
            _wait_file(ready)
        publishers = [
            _spawn("publisher", index=i, events=args.events, **common)
            for i in range(args.publishers)
        ]
        time.sleep(2.0)  # let the publishers connect
        redis0 = _redis_cpu(cluster)
        go.write_text("go")
        pubs = [_result(p, args.timeout + 60) for p in publishers]
        recvs = [_result(p, args.timeout + 60) for _, p in receivers]
        redis_cpu = _redis_cpu(cluster) - redis0
    finally:
        cluster.stop()
    start = min(p["start"] for p in pubs)
    end = max(r["end"] for r in recvs)
    received = min(r["events"] for r in recvs)
    return {
        "primaries": primaries,
        "shards": shards,
        "publishers": args.publishers,
        "receivers": args.receivers,
        "events": total,
        "received_min": received,
        "events_per_s": total / (end - start) if received == total else None,
        "publisher_us_per_event": 1e6 * statistics.mean(p["cpu"] / p["events"] for p in pubs),
        "receiver_us_per_event": 1e6
        * statistics.mean(r["cpu"] / max(1, r["events"]) for r in recvs),
        "redis_us_per_event": 1e6 * redis_cpu / total,
        "p50_ms": statistics.median(r["p50_ms"] for r in recvs),
        "p99_ms": max(r["p99_ms"] for r in recvs),
    }  # fmt: skip


def own_traffic_run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A publishing node's cost with and without reading its own entries (one primary)."""
    cluster = LocalCluster(work / "own", primaries=1, replicas=0)
    cluster.start()
    n = args.events
    out: dict[str, Any] = {"events": n}
    try:
        for label in ("reads_own", "reads_other_stream"):
            bus = EventBus(name=label)
            options: dict[str, Any] = {"outbox_size": n + 1, "maxlen": 10 * n, "cluster": True}
            bridge: RedisBridge | ShardedRedisBridge
            if label == "reads_own":
                bridge = RedisBridge(bus, cluster.url, f"own{label}", node_id="n", **options)
                publish = bus.scope("work")
            else:
                other = scopes_covering(ShardLayout(namespace=f"own{label}", shards=2))[1]
                bridge = ShardedRedisBridge(
                    bus, cluster.url, f"own{label}", node_id="n", shards=2, **options,
                    read_scopes=[other],
                )  # fmt: skip
                publish = bus.scope(scopes_covering(bridge.layout)[0])
            bridge.start(30)
            time.sleep(0.5)
            cpu0, redis0 = _cpu(), _redis_cpu(cluster)
            for i in range(n):
                publish.publish(EventType.TASK_COMPLETED, {"i": i})
            deadline = time.monotonic() + args.timeout
            while not _finished(bridge, n) and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(0.3)  # the last acknowledgements
            out[label] = {
                "node_us_per_event": 1e6 * (_cpu() - cpu0) / n,
                "redis_us_per_event": 1e6 * (_redis_cpu(cluster) - redis0) / n,
            }
            bridge.stop()
            bus.close()
    finally:
        cluster.stop()
    return out


def _finished(bridge: RedisBridge | ShardedRedisBridge, n: int) -> bool:
    """All ``n`` events sent (and, by a bridge that reads its own stream, read back)."""
    if isinstance(bridge, RedisBridge):
        return bridge.health()["own_skipped"] >= n
    return bridge.health()["totals"]["sent"] >= n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["publisher", "receiver"])
    parser.add_argument("--primaries", default="1,2,3")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--receivers", type=int, default=1)
    parser.add_argument("--events", type=int, default=20_000, help="per publisher")
    parser.add_argument("--shards-per-primary", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--skip-own", action="store_true")
    for name in ("url", "go", "ready"):
        parser.add_argument(f"--{name}")
    for name in ("shards", "index", "expect"):
        parser.add_argument(f"--{name}", type=int, default=0)
    args = parser.parse_args()
    if args.role == "publisher":
        print(json.dumps(run_publisher(args)))
        return
    if args.role == "receiver":
        print(json.dumps(run_receiver(args)))
        return
    load = os.getloadavg()
    report: dict[str, Any] = {"cpu_count": os.cpu_count(), "load_before": load, "runs": []}
    print(f"cores={os.cpu_count()} load={load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)
        header = "primaries shards  events/s  pub us/ev  recv us/ev  redis us/ev  p50 ms  p99 ms"
        print(header)
        for primaries in (int(p) for p in args.primaries.split(",")):
            row = scaling_run(primaries, args, work)
            report["runs"].append(row)
            rate = row["events_per_s"]
            print(
                f"{row['primaries']:>9} {row['shards']:>6} "
                f"{(f'{rate:,.0f}' if rate else 'LOST'):>9} "
                f"{row['publisher_us_per_event']:>10.1f} {row['receiver_us_per_event']:>11.1f} "
                f"{row['redis_us_per_event']:>12.1f} {row['p50_ms']:>7.0f} {row['p99_ms']:>7.0f}"
            )
        if not args.skip_own:
            own = own_traffic_run(args, work)
            report["own_traffic"] = own
            for label in ("reads_own", "reads_other_stream"):
                figures = own[label]
                print(
                    f"own traffic, {label:<18}: node {figures['node_us_per_event']:.1f} us/event, "
                    f"redis {figures['redis_us_per_event']:.1f} us/event"
                )
    report["load_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"load after={report['load_after'][0]:.2f}; wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
