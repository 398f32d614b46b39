"""Tables and store of the lifecycle mechanic: recorded member events, and the set-based
queries that find the members a life-cycle job is due for."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.mechanics.awards import mechanic_awards
from kopilka.adapters.db.tables import members, metadata, receipts
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.services.ports import UnitOfWork

member_events = sa.Table(
    "member_events",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    # The caller's id of the event: the natural idempotency key.
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("properties", Json, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("program", sa.String(64)),
    # What the event earned (points, coupon, description), or NULL.
    sa.Column("reward", Json),
    # Why it earned nothing: the cap period that was full (day, week, month, lifetime).
    sa.Column("capped", sa.String(16)),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.UniqueConstraint("tenant_id", "event_id"),
    sa.Index(None, "tenant_id", "member_id", "id"),
)

# The life-cycle jobs select members by birthday and by enrolment date, set-based.
sa.Index(
    "ix_members_tenant_id_birth_month_birth_day",
    members.c.tenant_id,
    members.c.birth_month,
    members.c.birth_day,
)
sa.Index("ix_members_tenant_id_created_at", members.c.tenant_id, members.c.created_at)

_E = member_events.c
_M = members.c
_A = mechanic_awards.c
_R = receipts.c


def _not_awarded(key: Any) -> Any:
    """No award under ``key`` for the member of the outer query."""
    return ~sa.exists().where(
        _A.tenant_id == _M.tenant_id, _A.member_id == _M.id, _A.award_key == key
    )


class LifecycleStore:
    """Reads and writes the lifecycle mechanic's rows inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ---- member events -----------------------------------------------------------------
    def event(self, tenant_id: uuid.UUID, event_id: str) -> dict[str, Any] | None:
        row = self.uow.execute(
            sa.select(member_events).where(_E.tenant_id == tenant_id, _E.event_id == event_id)
        ).first()
        return dict(row._mapping) if row is not None else None

    def insert_event(self, row: dict[str, Any]) -> None:
        self.uow.execute(sa.insert(member_events).values(**row))

    def events_of(
        self,
        tenant_id: uuid.UUID,
        member_ids: Sequence[uuid.UUID],
        before: uuid.UUID | None,
        limit: int,
        name: str | None = None,
    ) -> list[dict[str, Any]]:
        """The members' events, newest first, before the cursor id."""
        query = sa.select(member_events).where(
            _E.tenant_id == tenant_id, _E.member_id.in_(list(member_ids))
        )
        if before is not None:
            query = query.where(_E.id < before)
        if name is not None:
            query = query.where(_E.name == name)
        rows = self.uow.execute(query.order_by(_E.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    # ---- who is due --------------------------------------------------------------------
    def birthdays_due(
        self,
        tenant_id: uuid.UUID,
        due: dict[int, set[tuple[int, int]]],
        limit: int,
        after: uuid.UUID | None = None,
    ) -> list[uuid.UUID]:
        """Active members with a birthday in ``due`` ({year: {(month, day)}}) and no
        ``birthday:<year>`` award yet, in id order after ``after``."""
        by_year = [
            sa.and_(
                sa.or_(*(sa.and_(_M.birth_month == m, _M.birth_day == d) for m, d in sorted(days))),
                _not_awarded(f"birthday:{year}"),
            )
            for year, days in sorted(due.items())
            if days
        ]
        if not by_year:
            return []
        return self._ids(tenant_id, sa.or_(*by_year), limit, after)

    def anniversaries_due(
        self,
        tenant_id: uuid.UUID,
        ranges: Sequence[tuple[int, datetime, datetime]],
        limit: int,
        after: uuid.UUID | None = None,
    ) -> list[uuid.UUID]:
        """Active members enrolled in one of ``ranges`` ((years, from, until) instants,
        until exclusive) without the ``anniversary:<years>`` award."""
        if not ranges:
            return []
        condition = sa.or_(
            *(
                sa.and_(
                    _M.created_at >= start,
                    _M.created_at < end,
                    _not_awarded(f"anniversary:{years}"),
                )
                for years, start, end in ranges
            )
        )
        return self._ids(tenant_id, condition, limit, after)

    def inactive_since(
        self,
        tenant_id: uuid.UUID,
        cutoff: datetime,
        awarded_since: datetime,
        limit: int,
        after: uuid.UUID | None = None,
    ) -> list[uuid.UUID]:
        """Active members enrolled before ``cutoff`` with no confirmed purchase after it,
        and no win-back award since ``awarded_since``."""
        purchased = sa.exists().where(
            _R.tenant_id == _M.tenant_id,
            _R.member_id == _M.id,
            _R.status == "confirmed",
            _R.occurred_at > cutoff,
        )
        rewarded = sa.exists().where(
            _A.tenant_id == _M.tenant_id,
            _A.member_id == _M.id,
            _A.mechanic == "win_back",
            _A.status == "granted",
            _A.created_at >= awarded_since,
        )
        # This spell of inactivity was rewarded already: an award after the last activity.
        last_purchase = (
            sa.select(sa.func.max(_R.occurred_at))
            .where(_R.tenant_id == _M.tenant_id, _R.member_id == _M.id, _R.status == "confirmed")
            .scalar_subquery()
        )
        spell_rewarded = sa.exists().where(
            _A.tenant_id == _M.tenant_id,
            _A.member_id == _M.id,
            _A.mechanic == "win_back",
            _A.created_at > sa.func.coalesce(last_purchase, _M.created_at),
        )
        condition = sa.and_(_M.created_at <= cutoff, ~purchased, ~rewarded, ~spell_rewarded)
        return self._ids(tenant_id, condition, limit, after)

    def earliest_enrolment(self, tenant_id: uuid.UUID) -> datetime | None:
        value: datetime | None = self.uow.execute(
            sa.select(sa.func.min(_M.created_at)).where(_M.tenant_id == tenant_id)
        ).scalar_one_or_none()
        return value

    def last_purchase(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> datetime | None:
        """When the member's latest confirmed purchase happened, or None."""
        value: datetime | None = self.uow.execute(
            sa.select(sa.func.max(_R.occurred_at)).where(
                _R.tenant_id == tenant_id, _R.member_id == member_id, _R.status == "confirmed"
            )
        ).scalar_one_or_none()
        return value

    def confirmed_purchases(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, other_than: uuid.UUID
    ) -> int:
        """The member's confirmed receipts, the one being confirmed left out."""
        value = self.uow.execute(
            sa.select(sa.func.count())
            .select_from(receipts)
            .where(
                _R.tenant_id == tenant_id,
                _R.member_id == member_id,
                _R.status == "confirmed",
                _R.id != other_than,
            )
        ).scalar_one()
        return int(value)

    def win_backs_since(self, tenant_id: uuid.UUID, member_id: uuid.UUID, since: datetime) -> bool:
        """Whether the member got a win-back reward (not taken back) since ``since``."""
        row = self.uow.execute(
            sa.select(_A.id)
            .where(
                _A.tenant_id == tenant_id,
                _A.member_id == member_id,
                _A.mechanic == "win_back",
                _A.status == "granted",
                _A.created_at >= since,
            )
            .limit(1)
        ).first()
        return row is not None

    def _ids(
        self, tenant_id: uuid.UUID, condition: Any, limit: int, after: uuid.UUID | None
    ) -> list[uuid.UUID]:
        query = sa.select(_M.id).where(_M.tenant_id == tenant_id, _M.status == "active", condition)
        if after is not None:
            query = query.where(_M.id > after)
        return list(self.uow.execute(query.order_by(_M.id).limit(limit)).scalars())


# ---- member merge --------------------------------------------------------------------------
def merged_key(key: str, duplicate_id: uuid.UUID) -> str:
    """The key a duplicate's award takes when the survivor already has one under its key:
    kept (it still counts for caps and periods) but no longer blocking or blocked."""
    return f"{key}:merged:{duplicate_id.hex}"


def move_awards(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    survivor_id: uuid.UUID,
    duplicate_id: uuid.UUID,
    mechanics: Sequence[str],
) -> dict[str, str]:
    """Hand the duplicate's awards of ``mechanics`` to the survivor, so a once-only key
    (``welcome``, ``birthday:2026``...) given to either is given to the person, and capped
    counts include both. Where both hold the same key, the duplicate's is re-keyed with
    :func:`merged_key` (one unique key per member). Returns {old key: new key} of those."""
    mine = sa.and_(
        _A.tenant_id == tenant_id,
        _A.member_id == duplicate_id,
        _A.mechanic.in_(list(mechanics)),
    )
    theirs = mechanic_awards.alias("theirs")
    clash = sa.exists().where(
        theirs.c.tenant_id == tenant_id,
        theirs.c.member_id == survivor_id,
        theirs.c.award_key == _A.award_key,
    )
    keys = list(uow.execute(sa.select(_A.award_key).where(mine, clash)).scalars())
    renamed = {str(k): merged_key(str(k), duplicate_id) for k in keys}
    if renamed:
        uow.execute(
            sa.update(mechanic_awards)
            .where(mine, _A.award_key.in_(list(renamed)))
            .values(award_key=_A.award_key + f":merged:{duplicate_id.hex}")
        )
    uow.execute(sa.update(mechanic_awards).where(mine).values(member_id=survivor_id))
    return renamed
