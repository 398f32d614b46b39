"""Tables and store of the draws feature.

* ``draws``: one row per draw: its definition, status, the seed (kept secret until the draw
  has run) and its published hash, the pseudonym key (never shown), the frozen list's hash.
* ``draw_entries``: the frozen list, one row per qualifying receipt, numbered in canonical
  order (the order the receipts were made); written once, at the freeze.
* ``draw_winners``: one row per prize slot won, with the prize's delivery status.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.mechanics.tiers import member_tiers
from kopilka.adapters.db.tables import (
    audit_log,
    members,
    metadata,
    outlets,
    receipt_lines,
    receipts,
)
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.services.ports import UnitOfWork

draws = sa.Table(
    "draws",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # draft, open, frozen, drawn
    sa.Column("definition", Json, nullable=False),
    sa.Column("starts_on", sa.Date, nullable=False),
    sa.Column("ends_on", sa.Date, nullable=False),
    sa.Column("draw_on", sa.Date, nullable=False),
    sa.Column("algorithm", sa.String(32), nullable=False),
    # 32 random bytes in hex: chosen when the draw opens, shown only after it has run.
    sa.Column("seed", sa.String(64)),
    sa.Column("seed_hash", sa.String(64)),  # the commitment, public from the opening
    sa.Column("pseudonym_key", sa.String(64)),  # HMAC key of the members' pseudonyms; secret
    sa.Column("entries_hash", sa.String(64)),
    sa.Column("entries_count", sa.BigInteger, nullable=False),
    sa.Column("entrants", sa.BigInteger, nullable=False),
    sa.Column("total_weight", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("opened_at", UtcDateTime),
    sa.Column("frozen_at", UtcDateTime),
    sa.Column("drawn_at", UtcDateTime),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "code"),
    sa.Index(None, "status", "draw_on"),
)

draw_entries = sa.Table(
    "draw_entries",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("draw_id", sa.Uuid, sa.ForeignKey("draws.id"), nullable=False),
    sa.Column("entry_no", sa.Integer, nullable=False),  # 1.. in canonical order
    sa.Column("member_id", sa.Uuid, nullable=False),  # the surviving profile at the freeze
    sa.Column("pseudonym", sa.String(32), nullable=False),
    sa.Column("weight", sa.Integer, nullable=False),
    sa.Column("receipt_id", sa.Uuid, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),  # paid in money, less refunds
    sa.Column("tier", sa.String(32)),  # the member's tier at the freeze
    sa.PrimaryKeyConstraint("tenant_id", "draw_id", "entry_no"),
    sa.UniqueConstraint("tenant_id", "draw_id", "receipt_id"),
    sa.Index(None, "tenant_id", "member_id", "draw_id"),
)

draw_winners = sa.Table(
    "draw_winners",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("draw_id", sa.Uuid, sa.ForeignKey("draws.id"), nullable=False),
    sa.Column("slot", sa.Integer, nullable=False),
    sa.Column("rank", sa.Integer, nullable=False),
    sa.Column("entry_no", sa.Integer, nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("pseudonym", sa.String(32), nullable=False),
    sa.Column("prize", Json, nullable=False),  # the prize as defined, and its name
    # pending -> awarded (points) | granted -> ordered | points_instead; failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),  # credited for the prize
    sa.Column("paid_to", sa.Uuid),  # the profile credited (the survivor of a merge)
    sa.Column("transaction_id", sa.Uuid),
    sa.Column("order_id", sa.Uuid),
    sa.Column("error", sa.String(64)),  # the last delivery problem's code
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "draw_id", "slot"),
    sa.Index(None, "tenant_id", "member_id"),
    sa.Index(None, "status"),
)

D = draws.c
E = draw_entries.c
W = draw_winners.c
R = receipts.c
L = receipt_lines.c
M = members.c
Row = dict[str, Any]
_CHUNK = 2000


def _rows(result: Any) -> list[Row]:
    return [dict(r._mapping) for r in result]


class DrawStore:
    """Reads and writes the draws' tables inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ---- draws ---------------------------------------------------------------------------
    def insert(self, row: Row) -> None:
        self.uow.execute(sa.insert(draws).values(**row))

    def by_code(self, tenant_id: uuid.UUID, code: str, *, lock: bool = False) -> Row | None:
        stmt = sa.select(draws).where(D.tenant_id == tenant_id, D.code == code)
        if lock and self.uow.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = self.uow.execute(stmt).first()
        return dict(row._mapping) if row is not None else None

    def by_ids(self, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[Row]:
        if not ids:
            return []
        return _rows(
            self.uow.execute(sa.select(draws).where(D.tenant_id == tenant_id, D.id.in_(ids)))
        )

    def update(self, tenant_id: uuid.UUID, draw_id: uuid.UUID, values: Row) -> None:
        self.uow.execute(
            sa.update(draws).where(D.tenant_id == tenant_id, D.id == draw_id).values(**values)
        )

    def page(
        self, tenant_id: uuid.UUID, after: uuid.UUID | None, limit: int, status: str | None
    ) -> list[Row]:
        stmt = sa.select(draws).where(D.tenant_id == tenant_id)
        if after is not None:
            stmt = stmt.where(D.id > after)
        if status is not None:
            stmt = stmt.where(D.status == status)
        return _rows(self.uow.execute(stmt.order_by(D.id).limit(limit)))

    def with_status(self, tenant_id: uuid.UUID, status: str) -> list[Row]:
        return _rows(
            self.uow.execute(
                sa.select(draws).where(D.tenant_id == tenant_id, D.status == status).order_by(D.id)
            )
        )

    def due(self, until: date, tenant_id: uuid.UUID | None) -> list[Row]:
        """Draws the clock may move on: open or frozen ones whose day is ``until`` or
        earlier, and drawn ones with prizes still to deliver (not the failed ones)."""
        waiting = sa.select(W.draw_id).where(W.status.in_(("pending", "granted")))
        stmt = sa.select(D.id, D.tenant_id, D.code, D.status, D.draw_on).where(
            sa.or_(
                sa.and_(D.status.in_(("open", "frozen")), D.draw_on <= until),
                sa.and_(D.status == "drawn", D.id.in_(waiting)),
            )
        )
        if tenant_id is not None:
            stmt = stmt.where(D.tenant_id == tenant_id)
        return _rows(self.uow.execute(stmt.order_by(D.tenant_id, D.id)))

    # ---- what makes entries --------------------------------------------------------------
    def outlet_ids(self, tenant_id: uuid.UUID, codes: Sequence[str]) -> dict[str, uuid.UUID]:
        rows = self.uow.execute(
            sa.select(outlets.c.code, outlets.c.id).where(
                outlets.c.tenant_id == tenant_id, outlets.c.code.in_(list(codes))
            )
        )
        return {r.code: r.id for r in rows}

    def _receipt_filter(
        self,
        tenant_id: uuid.UUID,
        starts_at: datetime,
        ends_at: datetime,
        min_pay: int,
        outlet_ids: Sequence[uuid.UUID] | None,
        channels: Sequence[str] | None,
        member_ids: Sequence[uuid.UUID] | None,
    ) -> list[Any]:
        where: list[Any] = [
            R.tenant_id == tenant_id,
            R.status == "confirmed",
            R.member_id.is_not(None),
            R.occurred_at >= starts_at,
            R.occurred_at < ends_at,
            # Refunds only lower what was paid: the threshold on the total is a safe filter.
            R.total_pay >= min_pay,
        ]
        if outlet_ids is not None:
            where.append(R.outlet_id.in_(list(outlet_ids)))
        if channels is not None:
            where.append(R.channel.in_(list(channels)))
        if member_ids is not None:
            where.append(R.member_id.in_(list(member_ids)))
        return where

    def candidate_receipts(
        self,
        tenant_id: uuid.UUID,
        starts_at: datetime,
        ends_at: datetime,
        min_pay: int,
        outlet_ids: Sequence[uuid.UUID] | None,
        channels: Sequence[str] | None,
        member_ids: Sequence[uuid.UUID] | None = None,
    ) -> tuple[list[Row], list[Row]]:
        """The receipts that may make entries, in canonical order (time made, then id), and
        every line of those among them with something refunded."""
        where = self._receipt_filter(
            tenant_id, starts_at, ends_at, min_pay, outlet_ids, channels, member_ids
        )
        found = _rows(
            self.uow.execute(
                sa.select(R.id, R.member_id, R.occurred_at, R.total_pay)
                .where(*where)
                .order_by(R.occurred_at, R.id)
            )
        )
        refunded = sa.select(L.receipt_id).where(L.tenant_id == tenant_id, L.refunded_qty > 0)
        lines = _rows(
            self.uow.execute(
                sa.select(L.receipt_id, L.amount, L.discount, L.points_money, L.qty, L.refunded_qty)
                .join(receipts, sa.and_(R.tenant_id == L.tenant_id, R.id == L.receipt_id))
                .where(*where, L.receipt_id.in_(refunded))
            )
        )
        return found, lines

    def members(self, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Row]:
        found: dict[uuid.UUID, Row] = {}
        unique = sorted(set(ids))
        for i in range(0, len(unique), _CHUNK):
            rows = self.uow.execute(
                sa.select(M.id, M.status, M.merged_into_id, M.attributes).where(
                    M.tenant_id == tenant_id, M.id.in_(unique[i : i + _CHUNK])
                )
            )
            found.update({r.id: dict(r._mapping) for r in rows})
        return found

    def tiers(
        self, tenant_id: uuid.UUID, program: str, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        found: dict[uuid.UUID, str] = {}
        unique = sorted(set(ids))
        mt = member_tiers.c
        for i in range(0, len(unique), _CHUNK):
            rows = self.uow.execute(
                sa.select(mt.member_id, mt.tier).where(
                    mt.tenant_id == tenant_id,
                    mt.program == program,
                    mt.member_id.in_(unique[i : i + _CHUNK]),
                )
            )
            found.update({r.member_id: r.tier for r in rows})
        return found

    # ---- the frozen list -------------------------------------------------------------------
    def insert_entries(self, rows: Sequence[Row]) -> None:
        for i in range(0, len(rows), _CHUNK):
            self.uow.execute(sa.insert(draw_entries), list(rows[i : i + _CHUNK]))

    def entries(self, tenant_id: uuid.UUID, draw_id: uuid.UUID) -> list[Row]:
        return _rows(
            self.uow.execute(
                sa.select(E.entry_no, E.member_id, E.pseudonym, E.weight)
                .where(E.tenant_id == tenant_id, E.draw_id == draw_id)
                .order_by(E.entry_no)
            )
        )

    def member_entries(
        self,
        tenant_id: uuid.UUID,
        member_ids: Sequence[uuid.UUID],
        draw_ids: Sequence[uuid.UUID] | None,
    ) -> list[Row]:
        """Frozen entries of the profiles (a member and those merged into it)."""
        stmt = sa.select(draw_entries).where(
            E.tenant_id == tenant_id, E.member_id.in_(list(member_ids))
        )
        if draw_ids is not None:
            stmt = stmt.where(E.draw_id.in_(list(draw_ids)))
        return _rows(self.uow.execute(stmt.order_by(E.draw_id, E.entry_no)))

    def member_draw_ids(
        self, tenant_id: uuid.UUID, member_ids: Sequence[uuid.UUID]
    ) -> list[uuid.UUID]:
        """Draws the profiles have frozen entries in."""
        rows = self.uow.execute(
            sa.select(E.draw_id)
            .where(E.tenant_id == tenant_id, E.member_id.in_(list(member_ids)))
            .group_by(E.draw_id)
        )
        return list(rows.scalars())

    def audit_many(self, rows: Sequence[Row]) -> None:
        for i in range(0, len(rows), _CHUNK):
            self.uow.execute(sa.insert(audit_log), list(rows[i : i + _CHUNK]))

    # ---- winners ---------------------------------------------------------------------------
    def insert_winners(self, rows: Sequence[Row]) -> None:
        if rows:
            self.uow.execute(sa.insert(draw_winners), list(rows))

    def winners(self, tenant_id: uuid.UUID, draw_id: uuid.UUID) -> list[Row]:
        return _rows(
            self.uow.execute(
                sa.select(draw_winners)
                .where(W.tenant_id == tenant_id, W.draw_id == draw_id)
                .order_by(W.slot)
            )
        )

    def winner(
        self, tenant_id: uuid.UUID, draw_id: uuid.UUID, slot: int, *, lock: bool = False
    ) -> Row | None:
        stmt = sa.select(draw_winners).where(
            W.tenant_id == tenant_id, W.draw_id == draw_id, W.slot == slot
        )
        if lock and self.uow.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = self.uow.execute(stmt).first()
        return dict(row._mapping) if row is not None else None

    def update_winner(
        self, tenant_id: uuid.UUID, draw_id: uuid.UUID, slot: int, values: Row
    ) -> None:
        self.uow.execute(
            sa.update(draw_winners)
            .where(W.tenant_id == tenant_id, W.draw_id == draw_id, W.slot == slot)
            .values(**values)
        )

    def member_wins(self, tenant_id: uuid.UUID, member_ids: Sequence[uuid.UUID]) -> list[Row]:
        """Prizes won by the profiles' frozen entries."""
        return _rows(
            self.uow.execute(
                sa.select(draw_winners)
                .where(W.tenant_id == tenant_id, W.member_id.in_(list(member_ids)))
                .order_by(W.draw_id, W.slot)
            )
        )
