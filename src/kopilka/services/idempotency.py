"""Idempotent writes: the same key and body replay the first answer and write nothing.

The record is written in the same database transaction as the work, so a crash leaves
neither. A twin request arriving while the first still runs is told so at once (409):
PostgreSQL answers through a transaction-scoped advisory lock, SQLite through an in-process
registry (one process owns an embedded database).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any

from kopilka.domain.errors import Conflict, ValidationFailed
from kopilka.services.ports import UnitOfWork

MAX_KEY_LENGTH = 255


def request_hash(scope: str, body: Any) -> str:
    """A stable hash of what was asked: the operation and its canonical JSON body."""
    text = json.dumps({"scope": scope, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def replay_or_claim(
    uow: UnitOfWork, tenant_id: uuid.UUID, key: str | None, digest: str
) -> dict[str, Any] | None:
    """Return the stored response for ``key``, or ``None`` when the work should run."""
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.",
            code="invalid_idempotency_key",
        )
    if not uow.claim_key(tenant_id, key):
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry later.",
            code="idempotency_in_progress",
        )
    record = uow.directory.idempotency_record(tenant_id, key)
    if record is None:
        return None
    if record["request_hash"] != digest:
        raise ValidationFailed(
            "This Idempotency-Key was already used with a different request.",
            code="idempotency_key_reused",
        )
    response: dict[str, Any] = record["response"]
    return response


def remember(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    key: str | None,
    digest: str,
    response: dict[str, Any],
    now: datetime,
) -> None:
    if key is not None:
        uow.directory.save_idempotency_record(tenant_id, key, digest, response, now)
