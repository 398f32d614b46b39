"""Money and points arithmetic: integers in minor units, one place for rounding."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import StrEnum


class RoundingMode(StrEnum):
    DOWN = "down"
    HALF_UP = "half_up"
    UP = "up"


_DECIMAL_MODES = {
    RoundingMode.DOWN: ROUND_FLOOR,
    RoundingMode.HALF_UP: ROUND_HALF_UP,
    RoundingMode.UP: ROUND_CEILING,
}
QTY_STEP = Decimal("0.001")


def round_to_int(value: Decimal, mode: RoundingMode) -> int:
    """Round a non-negative amount to an integer by the program's rounding mode."""
    return int(value.quantize(Decimal(1), rounding=_DECIMAL_MODES[mode]))


def line_amount(price: int, qty: Decimal) -> int:
    """Price per unit (minor units) × quantity (to 3 decimals), half-up to the kopeck."""
    return int((Decimal(price) * qty).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def spread(total: int, weights: Sequence[int], caps: Sequence[int] | None = None) -> list[int]:
    """Split ``total`` over ``weights`` in proportion, exactly (largest remainder method).

    With ``caps``, no share exceeds its cap; what a capped share cannot take goes to the
    others. The shares always sum to ``total`` when the caps allow it.
    """
    n = len(weights)
    shares = [0] * n
    caps = list(caps) if caps is not None else [total] * n
    left = total
    active = [i for i in range(n) if weights[i] > 0 and caps[i] > 0]
    while left > 0 and active:
        weight_sum = sum(weights[i] for i in active)
        exact = {i: Decimal(left) * weights[i] / weight_sum for i in active}
        floors = {i: min(int(exact[i]), caps[i] - shares[i]) for i in active}
        for i in active:
            shares[i] += floors[i]
        remainder = left - sum(floors.values())
        # Hand out the rest one unit at a time, largest fractional part first, then by index.
        order = sorted(active, key=lambda i: (-(exact[i] - int(exact[i])), i))
        for i in order:
            if remainder == 0:
                break
            if shares[i] < caps[i]:
                shares[i] += 1
                remainder -= 1
        left = remainder
        active = [i for i in active if shares[i] < caps[i]]
    return shares
