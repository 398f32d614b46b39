"""The referral mechanic's pure parts: codes, links, e-mail canonical forms, fingerprint
digests, the document section, and the ru/en texts."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopilka.domain.referrals.codes import (
    ALPHABET,
    canonical_email,
    fingerprint_digest,
    generate_code,
    normalize_code,
    share_link,
)
from kopilka.domain.referrals.settings import ReferralSettings
from kopilka.domain.referrals.texts import explain_status, money, offer
from kopilka.domain.rules.document import validate_document

TEMPLATE = "https://shop.example/r/{code}?utm=share"


def test_the_alphabet_has_no_lookalikes() -> None:
    assert not set("0O1IL") & set(ALPHABET)
    assert len(set(ALPHABET)) == len(ALPHABET) == 31


@given(st.integers(6, 16))
def test_generated_codes_use_the_alphabet_and_normalise_to_themselves(length: int) -> None:
    code = generate_code(length)
    assert len(code) == length
    assert set(code) <= set(ALPHABET)
    assert normalize_code(code) == code
    assert normalize_code(code.lower()) == code
    assert normalize_code(share_link(TEMPLATE, code) or "", TEMPLATE) == code


@pytest.mark.parametrize("length", [5, 17])
def test_code_lengths_are_bounded(length: int) -> None:
    with pytest.raises(ValueError, match="characters"):
        generate_code(length)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abcd2345", "ABCD2345"),
        ("  ABCD-2345 ", "ABCD2345"),
        ("abcd 2345", "ABCD2345"),
        ("ABCD.2345_XY", "ABCD2345XY"),
        ("https://shop.example/r/abcd2345?utm=share", "ABCD2345"),  # the program's template
        ("https://other.example/join?ref=abcd2345&utm=x", "ABCD2345"),  # any ?ref= link
        ("https://other.example/invite/ABCD2345/", "ABCD2345"),  # the last path segment
        ("ABCD0345", None),  # 0 is not in the alphabet
        ("ABCDO345", None),
        ("ABCDI345", None),
        ("ABC", None),
        ("A" * 17, None),
        ("", None),
        ("https://other.example/", None),
        ("абвг2345", None),
    ],
)
def test_normalize_code(raw: str, expected: str | None) -> None:
    assert normalize_code(raw, TEMPLATE) == expected


def test_share_link() -> None:
    assert share_link(TEMPLATE, "ABCD2345") == "https://shop.example/r/ABCD2345?utm=share"
    assert share_link(None, "ABCD2345") is None


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Ivan@Mail.ru", "ivan@mail.ru", True),
        ("ivan+promo@mail.ru", "ivan@mail.ru", True),
        ("i.van@gmail.com", "ivan@googlemail.com", True),
        ("i.van@mail.ru", "ivan@mail.ru", False),  # dots matter outside Gmail
        ("ivan@mail.ru", "ivan@yandex.ru", False),
    ],
)
def test_canonical_email(a: str, b: str, same: bool) -> None:
    assert (canonical_email(a) == canonical_email(b)) is same


@pytest.mark.parametrize("raw", [None, "", "no-at-sign", "+tag@mail.ru"])
def test_canonical_email_of_nothing_is_none(raw: str | None) -> None:
    assert canonical_email(raw) is None


def test_fingerprint_digests_are_per_tenant_and_ignore_case_and_spaces() -> None:
    a, b = uuid.UUID(int=1), uuid.UUID(int=2)
    assert fingerprint_digest(a, "device", "AbC ") == fingerprint_digest(a, "device", "abc")
    assert fingerprint_digest(a, "device", "abc") != fingerprint_digest(b, "device", "abc")
    assert fingerprint_digest(a, "device", "abc") != fingerprint_digest(a, "ip", "abc")
    assert "abc" not in fingerprint_digest(a, "device", "abc")


def test_defaults() -> None:
    settings = ReferralSettings.model_validate({"referrer": {"points": 100}})
    assert (settings.trigger, settings.pending_days, settings.monthly_cap) == (
        "first_purchase",
        14,
        10,
    )
    assert (settings.min_purchase, settings.code_length, settings.share_url) == (0, 8, None)


def _paths(section: object) -> dict[tuple[object, ...], str]:
    errors = validate_document({"type": "bonus", "referral": section})
    return {tuple(e["path"]): e["code"] for e in errors}


def test_a_good_section_validates() -> None:
    assert (
        _paths(
            {
                "referrer": {"points": 500, "label": {"ru": "Друг", "en": "Friend"}},
                "referee": {"points": 300},
                "trigger": "first_purchase",
                "min_purchase": 100_000,
                "pending_days": 14,
                "monthly_cap": None,
                "share_url": "https://example.ru/join?ref={code}",
                "code_length": 6,
            }
        )
        == {}
    )


@pytest.mark.parametrize(
    ("section", "path", "code"),
    [
        ({}, ("referral",), "invalid"),
        ({"referee": {"points": 0}}, ("referral", "referee", "points"), "invalid"),
        ({"referee": {"points": "5"}}, ("referral", "referee", "points"), "invalid"),
        ({"referee": {"points": 5.5}}, ("referral", "referee", "points"), "invalid"),
        ({"referee": {"points": 10**13}}, ("referral", "referee", "points"), "invalid"),
        ({"referee": {"points": 5, "x": 1}}, ("referral", "referee", "x"), "unknown_field"),
        ({"referee": {"points": 5, "label": "Друг"}}, ("referral", "referee", "label"), "invalid"),
        ({"referee": {"points": 5}, "trigger": "soon"}, ("referral", "trigger"), "invalid"),
        (
            {"referee": {"points": 5}, "trigger": "enrolment", "min_purchase": 1},
            ("referral", "min_purchase"),
            "invalid",
        ),
        ({"referee": {"points": 5}, "min_purchase": -1}, ("referral", "min_purchase"), "invalid"),
        ({"referee": {"points": 5}, "pending_days": 366}, ("referral", "pending_days"), "invalid"),
        ({"referee": {"points": 5}, "monthly_cap": 0}, ("referral", "monthly_cap"), "invalid"),
        ({"referee": {"points": 5}, "code_length": 5}, ("referral", "code_length"), "invalid"),
        (
            {"referee": {"points": 5}, "share_url": "example.ru/{code}"},
            ("referral", "share_url"),
            "invalid",
        ),
        (
            {"referee": {"points": 5}, "share_url": "https://x.ru/{code}/{code}"},
            ("referral", "share_url"),
            "invalid",
        ),
        ([], ("referral",), "invalid"),
    ],
)
def test_bad_sections_are_refused_with_their_path(
    section: object, path: tuple[object, ...], code: str
) -> None:
    assert _paths(section).get(path) == code


def test_money() -> None:
    assert money(100_000, "RUB") == {"ru": "1\u00a0000\u00a0₽", "en": "RUB 1,000"}
    assert money(150, "RUB") == {"ru": "1,50\u00a0₽", "en": "RUB 1.50"}
    assert money(500, "USD") == {"ru": "5\u00a0USD", "en": "USD 5"}


def test_offer_texts_follow_the_plural_forms() -> None:
    one_side = ReferralSettings.model_validate(
        {"referee": {"points": 21}, "trigger": "enrolment", "pending_days": 1, "monthly_cap": 1}
    )
    assert offer(one_side, "RUB") == {
        "ru": "Приведите друга: друг получит 21 балл, когда друг зарегистрируется по вашему "
        "коду. Баллы станут доступны через 1 день. Не больше 1 друга в месяц.",
        "en": "Invite a friend: your friend gets 21 points when they join with your code."
        " The points become available after 1 day. Up to 1 friend a month.",
    }
    referrer_only = ReferralSettings.model_validate(
        {"referrer": {"points": 1}, "pending_days": 0, "monthly_cap": None}
    )
    assert offer(referrer_only, "RUB") == {
        "ru": "Приведите друга: вы получите 1 балл после первой покупки друга.",
        "en": "Invite a friend: you get 1 point after your friend's first purchase.",
    }
    both = ReferralSettings.model_validate(
        {"referrer": {"points": 3}, "referee": {"points": 1000}, "monthly_cap": 3}
    )
    assert offer(both, "RUB")["ru"].startswith(
        "Приведите друга: вы получите 3 балла, друг — 1\u00a0000 баллов после"
    )
    assert offer(both, "RUB")["ru"].endswith("через 14 дней. Не больше 3 друзей в месяц.")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("awaiting_purchase", None),
        ("pending", None),
        ("rewarded", None),
        ("voided", "first_purchase_refunded"),
        ("blocked", "shared_fingerprint"),
        ("blocked", "referrer_blocked"),
        ("capped", "monthly_cap"),
        ("inactive", "no_referral_program"),
        ("something_new", "why_not"),
    ],
)
def test_every_status_is_explained_in_both_languages(status: str, reason: str | None) -> None:
    text = explain_status(status, reason, "2026-02-01")
    assert set(text) == {"ru", "en"}
    assert all(text.values())
    assert "{" not in text["ru"] + text["en"]


def test_a_pending_reward_names_its_day() -> None:
    assert explain_status("pending", None, "2026-02-01")["en"].endswith("on 2026-02-01")
    assert explain_status("pending", None, None) == explain_status("rewarded", None, None)
