"""Gift card numbers: digits with a Luhn check digit, unique per tenant.

Generated numbers are 16 digits (the tenant's prefix, random digits, the check digit);
pre-printed stock may bring any length from 12 to 19 digits, as long as the check digit is
right. Numbers are shown masked wherever the full number is not needed.
"""

from __future__ import annotations

import hashlib
import secrets

from kopilka.domain.members.card_numbers import luhn_check_digit

MIN_LENGTH = 12
MAX_LENGTH = 19
GENERATED_LENGTH = 16


def is_valid_number(number: str) -> bool:
    """True for 12 to 19 ASCII digits ending with the right Luhn check digit."""
    if not MIN_LENGTH <= len(number) <= MAX_LENGTH:
        return False
    # str.isdigit() also accepts other scripts' digits ("٢"): ASCII only.
    if not number.isascii() or not number.isdigit():
        return False
    return luhn_check_digit(number[:-1]) == number[-1]


def generate_number(prefix: str) -> str:
    """A random 16-digit number after ``prefix``; callers retry on the rare collision."""
    body_len = GENERATED_LENGTH - 1 - len(prefix)
    if body_len < 8:
        raise ValueError("the prefix leaves too few random digits")
    body = prefix + "".join(secrets.choice("0123456789") for _ in range(body_len))
    return body + luhn_check_digit(body)


def mask(number: str) -> str:
    """The last four digits only, e.g. ``************1234``: enough to tell cards apart."""
    return "*" * max(len(number) - 4, 0) + number[-4:]


def number_digest(number: str) -> str:
    """A stable key for a number that stores no number (rate-limit counters)."""
    return hashlib.sha256(number.encode()).hexdigest()[:40]
