"""RedisBridgeConfig: every option validated on its field, errors naming the option."""

from __future__ import annotations

import math
from typing import Any

import pytest

from atlas_events import EventType
from atlas_events.bridges.codec import Codec
from atlas_events.bridges.redis import RedisBridgeConfig


def _build(option: str, value: Any) -> RedisBridgeConfig:
    options: dict[str, Any] = {option: value}
    return RedisBridgeConfig(**options)


INT_OPTIONS = [
    "maxlen",
    "outbox_size",
    "dedup_window",
    "dedup_origins",
    "batch_size",
    "block_ms",
    "max_deliveries",
    "dead_letter_maxlen",
    "replay_last",
]


@pytest.mark.parametrize("option", INT_OPTIONS)
@pytest.mark.parametrize("value", [1.0, True, "5", math.nan])
def test_int_options_refuse_other_types(option: str, value: Any) -> None:
    """A float, bool, str or NaN where an int is meant is a TypeError naming the option."""
    with pytest.raises(TypeError, match=option):
        _build(option, value)


@pytest.mark.parametrize("option", INT_OPTIONS)
@pytest.mark.parametrize("value", [0, -1])
def test_int_options_refuse_values_below_one(option: str, value: int) -> None:
    """Zero and negatives are a ValueError naming the option."""
    with pytest.raises(ValueError, match=option):
        _build(option, value)


@pytest.mark.parametrize("option", ["backoff_initial", "backoff_max"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0, -0.5])
def test_seconds_must_be_finite_and_positive(option: str, value: float) -> None:
    """NaN, infinities, zero and negatives are refused for delays."""
    with pytest.raises(ValueError, match=option):
        _build(option, value)


@pytest.mark.parametrize("option", ["backoff_initial", "backoff_max"])
def test_seconds_must_be_numbers(option: str) -> None:
    """A str or bool delay is a TypeError naming the option."""
    values: tuple[Any, ...] = ("1", True)
    for value in values:
        with pytest.raises(TypeError, match=option):
            _build(option, value)


def test_cross_field_rules() -> None:
    """Rules over two fields are checked in the same place."""
    with pytest.raises(ValueError, match="backoff_initial must be <= backoff_max"):
        RedisBridgeConfig(backoff_initial=2.0, backoff_max=1.0)
    with pytest.raises(ValueError, match="not both"):
        RedisBridgeConfig(replay_last=1, replay_from="0")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"namespace": "{bad}"}, ValueError, "namespace"),
        ({"node_id": "has space"}, ValueError, "node_id"),
        ({"url": ""}, ValueError, "url"),
        ({"outbox_policy": "block"}, ValueError, "outbox_policy"),
        ({"replay_from": "yesterday"}, ValueError, "replay_from"),
        ({"codec": object()}, TypeError, "codec"),
        ({"client_options": {"retry": None}}, ValueError, "client_options"),
        ({"client_options": ["x"]}, TypeError, "client_options"),
        ({"types": EventType.TASK_STARTED}, TypeError, "types"),
        ({"scopes": "agents"}, TypeError, "scopes"),
        ({"scopes": [3]}, ValueError, "scope"),
    ],
)
def test_bad_options_name_what_was_wrong(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Each bad option raises the right error, whose message names the option."""
    with pytest.raises(error, match=match):
        RedisBridgeConfig(**options)


def test_types_must_have_wire_names() -> None:
    """A type the codec cannot name is refused before anything starts."""
    import enum

    class Local(enum.Enum):
        X = "x"

    with pytest.raises(ValueError, match="no wire name"):
        RedisBridgeConfig(types=[Local.X])
    codec = Codec(enums=[Local])
    config = RedisBridgeConfig(types=[Local.X], codec=codec)
    assert config.types == (Local.X,)


def test_defaults_and_derived_keys() -> None:
    """The defaults validate; the stream keys carry the namespace in a hash tag."""
    config = RedisBridgeConfig(namespace="mesh", url="redis://u:pw@h:1/0")
    assert config.max_deliveries == 3
    assert config.stream_key == "{mesh}:events"
    assert config.dead_letter_key == "{mesh}:dead"
    assert config.safe_url == "redis://u:***@h:1/0"


@pytest.mark.parametrize("value", [2**20 + 1, 2**70])
def test_dedup_window_has_an_upper_bound(value: int) -> None:
    """A window past 2**20 numbers (a bitmap of 128 KiB per origin) is a ValueError naming it,
    not an OverflowError or a huge allocation when the bridge is built."""
    with pytest.raises(ValueError, match="dedup_window"):
        RedisBridgeConfig(dedup_window=value)
