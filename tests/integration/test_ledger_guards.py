"""Two guards of the ledger: tenant account ids reach the process cache only once their
transaction committed, and a gift card's money is not reversed through the points API."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.tables import accounts, ledger_transactions
from kopilka.bootstrap import Container
from kopilka.domain.errors import BusinessRuleViolation
from kopilka.domain.ledger.model import AccountKind
from kopilka.services.giftcards import SaleInput
from tests.conftest import Merchant


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
