"""Catalogue, program versions, receipts, refunds and coupons."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kopilka.adapters.db.tables import (
    coupons,
    products,
    programs,
    receipt_lines,
    receipts,
    refunds,
)

Row = dict[str, Any]


def _one(result: Any) -> Row | None:
    row = result.first()
    return dict(row._mapping) if row is not None else None


# Hot statements of the till are built once (see ledger_store for why).
_PRODUCTS = sa.select(products).where(
    products.c.tenant_id == sa.bindparam("t"),
    products.c.sku.in_(sa.bindparam("skus", expanding=True)),
)
_RECEIPT_BY_NUMBER = sa.select(receipts).where(
    receipts.c.tenant_id == sa.bindparam("t"),
    receipts.c.outlet_id == sa.bindparam("o"),
    receipts.c.receipt_number == sa.bindparam("n"),
)
_COUNT_PURCHASES = (
    sa.select(sa.func.count())
    .select_from(receipts)
    .where(
        receipts.c.tenant_id == sa.bindparam("t"),
        receipts.c.member_id == sa.bindparam("m"),
        receipts.c.status == "confirmed",
    )
)


class SqlCommerceStore:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name

    # ---- products ----------------------------------------------------------------------
    def upsert_products(self, rows: list[Row]) -> None:
        """Insert or update by (tenant, sku), in one statement per batch."""
        if not rows:
            return
        insert: Any = (
            postgresql.insert(products) if self.dialect == "postgresql" else sqlite.insert(products)
        )
        updatable = (
            "name",
            "category",
            "brand",
            "tags",
            "attributes",
            "price",
            "min_price",
            "no_discount",
            "no_points",
            "updated_at",
        )
        stmt = insert.on_conflict_do_update(
            index_elements=["tenant_id", "sku"],
            set_={c: getattr(insert.excluded, c) for c in updatable},
        )
        self.conn.execute(stmt, rows)

    def products_by_sku(self, tenant_id: uuid.UUID, skus: Sequence[str]) -> dict[str, Row]:
        if not skus:
            return {}
        rows = self.conn.execute(_PRODUCTS, {"t": tenant_id, "skus": sorted(set(skus))})
        return {r.sku: dict(r._mapping) for r in rows}

    def list_products(self, tenant_id: uuid.UUID, after: str | None, limit: int) -> list[Row]:
        stmt = sa.select(products).where(products.c.tenant_id == tenant_id)
        if after:
            stmt = stmt.where(products.c.sku > after)
        rows = self.conn.execute(stmt.order_by(products.c.sku).limit(limit))
        return [dict(r._mapping) for r in rows]

    # ---- programs ----------------------------------------------------------------------
    def insert_program(self, row: Row) -> None:
        self.conn.execute(sa.insert(programs), row)

    def latest_program(self, tenant_id: uuid.UUID, code: str) -> Row | None:
        return _one(
            self.conn.execute(
                sa.select(programs)
                .where(programs.c.tenant_id == tenant_id, programs.c.code == code)
                .order_by(programs.c.version.desc())
                .limit(1)
            )
        )

    def program_version(self, tenant_id: uuid.UUID, code: str, version: int) -> Row | None:
        return _one(
            self.conn.execute(
                sa.select(programs).where(
                    programs.c.tenant_id == tenant_id,
                    programs.c.code == code,
                    programs.c.version == version,
                )
            )
        )

    def program_versions(self, tenant_id: uuid.UUID, code: str | None = None) -> list[Row]:
        stmt = sa.select(
            programs.c.code,
            programs.c.version,
            programs.c.starts_at,
            programs.c.ends_at,
            programs.c.published_at,
            programs.c.digest,
            programs.c.actor,
        ).where(programs.c.tenant_id == tenant_id)
        if code is not None:
            stmt = stmt.where(programs.c.code == code)
        rows = self.conn.execute(stmt.order_by(programs.c.code, programs.c.version))
        return [dict(r._mapping) for r in rows]

    def lock_program_code(self, tenant_id: uuid.UUID, code: str) -> None:
        """Serialise publications of one program code (PostgreSQL advisory lock)."""
        if self.dialect == "postgresql":
            self.conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                {"k": f"program:{tenant_id}:{code}"},
            )

    # ---- receipts ----------------------------------------------------------------------
    def receipt_by_number(
        self, tenant_id: uuid.UUID, outlet_id: uuid.UUID, number: str
    ) -> Row | None:
        params = {"t": tenant_id, "o": outlet_id, "n": number}
        return _one(self.conn.execute(_RECEIPT_BY_NUMBER, params))

    def receipt(
        self, tenant_id: uuid.UUID, receipt_id: uuid.UUID, lock: bool = False
    ) -> Row | None:
        stmt = sa.select(receipts).where(
            receipts.c.tenant_id == tenant_id, receipts.c.id == receipt_id
        )
        if lock and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return _one(self.conn.execute(stmt))

    def insert_receipt(self, row: Row, lines: list[Row]) -> None:
        self.conn.execute(sa.insert(receipts), row)
        if lines:
            self.conn.execute(sa.insert(receipt_lines), lines)

    def update_receipt(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID, values: Row) -> None:
        self.conn.execute(
            sa.update(receipts)
            .where(receipts.c.tenant_id == tenant_id, receipts.c.id == receipt_id)
            .values(**values)
        )

    def receipt_lines(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID) -> list[Row]:
        rows = self.conn.execute(
            sa.select(receipt_lines)
            .where(receipt_lines.c.tenant_id == tenant_id, receipt_lines.c.receipt_id == receipt_id)
            .order_by(receipt_lines.c.line_no)
        )
        return [dict(r._mapping) for r in rows]

    def set_refunded_qty(
        self, tenant_id: uuid.UUID, receipt_id: uuid.UUID, qty_by_line: dict[int, Any]
    ) -> None:
        if not qty_by_line:
            return
        self.conn.execute(
            sa.update(receipt_lines)
            .where(
                receipt_lines.c.tenant_id == tenant_id,
                receipt_lines.c.receipt_id == receipt_id,
                receipt_lines.c.line_no == sa.bindparam("_line"),
            )
            .values(refunded_qty=sa.bindparam("_qty")),
            [{"_line": line, "_qty": qty} for line, qty in sorted(qty_by_line.items())],
        )

    def member_receipts(
        self,
        tenant_id: uuid.UUID,
        member_ids: Sequence[uuid.UUID],
        before: uuid.UUID | None,
        limit: int,
    ) -> list[Row]:
        stmt = sa.select(receipts).where(
            receipts.c.tenant_id == tenant_id, receipts.c.member_id.in_(list(member_ids))
        )
        if before is not None:
            stmt = stmt.where(receipts.c.id < before)
        rows = self.conn.execute(stmt.order_by(receipts.c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    def count_member_purchases(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> int:
        count = self.conn.execute(_COUNT_PURCHASES, {"t": tenant_id, "m": member_id})
        return int(count.scalar_one())

    def stale_held_receipts(
        self, now: datetime, limit: int, tenant_id: uuid.UUID | None = None
    ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        stmt = sa.select(receipts.c.tenant_id, receipts.c.id).where(
            receipts.c.status == "held", receipts.c.hold_expires_at <= now
        )
        if tenant_id is not None:
            stmt = stmt.where(receipts.c.tenant_id == tenant_id)
        return [(r.tenant_id, r.id) for r in self.conn.execute(stmt.limit(limit))]

    # ---- refunds -----------------------------------------------------------------------
    def refund_by_key(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID, key: str) -> Row | None:
        return _one(
            self.conn.execute(
                sa.select(refunds).where(
                    refunds.c.tenant_id == tenant_id,
                    refunds.c.receipt_id == receipt_id,
                    refunds.c.refund_key == key,
                )
            )
        )

    def insert_refund(self, row: Row) -> None:
        self.conn.execute(sa.insert(refunds), row)

    def refunds_of(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID) -> list[Row]:
        rows = self.conn.execute(
            sa.select(refunds)
            .where(refunds.c.tenant_id == tenant_id, refunds.c.receipt_id == receipt_id)
            .order_by(refunds.c.id)
        )
        return [dict(r._mapping) for r in rows]

    # ---- coupons -----------------------------------------------------------------------
    def insert_coupon(self, row: Row) -> None:
        self.conn.execute(sa.insert(coupons), row)

    def coupons_of(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> list[Row]:
        rows = self.conn.execute(
            sa.select(coupons)
            .where(coupons.c.tenant_id == tenant_id, coupons.c.member_id == member_id)
            .order_by(coupons.c.id)
        )
        return [dict(r._mapping) for r in rows]
