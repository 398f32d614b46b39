"""The tiers mechanic's pure rules: the document section, windows and evaluation dates,
the level a value earns and what an evaluation does, and the ru/en explanations."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from kopilka.domain.rules.document import compile_program, validate_document
from kopilka.domain.tiers import explain, levels, periods
from kopilka.domain.tiers.settings import TierSettings

LEVELS: list[dict[str, Any]] = [
    {"code": "silver", "name": {"ru": "Серебро", "en": "Silver"}, "threshold": 0},
    {"code": "gold", "name": "Gold", "threshold": 4_000_000, "keep_threshold": 3_000_000},
    {"code": "platinum", "threshold": 10_000_000},
]


def settings(**overrides: Any) -> TierSettings:
    return TierSettings.model_validate({"levels": LEVELS, **overrides})


def errors(section: dict[str, Any]) -> list[tuple[list[str | int], str]]:
    document = {"type": "bonus", "rules": [], "tiers": section}
    return [(e["path"], e["code"]) for e in validate_document(document)]


# ---- the document section -----------------------------------------------------------------
def test_a_full_section_compiles_with_defaults() -> None:
    program = compile_program({"type": "bonus", "tiers": {"levels": LEVELS}}, "main", 1)
    tiers = program.settings.tiers
    assert tiers is not None
    assert tiers.metric == "spent"
    assert (tiers.window.kind, tiers.window.period) == ("calendar", "year")
    assert tiers.evaluation_period == "year"
    assert tiers.downgrade.policy == "one_level"
    assert tiers.upgrade_applies_to_crossing_receipt is False
    assert tiers.codes == ["silver", "gold", "platinum"]
    assert tiers.levels[1].names == {"ru": "Gold", "en": "Gold"}
    assert tiers.levels[2].names == {"ru": "Platinum", "en": "Platinum"}
    assert [lv.keep for lv in tiers.levels] == [0, 3_000_000, 10_000_000]


def test_a_rolling_window_is_evaluated_monthly_unless_told() -> None:
    assert settings(window={"kind": "rolling"}).window.days == 365
    assert settings(window={"kind": "rolling", "days": 90}).evaluation_period == "month"
    rolling = settings(window={"kind": "rolling"}, evaluation={"period": "quarter"})
    assert rolling.evaluation_period == "quarter"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"levels": []}, [(["tiers", "levels"], "invalid")]),
        (
            {"levels": [{"code": "silver", "threshold": 100}]},
            [(["tiers", "levels", 0, "threshold"], "invalid")],
        ),
        (
            {"levels": [LEVELS[0], {**LEVELS[1], "threshold": 0}]},
            [(["tiers", "levels", 1, "threshold"], "invalid")],
        ),
        (
            {"levels": [LEVELS[0], {**LEVELS[1], "code": "silver"}]},
            [(["tiers", "levels", 1, "code"], "invalid")],
        ),
        (
            {"levels": [LEVELS[0], {**LEVELS[1], "keep_threshold": 5_000_000}]},
            [(["tiers", "levels", 1, "keep_threshold"], "invalid")],
        ),
        (
            {"levels": [LEVELS[0], LEVELS[1], {**LEVELS[2], "keep_threshold": 1}]},
            [(["tiers", "levels", 2, "keep_threshold"], "invalid")],
        ),
        (
            {"levels": [LEVELS[0], {**LEVELS[1], "threshold": 4.5}]},
            [(["tiers", "levels", 1, "threshold"], "invalid")],
        ),
        (
            {"levels": [LEVELS[0], {**LEVELS[1], "threshold": "4000000"}]},
            [(["tiers", "levels", 1, "threshold"], "invalid")],
        ),
        (
            {"levels": [{"code": "Gold!", "threshold": 0}]},
            [(["tiers", "levels", 0, "code"], "invalid")],
        ),
        ({"levels": LEVELS, "metric": "visits"}, [(["tiers", "metric"], "invalid")]),
        (
            {"levels": LEVELS, "window": {"kind": "weekly"}},
            [(["tiers", "window", "kind"], "invalid")],
        ),
        (
            {"levels": LEVELS, "window": {"kind": "rolling", "days": 0}},
            [(["tiers", "window", "days"], "invalid")],
        ),
        (
            {"levels": LEVELS, "window": {"kind": "rolling", "period": "year"}},
            [(["tiers", "window", "period"], "invalid")],
        ),
        (
            {"levels": LEVELS, "window": {"kind": "calendar", "days": 30}},
            [(["tiers", "window", "days"], "invalid")],
        ),
        (
            {"levels": LEVELS, "evaluation": {"period": "month"}},
            [(["tiers", "evaluation", "period"], "invalid")],
        ),
        (
            {"levels": LEVELS, "downgrade": {"policy": "two_levels", "grace_days": -1}},
            [
                (["tiers", "downgrade", "policy"], "invalid"),
                (["tiers", "downgrade", "grace_days"], "invalid"),
            ],
        ),
        ({"levels": LEVELS, "surprise": 1}, [(["tiers", "surprise"], "unknown_field")]),
    ],
)
def test_bad_sections_are_refused_with_their_paths(
    section: dict[str, Any], expected: list[tuple[list[str | int], str]]
) -> None:
    assert errors(section) == expected


# ---- windows and evaluation dates ----------------------------------------------------------
def test_calendar_windows_and_evaluation_points() -> None:
    yearly = settings()
    assert periods.window(yearly, date(2026, 7, 4)) == (date(2026, 1, 1), date(2026, 7, 4))
    assert periods.last_evaluation(yearly, date(2026, 7, 4)) == date(2026, 1, 1)
    assert periods.next_evaluation(yearly, date(2026, 7, 4)) == date(2027, 1, 1)
    # On 1 January the year that just ended is judged.
    assert periods.judged_window(yearly, date(2027, 1, 1)) == (date(2026, 1, 1), date(2026, 12, 31))
    quarterly = settings(window={"kind": "calendar", "period": "quarter"})
    assert periods.window(quarterly, date(2026, 11, 30)) == (date(2026, 10, 1), date(2026, 11, 30))
    assert periods.next_evaluation(quarterly, date(2026, 11, 30)) == date(2027, 1, 1)
    assert periods.judged_window(quarterly, date(2026, 4, 1)) == (
        date(2026, 1, 1),
        date(2026, 3, 31),
    )
    monthly = settings(window={"kind": "calendar", "period": "month"})
    assert periods.next_evaluation(monthly, date(2026, 12, 31)) == date(2027, 1, 1)
    assert periods.judged_window(monthly, date(2026, 3, 1)) == (date(2026, 2, 1), date(2026, 2, 28))


def test_rolling_windows() -> None:
    rolling = settings(window={"kind": "rolling", "days": 365})
    assert periods.window(rolling, date(2026, 12, 31)) == (date(2026, 1, 1), date(2026, 12, 31))
    assert periods.judged_window(rolling, date(2026, 3, 1)) == (date(2025, 3, 1), date(2026, 2, 28))
    assert periods.last_evaluation(rolling, date(2026, 3, 15)) == date(2026, 3, 1)


def test_local_days_follow_the_tenant_time_zone() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 12, 31, 22, 30, tzinfo=UTC)  # already 1 January in Moscow
    assert periods.local_day(moment, "Europe/Moscow") == date(2027, 1, 1)
    assert periods.local_day(moment, "UTC") == date(2026, 12, 31)
    assert periods.local_midnight(date(2027, 1, 1), "Europe/Moscow").astimezone(UTC) == datetime(
        2026, 12, 31, 21, 0, tzinfo=UTC
    )


# ---- levels and evaluations ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "reached", "kept"),
    [(0, 0, 0), (2_999_999, 0, 0), (3_000_000, 0, 1), (4_000_000, 1, 1), (10_000_000, 2, 2)],
)
def test_the_level_a_value_reaches_and_keeps(value: int, reached: int, kept: int) -> None:
    s = settings()
    assert levels.reached(s, value) == reached
    assert levels.kept(s, value) == kept


def test_evaluation_outcomes() -> None:
    one, full = settings(), settings(downgrade={"policy": "full"})
    graced = settings(downgrade={"grace_days": 30})
    # Gold kept with 30 000 ₽ (the keep threshold), not with less.
    assert levels.evaluate(one, 1, 3_000_000, locked=False) == levels.Outcome("kept", 1, 3_000_000)
    assert levels.evaluate(one, 1, 100, locked=False) == levels.Outcome("downgraded", 0, 3_000_000)
    assert levels.evaluate(graced, 1, 100, locked=False).reason == "grace"
    # Platinum with nothing: one level down, or all the way.
    assert levels.evaluate(one, 2, 0, locked=False).to == 1
    assert levels.evaluate(full, 2, 0, locked=False).to == 0
    assert levels.evaluate(full, 2, 3_500_000, locked=False).to == 1
    # A locked tier is not lowered; the base level is never "kept".
    assert levels.evaluate(one, 2, 0, locked=True).reason == "none"
    assert levels.evaluate(one, 0, 0, locked=False).reason == "none"
    # More than enough for a higher level: upgraded at the evaluation too.
    assert levels.evaluate(one, 0, 11_000_000, locked=False) == levels.Outcome(
        "upgraded", 2, 10_000_000
    )
    # A tier the program no longer has is replaced by the one the value reaches.
    assert levels.evaluate(one, -1, 5_000_000, locked=False).to == 1


def test_daily_sweep_outcomes() -> None:
    s = settings()
    assert levels.sweep(s, 0, 4_000_000, None, grace_over=False).reason == "upgraded"
    assert levels.sweep(s, 1, 100, None, grace_over=True).reason == "none"
    assert levels.sweep(s, 1, 3_000_000, 0, grace_over=False).reason == "kept"
    assert levels.sweep(s, 1, 100, 0, grace_over=False).reason == "none"
    assert levels.sweep(s, 1, 100, 0, grace_over=True) == levels.Outcome("downgraded", 0, 3_000_000)


# ---- explanations --------------------------------------------------------------------------
GOLD = {"ru": "Gold", "en": "Gold"}
SILVER = {"ru": "Silver", "en": "Silver"}


def test_the_issue_s_examples() -> None:
    kept = explain.explain_change(
        explain.Change("kept", GOLD, GOLD, "spent", 4_830_000, 4_000_000), "RUB"
    )
    assert kept["en"] == "Gold kept: you spent 48,300\u00a0₽ of the 40,000\u00a0₽ needed"
    assert (
        kept["ru"]
        == "Статус Gold сохранён: вы потратили 48\u00a0300\u00a0₽, а нужно было 40\u00a0000\u00a0₽"
    )
    message = explain.progress_message(
        explain.Progress(
            metric="spent",
            current=GOLD,
            next_name=None,
            next_gap=None,
            keep_gap=320_000,
            keep_value=3_680_000,
            keep_needed=4_000_000,
            by=date(2026, 12, 31),
            next_by=date(2026, 12, 31),
            grace_until=None,
            today=date(2026, 11, 2),
        ),
        "RUB",
    )
    assert message == {
        "ru": "Осталось потратить 3\u00a0200\u00a0₽ до 31 декабря, чтобы сохранить Gold",
        "en": "Spend 3,200\u00a0₽ more by 31 Dec to keep Gold",
    }


@pytest.mark.parametrize(
    ("change", "ru", "en"),
    [
        (
            explain.Change("upgraded", SILVER, GOLD, "purchases", 5, 5),
            "Новый статус Gold: вы совершили 5 покупок, а нужно было 5 покупок",
            "Upgraded to Gold: you made 5 purchases of the 5 purchases needed",
        ),
        (
            explain.Change("downgraded", GOLD, SILVER, "points", 21, 500),
            "Статус изменён с Gold на Silver: вы набрали 21 балл, а нужно было 500 баллов",
            "Downgraded from Gold to Silver: you earned 21 points of the 500 points needed",
        ),
        (
            explain.Change(
                "grace", GOLD, SILVER, "spent", 150, 3_000_000, grace_until=date(2027, 1, 30)
            ),
            "Статус Gold сохранён до 30 января 2027 (льготный период): вы потратили "
            "1,50\u00a0₽, а нужно было 30\u00a0000\u00a0₽",
            "Gold kept until 30 Jan 2027 (grace period): you spent 1.50\u00a0₽ of the "
            "30,000\u00a0₽ needed",
        ),
        (
            explain.Change(
                "manual", SILVER, GOLD, "spent", locked_until=date(2027, 3, 8), note="VIP"
            ),
            "Статус Gold установлен вручную до 8 марта 2027: VIP",
            "Gold set by hand until 8 Mar 2027: VIP",
        ),
        (
            explain.Change("imported", None, GOLD, "spent"),
            "Статус Gold перенесён при импорте",
            "Gold imported",
        ),
        (
            explain.Change("enrolled", None, SILVER, "spent"),
            "Начальный статус: Silver",
            "Starting status: Silver",
        ),
    ],
)
def test_explanations(change: explain.Change, ru: str, en: str) -> None:
    assert explain.explain_change(change, "RUB") == {"ru": ru, "en": en}


def test_progress_towards_the_next_level_and_in_grace() -> None:
    base: dict[str, Any] = {
        "metric": "purchases",
        "current": SILVER,
        "next_name": GOLD,
        "next_gap": 2,
        "keep_gap": None,
        "keep_value": None,
        "keep_needed": None,
        "by": None,
        "next_by": None,
        "grace_until": None,
        "today": date(2026, 5, 1),
    }
    rolling = explain.progress_message(explain.Progress(**base), "RUB")
    assert rolling == {
        "ru": "Осталось совершить 2 покупки, чтобы получить Gold",
        "en": "Make 2 purchases more to reach Gold",
    }
    calendar = explain.progress_message(
        explain.Progress(**{**base, "next_by": date(2027, 12, 31)}), "RUB"
    )
    assert calendar["en"] == "Make 2 purchases more by 31 Dec 2027 to reach Gold"
    graced = explain.progress_message(
        explain.Progress(
            **{
                **base,
                "metric": "spent",
                "current": GOLD,
                "keep_gap": 100_000,
                "by": date(2026, 5, 30),
                "grace_until": date(2026, 5, 30),
            }
        ),
        "RUB",
    )
    assert graced == {
        "ru": "Статус Gold сохраняется до 30 мая. Осталось потратить 1\u00a0000\u00a0₽ до 30 мая, "
        "чтобы сохранить его",
        "en": "Gold until 30 May: spend 1,000\u00a0₽ more by 30 May to keep it",
    }
    secured = explain.progress_message(
        explain.Progress(
            **{
                **base,
                "metric": "spent",
                "current": GOLD,
                "next_name": None,
                "next_gap": None,
                "keep_gap": 0,
                "keep_value": 5_000_000,
                "keep_needed": 3_000_000,
                "by": date(2026, 12, 31),
            }
        ),
        "RUB",
    )
    assert secured["en"] == (
        "Gold is secured beyond 31 Dec: you spent 50,000\u00a0₽ of the 30,000\u00a0₽ needed"
    )


def test_amounts_in_both_languages() -> None:
    assert explain.amount("spent", 320_050, "RUB") == {
        "ru": "3\u00a0200,50\u00a0₽",
        "en": "3,200.50\u00a0₽",
    }
    assert explain.amount("purchases", 1, "RUB") == {"ru": "1 покупка", "en": "1 purchase"}
    assert explain.amount("purchases", 22, "RUB")["ru"] == "22 покупки"
    assert explain.amount("points", 11, "RUB") == {"ru": "11 баллов", "en": "11 points"}
    assert explain.amount("points", 1_000, "RUB") == {
        "ru": "1\u00a0000 баллов",
        "en": "1,000 points",
    }
    assert explain.money_en(-150, "USD") == "-1.50\u00a0$"
