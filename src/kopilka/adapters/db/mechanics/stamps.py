"""Tables and store of the stamps mechanic: each member's cards (one row per card) and every
movement of stamps on them (purchases, refunds, corrections, expiry), which is the history
and what refunds reverse."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kopilka.adapters.db.tables import metadata
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.ids import new_id
from kopilka.services.ports import UnitOfWork

stamp_balances = sa.Table(
    "stamp_balances",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("card_id", sa.String(64), nullable=False),  # the card's id in the program
    sa.Column("balance", sa.Integer, nullable=False),  # stamps on the card, never negative
    sa.Column("debt", sa.Integer, nullable=False),  # stamps owed after refunds
    sa.Column("stamps_earned", sa.BigInteger, nullable=False),  # lifetime, net of refunds
    sa.Column("rewards_redeemed", sa.BigInteger, nullable=False),  # free items and coupons
    sa.Column("last_stamp_at", UtcDateTime),
    sa.Column("expires_at", UtcDateTime),  # the stamps on the card expire then
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "member_id", "card_id"),
    sa.Index(None, "expires_at"),  # the expiry job's scan
)

stamp_movements = sa.Table(
    "stamp_movements",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # purchase, refund, adjustment, expiry
    # The natural key: "receipt:<id>", "refund:<id>", "adjustment:<id>", "expiry:<moment>".
    sa.Column("source_key", sa.String(255), nullable=False),
    sa.Column("receipt_id", sa.Uuid),
    sa.Column("program", sa.String(64)),
    sa.Column("stamps", sa.Integer, nullable=False),  # change of the balance
    sa.Column("debt", sa.Integer, nullable=False),  # change of the debt
    sa.Column("earned", sa.Integer, nullable=False),  # stamps earned (refunds: negative)
    sa.Column("rewards", sa.Integer, nullable=False),  # rewards taken (returned: negative)
    sa.Column("balance_after", sa.Integer, nullable=False),
    sa.Column("debt_after", sa.Integer, nullable=False),
    sa.Column("details", Json, nullable=False),  # per-line record, coupons, reason...
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "member_id", "card_id", "source_key"),
    sa.Index(None, "tenant_id", "receipt_id"),
)

_CARDS = stamp_balances.c
_MOVES = stamp_movements.c


class StampStore:
    """Reads and writes the stamp tables inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def cards(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, *, lock: bool = False
    ) -> dict[str, dict[str, Any]]:
        """The member's cards by card id; ``lock`` takes their rows for update (PostgreSQL;
        SQLite serialises writers anyway)."""
        query = (
            sa.select(stamp_balances)
            .where(_CARDS.tenant_id == tenant_id, _CARDS.member_id == member_id)
            .order_by(_CARDS.card_id)
        )
        if lock and self.uow.dialect == "postgresql":
            query = query.with_for_update()
        return {row.card_id: dict(row._mapping) for row in self.uow.execute(query)}

    def lock_card(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, card_id: str, now: datetime
    ) -> dict[str, Any]:
        """The member's card row, created empty if missing, locked for update."""
        values = {
            "id": new_id(),
            "tenant_id": tenant_id,
            "member_id": member_id,
            "card_id": card_id,
            "balance": 0,
            "debt": 0,
            "stamps_earned": 0,
            "rewards_redeemed": 0,
            "last_stamp_at": None,
            "expires_at": None,
            "created_at": now,
            "updated_at": now,
        }
        insert: Any = (
            postgresql.insert(stamp_balances)
            if self.uow.dialect == "postgresql"
            else sqlite.insert(stamp_balances)
        )
        # A twin creating the same row waits for us here, then finds ours.
        self.uow.execute(insert.values(**values).on_conflict_do_nothing())
        query = sa.select(stamp_balances).where(
            _CARDS.tenant_id == tenant_id,
            _CARDS.member_id == member_id,
            _CARDS.card_id == card_id,
        )
        if self.uow.dialect == "postgresql":
            query = query.with_for_update()
        return dict(self.uow.execute(query).one()._mapping)

    def update_card(self, tenant_id: uuid.UUID, row_id: uuid.UUID, values: dict[str, Any]) -> None:
        self.uow.execute(
            sa.update(stamp_balances)
            .where(_CARDS.tenant_id == tenant_id, _CARDS.id == row_id)
            .values(**values)
        )

    def insert_movement(self, row: dict[str, Any]) -> None:
        self.uow.execute(sa.insert(stamp_movements).values(**row))

    def movement(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, card_id: str, source_key: str
    ) -> dict[str, Any] | None:
        row = self.uow.execute(
            sa.select(stamp_movements).where(
                _MOVES.tenant_id == tenant_id,
                _MOVES.member_id == member_id,
                _MOVES.card_id == card_id,
                _MOVES.source_key == source_key,
            )
        ).first()
        return dict(row._mapping) if row is not None else None

    def of_receipt(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID) -> list[dict[str, Any]]:
        """Every movement a receipt made (its purchase and its refunds), oldest first."""
        rows = self.uow.execute(
            sa.select(stamp_movements)
            .where(_MOVES.tenant_id == tenant_id, _MOVES.receipt_id == receipt_id)
            .order_by(_MOVES.created_at, _MOVES.id)
        )
        return [dict(r._mapping) for r in rows]

    def expired_since(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, card_id: str, since: datetime
    ) -> bool:
        """Whether the card's stamps expired after ``since``."""
        found = self.uow.execute(
            sa.select(_MOVES.id)
            .where(
                _MOVES.tenant_id == tenant_id,
                _MOVES.member_id == member_id,
                _MOVES.card_id == card_id,
                _MOVES.kind == "expiry",
                _MOVES.created_at >= since,
            )
            .limit(1)
        ).first()
        return found is not None

    def history(
        self,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        card_id: str | None,
        before: uuid.UUID | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Movements newest first (ids are time-ordered), after the cursor ``before``."""
        query = sa.select(stamp_movements).where(
            _MOVES.tenant_id == tenant_id, _MOVES.member_id == member_id
        )
        if card_id is not None:
            query = query.where(_MOVES.card_id == card_id)
        if before is not None:
            query = query.where(_MOVES.id < before)
        rows = self.uow.execute(query.order_by(_MOVES.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    # ---- member merge ------------------------------------------------------------------
    def move_cards(
        self,
        tenant_id: uuid.UUID,
        from_member: uuid.UUID,
        to_member: uuid.UUID,
        card_ids: list[str],
        now: datetime,
    ) -> None:
        """Give these cards of one member to another (who has no row for them)."""
        if not card_ids:
            return
        self.uow.execute(
            sa.update(stamp_balances)
            .where(
                _CARDS.tenant_id == tenant_id,
                _CARDS.member_id == from_member,
                _CARDS.card_id.in_(card_ids),
            )
            .values(member_id=to_member, updated_at=now)
        )

    def delete_card(self, tenant_id: uuid.UUID, row_id: uuid.UUID) -> None:
        self.uow.execute(
            sa.delete(stamp_balances).where(_CARDS.tenant_id == tenant_id, _CARDS.id == row_id)
        )

    def move_movements(
        self, tenant_id: uuid.UUID, from_member: uuid.UUID, to_member: uuid.UUID
    ) -> None:
        """Give one member's history to another, set-based. A natural key the other member
        already has on the same card (two expiries at the same local midnight) gets the old
        owner's id appended, so the unique key holds and nothing is lost."""
        theirs = stamp_movements.alias("theirs")
        clash = sa.exists().where(
            theirs.c.tenant_id == tenant_id,
            theirs.c.member_id == to_member,
            theirs.c.card_id == _MOVES.card_id,
            theirs.c.source_key == _MOVES.source_key,
        )
        mine = (_MOVES.tenant_id == tenant_id, _MOVES.member_id == from_member)
        self.uow.execute(
            sa.update(stamp_movements)
            .where(*mine, clash)
            .values(source_key=sa.func.substr(_MOVES.source_key + f"~{from_member}", 1, 255))
        )
        self.uow.execute(sa.update(stamp_movements).where(*mine).values(member_id=to_member))

    def due_for_expiry(
        self, now: datetime, limit: int, tenant_id: uuid.UUID | None
    ) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        """(tenant, member, card) of cards whose stamps are past their expiry."""
        query = sa.select(_CARDS.tenant_id, _CARDS.member_id, _CARDS.card_id).where(
            _CARDS.expires_at <= now, _CARDS.balance > 0
        )
        if tenant_id is not None:
            query = query.where(_CARDS.tenant_id == tenant_id)
        rows = self.uow.execute(query.order_by(_CARDS.expires_at, _CARDS.id).limit(limit))
        return [(r.tenant_id, r.member_id, r.card_id) for r in rows]
