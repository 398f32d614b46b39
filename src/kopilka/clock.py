"""Time as a parameter: services take a clock, tests move it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time, timezone-aware, in UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def ensure_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; naive datetimes are refused, since they hide bugs."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: timestamps must carry a time zone")
    return moment.astimezone(UTC)
