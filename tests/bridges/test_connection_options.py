"""Connection options: the URL and client_options are checked when the config is built."""

from __future__ import annotations

from typing import Any

import pytest

from atlas_events import EventBus, EventType
from atlas_events.bridges.redis import RedisBridge, RedisBridgeConfig


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379/0", "redis://127.0.0.1:notaport/0", "not a url"],
)
def test_a_url_redis_cannot_parse_is_refused_up_front(url: str) -> None:
    """A URL redis-py cannot parse is a ValueError naming ``url`` at construction, not at start."""
    with pytest.raises(ValueError, match="url"):
        RedisBridgeConfig(url=url)


def test_a_url_with_a_password_is_masked_in_the_error() -> None:
    """The refusal of a bad URL does not print its password."""
    with pytest.raises(ValueError, match="url") as info:
        RedisBridgeConfig(url="redis://u:s3cret@127.0.0.1:badport/0")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"no_such_option": 1}, TypeError),
        ({"socket_timeout": "x"}, TypeError),
        ({"socket_connect_timeout": -1}, ValueError),
        ({"socket_timeout": float("nan")}, ValueError),
    ],
)
def test_client_options_redis_would_refuse_are_refused_up_front(
    options: dict[str, Any], error: type[Exception]
) -> None:
    """An option redis-py does not take, or a bad timeout, is refused naming ``client_options``."""
    with pytest.raises(error, match="client_options"):
        RedisBridgeConfig(client_options=options)


def test_a_bad_option_leaves_the_bus_untouched() -> None:
    """Refusing an option happens before anything is attached to the bus."""
    bus = EventBus()
    try:
        with pytest.raises(TypeError, match="client_options"):
            RedisBridge(bus, client_options={"no_such_option": 1})
        assert bus.stats()["sinks"] == []
        bus.publish(EventType.TASK_STARTED, {"i": 1})
    finally:
        bus.close()
