"""Tables and store of the families mechanic (pooled balances, transfers, donations)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from kopilka.adapters.db.ledger_store import member_owner
from kopilka.adapters.db.tables import accounts, holds, ledger_transactions, metadata
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.domain.errors import Conflict
from kopilka.domain.families.rules import PoolEntry
from kopilka.services.ports import UnitOfWork

Row = dict[str, Any]

# Contract shared with the ledger: while a member's row here is ``active``, the member's
# points live in the family's pool, whose ledger accounts carry ``member_id = family_id``.
# A family's id is its owner's member id: the pool is the owner's own account (accounts
# reference members, so a pool cannot be an account of its own without a fake member).
family_members = sa.Table(
    "family_members",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("family_id", sa.Uuid, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active or left
    sa.Column("joined_at", UtcDateTime, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # owner or member
    sa.Column("can_spend", sa.Boolean, nullable=False),
    # Points moved into the pool on joining, by currency (the owner's: the pool at creation).
    sa.Column("brought", Json, nullable=False),
    # A ledger id taken when the member joined: the pool's later entries are the member's
    # time inside (ids are time-ordered; the clock may stand still in tests, ids do not).
    sa.Column("since_txn", sa.Uuid, nullable=False),
    sa.Column("left_at", UtcDateTime),
    sa.PrimaryKeyConstraint("tenant_id", "member_id"),
    sa.Index(None, "tenant_id", "family_id"),
)

families = sa.Table(
    "families",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("id", sa.Uuid, nullable=False),  # the owner's member id
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active or dissolved
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("dissolved_at", UtcDateTime),
    sa.PrimaryKeyConstraint("tenant_id", "id"),
)

family_invitations = sa.Table(
    "family_invitations",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("code", sa.String(16), nullable=False),
    sa.Column("family_id", sa.Uuid, nullable=False),
    sa.Column("invitee_id", sa.Uuid),  # only this member may use it; null: anyone
    sa.Column("status", sa.String(16), nullable=False),  # open, used or revoked
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_by", sa.Uuid),
    sa.Column("used_at", UtcDateTime),
    sa.PrimaryKeyConstraint("tenant_id", "code"),
    sa.Index(None, "tenant_id", "family_id"),
)

point_transfers = sa.Table(
    "point_transfers",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("from_member_id", sa.Uuid, nullable=False),
    sa.Column("to_member_id", sa.Uuid, nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("out_transaction_id", sa.Uuid, nullable=False),
    sa.Column("in_transaction_id", sa.Uuid, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index(None, "tenant_id", "from_member_id", "created_at"),
    sa.Index(None, "tenant_id", "to_member_id", "created_at"),
)

donations = sa.Table(
    "donations",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("charity", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(16), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("transaction_id", sa.Uuid, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index(None, "tenant_id", "charity"),
    sa.Index(None, "tenant_id", "member_id"),
)

_FM = family_members.c
# Hot: every ledger book of every member asks it (see services.ledger_book.MemberBook).
_HOLDER = sa.select(_FM.family_id, _FM.can_spend).where(
    _FM.tenant_id == sa.bindparam("t"),
    _FM.member_id == sa.bindparam("m"),
    _FM.status == "active",
)


class Pool(NamedTuple):
    holder: uuid.UUID  # whose ledger accounts hold the member's points
    can_spend: bool
    family_id: uuid.UUID | None  # None: not in a family


# A pool just looked up, that ``pool_of`` answers without a query while the block of
# ``known_pool`` runs: (unit of work, tenant, member, pool). A context variable, so each
# request (thread) sees only its own.
_KNOWN: ContextVar[tuple[UnitOfWork, uuid.UUID, uuid.UUID, Pool] | None] = ContextVar(
    "kopilka_known_pool", default=None
)


@contextmanager
def known_pool(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID, pool: Pool
) -> Iterator[None]:
    """Inside the block, ``pool_of`` answers ``pool`` for this member in this unit of work
    (e.g. the till opens the books right after its own lookup: one query, not two). Keep
    the block short and free of family writes; the re-check after locking accounts
    (``check_still_own``) always asks the database."""
    token = _KNOWN.set((uow, tenant_id, member_id, pool))
    try:
        yield
    finally:
        _KNOWN.reset(token)


def family_key(tenant_id: uuid.UUID, member_id: uuid.UUID) -> tuple[Any, ...]:
    """The key of a member's family facts in ``UnitOfWork.prefetched``: (family id, can
    spend), or None for a member in no family."""
    return ("family", tenant_id, member_id)


def pool_of(uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID) -> Pool:
    """Where the member's points live: the family's pool while the member is in one, else
    the member's own accounts. One primary-key lookup (none inside ``known_pool``, nor
    after the till's member read brought it along)."""
    known = _KNOWN.get()
    if known is not None and known[0] is uow and known[2] == member_id and known[1] == tenant_id:
        return known[3]
    prefetched = uow.prefetched.get(family_key(tenant_id, member_id), False)
    if prefetched is None:
        return Pool(member_id, True, None)
    if prefetched is not False:
        family_id, can_spend = prefetched
        return Pool(family_id, can_spend, family_id)
    return _lookup(uow, tenant_id, member_id)


def _lookup(uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID) -> Pool:
    row = uow.execute(_HOLDER, {"t": tenant_id, "m": member_id}).first()
    if row is None:
        return Pool(member_id, True, None)
    return Pool(row.family_id, bool(row.can_spend), row.family_id)


def wallet_holder(uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID) -> uuid.UUID:
    """Whose ledger accounts hold the member's points (the family pool, or the member)."""
    return pool_of(uow, tenant_id, member_id).holder


def check_still_own(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID, accounts: Mapping[Any, Any]
) -> None:
    """After locking a member's own accounts: refuse (a retryable 409) if the member joined
    a family while the lock was awaited (PostgreSQL reads committed data per statement, so
    the lookup before the lock may be stale). Joining leaves the own accounts empty, so
    the lookup is repeated only for empty accounts; SQLite's writers run one at a time."""
    if uow.dialect != "postgresql" or any(a.balance for a in accounts.values()):
        return
    if _lookup(uow, tenant_id, member_id).holder != member_id:  # fresh: not known_pool's
        raise Conflict(
            "The member's family changed while this was processed; retry.",
            code="family_changed",
        )


class FamilyStore:
    """Reads and writes the families tables inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.postgres = uow.dialect == "postgresql"
        # Family writes go through this store: facts read before them may be stale.
        uow.prefetched.clear()

    def _one(self, stmt: Any, lock: bool = False) -> Row | None:
        if lock and self.postgres:
            stmt = stmt.with_for_update()
        row = self.uow.execute(stmt).first()
        return dict(row._mapping) if row is not None else None

    # ---- families ----------------------------------------------------------------------
    def family(self, tenant_id: uuid.UUID, family_id: uuid.UUID, lock: bool = False) -> Row | None:
        return self._one(
            sa.select(families).where(
                families.c.tenant_id == tenant_id, families.c.id == family_id
            ),
            lock,
        )

    def insert_family(self, row: Row) -> None:
        self.uow.execute(sa.insert(families).values(**row))

    def update_family(self, tenant_id: uuid.UUID, family_id: uuid.UUID, values: Row) -> None:
        self.uow.execute(
            sa.update(families)
            .where(families.c.tenant_id == tenant_id, families.c.id == family_id)
            .values(**values)
        )

    # ---- members -----------------------------------------------------------------------
    def membership(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, lock: bool = False
    ) -> Row | None:
        """The member's row (active or left), if the member was ever in a family."""
        return self._one(
            sa.select(family_members).where(_FM.tenant_id == tenant_id, _FM.member_id == member_id),
            lock,
        )

    def active_members(self, tenant_id: uuid.UUID, family_id: uuid.UUID) -> list[Row]:
        """The family's members, the owner first, then by joining."""
        rows = self.uow.execute(
            sa.select(family_members)
            .where(_FM.tenant_id == tenant_id, _FM.family_id == family_id, _FM.status == "active")
            .order_by(sa.case((_FM.role == "owner", 0), else_=1), _FM.since_txn)
        )
        return [dict(r._mapping) for r in rows]

    def put_membership(self, row: Row, exists: bool) -> None:
        """Insert the member's row, or reuse the one left from an earlier family."""
        if exists:
            values = {k: v for k, v in row.items() if k not in ("tenant_id", "member_id")}
            self.uow.execute(
                sa.update(family_members)
                .where(_FM.tenant_id == row["tenant_id"], _FM.member_id == row["member_id"])
                .values(**values)
            )
        else:
            self.uow.execute(sa.insert(family_members).values(**row))

    def update_membership(self, tenant_id: uuid.UUID, member_id: uuid.UUID, values: Row) -> None:
        self.uow.execute(
            sa.update(family_members)
            .where(_FM.tenant_id == tenant_id, _FM.member_id == member_id)
            .values(**values)
        )

    # ---- invitations -------------------------------------------------------------------
    def insert_invitation(self, row: Row) -> None:
        self.uow.execute(sa.insert(family_invitations).values(**row))

    def invitation(self, tenant_id: uuid.UUID, code: str, lock: bool = False) -> Row | None:
        c = family_invitations.c
        return self._one(
            sa.select(family_invitations).where(c.tenant_id == tenant_id, c.code == code), lock
        )

    def use_invitation(
        self, tenant_id: uuid.UUID, code: str, member_id: uuid.UUID, at: datetime
    ) -> None:
        c = family_invitations.c
        self.uow.execute(
            sa.update(family_invitations)
            .where(c.tenant_id == tenant_id, c.code == code)
            .values(status="used", used_by=member_id, used_at=at)
        )

    def revoke_invitations(self, tenant_id: uuid.UUID, family_id: uuid.UUID) -> None:
        """Open invitations die with their family (it may be founded again later)."""
        c = family_invitations.c
        self.uow.execute(
            sa.update(family_invitations)
            .where(c.tenant_id == tenant_id, c.family_id == family_id, c.status == "open")
            .values(status="revoked")
        )

    # ---- the ledger as families read it ------------------------------------------------
    def currencies_of(self, tenant_id: uuid.UUID, holder: uuid.UUID) -> list[str]:
        """Points currencies the holder has accounts in."""
        rows = self.uow.execute(
            sa.select(accounts.c.currency)
            .where(accounts.c.tenant_id == tenant_id, accounts.c.owner == member_owner(holder))
            .distinct()
            .order_by(accounts.c.currency)
        )
        return [str(r) for r in rows.scalars()]

    def pool_entries(
        self, tenant_id: uuid.UUID, holder: uuid.UUID, currency: str, after: uuid.UUID
    ) -> list[PoolEntry]:
        """The pool's ledger transactions after ``after`` (a time-ordered id)."""
        t = ledger_transactions.c
        rows = self.uow.execute(
            sa.select(t.id, t.kind, t.amount, t.params).where(
                t.tenant_id == tenant_id,
                t.member_id == holder,
                t.currency == currency,
                t.id > after,
            )
        )
        return [PoolEntry(r.id, r.kind, int(r.amount), r.params or {}) for r in rows]

    def open_holds_by(
        self, tenant_id: uuid.UUID, holder: uuid.UUID, now: datetime
    ) -> list[uuid.UUID | None]:
        """Who made each hold on the pool still reserving points (None: the owner)."""
        t = ledger_transactions.c
        rows = self.uow.execute(
            sa.select(t.params)
            .select_from(holds.join(ledger_transactions, t.id == holds.c.hold_transaction_id))
            .where(
                holds.c.tenant_id == tenant_id,
                holds.c.member_id == holder,
                holds.c.status == "active",
                holds.c.expires_at > now,
            )
        )
        found: list[uuid.UUID | None] = []
        for params in rows.scalars():
            named = (params or {}).get("family_member")
            found.append(uuid.UUID(str(named)) if named else None)
        return found

    # ---- transfers ---------------------------------------------------------------------
    def insert_transfer(self, row: Row) -> None:
        self.uow.execute(sa.insert(point_transfers).values(**row))

    def transfers_since(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, currency: str, since: datetime
    ) -> tuple[int, int]:
        """(how many, how many points) the member has sent since ``since``."""
        c = point_transfers.c
        count, points = self.uow.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(c.points), 0)).where(
                c.tenant_id == tenant_id,
                c.from_member_id == member_id,
                c.currency == currency,
                c.created_at >= since,
            )
        ).one()
        return int(count), int(points)

    def transfers_of(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> list[Row]:
        """The member's transfers, sent and received, newest first."""
        c = point_transfers.c
        stmt = sa.select(point_transfers).where(
            c.tenant_id == tenant_id,
            sa.or_(c.from_member_id == member_id, c.to_member_id == member_id),
        )
        if before is not None:
            stmt = stmt.where(c.id < before)
        rows = self.uow.execute(stmt.order_by(c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    # ---- donations ---------------------------------------------------------------------
    def insert_donation(self, row: Row) -> None:
        self.uow.execute(sa.insert(donations).values(**row))

    def donation_totals(self, tenant_id: uuid.UUID) -> dict[tuple[str, str], tuple[int, int, int]]:
        """(charity, currency) -> (points, donations, donors)."""
        c = donations.c
        rows = self.uow.execute(
            sa.select(
                c.charity,
                c.currency,
                sa.func.sum(c.points),
                sa.func.count(),
                sa.func.count(sa.distinct(c.member_id)),
            )
            .where(c.tenant_id == tenant_id)
            .group_by(c.charity, c.currency)
        )
        return {(r[0], r[1]): (int(r[2]), int(r[3]), int(r[4])) for r in rows}
