"""What services return: serialisable, so idempotent replays return the very same answer."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class View(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PostingView(View):
    account_kind: str
    member_id: uuid.UUID | None
    amount: int
    balance_after: int | None


class TransactionView(View):
    id: uuid.UUID
    kind: str
    member_id: uuid.UUID | None
    counterparty_member_id: uuid.UUID | None = None
    currency: str
    amount: int
    reason: str | None
    actor: str
    source_type: str
    source_id: str | None
    reverses_id: uuid.UUID | None
    occurred_at: datetime
    recorded_at: datetime
    description: dict[str, str]
    postings: list[PostingView]
    # Set on reversals under the "cap" policy: points that could not be taken back.
    shortfall: int = 0
    # What produced it, e.g. {"program": "coffee", "version": 3, "rules": ["base"]}.
    details: dict[str, Any] = {}


class OperationResult(View):
    """A write's answer: the transactions it made and the member's balance afterwards."""

    transactions: list[TransactionView]
    balance: BalanceView | None = None
    hold: HoldView | None = None
    shortfall: int = 0


class ExpiringAmount(View):
    on: date
    amount: int


class BalanceView(View):
    member_id: uuid.UUID
    currency: str
    available: int
    pending: int
    held: int
    debt: int
    expiring_soon: list[ExpiringAmount]
    next_pending: list[ExpiringAmount]
    as_of: datetime


class HoldView(View):
    id: uuid.UUID
    member_id: uuid.UUID
    currency: str
    amount: int
    captured: int
    status: str
    reference: str | None
    expires_at: datetime
    created_at: datetime
    closed_at: datetime | None


class Page(View):
    next_cursor: str | None
    items: list[Any]


OperationResult.model_rebuild()
