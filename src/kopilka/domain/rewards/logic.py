"""Decisions about rewards and orders, free of I/O: what a member pays, whether they see a
reward, how much of a limit is used in the current period, when stock is low, and which
fulfilment transitions are allowed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from kopilka.domain.errors import Conflict
from kopilka.domain.rewards.definition import RewardDefinition, RewardKind
from kopilka.domain.rules.facts import MemberFacts


class OrderStatus(StrEnum):
    PENDING = "pending"  # placed; the item is reserved at its stock location
    READY = "ready"  # waiting for the member at a pickup outlet
    ISSUED = "issued"  # handed over (or, for non-material rewards, delivered at once)
    CANCELLED = "cancelled"  # points and stock returned


class OrderAction(StrEnum):
    READY = "ready"
    ISSUE = "issue"
    CANCEL = "cancel"


_TARGET = {
    OrderAction.READY: OrderStatus.READY,
    OrderAction.ISSUE: OrderStatus.ISSUED,
    OrderAction.CANCEL: OrderStatus.CANCELLED,
}
_ALLOWED_FROM = {
    OrderAction.READY: frozenset({OrderStatus.PENDING}),
    OrderAction.ISSUE: frozenset({OrderStatus.PENDING, OrderStatus.READY}),
    OrderAction.CANCEL: frozenset({OrderStatus.PENDING, OrderStatus.READY}),
}


def initial_status(kind: RewardKind) -> OrderStatus:
    """A material reward waits to be handed over; every other kind is delivered at once."""
    return OrderStatus.PENDING if kind is RewardKind.MATERIAL else OrderStatus.ISSUED


def transition(status: OrderStatus, action: OrderAction) -> OrderStatus | None:
    """The status ``action`` leads to, or None when the order is already there (a repeat
    answers the same); a transition not allowed raises 409 ``order_<status>``."""
    target = _TARGET[action]
    if status is target:
        return None
    if status not in _ALLOWED_FROM[action]:
        raise Conflict(
            f"The order is {status.value}; it cannot be {target.value} now.",
            code=f"order_{status.value}",
        )
    return target


def unit_cost(definition: RewardDefinition, tier: str | None) -> int:
    """Points per unit for a member of ``tier``: the tier's price, else the base cost."""
    if tier is not None and tier in definition.cost_by_tier:
        return definition.cost_by_tier[tier]
    return definition.cost


def is_visible(definition: RewardDefinition, facts: MemberFacts, now: datetime) -> bool:
    """Whether the member may see (and so redeem) the reward at ``now``."""
    vis = definition.visibility
    if vis.from_ is not None and now < vis.from_:
        return False
    if vis.until is not None and now >= vis.until:
        return False
    if vis.tiers and facts.tier not in vis.tiers:
        return False
    if vis.segments and not facts.segments & set(vis.segments):
        return False
    return not (vis.clubs and not facts.clubs & set(vis.clubs))


def period_start(period: str | None, now: datetime, timezone: str) -> datetime | None:
    """The start of the calendar period containing ``now`` in the tenant's time zone (weeks
    start on Monday), as a UTC instant; None for a lifetime limit."""
    if period is None:
        return None
    local = now.astimezone(ZoneInfo(timezone))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    elif period == "year":
        day = day.replace(month=1, day=1)
    # Rebuild from the date: replace() keeps the old UTC offset across a DST change.
    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))
    return start.astimezone(UTC)


def left(limit: int | None, used: int) -> int | None:
    """What is left of a limit (never below zero); None when there is no limit."""
    return None if limit is None else max(limit - used, 0)


def low_stock_alert(quantity: int, threshold: int | None, alerted: bool) -> tuple[bool, bool]:
    """(raise an event now, the alert flag afterwards) for a stock level just changed.

    One event per crossing: it is raised when the quantity falls to or below the threshold
    and no alert is outstanding; the flag re-arms once the quantity is above the threshold
    again (a delivery, a cancelled order) or the threshold is removed.
    """
    if threshold is None or quantity > threshold:
        return False, False
    return (not alerted), True


def status_text(status: OrderStatus, outlet: str | None, points_back: bool) -> dict[str, str]:
    """How the order's state reads to the member, in ru and en."""
    if status is OrderStatus.PENDING:
        return {"ru": "Заказ принят и готовится к выдаче", "en": "Order placed, being prepared"}
    if status is OrderStatus.READY:
        where_ru = f": {outlet}" if outlet else ""
        where_en = f" at {outlet}" if outlet else ""
        return {"ru": f"Готов к выдаче{where_ru}", "en": f"Ready for pickup{where_en}"}
    if status is OrderStatus.ISSUED:
        return {"ru": "Выдан", "en": "Issued"}
    if points_back:
        return {"ru": "Отменён, баллы возвращены", "en": "Cancelled, points returned"}
    return {"ru": "Отменён", "en": "Cancelled"}
