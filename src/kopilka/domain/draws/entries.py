"""Which receipts make entries, and how many: pure rules, the service runs the SQL.

A receipt counts when it is confirmed, belongs to a member, was made inside the window
(tenant-local days), at one of the outlets and through one of the channels named (all when
none are), and what the member paid in money for it, less what was refunded, is at least
``min_receipt``. A receipt refunded in full never counts. It makes ``per_receipt`` entries,
times the multiplier of the member's tier (1 for a tier not named).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from kopilka.domain.draws.definition import DrawDefinition, EntryRules


def local_midnight(day: date, timezone: str) -> datetime:
    """The instant (UTC) a tenant-local day starts."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def local_day(moment: datetime, timezone: str) -> date:
    return moment.astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class Window:
    """``[starts_at, ends_at)`` in UTC, and the moment the draw may run."""

    starts_at: datetime
    ends_at: datetime
    draw_at: datetime


def window(definition: DrawDefinition, timezone: str) -> Window:
    return Window(
        starts_at=local_midnight(definition.starts_on, timezone),
        ends_at=local_midnight(definition.ends_on + timedelta(days=1), timezone),
        draw_at=local_midnight(definition.draw_on, timezone),
    )


@dataclass(frozen=True)
class RefundedLine:
    """A receipt line with something refunded: what its refund took back is derived."""

    amount: int
    discount: int
    points_money: int
    qty: Decimal
    refunded_qty: Decimal


def refunded_money(line: RefundedLine) -> int:
    """Money given back for the line so far: ``floor(paid × refunded / qty)``, as refunds
    compute it (so partial refunds add up exactly)."""
    if line.qty <= 0:
        return 0
    paid = line.amount - line.discount - line.points_money
    return int(Decimal(paid) * Decimal(line.refunded_qty) // Decimal(line.qty))


def fully_refunded(lines: Iterable[RefundedLine]) -> bool:
    """Every line refunded in full (a receipt with no line left)."""
    return all(line.refunded_qty >= line.qty for line in lines)


def net_paid(total_pay: int, lines: Iterable[RefundedLine]) -> int:
    """What the member paid in money for the receipt, less what refunds gave back."""
    return total_pay - sum(refunded_money(line) for line in lines)


def weight(rules: EntryRules, tier: str | None) -> int:
    """Entries one qualifying receipt makes for a member of ``tier``."""
    multiplier = rules.multiplier_by_tier.get(tier, 1) if tier is not None else 1
    return rules.per_receipt * multiplier


def qualifies(rules: EntryRules, paid: int, all_refunded: bool) -> bool:
    return not all_refunded and paid >= rules.min_receipt
