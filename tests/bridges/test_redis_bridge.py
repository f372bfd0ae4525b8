"""RedisBridge against a real redis-server: delivery, filters, codec errors, cursors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis

from atlas_events import Event, EventBus, EventType, MiddlewareError
from atlas_events.bridges.codec import Codec
from atlas_events.bridges.redis import BridgeSinkStats, BridgeStatus, RedisBridge, redact_url
from atlas_events.exceptions import (
    BridgeConnectionError,
    PayloadTooLargeError,
    UnregisteredTypeError,
)

from ._support import RedisServer, StreamEntries, free_port, wait_until

pytestmark = pytest.mark.redis

BridgeFactory = Callable[..., RedisBridge]


@pytest.fixture
def make_bridge(redis_url: str, namespace: str) -> Iterator[BridgeFactory]:
    """Build started bridges on the session server (fast timings); stop them after."""
    bridges: list[RedisBridge] = []

    def make(
        bus: EventBus, node_id: str | None = None, *, start: bool = True, **kw: Any
    ) -> RedisBridge:
        kw.setdefault("block_ms", 100)
        kw.setdefault("url", redis_url)
        kw.setdefault("namespace", namespace)
        bridge = RedisBridge(bus, node_id=node_id, **kw)
        bridges.append(bridge)
        if start:
            bridge.start()
        return bridge

    yield make
    for bridge in bridges:
        bridge.stop()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis_server.client()
    yield c
    c.close()


def _collect(bus: EventBus, event_type: EventType = EventType.TASK_COMPLETED) -> list[Event[Any]]:
    got: list[Event[Any]] = []
    bus.subscribe(event_type, got.append)
    return got


def _envelope(seq: int, *, origin: str = "writer", n: int = 0, incarnation: str = "inc") -> bytes:
    ev = Event.create(EventType.TASK_COMPLETED, {"n": n})
    return Codec().encode(ev, origin=origin, incarnation=incarnation, seq=seq)


def test_events_cross_with_their_identity(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """Id, type, scope, timestamp, source, metadata, causation, correlation arrive; origin set."""
    a, b = make_bus("a"), make_bus("b")
    make_bridge(a, "node-a")
    make_bridge(b, "node-b")
    got_b = _collect(b)
    got_a = _collect(a)
    agents = a.scope("agents")

    def reply(ev: Event[Any]) -> None:
        agents.publish(
            EventType.TASK_COMPLETED, {"for": ev.id}, source="planner", metadata={"try": 2}
        )

    a.subscribe(EventType.TASK_STARTED, reply)
    started = a.publish(EventType.TASK_STARTED, {"task": "t1"}, correlation_id="run-1")
    assert wait_until(lambda: len(got_b) == 1)
    sent = got_a[0]
    remote = got_b[0]
    assert remote.id == sent.id
    assert remote.type is EventType.TASK_COMPLETED
    assert remote.data == {"for": started}
    assert remote.scope == ("agents",)
    assert remote.timestamp == sent.timestamp
    assert remote.source == "planner"
    assert dict(remote.metadata) == {"try": 2}
    assert remote.parent_id == started
    assert remote.correlation_id == "run-1"
    assert remote.origin == "node-a"
    assert remote.is_remote
    assert b.history(EventType.TASK_COMPLETED)[0].origin == "node-a"
    assert len(got_a) == 1  # a never gets its own event back


@pytest.mark.asyncio
async def test_remote_events_reach_async_streams_and_middleware(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """Local middleware sees remote events, and an async stream on the loop gets them."""
    a, b = make_bus("a"), make_bus("b")
    make_bridge(a, "node-a")
    make_bridge(b, "node-b")
    seen_by_middleware: list[str | None] = []

    def note(ev: Event[Any]) -> Event[Any]:
        seen_by_middleware.append(ev.origin)
        return ev

    b.add_middleware(note)
    async with b.stream(EventType.TASK_COMPLETED) as events:
        a.publish(EventType.TASK_COMPLETED, {"n": 1})
        remote = await asyncio.wait_for(events.get(), timeout=10)
    assert remote.origin == "node-a"
    assert remote.data == {"n": 1}
    assert "node-a" in seen_by_middleware


def test_remote_events_are_never_sent_back(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory, client: redis.Redis
) -> None:
    """No echo: republished remote events stay local, even through a scope and a second bridge."""
    a, b = make_bus("a"), make_bus("b")
    bridge_a = make_bridge(a, "node-a")
    inner = b.scope("inner")
    bridge_root = make_bridge(b, "node-b-root")
    bridge_scope = make_bridge(inner, "node-b-scope")
    got_b = _collect(b)
    for n in range(20):
        a.publish(EventType.TASK_COMPLETED, {"n": n})
    assert wait_until(lambda: len(got_b) == 40)  # once via each of b's bridges
    assert wait_until(lambda: bridge_a.health()["own_skipped"] == 20)
    assert client.xlen(bridge_a.stream_key) == 20
    assert bridge_root.health()["sent"] == 0
    assert bridge_scope.health()["sent"] == 0


def test_type_and_scope_filters(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """Only the chosen types, under the chosen scope prefixes, go out."""
    a, b = make_bus("a"), make_bus("b")
    make_bridge(a, "node-a", types=[EventType.TASK_COMPLETED], scopes=["agents/planner"])
    make_bridge(b, "node-b")
    got: list[Event[Any]] = []
    b.subscribe(EventType.TASK_COMPLETED, got.append)
    b.subscribe(EventType.TASK_STARTED, got.append)
    planner = a.scope("agents").scope("planner")
    other = a.scope("agents").scope("coder")
    planner.publish(EventType.TASK_STARTED, {"n": 1})
    other.publish(EventType.TASK_COMPLETED, {"n": 2})
    a.publish(EventType.TASK_COMPLETED, {"n": 3})
    planner.scope("deeper").publish(EventType.TASK_COMPLETED, {"n": 4})
    planner.publish(EventType.TASK_COMPLETED, {"n": 5})
    assert wait_until(lambda: len(got) == 2)
    assert [cast("dict[str, int]", e.data)["n"] for e in got] == [4, 5]


def test_local_only_types_stay_local(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory, client: redis.Redis
) -> None:
    """HANDLER_ERROR and the bridge's own lifecycle events never go out by default."""
    a = make_bus("a")
    bridge = make_bridge(a, "node-a")

    def broken(ev: Event[Any]) -> None:
        raise RuntimeError("boom")

    a.subscribe(EventType.TASK_FAILED, broken)
    a.publish(EventType.TASK_FAILED, {"n": 1})
    assert a.history(EventType.HANDLER_ERROR)
    assert a.history(EventType.BRIDGE_CONNECTED)
    assert wait_until(lambda: bridge.health()["sent"] == 1)
    entries = cast(StreamEntries, client.xrange(bridge.stream_key))
    assert len(entries) == 1
    assert b'"t":"task.failed"' in entries[0][1][b"e"]


def test_oversized_or_unregistered_payload_is_refused_at_publish(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory, client: redis.Redis
) -> None:
    """The publish raises, naming the cause; nothing is recorded, delivered or sent."""
    a = make_bus("a")
    bridge = make_bridge(a, "node-a", codec=Codec(max_payload_bytes=1000))
    local = _collect(a)
    with pytest.raises(MiddlewareError) as info:
        a.publish(EventType.TASK_COMPLETED, {"blob": "x" * 2000})
    cause = info.value.__cause__
    assert isinstance(cause, PayloadTooLargeError)
    assert cause.limit == 1000
    assert "over the 1000-byte cap" in str(info.value)

    class Opaque:
        pass

    with pytest.raises(MiddlewareError) as info2:
        a.publish(EventType.TASK_COMPLETED, Opaque())
    assert isinstance(info2.value.__cause__, UnregisteredTypeError)
    assert local == []
    assert a.history(EventType.TASK_COMPLETED) == []
    a.publish(EventType.TASK_COMPLETED, {"small": True})
    assert wait_until(lambda: bridge.health()["sent"] == 1)
    assert client.xlen(bridge.stream_key) == 1


def test_malformed_and_oversized_entries_are_dead_lettered(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory, client: redis.Redis
) -> None:
    """Entries written straight into the stream: counted, moved aside, acked; the bridge goes on."""
    b = make_bus("b")
    bridge = make_bridge(b, "node-b", codec=Codec(max_payload_bytes=4096))
    got = _collect(b)
    key = bridge.stream_key
    client.xadd(key, {"e": b"{not json"})
    client.xadd(key, {"other": b"field"})
    client.xadd(key, {"e": b'{"v":1,"o":"w","i":"i","s":1,"id":"x","t":"no.such","ts":1}'})
    client.xadd(key, {"e": b'{"v":9}'})
    oversized = Codec(max_payload_bytes=100_000).encode(
        Event.create(EventType.TASK_COMPLETED, "z" * 10_000), origin="w", incarnation="i", seq=2
    )
    client.xadd(key, {"e": oversized})
    client.xadd(key, {"e": _envelope(3, origin="w", n=7)})
    assert wait_until(lambda: len(got) == 1)
    assert got[0].data == {"n": 7}
    assert wait_until(lambda: bridge.health()["dead_lettered"] == 5)
    health = bridge.health()
    assert health["received"] == 6
    assert health["connected"]
    dead = cast(StreamEntries, client.xrange(bridge.dead_letter_key))
    reasons = [fields[b"x-reason"] for _, fields in dead]
    assert reasons == [b"malformed", b"malformed", b"unknown-type", b"version", b"oversized"]
    assert all(fields[b"x-node"] == b"node-b" for _, fields in dead)
    assert dead[1][1][b"other"] == b"field"  # the original fields are kept
    assert client.xpending(key, "node-b")["pending"] == 0


def test_duplicates_are_delivered_once(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory, client: redis.Redis
) -> None:
    """The same (origin, incarnation, seq) twice: one delivery, one duplicate counted."""
    b = make_bus("b")
    bridge = make_bridge(b, "node-b")
    got = _collect(b)
    first = _envelope(1, n=1)
    client.xadd(bridge.stream_key, {"e": first})
    client.xadd(bridge.stream_key, {"e": first})  # an XADD retried after a lost reply
    client.xadd(bridge.stream_key, {"e": _envelope(2, n=2)})
    client.xadd(bridge.stream_key, {"e": _envelope(1, n=1, incarnation="restarted")})
    assert wait_until(lambda: bridge.health()["received"] == 4)
    assert [cast("dict[str, int]", e.data)["n"] for e in got] == [1, 2, 1]
    assert bridge.health()["duplicates"] == 1
    assert cast(BridgeSinkStats, b.stats()["sinks"][0])["counters"]["duplicates"] == 1


def test_pending_entries_come_first_after_a_crash(
    make_bus: Callable[[str], EventBus],
    make_bridge: BridgeFactory,
    client: redis.Redis,
    namespace: str,
) -> None:
    """Entries read but never acknowledged (a crash) are delivered first, then new ones."""
    key = f"{{{namespace}}}:events"
    client.xgroup_create(key, "node-r", id="$", mkstream=True)
    for seq in (1, 2, 3):
        client.xadd(key, {"e": _envelope(seq, n=seq)})
    read = client.xreadgroup("node-r", "node-r", {key: ">"}, count=10)  # then "crash"
    assert isinstance(read, list)  # RESP2: [[stream, entries]]
    assert len(read[0][1]) == 3
    for seq in (4, 5):
        client.xadd(key, {"e": _envelope(seq, n=seq)})
    b = make_bus("b")
    got = _collect(b)
    make_bridge(b, "node-r")
    assert wait_until(lambda: len(got) == 5)
    assert [cast("dict[str, int]", e.data)["n"] for e in got] == [1, 2, 3, 4, 5]
    assert wait_until(lambda: client.xpending(key, "node-r")["pending"] == 0)


def test_pending_entries_trimmed_meanwhile_are_acknowledged(
    make_bus: Callable[[str], EventBus],
    make_bridge: BridgeFactory,
    client: redis.Redis,
    namespace: str,
) -> None:
    """A pending entry deleted by trimming comes back empty: counted as trimmed and acked."""
    key = f"{{{namespace}}}:events"
    client.xgroup_create(key, "node-r", id="$", mkstream=True)
    ids = [client.xadd(key, {"e": _envelope(seq, n=seq)}) for seq in (1, 2)]
    client.xreadgroup("node-r", "node-r", {key: ">"}, count=10)
    client.xdel(key, ids[0])
    b = make_bus("b")
    got = _collect(b)
    bridge = make_bridge(b, "node-r")
    assert wait_until(lambda: len(got) == 1)
    assert got[0].data == {"n": 2}
    assert bridge.health()["trimmed"] == 1
    assert wait_until(lambda: client.xpending(key, "node-r")["pending"] == 0)


def test_stop_from_a_bridge_thread_is_refused(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """A handler running on the reader thread cannot join that thread."""
    a, b = make_bus("a"), make_bus("b")
    make_bridge(a, "node-a")
    bridge_b = make_bridge(b, "node-b")
    errors: list[BaseException] = []

    def stop_from_handler(ev: Event[Any]) -> None:
        try:
            bridge_b.stop()
        except RuntimeError as exc:
            errors.append(exc)

    b.subscribe(EventType.TASK_COMPLETED, stop_from_handler)
    a.publish(EventType.TASK_COMPLETED, {"n": 1})
    assert wait_until(lambda: len(errors) == 1)
    assert "own thread" in str(errors[0])
    assert bridge_b.connected


def test_entries_are_acknowledged_only_after_dispatch(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory, client: redis.Redis
) -> None:
    """While a handler runs, its entry is still pending in the group."""
    a, b = make_bus("a"), make_bus("b")
    make_bridge(a, "node-a")
    bridge_b = make_bridge(b, "node-b")
    entered, release = threading.Event(), threading.Event()

    def slow(ev: Event[Any]) -> None:
        entered.set()
        release.wait(10)

    b.subscribe(EventType.TASK_COMPLETED, slow)
    a.publish(EventType.TASK_COMPLETED, {"n": 1})
    assert entered.wait(10)
    assert client.xpending(bridge_b.stream_key, "node-b")["pending"] == 1
    release.set()
    assert wait_until(lambda: client.xpending(bridge_b.stream_key, "node-b")["pending"] == 0)


def test_late_joiners_can_replay(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """replay_last=N delivers the newest N entries; replay_from="0" everything retained."""
    a = make_bus("a")
    bridge_a = make_bridge(a, "node-a")
    for n in range(10):
        a.publish(EventType.TASK_COMPLETED, {"n": n})
    assert wait_until(lambda: bridge_a.health()["sent"] == 10)
    last3, everything, live = make_bus("last3"), make_bus("all"), make_bus("live")
    got3, got_all, got_live = _collect(last3), _collect(everything), _collect(live)
    make_bridge(last3, "late-3", replay_last=3)
    make_bridge(everything, "late-all", replay_from="0")
    make_bridge(live, "late-live")
    a.publish(EventType.TASK_COMPLETED, {"n": 10})
    assert wait_until(lambda: len(got3) == 4 and len(got_all) == 11 and len(got_live) == 1)
    assert [cast("dict[str, int]", e.data)["n"] for e in got3] == [7, 8, 9, 10]
    assert [cast("dict[str, int]", e.data)["n"] for e in got_all] == list(range(11))
    assert [cast("dict[str, int]", e.data)["n"] for e in got_live] == [10]


def test_health_stats_and_lifecycle_events(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """health() and bus.stats() expose the counters; BRIDGE_CONNECTED announces the link."""
    a, b = make_bus("a"), make_bus("b")
    bridge_a = make_bridge(a, "node-a", outbox_size=123)
    make_bridge(b, "node-b")
    connected = a.history(EventType.BRIDGE_CONNECTED)
    assert len(connected) == 1
    status = connected[0].data
    assert isinstance(status, BridgeStatus)
    assert (status.node_id, status.error) == ("node-a", None)
    for n in range(5):
        a.publish(EventType.TASK_COMPLETED, {"n": n})
    assert wait_until(lambda: bridge_a.health()["sent"] == 5)
    health = bridge_a.health()
    assert health["state"] == "connected"
    assert health["outbox_capacity"] == 123
    assert health["stream"] == bridge_a.stream_key
    (sink,) = cast("list[BridgeSinkStats]", a.stats()["sinks"])
    assert sink["kind"] == "redis-bridge"
    assert sink["name"] == "node-a"
    assert sink["capacity"] == 123
    assert sink["delivered"] == 5
    assert sink["connected"] is True
    bridge_a.stop()
    assert bridge_a.state == "stopped"
    assert a.stats()["sinks"] == []


def test_stop_flushes_the_outbox(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """Events published right before stop() are still sent."""
    a, b = make_bus("a"), make_bus("b")
    bridge_a = make_bridge(a, "node-a")
    make_bridge(b, "node-b")
    got = _collect(b)
    for n in range(2000):
        a.publish(EventType.TASK_COMPLETED, {"n": n})
    bridge_a.stop()
    assert bridge_a.health()["sent"] == 2000
    assert bridge_a.health()["abandoned"] == 0
    assert wait_until(lambda: len(got) == 2000)


def test_context_manager_and_restart(
    make_bus: Callable[[str], EventBus], redis_url: str, namespace: str
) -> None:
    """``with`` starts and stops; a stopped bridge can start again."""
    a = make_bus("a")
    bridge = RedisBridge(a, redis_url, namespace, node_id="node-a", block_ms=100)
    with bridge as running:
        assert running is bridge
        assert bridge.connected
    assert bridge.state == "stopped"
    bridge.start()
    try:
        assert bridge.connected
        with pytest.raises(RuntimeError, match="already running"):
            bridge.start()
    finally:
        bridge.stop()
    bridge.stop()  # idempotent


def test_ephemeral_node_deletes_its_group(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory, client: redis.Redis
) -> None:
    """A generated node id is temporary; a given one keeps its durable cursor."""
    a = make_bus("a")
    temp = make_bridge(a)
    kept = make_bridge(make_bus("k"), "kept-node")
    assert temp.ephemeral
    assert not kept.ephemeral
    names = {g["name"] for g in client.xinfo_groups(temp.stream_key)}
    assert {temp.node_id.encode(), b"kept-node"} <= names
    temp.stop()
    kept.stop()
    names = {g["name"] for g in client.xinfo_groups(temp.stream_key)}
    assert names == {b"kept-node"}


def test_bus_close_ends_the_bridge(
    make_bus: Callable[[str], EventBus], make_bridge: BridgeFactory
) -> None:
    """Closing the bus stops the bridge's threads; stop() afterwards is harmless."""
    a = make_bus("a")
    bridge = make_bridge(a, "node-a")
    a.close()
    assert wait_until(lambda: not any(t.is_alive() for t in bridge._workers.threads), timeout=5)
    bridge.stop()
    assert bridge.state == "stopped"


def test_unreachable_broker_fails_start_in_time(make_bus: Callable[[str], EventBus]) -> None:
    """start(timeout) raises BridgeConnectionError and leaves the bus untouched."""
    a = make_bus("a")
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    bridge = RedisBridge(a, url, "nowhere", node_id="n", backoff_max=0.1)
    with pytest.raises(BridgeConnectionError) as info:
        bridge.start(timeout=0.5)
    assert "hunter2" not in str(info.value)
    assert isinstance(info.value, ConnectionError)
    assert bridge.state == "stopped"
    assert a.stats()["sinks"] == []
    assert a.stats()["middleware"] == 0


def test_arguments_are_validated(make_bus: Callable[[str], EventBus]) -> None:
    """Bad names, sizes, policies and option clashes are refused up front."""
    a = make_bus("a")
    with pytest.raises(ValueError, match="namespace"):
        RedisBridge(a, namespace="{bad}")
    with pytest.raises(ValueError, match="outbox_policy"):
        RedisBridge(a, outbox_policy="block")
    with pytest.raises(ValueError, match="not both"):
        RedisBridge(a, replay_last=1, replay_from="0")
    with pytest.raises(ValueError, match="client_options"):
        RedisBridge(a, client_options={"decode_responses": True})
    with pytest.raises(ValueError, match="maxlen"):
        RedisBridge(a, maxlen=0)
    with pytest.raises(ValueError, match="no wire name"):
        RedisBridge(a, types=[threading.Event])
    with pytest.raises(TypeError, match="EventBus"):
        RedisBridge("bus")  # type: ignore[arg-type]


def test_passwords_are_masked() -> None:
    """URLs in health, logs and errors never show the password."""
    assert redact_url("redis://user:s3cret@host:6380/1") == "redis://user:***@host:6380/1"
    assert redact_url("rediss://:s3cret@host/0") == "rediss://:***@host/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
