"""Historical receipts from CSV or Parquet: ``kopilka import receipts``.

One row per receipt line; rows with the same outlet and receipt number form one receipt.
Fields (source columns are renamed to them with ``--map column=field``):

``member_external_id`` (empty: an anonymous receipt), ``receipt_number``, ``outlet`` (its
code), ``occurred_at`` (ISO 8601; without an offset it is read in the tenant's time zone),
``sku``, ``category`` (optional), ``qty`` and ``amount`` (the line amount in minor units;
the unit price is amount / qty).

Each receipt is evaluated by the program versions in force at its own time (optionally one
program only), with the member's purchase count as it was then (earlier receipts in the
database and in the file), and earns points; it never redeems. Its lots become available and
expire relative to the receipt's time, so points of old receipts may already be expired:
``kopilka jobs run`` then expires them.

The file is read twice. The first pass checks every row and learns the receipts; with any
bad row nothing is imported unless ``skip_invalid`` (then receipts with a bad row are left
out whole). The second pass streams the receipts into the database in batches, one database
transaction per batch, written with COPY on PostgreSQL. Receipts already in the database
(same outlet and number) are skipped, so a second run changes nothing and a run after a
crash continues where the last committed batch stopped.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from kopilka.adapters.db.ledger_store import member_owner
from kopilka.adapters.db.tables import (
    accounts,
    ledger_transactions,
    lot_movements,
    lots,
    members,
    postings,
    receipt_lines,
    receipts,
)
from kopilka.bootstrap import Container
from kopilka.domain.errors import Forbidden, KopilkaError, NotFound, ValidationFailed
from kopilka.domain.ledger.expiry import expires_at as policy_expiry
from kopilka.domain.ledger.model import MEMBER_ACCOUNT_KINDS, AccountKind, TxnKind
from kopilka.domain.ledger.plan import LedgerPlan
from kopilka.domain.rules.conditions import category_path
from kopilka.domain.rules.document import CompiledProgram
from kopilka.domain.rules.engine import evaluate
from kopilka.domain.rules.facts import Context, Line
from kopilka.ids import new_id
from kopilka.services.context import Actor, Role, Tenant, load_tenant
from kopilka.services.ledger_book import MemberBook
from kopilka.services.ports import UnitOfWork
from kopilka.services.purchases import MAX_LINES, MAX_QTY, Evaluated, _member_facts, _response

FIELDS = (
    "member_external_id",
    "receipt_number",
    "outlet",
    "occurred_at",
    "sku",
    "category",
    "qty",
    "amount",
)
REQUIRED = ("receipt_number", "outlet", "occurred_at", "sku", "qty", "amount")
M_MEMBER, M_NUMBER, M_OUTLET, M_AT, M_SKU, M_CATEGORY, M_QTY, M_AMOUNT = range(len(FIELDS))
TEXT_FIELDS = frozenset({M_MEMBER, M_NUMBER, M_OUTLET, M_SKU, M_CATEGORY})
_MISSING: Any = object()
DEFAULT_BATCH = 2000
MAX_BATCH = 50_000
MAX_AMOUNT = 10**15  # minor units on one line; anything larger is a broken export
MAX_LENGTH = {
    "receipt_number": 64,
    "outlet": 64,
    "sku": 64,
    "category": 300,
    "member_external_id": 128,
}
FUTURE_SLACK = timedelta(minutes=5)
LOOKUP_CHUNK = 1000
MEMBER_CHUNK = 5000  # members created per transaction
PARQUET_BATCH = 65_536
PROGRESS_EVERY = 20_000  # rows between progress updates
KEEP_LINES = 2_000_000  # lines kept in memory between the passes (~130 MB); more: read twice
PARQUET_MAGIC = b"PAR1"
SOURCE_TYPE = "receipt"
IMPORT_LOCK = "receipt-import:{tenant}"


# ---- the report ------------------------------------------------------------------------
@dataclass(frozen=True)
class RowError:
    """One problem on one line (CSV: the header is line 1) or row (Parquet: from 1)."""

    line: int
    field: str
    message: str


@dataclass
class ReceiptImportReport:
    format: str = "csv"
    rows: int = 0  # data rows read
    receipts: int = 0  # distinct receipts in the file
    imported: int = 0  # receipts written now
    lines: int = 0  # receipt lines written now
    points: int = 0  # points credited now
    skipped_existing: int = 0  # receipts already in the database (an earlier run)
    skipped_invalid: int = 0  # receipts left out for a bad row (with skip_invalid)
    members_created: int = 0
    outlets_created: int = 0
    batches: int = 0
    seconds: float = 0.0
    errors: list[RowError] = field(default_factory=list)
    # The file as a whole was unusable (unreadable, missing columns): nothing was imported.
    aborted: bool = False

    @property
    def unit(self) -> str:
        """How error positions read: "line" in a CSV file, "row" in a Parquet file."""
        return "row" if self.format == "parquet" else "line"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "rows": self.rows,
            "receipts": self.receipts,
            "imported": self.imported,
            "lines": self.lines,
            "points": self.points,
            "skipped_existing": self.skipped_existing,
            "skipped_invalid": self.skipped_invalid,
            "members_created": self.members_created,
            "outlets_created": self.outlets_created,
            "batches": self.batches,
            "errors": len(self.errors),
            "aborted": self.aborted,
            "seconds": round(self.seconds, 3),
        }


# ---- progress ----------------------------------------------------------------------------
class Progress(Protocol):
    def phase(self, description: str, total: int | None) -> None: ...

    def advance(self, amount: int) -> None: ...


class NoProgress:
    def phase(self, description: str, total: int | None) -> None:
        return None

    def advance(self, amount: int) -> None:
        return None


class RichProgress:
    """A rich progress bar on stderr, one bar per phase (checking, then importing)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def phase(self, description: str, total: int | None) -> None:
        if self._task is not None:
            self._bar.update(self._task, total=self._bar.tasks[-1].completed)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, amount)


# ---- options -----------------------------------------------------------------------------
def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """``["Чек=receipt_number", ...]`` -> {source column (lower case): field}."""
    mapping: dict[str, str] = {}
    for item in items:
        column, sep, target = item.partition("=")
        column, target = column.strip(), target.strip().lower()
        if not sep or not column or not target:
            raise ValidationFailed(f"--map {item!r}: use column=field.", code="invalid_mapping")
        if target not in FIELDS:
            raise ValidationFailed(
                f"--map {item!r}: unknown field {target!r}; fields: " + ", ".join(FIELDS) + ".",
                code="invalid_mapping",
            )
        if target in mapping.values():
            raise ValidationFailed(f"--map: two columns map to {target}.", code="invalid_mapping")
        mapping[column.lower()] = target
    return mapping


# ---- what the first pass learns ----------------------------------------------------------
@dataclass(slots=True)
class _Parsed:
    line: int
    member: str | None
    number: str
    outlet: str
    occurred: datetime
    sku: str
    category: str
    qty: Decimal
    amount: int


@dataclass(slots=True)
class _Meta:
    """A receipt as the first pass saw it."""

    first_line: int
    member: str | None
    occurred: datetime
    lines: int = 0
    ok: bool = True
    member_id: uuid.UUID | None = None
    earlier_in_file: int = 0  # the member's valid receipts in the file before this one
    items: list[_Item] | None = None  # its lines, when the first pass could keep them


@dataclass(slots=True)
class _Credit:
    """Points one receipt earns in one program, credited when the batch's plan is built."""

    member_id: uuid.UUID
    program: CompiledProgram
    points: int
    receipt_id: uuid.UUID
    rules: list[str]
    occurred: datetime
    txn_id: uuid.UUID = field(default_factory=new_id)


# A receipt line as kept between the passes: (sku, category, qty, amount).
_Item = tuple[str, str, Decimal, int]


@dataclass(slots=True)
class _Receipt:
    outlet: str
    number: str
    meta: _Meta
    lines: list[_Item]


class _Abort(Exception):
    """The file cannot be read at all; carries the error to report."""

    def __init__(self, error: RowError) -> None:
        super().__init__(error.message)
        self.error = error


# ---- reading the file --------------------------------------------------------------------
def _is_parquet(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == PARQUET_MAGIC


def _resolve_header(names: Sequence[str], mapping: dict[str, str]) -> list[int | None]:
    """Source column index of each field (None: absent); raises _Abort listing problems."""
    index: dict[str, int] = {}
    problems: list[str] = []
    lowered = [n.strip().lower() for n in names]
    for column in mapping:
        if column not in lowered:
            problems.append(f"column {column!r} named in --map is not in the file")
    for i, name in enumerate(lowered):
        target = mapping.get(name) or (
            name if name in FIELDS and name not in mapping.values() else None
        )
        if target is None:
            continue  # columns the import does not need are ignored
        if target in index:
            problems.append(f"two columns give {target}")
        index[target] = i
    missing = [f for f in REQUIRED if f not in index]
    if missing:
        problems.append(
            "missing column(s) " + ", ".join(missing) + " (rename with --map "
            "column=field; the file has: " + ", ".join(n for n in names) + ")"
        )
    if problems:
        raise _Abort(RowError(1, "header", "; ".join(problems) + "."))
    return [index.get(f) for f in FIELDS]


def _csv_rows(
    path: Path, mapping: dict[str, str], progress: Progress
) -> Iterator[tuple[int, list[Any]]]:
    """(line number, values in FIELDS order) for every non-blank data row."""
    raw = path.open("rb")
    try:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        first = text.readline()
        delimiter = max((",", ";", "\t"), key=first.count) if first.strip() else ","
        reader = csv.reader(io.StringIO(first), delimiter=delimiter)
        header = next(reader, None)
        if not header or not any(c.strip() for c in header):
            raise _Abort(RowError(1, "header", "The first line must name the columns."))
        positions = _resolve_header(header, mapping)
        picks = [(k, p) for k, p in enumerate(positions) if p is not None]
        width = len(header)
        reader = csv.reader(text, delimiter=delimiter)
        last = 1
        reported = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise _Abort(RowError(last + 1, "file", f"Broken CSV: {exc}.")) from exc
            except UnicodeDecodeError as exc:
                raise _Abort(
                    RowError(
                        last + 1,
                        "file",
                        "The file is not UTF-8 text; save it as CSV UTF-8 and try again.",
                    )
                ) from exc
            line, last = last + 1, reader.line_num + 1
            if line - reported >= PROGRESS_EVERY:
                progress.advance(line - reported)
                reported = line
            if len(cells) != width:
                if not any(c.strip() for c in cells):
                    continue  # blank lines are allowed
                yield line, [_WIDTH_MISMATCH, len(cells), width]
                continue
            values: list[Any] = [""] * len(FIELDS)
            for k, p in picks:
                values[k] = cells[p].strip()
            yield line, values
        progress.advance(max(0, last - reported))
    finally:
        raw.close()


_WIDTH_MISMATCH = object()


def _parquet_rows(
    path: Path, mapping: dict[str, str], progress: Progress
) -> Iterator[tuple[int, list[Any]]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise _Abort(
            RowError(0, "file", "Reading Parquet needs pyarrow: pip install 'kopilka[parquet]'.")
        ) from exc
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise _Abort(RowError(0, "file", f"Cannot read the Parquet file: {exc}.")) from exc
    names = list(parquet.schema_arrow.names)
    positions = _resolve_header(names, mapping)
    wanted = [(k, names[p]) for k, p in enumerate(positions) if p is not None]
    row = 0
    for batch in parquet.iter_batches(
        batch_size=PARQUET_BATCH, columns=sorted({n for _, n in wanted})
    ):
        columns: list[tuple[int, list[Any]]] = []
        for k, name in wanted:
            column = batch.column(batch.schema.get_field_index(name))
            if pa.types.is_timestamp(column.type) and column.type.tz is not None:
                column = column.cast(pa.timestamp("us", tz="UTC"))
            data = column.to_pylist()
            if k in TEXT_FIELDS:
                data = [_text(v) for v in data]
            columns.append((k, data))
        for j in range(batch.num_rows):
            values: list[Any] = [""] * len(FIELDS)
            for k, data in columns:
                values[k] = data[j]
            yield row + j + 1, values
        row += batch.num_rows
        progress.advance(batch.num_rows)


# ---- parsing one row ---------------------------------------------------------------------
def _text(value: Any) -> str:
    if value.__class__ is str:
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a numeric column read as float: "1001.0" means "1001"
    return str(value).strip()


_QTY_CACHE: dict[str, Decimal | None] = {}


def _qty(value: Any) -> Decimal | None:
    """A positive quantity with at most 3 decimals (a comma is a decimal point too)."""
    if value.__class__ is str:
        qty: Decimal | None = _QTY_CACHE.get(value, _MISSING)
        if qty is _MISSING:
            qty = _qty_of(value)
            if len(_QTY_CACHE) < 10_000:  # quantities repeat: 1, 2, 0.5...
                _QTY_CACHE[value] = qty
        return qty
    return _qty_of(value)


def _qty_of(value: Any) -> Decimal | None:
    try:
        if isinstance(value, Decimal):
            qty = value
        elif isinstance(value, bool):
            return None
        elif isinstance(value, int):
            qty = Decimal(value)
        elif isinstance(value, float):
            qty = Decimal(repr(value))
        else:
            qty = Decimal(str(value).strip().replace(",", "."))
    except (InvalidOperation, ValueError):
        return None
    if not qty.is_finite() or qty <= 0 or qty > MAX_QTY:
        return None
    exponent = qty.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -3:
        normal = qty.normalize()
        exponent = normal.as_tuple().exponent
        if not isinstance(exponent, int) or exponent < -3:
            return None
        qty = normal
    return qty


def _amount(value: Any) -> int | None:
    """Whole minor units, 0 or more."""
    if value.__class__ is str:
        if value.isascii() and value.isdigit():
            amount = int(value)
            return amount if amount <= MAX_AMOUNT else None
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        amount = value
    elif isinstance(value, float | Decimal):
        if value != value or value != int(value):  # NaN, or not whole minor units
            return None
        amount = int(value)
    else:
        text = str(value).strip()
        if not text.isascii() or not text.isdigit():
            return None
        amount = int(text)
    return amount if 0 <= amount <= MAX_AMOUNT else None


class _Parser:
    """Turns raw values into a :class:`_Parsed` line or row errors."""

    def __init__(self, tenant: Tenant, now: datetime) -> None:
        self.zone = ZoneInfo(tenant.timezone)
        self.latest = now + FUTURE_SLACK
        self._at_cache: dict[Any, datetime | None] = {}

    def occurred(self, value: Any) -> datetime | None:
        cached = self._at_cache.get(value, False) if isinstance(value, str) else False
        if cached is not False:
            return cached  # type: ignore[return-value]
        moment: datetime | None
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day, tzinfo=self.zone)
        else:
            try:
                moment = datetime.fromisoformat(str(value).strip())
            except ValueError:
                moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.zone)
            moment = moment.astimezone(UTC)
        if isinstance(value, str):
            if len(self._at_cache) > 100_000:
                self._at_cache.clear()
            self._at_cache[value] = moment
        return moment

    def parse(self, line: int, values: list[Any], errors: list[RowError]) -> _Parsed | None:
        if values and values[0] is _WIDTH_MISMATCH:
            errors.append(
                RowError(
                    line,
                    "row",
                    f"{values[1]} fields where the header has "
                    f"{values[2]}; check quoting and separators.",
                )
            )
            return None
        found = len(errors)
        member: str | None = values[M_MEMBER]
        number: str = values[M_NUMBER]
        outlet: str = values[M_OUTLET]
        sku: str = values[M_SKU]
        category: str = values[M_CATEGORY]
        if (
            not (number and outlet and sku)
            or len(number) > 64
            or len(outlet) > 64
            or len(sku) > 64
            or len(category) > 300
            or len(member or "") > 128
        ):
            self._check_texts(line, values, errors)
        member = member or None
        raw_at = values[M_AT]
        occurred = self.occurred(raw_at) if raw_at not in (None, "") else None
        if occurred is None:
            errors.append(
                RowError(
                    line,
                    "occurred_at",
                    f"{_text(raw_at)!r}: not an ISO 8601 "
                    "date-time, e.g. 2025-03-01T14:05:00+03:00.",
                )
            )
        elif occurred > self.latest:
            errors.append(RowError(line, "occurred_at", f"{_text(raw_at)!r} is in the future."))
        qty = _qty(values[M_QTY])
        if qty is None:
            errors.append(
                RowError(
                    line,
                    "qty",
                    f"{_text(values[M_QTY])!r}: a positive quantity with at most 3 decimals.",
                )
            )
        amount = _amount(values[M_AMOUNT])
        if amount is None:
            errors.append(
                RowError(
                    line,
                    "amount",
                    f"{_text(values[M_AMOUNT])!r}: the line "
                    "amount in minor units, a whole number 0 or more.",
                )
            )
        if len(errors) > found:
            return None
        assert occurred is not None
        assert qty is not None
        assert amount is not None
        return _Parsed(line, member, number, outlet, occurred, sku, category, qty, amount)

    def _check_texts(self, line: int, values: list[Any], errors: list[RowError]) -> None:
        for name in ("receipt_number", "outlet", "sku"):
            if not values[FIELDS.index(name)]:
                errors.append(RowError(line, name, f"Missing {name}."))
        for name, limit in MAX_LENGTH.items():
            if len(values[FIELDS.index(name)]) > limit:
                errors.append(RowError(line, name, f"At most {limit} characters."))

    def quick(self, line: int, values: list[Any]) -> _Item:
        """A row of a receipt the first pass found valid: convert, do not check again."""
        qty = _qty(values[M_QTY])
        amount = _amount(values[M_AMOUNT])
        if qty is None or amount is None:  # the file changed between the passes
            raise ValidationFailed(
                f"Line {line} changed while the file was being imported; run the import again.",
                code="file_changed",
            )
        return (values[M_SKU], values[M_CATEGORY], qty, amount)


# ---- the import --------------------------------------------------------------------------
def import_receipts(
    container: Container,
    actor: Actor,
    path: Path,
    *,
    program: str | None = None,
    mapping: dict[str, str] | None = None,
    create_missing: bool = False,
    skip_invalid: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> ReceiptImportReport:
    """Import the receipts in ``path`` (CSV or Parquet) for ``actor``'s tenant."""
    if actor.role is not Role.ADMIN:
        raise Forbidden("Only an admin may import receipts.", code="admin_only")
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValidationFailed(f"batch: 1 to {MAX_BATCH} receipts.", code="invalid_batch")
    job = _ReceiptImport(
        container,
        actor,
        path,
        program,
        mapping or {},
        create_missing,
        skip_invalid,
        batch_size,
        progress or NoProgress(),
    )
    return job.run()


class _ReceiptImport:
    def __init__(
        self,
        container: Container,
        actor: Actor,
        path: Path,
        program: str | None,
        mapping: dict[str, str],
        create_missing: bool,
        skip_invalid: bool,
        batch_size: int,
        progress: Progress,
    ) -> None:
        self.c = container
        self.actor = actor
        self.path = path
        self.program = program
        self.mapping = mapping
        self.create_missing = create_missing
        self.skip_invalid = skip_invalid
        self.batch_size = batch_size
        self.progress = progress
        self.report = ReceiptImportReport(format="parquet" if _is_parquet(path) else "csv")
        self.now = container.clock.now()
        self.run_id = new_id()
        self.metas: dict[tuple[str, str], _Meta] = {}
        self.outlets: dict[str, dict[str, Any]] = {}
        self.members: dict[uuid.UUID, dict[str, Any]] = {}
        self.file_keys: set[tuple[uuid.UUID, str]] = set()
        self.products: dict[str, dict[str, Any] | None] = {}
        self.kept = True  # the first pass keeps the lines (up to KEEP_LINES)
        self.boundaries: list[datetime] = []  # when a program version starts or ends
        self.in_force: dict[int, list[CompiledProgram]] = {}
        self.tenant: Tenant

    # ---- driver --------------------------------------------------------------------------
    def run(self) -> ReceiptImportReport:
        started = time.monotonic()
        with self.c.uow_factory(write=False) as uow:
            self.tenant = load_tenant(uow, self.actor.tenant_id)
            versions = uow.commerce.program_versions(self.tenant.id, self.program)
            if self.program is not None and not versions:
                raise NotFound(f"No program {self.program!r}.", code="program_not_found")
            self.boundaries = sorted(
                {v["starts_at"] for v in versions}
                | {v["ends_at"] for v in versions if v["ends_at"]}
            )
        try:
            self._check_file()
        except _Abort as exc:
            self.report.errors.append(exc.error)
            self.report.aborted = True
        if not self.report.aborted:
            self._resolve()
            self.report.errors.sort(key=lambda e: e.line)
            if not self.report.errors or self.skip_invalid:
                self._create_missing()
                self._order_purchases()
                try:
                    self._load()
                except _Abort as exc:  # the file went away between the passes
                    raise ValidationFailed(exc.error.message, code="file_changed") from exc
        self.report.errors.sort(key=lambda e: e.line)
        self.report.seconds = time.monotonic() - started
        return self.report

    def _rows(self, progress: Progress | None = None) -> Iterator[tuple[int, list[Any]]]:
        read = _parquet_rows if self.report.format == "parquet" else _csv_rows
        return read(self.path, self.mapping, progress or self.progress)

    def _phase_total(self) -> int | None:
        if self.report.format == "parquet":
            try:
                import pyarrow.parquet as pq

                return int(pq.ParquetFile(self.path).metadata.num_rows)
            except Exception:  # the reader reports an unreadable file properly
                return None
        with self.path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) + 1

    # ---- first pass: check every row, learn the receipts ---------------------------------
    def _check_file(self) -> None:
        parser = _Parser(self.tenant, self.now)
        errors = self.report.errors
        metas = self.metas
        strings: dict[str, str] = {}  # one copy of each SKU and category
        self.progress.phase("checking rows", self._phase_total())
        for line, values in self._rows():
            self.report.rows += 1
            if self.report.rows == KEEP_LINES + 1:  # too many to keep: read them again later
                self.kept = False
                strings.clear()
                for known in metas.values():
                    known.items = None
            parsed = parser.parse(line, values, errors)
            if parsed is None:
                if values[0] is _WIDTH_MISMATCH:
                    continue
                number, outlet = values[M_NUMBER], values[M_OUTLET]
                if number and outlet:
                    meta = metas.get((outlet, number))
                    if meta is None:
                        meta = metas[(outlet, number)] = _Meta(line, None, self.now)
                    meta.ok = False
                continue
            key = (parsed.outlet, parsed.number)
            meta = metas.get(key)
            if self.kept:
                sku = strings.setdefault(parsed.sku, parsed.sku)
                item = (
                    sku,
                    strings.setdefault(parsed.category, parsed.category),
                    parsed.qty,
                    parsed.amount,
                )
            if meta is None:
                metas[key] = _Meta(
                    line, parsed.member, parsed.occurred, 1, items=[item] if self.kept else None
                )
                continue
            meta.lines += 1
            if self.kept:
                if meta.items is None:
                    meta.items = []
                meta.items.append(item)
            if meta.lines == 1:  # first seen through a bad row
                meta.member, meta.occurred = parsed.member, parsed.occurred
            elif parsed.member != meta.member:
                errors.append(
                    RowError(
                        line,
                        "member_external_id",
                        f"Receipt {parsed.number} has another member on line {meta.first_line}.",
                    )
                )
                meta.ok = False
            elif parsed.occurred != meta.occurred:
                errors.append(
                    RowError(
                        line,
                        "occurred_at",
                        f"Receipt {parsed.number} has another time on line {meta.first_line}.",
                    )
                )
                meta.ok = False
            if meta.lines == MAX_LINES + 1:
                errors.append(
                    RowError(
                        line,
                        "receipt_number",
                        f"Receipt {parsed.number} has more than {MAX_LINES} lines.",
                    )
                )
                meta.ok = False
        self.report.receipts = len(metas)

    # ---- outlets and members -----------------------------------------------------------
    def _resolve(self) -> None:
        """Find outlets and members; unknown ones are errors unless they may be created."""
        with self.c.uow_factory(write=False) as uow:
            self.outlets = {o["code"]: o for o in uow.directory.list_outlets(self.tenant.id)}
            wanted = sorted({m.member for m in self.metas.values() if m.member})
            by_external: dict[str, dict[str, Any]] = {}
            for i in range(0, len(wanted), LOOKUP_CHUNK):
                for row in uow.directory.members_by(
                    self.tenant.id, "external_id", wanted[i : i + LOOKUP_CHUNK]
                ):
                    by_external[row["external_id"]] = _slim_member(row)
        errors = self.report.errors
        for (outlet, number), meta in self.metas.items():
            if outlet not in self.outlets and not (
                self.create_missing and _valid_outlet_code(outlet)
            ):
                errors.append(
                    RowError(
                        meta.first_line,
                        "outlet",
                        (
                            f"Unknown outlet {outlet!r}"
                            + (
                                "; create it or use --create-missing."
                                if not self.create_missing
                                else ": use letters, digits, '-' or '_'."
                            )
                        ),
                    )
                )
                meta.ok = False
            if meta.member is None:
                continue
            member = by_external.get(meta.member)
            if member is None:
                if not self.create_missing:
                    errors.append(
                        RowError(
                            meta.first_line,
                            "member_external_id",
                            f"Unknown member {meta.member!r} (receipt {number}); "
                            "use --create-missing to create it.",
                        )
                    )
                    meta.ok = False
            elif member["status"] != "active":
                errors.append(
                    RowError(
                        meta.first_line,
                        "member_external_id",
                        f"Member {meta.member!r} is {member['status']}: no earning.",
                    )
                )
                meta.ok = False
            else:
                meta.member_id = member["id"]
                self.members[member["id"]] = member

    def _create_missing(self) -> None:
        """Create the outlets and members that valid receipts name but do not exist."""
        ok = [(key, m) for key, m in self.metas.items() if m.ok]
        for code in sorted({outlet for (outlet, _), _m in ok if outlet not in self.outlets}):
            try:
                self.c.tenants.create_outlet(self.actor, code)
                self.report.outlets_created += 1
            except KopilkaError as exc:
                if exc.code != "outlet_exists":
                    raise
            with self.c.uow_factory(write=False) as uow:
                row = uow.directory.outlet_by_code(self.tenant.id, code)
            assert row is not None
            self.outlets[code] = row
        missing = sorted({m.member for _, m in ok if m.member and m.member_id is None})
        created: dict[str, uuid.UUID] = {}
        for i in range(0, len(missing), MEMBER_CHUNK):
            chunk = missing[i : i + MEMBER_CHUNK]
            with self.c.uow_factory(write=True) as uow:
                found, made = _create_members(uow, self.tenant, chunk, self.now)
                for ext, row in found.items():
                    created[ext] = row["id"]
                    self.members[row["id"]] = row
                if made:
                    uow.directory.audit(
                        self.tenant.id,
                        self.actor.name,
                        "member.import",
                        "import",
                        self.run_id,
                        {"file": self.path.name[:100], "created": made, "source": "receipts"},
                        self.now,
                    )
                uow.commit()
            self.report.members_created += made
        for _, meta in ok:
            if meta.member and meta.member_id is None:
                meta.member_id = created[meta.member]
        for (outlet, number), _meta in ok:
            self.file_keys.add((self.outlets[outlet]["id"], number))

    def _order_purchases(self) -> None:
        """Each member's receipts in the file, in time order: how many came before."""
        by_member: dict[uuid.UUID, list[tuple[datetime, int, _Meta]]] = defaultdict(list)
        for meta in self.metas.values():
            if meta.ok and meta.member_id is not None:
                by_member[meta.member_id].append((meta.occurred, meta.first_line, meta))
        for items in by_member.values():
            items.sort(key=lambda item: (item[0], item[1]))
            for position, (_, _, meta) in enumerate(items):
                meta.earlier_in_file = position

    # ---- second pass: evaluate the receipts, write them in batches ---------------------
    def _load(self) -> None:
        todo = sum(1 for m in self.metas.values() if m.ok)
        self.report.skipped_invalid = len(self.metas) - todo
        batch: list[_Receipt] = []
        self.progress.phase("importing receipts", todo)
        writer = _Writer(self, threaded=self.c.engine.dialect.name == "postgresql")
        try:
            for receipt in self._receipts():
                batch.append(receipt)
                if len(batch) >= self.batch_size:
                    self._prepare(batch, writer)
                    batch = []
            if batch:
                self._prepare(batch, writer)
        finally:
            writer.close()

    def _receipts(self) -> Iterator[_Receipt]:
        """The valid receipts with their lines: kept from the first pass, or read again."""
        metas = self.metas
        if self.kept:
            for (outlet, number), kept in metas.items():
                if kept.ok and kept.items is not None:
                    items, kept.items = kept.items, None
                    yield _Receipt(outlet, number, kept, items)
            return
        pending: dict[tuple[str, str], list[_Item]] = {}
        quick = _Parser(self.tenant, self.now).quick
        for line, values in self._rows(NoProgress()):
            if values[0] is _WIDTH_MISMATCH:
                continue
            key = (values[M_OUTLET], values[M_NUMBER])
            meta = metas.get(key)
            if meta is None or not meta.ok:
                continue
            lines = pending.get(key)
            if lines is None:
                lines = pending[key] = []
            lines.append(quick(line, values))
            if len(lines) == meta.lines:
                del pending[key]
                yield _Receipt(key[0], key[1], meta, lines)
        if pending:  # the file changed between the passes
            raise ValidationFailed(
                "The file changed while it was being imported; run the import again.",
                code="file_changed",
            )

    def _prepare(self, batch: list[_Receipt], writer: _Writer) -> None:
        """Evaluate a batch (reads only) and hand it to the writer."""
        writer.check()
        tenant = self.tenant
        with self.c.uow_factory(write=False) as uow:
            reader = _BulkWriter(uow, tenant.id)
            existing = reader.existing_receipts(
                [(self.outlets[r.outlet]["id"], r.number) for r in batch]
            )
            todo = [r for r in batch if (self.outlets[r.outlet]["id"], r.number) not in existing]
            skipped = len(batch) - len(todo)
            if skipped:
                with _REPORT_LOCK:
                    self.report.skipped_existing += skipped
                self.progress.advance(skipped)
            if not todo:
                return
            todo.sort(key=lambda r: (r.meta.occurred, r.meta.first_line))
            self._load_products(uow, todo)
            history = reader.member_history(
                sorted({r.meta.member_id for r in todo if r.meta.member_id is not None}),
                self.file_keys,
            )
            prepared = _Prepared(first_line=min(r.meta.first_line for r in todo))
            for receipt in todo:
                self._evaluate(uow, receipt, history, prepared)
        writer.submit(prepared)

    def _evaluate(
        self,
        uow: UnitOfWork,
        receipt: _Receipt,
        history: dict[uuid.UUID, list[datetime]],
        prepared: _Prepared,
    ) -> None:
        tenant = self.tenant
        meta = receipt.meta
        outlet = self.outlets[receipt.outlet]
        member = self.members[meta.member_id] if meta.member_id is not None else None
        programs = self._programs_at(uow, meta.occurred)
        lines = [self._line(i, li) for i, li in enumerate(receipt.lines)]
        facts = None
        if member is not None:
            before = bisect.bisect_left(history.get(member["id"], []), meta.occurred)
            facts = _member_facts(member, before + meta.earlier_in_file, 0)
        ctx = Context(
            occurred_at=meta.occurred,
            local_time=meta.occurred.astimezone(_zone(outlet["timezone"])),
            tenant_today=meta.occurred.astimezone(_zone(tenant.timezone)).date(),
            outlet_code=outlet["code"],
            outlet_tags=frozenset(outlet["tags"] or ()),
            region=outlet["region"],
            channel="store",
            member=facts,
        )
        ev = evaluate(programs, lines, ctx, currency=tenant.currency, near_misses=False)
        receipt_id = new_id()
        accruals: dict[str, str] = {}
        credits: list[_Credit] = []
        if member is not None:
            for p in programs:
                points = ev.earned_by_program.get(p.code, 0)
                if points > 0:
                    credit = _Credit(
                        member["id"],
                        p,
                        points,
                        receipt_id,
                        ev.rules_by_program.get(p.code, []),
                        meta.occurred,
                    )
                    accruals[p.code] = str(credit.txn_id)
                    credits.append(credit)
        found = Evaluated(
            tenant, outlet, member, list(programs), ev, meta.occurred, source_lines=lines
        )
        result = _response(
            found,
            receipt={
                "id": str(receipt_id),
                "receipt_number": receipt.number,
                "status": "confirmed",
                "hold_expires_at": None,
            },
        )
        result["not_applied"] = []  # near misses are advice for the till, not history
        result["coupons_issued"] = []  # historical receipts issue no coupons
        result["imported"] = True
        now = self.now
        prepared.keys.append((outlet["id"], receipt.number))
        prepared.receipts.append(
            (
                receipt_id,
                tenant.id,
                outlet["id"],
                receipt.number,
                member["id"] if member is not None else None,
                "confirmed",
                "store",
                None,
                meta.occurred,
                _digest(meta.member, meta.occurred, receipt.lines),
                {p.code: p.version for p in programs},
                ev.total_amount,
                ev.total_discount,
                0,
                0,
                ev.total_pay,
                result["totals"]["points_earned"],
                result,
                None,
                None,
                {"accruals": accruals},
                now,
                now,
            )
        )
        prepared.lines.append(
            [
                (
                    tenant.id,
                    receipt_id,
                    lr.index,
                    lr.sku,
                    "/".join(src.category) or None,
                    lr.qty,
                    lr.price,
                    lr.amount,
                    lr.discount,
                    0,
                    0,
                    lr.points_earned,
                    _ZERO,
                )
                for lr, src in zip(ev.lines, lines, strict=True)
            ]
        )
        prepared.credits.append(credits)

    def _programs_at(self, uow: UnitOfWork, at: datetime) -> list[CompiledProgram]:
        """``ProgramService.in_force`` at ``at``, asked once per stretch of time between
        two version boundaries (the answer cannot change inside one)."""
        index = bisect.bisect_right(self.boundaries, at)
        programs = self.in_force.get(index)
        if programs is None:
            programs = self.in_force[index] = self.c.programs.in_force(
                uow, self.tenant.id, at, self.program
            )
        return programs

    def _line(self, index: int, item: _Item) -> Line:
        sku, category, qty, amount = item
        product = self.products.get(sku)
        price = amount if qty == 1 else int((amount / qty).quantize(_ONE, rounding=ROUND_HALF_UP))
        if product is None:
            return Line(
                index=index,
                sku=sku,
                qty=qty,
                price=price,
                amount=amount,
                category=_category(category),
            )
        return Line(
            index=index,
            sku=sku,
            qty=qty,
            price=price,
            amount=amount,
            name=product.get("name"),
            category=_category(category or product.get("category") or ""),
            brand=product.get("brand"),
            tags=frozenset(product.get("tags") or ()),
            attributes=product.get("attributes") or {},
            no_discount=bool(product.get("no_discount")),
            no_points=bool(product.get("no_points")),
            min_price=product.get("min_price"),
        )

    def _load_products(self, uow: UnitOfWork, batch: list[_Receipt]) -> None:
        unseen = sorted({li[0] for r in batch for li in r.lines} - self.products.keys())
        for i in range(0, len(unseen), LOOKUP_CHUNK):
            chunk = unseen[i : i + LOOKUP_CHUNK]
            found = uow.commerce.products_by_sku(self.tenant.id, chunk)
            for sku in chunk:
                self.products[sku] = found.get(sku)

    # ---- writing (the writer's side) -----------------------------------------------------
    def write(self, prepared: _Prepared) -> _Written:
        """One batch in one database transaction: receipts, lines, accruals, balances."""
        written = _Written()
        with self.c.uow_factory(write=True) as uow:
            writer = _BulkWriter(uow, self.tenant.id)
            writer.lock(IMPORT_LOCK.format(tenant=self.tenant.id))
            existing = writer.existing_receipts(prepared.keys)
            keep = [i for i, key in enumerate(prepared.keys) if key not in existing]
            written.skipped = len(prepared.keys) - len(keep)
            if keep:
                credits = [c for i in keep for c in prepared.credits[i]]
                plan = self._credit(uow, writer, credits)
                line_rows = [row for i in keep for row in prepared.lines[i]]
                writer.insert(receipts, RECEIPT_COLUMNS, [prepared.receipts[i] for i in keep])
                writer.insert(receipt_lines, LINE_COLUMNS, line_rows)
                writer.apply(plan, self.now)
                uow.directory.audit(
                    self.tenant.id,
                    self.actor.name,
                    "receipt.import",
                    "import",
                    self.run_id,
                    {
                        "file": self.path.name[:100],
                        "first_line": prepared.first_line,
                        "receipts": len(keep),
                        "lines": len(line_rows),
                    },
                    self.now,
                )
                uow.commit()
                written.receipts, written.lines = len(keep), len(line_rows)
                written.points = sum(c.points for c in credits)
        self.progress.advance(len(prepared.keys))
        return written

    def _credit(self, uow: UnitOfWork, writer: _BulkWriter, credits: list[_Credit]) -> LedgerPlan:
        """Accruals of the whole batch in one plan; each member's accounts locked once."""
        plan = LedgerPlan()
        tenant = self.tenant
        by_currency: dict[str, set[uuid.UUID]] = defaultdict(set)
        for credit in credits:
            by_currency[credit.program.currency].add(credit.member_id)
        books: dict[tuple[uuid.UUID, str], MemberBook] = {}
        for currency, member_ids in sorted(by_currency.items()):
            wanted = sorted(member_ids)
            locked = uow.ledger.lock_many_member_accounts(tenant.id, wanted, currency)
            absent = [m for m in wanted if len(locked[m]) < len(MEMBER_ACCOUNT_KINDS)]
            if absent:
                writer.create_accounts(absent, currency, self.now, tenant.allow_debt)
                locked.update(uow.ledger.lock_many_member_accounts(tenant.id, absent, currency))
            for member_id in wanted:
                books[(member_id, currency)] = MemberBook(
                    uow,
                    tenant,
                    member_id,
                    self.actor,
                    self.now,
                    currency=currency,
                    load_lots=False,
                    plan=plan,
                    accounts=locked[member_id],
                )
        for credit in credits:
            program, occurred = credit.program, credit.occurred
            book = books[(credit.member_id, program.currency)]
            txn = book.new_txn(
                TxnKind.ACCRUAL,
                credit.points,
                source_type=SOURCE_TYPE,
                source_id=str(credit.receipt_id),
                params={
                    "program": program.code,
                    "version": program.version,
                    "rules": credit.rules,
                    "reason": program.name.get("ru"),
                    "imported": True,
                },
                occurred_at=occurred,
            )
            txn.id = credit.txn_id  # the receipt's ledger column names it already
            book.credit(
                txn,
                credit.points,
                AccountKind.ISSUED,
                available_at=occurred + timedelta(days=program.settings.pending_days),
                expires_at=policy_expiry(program.settings.expiry, occurred, tenant.timezone),
            )
        return plan


@dataclass
class _Prepared:
    """A batch evaluated and turned into rows, waiting for the writer."""

    first_line: int
    keys: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # (outlet id, number)
    receipts: list[tuple[Any, ...]] = field(default_factory=list)
    lines: list[list[tuple[Any, ...]]] = field(default_factory=list)  # per receipt
    credits: list[list[_Credit]] = field(default_factory=list)  # per receipt


@dataclass
class _Written:
    receipts: int = 0
    lines: int = 0
    points: int = 0
    skipped: int = 0  # appeared in the database since the batch was checked


class _Writer:
    """Writes prepared batches in order. On PostgreSQL a thread does it, so the database
    ingests one batch while the next is evaluated; at most one batch waits in between."""

    def __init__(self, job: _ReceiptImport, *, threaded: bool) -> None:
        self.job = job
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.queue: queue.Queue[_Prepared | None] = queue.Queue(maxsize=1)
        if threaded:
            self.thread = threading.Thread(
                target=self._run, name="receipt-import-writer", daemon=True
            )
            self.thread.start()

    def submit(self, prepared: _Prepared) -> None:
        if self.thread is None:
            self._account(self.job.write(prepared))
            return
        while True:
            self.check()
            try:
                self.queue.put(prepared, timeout=0.5)
                return
            except queue.Full:
                continue

    def check(self) -> None:
        """Raise the writer's error in the reading thread, where the caller can see it."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self.thread is not None:
            while self.thread.is_alive():
                try:
                    self.queue.put(None, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self.thread.join()
            self.thread = None
        self.check()

    def _run(self) -> None:
        while True:
            prepared = self.queue.get()
            if prepared is None or self.error is not None:
                if prepared is None:
                    return
                continue  # drain after a failure, so the reader never blocks
            try:
                self._account(self.job.write(prepared))
            except BaseException as exc:  # handed to the reading thread
                self.error = exc

    def _account(self, written: _Written) -> None:
        report = self.job.report
        with _REPORT_LOCK:
            report.imported += written.receipts
            report.lines += written.lines
            report.points += written.points
            report.skipped_existing += written.skipped
            report.batches += 1 if written.receipts else 0


_REPORT_LOCK = threading.Lock()
_ZERO = Decimal(0)
_ONE = Decimal(1)
RECEIPT_COLUMNS = (
    "id",
    "tenant_id",
    "outlet_id",
    "receipt_number",
    "member_id",
    "status",
    "channel",
    "payment_method",
    "occurred_at",
    "request_hash",
    "programs",
    "total_amount",
    "total_discount",
    "points_redeemed",
    "points_money",
    "total_pay",
    "points_earned",
    "result",
    "hold_id",
    "hold_expires_at",
    "ledger",
    "created_at",
    "closed_at",
)
LINE_COLUMNS = (
    "tenant_id",
    "receipt_id",
    "line_no",
    "sku",
    "category",
    "qty",
    "price",
    "amount",
    "discount",
    "points_spent",
    "points_money",
    "points_earned",
    "refunded_qty",
)
TXN_COLUMNS = (
    "id",
    "tenant_id",
    "member_id",
    "counterparty_member_id",
    "kind",
    "currency",
    "amount",
    "reason",
    "actor",
    "source_type",
    "source_id",
    "reverses_id",
    "params",
    "occurred_at",
    "recorded_at",
)
POSTING_COLUMNS = ("tenant_id", "transaction_id", "account_id", "amount", "balance_after")
LOT_COLUMNS = (
    "id",
    "tenant_id",
    "member_id",
    "currency",
    "amount",
    "remaining",
    "status",
    "available_at",
    "expires_at",
    "source_transaction_id",
    "created_at",
)
MEMBER_COLUMNS = (
    "id",
    "tenant_id",
    "external_id",
    "attributes",
    "consents",
    "status",
    "created_at",
    "updated_at",
)
ACCOUNT_COLUMNS = (
    "id",
    "tenant_id",
    "owner",
    "member_id",
    "kind",
    "currency",
    "balance",
    "allow_debt",
    "created_at",
)
MOVEMENT_COLUMNS = ("tenant_id", "transaction_id", "lot_id", "amount", "origin_id")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
# {program code: points} columns: codes are [a-z0-9_-] (see programs.CODE), so no escaping.
POINTS_COLUMNS = frozenset({("receipt_lines", "points_earned")})


def _points_json(value: dict[str, int]) -> str:
    return "{" + ",".join([f'"{k}":{int(v)}' for k, v in value.items()]) + "}"


def _digest(member: str | None, occurred: datetime, lines: list[_Item]) -> str:
    """What identifies an imported receipt's contents (the ``request_hash`` column)."""
    text = "\n".join(
        [f"import\t{member or ''}\t{occurred.isoformat()}"]
        + [f"{sku}\t{qty}\t{amount}\t{category}" for sku, category, qty, amount in lines]
    )
    return hashlib.sha256(text.encode()).hexdigest()


_CATEGORIES: dict[str, tuple[str, ...]] = {}


def _category(text: str) -> tuple[str, ...]:
    path = _CATEGORIES.get(text)
    if path is None:
        path = category_path(text)
        if len(_CATEGORIES) < 100_000:
            _CATEGORIES[text] = path
    return path


# ---- helpers -----------------------------------------------------------------------------
_ZONES: dict[str, ZoneInfo] = {}


def _zone(name: str) -> ZoneInfo:
    zone = _ZONES.get(name)
    if zone is None:
        zone = _ZONES[name] = ZoneInfo(name)
    return zone


def _valid_outlet_code(code: str) -> bool:
    """What ``TenantService.create_outlet`` accepts."""
    return bool(code) and len(code) <= 64 and code.replace("-", "").replace("_", "").isalnum()


def _slim_member(row: dict[str, Any]) -> dict[str, Any]:
    """What evaluation needs of a member (50,000 full rows would be a lot of memory)."""
    return {
        k: row[k] for k in ("id", "status", "attributes", "birth_month", "birth_day", "external_id")
    }


def _create_members(
    uow: UnitOfWork, tenant: Tenant, external_ids: list[str], now: datetime
) -> tuple[dict[str, dict[str, Any]], int]:
    """Members known only by external id, with their accounts. Returns every one of them
    (slim rows by external id, made now or meanwhile by someone else) and how many are new."""
    writer = _BulkWriter(uow, tenant.id)
    rows: list[tuple[Any, ...]] = [
        (new_id(), tenant.id, ext, {}, {}, "active", now, now) for ext in sorted(external_ids)
    ]
    made = set(writer.insert_new(members, MEMBER_COLUMNS, rows))
    found: dict[str, dict[str, Any]] = {
        ext: {
            "id": mid,
            "status": "active",
            "attributes": {},
            "birth_month": None,
            "birth_day": None,
            "external_id": ext,
        }
        for mid, _, ext, *_ in rows
        if mid in made
    }
    others = [ext for ext in external_ids if ext not in found]
    for i in range(0, len(others), LOOKUP_CHUNK):
        for row in uow.directory.members_by(tenant.id, "external_id", others[i : i + LOOKUP_CHUNK]):
            found[row["external_id"]] = _slim_member(row)
    writer.create_accounts(
        [mid for mid, *_ in rows if mid in made],
        tenant.points_currency,
        now,
        tenant.allow_debt,
        fresh=True,
    )
    return found, len(made)


class _BulkWriter:
    """Set-based reads and writes for the import: COPY on PostgreSQL, executemany on SQLite.

    It writes into the unit of work's own transaction: the raw psycopg connection under the
    SQLAlchemy connection is the same session, so a batch commits or rolls back whole.
    """

    def __init__(self, uow: UnitOfWork, tenant_id: uuid.UUID) -> None:
        self.uow = uow
        self.conn: sa.Connection = uow.commerce.conn
        self.pg = self.conn.dialect.name == "postgresql"
        self.tenant_id = tenant_id

    def lock(self, key: str) -> None:
        """Serialise concurrent imports into one tenant (SQLite's write lock already does)."""
        if self.pg:
            self.conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
        else:
            self.conn.execute(sa.select(1))  # opens the transaction (BEGIN IMMEDIATE)

    def existing_receipts(self, keys: list[tuple[uuid.UUID, str]]) -> set[tuple[uuid.UUID, str]]:
        """Which of these (outlet id, receipt number) pairs are in the database."""
        by_outlet: dict[uuid.UUID, list[str]] = defaultdict(list)
        for outlet_id, number in keys:
            by_outlet[outlet_id].append(number)
        found: set[tuple[uuid.UUID, str]] = set()
        for outlet_id, numbers in sorted(by_outlet.items()):
            numbers.sort()
            for i in range(0, len(numbers), LOOKUP_CHUNK):
                rows = self.conn.execute(  # the unique key (tenant, outlet, number) serves it
                    sa.select(receipts.c.receipt_number).where(
                        receipts.c.tenant_id == self.tenant_id,
                        receipts.c.outlet_id == outlet_id,
                        receipts.c.receipt_number.in_(numbers[i : i + LOOKUP_CHUNK]),
                    )
                )
                found.update((outlet_id, number) for number in rows.scalars())
        return found

    def member_history(
        self, member_ids: list[uuid.UUID], exclude: set[tuple[uuid.UUID, str]]
    ) -> dict[uuid.UUID, list[datetime]]:
        """Sorted times of each member's confirmed receipts not in this file."""
        history: dict[uuid.UUID, list[datetime]] = defaultdict(list)
        for i in range(0, len(member_ids), LOOKUP_CHUNK):
            rows = self.conn.execute(
                sa.select(
                    receipts.c.member_id,
                    receipts.c.occurred_at,
                    receipts.c.outlet_id,
                    receipts.c.receipt_number,
                ).where(
                    receipts.c.tenant_id == self.tenant_id,
                    receipts.c.status == "confirmed",
                    receipts.c.member_id.in_(member_ids[i : i + LOOKUP_CHUNK]),
                )
            )
            for r in rows:
                if (r.outlet_id, r.receipt_number) not in exclude:
                    history[r.member_id].append(r.occurred_at)
        for times in history.values():
            times.sort()
        return history

    def create_accounts(
        self,
        member_ids: list[uuid.UUID],
        currency: str,
        now: datetime,
        allow_debt: bool,
        *,
        fresh: bool = False,
    ) -> None:
        """Open the members' accounts in ``currency``; ``fresh``: members made in this
        transaction, who cannot have any yet."""
        rows = [
            (
                new_id(),
                self.tenant_id,
                member_owner(m),
                m,
                str(kind),
                currency,
                0,
                allow_debt and kind is AccountKind.WALLET,
                now,
            )
            for m in member_ids
            for kind in sorted(MEMBER_ACCOUNT_KINDS)
        ]
        if fresh:
            self.insert(accounts, ACCOUNT_COLUMNS, rows)
        else:
            self.insert_new(accounts, ACCOUNT_COLUMNS, rows)

    def insert_new(
        self, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> list[Any]:
        """Insert rows that do not clash with a unique key; returns the ids inserted."""
        if not rows:
            return []
        if not self.pg:
            stmt = sqlite.insert(table).on_conflict_do_nothing().returning(table.c.id)
            inserted: list[Any] = []
            for row in rows:  # RETURNING with executemany is not portable on SQLite
                inserted += self.conn.execute(stmt, dict(zip(columns, row, strict=True))).scalars()
            return inserted
        # COPY cannot skip conflicts: load a scratch table, then insert what is new.
        scratch = f"import_{table.name}"
        self.conn.execute(
            sa.text(
                f"CREATE TEMP TABLE IF NOT EXISTS {scratch} "
                f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
        )
        self.insert(table, columns, rows, into=scratch)
        names = ", ".join(columns)
        return list(
            self.conn.execute(
                sa.text(
                    f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {scratch} "  # noqa: S608 - names from our schema
                    "ON CONFLICT DO NOTHING RETURNING id"
                )
            ).scalars()
        )

    # ---- writing ---------------------------------------------------------------------------
    def insert(
        self,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        *,
        into: str | None = None,
    ) -> None:
        """Insert rows given as tuples in ``columns`` order (JSON columns as objects)."""
        if not rows:
            return
        if not self.pg:
            self.conn.execute(
                sa.insert(table), [dict(zip(columns, row, strict=True)) for row in rows]
            )
            return
        json_at = [
            (i, _points_json if (table.name, c) in POINTS_COLUMNS else _JSON.encode)
            for i, c in enumerate(columns)
            if isinstance(table.c[c].type, sa.JSON)
        ]
        driver = self.conn.connection.driver_connection
        assert driver is not None
        names = ", ".join(columns)
        target = into or table.name
        with driver.cursor() as cur, cur.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
            write = copy.write_row
            if not json_at:
                for row in rows:
                    write(row)
                return
            for row in rows:
                values = list(row)
                for i, dumps in json_at:
                    values[i] = dumps(values[i])
                write(values)

    def apply(self, plan: LedgerPlan, recorded_at: datetime) -> None:
        """Write a plan of new transactions and lots (what :meth:`SqlLedgerStore.apply`
        does, set-based)."""
        if not self.pg:
            self.uow.ledger.apply(self.tenant_id, plan, recorded_at)
            return
        assert not plan.changed_lots, "an import plan only makes new lots"
        touched = sorted({p.account_id for p in plan.postings if p.balance_after is not None})
        if touched:
            self.conn.execute(
                sa.text(
                    "UPDATE accounts SET balance = v.balance FROM "
                    "(SELECT unnest(CAST(:ids AS uuid[])) AS id, "
                    "unnest(CAST(:balances AS bigint[])) AS balance) AS v "
                    "WHERE accounts.id = v.id"
                ),
                {"ids": touched, "balances": [plan.accounts[a].balance for a in touched]},
            )
        tid = self.tenant_id
        self.insert(
            ledger_transactions,
            TXN_COLUMNS,
            [
                (
                    t.id,
                    tid,
                    t.member_id,
                    t.counterparty_member_id,
                    t.kind,
                    t.currency,
                    t.amount,
                    t.reason,
                    t.actor,
                    t.source_type,
                    t.source_id,
                    t.reverses_id,
                    t.params,
                    t.occurred_at,
                    recorded_at,
                )
                for t in plan.transactions
            ],
        )
        self.insert(
            postings,
            POSTING_COLUMNS,
            [
                (tid, p.transaction_id, p.account_id, p.amount, p.balance_after)
                for p in plan.postings
            ],
        )
        self.insert(
            lots,
            LOT_COLUMNS,
            [
                (
                    lot.id,
                    tid,
                    lot.member_id,
                    lot.currency,
                    lot.amount,
                    lot.remaining,
                    lot.status.value,
                    lot.available_at,
                    lot.expires_at,
                    lot.source_transaction_id,
                    recorded_at,
                )
                for lot in plan.new_lots.values()
            ],
        )
        self.insert(
            lot_movements,
            MOVEMENT_COLUMNS,
            [(tid, m.transaction_id, m.lot_id, m.amount, m.origin_id) for m in plan.movements],
        )
