"""Tables and store of the gift cards feature.

A gift card holds money in the ledger like a member holds points: its accounts are owned by
``member:<card id>`` in the card's currency. They carry no ``member_id``: accounts
reference members, and a card is not one (``gift_cards.wallet_account_id`` names the
wallet instead, for the liability report). Lots and transactions name the card's id in
their ``member_id`` (those columns reference nothing).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kopilka.adapters.db.ledger_store import member_owner
from kopilka.adapters.db.tables import accounts, ledger_transactions, metadata, postings
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.domain.ledger.model import MEMBER_ACCOUNT_KINDS, AccountKind
from kopilka.ids import new_id
from kopilka.services.ports import UnitOfWork

gift_cards = sa.Table(
    "gift_cards",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("number", sa.String(32), nullable=False),
    # issued (sold, not usable yet), active, blocked, replaced (reissued), expired
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    # The face value (minor units): loaded on activation.
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("pin_hash", sa.String(255), nullable=False),
    sa.Column("wallet_account_id", sa.Uuid, nullable=False),
    sa.Column("sale_outlet_id", sa.Uuid, sa.ForeignKey("outlets.id"), nullable=False),
    sa.Column("sale_receipt_number", sa.String(64), nullable=False),
    sa.Column("sold_at", UtcDateTime, nullable=False),
    sa.Column("activated_at", UtcDateTime),
    sa.Column("activated_outlet_id", sa.Uuid, sa.ForeignKey("outlets.id")),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("replaces_id", sa.Uuid),
    sa.Column("replaced_by_id", sa.Uuid),
    sa.Column("blocked_reason", sa.String(500)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "number"),
    sa.Index(None, "status", "expires_at"),
    sa.CheckConstraint("amount > 0", name="positive_amount"),
)

# What a receipt paid with each card, and how much of it was given back since.
gift_card_payments = sa.Table(
    "gift_card_payments",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    # No foreign key: the payment is written before the receipt, in the same transaction.
    sa.Column("receipt_id", sa.Uuid, nullable=False),
    sa.Column("card_id", sa.Uuid, sa.ForeignKey("gift_cards.id"), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("refunded", sa.BigInteger, nullable=False),
    sa.Column("transaction_id", sa.Uuid, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "receipt_id", "card_id"),
    sa.Index(None, "tenant_id", "card_id"),
    sa.CheckConstraint("refunded >= 0 AND refunded <= amount", name="refunded_in_range"),
)

gift_card_policies = sa.Table(
    "gift_card_policies",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("policy", Json, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

# Fixed-window counters of balance enquiries and wrong PINs (scope "card", "key", "pin").
gift_card_attempts = sa.Table(
    "gift_card_attempts",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("scope", sa.String(8), nullable=False),
    # A digest of the card number (no number stored), or the API key's name.
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("window_start", UtcDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "scope", "subject", "window_start"),
    sa.Index(None, "window_start"),
)

_CARDS = gift_cards.c
_PAYMENTS = gift_card_payments.c
_ATTEMPTS = gift_card_attempts.c
CARD_STATUSES = ("issued", "active", "blocked", "replaced", "expired")


class GiftCardStore:
    """Reads and writes the gift card tables inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def _lockable(self, stmt: Any, lock: bool) -> Any:
        return stmt.with_for_update() if lock and self.uow.dialect == "postgresql" else stmt

    # ---- cards -------------------------------------------------------------------------
    def by_number(
        self, tenant_id: uuid.UUID, number: str, *, lock: bool = False
    ) -> dict[str, Any] | None:
        stmt = sa.select(gift_cards).where(_CARDS.tenant_id == tenant_id, _CARDS.number == number)
        row = self.uow.execute(self._lockable(stmt, lock)).first()
        return dict(row._mapping) if row is not None else None

    def get(
        self, tenant_id: uuid.UUID, card_id: uuid.UUID, *, lock: bool = False
    ) -> dict[str, Any] | None:
        stmt = sa.select(gift_cards).where(_CARDS.tenant_id == tenant_id, _CARDS.id == card_id)
        row = self.uow.execute(self._lockable(stmt, lock)).first()
        return dict(row._mapping) if row is not None else None

    def numbers_of(self, tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not ids:
            return {}
        rows = self.uow.execute(
            sa.select(_CARDS.id, _CARDS.number).where(
                _CARDS.tenant_id == tenant_id, _CARDS.id.in_(ids)
            )
        )
        return {r.id: r.number for r in rows}

    def insert(self, row: dict[str, Any]) -> None:
        self.uow.execute(sa.insert(gift_cards).values(**row))

    def update(self, tenant_id: uuid.UUID, card_id: uuid.UUID, values: dict[str, Any]) -> None:
        self.uow.execute(
            sa.update(gift_cards)
            .where(_CARDS.tenant_id == tenant_id, _CARDS.id == card_id)
            .values(**values)
        )

    def create_accounts(
        self, tenant_id: uuid.UUID, card_id: uuid.UUID, currency: str, now: datetime
    ) -> uuid.UUID:
        """Open the card's ledger accounts (no debt allowed); returns the wallet's id."""
        ids = {kind: new_id() for kind in sorted(MEMBER_ACCOUNT_KINDS)}
        rows = [
            {
                "id": account_id,
                "tenant_id": tenant_id,
                "owner": member_owner(card_id),
                "member_id": None,
                "kind": str(kind),
                "currency": currency,
                "balance": 0,
                "allow_debt": False,
                "created_at": now,
            }
            for kind, account_id in ids.items()
        ]
        self.uow.execute(sa.insert(accounts), rows)
        wallet = ids[AccountKind.WALLET]
        return wallet

    def balances(self, tenant_id: uuid.UUID, wallet_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Cached wallet balances, read without a lock (answers, not decisions)."""
        if not wallet_ids:
            return {}
        rows = self.uow.execute(
            sa.select(accounts.c.id, accounts.c.balance).where(
                accounts.c.tenant_id == tenant_id, accounts.c.id.in_(wallet_ids)
            )
        )
        return {r.id: int(r.balance) for r in rows}

    def due_for_expiry(
        self, now: datetime, limit: int, tenant_id: uuid.UUID | None = None
    ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(tenant, card) of cards past their validity still marked active or blocked."""
        stmt = sa.select(_CARDS.tenant_id, _CARDS.id).where(
            _CARDS.status.in_(["active", "blocked"]), _CARDS.expires_at <= now
        )
        if tenant_id is not None:
            stmt = stmt.where(_CARDS.tenant_id == tenant_id)
        rows = self.uow.execute(stmt.order_by(_CARDS.id).limit(limit))
        return [(r.tenant_id, r.id) for r in rows]

    # ---- payments ----------------------------------------------------------------------
    def insert_payment(self, row: dict[str, Any]) -> None:
        self.uow.execute(sa.insert(gift_card_payments).values(**row))

    def payments_of(
        self, tenant_id: uuid.UUID, receipt_id: uuid.UUID, *, lock: bool = False
    ) -> list[dict[str, Any]]:
        """The receipt's card payments in the order they were made."""
        stmt = (
            sa.select(gift_card_payments)
            .where(_PAYMENTS.tenant_id == tenant_id, _PAYMENTS.receipt_id == receipt_id)
            .order_by(_PAYMENTS.id)
        )
        return [dict(r._mapping) for r in self.uow.execute(self._lockable(stmt, lock))]

    def set_refunded(
        self, tenant_id: uuid.UUID, payment_id: uuid.UUID, refunded: int, now: datetime
    ) -> None:
        self.uow.execute(
            sa.update(gift_card_payments)
            .where(_PAYMENTS.tenant_id == tenant_id, _PAYMENTS.id == payment_id)
            .values(refunded=refunded, updated_at=now)
        )

    # ---- policy ------------------------------------------------------------------------
    def policy(self, tenant_id: uuid.UUID) -> dict[str, Any] | None:
        row = self.uow.execute(
            sa.select(gift_card_policies.c.policy).where(
                gift_card_policies.c.tenant_id == tenant_id
            )
        ).first()
        return dict(row.policy) if row is not None else None

    def save_policy(self, tenant_id: uuid.UUID, policy: dict[str, Any], now: datetime) -> None:
        insert = postgresql.insert if self.uow.dialect == "postgresql" else sqlite.insert
        stmt = insert(gift_card_policies).values(tenant_id=tenant_id, policy=policy, updated_at=now)
        self.uow.execute(
            stmt.on_conflict_do_update(
                index_elements=[gift_card_policies.c.tenant_id],
                set_={"policy": stmt.excluded.policy, "updated_at": stmt.excluded.updated_at},
            )
        )

    # ---- attempts ----------------------------------------------------------------------
    def bump(self, tenant_id: uuid.UUID, scope: str, subject: str, window_start: datetime) -> int:
        """Count one more attempt in the window; returns the count including it."""
        insert = postgresql.insert if self.uow.dialect == "postgresql" else sqlite.insert
        stmt = insert(gift_card_attempts).values(
            tenant_id=tenant_id,
            scope=scope,
            subject=subject,
            window_start=window_start,
            attempts=1,
        )
        key = [_ATTEMPTS.tenant_id, _ATTEMPTS.scope, _ATTEMPTS.subject, _ATTEMPTS.window_start]
        upsert = stmt.on_conflict_do_update(
            index_elements=key, set_={"attempts": _ATTEMPTS.attempts + 1}
        ).returning(_ATTEMPTS.attempts)
        return int(self.uow.execute(upsert).scalar_one())

    def attempts(
        self, tenant_id: uuid.UUID, scope: str, subject: str, window_start: datetime
    ) -> int:
        found = self.uow.execute(
            sa.select(_ATTEMPTS.attempts).where(
                _ATTEMPTS.tenant_id == tenant_id,
                _ATTEMPTS.scope == scope,
                _ATTEMPTS.subject == subject,
                _ATTEMPTS.window_start == window_start,
            )
        ).scalar_one_or_none()
        return int(found or 0)

    def prune_attempts(self, before: datetime, tenant_id: uuid.UUID | None = None) -> int:
        stmt = sa.delete(gift_card_attempts).where(_ATTEMPTS.window_start < before)
        if tenant_id is not None:
            stmt = stmt.where(_ATTEMPTS.tenant_id == tenant_id)
        return int(self.uow.execute(stmt).rowcount or 0)

    # ---- reports -----------------------------------------------------------------------
    def status_totals(self, tenant_id: uuid.UUID, currency: str) -> dict[str, tuple[int, int]]:
        """Per status: (cards, face value)."""
        rows = self.uow.execute(
            sa.select(
                _CARDS.status, sa.func.count(), sa.func.coalesce(sa.func.sum(_CARDS.amount), 0)
            )
            .where(_CARDS.tenant_id == tenant_id, _CARDS.currency == currency)
            .group_by(_CARDS.status)
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def outstanding(self, tenant_id: uuid.UUID, currency: str) -> int:
        """What the cards' wallets hold now: the liability."""
        return int(
            self.uow.execute(
                sa.select(sa.func.coalesce(sa.func.sum(accounts.c.balance), 0))
                .select_from(gift_cards.join(accounts, accounts.c.id == _CARDS.wallet_account_id))
                .where(_CARDS.tenant_id == tenant_id, _CARDS.currency == currency)
            ).scalar_one()
        )

    def movements_by_kind(self, tenant_id: uuid.UUID, currency: str) -> dict[str, int]:
        """The cards' wallet postings summed by the kind of their transaction (signed)."""
        rows = self.uow.execute(
            sa.select(ledger_transactions.c.kind, sa.func.sum(postings.c.amount))
            .select_from(
                gift_cards.join(postings, postings.c.account_id == _CARDS.wallet_account_id).join(
                    ledger_transactions, ledger_transactions.c.id == postings.c.transaction_id
                )
            )
            .where(
                _CARDS.tenant_id == tenant_id,
                _CARDS.currency == currency,
                postings.c.tenant_id == tenant_id,
            )
            .group_by(ledger_transactions.c.kind)
        )
        return {r[0]: int(r[1]) for r in rows}
