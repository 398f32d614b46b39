"""A campaign's time: its window in the tenant's time zone, the status it has at a moment,
and the periods its per-member limits count in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from kopilka.domain.campaigns.definition import Period, Schedule

# Stored statuses; "active" is never stored: a scheduled campaign is active in its window.
DRAFT, SCHEDULED, ACTIVE, PAUSED, ENDED = "draft", "scheduled", "active", "paused", "ended"


def to_instant(moment: datetime, timezone: str) -> datetime:
    """A wall-clock time in the tenant's zone (or an aware moment) as a UTC instant."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.astimezone(UTC)


def window(schedule: Schedule, timezone: str) -> tuple[datetime, datetime]:
    """``[start, end)`` as UTC instants, resolved in the tenant's zone of today (a change of
    the tenant's zone moves wall-clock schedules with it)."""
    return to_instant(schedule.start, timezone), to_instant(schedule.end, timezone)


def effective_status(stored: str, span: tuple[datetime, datetime] | None, now: datetime) -> str:
    """What a campaign is at ``now``: a scheduled one is active in its window and ended
    after it; a paused one whose window has passed is ended too."""
    if stored not in (SCHEDULED, PAUSED) or span is None:
        return stored
    start, end = span
    if now >= end:
        return ENDED
    if stored == PAUSED:
        return PAUSED
    return ACTIVE if now >= start else SCHEDULED


def local_day(moment: datetime, timezone: str) -> date:
    return moment.astimezone(ZoneInfo(timezone)).date()


def period_start(period: Period, day: date) -> date | None:
    """The first day of the limit's period containing ``day``; None: the whole campaign.
    Weeks are ISO weeks (Monday first), months calendar months."""
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return None
