"""Shared request parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query

from kopilka.api.pagination import DEFAULT_PAGE, MAX_PAGE

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retries with the same key and body replay the first answer.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size, at most {MAX_PAGE}")]
DEFAULT_LIMIT = DEFAULT_PAGE
Cursor = Annotated[str | None, Query(max_length=64, description="next_cursor of the previous page")]
