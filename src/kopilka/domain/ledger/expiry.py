"""Expiry policies: when points earned at a moment expire, in the tenant's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json


class NeverExpires(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["never"] = "never"


class RollingExpiry(BaseModel):
    """Points expire ``days`` after they were earned (at the end of that local day)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["rolling"] = "rolling"
    days: int = Field(ge=1, le=3650)


class CalendarExpiry(BaseModel):
    """Points expire at the end of the period (month, quarter, year) they were earned in,
    plus ``extra_periods`` whole periods: e.g. quarter + 1 = the end of the next quarter."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["calendar"] = "calendar"
    period: Literal["month", "quarter", "year"]
    extra_periods: int = Field(default=0, ge=0, le=40)


ExpiryPolicy = NeverExpires | RollingExpiry | CalendarExpiry

_MONTHS_IN = {"month": 1, "quarter": 3, "year": 12}


def parse_policy(data: dict[str, Any] | None) -> ExpiryPolicy:
    """Build a policy from its JSON form; ``None`` means never."""
    if not data:
        return NeverExpires()
    kind = data.get("kind")
    if kind == "rolling":
        return RollingExpiry.model_validate(data)
    if kind == "calendar":
        return CalendarExpiry.model_validate(data)
    return NeverExpires.model_validate(data)


def policy_from_input(data: Any) -> ExpiryPolicy:
    """A policy a user gives (tenant settings): like ``parse_policy``, but every value must
    have its exact JSON type, so ``"30"`` or ``true`` are not taken for 30 or 1 days; raises
    pydantic's ``ValidationError``. Stored policies are read back with ``parse_policy``."""
    if data is None:
        return NeverExpires()
    text = to_json(data)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "rolling":
        return RollingExpiry.model_validate_json(text, strict=True)
    if kind == "calendar":
        return CalendarExpiry.model_validate_json(text, strict=True)
    return NeverExpires.model_validate_json(text, strict=True)


def _start_of_local_day_after(moment: datetime, tz: ZoneInfo, days: int) -> datetime:
    """Local midnight ``days + 1`` calendar days after ``moment``'s local date, in UTC.

    Days are counted on the local calendar: adding them to the UTC instant would land an
    hour off across a daylight-saving change and could move the expiry by a whole day.
    """
    local = moment.astimezone(tz).date() + timedelta(days=days + 1)
    return datetime.combine(local, time.min, tzinfo=tz).astimezone(UTC)


def expires_at(policy: ExpiryPolicy, earned_at: datetime, timezone: str) -> datetime | None:
    """The first instant at which the points are no longer valid (UTC), or ``None``."""
    tz = ZoneInfo(timezone)
    if isinstance(policy, NeverExpires):
        return None
    if isinstance(policy, RollingExpiry):
        return _start_of_local_day_after(earned_at, tz, policy.days)
    local = earned_at.astimezone(tz)
    months = _MONTHS_IN[policy.period]
    period_index = (local.month - 1) // months
    first_month_after = period_index * months + months * (1 + policy.extra_periods)
    year = local.year + first_month_after // 12
    month = first_month_after % 12 + 1
    return datetime(year, month, 1, tzinfo=tz).astimezone(UTC)
