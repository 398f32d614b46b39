"""Tables and store of the clubs mechanic: memberships, invitation codes and fee payments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kopilka.adapters.db.mechanics.awards import mechanic_awards
from kopilka.adapters.db.tables import metadata, receipt_lines, receipts
from kopilka.adapters.db.types import Json, UtcDateTime
from kopilka.services.ports import UnitOfWork

Row = dict[str, Any]

club_memberships = sa.Table(
    "club_memberships",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("club", sa.String(64), nullable=False),
    # pending, unpaid, active, grace, lapsed, cancelled, left, rejected (domain/clubs)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("joined_at", UtcDateTime, nullable=False),  # the first join; kept on rejoining
    sa.Column("status_changed_at", UtcDateTime, nullable=False),
    sa.Column("invitation_code", sa.String(32)),  # the code the member joined with
    sa.Column("paid_until", UtcDateTime),  # NULL: a free membership
    sa.Column("grace_until", UtcDateTime),
    sa.Column("cancelled_at", UtcDateTime),  # cancelled or left
    sa.Column("reason", sa.String(500)),  # why a request was declined
    sa.UniqueConstraint("tenant_id", "member_id", "club"),
    sa.Index(None, "tenant_id", "club", "status"),
    # The lapse job looks for paid periods that ended, across tenants.
    sa.Index(None, "status", "grace_until"),
)

club_invitations = sa.Table(
    "club_invitations",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("club", sa.String(64), nullable=False),
    sa.Column("code", sa.String(32), nullable=False),  # normalized: upper case, no dashes
    sa.Column("uses_left", sa.Integer, nullable=False),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.UniqueConstraint("tenant_id", "code"),
)

club_payments = sa.Table(
    "club_payments",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
    # The merchant's own id of the payment: the natural idempotency key.
    sa.Column("payment_id", sa.String(128), nullable=False),
    sa.Column("member_id", sa.Uuid, nullable=False),
    sa.Column("club", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("paid_at", UtcDateTime, nullable=False),
    sa.Column("period_start", UtcDateTime, nullable=False),
    sa.Column("period_end", UtcDateTime, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("response", Json, nullable=False),  # what a retry with the same body gets
    sa.UniqueConstraint("tenant_id", "payment_id"),
    sa.Index(None, "tenant_id", "club", "member_id"),
)

_M = club_memberships.c
_I = club_invitations.c
_P = club_payments.c


class ClubStore:
    """Reads and writes the clubs' tables inside a unit of work; tenant first everywhere."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ---- memberships -------------------------------------------------------------------
    def membership(self, tenant_id: uuid.UUID, member_id: uuid.UUID, club: str) -> Row | None:
        row = self.uow.execute(
            sa.select(club_memberships).where(
                _M.tenant_id == tenant_id, _M.member_id == member_id, _M.club == club
            )
        ).first()
        return dict(row._mapping) if row is not None else None

    def memberships_of(self, tenant_id: uuid.UUID, member_id: uuid.UUID) -> list[Row]:
        rows = self.uow.execute(
            sa.select(club_memberships)
            .where(_M.tenant_id == tenant_id, _M.member_id == member_id)
            .order_by(_M.club)
        )
        return [dict(r._mapping) for r in rows]

    def insert_membership(self, row: Row) -> None:
        self.uow.execute(sa.insert(club_memberships).values(**row))

    def update_membership(
        self, tenant_id: uuid.UUID, membership_id: uuid.UUID, values: Row
    ) -> None:
        self.uow.execute(
            sa.update(club_memberships)
            .where(_M.tenant_id == tenant_id, _M.id == membership_id)
            .values(**values)
        )

    def delete_membership(self, tenant_id: uuid.UUID, membership_id: uuid.UUID) -> None:
        self.uow.execute(
            sa.delete(club_memberships).where(_M.tenant_id == tenant_id, _M.id == membership_id)
        )

    def move_memberships(
        self,
        tenant_id: uuid.UUID,
        from_member: uuid.UUID,
        to_member: uuid.UUID,
        clubs: Sequence[str],
    ) -> None:
        """Give these memberships of one member to another (who has none of those clubs)."""
        if not clubs:
            return
        self.uow.execute(
            sa.update(club_memberships)
            .where(
                _M.tenant_id == tenant_id,
                _M.member_id == from_member,
                _M.club.in_(list(clubs)),
            )
            .values(member_id=to_member)
        )

    def move_payments(
        self, tenant_id: uuid.UUID, from_member: uuid.UUID, to_member: uuid.UUID
    ) -> None:
        """The fees one member paid become another's (the report counts them there)."""
        self.uow.execute(
            sa.update(club_payments)
            .where(_P.tenant_id == tenant_id, _P.member_id == from_member)
            .values(member_id=to_member)
        )

    def move_awards(
        self,
        tenant_id: uuid.UUID,
        mechanic: str,
        from_member: uuid.UUID,
        to_member: uuid.UUID,
    ) -> None:
        """This mechanic's once-only rewards (the welcome points) of one member become
        another's, so they are not given again; a key the other already has stays put (the
        reward was given to both; one record is enough to refuse a third)."""
        awards = mechanic_awards.c
        theirs = mechanic_awards.alias("theirs")
        self.uow.execute(
            sa.update(mechanic_awards)
            .where(
                awards.tenant_id == tenant_id,
                awards.member_id == from_member,
                awards.mechanic == mechanic,
                ~sa.exists().where(
                    theirs.c.tenant_id == tenant_id,
                    theirs.c.member_id == to_member,
                    theirs.c.award_key == awards.award_key,
                ),
            )
            .values(member_id=to_member)
        )

    def status_counts(self, tenant_id: uuid.UUID, now: datetime) -> list[Row]:
        """Memberships by club and stored status, with whether the paid period and the grace
        are over (so the caller can tell the state at ``now`` without the lapse job)."""
        paid_over = sa.case((_M.paid_until <= now, True), else_=False).label("paid_over")
        grace_over = sa.case((_M.grace_until <= now, True), else_=False).label("grace_over")
        no_fee = sa.case((_M.paid_until.is_(None), True), else_=False).label("no_fee")
        rows = self.uow.execute(
            sa.select(_M.club, _M.status, paid_over, grace_over, no_fee, sa.func.count())
            .where(_M.tenant_id == tenant_id)
            .group_by(_M.club, _M.status, paid_over, grace_over, no_fee)
        )
        return [
            {
                "club": r[0],
                "status": r[1],
                "paid_over": bool(r[2]),
                "grace_over": bool(r[3]),
                "no_fee": bool(r[4]),
                "count": int(r[5]),
            }
            for r in rows
        ]

    def club_members(self, tenant_id: uuid.UUID, club: str, statuses: Sequence[str]) -> list[Row]:
        rows = self.uow.execute(
            sa.select(club_memberships)
            .where(_M.tenant_id == tenant_id, _M.club == club, _M.status.in_(list(statuses)))
            .order_by(_M.member_id)
        )
        return [dict(r._mapping) for r in rows]

    def lapse(self, now: datetime, tenant_id: uuid.UUID | None) -> list[Row]:
        """Bring paid memberships up to date, set-based: past the grace to ``lapsed``, past
        the paid period to ``grace``. Returns the rows changed (nothing on a second run)."""
        changed: list[Row] = []
        scope = [_M.tenant_id == tenant_id] if tenant_id is not None else []
        returning = (_M.id, _M.tenant_id, _M.member_id, _M.club, _M.paid_until, _M.grace_until)
        for status, where in (
            (
                "lapsed",
                [_M.status.in_(("active", "grace")), _M.grace_until <= now],
            ),
            (
                "grace",
                [_M.status == "active", _M.paid_until <= now, _M.grace_until > now],
            ),
        ):
            result = self.uow.execute(
                sa.update(club_memberships)
                .where(*where, *scope)
                .values(status=status, status_changed_at=now)
                .returning(*returning)
            )
            changed += [{**dict(r._mapping), "status": status} for r in result]
        return changed

    # ---- invitations -------------------------------------------------------------------
    def invitation(self, tenant_id: uuid.UUID, code: str) -> Row | None:
        row = self.uow.execute(
            sa.select(club_invitations).where(_I.tenant_id == tenant_id, _I.code == code)
        ).first()
        return dict(row._mapping) if row is not None else None

    def existing_codes(self, tenant_id: uuid.UUID, codes: Sequence[str]) -> set[str]:
        if not codes:
            return set()
        rows = self.uow.execute(
            sa.select(_I.code).where(_I.tenant_id == tenant_id, _I.code.in_(list(codes)))
        ).scalars()
        return set(rows)

    def insert_invitations(self, rows: list[Row]) -> None:
        if rows:
            self.uow.execute(sa.insert(club_invitations), rows)

    def use_invitation(self, tenant_id: uuid.UUID, invitation_id: uuid.UUID) -> bool:
        """Take one use; False when none is left (a concurrent join took the last)."""
        result = self.uow.execute(
            sa.update(club_invitations)
            .where(_I.tenant_id == tenant_id, _I.id == invitation_id, _I.uses_left > 0)
            .values(uses_left=_I.uses_left - 1)
        )
        return bool(result.rowcount == 1)

    # ---- payments ----------------------------------------------------------------------
    def payment(self, tenant_id: uuid.UUID, payment_id: str) -> Row | None:
        row = self.uow.execute(
            sa.select(club_payments).where(_P.tenant_id == tenant_id, _P.payment_id == payment_id)
        ).first()
        return dict(row._mapping) if row is not None else None

    def insert_payment(self, row: Row) -> None:
        self.uow.execute(sa.insert(club_payments).values(**row))

    def fees(
        self,
        tenant_id: uuid.UUID,
        club: str,
        member_ids: Sequence[uuid.UUID],
        since: datetime | None,
        until: datetime | None,
    ) -> dict[uuid.UUID, tuple[int, int]]:
        """(payments, amount) per member, paid within [since, until)."""
        if not member_ids:
            return {}
        query = (
            sa.select(_P.member_id, sa.func.count(), sa.func.coalesce(sa.func.sum(_P.amount), 0))
            .where(_P.tenant_id == tenant_id, _P.club == club, _P.member_id.in_(list(member_ids)))
            .group_by(_P.member_id)
        )
        if since is not None:
            query = query.where(_P.paid_at >= since)
        if until is not None:
            query = query.where(_P.paid_at < until)
        return {r[0]: (int(r[1]), int(r[2])) for r in self.uow.execute(query)}

    # ---- receipts, for the savings report ----------------------------------------------
    def confirmed_receipts(
        self,
        tenant_id: uuid.UUID,
        member_ids: Sequence[uuid.UUID],
        since: datetime | None,
        until: datetime | None,
    ) -> list[Row]:
        if not member_ids:
            return []
        query = sa.select(
            receipts.c.id,
            receipts.c.member_id,
            receipts.c.occurred_at,
            receipts.c.programs,
            receipts.c.result,
        ).where(
            receipts.c.tenant_id == tenant_id,
            receipts.c.member_id.in_(list(member_ids)),
            receipts.c.status == "confirmed",
        )
        if since is not None:
            query = query.where(receipts.c.occurred_at >= since)
        if until is not None:
            query = query.where(receipts.c.occurred_at < until)
        return [dict(r._mapping) for r in self.uow.execute(query.order_by(receipts.c.id))]

    def refunded_lines(self, tenant_id: uuid.UUID, receipt_ids: Sequence[uuid.UUID]) -> list[Row]:
        """Every line of those receipts that have a refunded line (most have none)."""
        if not receipt_ids:
            return []
        refunded = (
            sa.select(receipt_lines.c.receipt_id)
            .where(
                receipt_lines.c.tenant_id == tenant_id,
                receipt_lines.c.receipt_id.in_(list(receipt_ids)),
                receipt_lines.c.refunded_qty > 0,
            )
            .distinct()
        )
        rows = self.uow.execute(
            sa.select(
                receipt_lines.c.receipt_id,
                receipt_lines.c.qty,
                receipt_lines.c.refunded_qty,
                receipt_lines.c.amount,
                receipt_lines.c.discount,
            ).where(
                receipt_lines.c.tenant_id == tenant_id,
                receipt_lines.c.receipt_id.in_(refunded),
            )
        )
        return [dict(r._mapping) for r in rows]
