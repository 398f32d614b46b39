"""The outbox: business events recorded in the same transaction as the change that raised
them (e.g. ``reward.low_stock``), for webhooks and other consumers to deliver later."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.tables import metadata
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.ids import new_id
from kopilka.services.ports import UnitOfWork

outbox_events = sa.Table(
    "outbox_events",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("delivered_at", UtcDateTime),
    sa.Index(None, "tenant_id", "type", "id"),
    sa.Index(None, "delivered_at"),
)


def publish(
    uow: UnitOfWork, tenant_id: uuid.UUID, type_: str, payload: dict[str, Any], now: datetime
) -> uuid.UUID:
    """Record an event; it commits or rolls back with the caller's unit of work."""
    event_id = new_id()
    uow.execute(
        sa.insert(outbox_events).values(
            id=event_id,
            tenant_id=tenant_id,
            type=type_,
            payload=payload,
            created_at=now,
            delivered_at=None,
        )
    )
    return event_id


def recent(uow: UnitOfWork, tenant_id: uuid.UUID, type_: str, limit: int = 100) -> list[Any]:
    """The tenant's latest events of a type, newest first."""
    rows = uow.execute(
        sa.select(outbox_events)
        .where(outbox_events.c.tenant_id == tenant_id, outbox_events.c.type == type_)
        .order_by(outbox_events.c.id.desc())
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]
