"""Historical receipt import (CSV and Parquet), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from kopilka.adapters.db import tables
from kopilka.bootstrap import Container
from kopilka.cli.main import app
from kopilka.domain.errors import Forbidden, NotFound, ValidationFailed
from kopilka.services import receipt_import
from kopilka.services.context import Actor, Role
from kopilka.services.receipt_import import (
    ReceiptImportReport,
    import_receipts,
    parse_mapping,
)
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant

HEADER = "member_external_id,receipt_number,outlet,occurred_at,sku,category,qty,amount\n"
BASE = {
    "type": "bonus",
    "name": {"ru": "Бонусы"},
    "rules": [
        {"id": "base", "effects": [{"points_percent": 5}]},
    ],
}


def doc(percent: int, **extra: Any) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [{"id": "base", "effects": [{"points_percent": percent}]}]
    rules += extra.pop("rules", [])
    return {"type": "bonus", "name": {"ru": f"{percent}%"}, "rules": rules, **extra}


def write(tmp_path: Path, text: str, name: str = "receipts.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(c: Container, m: Merchant, path: Path, **options: Any) -> ReceiptImportReport:
    return import_receipts(c, m.actor, path, **options)


def enroll(c: Container, m: Merchant, external_id: str) -> Any:
    return c.members.enroll(m.actor, {"external_id": external_id}, issue_virtual_card=False)


def publish(
    c: Container, m: Merchant, document: dict[str, Any], start: datetime, code: str = "main"
) -> None:
    c.programs.publish(m.actor, code, document, starts_at=start)


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params))


def count(engine: Engine, table: str) -> int:
    return int(rows(engine, f"SELECT COUNT(*) FROM {table}")[0][0])


def select(engine: Engine, table: sa.Table) -> list[Any]:
    """Every row, through the table's types (aware times and decoded JSON on SQLite too)."""
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table)))


def receipts_by_number(engine: Engine) -> dict[str, Any]:
    return {r.receipt_number: r for r in select(engine, tables.receipts)}


def programs_of(value: Any) -> dict[str, int]:
    return dict(value)


def available(c: Container, m: Merchant, member_id: Any) -> int:
    return c.ledger.balance(m.actor, member_id).available


def assert_verified(c: Container) -> None:
    report = verify_ledger(c.uow_factory)
    assert report.ok, report.checks


@pytest.fixture
def program(container: Container, merchant: Merchant) -> None:
    publish(container, merchant, BASE, datetime(2024, 1, 1, tzinfo=UTC))


# ---- a clean file ------------------------------------------------------------------------
SIMPLE = HEADER + (
    "M-1,R1,OUT-1,2025-03-01T10:00:00+03:00,LATTE,drinks/coffee,2,50000\n"
    "M-1,R1,OUT-1,2025-03-01T10:00:00+03:00,CAKE,food,1,30000\n"
    ",R2,OUT-1,2025-03-02T11:00:00+03:00,LATTE,drinks/coffee,1,25000\n"
    "M-2,R3,OUT-1,2025-03-03 12:00:00,TEA,drinks/tea,0.5,10001\n"
)


@pytest.mark.usefixtures("program")
def test_csv_import_groups_lines_and_credits_points(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    m1, m2 = enroll(container, merchant, "M-1"), enroll(container, merchant, "M-2")
    report = run(container, merchant, write(tmp_path, SIMPLE))

    assert report.errors == []
    assert (report.rows, report.receipts, report.imported, report.lines) == (4, 3, 3, 4)
    assert report.points == 40 + 5  # 5% of 800.00 and of 100.01 roubles, a point a rouble
    found = receipts_by_number(engine)
    assert found["R1"].total_amount == 80000
    assert found["R1"].points_earned == 40
    assert found["R2"].member_id is None  # anonymous
    assert programs_of(found["R1"].programs) == {"main": 1}
    # Naive time: the tenant's zone (Moscow, +03:00).
    assert found["R3"].occurred_at == datetime(2025, 3, 3, 9, tzinfo=UTC)
    lines = sorted(select(engine, tables.receipt_lines), key=lambda r: r.amount)
    assert [(r.qty, r.price, r.amount) for r in lines] == [
        (Decimal("0.5"), 20002, 10001),
        (Decimal(1), 25000, 25000),
        (Decimal(1), 30000, 30000),
        (Decimal(2), 25000, 50000),
    ]
    assert available(container, merchant, m1.id) == 40
    assert available(container, merchant, m2.id) == 5
    # Anonymous receipts write no ledger: two accruals only.
    assert count(engine, "ledger_transactions") == 2
    assert_verified(container)


@pytest.mark.usefixtures("program")
def test_parquet_import_reads_native_types(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    m1 = enroll(container, merchant, "M-1")
    table = pa.table(
        {
            "member_external_id": ["M-1", "M-1", None],
            "receipt_number": [1001, 1001, 1002],
            "outlet": ["OUT-1", "OUT-1", "OUT-1"],
            "occurred_at": pa.array(
                [datetime(2025, 3, 1, 7, tzinfo=UTC)] * 2 + [datetime(2025, 3, 2, 8)],
                type=pa.timestamp("us"),
            ),
            "sku": ["LATTE", "CAKE", "LATTE"],
            "qty": [2.0, 1.5, 1.0],
            "amount": pa.array([50000, 30000, 25000], type=pa.int64()),
        }
    )
    path = tmp_path / "receipts.parquet"
    pq.write_table(table, path)

    report = run(container, merchant, path)

    assert report.format == "parquet"
    assert report.errors == []
    assert (report.rows, report.receipts, report.imported, report.lines) == (3, 2, 2, 3)
    found = receipts_by_number(engine)
    assert set(found) == {"1001", "1002"}
    assert found["1001"].points_earned == 40
    assert available(container, merchant, m1.id) == 40
    assert_verified(container)


@pytest.mark.usefixtures("program")
def test_parquet_with_zoned_timestamps_and_bad_rows(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    enroll(container, merchant, "M-1")
    table = pa.table(
        {
            "member_external_id": ["M-1", "M-1"],
            "receipt_number": ["A", "B"],
            "outlet": ["OUT-1", "OUT-1"],
            "occurred_at": pa.array(
                [datetime(2025, 3, 1, 7, tzinfo=UTC)] * 2,
                type=pa.timestamp("us", tz="Europe/Moscow"),
            ),
            "sku": ["LATTE", "CAKE"],
            "qty": [1.0, -1.0],
            "amount": [100.0, 100.5],
        }
    )
    path = tmp_path / "receipts.parquet"
    pq.write_table(table, path)

    report = run(container, merchant, path)

    assert report.unit == "row"
    assert [(e.line, e.field) for e in report.errors] == [(2, "qty"), (2, "amount")]
    assert count(engine, "receipts") == 0
    report = run(container, merchant, path, skip_invalid=True)
    assert (report.imported, report.skipped_invalid) == (1, 1)
    assert receipts_by_number(engine)["A"].occurred_at == datetime(2025, 3, 1, 7, tzinfo=UTC)


@pytest.mark.usefixtures("program")
def test_map_renames_source_columns_and_semicolons_work(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    enroll(container, merchant, "M-1")
    text = (
        "Клиент;Чек;Магазин;Дата;Артикул;Кол-во;Сумма;Кассир\n"
        "M-1;77;OUT-1;2025-03-01T10:00:00+03:00;LATTE;1,5;30000;Ivan\n"
    )
    mapping = parse_mapping(
        [
            "Клиент=member_external_id",
            "Чек=receipt_number",
            "магазин=outlet",
            "Дата=occurred_at",
            "Артикул=sku",
            "Кол-во=qty",
            "Сумма=amount",
        ]
    )
    report = run(container, merchant, write(tmp_path, text), mapping=mapping)
    assert report.errors == []
    assert report.imported == 1
    [line] = select(engine, tables.receipt_lines)
    assert (line.qty, line.price, line.category) == (Decimal("1.5"), 20000, None)


def test_map_and_header_problems_are_reported(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    with pytest.raises(ValidationFailed):
        parse_mapping(["Чек=receipt"])
    with pytest.raises(ValidationFailed):
        parse_mapping(["no-equals-sign"])
    with pytest.raises(ValidationFailed):
        parse_mapping(["a=sku", "b=sku"])
    path = write(tmp_path, "number,outlet,occurred_at,sku,qty\n1,OUT-1,2025-01-01,X,1\n")
    report = run(container, merchant, path, mapping={"absent": "amount"})
    assert report.aborted
    [error] = report.errors
    assert error.line == 1
    assert "'absent'" in error.message
    assert "receipt_number" in error.message
    assert "amount" in error.message


@pytest.mark.usefixtures("program")
def test_lines_group_by_outlet_and_number_wherever_they_are(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    container.tenants.create_outlet(merchant.actor, "OUT-2")
    text = HEADER + (
        ",R1,OUT-1,2025-03-01T10:00:00Z,A,,1,100\n"
        ",R1,OUT-2,2025-03-01T11:00:00Z,B,,1,200\n"  # same number, another outlet
        ",R2,OUT-1,2025-03-01T12:00:00Z,C,,1,300\n"
        ",R1,OUT-1,2025-03-01T10:00:00Z,D,,1,400\n"  # back to the first receipt
    )
    report = run(container, merchant, write(tmp_path, text), batch_size=1)
    assert report.errors == []
    assert (report.receipts, report.imported, report.batches) == (3, 3, 3)
    totals = rows(
        engine,
        "SELECT o.code, r.receipt_number, r.total_amount FROM receipts r "
        "JOIN outlets o ON o.id = r.outlet_id ORDER BY o.code, r.receipt_number",
    )
    assert [tuple(t) for t in totals] == [
        ("OUT-1", "R1", 500),
        ("OUT-1", "R2", 300),
        ("OUT-2", "R1", 200),
    ]
    skus = rows(
        engine,
        "SELECT l.sku, l.line_no FROM receipt_lines l JOIN receipts r ON "
        "r.id = l.receipt_id WHERE r.total_amount = 500 ORDER BY l.line_no",
    )
    assert [tuple(s) for s in skus] == [("A", 0), ("D", 1)]


@pytest.mark.usefixtures("program")
def test_a_file_too_big_to_keep_is_read_twice(
    container: Container,
    merchant: Merchant,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(receipt_import, "KEEP_LINES", 2)
    enroll(container, merchant, "M-1")
    enroll(container, merchant, "M-2")
    report = run(container, merchant, write(tmp_path, SIMPLE), batch_size=2)
    assert report.errors == []
    assert (report.imported, report.lines, report.points) == (3, 4, 45)
    assert receipts_by_number(engine)["R1"].total_amount == 80000
    assert_verified(container)


@pytest.mark.usefixtures("program")
def test_an_imported_receipt_reads_and_refunds_like_a_live_one(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    member = enroll(container, merchant, "M-1")
    run(container, merchant, write(tmp_path, SIMPLE.replace("M-2", "")))
    receipt = receipts_by_number(engine)["R1"]
    view = container.purchases.get(merchant.actor, receipt.id)
    assert view["receipt"]["status"] == "confirmed"
    assert view["totals"]["points_earned"] == 40
    assert [line["sku"] for line in view["lines"]] == ["LATTE", "CAKE"]
    refund = container.purchases.refund(merchant.actor, receipt.id, "r-1", [(0, Decimal(1))])
    assert refund["points_taken_back"] == 12  # half the latte: 12 of its 25 points
    assert available(container, merchant, member.id) == 28
    assert_verified(container)


def test_a_program_in_another_currency_opens_its_accounts(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    publish(container, merchant, doc(5, currency="miles"), datetime(2024, 1, 1, tzinfo=UTC))
    member = enroll(container, merchant, "M-1")
    text = HEADER + "M-1,R1,OUT-1,2025-03-01T10:00:00Z,A,,1,100000\n"
    report = run(container, merchant, write(tmp_path, text))
    assert report.points == 50
    assert container.ledger.balance(merchant.actor, member.id, "miles").available == 50
    assert available(container, merchant, member.id) == 0
    assert_verified(container)


# ---- program versions as of each receipt's time ----------------------------------------
def test_each_receipt_uses_the_version_in_force_at_its_time(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    publish(container, merchant, doc(5), datetime(2025, 1, 1, tzinfo=UTC))
    publish(container, merchant, doc(10), datetime(2025, 7, 1, tzinfo=UTC))
    publish(container, merchant, doc(1), datetime(2025, 1, 1, tzinfo=UTC), code="promo")
    member = enroll(container, merchant, "M-1")
    text = HEADER + (
        "M-1,SPRING,OUT-1,2025-03-01T10:00:00Z,A,,1,100000\n"
        "M-1,AUTUMN,OUT-1,2025-09-01T10:00:00Z,A,,1,100000\n"
        "M-1,OLD,OUT-1,2024-06-01T10:00:00Z,A,,1,100000\n"  # before any version
    )
    report = run(container, merchant, write(tmp_path, text), program="main")
    assert report.errors == []
    found = receipts_by_number(engine)
    assert programs_of(found["SPRING"].programs) == {"main": 1}
    assert programs_of(found["AUTUMN"].programs) == {"main": 2}
    assert programs_of(found["OLD"].programs) == {}
    assert (
        found["SPRING"].points_earned,
        found["AUTUMN"].points_earned,
        found["OLD"].points_earned,
    ) == (50, 100, 0)
    assert available(container, merchant, member.id) == 150
    txns = sorted(select(engine, tables.ledger_transactions), key=lambda t: t.occurred_at)
    assert [(t.params["program"], t.params["version"]) for t in txns] == [("main", 1), ("main", 2)]
    assert [t.occurred_at for t in txns] == [
        datetime(2025, 3, 1, 10, tzinfo=UTC),
        datetime(2025, 9, 1, 10, tzinfo=UTC),
    ]
    with pytest.raises(NotFound):
        run(container, merchant, write(tmp_path, text), program="nope")
    assert_verified(container)


def test_all_programs_apply_without_program_option(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    publish(container, merchant, doc(5), datetime(2025, 1, 1, tzinfo=UTC))
    publish(container, merchant, doc(1), datetime(2025, 1, 1, tzinfo=UTC), code="promo")
    enroll(container, merchant, "M-1")
    text = HEADER + "M-1,R1,OUT-1,2025-03-01T10:00:00Z,A,,1,100000\n"
    report = run(container, merchant, write(tmp_path, text))
    assert report.points == 60
    assert programs_of(receipts_by_number(engine)["R1"].programs) == {"main": 1, "promo": 1}
    assert count(engine, "ledger_transactions") == 2
    assert_verified(container)


def test_purchase_count_follows_time_not_file_order(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    first = {"id": "first", "when": {"first_purchase": True}, "effects": [{"points_fixed": 100}]}
    publish(container, merchant, doc(1, rules=[first]), datetime(2024, 1, 1, tzinfo=UTC))
    enroll(container, merchant, "M-1")
    text = HEADER + (
        "M-1,LATER,OUT-1,2025-05-01T10:00:00Z,A,,1,1000\n"
        "M-1,EARLIER,OUT-1,2025-04-01T10:00:00Z,A,,1,1000\n"
    )
    run(container, merchant, write(tmp_path, text), batch_size=1)
    found = receipts_by_number(engine)
    assert (found["EARLIER"].points_earned, found["LATER"].points_earned) == (100, 0)
    # Another file: a receipt after those in the database is not a first purchase...
    text = HEADER + "M-1,JUNE,OUT-1,2025-06-01T10:00:00Z,A,,1,1000\n"
    run(container, merchant, write(tmp_path, text, "june.csv"))
    # ...one before all of them was, at its time.
    text = HEADER + "M-1,MARCH,OUT-1,2025-03-01T10:00:00Z,A,,1,1000\n"
    run(container, merchant, write(tmp_path, text, "march.csv"))
    found = receipts_by_number(engine)
    assert (found["JUNE"].points_earned, found["MARCH"].points_earned) == (0, 100)


def test_lots_are_dated_from_the_receipt_and_old_ones_expire(
    container: Container, merchant: Merchant, engine: Engine, clock: FakeClock, tmp_path: Path
) -> None:
    document = doc(10, pending_days=14, expiry={"kind": "rolling", "days": 30})
    publish(container, merchant, document, datetime(2024, 1, 1, tzinfo=UTC))
    member = enroll(container, merchant, "M-1")
    now = clock.now()  # 2026-01-15 09:00 UTC
    recent = now - timedelta(days=5)
    text = HEADER + (
        "M-1,OLD,OUT-1,2025-06-01T10:00:00+03:00,A,,1,10000\n"
        f"M-1,NEW,OUT-1,{recent.isoformat()},A,,1,20000\n"
    )
    report = run(container, merchant, write(tmp_path, text))
    assert report.points == 30
    found = {r.amount: r for r in select(engine, tables.lots)}
    old, new = found[10], found[20]
    assert old.status == "active"  # available long ago, though already past its expiry
    assert old.available_at == datetime(2025, 6, 15, 7, tzinfo=UTC)
    assert old.expires_at == datetime(2025, 7, 1, 21, tzinfo=UTC)  # local midnight, 30 days on
    assert new.status == "pending"
    assert new.available_at == recent + timedelta(days=14)
    assert_verified(container)

    container.jobs.run(tenant_id=merchant.tenant_id)
    balance = container.ledger.balance(merchant.actor, member.id)
    assert balance.available == 0
    assert rows(engine, "SELECT status FROM lots WHERE amount = 10")[0][0] == "expired"
    assert_verified(container)


# ---- members and outlets -----------------------------------------------------------------
UNKNOWN = HEADER + (
    "NEW-1,R1,OUT-9,2025-03-01T10:00:00Z,A,,1,10000\n"
    "NEW-1,R2,OUT-1,2025-03-02T10:00:00Z,A,,1,10000\n"
    "NEW-2,R3,OUT-1,2025-03-02T10:00:00Z,A,,1,10000\n"
)


@pytest.mark.usefixtures("program")
def test_unknown_members_and_outlets_need_create_missing(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path, UNKNOWN)
    report = run(container, merchant, path)
    assert [(e.line, e.field) for e in report.errors] == [
        (2, "outlet"),
        (2, "member_external_id"),
        (3, "member_external_id"),
        (4, "member_external_id"),
    ]
    assert count(engine, "receipts") == 0
    assert count(engine, "members") == 0

    report = run(container, merchant, path, create_missing=True)
    assert report.errors == []
    assert (report.members_created, report.outlets_created, report.imported) == (2, 1, 3)
    new1 = container.members.search(merchant.actor, {"external_id": "NEW-1"}, None, 2)[0]
    assert available(container, merchant, new1.id) == 10
    assert container.tenants is not None
    assert count(engine, "accounts") >= 6
    assert_verified(container)
    again = run(container, merchant, path, create_missing=True)
    assert (again.members_created, again.outlets_created, again.imported) == (0, 0, 0)


@pytest.mark.usefixtures("program")
def test_a_blocked_member_earns_nothing_and_is_an_error(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    blocked = enroll(container, merchant, "B-1")
    container.members.set_blocked(merchant.actor, blocked.id, True, "fraud")
    text = HEADER + "B-1,R1,OUT-1,2025-03-01T10:00:00Z,A,,1,10000\n"
    report = run(container, merchant, write(tmp_path, text))
    assert [(e.line, e.field) for e in report.errors] == [(2, "member_external_id")]
    assert "blocked" in report.errors[0].message


# ---- idempotence and resuming ------------------------------------------------------------
@pytest.mark.usefixtures("program")
def test_importing_twice_changes_nothing(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    enroll(container, merchant, "M-1")
    enroll(container, merchant, "M-2")
    path = write(tmp_path, SIMPLE)
    run(container, merchant, path)
    tables = ("receipts", "receipt_lines", "ledger_transactions", "postings", "lots", "audit_log")
    before = {t: count(engine, t) for t in tables}
    balances = rows(engine, "SELECT id, balance FROM accounts ORDER BY id")
    again = run(container, merchant, path)
    assert (again.imported, again.skipped_existing, again.points) == (0, 3, 0)
    assert {t: count(engine, t) for t in tables} == before
    assert rows(engine, "SELECT id, balance FROM accounts ORDER BY id") == balances


@pytest.mark.usefixtures("program")
def test_a_run_after_a_crash_continues_where_it_stopped(
    container: Container,
    merchant: Merchant,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = enroll(container, merchant, "M-1")
    text = HEADER + "".join(
        f"M-1,R{i},OUT-1,2025-03-{i + 1:02d}T10:00:00Z,A,,1,10000\n" for i in range(5)
    )
    path = write(tmp_path, text)
    real = receipt_import._ReceiptImport.write
    calls = {"n": 0}

    def crash_on_third(self: Any, prepared: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        return real(self, prepared)

    monkeypatch.setattr(receipt_import._ReceiptImport, "write", crash_on_third)
    with pytest.raises(RuntimeError, match="power cut"):
        run(container, merchant, path, batch_size=2)
    assert count(engine, "receipts") == 4  # two batches committed, the third rolled back
    monkeypatch.setattr(receipt_import._ReceiptImport, "write", real)

    report = run(container, merchant, path, batch_size=2)
    assert (report.imported, report.skipped_existing) == (1, 4)
    assert count(engine, "receipts") == 5
    assert available(container, merchant, member.id) == 25
    assert_verified(container)


# ---- bad rows ----------------------------------------------------------------------------
BAD = HEADER + (
    "M-1,R1,OUT-1,2025-03-01T10:00:00Z,A,,1,10000\n"
    "M-1,R2,OUT-1,2025-03-01T10:00:00Z,A,,zero,10000\n"  # line 3: qty
    "M-1,R3,OUT-1,2025-03-01T10:00:00Z,A,,1,12.50\n"  # line 4: amount
    "M-1,R4,OUT-1,yesterday,A,,1,100\n"  # line 5: timestamp
    "M-1,,OUT-1,2025-03-01T10:00:00Z,A,,1,100\n"  # line 6: receipt number
    "M-1,R5,OUT-1,2025-03-01T10:00:00Z,A,,1\n"  # line 7: a field short
    "\n"  # line 8: blank, fine
    "M-1,R6,OUT-1,2025-03-01T10:00:00Z,A,,1,100\n"
    "M-1,R6,OUT-1,2025-03-02T10:00:00Z,B,,1,100\n"  # line 10: another time, same receipt
    "M-1,R7,OUT-1,2099-01-01T10:00:00Z,A,,1,100\n"  # line 11: the future
    "M-1,R8,OUT-1,2025-03-01T10:00:00Z,A,,0.0001,100\n"  # line 12: 4 decimals
    "M-1,R9,OUT-1,2025-03-01T10:00:00Z,A,,1,-5\n"  # line 13: negative amount
)


@pytest.mark.usefixtures("program")
def test_bad_rows_are_reported_with_line_numbers_and_nothing_is_imported(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    enroll(container, merchant, "M-1")
    path = write(tmp_path, BAD)
    report = run(container, merchant, path)
    assert [(e.line, e.field) for e in report.errors] == [
        (3, "qty"),
        (4, "amount"),
        (5, "occurred_at"),
        (6, "receipt_number"),
        (7, "row"),
        (10, "occurred_at"),
        (11, "occurred_at"),
        (12, "qty"),
        (13, "amount"),
    ]
    assert count(engine, "receipts") == 0

    report = run(container, merchant, path, skip_invalid=True)
    assert report.imported == 1  # R1 only; R6 is left out whole
    assert report.skipped_invalid == 7  # R2-R4 and R6-R9; rows without a receipt not counted
    assert set(receipts_by_number(engine)) == {"R1"}
    assert_verified(container)


def test_a_non_admin_may_not_import(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    actor = Actor(tenant_id=merchant.tenant_id, name="till", role=Role.POS)
    with pytest.raises(Forbidden):
        import_receipts(container, actor, write(tmp_path, SIMPLE))


# ---- the command -------------------------------------------------------------------------
def test_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import structlog

    monkeypatch.setenv("KOPILKA_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("KOPILKA_LOG_JSON", "true")
    saved = structlog.get_config()
    runner = CliRunner()

    def kopilka(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    try:
        kopilka("db", "upgrade")
        kopilka("tenant", "create", "Shop")
        program = tmp_path / "program.json"
        program.write_text(json.dumps(BASE))
        kopilka(
            "program",
            "publish",
            "main",
            str(program),
            "--tenant",
            "Shop",
            "--starts-at",
            "2024-01-01T00:00:00+00:00",
        )
        text = (
            "client,number,outlet,occurred_at,sku,qty,amount\n"
            "C-1,1,MSK,2025-03-01T10:00:00+03:00,A,1,10000\n"
            "C-1,2,MSK,2025-03-02T10:00:00+03:00,A,1,bad\n"
        )
        path = write(tmp_path, text)
        args = [
            "import",
            "receipts",
            str(path),
            "--tenant",
            "Shop",
            "--map",
            "client=member_external_id",
            "--map",
            "number=receipt_number",
        ]
        result = kopilka(*args, code=1)
        assert "line 2: member_external_id" in result.stderr
        assert "line 3: amount" in result.stderr
        result = kopilka(*args, "--create-missing", "--skip-invalid", "--batch", "10")
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["imported"] == 1
        assert summary["points"] == 5
        assert summary["members_created"] == 1
        result = kopilka("ledger", "verify")
        assert "ledger verified" in result.stdout
    finally:
        structlog.configure(**saved)
