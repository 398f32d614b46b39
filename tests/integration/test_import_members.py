"""Member import from CSV, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from kopilka.bootstrap import Container
from kopilka.domain.errors import Forbidden
from kopilka.domain.members.card_numbers import CardScheme, make_number
from kopilka.services import imports
from kopilka.services.context import Actor, Role
from kopilka.services.imports import ImportReport, import_members
from kopilka.services.members import MemberView
from kopilka.services.verify import verify_ledger
from kopilka.testing import FakeClock
from tests.conftest import Merchant, make_merchant

VALID = """\
external_id,phone,email,name,birthday,balance,expires_at,attr.city,consent.marketing_sms
C-1,8 916 123-45-67,Anna@Example.com,Анна Иванова,1990-05-17,1500,2026-02-01,Москва,true
C-2,+7 903 111 22 33,,Boris,--07-14,0,,,false
C-3,,carl@example.com,Carl,,250,,Казань,
"""


def write(tmp_path: Path, text: str, name: str = "members.csv", *, bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def members(c: Container, m: Merchant) -> list[MemberView]:
    return c.members.search(m.actor, {}, None, 1000)


def by_external_id(c: Container, m: Merchant, external_id: str) -> MemberView:
    [member] = c.members.search(m.actor, {"external_id": external_id}, None, 2)
    return member


def available(c: Container, m: Merchant, member: MemberView) -> int:
    return c.ledger.balance(m.actor, member.id).available


def count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def errors_of(report: ImportReport) -> list[tuple[int, str]]:
    return [(e.line, e.field) for e in report.errors]


# ---- a clean file ----------------------------------------------------------------------
def test_valid_file_imports_members_with_opening_balances(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    report = import_members(container, merchant.actor, write(tmp_path, VALID))

    assert report.errors == []
    assert (report.rows, report.imported, report.points, report.skipped) == (3, 3, 1750, 0)
    assert len(members(container, merchant)) == 3

    anna = by_external_id(container, merchant, "C-1")
    assert anna.phone == "+79161234567"
    assert anna.email == "anna@example.com"
    assert anna.name == "Анна Иванова"
    assert anna.birthday == "1990-05-17"
    assert anna.attributes == {"city": "Москва"}
    assert anna.consents["marketing_sms"]["granted"] is True
    assert [c.kind for c in anna.cards] == ["virtual"]
    assert available(container, merchant, anna) == 1500

    boris = by_external_id(container, merchant, "C-2")
    assert boris.phone == "+79031112233"
    assert boris.consents["marketing_sms"]["granted"] is False
    assert available(container, merchant, boris) == 0
    assert container.ledger.history(merchant.actor, boris.id, None, 10) == []

    carl = by_external_id(container, merchant, "C-3")
    assert carl.phone is None
    assert available(container, merchant, carl) == 250

    [txn] = container.ledger.history(merchant.actor, anna.id, None, 10)
    assert txn.kind == "opening_balance"
    assert txn.amount == 1500
    assert txn.source_type == "import"
    assert txn.source_id == "C-1"
    assert (
        txn.description["en"]
        == "Opening balance of 1,500 points carried over, expire on 2026-02-01"
    )
    assert sorted(p.account_kind for p in txn.postings) == ["issued", "wallet"]
    assert verify_ledger(container.uow_factory).ok


def test_expires_at_date_is_the_last_usable_day_in_the_tenant_zone(
    container: Container, merchant: Merchant, clock: FakeClock, tmp_path: Path
) -> None:
    import_members(container, merchant.actor, write(tmp_path, VALID))
    anna = by_external_id(container, merchant, "C-1")
    balance = container.ledger.balance(merchant.actor, anna.id)
    # Usable through 1 February (Moscow); gone from 2 February 00:00 Moscow time.
    assert [(e.on, e.amount) for e in balance.expiring_soon] == [(date(2026, 2, 1), 1500)]

    clock.set(datetime(2026, 2, 1, 20, 59, tzinfo=UTC))  # 23:59 in Moscow
    assert available(container, merchant, anna) == 1500
    clock.set(datetime(2026, 2, 1, 21, 0, tzinfo=UTC))  # midnight in Moscow
    assert available(container, merchant, anna) == 0
    assert container.jobs.run().transactions == 1
    assert verify_ledger(container.uow_factory).ok


def test_opening_balance_is_spendable_at_once_despite_pending_days(
    container: Container, tmp_path: Path
) -> None:
    m = make_merchant(
        container, "Slow Bakery", pending_days=14, expiry_policy={"kind": "rolling", "days": 365}
    )
    path = write(tmp_path, "phone;balance\n+79161234567;700\n")
    assert import_members(container, m.actor, path).imported == 1
    [member] = members(container, m)
    balance = container.ledger.balance(m.actor, member.id)
    assert (balance.available, balance.pending) == (700, 0)
    [txn] = container.ledger.history(m.actor, member.id, None, 10)
    # No expires_at column: the tenant's policy applies from the import.
    assert "expire on 2027-01-15" in txn.description["en"]  # the last usable day


def test_pre_printed_cards_are_bound(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    first = make_number(CardScheme.EAN13, "2", 7000)
    batch = container.members.register_batch(merchant.actor, "Printed", first_number=first, count=3)
    numbers = [make_number(CardScheme.EAN13, "2", 7000 + i) for i in range(3)]
    container.members.enroll(merchant.actor, {"phone": "+79990000000"}, card_number=numbers[2])
    unregistered = make_number(CardScheme.EAN13, "2", 9999)
    bad_check_digit = numbers[1][:-1] + str((int(numbers[1][-1]) + 1) % 10)
    path = write(
        tmp_path,
        (
            "external_id,card,balance\n"
            f"P-1,{numbers[0]},100\n"
            f"P-2,{numbers[1]},\n"
            f"P-3,{numbers[2]},\n"
            f"P-4,{unregistered},\n"
            f"P-5,{bad_check_digit},\n"
            f"P-6,{numbers[0]},\n"
        ),
    )
    report = import_members(container, merchant.actor, path)
    assert report.imported == 0
    assert errors_of(report) == [(4, "card"), (5, "card"), (6, "card"), (7, "card")]
    assert "already bound" in report.errors[0].message
    assert "not registered" in report.errors[1].message
    assert "check digit" in report.errors[2].message
    assert "line 2" in report.errors[3].message

    report = import_members(container, merchant.actor, path, skip_invalid=True)
    assert (report.imported, report.points) == (2, 100)
    p1 = by_external_id(container, merchant, "P-1")
    assert [(c.number, c.kind, c.status) for c in p1.cards] == [(numbers[0], "physical", "active")]
    assert batch.count == 3
    assert verify_ledger(container.uow_factory).ok


# ---- files with errors -----------------------------------------------------------------
BROKEN = """\
external_id,phone,email,name,birthday,balance,consent.program_rules
E-1,+79161234567,a@example.com,Good One,1990-01-01,100,true
E-2,12345,b@example.com,Bad Phone,,100,
E-3,+79031112233,not-an-email,Bad Email,,100,
E-4,+79161234567,d@example.com,Same Phone,,100,
E-5,+79035556677,e@example.com,Bad Balance,,-5,
E-6,+79035556678,f@example.com,Fractional,,12.5,
E-7,+79035556679,g@example.com,Bad Birthday,1990-13-01,,
E-8,+79035556680,h@example.com,Future Birthday,2030-01-01,,
E-9,+79035556681,i@example.com,Bad Consent,,,maybe
E-1,+79035556682,j@example.com,Same External Id,,,
E-11,+79035556683,taken@example.com,Existing Email,,,
,,,No Identity,,50,
E-13,+79035556684,m@example.com,Short Row,
E-14,+79035556685,n@example.com,Good Two,--02-29,40,false
"""


def test_errors_import_nothing_and_name_each_line(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    container.members.enroll(merchant.actor, {"email": "taken@example.com"})
    before = count(engine, "ledger_transactions")

    report = import_members(container, merchant.actor, write(tmp_path, BROKEN))

    assert errors_of(report) == [
        (3, "phone"),
        (4, "email"),
        (5, "phone"),
        (6, "balance"),
        (7, "balance"),
        (8, "birthday"),
        (9, "birthday"),
        (10, "consent.program_rules"),
        (11, "external_id"),
        (12, "email"),
        (13, "row"),
        (14, "row"),
    ]
    assert "line 2" in report.errors[2].message
    assert "line 2" in report.errors[8].message
    assert (report.imported, report.points, report.rows, report.invalid_rows) == (0, 0, 14, 12)
    assert not report.aborted
    assert len(members(container, merchant)) == 1
    assert count(engine, "ledger_transactions") == before


def test_skip_invalid_imports_the_good_rows(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    container.members.enroll(merchant.actor, {"email": "taken@example.com"})
    report = import_members(container, merchant.actor, write(tmp_path, BROKEN), skip_invalid=True)

    assert len(report.errors) == 12
    assert (report.imported, report.points, report.skipped) == (2, 140, 0)
    assert {m.external_id for m in members(container, merchant)} == {None, "E-1", "E-14"}
    assert by_external_id(container, merchant, "E-1").consents["program_rules"]["granted"]
    assert available(container, merchant, by_external_id(container, merchant, "E-14")) == 40
    assert verify_ledger(container.uow_factory).ok


def test_an_existing_phone_under_another_external_id_is_an_error(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    container.members.enroll(merchant.actor, {"phone": "+79161234567", "external_id": "OLD"})
    path = write(tmp_path, "external_id,phone\nNEW,89161234567\n")
    report = import_members(container, merchant.actor, path)
    assert errors_of(report) == [(2, "phone")]
    assert "Another member" in report.errors[0].message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("external_id,phone,colour,attr.city,consent.telepathy\nX,,red,,\n", "'colour'"),
        ("phone,Phone\n+79161234567,+79161234567\n", "twice"),
        ("name,balance\nAnna,10\n", "external_id, phone or email"),
        ("", "name the columns"),
    ],
)
def test_header_problems_are_one_error_on_line_1(
    container: Container, merchant: Merchant, tmp_path: Path, text: str, problem: str
) -> None:
    report = import_members(container, merchant.actor, write(tmp_path, text), skip_invalid=True)
    [error] = report.errors
    assert (error.line, error.field) == (1, "header")
    assert problem in error.message
    assert report.aborted
    assert (report.imported, report.rows) == (0, 0)
    assert members(container, merchant) == []


def test_unknown_columns_are_all_named(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    path = write(tmp_path, "external_id,colour,consent.telepathy,attr.City\nX,red,true,Omsk\n")
    [error] = import_members(container, merchant.actor, path).errors
    assert "'colour'" in error.message
    assert "'consent.telepathy'" in error.message
    assert "City" not in error.message.split(". Known")[0]


def test_a_file_that_is_not_utf8_is_refused(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    path = tmp_path / "cp1251.csv"
    path.write_bytes("phone,name\n+79161234567,Анна\n".encode("cp1251"))
    report = import_members(container, merchant.actor, path, skip_invalid=True)
    assert errors_of(report) == [(2, "file")]
    assert report.aborted
    assert members(container, merchant) == []


def test_only_an_admin_may_import(container: Container, merchant: Merchant, tmp_path: Path) -> None:
    pos = Actor(tenant_id=merchant.tenant_id, name="till", role=Role.POS)
    with pytest.raises(Forbidden):
        import_members(container, pos, write(tmp_path, VALID))


def test_expires_at_must_be_a_future_date(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        (
            "external_id,balance,expires_at\n"
            "A,10,2026-01-14\n"  # yesterday: already expired
            "B,10,15.01.2027\n"
            "C,10,2027-01-15T10:00:00\n"
            "D,10,2027-01-15T10:00:00+03:00\n"
            "E,0,not a date\n"  # no balance: the date does not matter
        ),
    )
    report = import_members(container, merchant.actor, path, skip_invalid=True)
    assert errors_of(report) == [(2, "expires_at"), (3, "expires_at"), (4, "expires_at")]
    assert report.imported == 2
    [txn] = container.ledger.history(
        merchant.actor, by_external_id(container, merchant, "D").id, None, 5
    )
    assert txn.description["en"].endswith("expire on 2027-01-15")


# ---- re-import -------------------------------------------------------------------------
def test_reimport_changes_nothing(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path, VALID + "C-4,+79035550000,,Dora,,10,,,\n")
    phone_only = write(tmp_path, "phone,balance\n+79260001122,300\n", "phones.csv")
    first = import_members(container, merchant.actor, path)
    import_members(container, merchant.actor, phone_only)
    tables = ("members", "cards", "ledger_transactions", "postings", "lots", "audit_log")
    before = {t: count(engine, t) for t in tables}
    balances = {m.id: available(container, merchant, m) for m in members(container, merchant)}

    again = import_members(container, merchant.actor, path)
    again_phones = import_members(container, merchant.actor, phone_only)

    assert (first.imported, first.points) == (4, 1760)
    assert (again.imported, again.points, again.skipped, again.errors) == (0, 0, 4, [])
    assert (again_phones.imported, again_phones.skipped) == (0, 1)
    assert {t: count(engine, t) for t in tables} == before
    assert {
        m.id: available(container, merchant, m) for m in members(container, merchant)
    } == balances
    assert verify_ledger(container.uow_factory).ok


def test_reimport_after_fixing_a_file_adds_only_the_new_rows(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    bad = write(tmp_path, "external_id,phone,balance\nA,+79161234567,10\nB,123,20\n")
    assert import_members(container, merchant.actor, bad, skip_invalid=True).imported == 1
    fixed = write(tmp_path, "external_id,phone,balance\nA,+79161234567,10\nB,+79031234567,20\n")
    report = import_members(container, merchant.actor, fixed)
    assert (report.imported, report.points, report.skipped) == (1, 20, 1)
    assert available(container, merchant, by_external_id(container, merchant, "A")) == 10


def test_a_member_created_after_the_check_is_skipped(
    container: Container, merchant: Merchant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same file imported twice at once: the loser skips rows the winner loaded."""
    real_check = imports._check_against_database

    def racing_check(*args: Any) -> Any:
        todo = real_check(*args)
        container.members.enroll(merchant.actor, {"external_id": "C-1"})
        container.members.enroll(merchant.actor, {"email": "carl@example.com"})
        return todo

    monkeypatch.setattr(imports, "_check_against_database", racing_check)
    report = import_members(container, merchant.actor, write(tmp_path, VALID))
    assert (report.imported, report.points, report.skipped) == (1, 0, 1)
    assert errors_of(report) == [(4, "email")]
    assert available(container, merchant, by_external_id(container, merchant, "C-1")) == 0
    assert verify_ledger(container.uow_factory).ok


# ---- formats ---------------------------------------------------------------------------
def test_birthday_29_february_without_a_year(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    path = write(tmp_path, "phone,birthday\n+79161234567,--02-29\n+79031112233,2001-02-29\n")
    report = import_members(container, merchant.actor, path, skip_invalid=True)
    assert errors_of(report) == [(3, "birthday")]
    [member] = members(container, merchant)
    assert member.birthday == "--02-29"


def test_semicolon_csv_with_bom_crlf_and_quotes(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    text = (
        "Phone;Name;Balance;Attr.Note;consent.PERSONAL_DATA\r\n"
        '+79161234567;"Иванова; Анна";1200;"line one\r\nline two";Да\r\n'
        "\r\n"
        "+79031112233;Борис;0;;нет\r\n"
        "+79035556677;Вера;x;;\r\n"
    )
    report = import_members(
        container, merchant.actor, write(tmp_path, text, bom=True), skip_invalid=True
    )
    # The quoted line break makes the second record span lines 2-3; a blank line follows.
    assert errors_of(report) == [(6, "balance")]
    assert (report.rows, report.imported, report.points) == (3, 2, 1200)
    [anna] = container.members.search(merchant.actor, {"phone": "+79161234567"}, None, 2)
    assert anna.name == "Иванова; Анна"
    assert anna.attributes == {"Note": "line one\r\nline two"}
    assert anna.consents["personal_data"]["granted"] is True
    assert available(container, merchant, anna) == 1200


def test_rows_with_the_wrong_number_of_fields(
    container: Container, merchant: Merchant, tmp_path: Path
) -> None:
    path = write(tmp_path, "phone,name\n+79161234567,Anna,extra\n+79031112233\n")
    report = import_members(container, merchant.actor, path)
    assert errors_of(report) == [(2, "row"), (3, "row")]
    assert "3 fields where the header has 2" in report.errors[0].message


def test_large_files_load_in_batches(
    container: Container, merchant: Merchant, engine: Engine, tmp_path: Path
) -> None:
    lines = ["external_id,balance"] + [f"X-{i},{i}" for i in range(1, 13)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    report = import_members(container, merchant.actor, path, batch_size=5)
    assert (report.imported, report.points) == (12, sum(range(1, 13)))
    with engine.connect() as conn:
        batches = conn.execute(
            sa.text("SELECT COUNT(*) FROM audit_log WHERE action = 'member.import'")
        ).scalar_one()
    assert batches == 3
    assert verify_ledger(container.uow_factory).ok


def test_other_tenants_members_do_not_clash(
    container: Container, merchant: Merchant, other_merchant: Merchant, tmp_path: Path
) -> None:
    path = write(tmp_path, VALID)
    assert import_members(container, other_merchant.actor, path).imported == 3
    report = import_members(container, merchant.actor, path)
    assert (report.imported, report.skipped) == (3, 0)
