"""Tests for _checks: numeric options are refused with errors that name them."""

from __future__ import annotations

import attrs
import pytest

from atlas_events._checks import check_count, check_seconds, count_at_least, seconds


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, TypeError), (1.0, TypeError), ("3", TypeError), (None, TypeError), (-1, ValueError)],
)
def test_check_count_refuses_non_ints_and_small_values(
    value: object, error: type[Exception]
) -> None:
    """bool, float, str and None are not counts; below the minimum is out of range."""
    with pytest.raises(error, match="size"):
        check_count("size", value, 0)
    check_count("size", 0, 0)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-0.5, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (True, TypeError),
        ("1", TypeError),
    ],
)
def test_check_seconds_refuses_non_finite_and_non_positive(
    value: object, error: type[Exception]
) -> None:
    """Zero, negatives, NaN and infinity are refused before anything waits on them."""
    with pytest.raises(error, match="timeout"):
        check_seconds("timeout", value)
    check_seconds("timeout", 0.001)
    check_seconds("timeout", 3)


@attrs.frozen
class _Options:
    size: int = attrs.field(validator=count_at_least(1))
    limit: int | None = attrs.field(default=None, validator=count_at_least(0, optional=True))
    wait: float = attrs.field(default=1.0, validator=seconds)


def test_attrs_validators_name_the_field() -> None:
    """The attrs forms check fields and name them; optional ones accept None."""
    assert _Options(1).limit is None
    with pytest.raises(ValueError, match="size"):
        _Options(0)
    with pytest.raises(TypeError, match="limit"):
        _Options(1, limit=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wait"):
        _Options(1, wait=float("nan"))
