"""Tests for _checks: numeric options are refused with errors that name them."""

from __future__ import annotations

import attrs
import pytest

from atlas_events._checks import at_least, check_int, check_seconds


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, TypeError), (1.0, TypeError), ("3", TypeError), (None, TypeError), (-1, ValueError)],
)
def test_check_int_refuses_non_ints_and_small_values(value: object, error: type[Exception]) -> None:
    """bool, float, str and None are not counts; below the minimum is out of range."""
    with pytest.raises(error, match="size"):
        check_int("size", value, 0)
    check_int("size", 0, 0)


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
    size: int = attrs.field(validator=at_least(1))
    limit: int = attrs.field(default=0, validator=at_least(0))


def test_attrs_validator_names_the_field() -> None:
    """The attrs form checks fields and names them."""
    assert _Options(1).limit == 0
    with pytest.raises(ValueError, match="size"):
        _Options(0)
    with pytest.raises(TypeError, match="limit"):
        _Options(1, limit=1.5)  # type: ignore[arg-type]


def test_check_seconds_allows_none_when_asked_and_caps_huge_waits() -> None:
    """None passes only with allow_none; a wait beyond TIMEOUT_MAX is refused (no OverflowError)."""
    assert check_seconds("timeout", None, allow_none=True) is None
    with pytest.raises(TypeError, match="timeout"):
        check_seconds("timeout", None)
    with pytest.raises(ValueError, match="timeout"):
        check_seconds("timeout", 1e300)


def test_check_seconds_refuses_an_int_too_large_for_a_float() -> None:
    """An int beyond any float (10**400) is a ValueError naming the option, not OverflowError."""
    with pytest.raises(ValueError, match="timeout"):
        check_seconds("timeout", 10**400)
