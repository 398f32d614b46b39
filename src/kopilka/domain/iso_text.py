"""Moments and days arrive as ISO 8601 text, as the API document says.

Pydantic takes a number, or text of digits, for seconds since 1970: ``"expires_at": 0`` was
1970-01-01 and ``?from=1700000000`` a day in 2023, where a client's mistake should be a 422
naming the field. ``IsoMomentText`` and ``IsoDayText`` go before a ``datetime`` or ``date``
type in ``Annotated``; values already parsed (Python callers, stored documents) pass.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

# A year of four digits and a month: every ISO 8601 date and date-time starts so.
_ISO_START = re.compile(r"^[0-9]{4}-[0-9]{2}")


def _iso_text(kind: str, example: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, date) or (isinstance(value, str) and _ISO_START.match(value)):
            return value  # a datetime is a date too
        raise PydanticCustomError(
            f"{kind}_type", f"Input should be ISO 8601 text, e.g. {example}", {}
        )

    return BeforeValidator(check)


IsoMomentText = _iso_text("datetime", "2026-01-15T09:30:00+03:00")
IsoDayText = _iso_text("date", "2026-01-15")
