"""One node of the multi-process test: ``python _node.py URL NAMESPACE NODE_ID COUNT NODES``.

Starts a bus and a bridge, prints ``ready``, waits for ``go`` on stdin,
publishes COUNT events ``{"n": 0..COUNT-1}``, waits for the other nodes'
events, then prints one JSON line: the ``n`` values received per origin
and the bridge's health.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from typing import Any, cast

from atlas_events import Event, EventBus, EventType
from atlas_events.bridges.redis import RedisBridge


def main(argv: list[str]) -> int:
    url, namespace, node_id, count_s, nodes_s = argv
    count, nodes = int(count_s), int(nodes_s)
    expected = count * (nodes - 1)
    bus = EventBus(history_limit=0, name=node_id)
    received: dict[str, list[int]] = defaultdict(list)
    total = [0]

    def on_event(ev: Event[Any]) -> None:
        received[ev.origin or "local"].append(cast("dict[str, int]", ev.data)["n"])
        total[0] += 1

    bus.subscribe(EventType.TASK_COMPLETED, on_event)
    bridge = RedisBridge(bus, url, namespace, node_id=node_id, outbox_size=count + 1)
    bridge.start(timeout=30)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    for n in range(count):
        bus.publish(EventType.TASK_COMPLETED, {"n": n})
    deadline = time.monotonic() + 120
    while total[0] - count < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # anything extra (a duplicate, an echo) would arrive now
    bridge.stop()
    report = {"node": node_id, "received": received, "health": bridge.health()}
    print(json.dumps(report), flush=True)
    bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
