"""ShardLayout: hash tags spread over the slot space, stable routing, scopes to shards."""

from __future__ import annotations

import zlib
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from atlas_events import Event, EventType
from atlas_events.bridges.redis import ShardLayout


def _event(scope: tuple[str, ...] = (), data: Any = None) -> Event[Any]:
    return attrs.evolve(Event.create(EventType.TASK_STARTED, data), scope=scope)


@given(shards=st.integers(1, 64), namespace=st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True))
def test_each_shard_tag_lies_in_its_own_slot_range(shards: int, namespace: str) -> None:
    """Shard i's stream hashes into the i-th of N equal slot ranges; tags are distinct."""
    layout = ShardLayout(namespace=namespace, shards=shards)
    assert len(set(layout.namespaces)) == shards
    for i, tag in enumerate(layout.namespaces):
        assert tag.startswith(f"{namespace}.{i}")
        slot = key_slot(f"{{{tag}}}:events".encode())
        assert slot * shards // 16384 == i
        assert key_slot(f"{{{tag}}}:dead".encode()) == slot  # its dead letters share the slot


def test_default_route_is_the_top_level_scope_and_stable() -> None:
    """crc32 of the top-level scope, mod N: the same in every process; sub-scopes follow."""
    layout = ShardLayout(namespace="ns", shards=7)
    for top in ("agents", "tools", "", "ünïcode"):
        expected = zlib.crc32(top.encode()) % 7
        assert layout.index(_event((top,) if top else ())) == expected
        assert layout.index(_event((top, "deeper", "still") if top else ())) == expected


def test_a_user_route_chooses_the_key_and_must_return_a_str() -> None:
    """A route function's key decides; it runs once per event (check and push share it)."""
    calls: list[str] = []

    def by_tenant(ev: Event[Any]) -> str:
        calls.append(ev.id)
        return str(ev.data["tenant"])

    layout = ShardLayout(namespace="ns", shards=4, route=by_tenant)
    ev = _event(("any",), {"tenant": "acme"})
    recorded = attrs.evolve(ev)  # the copy the bus records, which its sinks see
    assert layout.index(ev) == layout.index(recorded) == zlib.crc32(b"acme") % 4
    assert calls == [ev.id]
    moved = attrs.evolve(ev, scope=("elsewhere",))
    layout.index(moved)
    assert calls == [ev.id, ev.id]  # a changed scope is routed again
    bad = ShardLayout(namespace="ns", shards=2, route=lambda ev: 3)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return a str"):
        bad.index(_event())


def test_read_scopes_map_to_the_shards_that_can_hold_them() -> None:
    """Top-level names pick shards; a root scope, None or a user route mean all shards."""
    layout = ShardLayout(namespace="ns", shards=8)
    agents = zlib.crc32(b"agents") % 8
    tools = zlib.crc32(b"tools") % 8
    assert layout.shards_for(["agents/planner", ("tools",)]) == {agents, tools}
    assert layout.shards_for(None) == set(range(8))
    assert layout.shards_for(["agents", ""]) == set(range(8))
    routed = ShardLayout(namespace="ns", shards=8, route=lambda ev: ev.id)
    assert routed.shards_for(["agents"]) == set(range(8))
    with pytest.raises(TypeError):
        layout.shards_for("agents")
    with pytest.raises(ValueError, match="scope"):
        layout.shards_for([42])  # type: ignore[list-item]


@pytest.mark.parametrize("shards", [0, 1025, True, 2.0, "3"])
def test_shard_count_is_validated(shards: object) -> None:
    """Shards must be an int in 1..1024; the error names the field."""
    with pytest.raises((TypeError, ValueError), match="shards"):
        ShardLayout(namespace="ns", shards=shards)  # type: ignore[arg-type]
