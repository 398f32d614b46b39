"""Ledger storage: locked member accounts, lots, plans written in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import UpdateBase

from kopilka.adapters.db.driver_sql import DriverStatement, driver_rowcount, driver_rows
from kopilka.adapters.db.driver_sqlite import compiled_write, sqlite_execute, sqlite_rows
from kopilka.adapters.db.tables import (
    accounts,
    holds,
    ledger_transactions,
    lot_movements,
    lots,
    postings,
)
from kopilka.adapters.db.types import compact_json
from kopilka.domain.ledger.lots import Lot, LotStatus
from kopilka.domain.ledger.model import MEMBER_ACCOUNT_KINDS, TENANT_ACCOUNT_KINDS, AccountKind
from kopilka.domain.ledger.plan import AccountState, LedgerPlan
from kopilka.ids import new_id

TENANT_OWNER = "tenant"


def member_owner(member_id: uuid.UUID) -> str:
    return f"member:{member_id}"


@dataclass(frozen=True)
class TransactionRow:
    id: uuid.UUID
    tenant_id: uuid.UUID
    member_id: uuid.UUID | None
    counterparty_member_id: uuid.UUID | None
    kind: str
    currency: str
    amount: int
    reason: str | None
    actor: str
    source_type: str
    source_id: str | None
    reverses_id: uuid.UUID | None
    params: dict[str, Any]
    occurred_at: datetime
    recorded_at: datetime


@dataclass(frozen=True)
class HoldRow:
    id: uuid.UUID
    tenant_id: uuid.UUID
    member_id: uuid.UUID
    currency: str
    amount: int
    captured: int
    status: str
    reference: str | None
    expires_at: datetime
    hold_transaction_id: uuid.UUID
    created_at: datetime
    closed_at: datetime | None


# A member's open lots are read on every purchase, and a regular customer has hundreds:
# only the columns a Lot needs, and the status by dict look-up (an Enum call costs more).
_LOT_COLUMNS = (
    lots.c.id,
    lots.c.amount,
    lots.c.remaining,
    lots.c.status,
    lots.c.available_at,
    lots.c.expires_at,
)
_LOT_STATUS = {status.value: status for status in LotStatus}


class TakenLot(NamedTuple):
    """Points an origin (a spend, a hold) took from one lot and still holds."""

    lot_id: uuid.UUID
    amount: int
    member_id: uuid.UUID  # whose lot it is


def _lots(rows: Iterable[Sequence[Any]]) -> list[Lot]:
    """Lots from rows of :data:`_LOT_COLUMNS`."""
    status_of = _LOT_STATUS
    return [
        Lot(lot_id, amount, remaining, status_of[status], available_at, expires_at)
        for lot_id, amount, remaining, status, available_at, expires_at in rows
    ]


def _txn(row: Any) -> TransactionRow:
    return TransactionRow(
        id=row.id,
        tenant_id=row.tenant_id,
        member_id=row.member_id,
        counterparty_member_id=row.counterparty_member_id,
        kind=row.kind,
        currency=row.currency,
        amount=row.amount,
        reason=row.reason,
        actor=row.actor,
        source_type=row.source_type,
        source_id=row.source_id,
        reverses_id=row.reverses_id,
        params=row.params or {},
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
    )


# Hot statements are built once: constructing a Core select() per call costs more Python
# time than executing it (bench/micro_statements.py measured ~170 us a statement).
_READ_ACCOUNTS = (
    sa.select(accounts.c.id, accounts.c.kind, accounts.c.balance, accounts.c.allow_debt)
    .where(
        accounts.c.tenant_id == sa.bindparam("t"),
        accounts.c.owner == sa.bindparam("o"),
        accounts.c.currency == sa.bindparam("c"),
    )
    .order_by(accounts.c.id)
)
_LOCK_ACCOUNTS = _READ_ACCOUNTS.with_for_update()
_OPEN_LOTS = sa.select(*_LOT_COLUMNS).where(
    lots.c.tenant_id == sa.bindparam("t"),
    lots.c.member_id == sa.bindparam("m"),
    lots.c.currency == sa.bindparam("c"),
    lots.c.is_open == sa.true(),  # pending, or active with points left
)
# The open lots the clock has made due (see domain.ledger.lots.due_transitions): what a
# book that will not spend needs, however many open lots a regular customer has gathered.
_DUE_LOTS = _OPEN_LOTS.where(
    sa.or_(
        lots.c.expires_at <= sa.bindparam("now"),
        sa.and_(
            lots.c.status == LotStatus.PENDING.value, lots.c.available_at <= sa.bindparam("now")
        ),
    )
)


# A member's balance in one statement, for reads without a lock: the accounts, the open lots
# a balance shows one by one (pending, or expiring by ``soon``), and the points of the other
# open lots summed by the database, so a regular customer's hundreds of lasting lots are
# one row (a lot's columns in the account's places: id, status for kind, amount for balance,
# remaining, -, available_at, expires_at; the sum in remaining). The conditions are
# _READ_ACCOUNTS' and _OPEN_LOTS'.
_MEMBER_BALANCE_PG = (
    "SELECT 'a', id, kind, balance, NULL::bigint, allow_debt, NULL::timestamptz,"
    " NULL::timestamptz FROM accounts"
    " WHERE tenant_id = %(t)s AND owner = %(o)s AND currency = %(c)s"
    " UNION ALL"
    " SELECT 'l', id, status, amount, remaining, NULL::boolean, available_at, expires_at"
    " FROM lots WHERE tenant_id = %(t)s AND member_id = %(m)s AND currency = %(c)s"
    " AND is_open AND (status = 'pending' OR expires_at <= %(soon)s)"
    " UNION ALL"
    " SELECT 's', NULL, NULL, NULL, sum(remaining), NULL, NULL, NULL"
    " FROM lots WHERE tenant_id = %(t)s AND member_id = %(m)s AND currency = %(c)s"
    " AND is_open AND status = 'active' AND (expires_at IS NULL OR expires_at > %(soon)s)"
)
_SHOWN_LOTS = _OPEN_LOTS.where(
    sa.or_(lots.c.status == LotStatus.PENDING.value, lots.c.expires_at <= sa.bindparam("soon"))
)
_LASTING_POINTS = sa.select(sa.func.coalesce(sa.func.sum(lots.c.remaining), 0)).where(
    lots.c.tenant_id == sa.bindparam("t"),
    lots.c.member_id == sa.bindparam("m"),
    lots.c.currency == sa.bindparam("c"),
    lots.c.is_open == sa.true(),
    lots.c.status == LotStatus.ACTIVE.value,
    sa.or_(lots.c.expires_at.is_(None), lots.c.expires_at > sa.bindparam("soon")),
)
# The till's reads run on the driver connection on PostgreSQL (see driver_sql).
_READ_ACCOUNTS_PG = DriverStatement(_READ_ACCOUNTS)
_LOCK_ACCOUNTS_PG = DriverStatement(_LOCK_ACCOUNTS)
_OPEN_LOTS_PG = DriverStatement(_OPEN_LOTS)
_DUE_LOTS_PG = DriverStatement(_DUE_LOTS)


# ---- Elsewhere: a plan in one statement per table (see _apply_statements) -------------
def _set_balance() -> UpdateBase:
    return (
        sa.update(accounts)
        .where(accounts.c.id == sa.bindparam("_id"))
        .values(balance=sa.bindparam("_balance"))
    )


def _set_lot() -> UpdateBase:
    return (
        sa.update(lots)
        .where(lots.c.id == sa.bindparam("_id"))
        .values(remaining=sa.bindparam("_remaining"), status=sa.bindparam("_status"))
    )


# ---- PostgreSQL: a plan in one statement --------------------------------------------------
# Each part of a plan is a data-modifying CTE reading its rows from one JSON parameter; only
# the parts a plan has are in its statement, whose text is cached per combination of parts
# (a stable text also lets psycopg prepare it). The parts never touch the same row (the CTEs
# of a statement share one snapshot and run in no set order): accounts are only updated,
# transactions, postings and movements only inserted, and lots are inserted or updated, never
# both (``apply`` falls back to one statement per table otherwise). Inserts keep the plan's
# order (ORDER BY ordinality), so serial ids of postings and movements follow it as before.
# The updates are scoped by tenant too (the plan's ids are the tenant's own rows, so the rows
# are the same) and get the ids sorted, as the executemany did: the planner walks them in
# that order against the primary key (checked with EXPLAIN, also at 200k lots), so rows are
# locked in ascending id order. The changed accounts and lots are also named by
# ``id = ANY(ARRAY(...their ids...))``:
# the planner reckons a JSON recordset at 100 rows whatever it holds, and joined to a table
# of a few thousand to tens of thousands of rows (a tenant's lots) that cost more as index
# probes than as one pass over the table, so every purchase read all of a tenant's lots
# (measured: 1.4 of 1.5 ms of the database's CPU for a purchase, on a tenant with 10,000
# lots). ``id = ANY(array)`` is an index condition whatever the estimate.


_PG_PART_NAMES = ("accounts", "transactions", "postings", "new_lots", "changed_lots", "movements")
_PG_PARTS = {
    "accounts": (
        "UPDATE accounts AS a SET balance = r.balance"
        " FROM json_to_recordset(CAST(%(accounts)s AS json)) AS r(id uuid, balance bigint)"
        " WHERE a.tenant_id = CAST(%(tenant)s AS uuid) AND a.id = r.id"
        " AND a.id = ANY(ARRAY(SELECT CAST(e->>'id' AS uuid)"
        " FROM json_array_elements(CAST(%(accounts)s AS json)) AS e))"
    ),
    "transactions": (
        "INSERT INTO ledger_transactions (id, tenant_id, member_id, counterparty_member_id,"
        " kind, currency, amount, reason, actor, source_type, source_id, reverses_id, params,"
        " occurred_at, recorded_at)"
        " SELECT r.id, CAST(%(tenant)s AS uuid), r.member_id, r.counterparty_member_id, r.kind,"
        " r.currency, r.amount, r.reason, r.actor, r.source_type, r.source_id, r.reverses_id,"
        # JSON null comes out of the recordset as SQL NULL; the column stores JSON 'null'.
        " COALESCE(r.params, 'null'::jsonb), r.occurred_at, CAST(%(at)s AS timestamptz)"
        " FROM ROWS FROM (json_to_recordset(CAST(%(transactions)s AS json)) AS ("
        "id uuid, member_id uuid, counterparty_member_id uuid, kind text, currency text,"
        " amount bigint, reason text, actor text, source_type text, source_id text,"
        " reverses_id uuid, params jsonb, occurred_at timestamptz"
        ")) WITH ORDINALITY AS r(id, member_id, counterparty_member_id, kind, currency, amount,"
        " reason, actor, source_type, source_id, reverses_id, params, occurred_at, n)"
        " ORDER BY r.n"
    ),
    "postings": (
        "INSERT INTO postings (tenant_id, transaction_id, account_id, amount, balance_after)"
        " SELECT CAST(%(tenant)s AS uuid), r.transaction_id, r.account_id, r.amount,"
        " r.balance_after"
        " FROM ROWS FROM (json_to_recordset(CAST(%(postings)s AS json)) AS ("
        "transaction_id uuid, account_id uuid, amount bigint, balance_after bigint"
        ")) WITH ORDINALITY AS r(transaction_id, account_id, amount, balance_after, n)"
        " ORDER BY r.n"
    ),
    "new_lots": (
        "INSERT INTO lots (id, tenant_id, member_id, currency, amount, remaining, status,"
        " available_at, expires_at, source_transaction_id, created_at)"
        " SELECT r.id, CAST(%(tenant)s AS uuid), r.member_id, r.currency, r.amount,"
        " r.remaining, r.status, r.available_at, r.expires_at, r.source_transaction_id,"
        " CAST(%(at)s AS timestamptz)"
        " FROM ROWS FROM (json_to_recordset(CAST(%(new_lots)s AS json)) AS ("
        "id uuid, member_id uuid, currency text, amount bigint, remaining bigint, status text,"
        " available_at timestamptz, expires_at timestamptz, source_transaction_id uuid"
        ")) WITH ORDINALITY AS r(id, member_id, currency, amount, remaining, status,"
        " available_at, expires_at, source_transaction_id, n)"
        " ORDER BY r.n"
    ),
    "changed_lots": (
        "UPDATE lots AS l SET remaining = r.remaining, status = r.status"
        " FROM json_to_recordset(CAST(%(changed_lots)s AS json))"
        " AS r(id uuid, remaining bigint, status text)"
        " WHERE l.tenant_id = CAST(%(tenant)s AS uuid) AND l.id = r.id"
        " AND l.id = ANY(ARRAY(SELECT CAST(e->>'id' AS uuid)"
        " FROM json_array_elements(CAST(%(changed_lots)s AS json)) AS e))"
    ),
    "movements": (
        "INSERT INTO lot_movements (tenant_id, transaction_id, lot_id, amount, origin_id)"
        " SELECT CAST(%(tenant)s AS uuid), r.transaction_id, r.lot_id, r.amount, r.origin_id"
        " FROM ROWS FROM (json_to_recordset(CAST(%(movements)s AS json)) AS ("
        "transaction_id uuid, lot_id uuid, amount bigint, origin_id uuid"
        ")) WITH ORDINALITY AS r(transaction_id, lot_id, amount, origin_id, n)"
        " ORDER BY r.n"
    ),
}
# Statement text by which parts are present (a tuple of flags in _PG_PART_NAMES order).
_PG_APPLY_SQL: dict[tuple[bool, ...], str] = {}


def _pg_apply_statement(parts: tuple[bool, ...]) -> str:
    """One statement writing the present parts; it ends in a trivial SELECT."""
    ctes = [
        f"w_{name} AS ({_PG_PARTS[name]})"
        for name, present in zip(_PG_PART_NAMES, parts, strict=True)
        if present
    ]
    return "WITH " + ", ".join(ctes) + " SELECT 1"


def _json(rows: list[dict[str, Any]]) -> str:
    return compact_json(rows)


def _str(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with its offset; naive datetimes are refused (as UtcDateTime does)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime refused: store timezone-aware timestamps")
    return value.astimezone(UTC).isoformat()


class SqlLedgerStore:
    """Ledger reads and writes on one connection inside the unit of work's transaction."""

    def __init__(self, conn: sa.Connection, account_cache: dict[Any, uuid.UUID]) -> None:
        self.conn = conn
        self._dialect = conn.dialect.name
        # Account ids never change once created: cache tenant account ids per engine. Ids
        # seen in this transaction are staged and published only after its COMMIT: an
        # account created by a transaction that rolls back must never be cached.
        self._account_cache = account_cache
        self._staged: dict[Any, uuid.UUID] = {}

    # ---- accounts ----------------------------------------------------------------------
    def _insert_ignore(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        stmt: Any
        if self._dialect == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing()
        else:
            stmt = sqlite.insert(table).on_conflict_do_nothing()
        self.conn.execute(stmt, rows)

    def _account_rows(
        self,
        tenant_id: uuid.UUID,
        owner: str,
        member_id: uuid.UUID | None,
        kinds: Iterable[AccountKind],
        currency: str,
        now: datetime,
        allow_debt: bool,
    ) -> list[dict[str, Any]]:
        return [
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "owner": owner,
                "member_id": member_id,
                "kind": str(kind),
                "currency": currency,
                "balance": 0,
                "allow_debt": allow_debt and kind is AccountKind.WALLET,
                "created_at": now,
            }
            for kind in kinds
        ]

    def create_member_accounts(
        self,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        currency: str,
        now: datetime,
        allow_debt: bool,
    ) -> None:
        self._insert_ignore(
            accounts,
            self._account_rows(
                tenant_id,
                member_owner(member_id),
                member_id,
                sorted(MEMBER_ACCOUNT_KINDS),
                currency,
                now,
                allow_debt,
            ),
        )

    def tenant_accounts(
        self, tenant_id: uuid.UUID, currency: str, now: datetime
    ) -> dict[AccountKind, uuid.UUID]:
        """Ids of the tenant's issued, expired, redeemed and adjustment accounts."""
        found: dict[AccountKind, uuid.UUID] = {}
        for kind in TENANT_ACCOUNT_KINDS:
            key = (tenant_id, kind, currency)
            cached = self._account_cache.get(key) or self._staged.get(key)
            if cached is not None:
                found[kind] = cached
        if len(found) == len(TENANT_ACCOUNT_KINDS):
            return found
        self._insert_ignore(
            accounts,
            self._account_rows(
                tenant_id, TENANT_OWNER, None, sorted(TENANT_ACCOUNT_KINDS), currency, now, False
            ),
        )
        rows = self.conn.execute(
            sa.select(accounts.c.id, accounts.c.kind).where(
                accounts.c.tenant_id == tenant_id,
                accounts.c.owner == TENANT_OWNER,
                accounts.c.currency == currency,
            )
        ).all()
        for row in rows:
            kind = AccountKind(row.kind)
            found[kind] = row.id
            self._staged[(tenant_id, kind, currency)] = row.id
        return found

    def publish(self) -> None:
        """The transaction committed: the account ids it saw may be cached for the process."""
        self._account_cache.update(self._staged)
        self._staged.clear()

    def lock_member_accounts(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, currency: str, *, lock: bool = True
    ) -> dict[AccountKind, AccountState]:
        """Lock the member's accounts (ascending id, so two lockers never deadlock); with
        ``lock=False`` just read them."""
        params = {"t": tenant_id, "o": member_owner(member_id), "c": currency}
        rows: Any
        if self._dialect == "postgresql":
            rows = driver_rows(self.conn, _LOCK_ACCOUNTS_PG if lock else _READ_ACCOUNTS_PG, params)
        else:
            rows = sqlite_rows(self.conn, _READ_ACCOUNTS, params)
        found = {}
        for account_id, kind, balance, allow_debt in rows:
            kind = AccountKind(kind)
            found[kind] = AccountState(account_id, kind, balance, allow_debt)
        return found

    def lock_many_member_accounts(
        self, tenant_id: uuid.UUID, member_ids: Sequence[uuid.UUID], currency: str
    ) -> dict[uuid.UUID, dict[AccountKind, AccountState]]:
        """Lock several members' accounts in one ascending-id pass."""
        owners = {member_owner(m): m for m in member_ids}
        stmt = (
            sa.select(
                accounts.c.id,
                accounts.c.owner,
                accounts.c.kind,
                accounts.c.balance,
                accounts.c.allow_debt,
            )
            .where(
                accounts.c.tenant_id == tenant_id,
                accounts.c.owner.in_(list(owners)),
                accounts.c.currency == currency,
            )
            .order_by(accounts.c.id)
        )
        if self._dialect == "postgresql":
            stmt = stmt.with_for_update()
        result: dict[uuid.UUID, dict[AccountKind, AccountState]] = {m: {} for m in member_ids}
        for r in self.conn.execute(stmt):
            result[owners[r.owner]][AccountKind(r.kind)] = AccountState(
                r.id, AccountKind(r.kind), r.balance, r.allow_debt
            )
        return result

    def set_allow_debt(self, tenant_id: uuid.UUID, account_id: uuid.UUID, allow: bool) -> None:
        self.conn.execute(
            sa.update(accounts)
            .where(accounts.c.tenant_id == tenant_id, accounts.c.id == account_id)
            .values(allow_debt=allow)
        )

    def read_member_balance(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, currency: str, soon: datetime
    ) -> tuple[dict[AccountKind, AccountState], list[Lot], int]:
        """What a member's balance needs, without a lock (the till's calculation, the
        balance API): the accounts, the open lots that are pending or expire by ``soon``,
        and the points of the other open lots, summed (they are simply available). One
        statement on PostgreSQL, so one snapshot sees it all."""
        if self._dialect != "postgresql":
            params = {"t": tenant_id, "m": member_id, "c": currency, "soon": soon}
            return (
                self.lock_member_accounts(tenant_id, member_id, currency, lock=False),
                _lots(sqlite_rows(self.conn, _SHOWN_LOTS, params)),
                int(sqlite_rows(self.conn, _LASTING_POINTS, params)[0][0]),
            )
        params = {
            "t": tenant_id,
            "o": member_owner(member_id),
            "m": member_id,
            "c": currency,
            "soon": soon,
        }
        accounts_found: dict[AccountKind, AccountState] = {}
        shown = []
        lasting = 0
        for row in driver_rows(self.conn, _MEMBER_BALANCE_PG, params):
            if row[0] == "a":
                kind = AccountKind(row[2])
                accounts_found[kind] = AccountState(row[1], kind, row[3], row[5])
            elif row[0] == "l":  # a lot: id, status, amount, remaining, available_at, expires_at
                shown.append((row[1], row[3], row[4], row[2], row[6], row[7]))
            else:
                lasting = int(row[4] or 0)
        return accounts_found, _lots(shown), lasting

    # ---- lots --------------------------------------------------------------------------
    def open_lots(self, tenant_id: uuid.UUID, member_id: uuid.UUID, currency: str) -> list[Lot]:
        """Pending lots and active lots with points left."""
        params = {"t": tenant_id, "m": member_id, "c": currency}
        if self._dialect == "postgresql":
            return _lots(driver_rows(self.conn, _OPEN_LOTS_PG, params))
        return _lots(sqlite_rows(self.conn, _OPEN_LOTS, params))

    def due_lots(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, currency: str, now: datetime
    ) -> list[Lot]:
        """The open lots due to activate or expire at ``now``."""
        params = {"t": tenant_id, "m": member_id, "c": currency, "now": now}
        if self._dialect == "postgresql":
            return _lots(driver_rows(self.conn, _DUE_LOTS_PG, params))
        return _lots(sqlite_rows(self.conn, _DUE_LOTS, params))

    def lots_by_id(self, tenant_id: uuid.UUID, ids: Iterable[uuid.UUID]) -> list[Lot]:
        wanted = list(ids)
        if not wanted:
            return []
        rows = self.conn.execute(
            sa.select(*_LOT_COLUMNS).where(lots.c.tenant_id == tenant_id, lots.c.id.in_(wanted))
        )
        return _lots(rows)

    def lots_from_transaction(self, tenant_id: uuid.UUID, txn_id: uuid.UUID) -> list[Lot]:
        rows = self.conn.execute(
            sa.select(*_LOT_COLUMNS)
            .where(lots.c.tenant_id == tenant_id, lots.c.source_transaction_id == txn_id)
            .order_by(lots.c.id)
        )
        return _lots(rows)

    def net_taken_by_origin(self, tenant_id: uuid.UUID, origin_id: uuid.UUID) -> list[TakenLot]:
        """Per lot, points an origin took and still holds, in the order it took them, with
        the lot's member (a lot of a profile merged away stays that profile's)."""
        rows = self.conn.execute(
            sa.select(
                lot_movements.c.lot_id,
                lots.c.member_id,
                sa.func.sum(lot_movements.c.amount).label("net"),
                sa.func.min(lot_movements.c.id).label("first"),
            )
            .join(lots, lots.c.id == lot_movements.c.lot_id)
            .where(lot_movements.c.tenant_id == tenant_id, lot_movements.c.origin_id == origin_id)
            .group_by(lot_movements.c.lot_id, lots.c.member_id)
            .order_by(sa.text("first"))
        )
        return [TakenLot(r.lot_id, -int(r.net), r.member_id) for r in rows if int(r.net) < 0]

    # ---- transactions ------------------------------------------------------------------
    def get_transaction(self, tenant_id: uuid.UUID, txn_id: uuid.UUID) -> TransactionRow | None:
        row = self.conn.execute(
            sa.select(ledger_transactions).where(
                ledger_transactions.c.tenant_id == tenant_id, ledger_transactions.c.id == txn_id
            )
        ).first()
        return _txn(row) if row else None

    def reversals_of(self, tenant_id: uuid.UUID, txn_id: uuid.UUID) -> list[TransactionRow]:
        rows = self.conn.execute(
            sa.select(ledger_transactions)
            .where(
                ledger_transactions.c.tenant_id == tenant_id,
                ledger_transactions.c.reverses_id == txn_id,
            )
            .order_by(ledger_transactions.c.id)
        )
        return [_txn(r) for r in rows]

    def postings_of(self, tenant_id: uuid.UUID, txn_ids: Sequence[uuid.UUID]) -> list[Any]:
        if not txn_ids:
            return []
        return list(
            self.conn.execute(
                sa.select(
                    postings.c.transaction_id,
                    postings.c.account_id,
                    postings.c.amount,
                    postings.c.balance_after,
                    accounts.c.kind,
                    accounts.c.member_id,
                )
                .join(accounts, accounts.c.id == postings.c.account_id)
                .where(
                    postings.c.tenant_id == tenant_id,
                    postings.c.transaction_id.in_(list(txn_ids)),
                )
                .order_by(postings.c.id)
            )
        )

    def history(
        self,
        tenant_id: uuid.UUID,
        member_ids: Sequence[uuid.UUID],
        before: uuid.UUID | None,
        limit: int,
    ) -> list[TransactionRow]:
        """A member's transactions, newest first (merged profiles included)."""
        ids = list(member_ids)
        stmt = sa.select(ledger_transactions).where(
            ledger_transactions.c.tenant_id == tenant_id,
            sa.or_(
                ledger_transactions.c.member_id.in_(ids),
                ledger_transactions.c.counterparty_member_id.in_(ids),
            ),
        )
        if before is not None:
            stmt = stmt.where(ledger_transactions.c.id < before)
        stmt = stmt.order_by(ledger_transactions.c.id.desc()).limit(limit)
        return [_txn(r) for r in self.conn.execute(stmt)]

    # ---- holds -------------------------------------------------------------------------
    def insert_hold(self, row: dict[str, Any]) -> None:
        self.conn.execute(sa.insert(holds), row)

    def get_hold(self, tenant_id: uuid.UUID, hold_id: uuid.UUID, lock: bool) -> HoldRow | None:
        stmt = sa.select(holds).where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
        if lock and self._dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        if row is None:
            return None
        return HoldRow(**{c: getattr(row, c) for c in HoldRow.__dataclass_fields__})

    def close_hold(
        self, tenant_id: uuid.UUID, hold_id: uuid.UUID, status: str, captured: int, at: datetime
    ) -> None:
        self.conn.execute(
            sa.update(holds)
            .where(holds.c.tenant_id == tenant_id, holds.c.id == hold_id)
            .values(status=status, captured=captured, closed_at=at)
        )

    def lapsed_holds(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, currency: str, now: datetime
    ) -> list[HoldRow]:
        """Holds still marked active whose time is up: their points are the member's again."""
        rows = self.conn.execute(
            sa.select(holds)
            .where(
                holds.c.tenant_id == tenant_id,
                holds.c.member_id == member_id,
                holds.c.currency == currency,
                holds.c.status == "active",
                holds.c.expires_at <= now,
            )
            .order_by(holds.c.id)
        )
        return [HoldRow(**{c: getattr(r, c) for c in HoldRow.__dataclass_fields__}) for r in rows]

    def active_holds_of(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> int:
        return int(
            self.conn.execute(
                sa.select(sa.func.count())
                .select_from(holds)
                .where(
                    holds.c.tenant_id == tenant_id,
                    holds.c.member_id == member_id,
                    holds.c.status == "active",
                )
            ).scalar_one()
        )

    # ---- jobs --------------------------------------------------------------------------
    def members_with_due_lots(
        self, now: datetime, limit: int, tenant_id: uuid.UUID | None = None
    ) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
        due = sa.or_(
            sa.and_(lots.c.status == LotStatus.PENDING.value, lots.c.available_at <= now),
            sa.and_(lots.c.is_open == sa.true(), lots.c.expires_at <= now, lots.c.remaining > 0),
        )
        stmt = sa.select(lots.c.tenant_id, lots.c.member_id, lots.c.currency).where(due)
        if tenant_id is not None:
            stmt = stmt.where(lots.c.tenant_id == tenant_id)
        # In a fixed order (ids are time-ordered: the oldest members first), so a run of the
        # jobs writes the same transactions in the same order whatever the plan's hashing.
        stmt = (
            stmt.distinct()
            .order_by(lots.c.tenant_id, lots.c.member_id, lots.c.currency)
            .limit(limit)
        )
        return [(r.tenant_id, r.member_id, r.currency) for r in self.conn.execute(stmt)]

    def stale_holds(
        self, now: datetime, limit: int, tenant_id: uuid.UUID | None = None
    ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        stmt = sa.select(holds.c.tenant_id, holds.c.id).where(
            holds.c.status == "active", holds.c.expires_at <= now
        )
        if tenant_id is not None:
            stmt = stmt.where(holds.c.tenant_id == tenant_id)
        stmt = stmt.order_by(holds.c.id).limit(limit)  # oldest first, in a fixed order
        return [(r.tenant_id, r.id) for r in self.conn.execute(stmt)]

    # ---- writing a plan ----------------------------------------------------------------
    def apply(self, tenant_id: uuid.UUID, plan: LedgerPlan, recorded_at: datetime) -> None:
        """Write a plan; the caller's transaction makes it all or nothing.

        On PostgreSQL the whole plan is one statement (see :func:`_pg_apply_statement`),
        unless a lot is both created and changed by the plan: the CTEs of one statement see
        one snapshot, so an UPDATE could not see the row its sibling INSERT adds.
        """
        if self._dialect == "postgresql" and (
            not plan.new_lots or plan.new_lots.keys().isdisjoint(plan.changed_lots)
        ):
            self._apply_pg(tenant_id, plan, recorded_at)
        else:
            self._apply_statements(tenant_id, plan, recorded_at)

    def _apply_pg(self, tenant_id: uuid.UUID, plan: LedgerPlan, recorded_at: datetime) -> None:
        """The plan as one statement of data-modifying CTEs fed by JSON parameters."""
        params: dict[str, Any] = {"tenant": tenant_id}
        touched = sorted({p.account_id for p in plan.postings if p.balance_after is not None})
        if touched:
            params["accounts"] = _json(
                [{"id": str(a), "balance": plan.accounts[a].balance} for a in touched]
            )
        if plan.transactions:
            params["transactions"] = _json(
                [
                    {
                        "id": str(t.id),
                        "member_id": _str(t.member_id),
                        "counterparty_member_id": _str(t.counterparty_member_id),
                        "kind": t.kind,
                        "currency": t.currency,
                        "amount": t.amount,
                        "reason": t.reason,
                        "actor": t.actor,
                        "source_type": t.source_type,
                        "source_id": t.source_id,
                        "reverses_id": _str(t.reverses_id),
                        "params": t.params,
                        "occurred_at": _timestamp(t.occurred_at),
                    }
                    for t in plan.transactions
                ]
            )
        if plan.postings:
            params["postings"] = _json(
                [
                    {
                        "transaction_id": str(p.transaction_id),
                        "account_id": str(p.account_id),
                        "amount": p.amount,
                        "balance_after": p.balance_after,
                    }
                    for p in plan.postings
                ]
            )
        if plan.new_lots:
            params["new_lots"] = _json(
                [
                    {
                        "id": str(lot.id),
                        "member_id": str(lot.member_id),
                        "currency": lot.currency,
                        "amount": lot.amount,
                        "remaining": lot.remaining,
                        "status": lot.status.value,
                        "available_at": _timestamp(lot.available_at),
                        "expires_at": _timestamp(lot.expires_at),
                        "source_transaction_id": str(lot.source_transaction_id),
                    }
                    for lot in plan.new_lots.values()
                ]
            )
        if plan.changed_lots:
            params["changed_lots"] = _json(
                [
                    {"id": str(lot_id), "remaining": remaining, "status": status.value}
                    for lot_id, (remaining, status) in sorted(plan.changed_lots.items())
                ]
            )
        if plan.movements:
            params["movements"] = _json(
                [
                    {
                        "transaction_id": str(m.transaction_id),
                        "lot_id": str(m.lot_id),
                        "amount": m.amount,
                        "origin_id": str(m.origin_id),
                    }
                    for m in plan.movements
                ]
            )
        if len(params) == 1:
            return  # nothing to write (the statement path sends nothing either)
        if "transactions" in params or "new_lots" in params:
            params["at"] = _timestamp(recorded_at)
        parts = tuple(name in params for name in _PG_PART_NAMES)
        sql = _PG_APPLY_SQL.get(parts)
        if sql is None:
            sql = _PG_APPLY_SQL[parts] = _pg_apply_statement(parts)
        driver_rowcount(self.conn, sql, params)

    def _apply_statements(
        self, tenant_id: uuid.UUID, plan: LedgerPlan, recorded_at: datetime
    ) -> None:
        """The plan as one statement per table (SQLite, and PostgreSQL's rare fallback)."""
        touched = {p.account_id for p in plan.postings if p.balance_after is not None}
        if touched:
            self._write(
                "accounts",
                _set_balance,
                [{"_id": a, "_balance": plan.accounts[a].balance} for a in sorted(touched)],
            )
        if plan.transactions:
            self._write(
                "transactions",
                lambda: sa.insert(ledger_transactions),
                [
                    {
                        "id": t.id,
                        "tenant_id": tenant_id,
                        "member_id": t.member_id,
                        "counterparty_member_id": t.counterparty_member_id,
                        "kind": t.kind,
                        "currency": t.currency,
                        "amount": t.amount,
                        "reason": t.reason,
                        "actor": t.actor,
                        "source_type": t.source_type,
                        "source_id": t.source_id,
                        "reverses_id": t.reverses_id,
                        "params": t.params,
                        "occurred_at": t.occurred_at,
                        "recorded_at": recorded_at,
                    }
                    for t in plan.transactions
                ],
            )
        if plan.postings:
            self._write(
                "postings",
                lambda: sa.insert(postings),
                [
                    {
                        "tenant_id": tenant_id,
                        "transaction_id": p.transaction_id,
                        "account_id": p.account_id,
                        "amount": p.amount,
                        "balance_after": p.balance_after,
                    }
                    for p in plan.postings
                ],
            )
        if plan.new_lots:
            self._write(
                "lots",
                lambda: sa.insert(lots),
                [
                    {
                        "id": lot.id,
                        "tenant_id": tenant_id,
                        "member_id": lot.member_id,
                        "currency": lot.currency,
                        "amount": lot.amount,
                        "remaining": lot.remaining,
                        "status": lot.status.value,
                        "available_at": lot.available_at,
                        "expires_at": lot.expires_at,
                        "source_transaction_id": lot.source_transaction_id,
                        "created_at": recorded_at,
                    }
                    for lot in plan.new_lots.values()
                ],
            )
        if plan.changed_lots:
            self._write(
                "changed_lots",
                _set_lot,
                [
                    {"_id": lot_id, "_remaining": remaining, "_status": status.value}
                    for lot_id, (remaining, status) in sorted(plan.changed_lots.items())
                ],
            )
        if plan.movements:
            self._write(
                "movements",
                lambda: sa.insert(lot_movements),
                [
                    {
                        "tenant_id": tenant_id,
                        "transaction_id": m.transaction_id,
                        "lot_id": m.lot_id,
                        "amount": m.amount,
                        "origin_id": m.origin_id,
                    }
                    for m in plan.movements
                ],
            )

    def _write(
        self, name: str, build: Callable[[], UpdateBase], rows: list[dict[str, Any]]
    ) -> None:
        """One statement for ``rows`` (all of one shape): on the sqlite3 connection on
        SQLite (see driver_sqlite), through SQLAlchemy elsewhere."""
        if self._dialect == "sqlite":
            keys = tuple(rows[0])
            write = compiled_write(self.conn, ("ledger", name, keys), build, keys)
            sqlite_execute(self.conn, write, rows)
        else:
            self.conn.execute(build(), rows)
