"""Budgets counted without a hot row: each budget is split into slots, each slot a row with
its own cap; a receipt takes its amount from one slot picked at random, so concurrent tills
mostly touch different rows. Near the end, when no single slot can cover a receipt, the
receipt takes from several slots (locked in slot order, so never deadlocking).

Every slot keeps ``used <= cap`` (checked in the same UPDATE that takes), so the sum of
``used`` never exceeds the budget: no overshoot at all, and no remainder stranded either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kopilka.domain.campaigns.definition import BudgetAmounts, Budgets

SLOTS = 16  # rows per budget: concurrent tills collide on one in 16
KINDS = ("points", "discount", "redemptions")
OVERALL = "all"

BudgetKey = tuple[str, str]  # (kind, scope): ("points", "all"), ("discount", "outlet:OUT-1")


def outlet_scope(outlet_code: str) -> str:
    return f"outlet:{outlet_code}"


def scope_outlet(scope: str) -> str | None:
    """The outlet code a scope names, or None for the overall budget."""
    return scope[len("outlet:") :] if scope.startswith("outlet:") else None


def split(cap: int, slots: int = SLOTS) -> list[int]:
    """``cap`` in ``slots`` parts differing by at most one, summing to ``cap``."""
    base, extra = divmod(cap, slots)
    return [base + (1 if i < extra else 0) for i in range(slots)]


def caps(budgets: Budgets) -> dict[BudgetKey, int]:
    """Every capped budget of a campaign: overall and per outlet."""
    found: dict[BudgetKey, int] = {}

    def add(amounts: BudgetAmounts, scope: str) -> None:
        for kind in KINDS:
            value = getattr(amounts, kind)
            if value is not None:
                found[(kind, scope)] = value

    add(budgets, OVERALL)
    for outlet, amounts in budgets.per_outlet.items():
        add(amounts, outlet_scope(outlet))
    return found


def costs(budgets: Budgets, outlet_code: str, points: int, discount: int) -> dict[BudgetKey, int]:
    """What one receipt takes from each of the campaign's budgets (zero amounts left out):
    its points, its discount and one redemption, overall and at its outlet."""
    amounts = {"points": points, "discount": discount, "redemptions": 1}
    wanted: dict[BudgetKey, int] = {}
    for kind, scope in caps(budgets):
        if scope not in (OVERALL, outlet_scope(outlet_code)):
            continue
        if amounts[kind] > 0:
            wanted[(kind, scope)] = amounts[kind]
    return wanted


def plan_take(left: Sequence[tuple[int, int]], amount: int) -> list[tuple[int, int]] | None:
    """Spread ``amount`` over slots given as (slot, what is left in it), fullest first;
    None when they do not hold enough."""
    if amount <= 0:
        return []
    if sum(max(room, 0) for _, room in left) < amount:
        return None
    plan: list[tuple[int, int]] = []
    rest = amount
    for slot, room in sorted(left, key=lambda item: (-item[1], item[0])):
        if rest == 0:
            break
        take = min(room, rest)
        if take > 0:
            plan.append((slot, take))
            rest -= take
    return sorted(plan)


@dataclass(frozen=True)
class SlotState:
    slot: int
    cap: int
    used: int


def resize(slots: Sequence[SlotState], new_cap: int) -> list[SlotState] | None:
    """New caps for a budget changed mid-way: each slot keeps what it used and shares the
    rest evenly; None when the new budget is below what was used already."""
    used = sum(s.used for s in slots)
    if new_cap < used:
        return None
    shares = split(new_cap - used, len(slots))
    return [
        SlotState(s.slot, s.used + share, s.used) for s, share in zip(slots, shares, strict=True)
    ]
