"""Tables and store of the reward catalogue: rewards, their stock per location, partner code
pools, and the orders members place.

Stock and limits are changed by conditional UPDATEs (``quantity >= n``, ``redeemed + n <=
limit``) whose row counts say whether the change happened; on PostgreSQL a concurrent
writer waits for the row and re-checks the condition, so neither ever goes past zero or past
the limit, and CHECK constraints stand behind them as the last line of defence.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kopilka.adapters.db.tables import metadata
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.ids import new_id
from kopilka.services.ports import UnitOfWork

Row = dict[str, Any]

rewards = sa.Table(
    "rewards",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active or archived
    sa.Column("sku", sa.String(64)),
    sa.Column("currency", sa.String(16), nullable=False),
    # The whole definition as the API takes it (name, cost, visibility, limits, sections).
    sa.Column("definition", Json, nullable=False),
    # Copied out of the definition for the conditional UPDATE that enforces it.
    sa.Column("limit_total", sa.BigInteger),
    # Units in orders not cancelled: the total limit's counter.
    sa.Column("redeemed", sa.BigInteger, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "code"),
    sa.UniqueConstraint("tenant_id", "sku"),
    sa.CheckConstraint(
        "redeemed >= 0 AND (limit_total IS NULL OR redeemed <= limit_total)",
        name="redeemed_within_limit",
    ),
)

reward_stock = sa.Table(
    "reward_stock",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("reward_id", sa.Uuid, sa.ForeignKey("rewards.id"), nullable=False),
    # An outlet code or a warehouse code.
    sa.Column("location", sa.String(64), nullable=False),
    sa.Column("quantity", sa.BigInteger, nullable=False),
    sa.Column("low_stock_threshold", sa.BigInteger),
    # A reward.low_stock event is outstanding for this crossing (see logic.low_stock_alert).
    sa.Column("low_stock_alerted", sa.Boolean, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "reward_id", "location"),
    sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
)

reward_codes = sa.Table(
    "reward_codes",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("reward_id", sa.Uuid, sa.ForeignKey("rewards.id"), nullable=False),
    sa.Column("code", sa.String(128), nullable=False),
    sa.Column("order_id", sa.Uuid),  # NULL while the code is in the pool
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("issued_at", UtcDateTime),
    sa.UniqueConstraint("tenant_id", "reward_id", "code"),
    sa.Index(None, "tenant_id", "reward_id", "order_id"),
)

reward_orders = sa.Table(
    "reward_orders",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("reward_id", sa.Uuid, sa.ForeignKey("rewards.id"), nullable=False),
    sa.Column("reward_code", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("location", sa.String(64)),  # where the stock was taken from
    sa.Column("pickup_outlet", sa.String(64)),  # the outlet code it is ready at
    sa.Column("transaction_id", sa.Uuid),  # the redemption (none for a free reward)
    sa.Column("refund_transaction_id", sa.Uuid),
    # What was delivered: coupons, partner codes, the privilege, the charity; and the name.
    sa.Column("details", Json, nullable=False),
    sa.Column("valid_until", UtcDateTime),  # a privilege's end
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("ready_at", UtcDateTime),
    sa.Column("issued_at", UtcDateTime),
    sa.Column("cancelled_at", UtcDateTime),
    sa.Index(None, "tenant_id", "member_id", "reward_id", "created_at"),
    sa.Index(None, "tenant_id", "member_id", "id"),
    sa.Index(None, "tenant_id", "status", "id"),
    sa.Index(None, "tenant_id", "reward_id", "status"),
)

_R = rewards.c
_S = reward_stock.c
_C = reward_codes.c
_O = reward_orders.c
_CANCELLED = "cancelled"  # orders in any other status count against limits and totals


def _dict(row: Any) -> Row | None:
    return dict(row._mapping) if row is not None else None


class RewardStore:
    """Reads and writes the catalogue's tables inside a unit of work; every method takes the
    tenant id first and filters by it."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ---- rewards -----------------------------------------------------------------------
    def insert_reward(self, row: Row) -> bool:
        """False when the code or SKU is taken (by a concurrent insert: callers check
        first); the caller must then give up its unit of work."""
        try:
            self.uow.execute(sa.insert(rewards).values(**row))
        except sa.exc.IntegrityError:
            return False
        return True

    def reward(self, tenant_id: uuid.UUID, reward_id: uuid.UUID, lock: bool = False) -> Row | None:
        stmt = sa.select(rewards).where(_R.tenant_id == tenant_id, _R.id == reward_id)
        return _dict(self.uow.execute(stmt.with_for_update() if lock else stmt).first())

    def reward_by(self, tenant_id: uuid.UUID, field: str, value: str) -> Row | None:
        """By ``code`` or ``sku``."""
        column = _R.code if field == "code" else _R.sku
        stmt = sa.select(rewards).where(_R.tenant_id == tenant_id, column == value)
        return _dict(self.uow.execute(stmt).first())

    def rewards_by(self, tenant_id: uuid.UUID, field: str, values: Sequence[str]) -> list[Row]:
        if not values:
            return []
        column = _R.code if field == "code" else _R.sku
        stmt = sa.select(rewards).where(_R.tenant_id == tenant_id, column.in_(sorted(set(values))))
        return [dict(r._mapping) for r in self.uow.execute(stmt)]

    def list_rewards(
        self,
        tenant_id: uuid.UUID,
        after: uuid.UUID | None,
        limit: int,
        *,
        status: str | None = None,
        kind: str | None = None,
    ) -> list[Row]:
        stmt = sa.select(rewards).where(_R.tenant_id == tenant_id)
        if after is not None:
            stmt = stmt.where(_R.id > after)
        if status is not None:
            stmt = stmt.where(_R.status == status)
        if kind is not None:
            stmt = stmt.where(_R.kind == kind)
        rows = self.uow.execute(stmt.order_by(_R.id).limit(limit))
        return [dict(r._mapping) for r in rows]

    def update_reward(
        self, tenant_id: uuid.UUID, reward_id: uuid.UUID, values: Row
    ) -> Literal["updated", "limit_below_redeemed", "sku_taken"]:
        """Change a reward, unless a new total limit is below the units already redeemed
        (checked in the same statement, so no redemption slips in between) or the SKU is
        taken (the caller must then give up its unit of work)."""
        stmt = sa.update(rewards).where(_R.tenant_id == tenant_id, _R.id == reward_id)
        if values.get("limit_total") is not None:
            stmt = stmt.where(_R.redeemed <= values["limit_total"])
        try:
            changed = self.uow.execute(stmt.values(**values)).rowcount
        except sa.exc.IntegrityError:
            return "sku_taken"
        return "updated" if changed else "limit_below_redeemed"

    def count_redeemed(
        self, tenant_id: uuid.UUID, reward_id: uuid.UUID, units: int, now: datetime
    ) -> bool:
        """Add ``units`` to the reward's counter if the total limit allows; False if not."""
        result = self.uow.execute(
            sa.update(rewards)
            .where(
                _R.tenant_id == tenant_id,
                _R.id == reward_id,
                sa.or_(_R.limit_total.is_(None), _R.redeemed + units <= _R.limit_total),
            )
            .values(redeemed=_R.redeemed + units, updated_at=now)
        )
        return bool(result.rowcount)

    def uncount_redeemed(self, tenant_id: uuid.UUID, reward_id: uuid.UUID, units: int) -> None:
        self.uow.execute(
            sa.update(rewards)
            .where(_R.tenant_id == tenant_id, _R.id == reward_id)
            .values(redeemed=_R.redeemed - units)
        )

    # ---- stock -------------------------------------------------------------------------
    def stock_of(self, tenant_id: uuid.UUID, reward_ids: Sequence[uuid.UUID]) -> list[Row]:
        if not reward_ids:
            return []
        rows = self.uow.execute(
            sa.select(reward_stock)
            .where(_S.tenant_id == tenant_id, _S.reward_id.in_(list(reward_ids)))
            .order_by(_S.reward_id, _S.location)
        )
        return [dict(r._mapping) for r in rows]

    def set_stock(
        self,
        tenant_id: uuid.UUID,
        reward_id: uuid.UUID,
        location: str,
        quantity: int,
        threshold: int | None,
        keep_threshold: bool,
        now: datetime,
    ) -> Row:
        """Set the absolute quantity at a location (insert or update, race-free); with
        ``keep_threshold`` an existing row keeps its low-stock threshold. Returns the row."""
        dialect_insert: Any = (
            postgresql.insert if self.uow.dialect == "postgresql" else sqlite.insert
        )
        insert = dialect_insert(reward_stock).values(
            id=new_id(),
            tenant_id=tenant_id,
            reward_id=reward_id,
            location=location,
            quantity=quantity,
            low_stock_threshold=threshold,
            low_stock_alerted=False,
            updated_at=now,
        )
        changes: dict[str, Any] = {"quantity": insert.excluded.quantity, "updated_at": now}
        if not keep_threshold:
            changes["low_stock_threshold"] = insert.excluded.low_stock_threshold
        stmt = insert.on_conflict_do_update(
            index_elements=["tenant_id", "reward_id", "location"], set_=changes
        ).returning(*reward_stock.c)
        row = _dict(self.uow.execute(stmt).first())
        assert row is not None
        return row

    def take_stock(
        self, tenant_id: uuid.UUID, reward_id: uuid.UUID, location: str, units: int, now: datetime
    ) -> Row | None:
        """Decrement by ``units`` only if that many are there; the row after, or None."""
        stmt = (
            sa.update(reward_stock)
            .where(
                _S.tenant_id == tenant_id,
                _S.reward_id == reward_id,
                _S.location == location,
                _S.quantity >= units,
            )
            .values(quantity=_S.quantity - units, updated_at=now)
            .returning(*reward_stock.c)
        )
        return _dict(self.uow.execute(stmt).first())

    def return_stock(
        self, tenant_id: uuid.UUID, reward_id: uuid.UUID, location: str, units: int, now: datetime
    ) -> Row | None:
        stmt = (
            sa.update(reward_stock)
            .where(_S.tenant_id == tenant_id, _S.reward_id == reward_id, _S.location == location)
            .values(quantity=_S.quantity + units, updated_at=now)
            .returning(*reward_stock.c)
        )
        return _dict(self.uow.execute(stmt).first())

    def set_alerted(self, tenant_id: uuid.UUID, stock_id: uuid.UUID, alerted: bool) -> None:
        self.uow.execute(
            sa.update(reward_stock)
            .where(_S.tenant_id == tenant_id, _S.id == stock_id)
            .values(low_stock_alerted=alerted)
        )

    # ---- partner codes -----------------------------------------------------------------
    def add_codes(
        self, tenant_id: uuid.UUID, reward_id: uuid.UUID, codes: Sequence[str], now: datetime
    ) -> int:
        """Put codes into the pool; codes already there are skipped. Returns how many were
        added (a concurrent upload of the same code adds it once)."""
        dialect_insert: Any = (
            postgresql.insert if self.uow.dialect == "postgresql" else sqlite.insert
        )
        added = 0
        for start in range(0, len(codes), 1000):
            rows = [
                {
                    "id": new_id(),
                    "tenant_id": tenant_id,
                    "reward_id": reward_id,
                    "code": code,
                    "order_id": None,
                    "created_at": now,
                    "issued_at": None,
                }
                for code in codes[start : start + 1000]
            ]
            stmt = (
                dialect_insert(reward_codes)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["tenant_id", "reward_id", "code"])
                .returning(_C.id)
            )
            added += len(self.uow.execute(stmt).all())
        return added

    def take_codes(
        self,
        tenant_id: uuid.UUID,
        reward_id: uuid.UUID,
        order_id: uuid.UUID,
        units: int,
        now: datetime,
    ) -> list[str]:
        """Give ``units`` unused codes to an order, oldest first; fewer when the pool runs
        dry (the caller refuses then). Codes another transaction is taking are skipped, not
        waited for (SKIP LOCKED); SQLite has one writer at a time anyway."""
        stmt = (
            sa.select(_C.id, _C.code)
            .where(_C.tenant_id == tenant_id, _C.reward_id == reward_id, _C.order_id.is_(None))
            .order_by(_C.id)
            .limit(units)
        )
        if self.uow.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        found = self.uow.execute(stmt).all()
        if len(found) < units:
            return []
        self.uow.execute(
            sa.update(reward_codes)
            .where(_C.tenant_id == tenant_id, _C.id.in_([r.id for r in found]))
            .values(order_id=order_id, issued_at=now)
        )
        return [r.code for r in found]

    def codes_available(
        self, tenant_id: uuid.UUID, reward_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        if not reward_ids:
            return {}
        rows = self.uow.execute(
            sa.select(_C.reward_id, sa.func.count())
            .where(
                _C.tenant_id == tenant_id,
                _C.reward_id.in_(list(reward_ids)),
                _C.order_id.is_(None),
            )
            .group_by(_C.reward_id)
        )
        return {r[0]: int(r[1]) for r in rows}

    # ---- orders ------------------------------------------------------------------------
    def insert_order(self, row: Row) -> None:
        self.uow.execute(sa.insert(reward_orders).values(**row))

    def order(self, tenant_id: uuid.UUID, order_id: uuid.UUID, lock: bool = False) -> Row | None:
        stmt = sa.select(reward_orders).where(_O.tenant_id == tenant_id, _O.id == order_id)
        return _dict(self.uow.execute(stmt.with_for_update() if lock else stmt).first())

    def update_order(self, tenant_id: uuid.UUID, order_id: uuid.UUID, values: Row) -> None:
        self.uow.execute(
            sa.update(reward_orders)
            .where(_O.tenant_id == tenant_id, _O.id == order_id)
            .values(**values)
        )

    def list_orders(
        self,
        tenant_id: uuid.UUID,
        before: uuid.UUID | None,
        limit: int,
        *,
        member_id: uuid.UUID | None = None,
        reward_id: uuid.UUID | None = None,
        status: str | None = None,
        location: str | None = None,
    ) -> list[Row]:
        """Newest first."""
        stmt = sa.select(reward_orders).where(_O.tenant_id == tenant_id)
        for column, value in (
            (_O.member_id, member_id),
            (_O.reward_id, reward_id),
            (_O.status, status),
            (_O.location, location),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if before is not None:
            stmt = stmt.where(_O.id < before)
        rows = self.uow.execute(stmt.order_by(_O.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    def member_units(
        self,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        reward_ids: Sequence[uuid.UUID],
    ) -> list[tuple[uuid.UUID, datetime, int]]:
        """(reward, placed at, units) of the member's orders not cancelled, for limits."""
        if not reward_ids:
            return []
        rows = self.uow.execute(
            sa.select(_O.reward_id, _O.created_at, _O.quantity).where(
                _O.tenant_id == tenant_id,
                _O.member_id == member_id,
                _O.reward_id.in_(list(reward_ids)),
                _O.status != _CANCELLED,
            )
        )
        return [(r[0], r[1], int(r[2])) for r in rows]

    def totals(
        self, tenant_id: uuid.UUID, reward_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[int, int, int]]:
        """(orders, units, points) of each reward's orders not cancelled: e.g. a charity's
        total."""
        if not reward_ids:
            return {}
        rows = self.uow.execute(
            sa.select(
                _O.reward_id,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(_O.quantity), 0),
                sa.func.coalesce(sa.func.sum(_O.points), 0),
            )
            .where(
                _O.tenant_id == tenant_id,
                _O.reward_id.in_(list(reward_ids)),
                _O.status != _CANCELLED,
            )
            .group_by(_O.reward_id)
        )
        return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}

    def move_orders(self, tenant_id: uuid.UUID, from_id: uuid.UUID, to_id: uuid.UUID) -> int:
        """Give every order of one member (a merged duplicate) to another, in one statement:
        limits, privileges and refunds follow the orders. Returns how many moved."""
        result = self.uow.execute(
            sa.update(reward_orders)
            .where(_O.tenant_id == tenant_id, _O.member_id == from_id)
            .values(member_id=to_id)
        )
        return int(result.rowcount)

    def offers_privileges(self, tenant_id: uuid.UUID) -> bool:
        """Whether the tenant has a reward of the privilege kind (active or archived).
        Without one no member can hold a privilege: orders copy their reward's kind, a
        reward's kind never changes and rewards are never deleted (orders reference them)."""
        found = self.uow.execute(
            sa.select(_R.id).where(_R.tenant_id == tenant_id, _R.kind == "privilege").limit(1)
        ).first()
        return found is not None

    def active_privileges(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, now: datetime
    ) -> list[Row]:
        """The member's privileges still running at ``now``: their details (tag, club)."""
        rows = self.uow.execute(
            sa.select(_O.details).where(
                _O.tenant_id == tenant_id,
                _O.member_id == member_id,
                _O.kind == "privilege",
                _O.status == "issued",
                _O.valid_until > now,
            )
        )
        return [dict(r.details) for r in rows]
