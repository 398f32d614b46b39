"""Cursor pagination: opaque cursors, capped page size."""

from __future__ import annotations

import base64
import binascii
import uuid

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
