"""Card numbers with a check digit: EAN-13 (scannable by any till) or Luhn."""

from __future__ import annotations

import secrets
from enum import StrEnum


class CardScheme(StrEnum):
    EAN13 = "ean13"
    LUHN = "luhn"


LENGTH = {CardScheme.EAN13: 13, CardScheme.LUHN: 16}


def ean13_check_digit(body: str) -> str:
    """Check digit for the first 12 digits of an EAN-13."""
    if len(body) != 12 or not body.isdigit():
        raise ValueError("EAN-13 body must be 12 digits")
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return str((10 - total % 10) % 10)


def luhn_check_digit(body: str) -> str:
    """Luhn (mod 10) check digit for ``body``."""
    if not body.isdigit():
        raise ValueError("Luhn body must be digits")
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def check_digit(scheme: CardScheme, body: str) -> str:
    return ean13_check_digit(body) if scheme is CardScheme.EAN13 else luhn_check_digit(body)


def is_valid_number(scheme: CardScheme, number: str) -> bool:
    """True when ``number`` has the scheme's length and a correct check digit."""
    if len(number) != LENGTH[scheme] or not number.isdigit():
        return False
    return check_digit(scheme, number[:-1]) == number[-1]


def make_number(scheme: CardScheme, prefix: str, serial: int) -> str:
    """Compose prefix + zero-padded serial + check digit."""
    body_len = LENGTH[scheme] - 1
    serial_len = body_len - len(prefix)
    if serial_len < 1 or serial >= 10**serial_len or serial < 0:
        raise ValueError("serial does not fit after the prefix")
    body = prefix + str(serial).zfill(serial_len)
    return body + check_digit(scheme, body)


def random_number(scheme: CardScheme, prefix: str) -> str:
    """A random card number for a virtual card; callers retry on the rare collision."""
    serial_len = LENGTH[scheme] - 1 - len(prefix)
    return make_number(scheme, prefix, secrets.randbelow(10**serial_len))
