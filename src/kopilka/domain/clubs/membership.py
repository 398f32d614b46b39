"""Memberships of clubs: their states, paid periods and who gets the benefits, as pure
functions of the stored row, the club's definition and the moment.

Stored states: ``pending`` (waits for an admin's approval), ``unpaid`` (admitted to a paid
club, no fee paid yet), ``active``, ``grace`` (the paid period is over, the benefits last a
few days more), ``lapsed`` (the fee was not paid in time), ``cancelled`` (no renewal: the
benefits last until the end of the paid period), ``left`` and ``rejected``.

The stored state of a paid membership is brought up to date by the ``clubs_lapsed`` job, but
nothing waits for it: the benefits are worked out from the dates, so a membership whose grace
ended a minute ago gives nothing even if the job has not run yet.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kopilka.domain.clubs.settings import ClubCondition, ClubSettings

STATUSES = (
    "pending",
    "unpaid",
    "active",
    "grace",
    "lapsed",
    "cancelled",
    "left",
    "rejected",
)
# States a new join starts over from (the member may come back).
ENDED = frozenset({"lapsed", "left", "rejected"})


@dataclass(frozen=True)
class Membership:
    """What the rules below need of a stored membership."""

    status: str
    paid_until: datetime | None = None
    grace_until: datetime | None = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Membership:
        return cls(row["status"], row["paid_until"], row["grace_until"])


def effective_status(m: Membership, club: ClubSettings | None, now: datetime) -> str:
    """The state at ``now``, whether or not the lapse job has caught up.

    A membership without a paid period in a club that now has a fee (the club became paid)
    is ``unpaid`` until a payment comes; an ``unpaid`` one of a club that dropped its fee is
    ``active``.
    """
    if m.status == "unpaid" and club is not None and club.fee is None:
        return "active"
    if m.status in ("active", "grace"):
        if m.paid_until is None:
            return "unpaid" if club is not None and club.fee is not None else "active"
        if now < m.paid_until:
            return "active"
        if m.grace_until is not None and now < m.grace_until:
            return "grace"
        return "lapsed"
    return m.status


def counted_status(
    status: str, club: ClubSettings | None, *, no_fee: bool, paid_over: bool, grace_over: bool
) -> str:
    """:func:`effective_status` from a count's flags (whether ``paid_until`` is NULL, and
    whether the paid period and the grace are over), for counts grouped in SQL."""
    if status == "unpaid" and club is not None and club.fee is None:
        return "active"
    if status not in ("active", "grace"):
        return status
    if no_fee:
        return "unpaid" if club is not None and club.fee is not None else "active"
    if not paid_over:
        return "active"
    return "grace" if not grace_over else "lapsed"


def has_benefits(m: Membership, club: ClubSettings | None, now: datetime) -> bool:
    """Whether the membership itself counts now (a condition club also needs its condition)."""
    status = effective_status(m, club, now)
    if status in ("active", "grace"):
        return True
    if status == "cancelled":
        return m.paid_until is not None and now < m.paid_until
    return False


def is_expired(m: Membership, club: ClubSettings | None, now: datetime) -> bool:
    """Lapsed, or cancelled and past its paid period: what answers ``membership_expired``."""
    status = effective_status(m, club, now)
    if status == "lapsed":
        return True
    return status == "cancelled" and not has_benefits(m, club, now)


def condition_met(
    condition: ClubCondition | None, tier: str | None, segments: Iterable[str]
) -> bool:
    """A member of any listed tier or segment meets the condition."""
    if condition is None:
        return False
    if tier is not None and tier in condition.tiers:
        return True
    return bool(set(segments) & set(condition.segments))


def add_period(start: datetime, period: str, timezone: str) -> datetime:
    """One month or year after ``start`` on the tenant's wall clock; the 31st becomes the
    last day of a shorter month, 29 February the 28th."""
    local = start.astimezone(ZoneInfo(timezone))
    months = 12 if period == "year" else 1
    years, month0 = divmod(local.month - 1 + months, 12)
    year, month = local.year + years, month0 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).astimezone(UTC)


def add_days(moment: datetime, days: int, timezone: str) -> datetime:
    """``days`` calendar days later on the tenant's wall clock (a DST change is no hour off)."""
    local = moment.astimezone(ZoneInfo(timezone))
    return (local + timedelta(days=days)).astimezone(UTC)


@dataclass(frozen=True)
class PaidPeriod:
    start: datetime
    end: datetime
    grace_until: datetime
    continues: bool  # a renewal that follows the previous period without a gap


def next_period(
    m: Membership | None, club: ClubSettings, paid_at: datetime, timezone: str
) -> PaidPeriod:
    """The period a payment made at ``paid_at`` buys.

    A payment made while the membership still ran or was in grace (even if reported after
    the lapse job ran), or cancelled but not yet ended, continues it from the end of the paid
    period: payments made in advance stack up, and days of grace are not free days. Any other
    payment starts a period when it was made.
    """
    assert club.fee is not None
    continues = (
        m is not None
        and m.status in ("active", "grace", "cancelled", "lapsed")
        and m.paid_until is not None
        and m.grace_until is not None
        and paid_at < m.grace_until
    )
    start = m.paid_until if continues and m is not None and m.paid_until else paid_at
    end = add_period(start, club.fee.period, timezone)
    return PaidPeriod(start, end, add_days(end, club.fee.grace_days, timezone), continues)


def status_after_payment(period: PaidPeriod, now: datetime) -> str:
    """A payment reported late may buy a period that is already over."""
    if now < period.end:
        return "active"
    if now < period.grace_until:
        return "grace"
    return "lapsed"


def normalize_invitation(code: str) -> str:
    """Invitation codes are read case-insensitively, with spaces and dashes ignored."""
    return "".join(ch for ch in code.upper() if ch not in " -\t")
