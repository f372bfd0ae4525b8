"""Entries the node cannot deliver, on real redis-server processes.

Undecodable entries (any exception while decoding) are dead-lettered mid-batch
without stalling or repeating the batch; entries whose handling kills the
process are dead-lettered after ``max_deliveries``; handlers raising
``BaseException`` never end the reader silently; events trimmed before the
node read them are counted exactly, also by a new bridge object.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from atlas_events import Event, EventBus, EventType
from atlas_events.bridges.codec import Codec
from atlas_events.bridges.redis import DeadLetter, EventsLost, HandlerExit, RedisBridge
from atlas_events.exceptions import CodecError

from ._support import RawCommands, RedisServer, StreamEntries, wait_until

pytestmark = pytest.mark.redis

NESTED = b"[" * 1200 + b"]" * 1200


class Refused(Exception):
    """A payload class's own error."""


@dataclasses.dataclass
class Touchy:
    """A payload whose constructor refuses some values (msgspec calls __post_init__)."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise Refused(f"negative: {self.n}")


@dataclasses.dataclass
class Fatal:
    """A payload whose constructor raises SystemExit (not an Exception)."""

    n: int

    def __post_init__(self) -> None:
        raise SystemExit(7)


@dataclasses.dataclass
class Harmless:
    """What the sender registers under Fatal's wire name."""

    n: int


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    yield c
    c.close()


def _entry(codec: Codec, seq: int, data: Any, *, raw_data: bytes | None = None) -> bytes:
    ev = Event.create(EventType.TASK_STARTED, data)
    raw = codec.encode(ev, origin="writer", incarnation="inc", seq=seq)
    if raw_data is not None:
        head, _, _tail = raw.partition(b',"d":')
        raw = head + b',"d":' + raw_data + b"}"
    return raw


def _numbers(events: list[Event[Any]]) -> list[int]:
    out = []
    for ev in events:
        data = ev.data
        out.append(data["i"] if isinstance(data, dict) else cast("Touchy", data).n)
    return out


def test_codec_turns_any_decoding_failure_into_a_codec_error() -> None:
    """RecursionError and a payload constructor's own error become CodecError("undecodable")."""
    codec = Codec(payloads=[Touchy])
    nested = _entry(codec, 1, None, raw_data=NESTED)
    with pytest.raises(CodecError) as info:
        codec.decode(nested)
    assert info.value.reason == "undecodable"
    assert isinstance(info.value.__cause__, RecursionError)
    bad = codec.encode(
        Event.create(EventType.TASK_STARTED, Touchy(1)), origin="w", incarnation="i", seq=1
    ).replace(b'{"n":1}', b'{"n":-1}')
    with pytest.raises(CodecError) as info:
        codec.decode(bad)
    assert info.value.reason == "undecodable"
    assert isinstance(info.value.__cause__, Refused)


@pytest.mark.parametrize("kind", ["nested", "constructor"])
def test_undecodable_entry_mid_batch_is_dead_lettered_and_the_rest_delivered(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str,
    client: redis.Redis, kind: str,
) -> None:  # fmt: skip
    """One batch, poison in the middle: the rest arrive once, the poison is dead-lettered."""
    codec = Codec(payloads=[Touchy])
    bus = make_bus("b")
    got: list[Event[Any]] = []
    dead: list[DeadLetter] = []
    bus.subscribe(EventType.TASK_STARTED, got.append)
    bus.subscribe(EventType.BRIDGE_DEAD_LETTERED, lambda ev: dead.append(ev.data))
    bridge = RedisBridge(bus, redis_url, namespace, node_id="B", block_ms=100, codec=codec)
    stream = bridge.stream_key
    bridge.start()
    poison = (
        _entry(codec, 6, None, raw_data=NESTED)
        if kind == "nested"
        else _entry(codec, 6, Touchy(1)).replace(b'{"n":1}', b'{"n":-6}')
    )
    pipe = client.pipeline(transaction=True)  # one batch for the reader
    for i in range(1, 11):
        pipe.xadd(stream, {"e": poison if i == 6 else _entry(codec, i, {"i": i})})
    pipe.execute()
    try:
        assert wait_until(lambda: len(got) >= 9 and bridge.health()["dead_lettered"] == 1)
        time.sleep(0.3)
        health = bridge.health()
    finally:
        bridge.stop()
    assert _numbers(got) == [1, 2, 3, 4, 5, 7, 8, 9, 10]
    assert health["dead_lettered"] == 1
    assert health["gaps"] == 1  # seq 6 never arrived as an event
    assert client.xpending(stream, "B")["pending"] == 0
    (letter,) = dead
    assert letter.reason == "undecodable"
    assert letter.deliveries == 1
    entries = cast("StreamEntries", client.xrange(bridge.dead_letter_key))
    assert entries[-1][1][b"x-reason"] == b"undecodable"
    assert entries[-1][1][b"x-id"].decode() == letter.entry_id
    assert entries[-1][1][b"e"] == poison

    again: list[Event[Any]] = []  # a new process: nothing is delivered a second time
    bus2 = make_bus("b2")
    bus2.subscribe(EventType.TASK_STARTED, again.append)
    with RedisBridge(bus2, redis_url, namespace, node_id="B", block_ms=100, codec=codec):
        time.sleep(0.5)
    assert again == []


def _write_child(path: Path, url: str, namespace: str, node: str, log: Path) -> None:
    path.write_text(
        textwrap.dedent(f"""
        import os, sys, time
        from atlas_events import EventBus, EventType
        from atlas_events.bridges.redis import RedisBridge
        bus = EventBus()
        def on(e):
            with open({str(log)!r}, "a") as f:
                f.write(e.data["kind"] + "\\n")
            if e.data["kind"] == "poison":
                os._exit(3)  # the handler takes the process down, every time
        def on_dead(e):
            with open({str(log)!r}, "a") as f:
                f.write(f"dead:{{e.data.reason}}:{{e.data.deliveries}}\\n")
        bus.subscribe(EventType.TASK_STARTED, on)
        bus.subscribe(EventType.BRIDGE_DEAD_LETTERED, on_dead)
        b = RedisBridge(bus, {url!r}, namespace={namespace!r}, node_id={node!r},
                        block_ms=100, max_deliveries=2)
        b.start(timeout=10)
        if sys.argv[1] == "consume":
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if "good" in open({str(log)!r}).read():
                    break
                time.sleep(0.02)
        b.stop()
        """)
    )


def test_entry_that_kills_the_process_is_dead_lettered_after_max_deliveries(
    own_redis_server: RedisServer, make_bus: Callable[[str], EventBus], tmp_path: Path
) -> None:
    """Stable node id, handler os._exit()s on the poison: after 2 deliveries it is skipped."""
    url, namespace, node = own_redis_server.url, "poison", "consumer"
    log, child = tmp_path / "seen.log", tmp_path / "child.py"
    log.write_text("")
    _write_child(child, url, namespace, node, log)
    run = [sys.executable, str(child)]
    subprocess.run([*run, "setup"], check=True, timeout=60)  # creates the durable group
    producer = make_bus("producer")
    with RedisBridge(producer, url, namespace):
        producer.publish(EventType.TASK_STARTED, {"kind": "poison"})
        producer.publish(EventType.TASK_STARTED, {"kind": "good"})
    codes = []
    for _ in range(4):
        codes.append(subprocess.run([*run, "consume"], timeout=60).returncode)
        if codes[-1] == 0:
            break
    seen = log.read_text().split()
    assert codes == [3, 3, 0], (codes, seen)
    assert seen == ["poison", "poison", "dead:poison:3", "good"]
    admin = own_redis_server.client()
    try:
        letters = cast("StreamEntries", admin.xrange("{poison}:dead"))
        assert len(letters) == 1
        assert letters[0][1][b"x-reason"] == b"poison"
        assert letters[0][1][b"x-deliveries"] == b"3"
        assert admin.xpending("{poison}:events", node)["pending"] == 0
    finally:
        admin.close()


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_handler_base_exception_is_contained_counted_and_announced(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str,
    exc_type: type[BaseException], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """sys.exit() and friends in a remote event's handler: the reader goes on, and says so."""
    a, b = make_bus("a"), make_bus("b")
    got: list[Any] = []
    exits: list[HandlerExit] = []

    def on_task(ev: Event[Any]) -> None:
        if ev.data == "exit":
            raise exc_type
        got.append(ev.data)

    b.subscribe(EventType.TASK_STARTED, on_task)
    b.subscribe(EventType.BRIDGE_HANDLER_EXIT, lambda ev: exits.append(ev.data))
    with (
        RedisBridge(b, redis_url, namespace, node_id="B", block_ms=100) as bridge_b,
        RedisBridge(a, redis_url, namespace, node_id="A", block_ms=100),
    ):
        for data in ("before", "exit", 1, 2, 3):
            a.publish(EventType.TASK_STARTED, data)
        assert wait_until(lambda: len(got) >= 4)
        health = bridge_b.health()
    assert got == ["before", 1, 2, 3]
    assert health["state"] == "connected"
    assert health["handler_exits"] == 1
    assert health["dispatch_errors"] == 1
    assert len(exits) == 1
    assert exc_type.__name__ in exits[0].error
    assert any(
        r.levelno == logging.ERROR and exc_type.__name__ in r.getMessage() for r in caplog.records
    )


def test_reader_that_dies_fails_the_bridge_loudly(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A BaseException outside any handler ends the reader: state failed, health, log, event."""
    codec_a, codec_b = Codec(), Codec()
    codec_a.register_payload(Harmless, "test.Fatal")
    codec_b.register_payload(Fatal, "test.Fatal")
    a, b = make_bus("a"), make_bus("b")
    failed: list[Any] = []
    b.subscribe(EventType.BRIDGE_FAILED, lambda ev: failed.append(ev.data))
    bridge_b = RedisBridge(b, redis_url, namespace, node_id="B", block_ms=100, codec=codec_b)
    bridge_a = RedisBridge(a, redis_url, namespace, node_id="A", block_ms=100, codec=codec_a)
    with bridge_b, bridge_a:
        a.publish(EventType.TASK_STARTED, Harmless(1))
        assert wait_until(lambda: bridge_b.state == "failed")
        health = bridge_b.health()
        assert not bridge_b.wait_connected(0.1)
    assert health["failure"] is not None
    assert "reader thread stopped: SystemExit" in health["failure"]
    assert len(failed) == 1
    assert "SystemExit" in (failed[0].error or "")
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)
    assert bridge_b.state == "stopped"  # stop() after a failure is clean; start() works again


def _lost_while_down(
    make_bus: Callable[[str], EventBus], url: str, namespace: str, *, same_object: bool
) -> tuple[int, int, list[EventsLost]]:
    """B reads 1 event, goes down, 1000 are published with maxlen=50, B comes back."""
    a = make_bus("a")
    writer = RedisBridge(a, url, namespace, node_id="A", maxlen=50, block_ms=100).start()

    def node_b() -> tuple[EventBus, list[Any], list[EventsLost], RedisBridge]:
        bus, got, lost = make_bus("b"), [], []
        bus.subscribe(EventType.TASK_STARTED, lambda ev: got.append(ev.data))
        bus.subscribe(EventType.BRIDGE_EVENTS_LOST, lambda ev: lost.append(ev.data))
        return bus, got, lost, RedisBridge(bus, url, namespace, node_id="B", block_ms=100)

    _, got, lost, b = node_b()
    b.start()
    a.publish(EventType.TASK_STARTED, 0)
    assert wait_until(lambda: got == [0])
    b.stop()
    for i in range(1, 1001):
        a.publish(EventType.TASK_STARTED, i)
    assert wait_until(lambda: writer.health()["sent"] == 1001)
    if not same_object:
        _, got, lost, b = node_b()
    got.clear()
    b.start()
    assert wait_until(lambda: got and got[-1] == 1000)
    trimmed = b.health()["trimmed"]
    b.stop()
    writer.stop()
    return 1000 - len(got), trimmed, lost


@pytest.mark.parametrize("same_object", [False, True], ids=["new-object", "same-object"])
def test_events_trimmed_while_offline_are_counted_exactly(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str, same_object: bool
) -> None:
    """A restarted node counts and announces exactly the events trimmed while it was away."""
    lost, trimmed, announced = _lost_while_down(
        make_bus, redis_url, namespace, same_object=same_object
    )
    assert lost > 800  # maxlen=50 (approximate) kept only the newest entries
    assert trimmed == lost
    assert [e.count for e in announced] == [lost]

    # Counted once: a further start of the node finds nothing new.
    bus = make_bus("again")
    again = RedisBridge(bus, redis_url, namespace, node_id="B", block_ms=100).start()
    time.sleep(0.3)
    assert again.health()["trimmed"] == 0
    again.stop()


def _pending_for(client: redis.Redis, stream: str, node: str, codec: Codec, count: int) -> None:
    """``count`` entries delivered once to ``node``'s group and never acknowledged."""
    client.xgroup_create(stream, node, "$", mkstream=True)
    for i in range(count):
        client.xadd(stream, {"e": _entry(codec, i + 1, {"i": i})})
    client.xreadgroup(node, node, {stream: ">"}, count=count)


def test_pending_entries_past_max_deliveries_are_dead_lettered_in_order(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str, client: redis.Redis
) -> None:
    """max_deliveries=1: entries another process was handed once are not handed over again."""
    codec = Codec()
    stream = f"{{{namespace}}}:events"
    _pending_for(client, stream, "B", codec, 3)
    bus = make_bus("b")
    got: list[Event[Any]] = []
    bus.subscribe(EventType.TASK_STARTED, got.append)
    with RedisBridge(bus, redis_url, namespace, node_id="B", block_ms=100, max_deliveries=1) as b:
        assert wait_until(lambda: b.health()["dead_lettered"] == 3)
        health = b.health()
    assert got == []
    assert health["poisoned"] == 3
    assert client.xpending(stream, "B")["pending"] == 0
    letters = cast("StreamEntries", client.xrange(f"{{{namespace}}}:dead"))
    assert [e[1][b"x-deliveries"] for e in letters] == [b"2", b"2", b"2"]


def test_link_faults_while_recovering_do_not_count_as_deliveries(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str, client: redis.Redis
) -> None:
    """Connections killed during the pending pass: every entry delivered once, none poisoned."""
    codec = Codec()
    stream = f"{{{namespace}}}:events"
    total = 300
    _pending_for(client, stream, "B", codec, total)  # delivered once: the next is the 2nd
    bus = make_bus("b")
    got: list[int] = []

    def slow(ev: Event[Any]) -> None:
        time.sleep(0.001)  # keep the pending pass going while its connection is killed
        got.append(cast("dict[str, int]", ev.data)["i"])

    bus.subscribe(EventType.TASK_STARTED, slow)
    kills = 0
    bridge = RedisBridge(
        bus, redis_url, namespace, node_id="B", block_ms=100, max_deliveries=2,
        backoff_initial=0.01, backoff_max=0.05,
    )  # fmt: skip
    with bridge:
        while len(got) < total and kills < 200:
            raw: RawCommands = client
            listing = cast("bytes", raw.execute_command("CLIENT", "LIST")).decode()
            for line in listing.splitlines():
                if "name=atlas-bridge:B:read" in line:
                    client_id = line.split()[0].partition("=")[2]
                    raw.execute_command("CLIENT", "KILL", "ID", client_id)
                    kills += 1
            time.sleep(0.01)
        assert wait_until(lambda: len(got) >= total, timeout=30)
        health = bridge.health()
    assert kills >= 3
    assert health["poisoned"] == 0
    assert sorted(got) == list(range(total))
    assert len(got) == total


def test_a_reader_that_falls_behind_counts_what_was_trimmed_meanwhile(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    """A running node slower than the trimming: every lost event is counted, once."""
    a, b = make_bus("a"), make_bus("b")
    got: list[int] = []
    announced: list[EventsLost] = []

    def slow(ev: Event[Any]) -> None:
        time.sleep(0.002)
        got.append(cast("int", ev.data))

    b.subscribe(EventType.TASK_STARTED, slow)
    b.subscribe(EventType.BRIDGE_EVENTS_LOST, lambda ev: announced.append(ev.data))
    total = 2000
    options: dict[str, Any] = {"block_ms": 100, "batch_size": 50}
    with (
        RedisBridge(b, redis_url, namespace, node_id="B", **options) as reader,
        RedisBridge(a, redis_url, namespace, node_id="A", maxlen=100, **options) as writer,
    ):
        for i in range(total):
            a.publish(EventType.TASK_STARTED, i)
        assert wait_until(lambda: writer.health()["sent"] == total)
        assert wait_until(lambda: got and got[-1] == total - 1, timeout=30)
        assert wait_until(lambda: reader.health()["trimmed"] == total - len(got), timeout=5)
        health = reader.health()
    assert total - len(got) > 500  # the node really fell behind
    assert health["trimmed"] == total - len(got)
    assert sum(e.count for e in announced) == health["trimmed"]
    assert got == sorted(got)
