"""The clock's work on both databases: activation, expiry and stale holds, run repeatedly,
late, in batches and per tenant, always with the same outcome."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.tables import holds, ledger_transactions, lot_movements, lots, postings
from kopilka.bootstrap import Container
from kopilka.services.ledger import ShortfallPolicy
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

START = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
LEDGER_TABLES = (ledger_transactions, postings, lots, lot_movements, holds)


def row_counts(c: Container) -> dict[str, int]:
    with c.engine.connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in LEDGER_TABLES
        }


def snapshot(c: Container) -> dict[str, Any]:
    """Everything the jobs may change: balances, lot states, hold states."""
    with c.engine.connect() as conn:
        accounts = conn.execute(sa.text("SELECT id, balance FROM accounts ORDER BY id")).all()
        lot_rows = conn.execute(
            sa.select(lots.c.id, lots.c.remaining, lots.c.status).order_by(lots.c.id)
        ).all()
        hold_rows = conn.execute(sa.select(holds.c.id, holds.c.status).order_by(holds.c.id)).all()
    return {
        "accounts": [tuple(r) for r in accounts],
        "lots": [tuple(r) for r in lot_rows],
        "holds": [tuple(r) for r in hold_rows],
        "counts": row_counts(c),
    }


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, {k: v for k, v in report.checks.items() if v}


def populate(c: Container, m: Merchant, n: int = 4) -> list[uuid.UUID]:
    """Members with pending lots, expiring lots, spends and holds, some with debt."""
    members = []
    for i in range(n):
        member = c.members.enroll(m.actor, {"phone": f"+7916123{i:04d}"}).id
        members.append(member)
        c.ledger.accrue(m.actor, member, 100 + i, expires_at=START + timedelta(days=5 + i))
        c.ledger.accrue(m.actor, member, 50, pending_days=2 + i)
        c.ledger.accrue(m.actor, member, 30, pending_days=3, expires_at=START + timedelta(days=8))
        c.ledger.accrue(m.actor, member, 20)
        c.ledger.redeem(m.actor, member, 40)
        c.ledger.hold(m.actor, member, 10 + i, ttl_seconds=3600 * (i + 1))
    return members


def test_running_twice_at_the_same_time_changes_nothing_more(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    populate(container, merchant)
    clock.advance(days=4, hours=1)
    first = container.jobs.run()
    assert first.transactions > 0
    assert first.holds_released == 4
    assert first.errors == []
    after = snapshot(container)
    second = container.jobs.run()
    assert (second.members_settled, second.transactions, second.holds_released) == (0, 0, 0)
    assert snapshot(container) == after
    # Later, with nothing new due (the next lot falls due on day 5): still nothing to do.
    clock.advance(hours=20)
    later = container.jobs.run()
    assert (later.members_settled, later.transactions, later.holds_released) == (0, 0, 0)
    assert snapshot(container) == after
    assert_verified(container)


def test_running_late_equals_running_at_every_step(container: Container, clock: FakeClock) -> None:
    """Run the job daily on one tenant and once, a month late, on another: same balances."""
    c = container
    daily, late = make_merchant(c, "Daily"), make_merchant(c, "Late")
    daily_members, late_members = populate(c, daily), populate(c, late)
    for _ in range(30):
        clock.advance(days=1)
        c.jobs.run(tenant_id=daily.tenant_id)
    late_report = c.jobs.run(tenant_id=late.tenant_id)
    assert late_report.members_settled == len(late_members)
    for a, b in zip(daily_members, late_members, strict=True):
        assert c.ledger.balance(daily.actor, a).model_dump(exclude={"member_id", "as_of"}) == (
            c.ledger.balance(late.actor, b).model_dump(exclude={"member_id", "as_of"})
        )
    assert c.jobs.run().transactions == 0
    assert_verified(c)


def test_job_for_one_tenant_leaves_the_other_alone(container: Container, clock: FakeClock) -> None:
    one, two = make_merchant(container, "One"), make_merchant(container, "Two")
    populate(container, one, 2)
    populate(container, two, 2)
    clock.advance(days=10)
    before = snapshot(container)
    report = container.jobs.run(tenant_id=one.tenant_id)
    assert report.members_settled == 2
    assert report.holds_released == 2
    changed = snapshot(container)
    assert changed != before
    rest = container.jobs.run()
    assert rest.members_settled == 2
    assert rest.holds_released == 2
    assert container.jobs.run(tenant_id=one.tenant_id).transactions == 0
    assert_verified(container)


def test_small_batches_settle_every_member(
    container: Container, merchant: Merchant, clock: FakeClock
) -> None:
    members = populate(container, merchant, 5)
    clock.advance(days=30)
    report = container.jobs.run(batch=2)
    assert report.members_settled == len(members)
    assert report.holds_released == len(members)
    assert container.jobs.run(batch=2).transactions == 0
    for member in members:
        view = container.ledger.balance(merchant.actor, member)
        assert (view.pending, view.held) == (0, 0)
    assert_verified(container)


def test_each_step_of_the_clock(container: Container, merchant: Merchant, clock: FakeClock) -> None:
    member = container.members.enroll(merchant.actor, {"phone": "+79160000001"}).id
    container.ledger.accrue(
        merchant.actor, member, 100, pending_days=2, expires_at=START + timedelta(days=4)
    )
    counts = [row_counts(container)["ledger_transactions"]]
    for day in range(1, 6):
        clock.set(START + timedelta(days=day))
        container.jobs.run()
        container.jobs.run()
        counts.append(row_counts(container)["ledger_transactions"])
    # accrual; day 2: activation; day 4: expiry; nothing more.
    assert counts == [1, 1, 2, 2, 3, 3]
    history = container.ledger.history(merchant.actor, member, None, 10)
    assert [(t.kind, t.amount) for t in history] == [
        ("expiry", 100),
        ("activation", 100),
        ("accrual", 100),
    ]
    assert history[1].description["ru"] == "100 баллов стали доступны для оплаты"
    assert_verified(container)


def test_activation_pays_debt_in_the_job(container: Container, clock: FakeClock) -> None:
    m = make_merchant(container, "Lender", allow_debt=True)
    member = container.members.enroll(m.actor, {"phone": "+79160000002"}).id
    accrual = container.ledger.accrue(m.actor, member, 100).transactions[0].id
    container.ledger.redeem(m.actor, member, 100)
    container.ledger.reverse(m.actor, accrual, on_shortfall=ShortfallPolicy.DEBT)
    container.ledger.accrue(m.actor, member, 60, pending_days=1)
    container.ledger.accrue(m.actor, member, 60, pending_days=1)
    clock.advance(days=1)
    projected = container.ledger.balance(m.actor, member)
    container.jobs.run()
    settled = container.ledger.balance(m.actor, member)
    assert (settled.available, settled.debt) == (20, 0)
    assert projected.model_dump(exclude={"as_of"}) == settled.model_dump(exclude={"as_of"})
    counts = row_counts(container)
    container.jobs.run()
    assert row_counts(container) == counts
    assert_verified(container)


def test_jobs_on_an_empty_ledger(container: Container) -> None:
    report = container.jobs.run()
    assert (report.members_settled, report.transactions, report.holds_released) == (0, 0, 0)
    assert report.now == START
