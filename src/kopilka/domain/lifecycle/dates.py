"""The calendar of the life-cycle rewards, pure: which birthdays and anniversaries are due on
a tenant-local day, when a cap period starts, and how a reward is described.

Days are the tenant's local days. 29 February is celebrated on 28 February in other years,
for birthdays and for anniversaries of an enrolment on 29 February alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kopilka.domain.lifecycle.settings import PROFILE_FIELDS

CAP_PERIODS = ("day", "week", "month", "lifetime")


def celebrated(month: int, day: int, year: int) -> date:
    """The day a (month, day) is celebrated in ``year``: 29 February falls on the 28th in
    years without it."""
    try:
        return date(year, month, day)
    except ValueError:
        if (month, day) == (2, 29):
            return date(year, 2, 28)
        raise


def window(today: date, days_before: int, days_after: int) -> tuple[date, date]:
    """The days whose celebration is due today: from ``days_after`` ago (a late job still
    gives it) to ``days_before`` ahead (given early), inclusive."""
    return today - timedelta(days=days_after), today + timedelta(days=days_before)


def _days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def birthdays_due(
    today: date, days_before: int, days_after: int
) -> dict[int, set[tuple[int, int]]]:
    """(month, day) pairs whose birthday is due today, by the year it is celebrated in.

    A 28 February in a year without a 29th also brings the members born on 29 February. The
    year is that of the celebrated day, so a window across New Year gives the right key.
    """
    first, last = window(today, days_before, days_after)
    due: dict[int, set[tuple[int, int]]] = {}
    for day in _days(first, last):
        pairs = due.setdefault(day.year, set())
        pairs.add((day.month, day.day))
        if (day.month, day.day) == (2, 28) and celebrated(2, 29, day.year) == day:
            pairs.add((2, 29))
    return due


def birthday_year(
    month: int, day: int, today: date, days_before: int, days_after: int
) -> int | None:
    """The year whose birthday of (month, day) is due today, or None."""
    first, last = window(today, days_before, days_after)
    for year in (today.year - 1, today.year, today.year + 1):
        if first <= celebrated(month, day, year) <= last:
            return year
    return None


def anniversary(enrolled: date, years: int) -> date:
    """The ``years``-th anniversary of an enrolment on ``enrolled``."""
    return celebrated(enrolled.month, enrolled.day, enrolled.year + years)


@dataclass(frozen=True)
class EnrolmentRange:
    """Members enrolled on local days ``first``..``last`` (inclusive) have their
    ``years``-th anniversary due."""

    years: int
    first: date
    last: date


def _shift(day: date, years: int) -> date:
    return celebrated(day.month, day.day, day.year + years)


def anniversaries_due(
    today: date, days_before: int, days_after: int, earliest: date
) -> list[EnrolmentRange]:
    """For each anniversary number, the enrolment days whose anniversary is due today.

    An anniversary is a non-decreasing function of the enrolment day, so each number's
    enrolment days form one range; its ends are found next to the naive shift by a few
    days, which covers 29 February both ways.
    """
    first, last = window(today, days_before, days_after)
    ranges = []
    for years in range(1, last.year - earliest.year + 1):
        low = _shift(first, -years) - timedelta(days=2)
        while anniversary(low, years) < first:
            low += timedelta(days=1)
        high = _shift(last, -years) + timedelta(days=2)
        while anniversary(high, years) > last:
            high -= timedelta(days=1)
        if low <= high and high >= earliest:
            ranges.append(EnrolmentRange(years, max(low, earliest), high))
    return ranges


def anniversary_years(enrolled: date, today: date, days_before: int, days_after: int) -> int | None:
    """Which anniversary of an enrolment on ``enrolled`` is due today, or None."""
    first, last = window(today, days_before, days_after)
    for years in range(max(1, first.year - enrolled.year - 1), last.year - enrolled.year + 1):
        if first <= anniversary(enrolled, years) <= last:
            return years
    return None


def local_midnight(day: date, timezone: str) -> datetime:
    """The instant (UTC) a tenant-local day begins."""
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def local_today(now: datetime, timezone: str) -> date:
    return now.astimezone(ZoneInfo(timezone)).date()


def period_start(period: str, now: datetime, timezone: str) -> datetime | None:
    """When the cap period containing ``now`` began (UTC): the local day, the ISO week from
    Monday, the calendar month; None for ``lifetime``."""
    today = local_today(now, timezone)
    if period == "day":
        return local_midnight(today, timezone)
    if period == "week":
        return local_midnight(today - timedelta(days=today.weekday()), timezone)
    if period == "month":
        return local_midnight(today.replace(day=1), timezone)
    if period == "lifetime":
        return None
    raise ValueError(f"unknown cap period {period!r}")


def missing_profile(member: Mapping[str, Any], required: Iterable[str]) -> list[str]:
    """The required profile fields the member has not filled in, in a stable order."""
    wanted = set(required)
    present = {
        "phone": bool(member.get("phone")),
        "email": bool(member.get("email")),
        "name": bool(member.get("name")),
        "birthday": bool(member.get("birth_month")),
    }
    return [f for f in PROFILE_FIELDS if f in wanted and not present[f]]


def coupon_description(
    benefit: Mapping[str, Any], valid_until: str, currency: str = "RUB"
) -> dict[str, str]:
    """A coupon in plain words, ru and en: what it gives and the last day it is valid."""
    kind, value = next(iter(benefit.items())) if benefit else ("", None)
    if kind == "discount_percent":
        ru, en = f"скидка {value}%", f"{value}% off"
    elif kind == "discount_amount":
        amount: int = value.get("value", 0) if isinstance(value, dict) else int(value or 0)
        whole, cents = divmod(amount, 100)  # minor units, shown without floats
        money = f"{whole:,}" + (f".{cents:02d}" if cents else "")
        sign = "₽" if currency == "RUB" else currency
        ru = f"скидка {money.replace(',', chr(0xA0))} {sign}"
        en = f"{money} {currency} off"
    elif kind == "points_multiplier":
        ru, en = f"баллы ×{value}", f"points ×{value}"
    elif kind == "gift":
        sku = (value.get("name") or value.get("sku")) if isinstance(value, dict) else value
        ru, en = f"подарок: {sku}", f"a gift: {sku}"
    else:
        ru, en = "бонус к покупке", "a purchase benefit"
    return {
        "ru": f"Купон: {ru}, действует до {valid_until} включительно",
        "en": f"Coupon: {en}, valid through {valid_until}",
    }
