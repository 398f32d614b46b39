"""Expiry policies in the tenant's time zone (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kopilka.domain.ledger.expiry import (
    CalendarExpiry,
    NeverExpires,
    RollingExpiry,
    expires_at,
    parse_policy,
)

MSK = ZoneInfo("Europe/Moscow")  # UTC+3 all year


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def msk(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MSK).astimezone(UTC)


# ---- parsing -----------------------------------------------------------------------------
def test_parse_policy_forms() -> None:
    assert parse_policy(None) == NeverExpires()
    assert parse_policy({}) == NeverExpires()
    assert parse_policy({"kind": "never"}) == NeverExpires()
    assert parse_policy({"kind": "rolling", "days": 365}) == RollingExpiry(days=365)
    assert parse_policy({"kind": "calendar", "period": "quarter", "extra_periods": 1}) == (
        CalendarExpiry(period="quarter", extra_periods=1)
    )
    assert parse_policy({"kind": "calendar", "period": "year"}).extra_periods == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "rolling", "days": 0},
        {"kind": "rolling", "days": 3651},
        {"kind": "rolling"},
        {"kind": "rolling", "days": 30, "extra": 1},
        {"kind": "calendar", "period": "week"},
        {"kind": "calendar", "period": "month", "extra_periods": -1},
        {"kind": "calendar", "period": "month", "extra_periods": 41},
        {"kind": "sometimes"},
    ],
)
def test_parse_policy_refuses_bad_policies(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        parse_policy(data)


def test_never_expires() -> None:
    assert expires_at(NeverExpires(), utc(2026, 1, 15, 9), "Europe/Moscow") is None


# ---- rolling -----------------------------------------------------------------------------
def test_rolling_expires_at_the_end_of_the_local_day_n_days_later() -> None:
    # Earned at noon in Moscow on 15 January: usable through 14 February, Moscow time.
    earned = msk(2026, 1, 15, 12, 0)
    assert expires_at(RollingExpiry(days=30), earned, "Europe/Moscow") == msk(2026, 2, 15)
    assert msk(2026, 2, 15) == utc(2026, 2, 14, 21)


def test_rolling_counts_days_from_the_local_date_not_the_utc_date() -> None:
    # 22:30 UTC on 31 January is already 1 February in Moscow.
    earned = utc(2026, 1, 31, 22, 30)
    assert expires_at(RollingExpiry(days=1), earned, "Europe/Moscow") == msk(2026, 2, 3)
    assert expires_at(RollingExpiry(days=1), earned, "UTC") == utc(2026, 2, 2)


def test_rolling_across_a_daylight_saving_change_keeps_whole_local_days() -> None:
    # Earned late on 20 March in Berlin (CET); 10 days later crosses the switch to CEST.
    # The services pass UTC instants, as the clock gives them.
    berlin = ZoneInfo("Europe/Berlin")
    earned = datetime(2026, 3, 20, 23, 30, tzinfo=berlin).astimezone(UTC)
    got = expires_at(RollingExpiry(days=10), earned, "Europe/Berlin")
    assert got == datetime(2026, 3, 31, 0, 0, tzinfo=berlin)  # usable through 30 March
    # And the other way, into winter time (00:30 local, 10 days later).
    earned = datetime(2026, 10, 21, 0, 30, tzinfo=berlin).astimezone(UTC)
    got = expires_at(RollingExpiry(days=10), earned, "Europe/Berlin")
    assert got == datetime(2026, 11, 1, 0, 0, tzinfo=berlin)  # usable through 31 October


@given(
    earned=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    days=st.integers(min_value=1, max_value=3650),
    zone=st.sampled_from(
        [
            "Europe/Moscow",
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Pacific/Auckland",
        ]
    ),
)
def test_rolling_is_always_a_local_midnight_days_plus_one_local_days_later(
    earned: datetime, days: int, zone: str
) -> None:
    tz = ZoneInfo(zone)
    got = expires_at(RollingExpiry(days=days), earned, zone)
    assert got is not None
    assert got.tzinfo is not None
    assert got.utcoffset() == timedelta(0)
    local = got.astimezone(tz)
    assert (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0)
    assert local.date() == earned.astimezone(tz).date() + timedelta(days=days + 1)
    assert got > earned


# ---- calendar ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("period", "extra", "earned", "expected"),
    [
        # month
        ("month", 0, msk(2026, 1, 15, 12), msk(2026, 2, 1)),
        ("month", 0, msk(2026, 1, 1, 0, 0), msk(2026, 2, 1)),
        ("month", 0, msk(2026, 1, 31, 23, 59), msk(2026, 2, 1)),
        ("month", 1, msk(2026, 1, 15, 12), msk(2026, 3, 1)),
        ("month", 0, msk(2026, 12, 10), msk(2027, 1, 1)),
        ("month", 1, msk(2026, 12, 10), msk(2027, 2, 1)),
        ("month", 11, msk(2026, 1, 10), msk(2027, 1, 1)),
        ("month", 40, msk(2026, 1, 10), msk(2029, 6, 1)),
        # quarter
        ("quarter", 0, msk(2026, 1, 15), msk(2026, 4, 1)),
        ("quarter", 0, msk(2026, 3, 31, 23, 59), msk(2026, 4, 1)),
        ("quarter", 0, msk(2026, 4, 1), msk(2026, 7, 1)),
        ("quarter", 0, msk(2026, 11, 5), msk(2027, 1, 1)),
        ("quarter", 1, msk(2026, 11, 5), msk(2027, 4, 1)),
        ("quarter", 3, msk(2026, 2, 5), msk(2027, 1, 1)),
        ("quarter", 4, msk(2026, 12, 31), msk(2028, 1, 1)),
        # year
        ("year", 0, msk(2026, 1, 1), msk(2027, 1, 1)),
        ("year", 0, msk(2026, 12, 31, 23, 59), msk(2027, 1, 1)),
        ("year", 2, msk(2026, 7, 1), msk(2029, 1, 1)),
    ],
)
def test_calendar_periods(period: str, extra: int, earned: datetime, expected: datetime) -> None:
    policy = CalendarExpiry(period=period, extra_periods=extra)
    assert expires_at(policy, earned, "Europe/Moscow") == expected


@pytest.mark.parametrize(
    ("period", "earned", "moscow", "in_utc"),
    [
        # 22:30 UTC on 31 January is 01:30 on 1 February in Moscow: a different month.
        ("month", utc(2026, 1, 31, 22, 30), msk(2026, 3, 1), utc(2026, 2, 1)),
        # 21:30 UTC on 31 March is 00:30 on 1 April in Moscow: a different quarter.
        ("quarter", utc(2026, 3, 31, 21, 30), msk(2026, 7, 1), utc(2026, 4, 1)),
        # New Year's midnight in Moscow is 21:00 UTC on 31 December.
        ("year", utc(2026, 12, 31, 21, 0), msk(2028, 1, 1), utc(2027, 1, 1)),
        # One second before Moscow's New Year: the same year in both.
        ("year", utc(2026, 12, 31, 20, 59, 59), msk(2027, 1, 1), utc(2027, 1, 1)),
    ],
)
def test_calendar_boundary_depends_on_the_tenant_time_zone(
    period: str, earned: datetime, moscow: datetime, in_utc: datetime
) -> None:
    policy = CalendarExpiry(period=period)
    assert expires_at(policy, earned, "Europe/Moscow") == moscow
    assert expires_at(policy, earned, "UTC") == in_utc


def test_calendar_result_is_utc_and_a_local_midnight() -> None:
    got = expires_at(CalendarExpiry(period="month"), msk(2026, 5, 20), "Europe/Moscow")
    assert got == utc(2026, 5, 31, 21)
    assert got is not None
    assert got.utcoffset() == timedelta(0)


@given(
    earned=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    period=st.sampled_from(["month", "quarter", "year"]),
    extra=st.integers(min_value=0, max_value=40),
)
def test_calendar_is_the_first_local_midnight_of_a_period_start_after_earning(
    earned: datetime, period: str, extra: int
) -> None:
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    got = expires_at(
        CalendarExpiry(period=period, extra_periods=extra),
        earned,
        "Europe/Moscow",
    )
    assert got is not None
    assert got > earned
    local = got.astimezone(MSK)
    assert (local.day, local.hour, local.minute) == (1, 0, 0)
    assert (local.month - 1) % months == 0
    start = earned.astimezone(MSK)
    elapsed = (local.year - start.year) * 12 + local.month - start.month
    # The period of earning ends within ``months``; every extra period adds exactly ``months``.
    assert months * extra < elapsed <= months * (extra + 1)
