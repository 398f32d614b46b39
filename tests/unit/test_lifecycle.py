"""The life-cycle calendar (birthdays, 29 February, anniversaries, cap periods), profile
completeness, coupon wording, and the document sections with their error paths."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.domain.ledger.expiry import RollingExpiry, expires_at
from kopilka.domain.lifecycle.dates import (
    anniversaries_due,
    anniversary,
    anniversary_years,
    birthday_year,
    birthdays_due,
    celebrated,
    coupon_description,
    missing_profile,
    period_start,
)
from kopilka.domain.rules.document import compile_program, validate_document
from kopilka.services.ledger_book import last_day


# ---- birthdays -----------------------------------------------------------------------------
def test_29_february_is_celebrated_on_the_28th_in_other_years() -> None:
    assert celebrated(2, 29, 2026) == date(2026, 2, 28)
    assert celebrated(2, 29, 2028) == date(2028, 2, 29)
    assert celebrated(5, 17, 2026) == date(2026, 5, 17)
    with pytest.raises(ValueError, match="day is out of range"):
        celebrated(2, 30, 2028)


def test_a_birthday_on_29_february_in_a_non_leap_year() -> None:
    due = birthdays_due(date(2026, 2, 28), 0, 0)
    assert due == {2026: {(2, 28), (2, 29)}}
    assert birthday_year(2, 29, date(2026, 2, 28), 0, 0) == 2026
    assert birthday_year(2, 29, date(2026, 3, 1), 0, 0) is None
    # In a leap year the 28th and the 29th are separate days.
    assert birthdays_due(date(2028, 2, 28), 0, 0) == {2028: {(2, 28)}}
    assert birthdays_due(date(2028, 2, 29), 0, 0) == {2028: {(2, 29)}}
    assert birthday_year(2, 29, date(2028, 2, 28), 0, 0) is None


def test_a_late_job_still_finds_birthdays_within_days_after() -> None:
    due = birthdays_due(date(2026, 5, 20), 0, 3)
    assert due == {2026: {(5, 17), (5, 18), (5, 19), (5, 20)}}
    assert birthday_year(5, 17, date(2026, 5, 20), 0, 3) == 2026
    assert birthday_year(5, 16, date(2026, 5, 20), 0, 3) is None


def test_a_window_across_new_year_keys_by_the_celebrated_year() -> None:
    """A week early on 28 December gives 2 January's birthday of the next year."""
    due = birthdays_due(date(2026, 12, 28), 7, 0)
    assert (1, 2) in due[2027]
    assert (12, 30) in due[2026]
    assert birthday_year(1, 2, date(2026, 12, 28), 7, 0) == 2027
    # And a late run on 2 January still gives 30 December's of the year before.
    assert birthday_year(12, 30, date(2027, 1, 2), 0, 3) == 2026


@given(
    today=st.dates(min_value=date(2001, 1, 1), max_value=date(2098, 12, 31)),
    month=st.integers(1, 12),
    day=st.integers(1, 31),
    before=st.integers(0, 31),
    after=st.integers(0, 31),
)
def test_the_sql_selection_and_the_check_agree(
    today: date, month: int, day: int, before: int, after: int
) -> None:
    """``birthdays_due`` (what the job selects) and ``birthday_year`` (what it re-checks
    under the lock) say the same for every day and window."""
    try:
        celebrated(month, day, 2000)
    except ValueError:
        return
    due = birthdays_due(today, before, after)
    selected = {year for year, pairs in due.items() if (month, day) in pairs}
    year = birthday_year(month, day, today, before, after)
    assert selected == ({year} if year is not None else set())


# ---- anniversaries -------------------------------------------------------------------------
def test_anniversaries() -> None:
    assert anniversary(date(2024, 2, 29), 1) == date(2025, 2, 28)
    assert anniversary(date(2024, 2, 29), 4) == date(2028, 2, 29)
    assert anniversary_years(date(2024, 2, 29), date(2025, 2, 28), 0, 0) == 1
    assert anniversary_years(date(2024, 2, 29), date(2025, 3, 1), 0, 0) is None
    assert anniversary_years(date(2025, 3, 10), date(2026, 3, 12), 0, 3) == 1
    assert anniversary_years(date(2026, 3, 10), date(2026, 3, 10), 0, 3) is None  # day 0


def test_enrolment_ranges_cover_29_february() -> None:
    ranges = anniversaries_due(date(2025, 2, 28), 0, 0, date(2020, 1, 1))
    by_years = {r.years: (r.first, r.last) for r in ranges}
    assert by_years[1] == (date(2024, 2, 28), date(2024, 2, 29))
    assert by_years[5] == (date(2020, 2, 28), date(2020, 2, 29))
    assert by_years[2] == (date(2023, 2, 28), date(2023, 2, 28))
    # No range reaches before the earliest enrolment.
    assert max(by_years) == 5


@given(
    today=st.dates(min_value=date(2010, 1, 1), max_value=date(2040, 12, 31)),
    enrolled=st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31)),
    before=st.integers(0, 31),
    after=st.integers(0, 31),
)
def test_enrolment_ranges_and_the_check_agree(
    today: date, enrolled: date, before: int, after: int
) -> None:
    ranges = anniversaries_due(today, before, after, date(2000, 1, 1))
    selected = {r.years for r in ranges if r.first <= enrolled <= r.last}
    years = anniversary_years(enrolled, today, before, after)
    assert selected == ({years} if years is not None else set())


# ---- caps, profiles, coupons ---------------------------------------------------------------
def test_cap_periods_start_at_local_midnights() -> None:
    # 2026-01-15 (a Thursday) 22:30 UTC is already the 16th in Moscow (UTC+3).
    now = datetime(2026, 1, 15, 22, 30, tzinfo=UTC)
    tz = "Europe/Moscow"
    assert period_start("day", now, tz) == datetime(2026, 1, 15, 21, 0, tzinfo=UTC)
    assert period_start("week", now, tz) == datetime(2026, 1, 11, 21, 0, tzinfo=UTC)
    assert period_start("month", now, tz) == datetime(2025, 12, 31, 21, 0, tzinfo=UTC)
    assert period_start("lifetime", now, tz) is None
    with pytest.raises(ValueError, match="unknown cap period"):
        period_start("year", now, tz)


def test_missing_profile_fields() -> None:
    member: dict[str, Any] = {"phone": "+79161234567", "email": None, "name": " ", "birth_month": 5}
    assert missing_profile(member, ["email", "phone", "birthday"]) == ["email"]
    assert missing_profile({}, ["name", "phone"]) == ["phone", "name"]
    assert missing_profile({}, []) == []


@pytest.mark.parametrize(
    ("benefit", "ru", "en"),
    [
        ({"discount_percent": 10}, "скидка 10%", "10% off"),
        ({"discount_amount": {"value": 150050}}, "скидка 1\u00a0500.50 ₽", "1,500.50 RUB off"),
        ({"discount_amount": 20000}, "скидка 200 ₽", "200 RUB off"),
        ({"points_multiplier": 2}, "баллы ×2", "points ×2"),
        ({"gift": {"sku": "CROISSANT"}}, "подарок: CROISSANT", "a gift: CROISSANT"),
        ({"points_fixed": 100}, "бонус к покупке", "a purchase benefit"),
    ],
)
def test_coupon_descriptions(benefit: dict[str, Any], ru: str, en: str) -> None:
    text = coupon_description(benefit, "2026-04-30")
    assert text == {
        "ru": f"Купон: {ru}, действует до 2026-04-30 включительно",
        "en": f"Coupon: {en}, valid through 2026-04-30",
    }


# ---- the document sections -----------------------------------------------------------------
FULL: dict[str, Any] = {
    "type": "bonus",
    "lifecycle": {
        "welcome": {
            "points": 100,
            "on": "enrolment",
            "require_complete_profile": ["phone", "email"],
            "label": {"ru": "Добро пожаловать", "en": "Welcome"},
        },
        "birthday": {"points": 500, "days_before": 3, "days_after": 7, "expires_in_days": 30},
        "anniversary": {"coupon": {"benefit": {"discount_percent": 15}, "valid_days": 14}},
        "win_back": {"inactive_days": 90, "points": 200, "period_days": 180},
    },
    "events": [
        {"name": "review_left", "points": 50, "caps": {"day": 1, "lifetime": 10}},
        {"name": "app_installed", "coupon": {"benefit": {"gift": {"sku": "COFFEE"}}}},
        {"name": "survey_answered"},
    ],
}


def test_a_full_lifecycle_document_compiles() -> None:
    program = compile_program(FULL, "main", 1)
    lifecycle = program.settings.lifecycle
    assert lifecycle.welcome is not None
    assert lifecycle.welcome.require_complete_profile == [
        "phone",
        "email",
    ]
    assert lifecycle.birthday is not None
    assert lifecycle.birthday.expires_in_days == 30
    assert lifecycle.anniversary is not None
    assert lifecycle.anniversary.points == 0
    assert lifecycle.win_back is not None
    assert lifecycle.win_back.period_days == 180
    assert [e.name for e in program.settings.events] == [
        "review_left",
        "app_installed",
        "survey_answered",
    ]
    assert program.settings.events[0].caps.day == 1
    assert not program.settings.events[2].gives_anything
    assert validate_document({"type": "bonus"}) == []


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"lifecycle": {"welcome": {"points": -1}}}, ["lifecycle", "welcome", "points"]),
        ({"lifecycle": {"welcome": {"points": 5, "on": "birth"}}}, ["lifecycle", "welcome", "on"]),
        (
            {"lifecycle": {"welcome": {"points": 5, "require_complete_profile": ["iq"]}}},
            ["lifecycle", "welcome", "require_complete_profile", 0],
        ),
        (
            {"lifecycle": {"welcome": {"points": 5, "require_complete_profile": ["name", "name"]}}},
            ["lifecycle", "welcome", "require_complete_profile"],
        ),
        ({"lifecycle": {"welcome": {}}}, ["lifecycle", "welcome"]),
        (
            {"lifecycle": {"birthday": {"points": 5, "days_before": 40}}},
            ["lifecycle", "birthday", "days_before"],
        ),
        ({"lifecycle": {"win_back": {"points": 5}}}, ["lifecycle", "win_back", "inactive_days"]),
        (
            {"lifecycle": {"anniversary": {"points": 5, "label": {"ru": "Годовщина"}}}},
            ["lifecycle", "anniversary", "label", "en"],
        ),
        ({"lifecycle": {"party": {}}}, ["lifecycle", "party"]),
        ({"events": [{"name": "Review Left", "points": 5}]}, ["events", 0, "name"]),
        ({"events": [{"name": "ok", "caps": {"day": 0}}]}, ["events", 0, "caps", "day"]),
        ({"events": [{"name": "ok", "caps": {"year": 1}}]}, ["events", 0, "caps", "year"]),
        (
            {"events": [{"name": "ok", "coupon": {"benefit": {"teleport": 1}}}]},
            ["events", 0, "coupon", "benefit"],
        ),
        (
            {
                "events": [
                    {
                        "name": "ok",
                        "coupon": {
                            "benefit": {"issue_coupon": {"benefit": {"discount_percent": 5}}}
                        },
                    }
                ]
            },
            ["events", 0, "coupon", "benefit"],
        ),
        (
            {"events": [{"name": "ok", "coupon": {"benefit": {"discount_percent": 5}, "x": 1}}]},
            ["events", 0, "coupon", "x"],
        ),
    ],
)
def test_bad_sections_are_reported_with_their_path(
    section: dict[str, Any], expected: list[str | int]
) -> None:
    errors = validate_document({"type": "bonus", **section})
    assert expected in [e["path"] for e in errors], errors


def test_expiry_days_read_as_in_the_history() -> None:
    """``expires_in_days: 29`` from 1 April: the points can be used through 30 April."""
    earned = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    end = expires_at(RollingExpiry(days=29), earned, "Europe/Moscow")
    assert last_day(end, "Europe/Moscow") == "2026-04-30"
