"""Catalogue, program versions, receipts, refunds and coupons."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kopilka.adapters.db.driver_sql import driver_rowcount
from kopilka.adapters.db.driver_sqlite import compiled_write, sqlite_execute
from kopilka.adapters.db.tables import (
    coupons,
    products,
    programs,
    receipt_lines,
    receipts,
    refunds,
    tenants,
)
from kopilka.adapters.db.ttl_cache import MISSING, ScopedCache
from kopilka.adapters.db.types import UtcDateTime, compact_json

Row = dict[str, Any]


def _one(result: Any) -> Row | None:
    row = result.first()
    return dict(row._mapping) if row is not None else None


# Hot statements of the till are built once (see ledger_store for why).
_PRODUCTS = sa.select(products).where(
    products.c.tenant_id == sa.bindparam("t"),
    products.c.sku.in_(sa.bindparam("skus", expanding=True)),
)
_RECEIPT_BY_NUMBER = sa.select(receipts).where(
    receipts.c.tenant_id == sa.bindparam("t"),
    receipts.c.outlet_id == sa.bindparam("o"),
    receipts.c.receipt_number == sa.bindparam("n"),
)
_COUNT_PURCHASES = (
    sa.select(sa.func.count())
    .select_from(receipts)
    .where(
        receipts.c.tenant_id == sa.bindparam("t"),
        receipts.c.member_id == sa.bindparam("m"),
        receipts.c.status == "confirmed",
    )
)


# Lookups of more SKUs than this (imports, previews) neither use nor fill the process cache:
# they keep their own maps, and would only push the till's entries out.
_CACHED_LOOKUP_MAX = 256
# Products read under a known catalogue version stay cached this long (they are dropped at
# once when the version moves); without a version, the cache's own TTL applies.
VERSIONED_PRODUCT_TTL_SECONDS = 300.0
_BUMP_CATALOGUE = (
    sa.update(tenants)
    .where(tenants.c.id == sa.bindparam("t"))
    .values(catalogue_version=tenants.c.catalogue_version + 1)
)


class SqlCommerceStore:
    """Catalogue, programs, receipts, refunds and coupons.

    Products are read on every purchase and change rarely: with ``cache`` (the unit of
    work's view of the process cache) they are kept per (tenant, SKU) for the cache's TTL,
    unknown SKUs too, and forgotten at once in this process when this store writes products
    (see ``ttl_cache``)."""

    def __init__(self, conn: sa.Connection, cache: ScopedCache | None = None) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self._cache = cache

    # ---- products ----------------------------------------------------------------------
    def upsert_products(self, rows: list[Row]) -> None:
        """Insert or update by (tenant, sku), in one statement per batch."""
        if not rows:
            return
        if self._cache is not None:  # every write to products must go through here
            for tenant_id in {row["tenant_id"] for row in rows}:
                self._cache.writes(("products", tenant_id))
        insert: Any = (
            postgresql.insert(products) if self.dialect == "postgresql" else sqlite.insert(products)
        )
        updatable = (
            "name",
            "category",
            "brand",
            "tags",
            "attributes",
            "price",
            "min_price",
            "no_discount",
            "no_points",
            "updated_at",
        )
        stmt = insert.on_conflict_do_update(
            index_elements=["tenant_id", "sku"],
            set_={c: getattr(insert.excluded, c) for c in updatable},
        )
        self.conn.execute(stmt, rows)
        # Other processes drop their cached products once they see the new version.
        for tenant_id in sorted({row["tenant_id"] for row in rows}):
            self.conn.execute(_BUMP_CATALOGUE, {"t": tenant_id})

    def products_by_sku(
        self, tenant_id: uuid.UUID, skus: Sequence[str], catalogue_version: int | None = None
    ) -> dict[str, Row]:
        """The tenant's products among ``skus``, by SKU (unknown SKUs are left out). SKUs
        cached in this process (found or known to be absent) are not read again; one
        statement reads the others.

        With the ``catalogue_version`` of the caller's tenant row (``Tenant``), entries are
        tagged with it and kept until it moves (at most VERSIONED_PRODUCT_TTL_SECONDS):
        the tenant row is cached for the cache's TTL, so a change made by another process
        is seen as soon as before. Without it, entries live for the cache's TTL."""
        if not skus:
            return {}
        wanted = sorted(set(skus))
        scope = ("products", tenant_id)
        scoped = self._cache
        if scoped is None or not scoped.usable(scope) or len(wanted) > _CACHED_LOOKUP_MAX:
            rows = self.conn.execute(_PRODUCTS, {"t": tenant_id, "skus": wanted})
            return {r.sku: dict(r._mapping) for r in rows}
        cache = scoped.cache
        found: dict[str, Row] = {}
        missing: list[str] = []
        for sku in wanted:
            hit = cache.get_scoped(scope, ("product", tenant_id, sku))
            if hit is MISSING or hit[0] != catalogue_version:
                missing.append(sku)
            elif hit[1] is not None:
                found[sku] = dict(hit[1])  # a copy: callers may not change the cached row
        if missing:
            stamp = cache.stamp(scope)
            rows = self.conn.execute(_PRODUCTS, {"t": tenant_id, "skus": missing})
            read = {r.sku: dict(r._mapping) for r in rows}
            # None caches "no such product": receipts often carry SKUs not in the catalogue.
            cache.put_scoped(
                scope,
                stamp,
                {
                    ("product", tenant_id, sku): (catalogue_version, read.get(sku))
                    for sku in missing
                },
                ttl=None if catalogue_version is None else VERSIONED_PRODUCT_TTL_SECONDS,
            )
            found.update((sku, dict(row)) for sku, row in read.items())
        return found

    def list_products(self, tenant_id: uuid.UUID, after: str | None, limit: int) -> list[Row]:
        stmt = sa.select(products).where(products.c.tenant_id == tenant_id)
        if after:
            stmt = stmt.where(products.c.sku > after)
        rows = self.conn.execute(stmt.order_by(products.c.sku).limit(limit))
        return [dict(r._mapping) for r in rows]

    # ---- programs ----------------------------------------------------------------------
    def insert_program(self, row: Row) -> None:
        self.conn.execute(sa.insert(programs), row)

    def latest_program(self, tenant_id: uuid.UUID, code: str) -> Row | None:
        return _one(
            self.conn.execute(
                sa.select(programs)
                .where(programs.c.tenant_id == tenant_id, programs.c.code == code)
                .order_by(programs.c.version.desc())
                .limit(1)
            )
        )

    def program_version(self, tenant_id: uuid.UUID, code: str, version: int) -> Row | None:
        return _one(
            self.conn.execute(
                sa.select(programs).where(
                    programs.c.tenant_id == tenant_id,
                    programs.c.code == code,
                    programs.c.version == version,
                )
            )
        )

    def program_versions(self, tenant_id: uuid.UUID, code: str | None = None) -> list[Row]:
        stmt = sa.select(
            programs.c.code,
            programs.c.version,
            programs.c.starts_at,
            programs.c.ends_at,
            programs.c.published_at,
            programs.c.digest,
            programs.c.actor,
        ).where(programs.c.tenant_id == tenant_id)
        if code is not None:
            stmt = stmt.where(programs.c.code == code)
        rows = self.conn.execute(stmt.order_by(programs.c.code, programs.c.version))
        return [dict(r._mapping) for r in rows]

    def lock_program_code(self, tenant_id: uuid.UUID, code: str) -> None:
        """Serialise publications of one program code (PostgreSQL advisory lock)."""
        if self.dialect == "postgresql":
            self.conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                {"k": f"program:{tenant_id}:{code}"},
            )

    # ---- receipts ----------------------------------------------------------------------
    def receipt_by_number(
        self, tenant_id: uuid.UUID, outlet_id: uuid.UUID, number: str
    ) -> Row | None:
        params = {"t": tenant_id, "o": outlet_id, "n": number}
        return _one(self.conn.execute(_RECEIPT_BY_NUMBER, params))

    def receipt(
        self, tenant_id: uuid.UUID, receipt_id: uuid.UUID, lock: bool = False
    ) -> Row | None:
        stmt = sa.select(receipts).where(
            receipts.c.tenant_id == tenant_id, receipts.c.id == receipt_id
        )
        if lock and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return _one(self.conn.execute(stmt))

    def insert_receipt(self, row: Row, lines: list[Row]) -> None:
        """Insert a receipt and its lines: one statement on PostgreSQL (see
        :func:`_pg_receipt_statement`), two elsewhere. A receipt number taken at the
        outlet is an ``IntegrityError``."""
        if not self._insert_in_one(row, lines, if_new=False):
            self.conn.execute(sa.insert(receipts), row)
            if lines:
                self.conn.execute(sa.insert(receipt_lines), lines)

    def insert_receipt_if_new(self, row: Row, lines: list[Row]) -> bool:
        """Insert a receipt and its lines unless the outlet already has a receipt with its
        number (committed, or committed by a twin this waits for): False, nothing written.
        The till's confirm claims its receipt number this way, at the end of its
        transaction, instead of a lock and a look-up before it."""
        inserted = self._insert_in_one(row, lines, if_new=True)
        if inserted is not None:
            return inserted
        if self.dialect == "sqlite":
            return self._insert_on_sqlite(row, lines)
        # PostgreSQL with a receipt its one statement does not take (no lines, or lines of
        # different shapes).
        written = self.conn.execute(
            postgresql.insert(receipts)
            .values(row)
            .on_conflict_do_nothing(index_elements=["tenant_id", "outlet_id", "receipt_number"])
            .returning(receipts.c.id)
        ).first()
        if written is None:
            return False
        if lines:
            self.conn.execute(sa.insert(receipt_lines), lines)
        return True

    def _insert_on_sqlite(self, row: Row, lines: list[Row]) -> bool:
        """``insert_receipt_if_new`` on the sqlite3 connection (see driver_sqlite)."""
        keys = tuple(row)
        claim = compiled_write(
            self.conn,
            ("receipt", keys),
            lambda: (
                sqlite.insert(receipts)
                .on_conflict_do_nothing(index_elements=["tenant_id", "outlet_id", "receipt_number"])
                .returning(receipts.c.id)
            ),
            keys,
        )
        if sqlite_execute(self.conn, claim, [row]).fetchone() is None:
            return False
        line_keys = tuple(lines[0]) if lines else ()
        if any(tuple(line) != line_keys for line in lines):
            self.conn.execute(sa.insert(receipt_lines), lines)  # not one shape: SQLAlchemy's way
        elif lines:
            write = compiled_write(
                self.conn, ("receipt_lines", line_keys), lambda: sa.insert(receipt_lines), line_keys
            )
            sqlite_execute(self.conn, write, lines)
        return True

    def _insert_in_one(self, row: Row, lines: list[Row], *, if_new: bool) -> bool | None:
        """The one-statement insert on PostgreSQL: whether it wrote (False only with
        ``if_new``, for a number taken); None where it does not apply."""
        if self.dialect != "postgresql" or not lines:
            return None
        line_keys = tuple(lines[0])
        if any(tuple(line) != line_keys for line in lines):
            return None
        key = (tuple(row), line_keys, if_new)
        built = _PG_RECEIPT_SQL.get(key)
        if built is None:
            built = _PG_RECEIPT_SQL[key] = _pg_receipt_statement(*key)
        if built is False:
            return None
        sql, encode_row, encode_line = built
        params = encode_row(row)
        params["lines"] = _pg_json([encode_line(line) for line in lines])
        # Every line is written, or none (the number was taken): a receipt has lines.
        return bool(driver_rowcount(self.conn, sql, params))

    def update_receipt(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID, values: Row) -> None:
        self.conn.execute(
            sa.update(receipts)
            .where(receipts.c.tenant_id == tenant_id, receipts.c.id == receipt_id)
            .values(**values)
        )

    def receipt_lines(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID) -> list[Row]:
        rows = self.conn.execute(
            sa.select(receipt_lines)
            .where(receipt_lines.c.tenant_id == tenant_id, receipt_lines.c.receipt_id == receipt_id)
            .order_by(receipt_lines.c.line_no)
        )
        return [dict(r._mapping) for r in rows]

    def set_refunded_qty(
        self, tenant_id: uuid.UUID, receipt_id: uuid.UUID, qty_by_line: dict[int, Any]
    ) -> None:
        if not qty_by_line:
            return
        self.conn.execute(
            sa.update(receipt_lines)
            .where(
                receipt_lines.c.tenant_id == tenant_id,
                receipt_lines.c.receipt_id == receipt_id,
                receipt_lines.c.line_no == sa.bindparam("_line"),
            )
            .values(refunded_qty=sa.bindparam("_qty")),
            [{"_line": line, "_qty": qty} for line, qty in sorted(qty_by_line.items())],
        )

    def member_receipts(
        self,
        tenant_id: uuid.UUID,
        member_ids: Sequence[uuid.UUID],
        before: uuid.UUID | None,
        limit: int,
    ) -> list[Row]:
        stmt = sa.select(receipts).where(
            receipts.c.tenant_id == tenant_id, receipts.c.member_id.in_(list(member_ids))
        )
        if before is not None:
            stmt = stmt.where(receipts.c.id < before)
        rows = self.conn.execute(stmt.order_by(receipts.c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    def count_member_purchases(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> int:
        count = self.conn.execute(_COUNT_PURCHASES, {"t": tenant_id, "m": member_id})
        return int(count.scalar_one())

    def stale_held_receipts(
        self, now: datetime, limit: int, tenant_id: uuid.UUID | None = None
    ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        stmt = sa.select(receipts.c.tenant_id, receipts.c.id).where(
            receipts.c.status == "held", receipts.c.hold_expires_at <= now
        )
        if tenant_id is not None:
            stmt = stmt.where(receipts.c.tenant_id == tenant_id)
        return [(r.tenant_id, r.id) for r in self.conn.execute(stmt.limit(limit))]

    # ---- refunds -----------------------------------------------------------------------
    def refund_by_key(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID, key: str) -> Row | None:
        return _one(
            self.conn.execute(
                sa.select(refunds).where(
                    refunds.c.tenant_id == tenant_id,
                    refunds.c.receipt_id == receipt_id,
                    refunds.c.refund_key == key,
                )
            )
        )

    def insert_refund(self, row: Row) -> None:
        self.conn.execute(sa.insert(refunds), row)

    def refunds_of(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID) -> list[Row]:
        rows = self.conn.execute(
            sa.select(refunds)
            .where(refunds.c.tenant_id == tenant_id, refunds.c.receipt_id == receipt_id)
            .order_by(refunds.c.id)
        )
        return [dict(r._mapping) for r in rows]

    # ---- coupons -----------------------------------------------------------------------
    def insert_coupon(self, row: Row) -> None:
        self.conn.execute(sa.insert(coupons), row)

    def coupons_of(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> list[Row]:
        rows = self.conn.execute(
            sa.select(coupons)
            .where(coupons.c.tenant_id == tenant_id, coupons.c.member_id == member_id)
            .order_by(coupons.c.id)
        )
        return [dict(r._mapping) for r in rows]


# ---- PostgreSQL: a receipt and its lines in one statement -----------------------------------
# The receipt is a CTE inserting one row from a JSON object, the lines the main INSERT, from
# a JSON array in its order (serial ids follow it, as with executemany). Columns are the keys
# the caller passes, so the rows are the ones ``sa.insert`` would write; the text and the
# value encoders are cached per pair of key sets (a stable text also lets psycopg prepare it).
_Encoder = Callable[[Row], Row]
_PG_RECEIPT_SQL: dict[tuple[tuple[str, ...], tuple[str, ...], bool], Any] = {}


def _pg_json(value: Any) -> str:
    return compact_json(value)


def _pg_timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset; naive datetimes are refused (as UtcDateTime does)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: store timezone-aware timestamps")
    return value.astimezone(UTC).isoformat()


def _pg_text(value: Any) -> str | None:
    # UUIDs as text; Decimals as text too, so quantities reach numeric exactly.
    return None if value is None else str(value)


def _pg_column(column: sa.Column[Any]) -> tuple[str, str, Callable[[Any], Any] | None]:
    """(recordset type, select expression, value encoder) of one column."""
    name, kind = column.name, column.type
    if isinstance(kind, UtcDateTime):
        return "timestamptz", f"r.{name}", _pg_timestamp
    if isinstance(kind, sa.Uuid):
        return "uuid", f"r.{name}", _pg_text
    if isinstance(kind, sa.JSON):
        # JSON null comes out of the recordset as SQL NULL; sa.JSON stores None as 'null'.
        return "jsonb", f"COALESCE(r.{name}, 'null'::jsonb)", None
    if isinstance(kind, sa.Numeric):
        return "numeric", f"r.{name}", _pg_text
    if isinstance(kind, sa.Integer):
        return "bigint", f"r.{name}", None
    if isinstance(kind, sa.Boolean):
        return "boolean", f"r.{name}", None
    if isinstance(kind, sa.String):
        return "text", f"r.{name}", None
    raise TypeError(f"no PostgreSQL recordset type for {column}")


def _pg_encoder(table: sa.Table, keys: tuple[str, ...]) -> tuple[str, str, str, _Encoder]:
    """(column list, select list, recordset definitions, row encoder) for ``keys``."""
    specs = [(key, *_pg_column(table.c[key])) for key in keys]
    encoders = [(key, encode) for key, _, _, encode in specs if encode is not None]

    def encode(row: Row) -> Row:
        out = dict(row)
        for key, fn in encoders:
            out[key] = fn(out[key])
        return out

    return (
        ", ".join(keys),
        ", ".join(expr for _, _, expr, _ in specs),
        ", ".join(f"{key} {pg_type}" for key, pg_type, _, _ in specs),
        encode,
    )


def _pg_receipt_statement(
    row_keys: tuple[str, ...], line_keys: tuple[str, ...], if_new: bool = False
) -> tuple[str, _Encoder, _Encoder] | Literal[False]:
    """The statement and encoders for these key sets; False (use the two statements) when a
    key is not a column, or the tables are not what this was written for."""
    if not (
        set(row_keys) <= set(receipts.c.keys()) and set(line_keys) <= set(receipt_lines.c.keys())
    ):
        return False
    # The receipt's JSON columns (its stored answer, ~3.5 kB for ten lines) go as parameters
    # of their own, cast to jsonb once: inside the record's JSON, PostgreSQL parsed them
    # three times (the cast to json, json_to_record, then jsonb's input). The stored answer
    # cost a purchase 0.23 ms of database CPU before, 0.12 ms after
    # (bench/till_sql_ceiling.py --breakdown).
    json_keys = tuple(k for k in row_keys if isinstance(receipts.c[k].type, sa.JSON))
    record_keys = tuple(k for k in row_keys if k not in json_keys)
    try:
        r_cols, r_exprs, r_defs, encode_record = _pg_encoder(receipts, record_keys)
        l_cols, l_exprs, l_defs, encode_line = _pg_encoder(receipt_lines, line_keys)
    except TypeError:
        return False
    if json_keys:
        r_cols = ", ".join((r_cols, *json_keys))
        r_exprs = ", ".join(
            (r_exprs, *(f"COALESCE(CAST(%(json_{k})s AS jsonb), 'null'::jsonb)" for k in json_keys))
        )

    def encode_row(row: Row) -> Row:
        """The record's fields, and each JSON column's text as ``json_<column>``."""
        params: Row = {"receipt": _pg_json(encode_record({k: row[k] for k in record_keys}))}
        for key in json_keys:
            value = row[key]
            params[f"json_{key}"] = None if value is None else _pg_json(value)
        return params

    claim = (
        " ON CONFLICT (tenant_id, outlet_id, receipt_number) DO NOTHING RETURNING id"
        if if_new
        else ""
    )
    written = " WHERE EXISTS (SELECT 1 FROM w_receipt)" if if_new else ""
    sql = (
        f"WITH w_receipt AS (INSERT INTO receipts ({r_cols}) SELECT {r_exprs}"  # noqa: S608 - names from our schema
        f" FROM json_to_record(CAST(%(receipt)s AS json)) AS r({r_defs}){claim})"
        f" INSERT INTO receipt_lines ({l_cols}) SELECT {l_exprs}"
        f" FROM ROWS FROM (json_to_recordset(CAST(%(lines)s AS json)) AS ({l_defs}))"
        f" WITH ORDINALITY AS r({', '.join(line_keys)}, n){written} ORDER BY r.n"
    )
    return sql, encode_row, encode_line
