"""The clubs mechanic's pure rules: the document section, membership states, paid periods,
what counts as the club's at the till, and the texts members read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kopilka.domain.clubs import texts
from kopilka.domain.clubs.membership import (
    Membership,
    add_days,
    add_period,
    condition_met,
    counted_status,
    effective_status,
    has_benefits,
    is_expired,
    next_period,
    normalize_invitation,
    status_after_payment,
)
from kopilka.domain.clubs.savings import (
    ProgramShare,
    club_rule_ids,
    mentions_club,
    receipt_savings,
)
from kopilka.domain.clubs.settings import ClubCondition, ClubSettings
from kopilka.domain.rules.document import validate_document

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
MSK = "Europe/Moscow"
FREE = ClubSettings.model_validate({"code": "kids", "name": "Kids", "join": "open"})
PAID = ClubSettings.model_validate(
    {
        "code": "vip",
        "name": {"ru": "VIP-клуб", "en": "VIP club"},
        "join": "invitation",
        "fee": {"amount": 29900, "period": "month", "grace_days": 7},
    }
)


def errors(clubs: Any) -> list[tuple[list[Any], str]]:
    found = validate_document({"type": "bonus", "clubs": clubs})
    return [(e["path"], e["code"]) for e in found]


# ---- the document section --------------------------------------------------------------
def test_a_valid_section_has_no_errors() -> None:
    clubs = [
        {"code": "vip", "name": {"ru": "VIP"}, "join": "invitation", "welcome_points": 100},
        {"code": "gold", "name": "Gold", "join": "condition", "condition": {"tiers": ["gold"]}},
        {"code": "pro", "name": "Pro", "join": "approval", "fee": {"amount": 1, "period": "year"}},
    ]
    assert errors(clubs) == []


def test_a_name_in_one_language_serves_both() -> None:
    club = ClubSettings.model_validate({"code": "a", "name": {"en": "Club"}, "join": "open"})
    assert club.names == {"ru": "Club", "en": "Club"}
    assert PAID.names == {"ru": "VIP-клуб", "en": "VIP club"}


@pytest.mark.parametrize(
    ("club", "path", "code"),
    [
        ({"code": "VIP", "name": "x", "join": "open"}, ["clubs", 0, "code"], "invalid"),
        ({"code": "", "name": "x", "join": "open"}, ["clubs", 0, "code"], "invalid"),
        ({"code": "a", "name": "", "join": "open"}, ["clubs", 0, "name", "ru"], "invalid"),
        ({"code": "a", "name": 5, "join": "open"}, ["clubs", 0, "name"], "invalid"),
        ({"code": "a", "name": "x", "join": "secret"}, ["clubs", 0, "join"], "invalid"),
        ({"code": "a", "name": "x"}, ["clubs", 0, "join"], "invalid"),
        ({"code": "a", "name": "x", "join": "condition"}, ["clubs", 0, "condition"], "invalid"),
        (
            {"code": "a", "name": "x", "join": "open", "condition": {"tiers": ["gold"]}},
            ["clubs", 0, "condition"],
            "invalid",
        ),
        (
            {"code": "a", "name": "x", "join": "condition", "condition": {}},
            ["clubs", 0, "condition"],
            "invalid",
        ),
        (
            {"code": "a", "name": "x", "join": "condition", "condition": {"tier": ["gold"]}},
            ["clubs", 0, "condition", "tier"],
            "unknown_field",
        ),
        (
            {"code": "a", "name": "x", "join": "open", "fee": {"amount": 0, "period": "month"}},
            ["clubs", 0, "fee", "amount"],
            "invalid",
        ),
        (
            {"code": "a", "name": "x", "join": "open", "fee": {"amount": 99.5, "period": "month"}},
            ["clubs", 0, "fee", "amount"],
            "invalid",
        ),
        (
            {"code": "a", "name": "x", "join": "open", "fee": {"amount": "100", "period": "month"}},
            ["clubs", 0, "fee", "amount"],
            "invalid",
        ),
        (
            {"code": "a", "name": "x", "join": "open", "fee": {"amount": 1, "period": "week"}},
            ["clubs", 0, "fee", "period"],
            "invalid",
        ),
        (
            {
                "code": "a",
                "name": "x",
                "join": "open",
                "fee": {"amount": 1, "period": "month", "grace_days": 91},
            },
            ["clubs", 0, "fee", "grace_days"],
            "invalid",
        ),
        (
            {"code": "a", "name": "x", "join": "open", "welcome_points": -1},
            ["clubs", 0, "welcome_points"],
            "invalid",
        ),
        (
            {"code": "a", "name": "x", "join": "open", "perks": 1},
            ["clubs", 0, "perks"],
            "unknown_field",
        ),
    ],
)
def test_bad_clubs_are_refused_with_their_path(
    club: dict[str, Any], path: list[Any], code: str
) -> None:
    assert (path, code) in errors([club])


def test_clubs_must_be_a_list() -> None:
    assert (["clubs"], "invalid") in errors({"code": "vip"})


# ---- states and benefits -----------------------------------------------------------------
PAID_UNTIL = NOW + timedelta(days=30)
GRACE_UNTIL = PAID_UNTIL + timedelta(days=7)
RUNNING = Membership("active", PAID_UNTIL, GRACE_UNTIL)


@pytest.mark.parametrize(
    ("membership", "club", "at", "status", "benefits", "expired"),
    [
        (Membership("active"), FREE, NOW, "active", True, False),
        (Membership("active"), PAID, NOW, "unpaid", False, False),  # the club became paid
        (Membership("unpaid"), PAID, NOW, "unpaid", False, False),
        (Membership("unpaid"), FREE, NOW, "active", True, False),  # the fee was dropped
        (Membership("pending"), FREE, NOW, "pending", False, False),
        (RUNNING, PAID, NOW, "active", True, False),
        (RUNNING, PAID, PAID_UNTIL, "grace", True, False),
        (RUNNING, PAID, GRACE_UNTIL - timedelta(seconds=1), "grace", True, False),
        (RUNNING, PAID, GRACE_UNTIL, "lapsed", False, True),  # before the job has run
        (Membership("grace", PAID_UNTIL, GRACE_UNTIL), PAID, GRACE_UNTIL, "lapsed", False, True),
        (Membership("lapsed", PAID_UNTIL, GRACE_UNTIL), PAID, NOW, "lapsed", False, True),
        (Membership("cancelled", PAID_UNTIL, GRACE_UNTIL), PAID, NOW, "cancelled", True, False),
        (
            Membership("cancelled", PAID_UNTIL, GRACE_UNTIL),
            PAID,
            PAID_UNTIL,
            "cancelled",
            False,
            True,
        ),
        (Membership("left"), FREE, NOW, "left", False, False),
        (Membership("rejected"), FREE, NOW, "rejected", False, False),
    ],
)
def test_states_benefits_and_expiry(
    membership: Membership,
    club: ClubSettings,
    at: datetime,
    status: str,
    benefits: bool,
    expired: bool,
) -> None:
    assert effective_status(membership, club, at) == status
    assert has_benefits(membership, club, at) is benefits
    assert is_expired(membership, club, at) is expired


@pytest.mark.parametrize(
    ("status", "club", "flags", "counted"),
    [
        ("active", FREE, (True, False, False), "active"),
        ("active", PAID, (True, False, False), "unpaid"),
        ("active", PAID, (False, False, False), "active"),
        ("active", PAID, (False, True, False), "grace"),
        ("grace", PAID, (False, True, True), "lapsed"),
        ("unpaid", FREE, (True, False, False), "active"),
        ("cancelled", PAID, (False, True, True), "cancelled"),
        ("pending", FREE, (True, False, False), "pending"),
    ],
)
def test_counts_tell_the_same_state_from_flags(
    status: str, club: ClubSettings, flags: tuple[bool, bool, bool], counted: str
) -> None:
    no_fee, paid_over, grace_over = flags
    assert (
        counted_status(status, club, no_fee=no_fee, paid_over=paid_over, grace_over=grace_over)
        == counted
    )


def test_conditions_on_tiers_and_segments() -> None:
    condition = ClubCondition(tiers=["gold"], segments=["parents", "pros"])
    assert condition_met(condition, "gold", [])
    assert condition_met(condition, None, ["pros"])
    assert condition_met(condition, "silver", {"parents", "x"})
    assert not condition_met(condition, "silver", ["x"])
    assert not condition_met(None, "gold", ["parents"])


# ---- paid periods -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "period", "end"),
    [
        # Moscow wall clock 12:00 (09:00 UTC): the same time a month later.
        (datetime(2026, 1, 15, 9, tzinfo=UTC), "month", datetime(2026, 2, 15, 9, tzinfo=UTC)),
        (datetime(2026, 1, 31, 9, tzinfo=UTC), "month", datetime(2026, 2, 28, 9, tzinfo=UTC)),
        (datetime(2026, 12, 31, 9, tzinfo=UTC), "month", datetime(2027, 1, 31, 9, tzinfo=UTC)),
        (datetime(2028, 2, 29, 9, tzinfo=UTC), "year", datetime(2029, 2, 28, 9, tzinfo=UTC)),
        (datetime(2026, 3, 1, 9, tzinfo=UTC), "year", datetime(2027, 3, 1, 9, tzinfo=UTC)),
        # 23:30 UTC on 31 January is already 1 February in Moscow: a month later is 1 March
        # in Moscow (not 28 February), which is 23:30 UTC on 28 February.
        (
            datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
            "month",
            datetime(2026, 2, 28, 23, 30, tzinfo=UTC),
        ),
    ],
)
def test_periods_follow_the_tenants_calendar(start: datetime, period: str, end: datetime) -> None:
    assert add_period(start, period, MSK) == end


def test_periods_keep_the_wall_clock_across_daylight_saving() -> None:
    start = datetime(2026, 3, 15, 12, tzinfo=UTC)  # 08:00 in New York (EDT)
    assert add_period(start, "month", "America/New_York") == datetime(2026, 4, 15, 12, tzinfo=UTC)
    winter = datetime(2026, 10, 20, 12, tzinfo=UTC)  # 08:00 EDT; 08:00 EST is 13:00 UTC
    assert add_period(winter, "month", "America/New_York") == datetime(2026, 11, 20, 13, tzinfo=UTC)
    assert add_days(winter, 14, "America/New_York") == datetime(2026, 11, 3, 13, tzinfo=UTC)


def test_a_first_payment_starts_when_it_was_made() -> None:
    paid = next_period(None, PAID, NOW, MSK)
    assert (paid.start, paid.end) == (NOW, datetime(2026, 2, 15, 9, tzinfo=UTC))
    assert paid.grace_until == datetime(2026, 2, 22, 9, tzinfo=UTC)
    assert not paid.continues
    assert status_after_payment(paid, NOW) == "active"


def test_payments_in_advance_stack_up() -> None:
    paid = next_period(RUNNING, PAID, NOW + timedelta(days=3), MSK)
    assert paid.continues
    assert paid.start == PAID_UNTIL
    assert paid.end == add_period(PAID_UNTIL, "month", MSK)


def test_a_payment_in_grace_continues_the_period_without_free_days() -> None:
    in_grace = Membership("grace", PAID_UNTIL, GRACE_UNTIL)
    paid = next_period(in_grace, PAID, PAID_UNTIL + timedelta(days=2), MSK)
    assert (paid.start, paid.continues) == (PAID_UNTIL, True)
    # Lapsed by the job, but paid before the grace ended: still a continuation.
    lapsed = Membership("lapsed", PAID_UNTIL, GRACE_UNTIL)
    assert next_period(lapsed, PAID, GRACE_UNTIL - timedelta(hours=1), MSK).continues


def test_a_payment_after_the_lapse_starts_afresh() -> None:
    late = GRACE_UNTIL + timedelta(days=10)
    paid = next_period(Membership("lapsed", PAID_UNTIL, GRACE_UNTIL), PAID, late, MSK)
    assert (paid.start, paid.continues) == (late, False)
    assert next_period(Membership("unpaid"), PAID, late, MSK).start == late


def test_a_payment_reported_late_may_buy_a_period_already_over() -> None:
    paid = next_period(None, PAID, NOW - timedelta(days=33), MSK)
    assert status_after_payment(paid, NOW) == "grace"
    paid = next_period(None, PAID, NOW - timedelta(days=60), MSK)
    assert status_after_payment(paid, NOW) == "lapsed"


def test_invitation_codes_are_read_forgivingly() -> None:
    assert normalize_invitation(" abcd-efgh 23 ") == "ABCDEFGH23"


# ---- what the club gave -------------------------------------------------------------------
def test_club_rules_are_those_asking_for_the_club() -> None:
    rules = [
        {"id": "vip", "when": {"club_in": ["vip"]}, "effects": []},
        {"id": "both", "when": {"all": [{"club_in": ["vip", "kids"]}, {"amount_gte": 1}]}},
        {"id": "either", "when": {"any": [{"club_in": ["vip"]}, {"tier_in": ["gold"]}]}},
        {"id": "others", "when": {"not": {"club_in": ["vip"]}}},
        {"id": "kids", "when": {"club_in": ["kids"]}},
        {"id": "all", "effects": []},
        "not a rule",
    ]
    assert club_rule_ids(rules, "vip") == {"vip", "both", "either"}
    assert not mentions_club({"club_in": "vip"}, "vip")


def test_receipt_savings_count_the_clubs_effects_only() -> None:
    applied = [
        {"program": "main", "rule_id": "vip", "discount": 1000, "points": 0},
        {"program": "main", "rule_id": "base", "discount": 500, "points": 20},
        {"program": "main", "rule_id": "vip-points", "discount": 0, "points": 30},
        {"program": "vip-only", "rule_id": "any", "discount": 700, "points": 5},
        {"program": "other", "rule_id": "vip", "discount": 9999, "points": 0},
    ]
    shares = {
        "main": ProgramShare(False, frozenset({"vip", "vip-points"}), 100),
        "vip-only": ProgramShare(True, frozenset(), 50),
    }
    found = receipt_savings(applied, shares)
    assert (found.receipts, found.discount, found.points) == (1, 1700, 35)
    assert found.points_value == 30 * 100 + 5 * 50
    assert found.saved == 1700 + 3250
    # Half the money refunded: half the discount and points stayed with the member.
    half = receipt_savings(applied, shares, (5000, 10000))
    assert (half.discount, half.points) == (850, 17)
    assert receipt_savings([applied[1]], shares).receipts == 0


# ---- texts ----------------------------------------------------------------------------------
def test_texts_speak_both_languages() -> None:
    names = PAID.names
    paid = texts.paid(names, 29900, "RUB", "month", datetime(2026, 2, 15, 9, tzinfo=UTC), MSK)
    assert paid == {
        "ru": "Оплачен взнос клуба «VIP-клуб»: 299\u00a0₽ за месяц, членство действует до "
        "15.02.2026 12:00",
        "en": "Fee of the club “VIP club” paid: 299\u00a0₽ for a month, membership runs until "
        "2026-02-15 12:00",
    }
    lapsed = texts.lapsed(names, datetime(2026, 2, 22, 9, tzinfo=UTC), MSK)
    assert lapsed["ru"] == "Членство в клубе «VIP-клуб» истекло 22.02.2026 12:00: взнос не оплачен"
    assert "lapsed on 2026-02-22 12:00" in lapsed["en"]
    assert texts.rejected(names, "no")["en"].endswith("declined: no")
    assert texts.awaiting_payment(names, 150050, "year", "RUB")["ru"].endswith(
        "взноса 1\u00a0500,50\u00a0₽ за год"
    )
    for status in ("pending", "unpaid", "lapsed", "cancelled", "left", "rejected", "grace"):
        line = texts.status_text(names, status, False, None, None, MSK)
        assert line["ru"].startswith("Клуб «VIP-клуб»: ")
        assert line["en"].startswith("Club “VIP club”: ")
    active = texts.status_text(
        names, "active", True, datetime(2026, 2, 15, 9, tzinfo=UTC), None, MSK
    )
    assert active["ru"] == "Участник клуба «VIP-клуб», оплачено до 15.02.2026 12:00"
