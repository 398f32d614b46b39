"""Tables and store of the campaigns feature.

* ``campaigns``: the definition (JSON, validated by domain/campaigns) and its life cycle.
* ``campaign_members``: the member list of a list audience.
* ``campaign_budget_slots``: each budget (points, discount, redemptions; overall or at one
  outlet) split into slots, so concurrent tills update different rows; ``used <= cap`` is
  a check constraint, so no slot, and so no budget, can ever be overspent.
* ``campaign_redemptions``: one row per receipt a campaign applied to: what it took from
  which slots (to give it back), for per-member limits and reports.
* ``campaign_control``: the control-group draw of each member met, recorded once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from kopilka.adapters.db.mechanics.clubs import club_memberships
from kopilka.adapters.db.mechanics.tiers import member_tiers
from kopilka.adapters.db.tables import members, metadata, receipt_lines, receipts
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.services.ports import UnitOfWork

Row = dict[str, Any]
CHUNK = 500  # ids per IN (...) list

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    # draft, scheduled, paused, ended ("active" is a scheduled campaign inside its window)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("definition", Json, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),  # +1 on every edit
    sa.Column("seed", sa.String(32), nullable=False),  # the control group's draw
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("status_changed_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "code"),
    sa.Index(None, "tenant_id", "status"),
)

campaign_members = sa.Table(
    "campaign_members",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("campaign_id", sa.Uuid, nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("added_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "campaign_id", "member_id"),
)

campaign_budget_slots = sa.Table(
    "campaign_budget_slots",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("campaign_id", sa.Uuid, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # points, discount, redemptions
    sa.Column("scope", sa.String(80), nullable=False),  # "all" or "outlet:<code>"
    sa.Column("slot", sa.SmallInteger, nullable=False),
    sa.Column("cap", sa.BigInteger, nullable=False),
    sa.Column("used", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "campaign_id", "kind", "scope", "slot"),
    sa.CheckConstraint("used >= 0 AND used <= cap", name="used_within_cap"),
)

campaign_redemptions = sa.Table(
    "campaign_redemptions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("campaign_id", sa.Uuid, nullable=False),
    # Set when the receipt is confirmed; a held receipt's row waits "reserved" till then.
    sa.Column("receipt_id", sa.Uuid),
    sa.Column("member_id", sa.Uuid),
    sa.Column("outlet_id", sa.Uuid, nullable=False),
    # reserved, confirmed, released (a voided hold), cancelled (a cancelled receipt)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("discount", sa.BigInteger, nullable=False),
    sa.Column("local_day", sa.Date, nullable=False),  # the receipt's day, tenant-local
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    # [[kind, scope, slot, amount], ...]: what was taken, to give it back exactly
    sa.Column("allocations", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("closed_at", UtcDateTime),
    sa.Index(None, "tenant_id", "campaign_id", "member_id", "local_day"),
    sa.Index(None, "tenant_id", "receipt_id"),
    sa.Index(None, "status", "created_at"),
)

campaign_control = sa.Table(
    "campaign_control",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("campaign_id", sa.Uuid, nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("arm", sa.String(16), nullable=False),  # control (held out) or exposed
    sa.Column("assigned_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "campaign_id", "member_id"),
    sa.Index(None, "tenant_id", "campaign_id", "arm"),
)

C = campaigns.c
S = campaign_budget_slots.c
R = campaign_redemptions.c
G = campaign_control.c
LIVE = ("reserved", "confirmed")  # redemptions that count against limits


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


class CampaignStore:
    """Reads and writes the campaign tables inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def _insert(self, table: sa.Table) -> Any:
        dialect_insert = postgresql.insert if self.uow.dialect == "postgresql" else sqlite.insert
        return dialect_insert(table)

    # ---- campaigns ---------------------------------------------------------------------
    def insert(self, row: Row) -> None:
        self.uow.execute(sa.insert(campaigns).values(**row))

    def by_code(self, tenant_id: uuid.UUID, code: str, lock: bool = False) -> Row | None:
        stmt = sa.select(campaigns).where(C.tenant_id == tenant_id, C.code == code)
        if lock:
            stmt = stmt.with_for_update()
        row = self.uow.execute(stmt).first()
        return dict(row._mapping) if row is not None else None

    def page(
        self, tenant_id: uuid.UUID, before: uuid.UUID | None, limit: int, status: str | None
    ) -> list[Row]:
        """Newest first, after the cursor ``before``."""
        stmt = sa.select(campaigns).where(C.tenant_id == tenant_id)
        if before is not None:
            stmt = stmt.where(C.id < before)
        if status is not None:
            stmt = stmt.where(C.status == status)
        rows = self.uow.execute(stmt.order_by(C.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    def with_status(self, tenant_id: uuid.UUID, statuses: Sequence[str]) -> list[Row]:
        rows = self.uow.execute(
            sa.select(campaigns)
            .where(C.tenant_id == tenant_id, C.status.in_(list(statuses)))
            .order_by(C.code)
        )
        return [dict(r._mapping) for r in rows]

    def states(
        self, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[str, int]]:
        """(status, revision) of each campaign, read now (not from any cache)."""
        if not ids:
            return {}
        rows = self.uow.execute(
            sa.select(C.id, C.status, C.revision).where(
                C.tenant_id == tenant_id, C.id.in_(list(ids))
            )
        )
        return {r.id: (r.status, r.revision) for r in rows}

    def update(self, tenant_id: uuid.UUID, campaign_id: uuid.UUID, values: Row) -> None:
        self.uow.execute(
            sa.update(campaigns)
            .where(C.tenant_id == tenant_id, C.id == campaign_id)
            .values(**values)
        )

    # ---- the member list ---------------------------------------------------------------
    def existing_members(self, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``ids`` are the tenant's members (merged or erased ones are not)."""
        found: set[uuid.UUID] = set()
        for part in _chunks(sorted(set(ids))):
            found |= set(
                self.uow.execute(
                    sa.select(members.c.id).where(
                        members.c.tenant_id == tenant_id,
                        members.c.id.in_(list(part)),
                        members.c.status.in_(("active", "blocked")),
                    )
                ).scalars()
            )
        return found

    def replace_members(
        self,
        tenant_id: uuid.UUID,
        campaign_id: uuid.UUID,
        ids: Sequence[uuid.UUID],
        now: datetime,
    ) -> None:
        table = campaign_members
        self.uow.execute(
            sa.delete(table).where(
                table.c.tenant_id == tenant_id, table.c.campaign_id == campaign_id
            )
        )
        rows = [
            {"tenant_id": tenant_id, "campaign_id": campaign_id, "member_id": m, "added_at": now}
            for m in sorted(set(ids))
        ]
        if rows:
            self.uow.execute(sa.insert(table), rows)

    def count_members(self, tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> int:
        table = campaign_members
        return int(
            self.uow.execute(
                sa.select(sa.func.count()).where(
                    table.c.tenant_id == tenant_id, table.c.campaign_id == campaign_id
                )
            ).scalar_one()
        )

    def listed_members(self, tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> set[uuid.UUID]:
        table = campaign_members
        return set(
            self.uow.execute(
                sa.select(table.c.member_id).where(
                    table.c.tenant_id == tenant_id, table.c.campaign_id == campaign_id
                )
            ).scalars()
        )

    def listed(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, campaign_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of the campaigns have the member on their list."""
        if not campaign_ids:
            return set()
        table = campaign_members
        return set(
            self.uow.execute(
                sa.select(table.c.campaign_id).where(
                    table.c.tenant_id == tenant_id,
                    table.c.campaign_id.in_(list(campaign_ids)),
                    table.c.member_id == member_id,
                )
            ).scalars()
        )

    # ---- budget slots ------------------------------------------------------------------
    def insert_slots(self, rows: list[Row]) -> None:
        if rows:
            self.uow.execute(sa.insert(campaign_budget_slots), rows)

    def slots(self, tenant_id: uuid.UUID, campaign_ids: Sequence[uuid.UUID]) -> list[Row]:
        """Every slot of the campaigns, as a plain read (no lock)."""
        if not campaign_ids:
            return []
        rows = self.uow.execute(
            sa.select(campaign_budget_slots)
            .where(S.tenant_id == tenant_id, S.campaign_id.in_(list(campaign_ids)))
            .order_by(S.campaign_id, S.kind, S.scope, S.slot)
        )
        return [dict(r._mapping) for r in rows]

    def lock_budget(
        self, tenant_id: uuid.UUID, campaign_id: uuid.UUID, kind: str, scope: str
    ) -> list[Row]:
        """The slots of one budget, locked in slot order (so two lockers never deadlock)."""
        rows = self.uow.execute(
            sa.select(campaign_budget_slots)
            .where(
                S.tenant_id == tenant_id,
                S.campaign_id == campaign_id,
                S.kind == kind,
                S.scope == scope,
            )
            .order_by(S.slot)
            .with_for_update()
        )
        return [dict(r._mapping) for r in rows]

    def take(
        self,
        tenant_id: uuid.UUID,
        campaign_id: uuid.UUID,
        kind: str,
        scope: str,
        slot: int,
        amount: int,
    ) -> bool:
        """Add ``amount`` to one slot's use if it still fits; False when it does not. One
        statement: the check and the write cannot be torn apart by a concurrent till."""
        result = self.uow.execute(
            sa.update(campaign_budget_slots)
            .where(
                S.tenant_id == tenant_id,
                S.campaign_id == campaign_id,
                S.kind == kind,
                S.scope == scope,
                S.slot == slot,
                S.used + amount <= S.cap,
            )
            .values(used=S.used + amount)
        )
        return int(result.rowcount) == 1

    def give_back(
        self,
        tenant_id: uuid.UUID,
        campaign_id: uuid.UUID,
        kind: str,
        scope: str,
        slot: int,
        amount: int,
    ) -> None:
        self.uow.execute(
            sa.update(campaign_budget_slots)
            .where(
                S.tenant_id == tenant_id,
                S.campaign_id == campaign_id,
                S.kind == kind,
                S.scope == scope,
                S.slot == slot,
            )
            .values(used=sa.case((S.used >= amount, S.used - amount), else_=0))
        )

    def set_cap(
        self,
        tenant_id: uuid.UUID,
        campaign_id: uuid.UUID,
        kind: str,
        scope: str,
        slot: int,
        cap: int,
    ) -> None:
        self.uow.execute(
            sa.update(campaign_budget_slots)
            .where(
                S.tenant_id == tenant_id,
                S.campaign_id == campaign_id,
                S.kind == kind,
                S.scope == scope,
                S.slot == slot,
            )
            .values(cap=cap)
        )

    def drop_budget(
        self, tenant_id: uuid.UUID, campaign_id: uuid.UUID, kind: str, scope: str
    ) -> None:
        self.uow.execute(
            sa.delete(campaign_budget_slots).where(
                S.tenant_id == tenant_id,
                S.campaign_id == campaign_id,
                S.kind == kind,
                S.scope == scope,
            )
        )

    # ---- redemptions -------------------------------------------------------------------
    def insert_redemption(self, row: Row) -> None:
        self.uow.execute(sa.insert(campaign_redemptions).values(**row))

    def confirm(
        self,
        tenant_id: uuid.UUID,
        ids: Sequence[uuid.UUID],
        receipt_id: uuid.UUID,
        now: datetime,
    ) -> None:
        if not ids:
            return
        self.uow.execute(
            sa.update(campaign_redemptions)
            .where(R.tenant_id == tenant_id, R.id.in_(list(ids)), R.status == "reserved")
            .values(status="confirmed", receipt_id=receipt_id, closed_at=now)
        )

    def usage(
        self,
        tenant_id: uuid.UUID,
        campaign_id: uuid.UUID,
        member_id: uuid.UUID,
        since: date | None,
    ) -> tuple[int, int, int]:
        """(redemptions, points, discount) of the member in the campaign since ``since``."""
        stmt = sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(R.points), 0),
            sa.func.coalesce(sa.func.sum(R.discount), 0),
        ).where(
            R.tenant_id == tenant_id,
            R.campaign_id == campaign_id,
            R.member_id == member_id,
            R.status.in_(LIVE),
        )
        if since is not None:
            stmt = stmt.where(R.local_day >= since)
        count, points, discount = self.uow.execute(stmt).one()
        return int(count), int(points), int(discount)

    def of_receipt(self, tenant_id: uuid.UUID, receipt_id: uuid.UUID) -> list[Row]:
        rows = self.uow.execute(
            sa.select(campaign_redemptions)
            .where(R.tenant_id == tenant_id, R.receipt_id == receipt_id)
            .order_by(R.id)
        )
        return [dict(r._mapping) for r in rows]

    def close(
        self, tenant_id: uuid.UUID, redemption_id: uuid.UUID, status: str, now: datetime
    ) -> bool:
        """Close a live redemption (released or cancelled); False when it was not live (a
        second run, or a twin job, got there first)."""
        result = self.uow.execute(
            sa.update(campaign_redemptions)
            .where(R.tenant_id == tenant_id, R.id == redemption_id, R.status.in_(LIVE))
            .values(status=status, closed_at=now)
        )
        return int(result.rowcount) == 1

    def reserved(self, tenant_id: uuid.UUID | None, limit: int) -> list[Row]:
        """Redemptions still waiting for their held receipt, oldest first."""
        stmt = sa.select(campaign_redemptions).where(R.status == "reserved")
        if tenant_id is not None:
            stmt = stmt.where(R.tenant_id == tenant_id)
        rows = self.uow.execute(stmt.order_by(R.created_at, R.id).limit(limit))
        return [dict(r._mapping) for r in rows]

    def receipts_like(self, row: Row) -> list[Row]:
        """Receipts made at the reservation's outlet, moment and member: its receipt is one.
        A merge moves the reservation to the survivor but leaves the receipt on the
        duplicate, so the profiles merged into the member are the member here too."""
        member = receipts.c.member_id
        if row["member_id"] is None:
            whose = member.is_(None)
        else:
            merged = self.uow.directory.merged_into(row["tenant_id"], row["member_id"])
            whose = member.in_([row["member_id"], *merged])
        rows = self.uow.execute(
            sa.select(receipts.c.id, receipts.c.status, receipts.c.result).where(
                receipts.c.tenant_id == row["tenant_id"],
                receipts.c.outlet_id == row["outlet_id"],
                receipts.c.occurred_at == row["occurred_at"],
                whose,
            )
        )
        return [dict(r._mapping) for r in rows]

    def totals(self, tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> Row:
        """Live redemptions of the campaign: how many, points and discount given."""
        count, points, discount = self.uow.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(R.points), 0),
                sa.func.coalesce(sa.func.sum(R.discount), 0),
            ).where(R.tenant_id == tenant_id, R.campaign_id == campaign_id, R.status.in_(LIVE))
        ).one()
        return {"redemptions": int(count), "points": int(points), "discount": int(discount)}

    # ---- member merge ------------------------------------------------------------------
    def move_member(
        self, tenant_id: uuid.UUID, from_id: uuid.UUID, to_id: uuid.UUID
    ) -> tuple[int, int]:
        """Fold one member (a merged duplicate) into another, set-based: every redemption
        moves (so per-member limits count the duplicate's past use), and the campaign lists
        the duplicate was on now have the survivor (once: a list holds a member once).
        Control-group draws stay where they are (see docs/campaigns.md). Returns
        (redemptions, list entries) moved."""
        used = self.uow.execute(
            sa.update(campaign_redemptions)
            .where(R.tenant_id == tenant_id, R.member_id == from_id)
            .values(member_id=to_id)
        )
        table = campaign_members
        theirs = campaign_members.alias("survivor_listed")
        listed = self.uow.execute(
            sa.update(table)
            .where(
                table.c.tenant_id == tenant_id,
                table.c.member_id == from_id,
                ~sa.exists().where(
                    theirs.c.tenant_id == tenant_id,
                    theirs.c.campaign_id == table.c.campaign_id,
                    theirs.c.member_id == to_id,
                ),
            )
            .values(member_id=to_id)
        )
        # Lists that already had the survivor: the duplicate's row is redundant.
        self.uow.execute(
            sa.delete(table).where(table.c.tenant_id == tenant_id, table.c.member_id == from_id)
        )
        return int(used.rowcount), int(listed.rowcount)

    # ---- the control group -------------------------------------------------------------
    def assign(
        self,
        tenant_id: uuid.UUID,
        campaign_id: uuid.UUID,
        member_id: uuid.UUID,
        arm: str,
        now: datetime,
    ) -> None:
        """Record the member's draw once; later calls keep the first record."""
        self.uow.execute(
            self._insert(campaign_control)
            .values(
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                member_id=member_id,
                arm=arm,
                assigned_at=now,
            )
            .on_conflict_do_nothing()
        )

    def control_report(
        self,
        tenant_id: uuid.UUID,
        campaign_id: uuid.UUID,
        since: datetime,
        until: datetime,
    ) -> dict[str, Row]:
        """Per arm: members drawn, and their confirmed receipts in [since, until): buyers,
        purchases and money paid."""
        report: dict[str, Row] = {
            arm: {"members": 0, "buyers": 0, "purchases": 0, "spend": 0}
            for arm in ("control", "exposed")
        }
        counted = self.uow.execute(
            sa.select(G.arm, sa.func.count())
            .where(G.tenant_id == tenant_id, G.campaign_id == campaign_id)
            .group_by(G.arm)
        )
        for arm, n in counted:
            report.setdefault(arm, {"members": 0, "buyers": 0, "purchases": 0, "spend": 0})
            report[arm]["members"] = int(n)
        bought = self.uow.execute(
            sa.select(
                G.arm,
                sa.func.count(sa.distinct(receipts.c.member_id)),
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(receipts.c.total_pay), 0),
            )
            .select_from(
                campaign_control.join(
                    receipts,
                    sa.and_(
                        receipts.c.tenant_id == G.tenant_id,
                        receipts.c.member_id == G.member_id,
                    ),
                )
            )
            .where(
                G.tenant_id == tenant_id,
                G.campaign_id == campaign_id,
                receipts.c.status == "confirmed",
                receipts.c.occurred_at >= since,
                receipts.c.occurred_at < until,
            )
            .group_by(G.arm)
        )
        for arm, buyers, purchases, spend in bought:
            row = report.setdefault(arm, {"members": 0, "buyers": 0, "purchases": 0, "spend": 0})
            row.update(buyers=int(buyers), purchases=int(purchases), spend=int(spend))
        return report

    # ---- the preview -------------------------------------------------------------------
    def audience_size(
        self,
        tenant_id: uuid.UUID,
        kind: str,
        values: Sequence[str],
        *,
        campaign_id: uuid.UUID | None = None,
        tier_program: str | None = None,
        base_tier: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Active members in an audience, counted in one query. Tiers: the stored level
        in ``tier_program`` (else the legacy ``attributes.tier``, else ``base_tier``);
        segments and clubs: the legacy attribute lists; clubs also stored memberships that
        are active, in grace or cancelled but paid up (clubs joined by a condition are not
        counted)."""
        m = members.c
        stmt = sa.select(sa.func.count()).select_from(members)
        where: list[Any] = [m.tenant_id == tenant_id, m.status == "active"]
        wanted = list(values)
        if kind == "members":
            listed = campaign_members.c
            where.append(
                sa.exists().where(
                    listed.tenant_id == tenant_id,
                    listed.campaign_id == campaign_id,
                    listed.member_id == m.id,
                )
            )
        elif kind == "tiers":
            stored = member_tiers.c
            stmt = stmt.select_from(
                members.outerjoin(
                    member_tiers,
                    sa.and_(
                        stored.tenant_id == m.tenant_id,
                        stored.member_id == m.id,
                        stored.program == (tier_program or ""),
                    ),
                )
            )
            tier = sa.func.coalesce(
                stored.tier, m.attributes["tier"].as_string(), sa.literal(base_tier)
            )
            where.append(tier.in_(wanted))
        elif kind in ("segments", "clubs"):
            listed_in = self._attribute_has(kind, wanted)
            if kind == "clubs":
                clubs = club_memberships.c
                paid_up = sa.and_(
                    clubs.status == "cancelled", clubs.paid_until > (now or sa.func.now())
                )
                listed_in = sa.or_(
                    listed_in,
                    sa.exists().where(
                        clubs.tenant_id == tenant_id,
                        clubs.member_id == m.id,
                        clubs.club.in_(wanted),
                        sa.or_(clubs.status.in_(("active", "grace")), paid_up),
                    ),
                )
            where.append(listed_in)
        return int(self.uow.execute(stmt.where(*where)).scalar_one())

    def _attribute_has(self, key: str, wanted: list[str]) -> Any:
        """``members.attributes[key]`` (a list, or one string) holds any of ``wanted``."""
        assert key in ("segments", "clubs")  # a constant, never input: safe in the text
        if self.uow.dialect == "postgresql":
            sql = (
                f"((jsonb_typeof(members.attributes -> '{key}') = 'array' "
                f"AND jsonb_exists_any(members.attributes -> '{key}', :wanted_{key})) "
                f"OR (members.attributes ->> '{key}') = ANY(:wanted_{key}))"
            )
            return sa.text(sql).bindparams(
                sa.bindparam(f"wanted_{key}", wanted, type_=postgresql.ARRAY(sa.Text))
            )
        sql = (
            f"(EXISTS (SELECT 1 FROM json_each(members.attributes, '$.{key}') AS v "  # noqa: S608
            f"WHERE v.value IN :wanted_{key}))"
        )
        return sa.text(sql).bindparams(sa.bindparam(f"wanted_{key}", wanted, expanding=True))

    def recent_receipts(
        self, tenant_id: uuid.UUID, since: datetime, until: datetime, limit: int
    ) -> tuple[int, list[Row]]:
        """How many receipts were confirmed in [since, until], and the newest ``limit``."""
        where = (
            receipts.c.tenant_id == tenant_id,
            receipts.c.status == "confirmed",
            receipts.c.occurred_at >= since,
            receipts.c.occurred_at <= until,
        )
        total = int(self.uow.execute(sa.select(sa.func.count()).where(*where)).scalar_one())
        rows = self.uow.execute(
            sa.select(
                receipts.c.id,
                receipts.c.outlet_id,
                receipts.c.member_id,
                receipts.c.channel,
                receipts.c.payment_method,
                receipts.c.occurred_at,
            )
            .where(*where)
            .order_by(receipts.c.occurred_at.desc(), receipts.c.id.desc())
            .limit(limit)
        )
        return total, [dict(r._mapping) for r in rows]

    def lines_of(
        self, tenant_id: uuid.UUID, receipt_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[Row]]:
        found: dict[uuid.UUID, list[Row]] = {}
        for part in _chunks(list(receipt_ids)):
            rows = self.uow.execute(
                sa.select(receipt_lines)
                .where(
                    receipt_lines.c.tenant_id == tenant_id,
                    receipt_lines.c.receipt_id.in_(list(part)),
                )
                .order_by(receipt_lines.c.receipt_id, receipt_lines.c.line_no)
            )
            for r in rows:
                found.setdefault(r.receipt_id, []).append(dict(r._mapping))
        return found

    def members_by_id(self, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Row]:
        found: dict[uuid.UUID, Row] = {}
        for part in _chunks(sorted(set(ids))):
            rows = self.uow.execute(
                sa.select(members).where(
                    members.c.tenant_id == tenant_id, members.c.id.in_(list(part))
                )
            )
            for r in rows:
                found[r.id] = dict(r._mapping)
        return found
