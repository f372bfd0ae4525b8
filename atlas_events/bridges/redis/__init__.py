"""Bridge an :class:`~atlas_events.EventBus` to Redis Streams.

Several processes (or hosts), each with its own bus and its own
:class:`RedisBridge`, share one event mesh through one Redis stream per
namespace. See ``docs/cross-process.md`` for the topology, the guarantees
and the tuning knobs.
"""

from __future__ import annotations

from .._health import (
    LOCAL_ONLY_TYPES,
    BridgeCounters,
    BridgeHealth,
    BridgeSinkStats,
    BridgeState,
    BridgeStatus,
    DeadLetter,
    EventsLost,
    HandlerExit,
)
from .._outbox import OutboxPolicy
from ._bridge import RedisBridge
from ._config import RedisBridgeConfig, redact_url
from ._sender import ENTRY_FIELD
from ._sharded import ShardedBridgeHealth, ShardedRedisBridge
from ._sharding import ShardLayout, ShardRoute

__all__ = [
    "ENTRY_FIELD",
    "LOCAL_ONLY_TYPES",
    "BridgeCounters",
    "BridgeHealth",
    "BridgeSinkStats",
    "BridgeState",
    "BridgeStatus",
    "DeadLetter",
    "EventsLost",
    "HandlerExit",
    "OutboxPolicy",
    "RedisBridge",
    "RedisBridgeConfig",
    "ShardLayout",
    "ShardRoute",
    "ShardedBridgeHealth",
    "ShardedRedisBridge",
    "redact_url",
]
