"""Qualification windows and evaluation dates, on the tenant's local calendar.

Days are local dates; a window is an inclusive range of them. An *evaluation point* is the
first day of a period (1 January for a yearly evaluation): on that day the period that just
ended is judged.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from kopilka.domain.tiers.settings import Period, TierSettings

_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def local_day(moment: datetime, timezone: str) -> date:
    """The tenant-local date of an instant."""
    return moment.astimezone(ZoneInfo(timezone)).date()


def local_midnight(day: date, timezone: str) -> datetime:
    """The instant the local ``day`` begins."""
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(timezone))


def period_start(day: date, period: Period) -> date:
    """The first day of the month, quarter or year containing ``day``."""
    months = _MONTHS[period]
    month = (day.month - 1) // months * months + 1
    return date(day.year, month, 1)


def next_period_start(day: date, period: Period) -> date:
    """The first day of the period after the one containing ``day``."""
    start = period_start(day, period)
    index = start.month - 1 + _MONTHS[period]
    return date(start.year + index // 12, index % 12 + 1, 1)


def window(settings: TierSettings, as_of: date) -> tuple[date, date]:
    """The days that count as of ``as_of`` (inclusive at both ends)."""
    days = settings.window.rolling_days
    if days is not None:
        return as_of - timedelta(days=days - 1), as_of
    period = settings.window.calendar_period
    assert period is not None
    return period_start(as_of, period), as_of


def last_evaluation(settings: TierSettings, today: date) -> date:
    """The latest evaluation point on or before ``today``."""
    return period_start(today, settings.evaluation_period)


def next_evaluation(settings: TierSettings, today: date) -> date:
    """The first evaluation point after ``today``."""
    return next_period_start(today, settings.evaluation_period)


def judged_window(settings: TierSettings, point: date) -> tuple[date, date]:
    """The days judged at the evaluation point ``point``: the window as of the day before."""
    return window(settings, point - timedelta(days=1))
