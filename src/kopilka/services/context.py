"""Who is asking, and the tenant they act for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kopilka.domain.errors import NotFound
from kopilka.domain.ledger.expiry import ExpiryPolicy, parse_policy
from kopilka.domain.members.card_numbers import CardScheme
from kopilka.services.ports import UnitOfWork


class Role(StrEnum):
    ADMIN = "admin"
    POS = "pos"
    READONLY = "readonly"


@dataclass(frozen=True)
class Actor:
    """The credential behind a call: its tenant, role and (for tills) outlet."""

    tenant_id: uuid.UUID
    name: str  # recorded in the ledger and audit log, e.g. "apikey:kp_ab12cd" or "cli"
    role: Role = Role.ADMIN
    outlet_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    currency: str
    timezone: str
    locale: str
    phone_region: str
    points_currency: str
    card_scheme: CardScheme
    card_prefix: str
    qr_secret: str
    qr_window_seconds: int
    hold_ttl_seconds: int
    pending_days: int
    expiry_policy: ExpiryPolicy
    allow_debt: bool
    created_at: datetime
    # How many days back a till may date a receipt (``occurred_at``); older receipts are
    # history, for ``kopilka import receipts``. Backdating into a past promotion is a known
    # till fraud.
    backdate_days: int = 30
    # Bumped by every product write (adapters/db/commerce_store.py): cached products read
    # under an older version are read again.
    catalogue_version: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Tenant:
        return cls(
            id=row["id"],
            name=row["name"],
            currency=row["currency"],
            timezone=row["timezone"],
            locale=row["locale"],
            phone_region=row["phone_region"],
            points_currency=row["points_currency"],
            card_scheme=CardScheme(row["card_scheme"]),
            card_prefix=row["card_prefix"],
            qr_secret=row["qr_secret"],
            qr_window_seconds=row["qr_window_seconds"],
            hold_ttl_seconds=row["hold_ttl_seconds"],
            pending_days=row["pending_days"],
            expiry_policy=parse_policy(row["expiry_policy"]),
            allow_debt=row["allow_debt"],
            created_at=row["created_at"],
            backdate_days=row.get("backdate_days", 30),
            catalogue_version=row.get("catalogue_version") or 0,
        )


def load_tenant(uow: UnitOfWork, tenant_id: uuid.UUID) -> Tenant:
    """The tenant's settings, from a short-lived process cache when possible."""
    key = ("tenant", tenant_id)
    cached = uow.cache.get(key)
    if isinstance(cached, Tenant):
        return cached
    row = uow.directory.tenant(tenant_id)
    if row is None:
        raise NotFound("Tenant not found.", code="tenant_not_found")
    tenant = Tenant.from_row(row)
    uow.cache.put(key, tenant)
    return tenant
