"""What a receipt does to a stamp card: the stamps it earns, the free items it takes, and
what a refund or a correction later takes back. Pure arithmetic, no I/O.

A card holds ``balance`` stamps (never below zero) and, under the ``debt`` refund policy,
``debt`` stamps owed: stamps taken back by a refund after they were spent on a reward.
New stamps pay the debt first; while there is debt the balance is zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from kopilka.domain.rules.engine import LineResult
from kopilka.domain.rules.facts import Line
from kopilka.domain.stamps.settings import StampCardSettings


@dataclass(frozen=True)
class CardState:
    balance: int = 0
    debt: int = 0


@dataclass
class LineStamps:
    """One qualifying line's part in a card's plan."""

    position: int  # index into the receipt's lines
    line: int  # the line's number on the receipt
    qty: Decimal
    stamps: int = 0  # stamps the line earns (per unit or per line)
    free: int = 0  # units made free by the card
    discount: int = 0  # what the free units take off the line, minor units


@dataclass
class CardPlan:
    before: CardState
    earned: int  # stamps this receipt earns
    rewards: int  # free items taken on this receipt (each spends a full card)
    after: CardState
    lines: list[LineStamps] = field(default_factory=list)
    # per="receipt": the one stamp belongs to these lines together; refunding all of them
    # takes it back.
    receipt_lines: list[int] = field(default_factory=list)

    @property
    def discount(self) -> int:
        return sum(li.discount for li in self.lines)


@dataclass
class Taken:
    """Units and money of each line already given away by earlier cards on the receipt."""

    units: dict[int, int] = field(default_factory=dict)
    money: dict[int, int] = field(default_factory=dict)


def whole_units(qty: Decimal) -> int | None:
    """The count of a line sold by the piece; ``None`` for weighed goods."""
    if qty <= 0 or qty != qty.to_integral_value():
        return None
    return int(qty)


def add_stamps(state: CardState, stamps: int) -> CardState:
    """New stamps pay the debt first."""
    paid = min(state.debt, stamps)
    return CardState(state.balance + stamps - paid, state.debt - paid)


def to_go(state: CardState, size: int) -> int:
    """Stamps still needed for the next reward (0 when the card is full)."""
    return max(0, size - state.balance) + state.debt


def plan_card(
    card: StampCardSettings,
    lines: Sequence[Line],
    results: Sequence[LineResult],
    rooms: Sequence[int],
    state: CardState,
    *,
    redeem: bool,
    taken: Taken | None = None,
) -> CardPlan:
    """Stamps earned and free items taken by one card on one receipt.

    ``rooms`` is how much more discount each line may take. When ``redeem`` (and the card's
    reward is a free item), the cheapest qualifying units become free, as many as the card
    pays for: stamps already on it, and those the receipt's other qualifying units earn
    ("buy 6, the 7th is free" works within one receipt too). A free unit earns no stamp.
    Lines priced 0 neither earn stamps nor become free. ``taken`` carries what earlier
    cards already made free on the same receipt; it is updated.
    """
    taken = taken if taken is not None else Taken()
    size = card.stamps
    qualifying = [
        pos
        for pos, line in enumerate(lines)
        if line.amount > 0 and card.qualifies(line) and _units_left(line, pos, taken) != 0
    ]
    # Free candidates, cheapest first: (price per unit still to pay, line number, pos,
    # value given per unit, how many units fit in the line's room).
    groups: list[tuple[int, int, int, int, int]] = []
    if redeem and card.reward.free_item is not None:
        cap = card.reward.free_item.max_price
        for pos in qualifying:
            count = _units_left(lines[pos], pos, taken)
            if count is None or count <= 0:
                continue
            remaining = results[pos].amount - results[pos].discount - taken.money.get(pos, 0)
            per_unit = remaining // count
            value = per_unit if cap is None else min(per_unit, cap)
            room = rooms[pos] - taken.money.get(pos, 0)
            if value <= 0 or room < value:
                continue  # nothing to give, or the price floor would be crossed
            groups.append((per_unit, lines[pos].index, pos, value, min(count, room // value)))
        groups.sort()

    def free_units(rewards: int) -> dict[int, int]:
        chosen: dict[int, int] = {}
        left = rewards
        for _price, _line, pos, _value, fit in groups:
            if left <= 0:
                break
            use = min(fit, left)
            chosen[pos] = use
            left -= use
        return chosen

    def earned_with(free: dict[int, int]) -> tuple[int, dict[int, int]]:
        by_line: dict[int, int] = {}
        paid_lines: list[int] = []
        for pos in qualifying:
            count = _units_left(lines[pos], pos, taken)
            paid = None if count is None else count - free.get(pos, 0)
            if card.per == "unit":
                # Weighed goods: a stamp per whole unit of quantity (1.5 kg earns 1).
                stamps = int(lines[pos].qty) if paid is None else paid
            else:
                stamps = 1 if paid is None or paid > 0 else 0
            if stamps > 0:
                paid_lines.append(pos)
                by_line[pos] = stamps
        if card.per == "receipt":
            return (1 if paid_lines else 0), {}
        return sum(by_line.values()), by_line

    def affordable(rewards: int) -> bool:
        earned, _ = earned_with(free_units(rewards))
        return add_stamps(state, earned).balance >= rewards * size

    # The more units are free, the fewer stamps are earned: the largest affordable count
    # is found by bisection (a receipt may hold a great many units).
    low, high = 0, sum(fit for *_rest, fit in groups)
    high = min(high, (state.balance + earned_with({})[0]) // size)
    while low < high:
        middle = (low + high + 1) // 2
        if affordable(middle):
            low = middle
        else:
            high = middle - 1
    rewards = low
    free = free_units(rewards)
    earned, by_line = earned_with(free)
    after = add_stamps(state, earned)
    after = CardState(after.balance - rewards * size, after.debt)
    value_of = {pos: value for _price, _line, pos, value, _fit in groups}
    plan_lines = []
    for pos in qualifying:
        units = free.get(pos, 0)
        plan_lines.append(
            LineStamps(
                pos,
                lines[pos].index,
                lines[pos].qty,
                stamps=by_line.get(pos, 0),
                free=units,
                discount=units * value_of.get(pos, 0),
            )
        )
        if units:
            taken.units[pos] = taken.units.get(pos, 0) + units
            taken.money[pos] = taken.money.get(pos, 0) + units * value_of[pos]
    receipt_lines = []
    if card.per == "receipt" and earned:
        receipt_lines = [li.line for li in plan_lines if _has_paid_units(li)]
    return CardPlan(state, earned, rewards, after, plan_lines, receipt_lines)


def _units_left(line: Line, pos: int, taken: Taken) -> int | None:
    count = whole_units(line.qty)
    return None if count is None else count - taken.units.get(pos, 0)


def _has_paid_units(line: LineStamps) -> bool:
    count = whole_units(line.qty)
    return count is None or count > line.free


# ---- refunds -------------------------------------------------------------------------------
def proportional(total: int, part: Decimal, whole: Decimal) -> int:
    """``floor(total × part / whole)``: cumulative shares that add up exactly."""
    if whole <= 0:
        return 0
    return int((Decimal(total) * part / whole).to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True)
class RefundEffect:
    stamps_removed: int  # stamps the refunded units had earned
    rewards_returned: int  # free units given back: their stamps return to the card


def refund_effect(
    lines: dict[int, dict[str, str | int]],
    receipt_lines: Sequence[int],
    before: dict[int, Decimal],
    after: dict[int, Decimal],
) -> RefundEffect:
    """What refunding a receipt's lines from ``before`` to ``after`` quantities (cumulative,
    by line number) takes from a card. ``lines`` is the purchase's record: per line number,
    its ``qty``, ``stamps`` and ``free`` units. Stamps and free units go back in proportion
    to the quantity, cumulatively (``floor(total × refunded so far / bought)``), so partial
    refunds add up exactly to a full one."""
    removed = 0
    returned = 0
    for number, record in lines.items():
        qty = Decimal(str(record["qty"]))
        old, new = before.get(number, Decimal(0)), after.get(number, Decimal(0))
        if new == old:
            continue
        stamps, free = int(record.get("stamps", 0)), int(record.get("free", 0))
        removed += proportional(stamps, new, qty) - proportional(stamps, old, qty)
        returned += proportional(free, new, qty) - proportional(free, old, qty)
    if receipt_lines:
        # One stamp for the whole receipt: it goes when the last of its lines is gone.
        def gone(refunded: dict[int, Decimal]) -> bool:
            return all(
                refunded.get(n, Decimal(0)) >= Decimal(str(lines[n]["qty"]))
                for n in receipt_lines
                if n in lines
            )

        if gone(after) and not gone(before):
            removed += 1
    return RefundEffect(removed, returned)


@dataclass(frozen=True)
class Removal:
    after: CardState
    debt_added: int
    forgiven: int


def remove_stamps(state: CardState, stamps: int, *, debt: bool) -> Removal:
    """Take ``stamps`` off the card; what the balance cannot cover becomes debt (or is
    forgiven). The balance never goes below zero."""
    take = min(state.balance, stamps)
    short = stamps - take
    if debt:
        return Removal(CardState(state.balance - take, state.debt + short), short, 0)
    return Removal(CardState(state.balance - take, state.debt), 0, short)
