"""Bridges that connect a bus to other processes: :mod:`atlas_events.bridges.redis`.

The bridges need the ``redis`` extra (``pip install 'atlas-events[redis]'``);
importing this package alone does not import redis-py or msgspec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._health import (
        LOCAL_ONLY_TYPES,
        BridgeHealth,
        BridgeStatus,
        DeadLetter,
        EventsLost,
        HandlerExit,
    )
    from .codec import Codec, Decoded
    from .redis import RedisBridge, RedisBridgeConfig, ShardedRedisBridge

__all__ = [
    "LOCAL_ONLY_TYPES",
    "BridgeHealth",
    "BridgeStatus",
    "Codec",
    "DeadLetter",
    "Decoded",
    "EventsLost",
    "HandlerExit",
    "RedisBridge",
    "RedisBridgeConfig",
    "ShardedRedisBridge",
]

_HOMES = {
    "LOCAL_ONLY_TYPES": "_health",
    "BridgeHealth": "_health",
    "BridgeStatus": "_health",
    "Codec": "codec",
    "DeadLetter": "_health",
    "Decoded": "codec",
    "EventsLost": "_health",
    "HandlerExit": "_health",
    "RedisBridge": "redis",
    "RedisBridgeConfig": "redis",
    "ShardedRedisBridge": "redis",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
