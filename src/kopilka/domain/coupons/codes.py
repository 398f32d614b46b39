"""Coupon codes: what a code looks like, how a typed code is normalised, and how a batch of
unique random codes is generated.

Codes are upper-case Latin letters, digits and inner hyphens, 3 to 64 characters; the till
and the API compare them case-insensitively (a code is stored and shown upper-case).
Generated codes come from the operating system's CSPRNG (``secrets``), over an alphabet
without the characters people confuse (0/O, 1/I/L) unless the merchant picks another.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

CODE_RE = re.compile(r"^[A-Z0-9](?:[A-Z0-9-]{0,62}[A-Z0-9])?$")
MIN_CODE_LENGTH = 3
MAX_CODE_LENGTH = 64
DEFAULT_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
ALLOWED_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
DEFAULT_LENGTH = 10
MIN_LENGTH, MAX_LENGTH = 4, 32
MAX_PREFIX = 16
PREFIX_RE = re.compile(r"^(?:[A-Z0-9][A-Z0-9-]{0,15})?$")
# A batch may fill at most 1/SPACE_FACTOR of the possible codes: collisions with codes
# already there stay rare (retries converge) and codes stay hard to guess.
SPACE_FACTOR = 100
MAX_DRAWS = 100  # draws to replace taken codes before giving up (never near, in practice)


class InvalidCode(ValueError):
    """Not a coupon code (the message says why)."""


class CodeSpaceExhausted(RuntimeError):
    """Drawing again keeps finding codes already taken."""


def normalise(text: str) -> str:
    """A typed code as stored: surrounding spaces dropped, upper-case."""
    return text.strip().upper()


def is_valid(code: str) -> bool:
    """Is ``code`` (already normalised) shaped like a coupon code?"""
    return MIN_CODE_LENGTH <= len(code) <= MAX_CODE_LENGTH and CODE_RE.match(code) is not None


def parse(text: str) -> str:
    """The normalised code, or :class:`InvalidCode`."""
    code = normalise(text)
    if not is_valid(code):
        raise InvalidCode(
            f"A coupon code: {MIN_CODE_LENGTH} to {MAX_CODE_LENGTH} Latin letters, digits "
            "and inner hyphens."
        )
    return code


def check_alphabet(alphabet: str) -> str | None:
    """Why ``alphabet`` (upper-cased) cannot make codes, or None."""
    if not 2 <= len(alphabet) <= 36:
        return "An alphabet of 2 to 36 characters."
    if set(alphabet) - ALLOWED_ALPHABET:
        return "Only Latin letters and digits."
    if len(set(alphabet)) != len(alphabet):
        return "Each character once."
    return None


def code_space(alphabet: str, length: int) -> int:
    """How many different codes ``length`` characters of ``alphabet`` make."""
    return int(len(alphabet) ** length)


def fits(count: int, alphabet: str, length: int) -> bool:
    """Is the code space large enough for ``count`` more codes?"""
    return code_space(alphabet, length) >= count * SPACE_FACTOR


def _translation(alphabet: str) -> tuple[bytes, int]:
    """A byte -> character table for rejection sampling: bytes at or above the largest
    multiple of the alphabet's size map to NUL and are dropped, so every character is
    equally likely."""
    size = len(alphabet)
    limit = 256 - 256 % size
    table = bytes(ord(alphabet[b % size]) if b < limit else 0 for b in range(256))
    return table, limit


def random_symbols(count: int, alphabet: str) -> str:
    """``count`` characters drawn uniformly from ``alphabet`` with ``secrets``."""
    table, limit = _translation(alphabet)
    out: list[bytes] = []
    have = 0
    while have < count:
        # Ask for a little more than needed: on average limit/256 of the bytes survive.
        want = (count - have) * 256 // limit + 64
        chunk = secrets.token_bytes(want).translate(table).replace(b"\x00", b"")
        out.append(chunk)
        have += len(chunk)
    return b"".join(out)[:count].decode("ascii")


# Personal coupons issued by receipts, stamp cards, rewards and life-cycle events: "K" and
# 12 symbols of the default alphabet, ≈ 59 random bits, so that even a tenant with
# millions of them practically never draws a taken code (the unique key would refuse it).
PERSONAL_PREFIX, PERSONAL_LENGTH = "K", 12


def personal_code() -> str:
    """A fresh code for a coupon issued to one member."""
    return PERSONAL_PREFIX + random_symbols(PERSONAL_LENGTH, DEFAULT_ALPHABET)


def generate(
    count: int, length: int, alphabet: str = DEFAULT_ALPHABET, prefix: str = ""
) -> list[str]:
    """``count`` distinct random codes ``prefix`` + ``length`` characters of ``alphabet``."""
    codes: set[str] = set()
    result: list[str] = []
    while len(result) < count:
        missing = count - len(result)
        symbols = random_symbols(missing * length, alphabet)
        for i in range(0, len(symbols), length):
            code = prefix + symbols[i : i + length]
            if code not in codes:
                codes.add(code)
                result.append(code)
    return result


def replace_taken(
    codes: list[str], taken: Iterable[str], length: int, alphabet: str, prefix: str
) -> list[str]:
    """``codes`` without those ``taken``, topped up with fresh ones to the same count."""
    gone = set(taken)
    kept = [c for c in codes if c not in gone]
    seen = set(kept) | gone
    for _ in range(MAX_DRAWS):
        if len(kept) == len(codes):
            return kept
        for code in generate(len(codes) - len(kept), length, alphabet, prefix):
            if code not in seen:
                seen.add(code)
                kept.append(code)
    if len(kept) < len(codes):
        raise CodeSpaceExhausted("No free codes left to draw.")
    return kept
