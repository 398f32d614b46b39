"""Points rewards of the loyalty mechanics (welcome, birthday, events, referrals, tiers...).

Every reward has a natural key (``birthday:2026``, ``event:<id>``); the member's accounts are
locked before the key is checked, so a job run twice, twice at once, or late, and a retried
request, never reward twice. Rewards are :data:`TxnKind.BONUS` ledger transactions whose
description names the mechanic, in ru and en.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kopilka.adapters.db.mechanics.awards import AwardStore
from kopilka.domain.ledger.expiry import expires_at as policy_expiry
from kopilka.domain.ledger.model import AccountKind, TxnKind
from kopilka.domain.rules.document import CompiledProgram
from kopilka.ids import new_id
from kopilka.services.context import Actor, Tenant
from kopilka.services.ledger_book import MemberBook
from kopilka.services.ledger_ops import Shortfall, reverse_credit
from kopilka.services.ports import UnitOfWork


@dataclass(frozen=True)
class Granted:
    """A reward given now (``fresh``) or found already given under the same key."""

    award_id: uuid.UUID
    transaction_id: uuid.UUID | None
    points: int
    fresh: bool


def grant_points(
    uow: UnitOfWork,
    tenant: Tenant,
    actor: Actor,
    member_id: uuid.UUID,
    now: datetime,
    *,
    mechanic: str,
    key: str,
    points: int,
    program: CompiledProgram | None = None,
    params: dict[str, Any] | None = None,
    source_id: str | None = None,
    pending_days: int | None = None,
    expires_at: datetime | None = None,
    book: MemberBook | None = None,
) -> Granted:
    """Credit ``points`` to the member for ``mechanic`` once per ``key``; apply the plan.

    ``program`` gives the currency, pending days and expiry (else the tenant's). Pass the
    ``book`` when the caller already holds one for this member and currency: its plan is
    then left for the caller to apply.
    """
    currency = program.currency if program is not None else tenant.points_currency
    own_book = book is None
    if book is None:
        book = MemberBook(uow, tenant, member_id, actor, now, currency=currency)
    store = AwardStore(uow)
    existing = store.get(tenant.id, member_id, key)  # after the lock: no twin can slip in
    if existing is not None:
        return Granted(existing["id"], existing["transaction_id"], existing["points"], False)
    award_id = new_id()
    txn_id: uuid.UUID | None = None
    if points > 0:
        txn_params = {"mechanic": mechanic, **(params or {})}
        if program is not None:
            txn_params.setdefault("program", program.code)
        txn = book.new_txn(
            TxnKind.BONUS,
            points,
            source_type=mechanic[:24],
            source_id=source_id or key[:128],
            params=txn_params,
        )
        settings = program.settings if program is not None else None
        if expires_at is None and settings is not None:
            expires_at = policy_expiry(settings.expiry, now, tenant.timezone)
        if pending_days is None and settings is not None:
            pending_days = settings.pending_days
        book.credit(
            txn,
            points,
            AccountKind.ISSUED,
            pending_days=pending_days if pending_days is not None else 0,
            expires_at=expires_at,
        )
        txn_id = txn.id
    store.insert(
        {
            "id": award_id,
            "tenant_id": tenant.id,
            "member_id": member_id,
            "mechanic": mechanic,
            "award_key": key,
            "program": program.code if program is not None else None,
            "points": points,
            "transaction_id": txn_id,
            "status": "granted",
            "params": params or {},
            "created_at": now,
            "voided_at": None,
        }
    )
    if own_book:
        uow.ledger.apply(tenant.id, book.plan, now)
    return Granted(award_id, txn_id, points, True)


def void_award(
    uow: UnitOfWork,
    tenant: Tenant,
    actor: Actor,
    member_id: uuid.UUID,
    key: str,
    now: datetime,
    *,
    reason: str | None = None,
) -> int:
    """Take a reward back (e.g. a referral whose first purchase was refunded).

    Points already spent are not turned into debt: what is left is taken, and the number
    of points taken back is returned. Voiding twice does nothing the second time.
    """
    store = AwardStore(uow)
    award = store.get(tenant.id, member_id, key)
    if award is None or award["status"] != "granted":
        return 0
    taken = 0
    if award["transaction_id"] is not None:
        original = uow.ledger.get_transaction(tenant.id, award["transaction_id"])
        if original is not None:
            # The holder the reward was booked on (a family pool, say), not where the member
            # is now.
            holder = original.member_id or member_id
            book = MemberBook(uow, tenant, holder, actor, now, currency=original.currency)
            reversal = reverse_credit(
                book,
                original,
                award["points"],
                Shortfall.CAP,
                source_type=award["mechanic"][:24],
                source_id=key[:128],
                reason=reason,
            )
            uow.ledger.apply(tenant.id, book.plan, now)
            taken = award["points"] - reversal.shortfall
    store.void(tenant.id, award["id"], now)
    return taken


def award_totals(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    member_id: uuid.UUID,
    mechanic: str,
    since: datetime | None = None,
    key_prefix: str | None = None,
) -> tuple[int, int]:
    """(count, points) of the member's rewards of ``mechanic`` since ``since``: for caps."""
    return AwardStore(uow).totals(tenant_id, member_id, mechanic, since, key_prefix)
