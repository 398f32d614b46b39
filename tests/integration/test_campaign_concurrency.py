"""A campaign's budgets under 64 purchases at once on PostgreSQL: the budget is spent to the
last unit and never beyond (the documented tolerance is zero), and the ledger shows exactly
what the campaign's redemptions and slot counters say it gave.

The 64 tills get a connection each when the server has that many free; on a busy server
they share a smaller pool (as a real one would), leaving room for another test worker's
own concurrency tests."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from kopilka.adapters.db.mechanics.campaigns import campaign_budget_slots, campaign_redemptions
from kopilka.adapters.db.tables import ledger_transactions, receipts
from kopilka.bootstrap import Container, bootstrap
from kopilka.domain.campaigns.definition import CampaignCreate
from kopilka.domain.errors import KopilkaError
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.verify import verify_ledger
from kopilka.settings import Settings
from kopilka.testing import FakeClock
from tests.conftest import Merchant
from tests.integration.test_purchase_concurrency import race

pytestmark = pytest.mark.postgres_only

TILLS = 64
HEADROOM = 40  # connections left free for the other test worker (its 32-till tests)
POINTS_EACH, DISCOUNT_EACH = 100, 1000
# The discount budget runs out first: 7 receipts, then nothing more.
DISCOUNT_BUDGET = 7000
BUDGETS: dict[str, Any] = {
    "points": 1000,
    "discount": DISCOUNT_BUDGET,
    "per_outlet": {"OUT-2": {"redemptions": 3}},
}
PROGRAM: dict[str, Any] = {"type": "bonus", "rules": []}  # only the campaign gives points


def _used(container: Container, kind: str, scope: str = "all") -> int:
    with container.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.sum(campaign_budget_slots.c.used)).where(
                    campaign_budget_slots.c.kind == kind, campaign_budget_slots.c.scope == scope
                )
            ).scalar_one()
        )


def _tills_engine(engine: sa.Engine) -> sa.Engine:
    """An engine with a connection per till, or as many as the server has free."""
    with engine.connect() as conn:
        limit = int(conn.execute(sa.text("SHOW max_connections")).scalar_one())
        taken = int(conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity")).scalar_one())
    size = max(16, min(TILLS, limit - taken - HEADROOM))
    return sa.create_engine(engine.url, pool_size=size, max_overflow=0, pool_timeout=120)


def test_a_budget_under_64_parallel_purchases_never_overshoots(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    actor = merchant.actor
    container.engine.dispose()  # leave no idle connections: the server's limit is shared
    engine = _tills_engine(container.engine)
    url = engine.url.render_as_string(hide_password=False)
    c = bootstrap(Settings(database_url=url), clock=clock, engine=engine)
    c.tenants.create_outlet(actor, "OUT-2", name="Two")
    c.programs.publish(actor, "bonus", PROGRAM)
    c.campaigns.create(
        actor,
        CampaignCreate.model_validate(
            {
                "code": "rush",
                "name": {"ru": "Распродажа", "en": "Rush"},
                "schedule": {"start": "2026-01-01", "end": "2026-02-01"},
                "budgets": BUDGETS,
                "rules": [
                    {
                        "id": "gift",
                        "effects": [
                            {"points_fixed": POINTS_EACH},
                            {"discount_amount": {"value": DISCOUNT_EACH, "per": "receipt"}},
                        ],
                    }
                ],
            }
        ),
    )
    c.campaigns.transition(actor, "rush", "schedule")
    people = [c.members.enroll(actor, {"name": f"M{i}"}).id for i in range(TILLS)]

    def till(i: int) -> dict[str, Any]:
        request = ReceiptInput(
            lines=(LineInput("TV", Decimal(1), 50_000),),
            member=MemberRef(id=people[i]),
            outlet="OUT-2" if i % 4 == 0 else "OUT-1",
        )
        return c.purchases.confirm(actor, request, f"RUSH-{i}", hold=i % 8 == 1)

    try:
        results = race(TILLS, till)
    finally:
        engine.dispose()
    assert all(not isinstance(r, KopilkaError) for r in results), results
    answers = [r for r in results if isinstance(r, dict)]
    assert len(answers) == TILLS
    got = [r for r in answers if r["campaigns"][0]["applied"]]
    # Spent to the last unit, and not one beyond: zero overshoot, nothing stranded.
    assert len(got) == DISCOUNT_BUDGET // DISCOUNT_EACH
    assert _used(c, "discount") == DISCOUNT_BUDGET
    assert _used(c, "points") == len(got) * POINTS_EACH
    assert _used(c, "redemptions", "outlet:OUT-2") <= 3
    at_two = [r for r in got if r["outlet"] == "OUT-2"]
    assert _used(c, "redemptions", "outlet:OUT-2") == len(at_two)
    refused = {r["campaigns"][0]["reason"] for r in answers if not r["campaigns"][0]["applied"]}
    assert refused <= {"budget_exhausted"}
    # The ledger matches: what the receipts earned and paid is what the campaign counted.
    with c.engine.connect() as conn:
        discount = conn.execute(sa.select(sa.func.sum(receipts.c.total_discount))).scalar_one()
        redemptions = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.sum(campaign_redemptions.c.points),
                sa.func.sum(campaign_redemptions.c.discount),
            ).where(campaign_redemptions.c.status.in_(("reserved", "confirmed")))
        ).one()
    assert discount == DISCOUNT_BUDGET
    assert tuple(redemptions) == (len(got), len(got) * POINTS_EACH, DISCOUNT_BUDGET)
    # Earned points reach the ledger when a receipt is confirmed; confirm the held ones.
    for r in answers:
        if r["receipt"]["status"] == "held":
            c.purchases.confirm_held(actor, uuid.UUID(r["receipt"]["id"]))
    with c.engine.connect() as conn:
        accrued = conn.execute(
            sa.select(sa.func.sum(ledger_transactions.c.amount)).where(
                ledger_transactions.c.kind == "accrual"
            )
        ).scalar_one()
        confirmed = conn.execute(
            sa.select(sa.func.count()).where(campaign_redemptions.c.status == "confirmed")
        ).scalar_one()
    assert accrued == len(got) * POINTS_EACH
    assert confirmed == len(got)
    assert sum(c.ledger.balance(actor, p).available for p in people) == len(got) * POINTS_EACH
    report = verify_ledger(c.uow_factory)
    assert report.ok, report.checks
    engine.dispose()
