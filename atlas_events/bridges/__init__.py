"""Bridges that connect a bus to other processes: :mod:`atlas_events.bridges.redis`.

The bridges need the ``redis`` extra (``pip install 'atlas-events[redis]'``);
importing this package alone does not import redis-py or msgspec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .codec import Codec, Decoded
    from .redis import BridgeHealth, BridgeStatus, RedisBridge

__all__ = ["BridgeHealth", "BridgeStatus", "Codec", "Decoded", "RedisBridge"]

_HOMES = {
    "BridgeHealth": "redis",
    "BridgeStatus": "redis",
    "Codec": "codec",
    "Decoded": "codec",
    "RedisBridge": "redis",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
