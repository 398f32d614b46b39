"""Two guards of the ledger: tenant account ids reach the process cache only once their
transaction committed, and a gift card's money is not reversed through the points API."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.tables import accounts, ledger_transactions, postings, receipts
from kopilka.bootstrap import Container
from kopilka.domain.errors import BusinessRuleViolation
from kopilka.domain.ledger.model import AccountKind
from kopilka.services.giftcards import SaleInput
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from tests.conftest import Merchant

_BONUS: dict[str, Any] = {
    "type": "bonus",
    "pending_days": 0,
    "redemption": {"point_value": 100, "max_percent": 50},
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
}


def test_account_ids_of_a_rolled_back_transaction_are_not_cached(
    container: Container, merchant: Merchant
) -> None:
    factory = container.uow_factory
    tenant_id = merchant.tenant_id
    key = (tenant_id, AccountKind.ISSUED, "stars")
    with factory(write=True) as uow:
        made = uow.ledger.tenant_accounts(tenant_id, "stars", container.clock.now())
        assert made[AccountKind.ISSUED] is not None
        # Not visible to the rest of the process before the commit ...
        assert key not in factory.account_cache
        # ... and gone with the rollback (no commit).
    assert key not in factory.account_cache
    with container.engine.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count())
            .select_from(accounts)
            .where(accounts.c.tenant_id == tenant_id, accounts.c.currency == "stars")
        ).scalar_one()
    assert left == 0
    with factory(write=True) as uow:
        committed = uow.ledger.tenant_accounts(tenant_id, "stars", container.clock.now())
        uow.commit()
    assert factory.account_cache[key] == committed[AccountKind.ISSUED]


def test_a_gift_card_transaction_is_not_reversed_through_the_points_api(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    card = c.giftcards.issue(m.actor, 5000, SaleInput("OUT-1", "SALE-1", c.clock.now()))
    c.giftcards.activate(m.actor, card.number, "OUT-1")
    with c.engine.connect() as conn:
        txn_id = conn.execute(
            sa.select(ledger_transactions.c.id).where(
                ledger_transactions.c.tenant_id == m.tenant_id,
                ledger_transactions.c.kind == "accrual",
            )
        ).scalar_one()
    assert isinstance(txn_id, uuid.UUID)
    with pytest.raises(BusinessRuleViolation) as err:
        c.ledger.reverse(m.actor, txn_id)
    assert err.value.code == "not_reversible"
    assert c.giftcards.details(m.actor, card.number).balance == 5000


def test_verify_reports_rows_of_unknown_tenants_and_outlets(
    container: Container, merchant: Merchant
) -> None:
    """The hot tables have no foreign keys to their tenant's and outlet's rows: verify
    stands in for them."""
    c, m = container, merchant
    c.programs.publish(m.actor, "main", _BONUS)
    member = c.members.enroll(m.actor, {"phone": "+79161230001"}).id
    c.purchases.confirm(
        m.actor,
        ReceiptInput(
            lines=(LineInput(sku="A", qty=Decimal(1), price=10000),),
            member=MemberRef(id=member),
            outlet=m.outlet_code,
        ),
        "R-1",
    )
    assert verify_ledger(c.uow_factory).ok
    stranger = uuid.uuid4()
    with c.engine.begin() as conn:
        account = conn.execute(sa.select(accounts.c.id).limit(1)).scalar_one()
        conn.execute(
            sa.insert(postings).values(
                tenant_id=stranger,
                transaction_id=uuid.uuid4(),
                account_id=account,
                amount=0,
                balance_after=None,
            )
        )
        conn.execute(sa.update(receipts).values(outlet_id=uuid.uuid4()))
    report = verify_ledger(c.uow_factory)
    [orphan] = report.checks["rows_of_unknown_tenants"]
    assert uuid.UUID(orphan["subject"]) == stranger  # SQLite answers the id as bare hex
    assert orphan["value"] == 1
    assert len(report.checks["receipts_of_unknown_outlets"]) == 1
    # Scoped to the merchant, the stranger's row is not the merchant's business.
    assert verify_ledger(c.uow_factory, m.tenant_id).checks["rows_of_unknown_tenants"] == []
