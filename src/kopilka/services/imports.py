"""Bulk member import from CSV: every row is checked first, then rows load in batches.

The file is UTF-8 (a byte-order mark is fine), comma-, semicolon- or tab-separated (the
header line decides), with a header naming the columns:

``phone``, ``email``, ``name``, ``birthday`` (``YYYY-MM-DD`` or ``--MM-DD``), ``external_id``,
``card`` (a registered, unbound pre-printed card to bind; without it a virtual card is
issued), ``balance`` (opening balance in points, a whole number >= 0), ``expires_at`` (when the
opening balance expires: an ISO date, the last day the points can be used, in the tenant's
time zone, or an ISO date-time with an offset; blank means the tenant's expiry policy), any
``attr.<name>`` (a string attribute) and any ``consent.<kind>`` (true/false, yes/no, 1/0).

A re-import is harmless: a row whose member already exists (found by ``external_id``, else
``phone``, else ``email``) is skipped, and its balance is not credited again.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kopilka.bootstrap import Container
from kopilka.domain.errors import ErrorCollector, Forbidden, KopilkaError
from kopilka.domain.ledger.model import TxnKind
from kopilka.domain.ledger.plan import LedgerPlan
from kopilka.domain.members.card_numbers import is_valid_number
from kopilka.ids import new_id
from kopilka.services.context import Actor, Role, Tenant, load_tenant
from kopilka.services.ledger import CREDIT_SOURCE, MAX_POINTS
from kopilka.services.ledger_book import MemberBook
from kopilka.services.members import CONSENT_KINDS, normalize_profile
from kopilka.services.ports import UnitOfWork

BATCH_SIZE = 500  # rows per database transaction
LOOKUP_CHUNK = 500  # values per IN (...) query when looking for existing members
PROFILE_COLUMNS = ("phone", "email", "name", "birthday", "external_id")
FIXED_COLUMNS = (*PROFILE_COLUMNS, "card", "balance", "expires_at")
IDENTITY_FIELDS = ("external_id", "phone", "email")  # in order of preference
ATTR_PREFIX = "attr."
CONSENT_PREFIX = "consent."
MAX_ATTRIBUTES = 100
MAX_LENGTH = {"name": 200, "external_id": 128, "attribute": 64}
SOURCE_TYPE = "import"
_TRUE = frozenset({"true", "yes", "y", "1", "да"})
_FALSE = frozenset({"false", "no", "n", "0", "нет"})
_WHOLE_NUMBER = re.compile(r"^\d+$")


@dataclass(frozen=True)
class RowError:
    """One problem on one line of the file (the header is line 1)."""

    line: int
    field: str
    message: str


@dataclass
class ImportReport:
    rows: int = 0  # data rows read (blank lines not counted)
    imported: int = 0  # members created
    points: int = 0  # opening balance points credited
    skipped: int = 0  # rows whose member already exists (a re-import)
    errors: list[RowError] = field(default_factory=list)
    # The file as a whole was unusable (not UTF-8, bad header, broken CSV): nothing was
    # imported, even with skip_invalid.
    aborted: bool = False

    @property
    def invalid_rows(self) -> int:
        """Lines with at least one error."""
        return len({e.line for e in self.errors if e.line > 1})


@dataclass
class _Row:
    """A parsed data row; ``keys`` holds its normalised unique values."""

    line: int
    profile: dict[str, Any]
    keys: dict[str, str]
    card: str | None
    balance: int
    expires_at: datetime | None
    ok: bool = True

    @property
    def identity(self) -> tuple[str, str] | None:
        for name in IDENTITY_FIELDS:
            if name in self.keys:
                return name, self.keys[name]
        return None


def import_members(
    container: Container,
    actor: Actor,
    path: Path,
    *,
    skip_invalid: bool = False,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import members (and opening balances) from the CSV file at ``path``.

    Every row is validated before anything is written. With errors and without
    ``skip_invalid`` nothing is imported; otherwise the valid rows load in batches of
    ``batch_size``, one database transaction per batch.
    """
    if actor.role is not Role.ADMIN:
        raise Forbidden("Only an admin may import members.", code="admin_only")
    report = ImportReport()
    text = _read_text(path, report)
    if text is None:
        return report
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
    columns = _read_header(reader, report)
    if columns is None:
        report.aborted = True
        return report

    with container.uow_factory(write=False) as uow:
        tenant = load_tenant(uow, actor.tenant_id)
        now = container.clock.now()
        rows = _parse_rows(reader, columns, tenant, now, report)
        if report.aborted:
            return report
        _check_duplicates_in_file(rows, report)
        todo = _check_against_database(uow, tenant, rows, report)
    report.errors.sort(key=lambda e: e.line)
    if report.errors and not skip_invalid:
        return report

    run_id = new_id()
    for start in range(0, len(todo), batch_size):
        _load_batch(container, actor, todo[start : start + batch_size], path.name, run_id, report)
    report.errors.sort(key=lambda e: e.line)
    return report


# ---- reading the file ------------------------------------------------------------------
def _read_text(path: Path, report: ImportReport) -> str | None:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        report.errors.append(
            RowError(
                line, "file", "The file is not UTF-8 text; save it as CSV UTF-8 and try again."
            )
        )
        report.aborted = True
        return None


def _sniff_delimiter(text: str) -> str:
    """The header line's most frequent separator among comma, semicolon and tab."""
    header = text.split("\n", 1)[0]
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _read_header(reader: Any, report: ImportReport) -> list[str] | None:
    """Column names, normalised; ``None`` after one header error listing every problem."""
    try:
        header = next(reader, None)
    except csv.Error as exc:
        report.errors.append(RowError(1, "header", f"Cannot read the header: {exc}."))
        return None
    if not header or not any(cell.strip() for cell in header):
        report.errors.append(
            RowError(
                1, "header", "The first line must name the columns, e.g. phone,email,name,balance."
            )
        )
        return None
    problems: list[str] = []
    columns: list[str] = []
    attributes = 0
    for cell in header:
        name = _column_name(cell)
        if name in columns:
            problems.append(f"column {name!r} appears twice")
        elif name.startswith(ATTR_PREFIX):
            attr = name[len(ATTR_PREFIX) :]
            attributes += 1
            if not attr or len(attr) > MAX_LENGTH["attribute"]:
                problems.append(
                    f"attribute column {cell.strip()!r} needs a name of 1 to "
                    f"{MAX_LENGTH['attribute']} characters"
                )
        elif name.startswith(CONSENT_PREFIX):
            if name[len(CONSENT_PREFIX) :] not in CONSENT_KINDS:
                problems.append(
                    f"unknown consent column {cell.strip()!r} (consents: "
                    + ", ".join(CONSENT_KINDS)
                    + ")"
                )
        elif name not in FIXED_COLUMNS:
            problems.append(f"unknown column {cell.strip()!r}")
        columns.append(name)
    if attributes > MAX_ATTRIBUTES:
        problems.append(f"at most {MAX_ATTRIBUTES} attribute columns")
    if not set(IDENTITY_FIELDS) & set(columns):
        problems.append("a column external_id, phone or email is needed to tell members apart")
    if problems:
        known = ", ".join(FIXED_COLUMNS) + f", {ATTR_PREFIX}<name>, {CONSENT_PREFIX}<kind>"
        report.errors.append(
            RowError(1, "header", "; ".join(problems) + f". Known columns: {known}.")
        )
        return None
    return columns


def _column_name(cell: str) -> str:
    """Fixed names and prefixes are case-insensitive; attribute names keep their case."""
    name = cell.strip()
    lowered = name.lower()
    if lowered.startswith(ATTR_PREFIX):
        return ATTR_PREFIX + name[len(ATTR_PREFIX) :].strip()
    return lowered


# ---- checking rows ---------------------------------------------------------------------
def _parse_rows(
    reader: Any, columns: list[str], tenant: Tenant, now: datetime, report: ImportReport
) -> list[_Row]:
    rows: list[_Row] = []
    last_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.errors.append(RowError(last_line + 1, "file", f"Broken CSV: {exc}."))
            report.aborted = True
            break
        line, last_line = last_line + 1, reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines are allowed
        report.rows += 1
        if len(cells) != len(columns):
            report.errors.append(
                RowError(
                    line,
                    "row",
                    f"{len(cells)} fields where the header "
                    f"has {len(columns)}; check quoting and separators.",
                )
            )
            continue
        rows.append(_parse_row(dict(zip(columns, cells, strict=True)), line, tenant, now, report))
    return rows


def _parse_row(
    cells: dict[str, str], line: int, tenant: Tenant, now: datetime, report: ImportReport
) -> _Row:
    found: list[RowError] = []
    values = {name: value.strip() for name, value in cells.items()}
    profile: dict[str, Any] = {name: values[name] for name in PROFILE_COLUMNS if values.get(name)}
    for name in ("name", "external_id"):
        if len(profile.get(name, "")) > MAX_LENGTH[name]:
            found.append(RowError(line, name, f"At most {MAX_LENGTH[name]} characters."))
    attributes = {
        name[len(ATTR_PREFIX) :]: value
        for name, value in values.items()
        if name.startswith(ATTR_PREFIX) and value
    }
    if attributes:
        profile["attributes"] = attributes
    consents: dict[str, bool] = {}
    for name, value in values.items():
        if name.startswith(CONSENT_PREFIX) and value:
            flag = value.lower()
            if flag in _TRUE or flag in _FALSE:
                consents[name[len(CONSENT_PREFIX) :]] = flag in _TRUE
            else:
                found.append(RowError(line, name, f"{value!r} is not true or false."))
    if consents:
        profile["consents"] = consents

    collector = ErrorCollector()
    normalized = normalize_profile(tenant, profile, now, collector)
    for error in collector.errors:
        found.append(RowError(line, _column_of(error.path), error.message))
    keys = {name: normalized[name] for name in IDENTITY_FIELDS if normalized.get(name)}
    if not keys and not any(e.field in IDENTITY_FIELDS for e in found):
        found.append(
            RowError(
                line,
                "row",
                "Give an external_id, phone or email: without one "
                "a re-import could not recognise the member.",
            )
        )

    card = values.get("card") or None
    if card is not None and not is_valid_number(tenant.card_scheme, card):
        found.append(RowError(line, "card", f"{card!r}: wrong card number or check digit."))
    balance = _parse_balance(values.get("balance", ""), line, found)
    expires_at = None
    if values.get("expires_at") and balance:
        expires_at = _parse_expiry(values["expires_at"], tenant, now, line, found)
    report.errors.extend(found)
    return _Row(
        line=line,
        profile=profile,
        keys=keys,
        card=card,
        balance=balance,
        expires_at=expires_at,
        ok=not found,
    )


def _column_of(path: tuple[str | int, ...]) -> str:
    if path and path[0] == "consents" and len(path) > 1:
        return f"{CONSENT_PREFIX}{path[1]}"
    if path and path[0] == "attributes":
        return "attributes"
    return str(path[0]) if path else "row"


def _parse_balance(text: str, line: int, found: list[RowError]) -> int:
    if not text:
        return 0
    if not _WHOLE_NUMBER.match(text):
        found.append(
            RowError(
                line,
                "balance",
                f"{text!r} is not a whole number of points (0 or more, digits only).",
            )
        )
        return 0
    points = int(text)
    if points > MAX_POINTS:
        found.append(RowError(line, "balance", f"At most {MAX_POINTS} points."))
        return 0
    return points


def _parse_expiry(
    text: str, tenant: Tenant, now: datetime, line: int, found: list[RowError]
) -> datetime | None:
    """A date is the last day the points can be used (they expire when the next day starts
    in the tenant's zone); a date-time is the exact first invalid instant and needs an offset."""
    moment: datetime
    try:
        if ":" not in text:
            day = date.fromisoformat(text)
            moment = datetime.combine(
                day + timedelta(days=1), time.min, tzinfo=ZoneInfo(tenant.timezone)
            )
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        found.append(
            RowError(
                line, "expires_at", f"{text!r}: use YYYY-MM-DD, or a date-time with an offset."
            )
        )
        return None
    if moment.tzinfo is None:
        found.append(
            RowError(
                line, "expires_at", f"{text!r}: give the offset, e.g. 2027-01-01T00:00:00+03:00."
            )
        )
        return None
    moment = moment.astimezone(UTC)
    if moment <= now:
        found.append(
            RowError(
                line,
                "expires_at",
                f"{text!r} is already past: the opening balance would expire at once.",
            )
        )
        return None
    return moment


def _check_duplicates_in_file(rows: list[_Row], report: ImportReport) -> None:
    """A later row repeating an earlier row's phone, e-mail, external id or card is an error."""
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        pairs = list(row.keys.items()) + ([("card", row.card)] if row.card else [])
        for name, value in pairs:
            first = seen.setdefault((name, value), row.line)
            if first != row.line:
                report.errors.append(RowError(row.line, name, f"Same {name} as line {first}."))
                row.ok = False


def _check_against_database(
    uow: UnitOfWork, tenant: Tenant, rows: list[_Row], report: ImportReport
) -> list[_Row]:
    """Skip rows whose member exists; flag clashes with other members and unusable cards.
    Returns the rows to import."""
    candidates = [row for row in rows if row.ok]
    existing: dict[tuple[str, str], uuid.UUID] = {}
    for name in IDENTITY_FIELDS:
        values = sorted({row.keys[name] for row in candidates if name in row.keys})
        for i in range(0, len(values), LOOKUP_CHUNK):
            for member in uow.directory.members_by(tenant.id, name, values[i : i + LOOKUP_CHUNK]):
                existing[(name, member[name])] = member["id"]
    todo: list[_Row] = []
    for row in candidates:
        identity = row.identity
        if identity is not None and identity in existing:
            report.skipped += 1
            continue
        found = [
            RowError(row.line, name, f"Another member already has this {name}.")
            for name, value in row.keys.items()
            if (name, value) in existing
        ]
        if row.card is not None:
            card = uow.directory.card_by_number(tenant.id, row.card)
            if card is None:
                found.append(
                    RowError(
                        row.line,
                        "card",
                        f"Card {row.card} is not registered; register its batch first.",
                    )
                )
            elif card["member_id"] is not None or card["status"] != "unbound":
                found.append(RowError(row.line, "card", f"Card {row.card} is already bound."))
        if found:
            report.errors.extend(found)
            row.ok = False
        else:
            todo.append(row)
    return todo


# ---- loading ---------------------------------------------------------------------------
def _load_batch(
    container: Container,
    actor: Actor,
    rows: list[_Row],
    file_name: str,
    run_id: uuid.UUID,
    report: ImportReport,
) -> None:
    """Enrol a batch and credit its opening balances in one transaction."""
    imported = points = skipped = 0
    errors: list[RowError] = []
    with container.uow_factory(write=True) as uow:
        tenant = load_tenant(uow, actor.tenant_id)
        now = container.clock.now()
        plan = LedgerPlan()
        for row in rows:
            try:
                member_id = container.members.enroll_in(
                    uow,
                    tenant,
                    actor,
                    row.profile,
                    now,
                    card_number=row.card,
                    issue_virtual_card=row.card is None,
                )
            except KopilkaError as exc:
                # Changed since the check (e.g. the same file imported at the same time).
                if _exists(uow, tenant, row):
                    skipped += 1
                else:
                    where = str(exc.errors[0].path[0]) if exc.errors else "row"
                    errors.append(RowError(row.line, where, exc.detail))
                continue
            if row.balance:
                book = MemberBook(uow, tenant, member_id, actor, now, load_lots=False, plan=plan)
                txn = book.new_txn(
                    TxnKind.OPENING_BALANCE,
                    row.balance,
                    source_type=SOURCE_TYPE,
                    source_id=row.profile.get("external_id"),
                    params={"file": file_name[:100], "line": row.line},
                )
                book.credit(
                    txn,
                    row.balance,
                    CREDIT_SOURCE[TxnKind.OPENING_BALANCE],
                    available_at=now,
                    expires_at=row.expires_at,
                )
            imported += 1
            points += row.balance
        uow.ledger.apply(tenant.id, plan, now)
        uow.directory.audit(
            tenant.id,
            actor.name,
            "member.import",
            "import",
            run_id,
            {
                "file": file_name[:100],
                "first_line": rows[0].line,
                "last_line": rows[-1].line,
                "imported": imported,
                "points": points,
            },
            now,
        )
        uow.commit()
    report.imported += imported
    report.points += points
    report.skipped += skipped
    report.errors.extend(errors)


def _exists(uow: UnitOfWork, tenant: Tenant, row: _Row) -> bool:
    identity = row.identity
    return identity is not None and uow.directory.member_by(tenant.id, *identity) is not None
