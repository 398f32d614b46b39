"""Pure parts of gift cards: numbers and their check digit, PIN hashing, the split of a
receipt between cards, the share of a refund, rate-limit windows, the policy, the texts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from kopilka.domain.giftcards.logic import RateLimited, Window, refund_shares, split_payment
from kopilka.domain.giftcards.numbers import (
    generate_number,
    is_valid_number,
    mask,
    number_digest,
)
from kopilka.domain.giftcards.pins import hash_pin, new_pin, verify_pin
from kopilka.domain.giftcards.settings import GiftCardPolicy
from kopilka.domain.giftcards.texts import balance_message, describe
from kopilka.domain.ledger.expiry import RollingExpiry


# ---- numbers ---------------------------------------------------------------------------------
def test_generated_numbers_are_16_digits_with_a_luhn_check_digit() -> None:
    for prefix in ("9", "77", "123456"):
        number = generate_number(prefix)
        assert len(number) == 16
        assert number.startswith(prefix)
        assert is_valid_number(number)
    assert len({generate_number("9") for _ in range(50)}) == 50


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4000000000000002", True),
        ("4000000000000003", False),  # wrong check digit
        ("400000000002", True),  # 12 digits, the shortest
        ("40000000000000000006", False),  # 20 digits, too long
        ("40000000002", False),  # 11 digits, too short
        ("4000 0000 0000 0002", False),
        ("٤000000000000002", False),  # another script's digit
        ("", False),
    ],
)
def test_number_validation(number: str, valid: bool) -> None:
    assert is_valid_number(number) is valid


def test_masks_and_digests_hide_the_number() -> None:
    assert mask("4000000000000002") == "************0002"
    digest = number_digest("4000000000000002")
    assert "4000000000000002" not in digest
    assert digest == number_digest("4000000000000002") != number_digest("4000000000000010")


def test_a_prefix_leaving_too_few_random_digits_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        generate_number("123456789")


# ---- PINs ------------------------------------------------------------------------------------
def test_pins_are_stored_salted_and_checked() -> None:
    pin = new_pin()
    assert len(pin) == 8
    assert pin.isdigit()
    stored = hash_pin(pin)
    assert pin not in stored
    assert stored.startswith("scrypt$")
    assert stored != hash_pin(pin)  # a fresh salt each time
    assert verify_pin(pin, stored)
    assert not verify_pin("x" + pin, stored)
    assert not verify_pin(pin, stored.replace("scrypt", "bcrypt"))
    assert not verify_pin(pin, "garbage")
    assert not verify_pin(pin, "scrypt$1$2$3$zz$zz")


# ---- the split at the till -------------------------------------------------------------------
def test_split_examples() -> None:
    assert split_payment(70000, [(None, 100000)]) == [70000]
    assert split_payment(70000, [(None, 30000), (20000, 50000)]) == [30000, 20000]
    assert split_payment(10000, [(None, 30000), (None, 50000)]) == [10000, 0]
    assert split_payment(10000, [(50000, 3000)]) == [3000]  # never more than the card holds
    assert split_payment(0, [(None, 100)]) == [0]


CARDS = st.lists(
    st.tuples(st.none() | st.integers(1, 10**6), st.integers(0, 10**6)), min_size=1, max_size=5
)


@given(to_pay=st.integers(0, 3 * 10**6), cards=CARDS)
def test_the_split_never_overpays(to_pay: int, cards: list[tuple[int | None, int]]) -> None:
    amounts = split_payment(to_pay, cards)
    assert sum(amounts) <= to_pay
    for pay, (asked, balance) in zip(amounts, cards, strict=True):
        assert 0 <= pay <= balance
        assert asked is None or pay <= asked
    # Each card pays all it may until the receipt is covered.
    covered = 0
    for pay, (asked, balance) in zip(amounts, cards, strict=True):
        assert pay == min(balance if asked is None else asked, balance, to_pay - covered)
        covered += pay


# ---- the share of a refund -------------------------------------------------------------------
def test_refund_examples() -> None:
    assert refund_shares(30000, [(30000, 0, True), (20000, 0, True)]) == [30000, 0]
    assert refund_shares(40000, [(30000, 30000, True), (20000, 0, True)]) == [0, 20000]
    assert refund_shares(50000, [(30000, 0, False), (20000, 0, True)]) == [0, 20000]


PAID = st.lists(
    st.integers(1, 10**6).flatmap(
        lambda amount: st.tuples(st.just(amount), st.integers(0, amount), st.booleans())
    ),
    min_size=1,
    max_size=5,
)


@given(money=st.integers(0, 5 * 10**6), paid=PAID)
def test_refunds_go_to_the_cards_first_and_never_beyond_what_they_paid(
    money: int, paid: list[tuple[int, int, bool]]
) -> None:
    shares = refund_shares(money, paid)
    assert sum(shares) <= money
    for share, (amount, refunded, usable) in zip(shares, paid, strict=True):
        assert 0 <= share <= amount - refunded
        assert usable or share == 0
    if sum(shares) < money:  # the till pays cash only once every usable card is whole again
        assert all(
            share == amount - refunded
            for share, (amount, refunded, usable) in zip(shares, paid, strict=True)
            if usable
        )


# ---- rate-limit windows ----------------------------------------------------------------------
def test_windows_are_fixed_and_say_when_to_retry() -> None:
    moment = datetime(2026, 1, 15, 9, 7, 30, tzinfo=UTC)
    window = Window.at(moment, 600)
    assert window.start == datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
    assert window.retry_after(moment) == 150
    assert Window.at(datetime(2026, 1, 15, 9, 9, 59, 999, tzinfo=UTC), 600) == window
    assert window.retry_after(datetime(2026, 1, 15, 9, 9, 59, 999999, tzinfo=UTC)) == 1
    error = RateLimited("slow down", retry_after=7)
    assert (error.status, error.code, error.extra) == (429, "rate_limited", {"retry_after": 7})


# ---- the policy ------------------------------------------------------------------------------
def test_the_default_policy() -> None:
    policy = GiftCardPolicy()
    assert policy.validity == RollingExpiry(days=365)
    assert policy.pin_needed("online")
    assert policy.pin_needed("app")
    assert not policy.pin_needed("store")
    assert GiftCardPolicy(pin_required="always").pin_needed("store")


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"surprise": 1}, ("surprise",)),
        ({"min_amount": "100"}, ("min_amount",)),
        ({"min_amount": 0}, ("min_amount",)),
        ({"min_amount": 500, "max_amount": 100}, ()),
        ({"validity": {"kind": "rolling", "days": 0}}, ("validity", "rolling", "days")),
        ({"validity": {"kind": "forever"}}, ("validity",)),
        ({"pin_required": "sometimes"}, ("pin_required",)),
        ({"number_prefix": "9a"}, ("number_prefix",)),
        ({"enquiry_limits": {"per_card": 0}}, ("enquiry_limits", "per_card")),
    ],
)
def test_bad_policies_are_refused_with_their_paths(
    document: dict[str, object], path: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as refused:
        GiftCardPolicy.model_validate(document)
    assert refused.value.errors()[0]["loc"][: len(path)] == path


# ---- texts -----------------------------------------------------------------------------------
def test_balance_messages_in_both_languages() -> None:
    assert balance_message("active", 150050, "RUB", "2027-01-15") == {
        "ru": "На карте 1\u00a0500,50\u00a0₽, действует до 2027-01-15 включительно",
        "en": "1\u00a0500,50\u00a0₽ on the card, valid through 2027-01-15",
    }
    assert (
        balance_message("active", 100, "RUB", None)["en"] == "1\u00a0₽ on the card, no expiry date"
    )
    for status in ("issued", "blocked", "replaced", "expired", "strange"):
        message = balance_message(status, 0, "RUB", None)
        assert message["ru"]
        assert message["en"]
        assert message["ru"] != message["en"]


@pytest.mark.parametrize(
    "kind",
    [
        "issued",
        "activated",
        "payment",
        "refund",
        "expiry",
        "moved_out",
        "moved_in",
        "blocked",
        "unblocked",
        "replaced",
        "reissued",
        "expired",
        "unknown",
    ],
)
def test_every_history_line_reads_in_both_languages(kind: str) -> None:
    text = describe(kind, 12345, "RUB", {"receipt_number": "R-1", "other_card": "****0002"})
    assert text["ru"]
    assert text["en"]
    assert text["ru"] != text["en"]
    if kind in ("payment", "refund"):
        assert "R-1" in text["ru"]
        assert "R-1" in text["en"]
