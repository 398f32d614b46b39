"""Awards of the loyalty mechanics: one row per reward given, keyed naturally so that a job
run twice, or a retried request, never rewards twice."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.tables import metadata
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.services.ports import UnitOfWork

mechanic_awards = sa.Table(
    "mechanic_awards",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("mechanic", sa.String(32), nullable=False),
    # The natural key of the reward, e.g. "birthday:2026" or "event:<event id>".
    sa.Column("award_key", sa.String(255), nullable=False),
    sa.Column("program", sa.String(64)),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("transaction_id", sa.Uuid),
    sa.Column("status", sa.String(16), nullable=False),  # granted or voided
    sa.Column("params", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("voided_at", UtcDateTime),
    sa.UniqueConstraint("tenant_id", "member_id", "award_key"),
    sa.Index(None, "tenant_id", "member_id", "mechanic", "created_at"),
)

_COLUMNS = mechanic_awards.c


class AwardStore:
    """Reads and writes ``mechanic_awards`` inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def get(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, award_key: str
    ) -> dict[str, Any] | None:
        row = self.uow.execute(
            sa.select(mechanic_awards).where(
                _COLUMNS.tenant_id == tenant_id,
                _COLUMNS.member_id == member_id,
                _COLUMNS.award_key == award_key,
            )
        ).first()
        return dict(row._mapping) if row is not None else None

    def insert(self, row: dict[str, Any]) -> None:
        self.uow.execute(sa.insert(mechanic_awards).values(**row))

    def void(self, tenant_id: uuid.UUID, award_id: uuid.UUID, now: datetime) -> None:
        self.uow.execute(
            sa.update(mechanic_awards)
            .where(_COLUMNS.tenant_id == tenant_id, _COLUMNS.id == award_id)
            .values(status="voided", voided_at=now)
        )

    def totals(
        self,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        mechanic: str,
        since: datetime | None,
        key_prefix: str | None = None,
    ) -> tuple[int, int]:
        """How many awards (not voided) and how many points since ``since``."""
        query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(_COLUMNS.points), 0)).where(
            _COLUMNS.tenant_id == tenant_id,
            _COLUMNS.member_id == member_id,
            _COLUMNS.mechanic == mechanic,
            _COLUMNS.status == "granted",
        )
        if since is not None:
            query = query.where(_COLUMNS.created_at >= since)
        if key_prefix is not None:
            query = query.where(_COLUMNS.award_key.startswith(key_prefix, autoescape=True))
        count, points = self.uow.execute(query).one()
        return int(count), int(points)

    def of_member(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, limit: int = 100
    ) -> list[dict[str, Any]]:
        rows = self.uow.execute(
            sa.select(mechanic_awards)
            .where(_COLUMNS.tenant_id == tenant_id, _COLUMNS.member_id == member_id)
            .order_by(_COLUMNS.created_at.desc(), _COLUMNS.id.desc())
            .limit(limit)
        )
        return [dict(r._mapping) for r in rows]
