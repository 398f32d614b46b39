"""Tables and store of the coupons feature: batches of generated codes, and the redemptions
of coupons at the till (the ``coupons`` table itself is in tables.py, with the columns this
feature added)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa

from kopilka.adapters.db.tables import coupons, metadata
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.services.ports import UnitOfWork

coupon_batches = sa.Table(
    "coupon_batches",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    # The merchant's name for the batch, its natural key: creating it again replays.
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("length", sa.Integer, nullable=False),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("alphabet", sa.String(36), nullable=False),
    sa.Column("benefit", Json, nullable=False),
    sa.Column("min_basket", sa.BigInteger, nullable=False),
    sa.Column("terms", Json, nullable=False),  # scope, outlets, channels, combinable...
    sa.Column("valid_from", UtcDateTime, nullable=False),
    sa.Column("valid_until", UtcDateTime),
    sa.Column("status", sa.String(16), nullable=False),  # active or voided
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("voided_at", UtcDateTime),
    sa.UniqueConstraint("tenant_id", "code"),
)

coupon_redemptions = sa.Table(
    "coupon_redemptions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("coupon_id", sa.Uuid, nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("receipt_id", sa.Uuid, nullable=False),
    sa.Column("member_id", sa.Uuid),
    sa.Column("outlet_id", sa.Uuid),
    sa.Column("discount", sa.BigInteger, nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # redeemed or restored
    sa.Column("redeemed_at", UtcDateTime, nullable=False),
    sa.Column("restored_at", UtcDateTime),
    # A receipt redeems a coupon once: the natural key of a redemption.
    sa.UniqueConstraint("tenant_id", "coupon_id", "receipt_id"),
    sa.Index(None, "tenant_id", "coupon_id", "member_id"),
    sa.Index(None, "tenant_id", "receipt_id"),
)

_C = coupons.c
_B = coupon_batches.c
_R = coupon_redemptions.c
LOOKUP_CHUNK = 500
# Columns a generated code is written with, in this order (COPY and executemany alike).
CODE_COLUMNS = (
    "id",
    "tenant_id",
    "code",
    "member_id",
    "benefit",
    "min_basket",
    "valid_from",
    "valid_until",
    "uses_left",
    "status",
    "source_type",
    "source_id",
    "created_at",
    "kind",
    "batch_id",
    "uses_total",
    "per_member",
    "terms",
    "voided_at",
)
_WITH_BATCH = coupons.outerjoin(
    coupon_batches, sa.and_(_B.tenant_id == _C.tenant_id, _B.id == _C.batch_id)
)
_OFFER_COLUMNS = (
    *coupons.c,
    _B.status.label("batch_status"),
    _B.terms.label("batch_terms"),
    _B.code.label("batch_code"),
)


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result]


class CouponStore:
    """Reads and writes coupons, batches and redemptions inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ---- coupons ---------------------------------------------------------------------------
    def by_codes(self, tenant_id: uuid.UUID, codes: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The tenant's coupons with these codes, each with its batch's status and terms."""
        if not codes:
            return {}
        rows = self.uow.execute(
            sa.select(*_OFFER_COLUMNS)
            .select_from(_WITH_BATCH)
            .where(_C.tenant_id == tenant_id, _C.code.in_(sorted(set(codes))))
        )
        return {row["code"]: row for row in _rows(rows)}

    def by_code(self, tenant_id: uuid.UUID, code: str) -> dict[str, Any] | None:
        return self.by_codes(tenant_id, [code]).get(code)

    def insert(self, row: dict[str, Any]) -> None:
        self.uow.execute(sa.insert(coupons), row)

    def code_taken(self, tenant_id: uuid.UUID, code: str) -> bool:
        return bool(self.existing_codes(tenant_id, [code]))

    def existing_codes(self, tenant_id: uuid.UUID, codes: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(codes), LOOKUP_CHUNK):
            found.update(
                self.uow.execute(
                    sa.select(_C.code).where(
                        _C.tenant_id == tenant_id, _C.code.in_(codes[i : i + LOOKUP_CHUNK])
                    )
                ).scalars()
            )
        return found

    def of_member(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        query = (
            sa.select(*_OFFER_COLUMNS)
            .select_from(_WITH_BATCH)
            .where(_C.tenant_id == tenant_id, _C.member_id == member_id)
        )
        if before is not None:
            query = query.where(_C.id < before)
        return _rows(self.uow.execute(query.order_by(_C.id.desc()).limit(limit)))

    def take_use(self, tenant_id: uuid.UUID, coupon_id: uuid.UUID) -> bool:
        """Count one use down, atomically: False when none is left (another till took the
        last one) or the coupon was voided. On PostgreSQL the row stays locked until commit,
        so a racing till waits here and then sees what this one did."""
        result = self.uow.execute(
            sa.update(coupons)
            .where(
                _C.tenant_id == tenant_id,
                _C.id == coupon_id,
                _C.status == "active",
                _C.uses_left > 0,
            )
            .values(uses_left=_C.uses_left - 1)
        )
        return bool(result.rowcount == 1)

    def give_use_back(self, tenant_id: uuid.UUID, coupon_id: uuid.UUID) -> None:
        self.uow.execute(
            sa.update(coupons)
            .where(_C.tenant_id == tenant_id, _C.id == coupon_id)
            .values(uses_left=_C.uses_left + 1)
        )

    def still_active(self, tenant_id: uuid.UUID, coupon_id: uuid.UUID) -> bool:
        status = self.uow.execute(
            sa.select(_C.status).where(_C.tenant_id == tenant_id, _C.id == coupon_id)
        ).scalar_one_or_none()
        return bool(status == "active")

    def void(self, tenant_id: uuid.UUID, coupon_id: uuid.UUID, now: datetime) -> None:
        self.uow.execute(
            sa.update(coupons)
            .where(_C.tenant_id == tenant_id, _C.id == coupon_id, _C.status == "active")
            .values(status="voided", voided_at=now)
        )

    def lock_code(self, tenant_id: uuid.UUID, code: str) -> None:
        """Two requests creating the same code take turns (the second then replays or is
        refused, never a duplicate-key error). SQLite writers already take turns."""
        if self.uow.dialect == "postgresql":
            self.uow.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                {"k": f"coupon_code:{tenant_id}:{code}"},
            )

    def serialise_member(
        self, tenant_id: uuid.UUID, coupon_id: uuid.UUID, member_id: uuid.UUID
    ) -> None:
        """Make concurrent receipts of one member with one coupon take turns until commit
        (the per-member limit is counted, then written). SQLite writers already do."""
        if self.uow.dialect == "postgresql":
            self.uow.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                {"k": f"coupon:{tenant_id}:{coupon_id}:{member_id}"},
            )

    def move_member(
        self, tenant_id: uuid.UUID, from_id: uuid.UUID, to_id: uuid.UUID
    ) -> tuple[int, int]:
        """Give one member's (a merged duplicate's) personal coupons and coupon redemptions
        to another, set-based: the per-member limits then count the duplicate's past uses.
        Returns (coupons, redemptions) moved."""
        moved = self.uow.execute(
            sa.update(coupons)
            .where(_C.tenant_id == tenant_id, _C.member_id == from_id)
            .values(member_id=to_id)
        )
        used = self.uow.execute(
            sa.update(coupon_redemptions)
            .where(_R.tenant_id == tenant_id, _R.member_id == from_id)
            .values(member_id=to_id)
        )
        return int(moved.rowcount), int(used.rowcount)

    # ---- generated codes -------------------------------------------------------------------
    def insert_codes(self, rows: Sequence[tuple[Any, ...]]) -> set[str]:
        """Insert generated codes (tuples in ``CODE_COLUMNS`` order); return the codes that
        were already taken and so not inserted. COPY on PostgreSQL, executemany on SQLite."""
        if not rows:
            return set()
        code_at = CODE_COLUMNS.index("code")
        if self.uow.dialect != "postgresql":
            # A SQLite writer holds the database's write lock: nobody inserts in between.
            tenant_id = rows[0][CODE_COLUMNS.index("tenant_id")]
            taken = self.existing_codes(tenant_id, [r[code_at] for r in rows])
            fresh = [
                dict(zip(CODE_COLUMNS, r, strict=True)) for r in rows if r[code_at] not in taken
            ]
            if fresh:
                self.uow.execute(sa.insert(coupons), fresh)
            return taken
        return self._copy_codes(rows, code_at)

    def _copy_codes(self, rows: Sequence[tuple[Any, ...]], code_at: int) -> set[str]:
        conn: sa.Connection = self.uow.commerce.conn
        # Fast path: COPY straight into coupons under a savepoint. A clash with a code
        # already there (one in ~10^12 for a default batch) fails the COPY whole: back to
        # the savepoint, and the careful path below finds the clashing codes.
        try:
            with conn.begin_nested():
                self._copy(conn, "coupons", rows)
            return set()
        except psycopg.errors.UniqueViolation:
            pass
        # COPY cannot skip a clash: load a scratch table, then insert what is new in one
        # statement (which waits for a concurrent twin to commit, then skips its codes).
        conn.execute(
            sa.text(
                "CREATE TEMP TABLE IF NOT EXISTS coupon_codes_new "
                "(LIKE coupons INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
        )
        conn.execute(sa.text("TRUNCATE coupon_codes_new"))
        self._copy(conn, "coupon_codes_new", rows)
        names = ", ".join(CODE_COLUMNS)
        inserted = set(
            conn.execute(
                sa.text(
                    f"INSERT INTO coupons ({names}) SELECT {names} FROM coupon_codes_new "  # noqa: S608 - our own column names
                    "ON CONFLICT (tenant_id, code) DO NOTHING RETURNING code"
                )
            ).scalars()
        )
        return {r[code_at] for r in rows} - inserted

    @staticmethod
    def _copy(conn: sa.Connection, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """COPY rows (in ``CODE_COLUMNS`` order) into ``table`` on the unit of work's own
        connection, so they commit or roll back with it."""
        driver = conn.connection.driver_connection
        assert driver is not None
        names = ", ".join(CODE_COLUMNS)
        json_at = [i for i, c in enumerate(CODE_COLUMNS) if c in ("benefit", "terms")]
        dumped: dict[int, str] = {}  # a batch's rows share their JSON objects: dump each once
        with (
            driver.cursor() as cur,
            cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                values = list(row)
                for i in json_at:
                    value = values[i]
                    if value is not None:
                        text = dumped.get(id(value))
                        if text is None:
                            text = dumped[id(value)] = json.dumps(value)
                        values[i] = text
                copy.write_row(values)

    # ---- batches ---------------------------------------------------------------------------
    def batch(self, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> dict[str, Any] | None:
        row = self.uow.execute(
            sa.select(coupon_batches).where(_B.tenant_id == tenant_id, _B.id == batch_id)
        ).first()
        return dict(row._mapping) if row is not None else None

    def batch_by_code(self, tenant_id: uuid.UUID, code: str) -> dict[str, Any] | None:
        row = self.uow.execute(
            sa.select(coupon_batches).where(_B.tenant_id == tenant_id, _B.code == code)
        ).first()
        return dict(row._mapping) if row is not None else None

    def lock_batch_code(self, tenant_id: uuid.UUID, code: str) -> None:
        """Two requests creating the same batch take turns (the second then replays)."""
        if self.uow.dialect == "postgresql":
            self.uow.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                {"k": f"coupon_batch:{tenant_id}:{code}"},
            )

    def insert_batch(self, row: dict[str, Any]) -> None:
        self.uow.execute(sa.insert(coupon_batches), row)

    def batches(
        self, tenant_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> list[dict[str, Any]]:
        query = sa.select(coupon_batches).where(_B.tenant_id == tenant_id)
        if before is not None:
            query = query.where(_B.id < before)
        return _rows(self.uow.execute(query.order_by(_B.id.desc()).limit(limit)))

    def batch_counts(self, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> dict[str, int]:
        """Codes of the batch: how many, how many used up, how many voided."""
        used = sa.func.sum(sa.case((_C.uses_left <= 0, 1), else_=0))
        voided = sa.func.sum(sa.case((_C.status == "voided", 1), else_=0))
        total, used_n, voided_n = self.uow.execute(
            sa.select(sa.func.count(), used, voided).where(
                _C.tenant_id == tenant_id, _C.batch_id == batch_id
            )
        ).one()
        return {"codes": int(total), "used": int(used_n or 0), "voided": int(voided_n or 0)}

    def batch_codes(
        self, tenant_id: uuid.UUID, batch_id: uuid.UUID, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """A page of the batch's codes in code order (the index serves it)."""
        query = sa.select(_C.code, _C.status, _C.uses_left, _C.valid_from, _C.valid_until).where(
            _C.tenant_id == tenant_id, _C.batch_id == batch_id
        )
        if after is not None:
            query = query.where(_C.code > after)
        return _rows(self.uow.execute(query.order_by(_C.code).limit(limit)))

    def batch_page(
        self, tenant_id: uuid.UUID, batch_id: uuid.UUID, offset: int, limit: int
    ) -> list[str]:
        return list(
            self.uow.execute(
                sa.select(_C.code)
                .where(_C.tenant_id == tenant_id, _C.batch_id == batch_id)
                .order_by(_C.code)
                .offset(offset)
                .limit(limit)
            ).scalars()
        )

    def void_batch(self, tenant_id: uuid.UUID, batch_id: uuid.UUID, now: datetime) -> None:
        self.uow.execute(
            sa.update(coupon_batches)
            .where(_B.tenant_id == tenant_id, _B.id == batch_id, _B.status == "active")
            .values(status="voided", voided_at=now)
        )
        self.uow.execute(
            sa.update(coupons)
            .where(
                _C.tenant_id == tenant_id,
                _C.batch_id == batch_id,
                _C.status == "active",
                _C.uses_left > 0,  # a used code stays used (its redemption stands)
            )
            .values(status="voided", voided_at=now)
        )

    # ---- redemptions -----------------------------------------------------------------------
    def member_uses(
        self, tenant_id: uuid.UUID, coupon_ids: Iterable[uuid.UUID], member_id: uuid.UUID
    ) -> dict[uuid.UUID, int]:
        ids = sorted(set(coupon_ids))
        if not ids:
            return {}
        rows = self.uow.execute(
            sa.select(_R.coupon_id, sa.func.count())
            .where(
                _R.tenant_id == tenant_id,
                _R.coupon_id.in_(ids),
                _R.member_id == member_id,
                _R.status == "redeemed",
            )
            .group_by(_R.coupon_id)
        )
        return {coupon_id: int(n) for coupon_id, n in rows}

    def insert_redemption(self, row: dict[str, Any]) -> None:
        self.uow.execute(sa.insert(coupon_redemptions), row)

    def redemptions_of_receipt(
        self, tenant_id: uuid.UUID, receipt_id: uuid.UUID
    ) -> list[dict[str, Any]]:
        return _rows(
            self.uow.execute(
                sa.select(coupon_redemptions)
                .where(_R.tenant_id == tenant_id, _R.receipt_id == receipt_id)
                .order_by(_R.id)
            )
        )

    def mark_restored(self, tenant_id: uuid.UUID, redemption_id: uuid.UUID, now: datetime) -> bool:
        """Flip one redemption to restored; False if it already was (a repeated refund)."""
        result = self.uow.execute(
            sa.update(coupon_redemptions)
            .where(
                _R.tenant_id == tenant_id,
                _R.id == redemption_id,
                _R.status == "redeemed",
            )
            .values(status="restored", restored_at=now)
        )
        return bool(result.rowcount == 1)

    def redemptions_of_coupon(
        self, tenant_id: uuid.UUID, coupon_id: uuid.UUID, limit: int
    ) -> list[dict[str, Any]]:
        return _rows(
            self.uow.execute(
                sa.select(coupon_redemptions)
                .where(_R.tenant_id == tenant_id, _R.coupon_id == coupon_id)
                .order_by(_R.id.desc())
                .limit(limit)
            )
        )

    def uses_of(self, tenant_id: uuid.UUID, coupon_id: uuid.UUID) -> int:
        return int(
            self.uow.execute(
                sa.select(sa.func.count()).where(
                    _R.tenant_id == tenant_id, _R.coupon_id == coupon_id, _R.status == "redeemed"
                )
            ).scalar_one()
        )
