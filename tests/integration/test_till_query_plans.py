"""Every statement of the till's operations finds its rows through an index on PostgreSQL.

The test database is small, so a missing index costs nothing here and a lot in production:
a statement that reads a whole table (all tenants' lots, say) grows with the database. Each
statement the operations send is explained with ``enable_seqscan`` off, which makes the
planner choose a sequential scan only where no index can serve the statement; an index scan
without an index condition (the whole index, walked for its order) counts as a full read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from kopilka.adapters.db.tables import lots
from kopilka.bootstrap import Container
from kopilka.services.purchases import LineInput, MemberRef, ReceiptInput
from kopilka.services.views import OperationResult
from tests.conftest import Merchant

# Tables that grow with the merchant's trade; reading any of them whole is a defect.
GROWING = (
    "accounts",
    "audit_log",
    "cards",
    "holds",
    "idempotency_keys",
    "ledger_transactions",
    "lot_movements",
    "lots",
    "members",
    "outbox_events",
    "postings",
    "receipt_lines",
    "receipts",
    "refunds",
)
PROGRAM: dict[str, Any] = {
    "type": "bonus",
    "pending_days": 0,
    "redemption": {"point_value": 100, "max_percent": 50},
    "rules": [{"id": "base", "effects": [{"points_percent": 5}]}],
}


@contextmanager
def sent(container: Container) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) sent to the database inside the block."""
    seen: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, params: Any, *_args: Any) -> None:
        seen.append((statement, params))

    event.listen(container.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(container.engine, "before_cursor_execute", note)


def full_scans(container: Container, seen: list[tuple[str, Any]]) -> list[str]:
    """The statements whose plan reads a growing table whole, with the plan."""
    found: list[str] = []
    raw = container.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET enable_seqscan = off")
        for statement, params in seen:
            if not statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "WITH")):
                continue  # BEGIN, SAVEPOINT, SET and the like have no plan
            one = params[0] if isinstance(params, list | tuple) and params else params
            cursor.execute("EXPLAIN " + statement, one or None)
            plan = "\n".join(str(row[0]) for row in cursor.fetchall())
            if whole_table_reads(plan):
                found.append(f"{statement}\n{plan}")
    finally:
        raw.rollback()
        raw.close()
    return found


def whole_table_reads(plan: str) -> list[str]:
    """The plan's scans of a growing table without an index condition: sequential scans,
    and index scans that walk the whole index (for its order) and filter every row."""
    lines = plan.splitlines()
    found = []
    for n, line in enumerate(lines):
        node = line.split("->")[-1].strip()
        if not any(node.startswith(kind) for kind in ("Seq Scan", "Index Scan", "Index Only Scan")):
            continue
        if not any(f" on {table} " in f"{node} " for table in GROWING):
            continue
        details = []
        for after in lines[n + 1 :]:
            if "->" in after or not after.startswith(" "):
                break
            details.append(after)
        if node.startswith("Seq Scan") or not any("Index Cond" in d for d in details):
            found.append(node)
    return found


def receipt(
    member: uuid.UUID, outlet: str, redeem: int | Literal["max"] | None = None
) -> ReceiptInput:
    return ReceiptInput(
        lines=(
            LineInput(sku="TEA", qty=Decimal(2), price=50_000),
            LineInput(sku="CAKE", qty=Decimal(1), price=30_000),
        ),
        member=MemberRef(id=member),
        redeem_points=redeem,
        outlet=outlet,
    )


def hold_id(answer: OperationResult) -> uuid.UUID:
    assert answer.hold is not None
    return answer.hold.id


def program_and_member(c: Container, m: Merchant) -> uuid.UUID:
    """The bonus program published and a member enrolled."""
    c.programs.publish(m.actor, "main", PROGRAM)
    return c.members.enroll(m.actor, {"phone": "+79161234567"}).id


def receipt_id(answer: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(answer["receipt"]["id"])


@pytest.mark.postgres_only
def test_the_till_reads_and_writes_through_indexes(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    member = program_and_member(c, m)
    c.ledger.accrue(m.actor, member, 5_000)
    with sent(c) as seen:
        c.purchases.calculate(m.actor, receipt(member, m.outlet_code, "max"))
        bought = c.purchases.confirm(m.actor, receipt(member, m.outlet_code, 100), "R-1")
        c.purchases.confirm(m.actor, receipt(member, m.outlet_code, 100), "R-1")  # a retry
        c.purchases.refund(m.actor, receipt_id(bought), "part", [(0, Decimal(1))])
        c.purchases.refund(m.actor, receipt_id(bought), "rest", None)
        held = c.purchases.confirm(m.actor, receipt(member, m.outlet_code, 50), "R-2", hold=True)
        c.purchases.confirm_held(m.actor, receipt_id(held))
        voided = c.purchases.confirm(m.actor, receipt(member, m.outlet_code, 50), "R-3", hold=True)
        c.purchases.void(m.actor, receipt_id(voided))
        mistake = c.purchases.confirm(m.actor, receipt(member, m.outlet_code), "R-4")
        c.purchases.cancel(m.actor, receipt_id(mistake))
    assert len(seen) > 20
    scans = full_scans(c, seen)
    assert not scans, "\n\n".join(scans)


@pytest.mark.postgres_only
def test_the_ledger_api_and_the_jobs_read_through_indexes(
    container: Container, merchant: Merchant
) -> None:
    c, m = container, merchant
    member = program_and_member(c, m)
    with sent(c) as seen:
        earned = c.ledger.accrue(m.actor, member, 5_000)
        spent = c.ledger.redeem(m.actor, member, 1_000)
        held = c.ledger.hold(m.actor, member, 500)
        c.ledger.capture(m.actor, hold_id(held))
        released = c.ledger.hold(m.actor, member, 500)
        c.ledger.release(m.actor, hold_id(released))
        c.ledger.reverse(m.actor, spent.transactions[0].id)
        c.ledger.reverse(m.actor, earned.transactions[0].id, 100)
        c.ledger.balance(m.actor, member)
        c.ledger.history(m.actor, member, None, 50)
        c.jobs.run()
    assert len(seen) > 20
    scans = full_scans(c, seen)
    assert not scans, "\n\n".join(scans)


def test_a_lot_spent_to_nothing_is_not_open_until_a_refund_refills_it(
    container: Container, merchant: Merchant
) -> None:
    """``lots.is_open`` (generated) follows the lot: the member's reads skip spent lots."""
    c, m = container, merchant
    member = c.members.enroll(m.actor, {"phone": "+79161234567"}).id
    c.ledger.accrue(m.actor, member, 300)
    spent = c.ledger.redeem(m.actor, member, 300)

    def open_flags() -> list[bool]:
        with c.engine.connect() as conn:
            rows = conn.execute(sa.select(lots.c.is_open).where(lots.c.member_id == member))
            return [bool(flag) for (flag,) in rows]

    assert open_flags() == [False]
    assert c.ledger.balance(m.actor, member).available == 0
    with c.engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(lots).where(lots.c.is_open == sa.true())
            ).scalar_one()
            == 0
        )
    c.ledger.reverse(m.actor, spent.transactions[0].id)
    assert open_flags() == [True]
    assert c.ledger.balance(m.actor, member).available == 300
