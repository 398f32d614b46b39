"""Cursor pagination: opaque cursors, capped page size."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from typing import TypeVar

from kopilka.domain.errors import ValidationFailed

MAX_PAGE = 200
DEFAULT_PAGE = 50


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed("The cursor is not one we issued.", code="invalid_cursor") from exc


T = TypeVar("T")


def cut_page(
    items: list[T], limit: int, last_id: Callable[[T], uuid.UUID]
) -> tuple[list[T], str | None]:
    """Given up to ``limit + 1`` rows, the page and the cursor of the next one (or None)."""
    page = items[:limit]
    more = len(items) > limit and bool(page)
    return page, encode_cursor(last_id(page[-1])) if more else None
