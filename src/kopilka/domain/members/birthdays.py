"""Birthdays, possibly without a year (customers often give only day and month)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_FULL = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_NO_YEAR = re.compile(r"^--(\d{2})-(\d{2})$")
# 2000 is a leap year, so 29 February is a valid day without a year.
_LEAP_YEAR = 2000


class InvalidBirthday(ValueError):
    """The text is not a birthday we accept."""


@dataclass(frozen=True)
class Birthday:
    month: int
    day: int
    year: int | None = None

    def __post_init__(self) -> None:
        try:
            date(self.year or _LEAP_YEAR, self.month, self.day)
        except ValueError as exc:
            raise InvalidBirthday(str(exc)) from exc
        if self.year is not None and not 1900 <= self.year <= 2100:
            raise InvalidBirthday("year out of range")

    @classmethod
    def parse(cls, text: str) -> Birthday:
        """Accept ISO ``YYYY-MM-DD`` or ISO 8601 without a year, ``--MM-DD``."""
        if m := _FULL.match(text):
            return cls(year=int(m[1]), month=int(m[2]), day=int(m[3]))
        if m := _NO_YEAR.match(text):
            return cls(month=int(m[1]), day=int(m[2]))
        raise InvalidBirthday("use YYYY-MM-DD, or --MM-DD without a year")

    def isoformat(self) -> str:
        if self.year is None:
            return f"--{self.month:02d}-{self.day:02d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"

    def in_year(self, year: int) -> date:
        """The day celebrated in ``year``; 29 February falls on 28 February in other years."""
        if self.month == 2 and self.day == 29:
            try:
                return date(year, 2, 29)
            except ValueError:
                return date(year, 2, 28)
        return date(year, self.month, self.day)
