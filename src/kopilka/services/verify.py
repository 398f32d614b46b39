"""``ledger verify``: the invariants the finance team relies on, checked in SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from kopilka.services.giftcards import GIFT_CARD_CHECKS
from kopilka.services.ports import UnitOfWorkFactory

CHECKS: dict[str, str] = {
    "unbalanced_transactions": """
        SELECT transaction_id AS subject, SUM(amount) AS value FROM postings
        WHERE (:tenant IS NULL OR tenant_id = :tenant)
        GROUP BY transaction_id HAVING SUM(amount) <> 0 OR COUNT(*) < 2
    """,
    "transactions_without_postings": """
        SELECT t.id AS subject, 0 AS value FROM ledger_transactions t
        WHERE (:tenant IS NULL OR t.tenant_id = :tenant)
          AND NOT EXISTS (SELECT 1 FROM postings p WHERE p.transaction_id = t.id)
    """,
    "cached_balance_differs_from_postings": """
        SELECT a.id AS subject, a.balance - COALESCE(SUM(p.amount), 0) AS value
        FROM accounts a LEFT JOIN postings p ON p.account_id = a.id
        WHERE a.owner <> 'tenant' AND (:tenant IS NULL OR a.tenant_id = :tenant)
        GROUP BY a.id, a.balance HAVING a.balance <> COALESCE(SUM(p.amount), 0)
    """,
    "wallet_differs_from_active_lots": """
        SELECT a.id AS subject,
               (CASE WHEN a.balance > 0 THEN a.balance ELSE 0 END)
               - COALESCE((SELECT SUM(l.remaining) FROM lots l
                           WHERE l.member_id = a.member_id AND l.currency = a.currency
                             AND l.status = 'active'), 0) AS value
        FROM accounts a
        WHERE a.kind = 'wallet' AND a.owner <> 'tenant' AND a.member_id IS NOT NULL
          AND (:tenant IS NULL OR a.tenant_id = :tenant)
          AND (CASE WHEN a.balance > 0 THEN a.balance ELSE 0 END)
              <> COALESCE((SELECT SUM(l.remaining) FROM lots l
                           WHERE l.member_id = a.member_id AND l.currency = a.currency
                             AND l.status = 'active'), 0)
    """,
    "pending_differs_from_pending_lots": """
        SELECT a.id AS subject,
               a.balance - COALESCE((SELECT SUM(l.remaining) FROM lots l
                   WHERE l.member_id = a.member_id AND l.currency = a.currency
                     AND l.status = 'pending'), 0) AS value
        FROM accounts a
        WHERE a.kind = 'pending' AND (:tenant IS NULL OR a.tenant_id = :tenant)
          AND a.balance <> COALESCE((SELECT SUM(l.remaining) FROM lots l
                   WHERE l.member_id = a.member_id AND l.currency = a.currency
                     AND l.status = 'pending'), 0)
    """,
    "hold_differs_from_active_holds": """
        SELECT a.id AS subject,
               a.balance - COALESCE((SELECT SUM(h.amount) FROM holds h
                   WHERE h.member_id = a.member_id AND h.currency = a.currency
                     AND h.status = 'active'), 0) AS value
        FROM accounts a
        WHERE a.kind = 'hold' AND (:tenant IS NULL OR a.tenant_id = :tenant)
          AND a.balance <> COALESCE((SELECT SUM(h.amount) FROM holds h
                   WHERE h.member_id = a.member_id AND h.currency = a.currency
                     AND h.status = 'active'), 0)
    """,
    "overdrawn_lots": """
        SELECT id AS subject, remaining AS value FROM lots
        WHERE (remaining < 0 OR remaining > amount) AND (:tenant IS NULL OR tenant_id = :tenant)
    """,
    # The till's hot tables have no foreign key to their tenant's row (migration 0017).
    "rows_of_unknown_tenants": """
        SELECT x.tenant_id AS subject, COUNT(*) AS value FROM (
            SELECT tenant_id FROM ledger_transactions UNION ALL
            SELECT tenant_id FROM postings UNION ALL
            SELECT tenant_id FROM lots UNION ALL
            SELECT tenant_id FROM lot_movements UNION ALL
            SELECT tenant_id FROM idempotency_keys UNION ALL
            SELECT tenant_id FROM receipts UNION ALL
            SELECT tenant_id FROM receipt_lines
        ) x
        WHERE (:tenant IS NULL OR x.tenant_id = :tenant)
          AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = x.tenant_id)
        GROUP BY x.tenant_id
    """,
    "receipts_of_unknown_outlets": """
        SELECT r.id AS subject, 0 AS value FROM receipts r
        WHERE (:tenant IS NULL OR r.tenant_id = :tenant)
          AND NOT EXISTS (SELECT 1 FROM outlets o
                          WHERE o.id = r.outlet_id AND o.tenant_id = r.tenant_id)
    """,
    "forbidden_negative_balances": """
        SELECT id AS subject, balance AS value FROM accounts
        WHERE balance < 0 AND (NOT allow_debt OR kind <> 'wallet')
          AND owner <> 'tenant' AND (:tenant IS NULL OR tenant_id = :tenant)
    """,
}


@dataclass
class VerifyReport:
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.checks.values())


def verify_ledger(
    uow_factory: UnitOfWorkFactory, tenant_id: uuid.UUID | None = None
) -> VerifyReport:
    """Run every check; each lists up to 100 offending rows."""
    report = VerifyReport()
    with uow_factory(write=False) as uow:
        tenant = tenant_id.hex if tenant_id and uow.dialect == "sqlite" else tenant_id
        # Gift cards are ledger holders that are not members: they have checks of their own.
        for name, sql in {**CHECKS, **GIFT_CARD_CHECKS}.items():
            stmt = sa.text(sql + " LIMIT 100")
            if uow.dialect == "postgresql":
                stmt = stmt.bindparams(sa.bindparam("tenant", type_=sa.Uuid))
            rows = uow.execute(stmt, {"tenant": tenant}).all()
            report.checks[name] = [{"subject": str(r.subject), "value": int(r.value)} for r in rows]
    return report
