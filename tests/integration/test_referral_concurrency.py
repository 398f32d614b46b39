"""Referrals under concurrency on PostgreSQL: the monthly cap holds when friends enrol with
one code at once, a member's first code requests make one code, and twin first purchases
reward once."""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from decimal import Decimal

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.awards import mechanic_awards
from kopilka.adapters.db.mechanics.referrals import referral_codes, referrals
from kopilka.bootstrap import Container
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from tests.conftest import Merchant, make_merchant
from tests.integration.test_concurrency import run_together
from tests.integration.test_referrals import REFERRAL, code_of, enrol

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def shop(container: Container) -> Merchant:
    merchant = make_merchant(container, "Busy Referrals")
    document = {"type": "bonus", "pending_days": 0, "referral": REFERRAL}  # monthly cap 3
    container.programs.publish(merchant.actor, "main", document)
    return merchant


def test_the_monthly_cap_holds_when_friends_enrol_at_once(
    container: Container, shop: Merchant
) -> None:
    c = container
    code = code_of(c, shop, enrol(c, shop))
    results = run_together([lambda: enrol(c, shop, code) for _ in range(12)])
    assert all(isinstance(r, uuid.UUID) for r in results), results
    with c.engine.connect() as conn:
        statuses = Counter(conn.execute(sa.select(referrals.c.status)).scalars())
    assert statuses == {"awaiting_purchase": 3, "capped": 9}


def test_first_code_requests_at_once_make_one_code(container: Container, shop: Merchant) -> None:
    c = container
    member = enrol(c, shop)
    with c.engine.begin() as conn:
        conn.execute(sa.delete(referral_codes))
    results = run_together([lambda: c.referrals.summary(shop.actor, member).code for _ in range(8)])
    assert len(set(results)) == 1, results
    with c.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(referral_codes)).scalar() == 1


def test_twin_first_purchases_reward_once(container: Container, shop: Merchant) -> None:
    c = container
    referrer = enrol(c, shop)
    friend = enrol(c, shop, code_of(c, shop, referrer))

    def buy(number: str) -> object:
        request = ReceiptInput(
            lines=(LineInput(sku="A", qty=Decimal(1), price=150_000),),
            member=MemberRef(id=friend),
            outlet="OUT-1",
        )
        return c.purchases.confirm(shop.actor, request, number)

    results = run_together([functools.partial(buy, f"R-{n}") for n in range(6)])
    assert all(isinstance(r, dict) for r in results), results
    assert sum("referral" in r for r in results if isinstance(r, dict)) == 1
    with c.engine.connect() as conn:
        awards = conn.execute(sa.select(sa.func.count()).select_from(mechanic_awards)).scalar()
    assert awards == 2
    assert c.ledger.balance(shop.actor, referrer).pending == 500
    assert verify_ledger(c.uow_factory).ok
