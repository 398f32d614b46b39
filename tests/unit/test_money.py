"""Money arithmetic: line amounts, rounding, exact proportional spreading, formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kopilka.domain.rules.explain import format_money
from kopilka.domain.rules.money import RoundingMode, line_amount, round_to_int, spread


@pytest.mark.parametrize(
    ("price", "qty", "amount"),
    [
        pytest.param(10_000, "1", 10_000, id="one"),
        pytest.param(3_000, "3", 9_000, id="three"),
        pytest.param(0, "5", 0, id="free"),
        pytest.param(12_345, "0", 0, id="zero-qty"),
        pytest.param(20_000, "0.500", 10_000, id="half-kg"),
        pytest.param(333, "0.500", 167, id="half-kopeck-rounds-up"),
        pytest.param(335, "0.500", 168, id="half-kopeck-rounds-up-odd"),
        pytest.param(999, "0.001", 1, id="gram-rounds-up"),
        pytest.param(499, "0.001", 0, id="gram-rounds-down"),
        pytest.param(500, "0.001", 1, id="gram-exact-half"),
        pytest.param(189_990, "1.237", 235_018, id="weighed"),
    ],
)
def test_line_amount(price: int, qty: str, amount: int) -> None:
    assert line_amount(price, Decimal(qty)) == amount


@pytest.mark.parametrize(
    ("value", "down", "half_up", "up"),
    [
        pytest.param("0", 0, 0, 0, id="zero"),
        pytest.param("2", 2, 2, 2, id="whole"),
        pytest.param("2.4", 2, 2, 3, id="below-half"),
        pytest.param("2.5", 2, 3, 3, id="half"),
        pytest.param("3.5", 3, 4, 4, id="half-odd"),
        pytest.param("2.999", 2, 3, 3, id="almost"),
        pytest.param("0.001", 0, 0, 1, id="tiny"),
    ],
)
def test_round_to_int(value: str, down: int, half_up: int, up: int) -> None:
    number = Decimal(value)
    assert round_to_int(number, RoundingMode.DOWN) == down
    assert round_to_int(number, RoundingMode.HALF_UP) == half_up
    assert round_to_int(number, RoundingMode.UP) == up


@pytest.mark.parametrize(
    ("total", "weights", "caps", "shares"),
    [
        pytest.param(100, [1, 1, 1], None, [34, 33, 33], id="thirds-largest-remainder-by-index"),
        pytest.param(100, [1, 2], None, [33, 67], id="one-to-two"),
        pytest.param(3_000, [10_000, 9_000], None, [1_579, 1_421], id="proportional"),
        pytest.param(10, [5, 0, 5], None, [5, 0, 5], id="zero-weight-gets-nothing"),
        pytest.param(0, [1, 2, 3], None, [0, 0, 0], id="nothing"),
        pytest.param(7, [], None, [], id="no-weights"),
        pytest.param(7, [0, 0], None, [0, 0], id="all-weights-zero"),
        pytest.param(1, [1, 1, 1], None, [1, 0, 0], id="one-unit"),
        pytest.param(2, [1, 3, 1], None, [1, 1, 0], id="two-units-largest-fraction-first"),
        pytest.param(100, [1, 1], [10, 1_000], [10, 90], id="cap-passes-the-rest-on"),
        pytest.param(100, [1, 1, 1], [0, 50, 100], [0, 50, 50], id="zero-cap"),
        pytest.param(100, [1, 1], [10, 20], [10, 20], id="caps-too-small"),
        pytest.param(100, [9, 1], [100, 5], [95, 5], id="cap-on-small-share"),
        pytest.param(10, [1, 1, 1, 1], [3, 3, 3, 3], [3, 3, 2, 2], id="caps-tight"),
        pytest.param(50, [10_000, 9_000], [100, 90], [26, 24], id="points-over-lines"),
    ],
)
def test_spread(total: int, weights: list[int], caps: list[int] | None, shares: list[int]) -> None:
    assert spread(total, weights, caps) == shares


def test_spread_is_exact_for_large_amounts() -> None:
    weights = [10**12 + 7, 3 * 10**11 + 1, 999_999_999_989]
    total = 10**12 + 1
    shares = spread(total, weights)
    assert sum(shares) == total
    weight_sum = sum(weights)
    for share, weight in zip(shares, weights, strict=True):
        assert abs(share * weight_sum - total * weight) < weight_sum


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        pytest.param(0, "RUB", "0\u00a0₽", id="zero"),
        pytest.param(15_000, "RUB", "150\u00a0₽", id="whole"),
        pytest.param(15_050, "RUB", "150,50\u00a0₽", id="kopecks"),
        pytest.param(5, "RUB", "0,05\u00a0₽", id="five-kopecks"),
        pytest.param(123_456_789, "RUB", "1\u00a0234\u00a0567,89\u00a0₽", id="thousands"),
        pytest.param(-1_050, "RUB", "-10,50\u00a0₽", id="negative"),
        pytest.param(100, "KZT", "1\u00a0₸", id="tenge"),
        pytest.param(100, "GEL", "1\u00a0GEL", id="unknown-currency"),
    ],
)
def test_format_money(minor: int, currency: str, text: str) -> None:
    assert format_money(minor, currency) == text
