"""Coupon codes: their shape, normalisation, and random generation over an alphabet."""

from __future__ import annotations

from collections import Counter

import pytest

from kopilka.domain.coupons import codes


def test_codes_are_normalised_and_checked() -> None:
    assert codes.parse("  spring25 ") == "SPRING25"
    assert codes.parse("may-2026-abc") == "MAY-2026-ABC"
    for bad in ("ab", "-ABC", "ABC-", "AB C", "ВЕСНА", "A" * 65, "A!B", "", "   "):
        with pytest.raises(codes.InvalidCode):
            codes.parse(bad)
    assert codes.is_valid("A" * 64)
    assert codes.is_valid("K0A1B2C3D4E")  # the shape other features issue


def test_the_default_alphabet_has_no_ambiguous_characters() -> None:
    assert not set(codes.DEFAULT_ALPHABET) & set("0O1IL")
    assert len(set(codes.DEFAULT_ALPHABET)) == len(codes.DEFAULT_ALPHABET) == 31
    assert codes.check_alphabet(codes.DEFAULT_ALPHABET) is None


@pytest.mark.parametrize(
    ("alphabet", "problem"),
    [
        ("A", "An alphabet of 2 to 36 characters."),
        ("ABCA", "Each character once."),
        ("AB-", "Only Latin letters and digits."),
        ("abc", "Only Latin letters and digits."),
    ],
)
def test_bad_alphabets(alphabet: str, problem: str) -> None:
    assert codes.check_alphabet(alphabet) == problem


def test_generated_codes_are_distinct_and_well_formed() -> None:
    made = codes.generate(20_000, 8, codes.DEFAULT_ALPHABET, "SPR-")
    assert len(made) == len(set(made)) == 20_000
    for code in made:
        assert code.startswith("SPR-")
        assert len(code) == 12
        assert set(code[4:]) <= set(codes.DEFAULT_ALPHABET)
        assert codes.is_valid(code)


def test_every_character_is_about_equally_likely() -> None:
    """Rejection sampling: no character of a 31-letter alphabet is favoured (a plain
    ``byte % 31`` would make the first 8 characters 1/8 more likely)."""
    text = codes.random_symbols(310_000, codes.DEFAULT_ALPHABET)
    seen = Counter(text)
    assert set(seen) == set(codes.DEFAULT_ALPHABET)
    for n in seen.values():
        assert 9_400 < n < 10_600  # 10,000 expected; the bias would give ~11,000


def test_a_small_alphabet_still_fills_a_batch() -> None:
    made = codes.generate(500, 12, "AB")
    assert len(set(made)) == 500
    assert all(set(c) <= {"A", "B"} for c in made)


def test_the_code_space_must_be_a_hundred_times_the_batch() -> None:
    assert codes.code_space("0123456789", 4) == 10_000
    assert codes.fits(100, "0123456789", 4)
    assert not codes.fits(101, "0123456789", 4)
    assert codes.fits(1_000_000, codes.DEFAULT_ALPHABET, 6)  # 887 million codes


def test_taken_codes_are_replaced_by_fresh_ones() -> None:
    made = codes.generate(50, 6, codes.DEFAULT_ALPHABET, "X")
    taken = set(made[:10])
    again = codes.replace_taken(made, taken, 6, codes.DEFAULT_ALPHABET, "X")
    assert len(again) == len(set(again)) == 50
    assert not set(again) & taken
    assert set(made[10:]) <= set(again)


def test_personal_codes_are_long_valid_and_unambiguous() -> None:
    made = [codes.personal_code() for _ in range(20_000)]
    assert len(set(made)) == len(made)  # 59 random bits: a repeat here would be a bug
    for code in made[:500]:
        assert codes.is_valid(code)
        assert code.startswith("K")
        assert len(code) == 13
        assert set(code[1:]) <= set(codes.DEFAULT_ALPHABET)
