"""Tables and store of the referrals mechanic: members' codes, who referred whom (and what
came of it), and the fingerprints members enrolled with."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.tables import metadata
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.services.ports import UnitOfWork

referral_codes = sa.Table(
    "referral_codes",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("code", sa.String(16), nullable=False),  # canonical: upper case, no separators
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "member_id"),
    sa.UniqueConstraint("tenant_id", "code"),
)

referrals = sa.Table(
    "referrals",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("referrer_id", sa.Uuid, nullable=False),
    sa.Column("referee_id", sa.Uuid, nullable=False),
    sa.Column("code", sa.String(16), nullable=False),
    # The program version whose terms the referral was made under (None: none in force).
    sa.Column("program", sa.String(64)),
    sa.Column("program_version", sa.Integer),
    # awaiting_purchase, pending, rewarded, voided, blocked, capped or inactive
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("reason", sa.String(32)),
    sa.Column("fingerprints", Json, nullable=False),  # [{"kind", "digest"}] of the referee
    sa.Column("receipt_id", sa.Uuid),  # the first purchase that earned the rewards
    sa.Column("referrer_points", sa.BigInteger, nullable=False),
    sa.Column("referee_points", sa.BigInteger, nullable=False),
    sa.Column("awards", Json, nullable=False),  # [{"member_id", "key", "points"}] to void
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("rewarded_at", UtcDateTime),
    sa.Column("pending_until", UtcDateTime),
    sa.Column("voided_at", UtcDateTime),
    sa.UniqueConstraint("tenant_id", "referee_id"),  # a member is referred at most once
    sa.Index(None, "tenant_id", "referrer_id", "created_at"),
    sa.Index(None, "status", "pending_until"),  # the job's scan
)

member_fingerprints = sa.Table(
    "member_fingerprints",
    metadata,
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),  # sha256, never the raw value
    sa.Column("source", sa.String(16), nullable=False),  # enrolment
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "member_id", "kind", "digest"),
    sa.Index(None, "tenant_id", "kind", "digest"),
)

_CODES = referral_codes.c
_REFS = referrals.c
_FPS = member_fingerprints.c
_OF_REFEREE = sa.select(referrals).where(
    _REFS.tenant_id == sa.bindparam("t"), _REFS.referee_id == sa.bindparam("r")
)
_OF_REFEREE_LOCKED = _OF_REFEREE.with_for_update()


def referral_key(tenant_id: uuid.UUID, referee_id: uuid.UUID) -> tuple[Any, ...]:
    """The key, in ``UnitOfWork.prefetched``, of the status of the referral that brought a
    member (None: no referral)."""
    return ("referral", tenant_id, referee_id)


class ReferralStore:
    """Reads and writes the referral tables inside a unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ---- codes -------------------------------------------------------------------------
    def code_of(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> str | None:
        found = self.uow.execute(
            sa.select(_CODES.code).where(
                _CODES.tenant_id == tenant_id, _CODES.member_id == member_id
            )
        ).scalar()
        return str(found) if found is not None else None

    def owner_of(self, tenant_id: uuid.UUID, code: str) -> uuid.UUID | None:
        found = self.uow.execute(
            sa.select(_CODES.member_id).where(_CODES.tenant_id == tenant_id, _CODES.code == code)
        ).scalar()
        return found if isinstance(found, uuid.UUID) else None

    def insert_code(
        self, tenant_id: uuid.UUID, member_id: uuid.UUID, code: str, now: datetime
    ) -> None:
        self.uow.execute(
            sa.insert(referral_codes).values(
                tenant_id=tenant_id, member_id=member_id, code=code, created_at=now
            )
        )

    # ---- referrals ---------------------------------------------------------------------
    def insert(self, row: dict[str, Any]) -> None:
        self.uow.prefetched.clear()  # a referral's status read before is stale now
        self.uow.execute(sa.insert(referrals).values(**row))

    def update(self, tenant_id: uuid.UUID, referral_id: uuid.UUID, values: dict[str, Any]) -> None:
        self.uow.prefetched.clear()
        self.uow.execute(
            sa.update(referrals)
            .where(_REFS.tenant_id == tenant_id, _REFS.id == referral_id)
            .values(**values)
        )

    def of_referee(
        self, tenant_id: uuid.UUID, referee_id: uuid.UUID, *, lock: bool = False
    ) -> dict[str, Any] | None:
        """The referral that brought ``referee_id``; locked (PostgreSQL) for a change.
        (Looked up on every member's purchase: the statements are built once.)"""
        locked = lock and self.uow.dialect == "postgresql"
        query = _OF_REFEREE_LOCKED if locked else _OF_REFEREE
        row = self.uow.execute(query, {"t": tenant_id, "r": referee_id}).first()
        return dict(row._mapping) if row is not None else None

    def of_referrer(
        self,
        tenant_id: uuid.UUID,
        referrer_id: uuid.UUID,
        before: uuid.UUID | None,
        limit: int,
        statuses: tuple[str, ...] | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The referrer's referrals, newest first (ids are time-ordered)."""
        query = sa.select(referrals).where(
            _REFS.tenant_id == tenant_id, _REFS.referrer_id == referrer_id
        )
        if before is not None:
            query = query.where(_REFS.id < before)
        if statuses is not None:
            query = query.where(_effective_status(now).in_(statuses))
        rows = self.uow.execute(query.order_by(_REFS.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]

    def counts(self, tenant_id: uuid.UUID, referrer_id: uuid.UUID, now: datetime) -> dict[str, int]:
        """How many of the referrer's referrals are in each (effective) status."""
        mine = sa.and_(_REFS.tenant_id == tenant_id, _REFS.referrer_id == referrer_id)
        rows = self.uow.execute(
            sa.select(_REFS.status, sa.func.count()).where(mine).group_by(_REFS.status)
        )
        found = {str(s): int(n) for s, n in rows}
        # Grouping by a CASE with a bound moment trips PostgreSQL (the two renderings get
        # different parameters), so the pending ones past their window are counted apart.
        due = int(
            self.uow.execute(
                sa.select(sa.func.count()).where(
                    mine, _REFS.status == "pending", _REFS.pending_until <= now
                )
            ).scalar_one()
        )
        if due:
            found["pending"] -= due
            found["rewarded"] = found.get("rewarded", 0) + due
        return found

    def counted_since(self, tenant_id: uuid.UUID, referrer_id: uuid.UUID, since: datetime) -> int:
        """Referrals counting against the monthly cap: every one since ``since`` but those
        already refused for the cap."""
        found = self.uow.execute(
            sa.select(sa.func.count()).where(
                _REFS.tenant_id == tenant_id,
                _REFS.referrer_id == referrer_id,
                _REFS.created_at >= since,
                _REFS.status != "capped",
            )
        ).scalar_one()
        return int(found)

    def settle_due(self, now: datetime, tenant_id: uuid.UUID | None) -> int:
        """Pending referrals past their return window become rewarded for good."""
        query = (
            sa.update(referrals)
            .where(_REFS.status == "pending", _REFS.pending_until <= now)
            .values(status="rewarded")
        )
        if tenant_id is not None:
            query = query.where(_REFS.tenant_id == tenant_id)
        return int(self.uow.execute(query).rowcount or 0)

    # ---- fingerprints ------------------------------------------------------------------
    def add_fingerprints(
        self,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        pairs: list[tuple[str, str]],
        source: str,
        now: datetime,
    ) -> None:
        known = set(self.fingerprints_of(tenant_id, member_id))
        fresh = sorted(set(pairs) - known)
        if fresh:
            self.uow.execute(
                sa.insert(member_fingerprints),
                [
                    {
                        "tenant_id": tenant_id,
                        "member_id": member_id,
                        "kind": kind,
                        "digest": digest,
                        "source": source,
                        "created_at": now,
                    }
                    for kind, digest in fresh
                ],
            )

    def fingerprints_of(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> list[tuple[str, str]]:
        rows = self.uow.execute(
            sa.select(_FPS.kind, _FPS.digest).where(
                _FPS.tenant_id == tenant_id, _FPS.member_id == member_id
            )
        )
        return [(str(kind), str(digest)) for kind, digest in rows]


def _effective_status(now: datetime | None) -> Any:
    """The stored status, with pending referrals past their window read as rewarded (the
    job writes that down later)."""
    if now is None:
        return _REFS.status
    return sa.case(
        (sa.and_(_REFS.status == "pending", _REFS.pending_until <= now), sa.literal("rewarded")),
        else_=_REFS.status,
    )


# ---- member merge --------------------------------------------------------------------------
def merge_codes(
    uow: UnitOfWork, tenant_id: uuid.UUID, survivor_id: uuid.UUID, duplicate_id: uuid.UUID
) -> None:
    """A survivor without a code takes the duplicate's (the one the person shared); when
    both have one, the duplicate's stays on the merged profile and brings friends to the
    survivor through the merge (``ReferralService._referrer``)."""
    own = referral_codes.alias("own")
    uow.execute(
        sa.update(referral_codes)
        .where(
            _CODES.tenant_id == tenant_id,
            _CODES.member_id == duplicate_id,
            ~sa.exists().where(own.c.tenant_id == tenant_id, own.c.member_id == survivor_id),
        )
        .values(member_id=survivor_id)
    )


def merge_referrals(
    uow: UnitOfWork, tenant_id: uuid.UUID, survivor_id: uuid.UUID, duplicate_id: uuid.UUID
) -> None:
    """The friends the duplicate brought become the survivor's (its lists, counts and
    monthly cap count them); the referral that brought the duplicate becomes the
    survivor's unless the survivor was referred itself (a person is referred once)."""
    uow.execute(
        sa.update(referrals)
        .where(_REFS.tenant_id == tenant_id, _REFS.referrer_id == duplicate_id)
        .values(referrer_id=survivor_id)
    )
    own = referrals.alias("own")
    uow.execute(
        sa.update(referrals)
        .where(
            _REFS.tenant_id == tenant_id,
            _REFS.referee_id == duplicate_id,
            ~sa.exists().where(own.c.tenant_id == tenant_id, own.c.referee_id == survivor_id),
        )
        .values(referee_id=survivor_id)
    )
    # One profile invited the other: the person invited themselves. Not rewarded any more
    # if it still waited for a purchase; rewards already given stay (an operator decides).
    uow.execute(
        sa.update(referrals)
        .where(
            _REFS.tenant_id == tenant_id,
            _REFS.referee_id == survivor_id,
            _REFS.referrer_id == survivor_id,
            _REFS.status == "awaiting_purchase",
        )
        .values(status="blocked", reason="self_referral")
    )


def referrals_with_awards_of(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_ids: list[uuid.UUID]
) -> list[dict[str, Any]]:
    """The members' referrals (either side) that gave points: id and awards."""
    rows = uow.execute(
        sa.select(_REFS.id, _REFS.awards).where(
            _REFS.tenant_id == tenant_id,
            sa.or_(_REFS.referrer_id.in_(member_ids), _REFS.referee_id.in_(member_ids)),
            _REFS.referrer_points + _REFS.referee_points > 0,
        )
    )
    return [dict(r._mapping) for r in rows]


def merge_fingerprints(
    uow: UnitOfWork, tenant_id: uuid.UUID, survivor_id: uuid.UUID, duplicate_id: uuid.UUID
) -> None:
    """The duplicate's enrolment fingerprints become the survivor's too, so a friend
    sharing one with either profile is still caught."""
    own = member_fingerprints.alias("own")
    uow.execute(
        sa.insert(member_fingerprints).from_select(
            ["tenant_id", "member_id", "kind", "digest", "source", "created_at"],
            sa.select(
                _FPS.tenant_id,
                sa.literal(survivor_id, sa.Uuid),
                _FPS.kind,
                _FPS.digest,
                _FPS.source,
                _FPS.created_at,
            ).where(
                _FPS.tenant_id == tenant_id,
                _FPS.member_id == duplicate_id,
                ~sa.exists().where(
                    own.c.tenant_id == tenant_id,
                    own.c.member_id == survivor_id,
                    own.c.kind == _FPS.kind,
                    own.c.digest == _FPS.digest,
                ),
            ),
        )
    )
    uow.execute(
        sa.delete(member_fingerprints).where(
            _FPS.tenant_id == tenant_id, _FPS.member_id == duplicate_id
        )
    )
