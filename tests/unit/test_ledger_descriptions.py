"""Descriptions of ledger transactions in Russian and English (pure, no database)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.domain.ledger.descriptions import describe, ru_plural
from kopilka.domain.ledger.model import TxnKind

NBSP = "\u00a0"


def test_accrual_with_reason_expiry_and_pending_date() -> None:
    text = describe(
        TxnKind.ACCRUAL,
        1500,
        {"reason": "Покупка", "expires_on": "2026-02-15", "available_on": "2026-01-29"},
    )
    assert text == {
        "ru": f"Начислено 1{NBSP}500 баллов — Покупка, сгорят 2026-02-15, "
        "станут доступны 2026-01-29",
        "en": "1,500 points earned — Покупка, expire on 2026-02-15, available from 2026-01-29",
    }


def test_plain_accrual_has_no_trailing_parts() -> None:
    assert describe("accrual", 300) == {"ru": "Начислено 300 баллов", "en": "300 points earned"}
    assert describe("accrual", 300, {}) == describe("accrual", 300, None)


@pytest.mark.parametrize(
    ("n", "form"),
    [
        (0, 2),
        (1, 0),
        (2, 1),
        (3, 1),
        (4, 1),
        (5, 2),
        (11, 2),
        (12, 2),
        (14, 2),
        (15, 2),
        (21, 0),
        (22, 1),
        (25, 2),
        (101, 0),
        (111, 2),
        (112, 2),
        (1000, 2),
        (1001, 0),
        (-1, 0),
        (-22, 1),
    ],
)
def test_russian_plural_rule(n: int, form: int) -> None:
    assert ru_plural(n) == form


@pytest.mark.parametrize(
    ("amount", "ru", "en"),
    [
        (1, "Начислен 1 балл", "1 point earned"),
        (2, "Начислено 2 балла", "2 points earned"),
        (5, "Начислено 5 баллов", "5 points earned"),
        (11, "Начислено 11 баллов", "11 points earned"),
        (21, "Начислен 21 балл", "21 points earned"),
        (104, "Начислено 104 балла", "104 points earned"),
        (2_000_001, f"Начислен 2{NBSP}000{NBSP}001 балл", "2,000,001 points earned"),
    ],
)
def test_numbers_agree_with_their_noun(amount: int, ru: str, en: str) -> None:
    assert describe(TxnKind.ACCRUAL, amount) == {"ru": ru, "en": en}


def test_one_point_accrual_with_dates_agrees_too() -> None:
    text = describe(TxnKind.ACCRUAL, 1, {"expires_on": "2026-03-01", "available_on": "2026-01-20"})
    assert text["ru"] == "Начислен 1 балл, сгорит 2026-03-01, станет доступен 2026-01-20"
    assert text["en"] == "1 point earned, expires on 2026-03-01, available from 2026-01-20"


@pytest.mark.parametrize(
    ("kind", "amount", "ru", "en"),
    [
        (
            TxnKind.OPENING_BALANCE,
            250,
            "Перенесён начальный баланс: 250 баллов",
            "Opening balance of 250 points carried over",
        ),
        (
            TxnKind.ACTIVATION,
            40,
            "40 баллов стали доступны для оплаты",
            "40 points became available to spend",
        ),
        (
            TxnKind.ACTIVATION,
            1,
            "1 балл стал доступен для оплаты",
            "1 point became available to spend",
        ),
        (TxnKind.REDEMPTION, 120, "Списано 120 баллов", "120 points spent"),
        (TxnKind.REDEMPTION, 3, "Списано 3 балла", "3 points spent"),
        (TxnKind.REFUND, 50, "Возвращено 50 списанных баллов", "50 spent points returned"),
        (TxnKind.REFUND, 1, "Возвращён 1 списанный балл", "1 spent point returned"),
        (TxnKind.REVERSAL, 70, "Отменено начисление 70 баллов", "70 earned points reversed"),
        (TxnKind.REVERSAL, 1, "Отменено начисление 1 балла", "1 earned point reversed"),
        (TxnKind.EXPIRY, 90, "Сгорело 90 баллов", "90 points expired"),
        (TxnKind.EXPIRY, 31, "Сгорел 31 балл", "31 points expired"),
        (TxnKind.HOLD, 200, "Зарезервировано 200 баллов", "200 points reserved"),
        (TxnKind.CAPTURE, 150, "Списано 150 зарезервированных баллов", "150 reserved points spent"),
        (TxnKind.CAPTURE, 2, "Списано 2 зарезервированных балла", "2 reserved points spent"),
        (
            TxnKind.RELEASE,
            50,
            "Резерв 50 баллов снят, баллы снова доступны",
            "Reservation of 50 points released",
        ),
        (TxnKind.TRANSFER, 10, "Перевод 10 баллов", "Transfer of 10 points"),
        (
            TxnKind.MERGE,
            700,
            "700 баллов перенесено при объединении профилей",
            "700 points moved when profiles were merged",
        ),
        ("something_new", 7, "Операция: 7 баллов", "Operation: 7 points"),
    ],
)
def test_every_kind_has_a_sentence(kind: str, amount: int, ru: str, en: str) -> None:
    assert describe(kind, amount) == {"ru": ru, "en": en}


def test_adjustments_show_their_sign_and_reason() -> None:
    assert describe(TxnKind.ADJUSTMENT, -1250, {"reason": "Ошибка кассира"}) == {
        "ru": f"Корректировка баланса: -1{NBSP}250 баллов — Ошибка кассира",
        "en": "Balance adjustment: -1,250 points — Ошибка кассира",
    }
    assert describe(TxnKind.ADJUSTMENT, 1, {"reason": "bonus"}) == {
        "ru": "Корректировка баланса: +1 балл — bonus",
        "en": "Balance adjustment: +1 point — bonus",
    }


def test_reason_is_kept_verbatim_in_both_languages() -> None:
    reason = f"чек{NBSP}№ 12"  # a non-breaking space in a reason is not a thousands separator
    text = describe(TxnKind.REDEMPTION, 1000, {"reason": reason})
    assert text["ru"] == f"Списано 1{NBSP}000 баллов — {reason}"
    assert text["en"] == f"1,000 points spent — {reason}"


def test_dates_only_where_they_mean_something() -> None:
    params = {"expires_on": "2026-02-15", "available_on": "2026-01-29"}
    assert describe(TxnKind.REDEMPTION, 5, params)["en"] == "5 points spent"
    assert describe(TxnKind.EXPIRY, 5, params)["ru"] == "Сгорело 5 баллов"
    assert describe(TxnKind.OPENING_BALANCE, 5, params)["en"] == (
        "Opening balance of 5 points carried over, expire on 2026-02-15"
    )


@given(kind=st.sampled_from([*TxnKind, "unknown"]), amount=st.integers(-(10**12), 10**12))
def test_every_description_is_non_empty_and_mentions_the_amount(kind: str, amount: int) -> None:
    text = describe(kind, amount, {"reason": "r"})
    assert set(text) == {"ru", "en"}
    assert f"{abs(amount):,}" in text["en"]
    assert f"{abs(amount):,}".replace(",", NBSP) in text["ru"]
    assert "{" not in text["ru"] + text["en"]
