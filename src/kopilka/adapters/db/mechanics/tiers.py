"""Tables and store of the tiers mechanic.

* ``member_tiers``: each member's level per program (a missing row is the base level).
* ``tier_qualification``: what each member brought on each local day (money paid, purchases,
  points earned), refunds subtracted from the purchase's day. The till adds one row-update
  per receipt; windows are sums over days, so the nightly job is a GROUP BY, not a loop.
* ``tier_history``: every change (and every "kept") with its reason and numbers; the text is
  made on reading. Rows written by the nightly job carry its ``run_id``, which the job then
  joins on to apply the changes and to write the audit trail, all set-based.
* ``tier_runs``: one row per program and evaluation point: an evaluation happens once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kopilka.adapters.db.inflight import advisory_key
from kopilka.adapters.db.tables import audit_log, metadata
from kopilka.adapters.db.types import UtcDateTime
from kopilka.services.ports import UnitOfWork

member_tiers = sa.Table(
    "member_tiers",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("program", sa.String(64), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("tier", sa.String(32), nullable=False),
    sa.Column("since", UtcDateTime, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # auto, manual or import
    # A downgrade decided at an evaluation, waiting for the grace to end (its last day).
    sa.Column("pending_tier", sa.String(32)),
    sa.Column("pending_value", sa.BigInteger),
    sa.Column("grace_until", sa.Date),
    sa.Column("locked_until", sa.Date),  # set by hand: not lowered before this day ends
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "program", "member_id"),
)

tier_qualification = sa.Table(
    "tier_qualification",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("day", sa.Date, nullable=False),  # the purchase's day, tenant-local
    sa.Column("spent", sa.BigInteger, nullable=False),  # minor units paid in money
    sa.Column("purchases", sa.BigInteger, nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),  # earned on purchases
    sa.PrimaryKeyConstraint("tenant_id", "member_id", "day"),
    sa.Index(None, "tenant_id", "day"),
)

tier_history = sa.Table(
    "tier_history",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("program", sa.String(64), nullable=False),
    sa.Column("from_tier", sa.String(32)),  # None: the member had no row (the base level)
    sa.Column("to_tier", sa.String(32), nullable=False),  # for "grace": the pending level
    # enrolled, upgraded, kept, grace, downgraded, manual, imported
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(16)),
    sa.Column("value", sa.BigInteger),
    sa.Column("needed", sa.BigInteger),
    sa.Column("grace_until", sa.Date),
    sa.Column("locked_until", sa.Date),
    sa.Column("note", sa.String(500)),
    sa.Column("run_id", sa.Uuid),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Index(None, "tenant_id", "member_id", "id"),
    sa.Index(None, "tenant_id", "run_id"),
)

tier_runs = sa.Table(
    "tier_runs",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("program", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("period", sa.Date, nullable=False),  # the evaluation point
    sa.Column("run_id", sa.Uuid, nullable=False),
    sa.Column("changes", sa.BigInteger, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "program", "kind", "period"),
)

MT = member_tiers.c
Q = tier_qualification.c
H = tier_history.c
CHANGES = ("upgraded", "downgraded")
_METRIC_COLUMNS = {"spent": Q.spent, "purchases": Q.purchases, "points": Q.points}
_LOCK_KEY = "tiers"


@dataclass(frozen=True)
class Ladder:
    """A program's levels as the SQL needs them."""

    codes: Sequence[str]
    thresholds: Sequence[int]
    keeps: Sequence[int]


@dataclass(frozen=True)
class RunParams:
    """One set-based pass over a program's members."""

    tenant_id: uuid.UUID
    program: str
    ladder: Ladder
    metric: str
    first_day: date  # the window summed
    last_day: date
    run_id: uuid.UUID
    now: datetime
    id_ms: int  # the millisecond stamped into the history ids of this pass
    actor: str


class TierStore:
    """Reads and writes the tiers tables inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ---- locks -------------------------------------------------------------------------
    def lock_tenant(self, tenant_id: uuid.UUID, *, exclusive: bool) -> None:
        """The nightly job takes this exclusively, the till's upgrades and manual changes
        shared: a job's read-then-apply never interleaves with a single change (PostgreSQL;
        SQLite writers are serialised anyway)."""
        if self.uow.dialect != "postgresql":
            return
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        self.uow.execute(sa.text(f"SELECT {fn}(:k)"), {"k": advisory_key(tenant_id, _LOCK_KEY)})

    # ---- one member --------------------------------------------------------------------
    def get(
        self, tenant_id: uuid.UUID, program: str, member_id: uuid.UUID, *, lock: bool = False
    ) -> dict[str, Any] | None:
        stmt = sa.select(member_tiers).where(
            MT.tenant_id == tenant_id, MT.program == program, MT.member_id == member_id
        )
        if lock and self.uow.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = self.uow.execute(stmt).first()
        return dict(row._mapping) if row is not None else None

    def save(self, row: dict[str, Any], *, exists: bool) -> None:
        if not exists:
            self.uow.execute(sa.insert(member_tiers).values(**row))
            return
        values = {k: v for k, v in row.items() if k not in ("tenant_id", "program", "member_id")}
        self.uow.execute(
            sa.update(member_tiers)
            .where(
                MT.tenant_id == row["tenant_id"],
                MT.program == row["program"],
                MT.member_id == row["member_id"],
            )
            .values(**values)
        )

    def add_qualification(
        self,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        day: date,
        *,
        spent: int,
        purchases: int,
        points: int,
    ) -> None:
        """Add to (or subtract from) the member's day: one upsert."""
        values = {
            "tenant_id": tenant_id,
            "member_id": member_id,
            "day": day,
            "spent": spent,
            "purchases": purchases,
            "points": points,
        }
        dialect_insert = postgresql.insert if self.uow.dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(tier_qualification).values(**values)
        self.uow.execute(
            stmt.on_conflict_do_update(
                index_elements=[Q.tenant_id, Q.member_id, Q.day],
                set_={
                    "spent": Q.spent + stmt.excluded.spent,
                    "purchases": Q.purchases + stmt.excluded.purchases,
                    "points": Q.points + stmt.excluded.points,
                },
            )
        )

    def qualification(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, metric: str, first: date, last: date
    ) -> int:
        """The member's sum of ``metric`` over the days ``first``..``last``."""
        total = self.uow.execute(
            sa.select(sa.func.coalesce(sa.func.sum(_METRIC_COLUMNS[metric]), 0)).where(
                Q.tenant_id == tenant_id, Q.member_id == member_id, Q.day >= first, Q.day <= last
            )
        ).scalar_one()
        return int(total)

    def add_history(self, row: dict[str, Any]) -> None:
        self.uow.execute(sa.insert(tier_history).values(**row))

    def history(
        self,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        before: uuid.UUID | None,
        limit: int,
        program: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``before`` is the id of the last row of the previous page."""
        stmt = sa.select(tier_history).where(H.tenant_id == tenant_id, H.member_id == member_id)
        if before is not None:
            stmt = stmt.where(H.id < before)
        if program is not None:
            stmt = stmt.where(H.program == program)
        rows = self.uow.execute(stmt.order_by(H.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    # ---- runs --------------------------------------------------------------------------
    def claim_run(
        self,
        tenant_id: uuid.UUID,
        program: str,
        kind: str,
        period: date,
        run_id: uuid.UUID,
        now: datetime,
    ) -> bool:
        """Record that ``kind`` ran for ``period``; False when it already had."""
        dialect_insert = postgresql.insert if self.uow.dialect == "postgresql" else sqlite.insert
        result = self.uow.execute(
            dialect_insert(tier_runs)
            .values(
                tenant_id=tenant_id,
                program=program,
                kind=kind,
                period=period,
                run_id=run_id,
                changes=0,
                at=now,
            )
            .on_conflict_do_nothing()
            .execution_options(preserve_rowcount=True)  # INSERT counts are not kept otherwise
        )
        return int(result.rowcount) == 1

    def finish_run(
        self, tenant_id: uuid.UUID, program: str, kind: str, period: date, changes: int
    ) -> None:
        self.uow.execute(
            sa.update(tier_runs)
            .where(
                tier_runs.c.tenant_id == tenant_id,
                tier_runs.c.program == program,
                tier_runs.c.kind == kind,
                tier_runs.c.period == period,
            )
            .values(changes=changes)
        )

    # ---- the nightly job, set-based ------------------------------------------------------
    def evaluate_period(
        self,
        p: RunParams,
        *,
        point: datetime,
        policy: str,
        grace_until: date | None,
        locked_after: date,
    ) -> int:
        """Judge every member's level by the window that ended at the evaluation ``point``
        (members who reached their level after ``point`` are not judged by it): write the
        history rows, then apply them. Returns the rows written."""
        lad = p.ladder
        agg = self._window(p)
        v = sa.func.coalesce(agg.c.v, 0)
        s1 = (
            sa.select(
                MT.member_id,
                MT.tier.label("from_tier"),
                v.label("v"),
                _index_of(MT.tier, lad.codes).label("cur"),
                _highest(v, lad.thresholds).label("up"),
                _highest(v, lad.keeps).label("keep"),
                sa.case(
                    (sa.and_(MT.locked_until.is_not(None), MT.locked_until >= locked_after), 1),
                    else_=0,
                ).label("locked"),
            )
            .select_from(member_tiers.outerjoin(agg, agg.c.member_id == MT.member_id))
            .where(MT.tenant_id == p.tenant_id, MT.program == p.program, MT.since < point)
            .subquery("s1")
        )
        up, cur, keep, locked = s1.c.up, s1.c.cur, s1.c.keep, s1.c.locked == 1
        lower = "grace" if grace_until is not None else "downgraded"
        reason = sa.case(
            (up > cur, "upgraded"),
            (keep >= cur, sa.case((cur > 0, "kept"), else_="none")),
            (locked, "none"),
            else_=lower,
        )
        to = sa.case(
            (up > cur, up),
            (keep >= cur, cur),
            (locked, cur),
            else_=keep if policy == "full" else cur - 1,
        )
        needed = sa.case((up > cur, _value_at(up, lad.thresholds)), else_=_value_at(cur, lad.keeps))
        s2 = sa.select(
            s1.c.member_id,
            s1.c.from_tier,
            s1.c.v,
            reason.label("reason"),
            to.label("to"),
            needed.label("needed"),
        ).subquery("s2")
        written = self._insert_history(
            p,
            sa.select(
                *_changes(
                    s2.c.member_id,
                    s2.c.from_tier,
                    _value_at(s2.c.to, lad.codes),
                    s2.c.reason,
                    s2.c.v,
                    s2.c.needed,
                    sa.case(
                        (s2.c.reason == "grace", sa.literal(grace_until, sa.Date)),
                        else_=sa.null(),
                    ),
                )
            ).where(s2.c.reason != "none"),
        )
        written += self._insert_new_members(p, agg)
        self._apply(p)
        return written

    def sweep(self, p: RunParams, *, today: date) -> int:
        """Every night: upgrades the till did not make, members back above the keep
        threshold during their grace, and graces that ended. Returns the rows written."""
        lad = p.ladder
        agg = self._window(p)
        v = sa.func.coalesce(agg.c.v, 0)
        pending = _index_of(MT.pending_tier, lad.codes)
        # Only rows in a grace, at a level the program no longer has, or whose window
        # reaches a level above the base.
        candidates: sa.ColumnElement[bool] = sa.or_(
            MT.pending_tier.is_not(None), MT.tier.not_in(list(lad.codes))
        )
        if len(lad.codes) > 1:
            candidates = sa.or_(candidates, agg.c.v >= lad.thresholds[1])
        s1 = (
            sa.select(
                MT.member_id,
                MT.tier.label("from_tier"),
                MT.pending_tier.is_not(None).label("has_pending"),
                MT.pending_value,
                v.label("v"),
                _index_of(MT.tier, lad.codes).label("cur"),
                _highest(v, lad.thresholds).label("up"),
                _highest(v, lad.keeps).label("keep"),
                sa.case((pending < 0, 0), else_=pending).label("pending"),
                sa.case((MT.grace_until < today, 1), else_=0).label("over"),
            )
            .select_from(member_tiers.outerjoin(agg, agg.c.member_id == MT.member_id))
            .where(MT.tenant_id == p.tenant_id, MT.program == p.program, candidates)
            .subquery("s1")
        )
        up, cur, keep = s1.c.up, s1.c.cur, s1.c.keep
        no_pending = sa.or_(s1.c.has_pending == sa.false(), cur < 0)
        reason = sa.case(
            (up > cur, "upgraded"),
            (no_pending, "none"),
            (keep >= cur, "kept"),
            (s1.c.over == 1, "downgraded"),
            else_="none",
        )
        s2 = sa.select(
            s1.c.member_id,
            s1.c.from_tier,
            reason.label("reason"),
            sa.case((up > cur, up), (reason == "downgraded", s1.c.pending), else_=cur).label("to"),
            sa.case((reason == "downgraded", s1.c.pending_value), else_=s1.c.v).label("v"),
            sa.case(
                (up > cur, _value_at(up, lad.thresholds)), else_=_value_at(cur, lad.keeps)
            ).label("needed"),
        ).subquery("s2")
        written = self._insert_history(
            p,
            sa.select(
                *_changes(
                    s2.c.member_id,
                    s2.c.from_tier,
                    _value_at(s2.c.to, lad.codes),
                    s2.c.reason,
                    s2.c.v,
                    s2.c.needed,
                    None,
                )
            ).where(s2.c.reason != "none"),
        )
        written += self._insert_new_members(p, agg)
        self._apply(p)
        return written

    def _window(self, p: RunParams) -> Any:
        """Each member's sum of the metric over the window: one GROUP BY."""
        return (
            sa.select(Q.member_id, sa.func.sum(_METRIC_COLUMNS[p.metric]).label("v"))
            .where(Q.tenant_id == p.tenant_id, Q.day >= p.first_day, Q.day <= p.last_day)
            .group_by(Q.member_id)
            .subquery("agg")
        )

    def _insert_history(self, p: RunParams, select: Any) -> int:
        """``select`` gives member_id, from_tier, to_tier, reason, value, needed,
        grace_until; the rest is the run's."""
        s = select.subquery("changes")
        rows = sa.select(
            self._new_ids(p.id_ms),
            sa.literal(p.tenant_id, sa.Uuid),
            s.c.member_id,
            sa.literal(p.program, sa.String),
            s.c.from_tier,
            s.c.to_tier,
            s.c.reason,
            sa.literal(p.metric, sa.String),
            s.c.value,
            s.c.needed,
            s.c.grace_until,
            sa.literal(p.run_id, sa.Uuid),
            sa.literal(p.actor, sa.String),
            sa.literal(p.now, UtcDateTime),
        )
        result = self.uow.execute(
            sa.insert(tier_history)
            .from_select(
                [
                    "id",
                    "tenant_id",
                    "member_id",
                    "program",
                    "from_tier",
                    "to_tier",
                    "reason",
                    "metric",
                    "value",
                    "needed",
                    "grace_until",
                    "run_id",
                    "actor",
                    "at",
                ],
                rows,
            )
            .execution_options(preserve_rowcount=True)
        )
        return int(result.rowcount)

    def _insert_new_members(self, p: RunParams, agg: Any) -> int:
        """Members with no row whose window reaches a level above the base: an upgrade row
        in the history (from None), then their member_tiers row."""
        lad = p.ladder
        if len(lad.codes) < 2:
            return 0
        has_row = (
            sa.select(sa.literal(1))
            .where(
                MT.tenant_id == p.tenant_id,
                MT.program == p.program,
                MT.member_id == agg.c.member_id,
            )
            .exists()
        )
        up = _highest(agg.c.v, lad.thresholds)
        written = self._insert_history(
            p,
            sa.select(
                *_changes(
                    agg.c.member_id,
                    None,
                    _value_at(up, lad.codes),
                    sa.literal("upgraded", sa.String),
                    agg.c.v,
                    _value_at(up, lad.thresholds),
                    None,
                )
            ).where(agg.c.v >= lad.thresholds[1], ~has_row),
        )
        if written:
            self.uow.execute(
                sa.insert(member_tiers).from_select(
                    [
                        "tenant_id",
                        "program",
                        "member_id",
                        "tier",
                        "since",
                        "source",
                        "updated_at",
                    ],
                    sa.select(
                        H.tenant_id,
                        H.program,
                        H.member_id,
                        H.to_tier,
                        sa.literal(p.now, UtcDateTime),
                        sa.literal("auto", sa.String),
                        sa.literal(p.now, UtcDateTime),
                    ).where(
                        H.tenant_id == p.tenant_id, H.run_id == p.run_id, H.from_tier.is_(None)
                    ),
                )
            )
        return written

    def _apply(self, p: RunParams) -> None:
        """Apply this run's history rows to member_tiers and write the audit trail."""
        changed = H.reason.in_(CHANGES)
        now = sa.literal(p.now, UtcDateTime)
        self.uow.execute(
            sa.update(member_tiers)
            .where(
                MT.tenant_id == p.tenant_id,
                MT.program == p.program,
                MT.member_id == H.member_id,
                H.tenant_id == p.tenant_id,
                H.run_id == p.run_id,
                H.from_tier.is_not(None),
                # A "kept" row changes nothing unless it ends a grace.
                sa.or_(H.reason != "kept", MT.pending_tier.is_not(None)),
            )
            .values(
                tier=sa.case((changed, H.to_tier), else_=MT.tier),
                since=sa.case((changed, now), else_=MT.since),
                source=sa.case((changed, "auto"), else_=MT.source),
                pending_tier=sa.case((H.reason == "grace", H.to_tier), else_=None),
                pending_value=sa.case((H.reason == "grace", H.value), else_=None),
                grace_until=sa.case((H.reason == "grace", H.grace_until), else_=None),
                updated_at=now,
            )
        )
        postgres = self.uow.dialect == "postgresql"
        # Keys inline: PostgreSQL cannot type a bound parameter passed to a variadic "any".
        pairs: list[tuple[str, Any]] = [
            ("program", H.program),
            ("from", H.from_tier),
            ("to", H.to_tier),
            ("reason", H.reason),
            ("value", H.value),
            ("needed", H.needed),
        ]
        arguments: list[Any] = []
        for key, column in pairs:
            arguments += [sa.literal_column(f"'{key}'"), column]
        details = (sa.func.jsonb_build_object if postgres else sa.func.json_object)(*arguments)
        self.uow.execute(
            sa.insert(audit_log).from_select(
                [
                    "id",
                    "tenant_id",
                    "actor",
                    "action",
                    "subject_type",
                    "subject_id",
                    "details",
                    "created_at",
                ],
                sa.select(
                    self._new_ids(p.id_ms),
                    H.tenant_id,
                    H.actor,
                    sa.case((H.reason == "upgraded", "tier.upgrade"), else_="tier.downgrade"),
                    sa.literal("member", sa.String),
                    _uuid_text(H.member_id, postgres),
                    details,
                    now,
                ).where(H.tenant_id == p.tenant_id, H.run_id == p.run_id, changed),
            )
        )

    def _new_ids(self, ms: int) -> Any:
        """UUIDv7s made by the database, one per row, stamped with ``ms`` (like
        ``kopilka.ids.new_id``): 12 random bits after the version, 62 after the variant."""
        stamp = f"{int(ms):012x}"
        if self.uow.dialect == "postgresql":
            return sa.literal_column(
                f"CAST('{stamp}' || '7' || substr(md5(random()::text), 1, 3) || '8' "
                "|| substr(md5(random()::text), 1, 15) AS uuid)"
            )
        # SQLite keeps a Uuid as 32 lower-case hex digits.
        return sa.literal_column(
            f"lower('{stamp}' || '7' || substr(hex(randomblob(2)), 1, 3) || '8' "
            "|| substr(hex(randomblob(8)), 1, 15))"
        )


def _changes(
    member_id: Any,
    from_tier: Any,
    to_tier: Any,
    reason: Any,
    value: Any,
    needed: Any,
    grace_until: Any,
) -> list[Any]:
    """The columns a pass hands to ``_insert_history``, named and typed (a bare NULL would
    be text to PostgreSQL)."""
    typed = (
        (member_id, sa.Uuid, "member_id"),
        (from_tier, sa.String, "from_tier"),
        (to_tier, sa.String, "to_tier"),
        (reason, sa.String, "reason"),
        (value, sa.BigInteger, "value"),
        (needed, sa.BigInteger, "needed"),
        (grace_until, sa.Date, "grace_until"),
    )
    return [
        (sa.cast(sa.null(), kind) if column is None else column).label(name)
        for column, kind, name in typed
    ]


def _index_of(column: Any, codes: Sequence[str]) -> Any:
    """The level index of a tier code; -1 for a code the program does not have."""
    return sa.case({code: i for i, code in enumerate(codes)}, value=column, else_=-1)


def _highest(value: Any, bounds: Sequence[int]) -> Any:
    """The highest index whose bound ``value`` reaches (0 at least)."""
    whens = [(value >= bound, i) for i, bound in reversed(list(enumerate(bounds))) if i > 0]
    return sa.case(*whens, else_=0) if whens else sa.literal(0)


def _value_at(index: Any, values: Sequence[Any]) -> Any:
    return sa.case({i: value for i, value in enumerate(values)}, value=index, else_=None)


def _uuid_text(column: Any, postgres: bool) -> Any:
    """The canonical text of a uuid column (as ``str(uuid)``)."""
    if postgres:
        return sa.cast(column, sa.String)
    parts = [sa.func.substr(column, start, size, type_=sa.String) for start, size in _UUID_PARTS]
    return sa.func.lower(
        parts[0] + "-" + parts[1] + "-" + parts[2] + "-" + parts[3] + "-" + parts[4]
    )


_UUID_PARTS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))


# ---- member merge --------------------------------------------------------------------------
def merge_qualification(
    uow: UnitOfWork, tenant_id: uuid.UUID, survivor_id: uuid.UUID, duplicate_id: uuid.UUID
) -> None:
    """Add the duplicate's days to the survivor's (summed where both bought on a day), then
    drop the duplicate's: two statements, whatever the number of days."""
    dialect_insert = postgresql.insert if uow.dialect == "postgresql" else sqlite.insert
    stmt = dialect_insert(tier_qualification).from_select(
        ["tenant_id", "member_id", "day", "spent", "purchases", "points"],
        # SQLite needs the WHERE to tell the SELECT from the ON CONFLICT clause.
        sa.select(
            Q.tenant_id, sa.literal(survivor_id, sa.Uuid), Q.day, Q.spent, Q.purchases, Q.points
        ).where(Q.tenant_id == tenant_id, Q.member_id == duplicate_id),
    )
    uow.execute(
        stmt.on_conflict_do_update(
            index_elements=[Q.tenant_id, Q.member_id, Q.day],
            set_={
                "spent": Q.spent + stmt.excluded.spent,
                "purchases": Q.purchases + stmt.excluded.purchases,
                "points": Q.points + stmt.excluded.points,
            },
        )
    )
    uow.execute(
        sa.delete(tier_qualification).where(Q.tenant_id == tenant_id, Q.member_id == duplicate_id)
    )


def merge_history(
    uow: UnitOfWork, tenant_id: uuid.UUID, survivor_id: uuid.UUID, duplicate_id: uuid.UUID
) -> None:
    """The duplicate's tier history becomes the survivor's (ids are time-ordered, so it
    interleaves by date)."""
    uow.execute(
        sa.update(tier_history)
        .where(H.tenant_id == tenant_id, H.member_id == duplicate_id)
        .values(member_id=survivor_id)
    )


def tier_rows(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_ids: Sequence[uuid.UUID]
) -> list[dict[str, Any]]:
    """Every ``member_tiers`` row of the members (all programs), locked on PostgreSQL."""
    stmt = sa.select(member_tiers).where(
        MT.tenant_id == tenant_id, MT.member_id.in_(list(member_ids))
    )
    if uow.dialect == "postgresql":
        stmt = stmt.with_for_update()
    return [dict(r._mapping) for r in uow.execute(stmt)]


def delete_tier(uow: UnitOfWork, tenant_id: uuid.UUID, program: str, member_id: uuid.UUID) -> None:
    uow.execute(
        sa.delete(member_tiers).where(
            MT.tenant_id == tenant_id, MT.program == program, MT.member_id == member_id
        )
    )


def move_tier(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    program: str,
    duplicate_id: uuid.UUID,
    survivor_id: uuid.UUID,
    values: dict[str, Any],
) -> None:
    """Hand the duplicate's row of ``program`` to the survivor (its own row is gone)."""
    uow.execute(
        sa.update(member_tiers)
        .where(MT.tenant_id == tenant_id, MT.program == program, MT.member_id == duplicate_id)
        .values(member_id=survivor_id, **values)
    )
