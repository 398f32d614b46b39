"""Closed clubs and paid memberships.

A club is defined in a program document (``clubs:``) and exists while a program in force
defines it. Members join by invitation code, by an admin's approval, by meeting a condition
(a tier or segment, evaluated live) or freely; a paid club also needs its fee, recorded as
payment events from the merchant's system. While a membership gives benefits, the member's
facts at the till carry the club, so ``members_of_club`` programs and ``club_in`` rules apply.

Every write locks the member's row first (PostgreSQL; SQLite writers are serialised), so
twin requests see each other's membership; retries are idempotent on natural keys: the
member and club for joins and state changes, the merchant's ``payment_id`` for payments.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kopilka.adapters.db.mechanics.clubs import ClubStore
from kopilka.clock import Clock
from kopilka.domain.clubs import texts
from kopilka.domain.clubs.membership import (
    ENDED,
    STATUSES,
    Membership,
    condition_met,
    counted_status,
    effective_status,
    has_benefits,
    is_expired,
    next_period,
    normalize_invitation,
    status_after_payment,
)
from kopilka.domain.clubs.savings import (
    ProgramShare,
    Savings,
    club_rule_ids,
    receipt_savings,
)
from kopilka.domain.clubs.settings import ClubSettings
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    FieldError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.rules.document import CompiledProgram
from kopilka.domain.rules.facts import MemberFacts
from kopilka.ids import new_id
from kopilka.services.awards import grant_points
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.members import MemberHook
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.purchase_hooks import PurchaseHook
from kopilka.services.views import View

MECHANIC = "club"
JOB_ACTOR = "job:scheduler"
FUTURE_SLACK = timedelta(minutes=5)
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L to misread
CODE_LENGTH = 10
REPORT_CHUNK = 500
# Memberships that never gave anything: left out of the savings report.
NEVER_MEMBERS = ("pending", "rejected")
# When both merged profiles are in a club, the better standing is kept: benefits first, then
# how close to them (an expired membership still outranks one the person left or was refused).
MERGE_RANK = {
    "active": 7,
    "grace": 6,
    "cancelled": 5,
    "unpaid": 4,
    "pending": 3,
    "lapsed": 2,
    "left": 1,
    "rejected": 0,
}


@dataclass(frozen=True)
class ClubDef:
    """A club as defined now, and the program that defines it (currency, expiry)."""

    settings: ClubSettings
    program: CompiledProgram

    @property
    def code(self) -> str:
        return self.settings.code

    @property
    def names(self) -> dict[str, str]:
        return self.settings.names


# ---- views -----------------------------------------------------------------------------
class FeeView(View):
    amount: int
    period: str
    grace_days: int


class ConditionView(View):
    tiers: list[str]
    segments: list[str]


class MembershipView(View):
    member_id: uuid.UUID
    club: str
    name: dict[str, str]
    join: str
    status: str
    benefits: bool
    # membership (a stored one), condition (the club's condition holds), attribute (the
    # member's legacy ``attributes.clubs``)
    via: str
    joined_at: datetime | None = None
    status_changed_at: datetime | None = None
    paid_until: datetime | None = None
    grace_until: datetime | None = None
    cancelled_at: datetime | None = None
    fee: FeeView | None = None
    explanation: dict[str, str]


class PaymentView(View):
    payment_id: str
    member_id: uuid.UUID
    club: str
    amount: int
    currency: str
    paid_at: datetime
    period_start: datetime
    period_end: datetime
    recorded_at: datetime
    explanation: dict[str, str]
    membership: MembershipView


class InvitationBatchView(View):
    club: str
    codes: list[str]
    uses: int
    expires_at: datetime | None
    created_at: datetime


class ClubView(View):
    code: str
    name: dict[str, str]
    program: str
    join: str
    condition: ConditionView | None
    fee: FeeView | None
    welcome_points: int
    members: dict[str, int]  # stored memberships by their state now


class ReportLine(View):
    member_id: uuid.UUID
    status: str
    joined_at: datetime
    paid_until: datetime | None
    payments: int
    fees_paid: int
    receipts: int
    discount: int
    points: int
    points_value: int
    saved: int
    net: int  # saved - fees_paid: what the membership was worth to the member


class ReportTotals(View):
    members: int
    payments: int
    fees_paid: int
    receipts: int
    discount: int
    points: int
    points_value: int
    saved: int
    net: int


class ClubReport(View):
    club: str
    name: dict[str, str]
    currency: str
    since: datetime | None
    until: datetime | None
    method: str
    members: list[ReportLine]
    totals: ReportTotals


def _fee_view(club: ClubSettings) -> FeeView | None:
    fee = club.fee
    return FeeView(amount=fee.amount, period=fee.period, grace_days=fee.grace_days) if fee else None


def _str_set(value: Any) -> frozenset[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return frozenset(str(v) for v in items)


class ClubService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        programs: ProgramService,
        fact_hooks: Sequence[PurchaseHook] = (),
    ) -> None:
        """``fact_hooks``: the till's hooks registered before this mechanic (tiers...), run
        to learn a member's tier and segments outside a purchase."""
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs
        self.fact_hooks: list[PurchaseHook] = list(fact_hooks)
        self.member_hook = ClubMemberHook(self)

    # ---- definitions and facts ---------------------------------------------------------
    def clubs_in_force(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, now: datetime
    ) -> dict[str, ClubDef]:
        """The clubs of the programs in force; a code defined twice: the first program, by
        program code, wins."""
        found: dict[str, ClubDef] = {}
        for program in self.programs.in_force(uow, tenant_id, now):
            for club in program.settings.clubs:
                found.setdefault(club.code, ClubDef(club, program))
        return found

    def _club(self, uow: UnitOfWork, tenant_id: uuid.UUID, code: str, now: datetime) -> ClubDef:
        club = self.clubs_in_force(uow, tenant_id, now).get(code)
        if club is None:
            raise NotFound(f"No club {code!r} in the programs in force.", code="club_not_found")
        return club

    def _member(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID, *, lock: bool = False
    ) -> dict[str, Any]:
        member = uow.directory.member(tenant_id, member_id, lock=lock)
        if member is None:
            raise NotFound("Member not found.", code="member_not_found")
        return member

    @staticmethod
    def _require_active(member: dict[str, Any]) -> None:
        if member["status"] != "active":
            raise BusinessRuleViolation(
                f"The member is {member['status']}: no club changes.",
                code=f"member_{member['status']}",
            )

    def facts(
        self, uow: UnitOfWork, tenant: Tenant, member: dict[str, Any], now: datetime
    ) -> MemberFacts:
        """The member's facts as the till sees them before this mechanic adds the clubs:
        the profile's attributes, then what the earlier hooks (tiers...) make of them."""
        attrs = member["attributes"] or {}
        tier = attrs.get("tier")
        facts = MemberFacts(
            id=str(member["id"]),
            tier=tier if isinstance(tier, str) else None,
            segments=_str_set(attrs.get("segments")),
            tags=_str_set(attrs.get("tags")),
            attributes=attrs,
            purchases_before=uow.commerce.count_member_purchases(tenant.id, member["id"]),
            birthday=(member["birth_month"], member["birth_day"])
            if member["birth_month"]
            else None,
            clubs=_str_set(attrs.get("clubs")),
        )
        for hook in self.fact_hooks:
            facts = hook.member_facts(uow, tenant, member, facts, now)
        return facts

    def member_clubs(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member_id: uuid.UUID,
        facts: MemberFacts,
        now: datetime,
    ) -> frozenset[str]:
        """The clubs whose benefits the member has now (stored memberships and conditions)."""
        clubs = self.clubs_in_force(uow, tenant.id, now)
        if not clubs:
            return frozenset()  # no query on the till's hot path when no club is defined
        rows = {r["club"]: r for r in ClubStore(uow).memberships_of(tenant.id, member_id)}
        return frozenset(
            code for code, club in clubs.items() if self._counts(club, rows.get(code), facts, now)
        )

    @staticmethod
    def _counts(
        club: ClubDef, row: dict[str, Any] | None, facts: MemberFacts | None, now: datetime
    ) -> bool:
        settings = club.settings
        if settings.join == "condition":
            if facts is None or not condition_met(settings.condition, facts.tier, facts.segments):
                return False
            if settings.fee is None:  # free: the condition is the membership, unless opted out
                return row is None or row["status"] not in ("left", "rejected")
        return row is not None and has_benefits(Membership.of(row), settings, now)

    # ---- views -------------------------------------------------------------------------
    def _view(
        self,
        tenant: Tenant,
        member_id: uuid.UUID,
        club: ClubDef,
        row: dict[str, Any] | None,
        facts: MemberFacts | None,
        now: datetime,
    ) -> MembershipView | None:
        settings = club.settings
        # The legacy ``attributes.clubs`` count at the till whatever the membership says.
        by_attribute = facts is not None and club.code in facts.clubs
        benefits = self._counts(club, row, facts, now) or by_attribute
        if row is not None:
            state = Membership.of(row)
            status = effective_status(state, settings, now)
            via = "membership"
            dates: dict[str, Any] = {
                "joined_at": row["joined_at"],
                "status_changed_at": row["status_changed_at"],
                "paid_until": row["paid_until"],
                "grace_until": row["grace_until"],
                "cancelled_at": row["cancelled_at"],
            }
        elif by_attribute:
            status, via, dates = "active", "attribute", {}
        elif benefits:
            status, via, dates = "active", "condition", {}
        else:
            return None
        return MembershipView(
            member_id=member_id,
            club=club.code,
            name=club.names,
            join=settings.join,
            status=status,
            benefits=benefits,
            via=via,
            fee=_fee_view(settings),
            explanation=texts.status_text(
                club.names,
                status,
                benefits,
                dates.get("paid_until"),
                dates.get("grace_until"),
                tenant.timezone,
            ),
            **dates,
        )

    def _stored_view(
        self,
        tenant: Tenant,
        member_id: uuid.UUID,
        club: ClubDef,
        row: dict[str, Any],
        facts: MemberFacts | None,
        now: datetime,
    ) -> MembershipView:
        view = self._view(tenant, member_id, club, row, facts, now)
        assert view is not None  # a stored membership always has a view
        return view

    def _member_view(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any],
        club: ClubDef,
        row: dict[str, Any],
        now: datetime,
    ) -> MembershipView:
        """A stored membership's view; a condition club's benefits need the member's facts."""
        facts = self.facts(uow, tenant, member, now) if club.settings.join == "condition" else None
        return self._stored_view(tenant, member["id"], club, row, facts, now)

    def list_member(self, actor: Actor, member_id: uuid.UUID) -> list[MembershipView]:
        """Every club of the programs in force the member is in, was in, or waits for."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            member = self._member(uow, tenant.id, member_id)
            now = self.clock.now()
            clubs = self.clubs_in_force(uow, tenant.id, now)
            if not clubs:
                return []
            rows = {r["club"]: r for r in ClubStore(uow).memberships_of(tenant.id, member_id)}
            facts = self.facts(uow, tenant, member, now)
            views = [
                self._view(tenant, member_id, club, rows.get(code), facts, now)
                for code, club in sorted(clubs.items())
            ]
            return [v for v in views if v is not None]

    def check(self, actor: Actor, member_id: uuid.UUID, code: str) -> MembershipView:
        """The member's standing in one club; an expired membership is an error (409), so a
        partner's system asking "is this a VIP?" cannot miss it."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            member = self._member(uow, tenant.id, member_id)
            now = self.clock.now()
            club = self._club(uow, tenant.id, code, now)
            row = ClubStore(uow).membership(tenant.id, member_id, code)
            if row is not None:
                self._refuse_expired(tenant, club, row, now)
            view = self._view(
                tenant, member_id, club, row, self.facts(uow, tenant, member, now), now
            )
            if view is None:
                raise NotFound(
                    f"The member is not in the club {code!r}.", code="membership_not_found"
                )
            return view

    @staticmethod
    def _refuse_expired(tenant: Tenant, club: ClubDef, row: dict[str, Any], now: datetime) -> None:
        state = Membership.of(row)
        if not is_expired(state, club.settings, now):
            return
        ended = state.grace_until if row["status"] != "cancelled" else state.paid_until
        when = texts.moment_text(ended, tenant.timezone)[1] if ended is not None else "earlier"
        raise Conflict(
            f"The membership of the club {club.code!r} expired ({when}); "
            + ("a payment renews it." if club.settings.fee else "join again to renew it."),
            code="membership_expired",
            extra={"club": club.code, "expired_at": ended.isoformat() if ended else None},
        )

    # ---- joining -----------------------------------------------------------------------
    def join(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        code: str,
        invitation_code: str | None = None,
    ) -> MembershipView:
        """Join a club (or ask to). Joining a club one is already in, or waits for, changes
        nothing and answers the membership as it is."""
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            member = self._member(uow, tenant.id, member_id, lock=True)
            now = self.clock.now()
            club = self._club(uow, tenant.id, code, now)
            self._require_active(member)
            store = ClubStore(uow)
            settings = club.settings
            row = store.membership(tenant.id, member_id, code)
            facts = self.facts(uow, tenant, member, now) if settings.join == "condition" else None
            if row is not None:
                state = Membership.of(row)
                current = effective_status(state, settings, now)
                if current not in ENDED and not is_expired(state, settings, now):
                    return self._stored_view(tenant, member_id, club, row, facts, now)
            invitation = None
            if settings.join == "invitation" or (settings.join == "approval" and invitation_code):
                invitation = self._invitation(store, tenant.id, club, invitation_code, now)
            if settings.join == "condition":
                assert facts is not None
                assert settings.condition is not None
                if not condition_met(settings.condition, facts.tier, facts.segments):
                    wanted = [*settings.condition.tiers, *settings.condition.segments]
                    raise BusinessRuleViolation(
                        f"The club {code!r} is for members of {', '.join(wanted)}; "
                        "this member is not one (yet).",
                        code="club_condition_not_met",
                    )
            if settings.join == "approval" and invitation is None:
                status, action = "pending", "club.request"
                explanation = texts.requested(club.names)
            elif settings.fee is not None:
                status, action = "unpaid", "club.join"
                explanation = texts.awaiting_payment(
                    club.names, settings.fee.amount, settings.fee.period, tenant.currency
                )
            else:
                status, action, explanation = "active", "club.join", texts.joined(club.names)
            if invitation is not None and not store.use_invitation(tenant.id, invitation["id"]):
                raise BusinessRuleViolation(
                    "This invitation has been used up.",
                    code="invitation_used_up",
                    errors=[FieldError(("invitation_code",), "Used up.", "invitation_used_up")],
                )
            values: dict[str, Any] = {
                "status": status,
                "status_changed_at": now,
                "invitation_code": invitation["code"] if invitation else None,
                "paid_until": None,
                "grace_until": None,
                "cancelled_at": None,
                "reason": None,
            }
            row = self._save(store, tenant.id, member_id, code, row, values, now)
            self._audit(uow, tenant, actor, member_id, action, club, explanation, now)
            if status == "active":
                self._welcome(uow, tenant, actor, member_id, club, now)
            view = self._stored_view(tenant, member_id, club, row, facts, now)
            uow.commit()
            return view

    def _invitation(
        self,
        store: ClubStore,
        tenant_id: uuid.UUID,
        club: ClubDef,
        given: str | None,
        now: datetime,
    ) -> dict[str, Any]:
        path = ("invitation_code",)
        if not given:
            raise BusinessRuleViolation(
                f"The club {club.code!r} is closed: joining needs an invitation code.",
                code="invitation_required",
                errors=[FieldError(path, "An invitation code is required.", "invitation_required")],
            )
        invitation = store.invitation(tenant_id, normalize_invitation(given))
        if invitation is None or invitation["club"] != club.code:
            raise BusinessRuleViolation(
                f"This is not an invitation to the club {club.code!r}.",
                code="invalid_invitation",
                errors=[FieldError(path, "Unknown invitation code.", "invalid_invitation")],
            )
        if invitation["expires_at"] is not None and invitation["expires_at"] <= now:
            raise BusinessRuleViolation(
                f"This invitation expired at {invitation['expires_at'].isoformat()}.",
                code="invitation_expired",
                errors=[FieldError(path, "The invitation expired.", "invitation_expired")],
            )
        if invitation["uses_left"] <= 0:
            raise BusinessRuleViolation(
                "This invitation has been used up.",
                code="invitation_used_up",
                errors=[FieldError(path, "Used up.", "invitation_used_up")],
            )
        return invitation

    def _save(
        self,
        store: ClubStore,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        code: str,
        row: dict[str, Any] | None,
        values: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        if row is None:
            row = {
                "id": new_id(),
                "tenant_id": tenant_id,
                "member_id": member_id,
                "club": code,
                "joined_at": now,
                "invitation_code": None,
                "paid_until": None,
                "grace_until": None,
                "cancelled_at": None,
                "reason": None,
                **values,
            }
            store.insert_membership(row)
            return row
        store.update_membership(tenant_id, row["id"], values)
        return {**row, **values}

    def _audit(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor | str,
        member_id: uuid.UUID,
        action: str,
        club: ClubDef | str,
        explanation: dict[str, str],
        now: datetime,
        **details: Any,
    ) -> None:
        uow.directory.audit(
            tenant.id,
            actor.name if isinstance(actor, Actor) else actor,
            action,
            "member",
            member_id,
            {
                "club": club.code if isinstance(club, ClubDef) else club,
                "explanation": explanation,
                **details,
            },
            now,
        )

    def _welcome(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        club: ClubDef,
        now: datetime,
    ) -> None:
        """The club's welcome points, once per member and club ever (a natural key)."""
        points = club.settings.welcome_points
        if points <= 0:
            return
        grant_points(
            uow,
            tenant,
            actor,
            member_id,
            now,
            mechanic=MECHANIC,
            key=f"club:{club.code}:welcome",
            points=points,
            program=club.program,
            params={"club": club.code, "label": texts.welcome_label(club.names)},
        )

    # ---- approval, leaving, cancelling -------------------------------------------------
    def _stored(
        self, uow: UnitOfWork, actor: Actor, member_id: uuid.UUID, code: str
    ) -> tuple[Tenant, dict[str, Any], ClubDef, ClubStore, dict[str, Any] | None, datetime]:
        tenant = load_tenant(uow, actor.tenant_id)
        member = self._member(uow, tenant.id, member_id, lock=True)
        now = self.clock.now()
        club = self._club(uow, tenant.id, code, now)
        store = ClubStore(uow)
        return tenant, member, club, store, store.membership(tenant.id, member_id, code), now

    @staticmethod
    def _no_membership(code: str) -> NotFound:
        return NotFound(f"The member is not in the club {code!r}.", code="membership_not_found")

    def approve(self, actor: Actor, member_id: uuid.UUID, code: str) -> MembershipView:
        """Admit a pending request: active, or unpaid until the fee of a paid club comes."""
        with self.uow_factory(write=True) as uow:
            tenant, member, club, store, row, now = self._stored(uow, actor, member_id, code)
            if row is None:
                raise self._no_membership(code)
            self._refuse_expired(tenant, club, row, now)
            status = effective_status(Membership.of(row), club.settings, now)
            if status in ("active", "grace", "unpaid", "cancelled"):
                return self._member_view(uow, tenant, member, club, row, now)  # approved
            if status != "pending":
                raise Conflict(
                    f"The membership is {status}, not waiting for approval.",
                    code="membership_not_pending",
                )
            self._require_active(member)
            new = "unpaid" if club.settings.fee is not None else "active"
            row = self._save(
                store,
                tenant.id,
                member_id,
                code,
                row,
                {"status": new, "status_changed_at": now},
                now,
            )
            self._audit(
                uow, tenant, actor, member_id, "club.approve", club, texts.approved(club.names), now
            )
            if new == "active":
                self._welcome(uow, tenant, actor, member_id, club, now)
            view = self._member_view(uow, tenant, member, club, row, now)
            uow.commit()
            return view

    def reject(
        self, actor: Actor, member_id: uuid.UUID, code: str, reason: str | None = None
    ) -> MembershipView:
        """Decline a pending request (the member may ask again later)."""
        with self.uow_factory(write=True) as uow:
            tenant, member, club, store, row, now = self._stored(uow, actor, member_id, code)
            if row is None:
                raise self._no_membership(code)
            status = effective_status(Membership.of(row), club.settings, now)
            if status == "rejected":
                return self._member_view(uow, tenant, member, club, row, now)
            self._refuse_expired(tenant, club, row, now)
            if status != "pending":
                raise Conflict(
                    f"The membership is {status}, not waiting for approval.",
                    code="membership_not_pending",
                )
            row = self._save(
                store,
                tenant.id,
                member_id,
                code,
                row,
                {"status": "rejected", "status_changed_at": now, "reason": reason},
                now,
            )
            self._audit(
                uow,
                tenant,
                actor,
                member_id,
                "club.reject",
                club,
                texts.rejected(club.names, reason),
                now,
                reason=reason,
            )
            view = self._member_view(uow, tenant, member, club, row, now)
            uow.commit()
            return view

    def leave(self, actor: Actor, member_id: uuid.UUID, code: str) -> MembershipView:
        """Leave at once (a paid period left over is forfeited: ``cancel`` keeps it). A member
        of a condition club may leave it too: they opt out while the condition holds."""
        with self.uow_factory(write=True) as uow:
            tenant, member, club, store, row, now = self._stored(uow, actor, member_id, code)
            facts = (
                self.facts(uow, tenant, member, now) if club.settings.join == "condition" else None
            )
            if row is None and not self._counts(club, None, facts, now):
                raise self._no_membership(code)
            if row is not None and row["status"] == "left":
                return self._stored_view(tenant, member_id, club, row, facts, now)
            row = self._save(
                store,
                tenant.id,
                member_id,
                code,
                row,
                {"status": "left", "status_changed_at": now, "cancelled_at": now},
                now,
            )
            self._audit(
                uow, tenant, actor, member_id, "club.leave", club, texts.left(club.names), now
            )
            view = self._stored_view(tenant, member_id, club, row, facts, now)
            uow.commit()
            return view

    def cancel(self, actor: Actor, member_id: uuid.UUID, code: str) -> MembershipView:
        """Stop a paid membership from renewing: the benefits last until the end of the paid
        period, then it ends (no grace)."""
        with self.uow_factory(write=True) as uow:
            tenant, member, club, store, row, now = self._stored(uow, actor, member_id, code)
            if row is None:
                raise self._no_membership(code)
            self._refuse_expired(tenant, club, row, now)
            status = effective_status(Membership.of(row), club.settings, now)
            if status == "cancelled":
                return self._member_view(uow, tenant, member, club, row, now)
            if status not in ("active", "grace"):
                raise Conflict(
                    f"The membership is {status}: there is nothing to cancel.",
                    code=f"membership_{status}",
                )
            if row["paid_until"] is None:
                raise Conflict(
                    "A free membership does not renew; leave the club instead.",
                    code="membership_not_paid",
                )
            row = self._save(
                store,
                tenant.id,
                member_id,
                code,
                row,
                {"status": "cancelled", "status_changed_at": now, "cancelled_at": now},
                now,
            )
            until = row["paid_until"] if row["paid_until"] > now else None
            self._audit(
                uow,
                tenant,
                actor,
                member_id,
                "club.cancel",
                club,
                texts.cancelled(club.names, until, tenant.timezone),
                now,
            )
            view = self._member_view(uow, tenant, member, club, row, now)
            uow.commit()
            return view

    # ---- payments ----------------------------------------------------------------------
    def record_payment(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        code: str,
        *,
        payment_id: str,
        amount: int,
        paid_at: datetime,
        period: str | None = None,
    ) -> PaymentView:
        """A fee paid in the merchant's system: it buys one period, from the end of the paid
        period while the membership runs (or is in grace), else from ``paid_at``. The same
        ``payment_id`` with the same body replays the first answer."""
        digest = request_hash(
            "club-payment",
            {
                "member": str(member_id),
                "club": code,
                "amount": amount,
                "paid_at": paid_at.isoformat(),
                "period": period,
            },
        )
        with self.uow_factory(write=True) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            if not uow.claim_key(tenant.id, f"club-payment:{payment_id}"):
                raise Conflict(
                    "This payment is being recorded; retry in a moment.",
                    code="idempotency_in_progress",
                )
            member = self._member(uow, tenant.id, member_id, lock=True)
            store = ClubStore(uow)
            existing = store.payment(tenant.id, payment_id)
            if existing is not None:
                if existing["request_hash"] != digest:
                    raise Conflict(
                        f"Payment {payment_id!r} was already recorded with other details.",
                        code="payment_id_reused",
                    )
                return PaymentView.model_validate(existing["response"])
            now = self.clock.now()
            if paid_at > now + FUTURE_SLACK:
                raise ValidationFailed(
                    "paid_at is in the future.",
                    code="paid_in_future",
                    errors=[FieldError(("paid_at",), "In the future.", "paid_in_future")],
                )
            club = self._club(uow, tenant.id, code, now)
            self._require_active(member)
            settings = club.settings
            fee = settings.fee
            if fee is None:
                raise BusinessRuleViolation(
                    f"The club {code!r} has no fee.", code="club_has_no_fee"
                )
            if amount != fee.amount:
                raise BusinessRuleViolation(
                    f"The fee of the club {code!r} is {fee.amount} minor units a {fee.period}; "
                    f"the payment was {amount}.",
                    code="payment_amount_mismatch",
                    errors=[
                        FieldError(
                            ("amount",), f"The fee is {fee.amount}.", "payment_amount_mismatch"
                        )
                    ],
                    extra={"fee": fee.amount, "fee_period": fee.period},
                )
            if period is not None and period != fee.period:
                raise BusinessRuleViolation(
                    f"The fee of the club {code!r} is paid per {fee.period}.",
                    code="payment_period_mismatch",
                    errors=[
                        FieldError(
                            ("period",), f"The period is {fee.period}.", "payment_period_mismatch"
                        )
                    ],
                )
            row = store.membership(tenant.id, member_id, code)
            status = effective_status(Membership.of(row), settings, now) if row else None
            if row is None or status == "left":
                self._may_pay_without_joining(uow, tenant, member, club, now)
            elif status == "pending":
                raise Conflict(
                    "The request to join awaits approval; approve it before the fee.",
                    code="membership_pending",
                )
            elif status == "rejected":
                raise Conflict("The request to join was declined.", code="membership_rejected")
            paid = next_period(
                Membership.of(row) if row is not None and status != "left" else None,
                settings,
                paid_at,
                tenant.timezone,
            )
            new = status_after_payment(paid, now)
            row = self._save(
                store,
                tenant.id,
                member_id,
                code,
                row,
                {
                    "status": new,
                    "status_changed_at": now,
                    "paid_until": paid.end,
                    "grace_until": paid.grace_until,
                    "cancelled_at": None,
                },
                now,
            )
            explanation = texts.paid(
                club.names, amount, tenant.currency, fee.period, paid.end, tenant.timezone
            )
            self._audit(
                uow,
                tenant,
                actor,
                member_id,
                "club.payment",
                club,
                explanation,
                now,
                payment_id=payment_id,
                amount=amount,
                period_start=paid.start.isoformat(),
                period_end=paid.end.isoformat(),
            )
            if new == "active":
                self._welcome(uow, tenant, actor, member_id, club, now)
            view = PaymentView(
                payment_id=payment_id,
                member_id=member_id,
                club=code,
                amount=amount,
                currency=tenant.currency,
                paid_at=paid_at,
                period_start=paid.start,
                period_end=paid.end,
                recorded_at=now,
                explanation=explanation,
                membership=self._member_view(uow, tenant, member, club, row, now),
            )
            store.insert_payment(
                {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "payment_id": payment_id,
                    "member_id": member_id,
                    "club": code,
                    "amount": amount,
                    "currency": tenant.currency,
                    "paid_at": paid_at,
                    "period_start": paid.start,
                    "period_end": paid.end,
                    "recorded_at": now,
                    "request_hash": digest,
                    "response": view.to_json(),
                }
            )
            uow.commit()
            return view

    def _may_pay_without_joining(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any],
        club: ClubDef,
        now: datetime,
    ) -> None:
        """A payment joins an open club, or a condition club whose condition holds; a closed
        club must be joined first."""
        settings = club.settings
        if settings.join == "invitation":
            raise BusinessRuleViolation(
                f"The club {club.code!r} is closed: the member joins with an invitation code "
                "before paying.",
                code="invitation_required",
            )
        if settings.join == "approval":
            raise Conflict(
                f"The club {club.code!r} admits by approval: the member asks to join first.",
                code="membership_not_approved",
            )
        if settings.join == "condition":
            facts = self.facts(uow, tenant, member, now)
            if not condition_met(settings.condition, facts.tier, facts.segments):
                raise BusinessRuleViolation(
                    f"The club {club.code!r} is for members who meet its condition.",
                    code="club_condition_not_met",
                )

    # ---- invitations -------------------------------------------------------------------
    def invite(
        self,
        actor: Actor,
        code: str,
        *,
        count: int = 1,
        uses: int = 1,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> InvitationBatchView:
        """Make ``count`` invitation codes, each good for ``uses`` joins."""
        digest = request_hash(
            f"club-invitations:{code}",
            {
                "count": count,
                "uses": uses,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return InvitationBatchView.model_validate(stored)
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            club = self._club(uow, tenant.id, code, now)
            if club.settings.join not in ("invitation", "approval"):
                raise BusinessRuleViolation(
                    f"The club {code!r} is joined {club.settings.join}: invitations are for "
                    "clubs joined by invitation or approval.",
                    code="club_not_by_invitation",
                )
            if expires_at is not None and expires_at <= now:
                raise ValidationFailed(
                    "expires_at is in the past.",
                    errors=[FieldError(("expires_at",), "In the past.", "expires_in_past")],
                )
            store = ClubStore(uow)
            codes: list[str] = []
            while len(codes) < count:
                fresh = {_new_code() for _ in range(count - len(codes))} - set(codes)
                codes += sorted(fresh - store.existing_codes(tenant.id, sorted(fresh)))
            store.insert_invitations(
                [
                    {
                        "id": new_id(),
                        "tenant_id": tenant.id,
                        "club": code,
                        "code": c,
                        "uses_left": uses,
                        "expires_at": expires_at,
                        "created_at": now,
                        "actor": actor.name,
                    }
                    for c in codes
                ]
            )
            uow.directory.audit(
                tenant.id,
                actor.name,
                "club.invitations",
                "club",
                code,
                {"count": count, "uses": uses},
                now,
            )
            view = InvitationBatchView(
                club=code, codes=codes, uses=uses, expires_at=expires_at, created_at=now
            )
            remember(uow, tenant.id, idempotency_key, digest, view.to_json(), now)
            uow.commit()
            return view

    # ---- the clubs and what they are worth ---------------------------------------------
    def list_clubs(self, actor: Actor) -> list[ClubView]:
        """The clubs of the programs in force, with their stored memberships by state."""
        with self.uow_factory(write=False) as uow:
            now = self.clock.now()
            clubs = self.clubs_in_force(uow, actor.tenant_id, now)
            counts: dict[str, dict[str, int]] = {code: {} for code in clubs}
            for r in ClubStore(uow).status_counts(actor.tenant_id, now) if clubs else []:
                if r["club"] not in clubs:
                    continue
                status = counted_status(
                    r["status"],
                    clubs[r["club"]].settings,
                    no_fee=r["no_fee"],
                    paid_over=r["paid_over"],
                    grace_over=r["grace_over"],
                )
                mine = counts[r["club"]]
                mine[status] = mine.get(status, 0) + r["count"]
        return [
            ClubView(
                code=code,
                name=club.names,
                program=club.program.code,
                join=club.settings.join,
                condition=(
                    ConditionView(
                        tiers=list(club.settings.condition.tiers),
                        segments=list(club.settings.condition.segments),
                    )
                    if club.settings.condition
                    else None
                ),
                fee=_fee_view(club.settings),
                welcome_points=club.settings.welcome_points,
                members=counts[code],
            )
            for code, club in sorted(clubs.items())
        ]

    def report(
        self,
        actor: Actor,
        code: str,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> ClubReport:
        """What each member got from the club at the till, against the fees they paid.

        Savings are the discounts and points of the club's own effects (see
        ``domain/clubs/savings``) on the member's confirmed receipts since they first joined,
        scaled down by what was refunded; fees are the payments recorded. ``since`` and
        ``until`` bound both by when they happened.
        """
        if since is not None and until is not None and until <= since:
            raise ValidationFailed(
                "'to' must be after 'from'.",
                errors=[FieldError(("query", "to"), "Before 'from'.", "invalid_range")],
            )
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            now = self.clock.now()
            club = self._club(uow, tenant.id, code, now)
            store = ClubStore(uow)
            statuses = [s for s in STATUSES if s not in NEVER_MEMBERS]
            rows = store.club_members(tenant.id, code, statuses)
            shares: dict[tuple[str, int], ProgramShare] = {}
            lines: list[ReportLine] = []
            for start in range(0, len(rows), REPORT_CHUNK):
                chunk = rows[start : start + REPORT_CHUNK]
                lines += self._report_chunk(uow, tenant, club, chunk, since, until, shares, now)
        lines.sort(key=lambda line: (-line.saved, str(line.member_id)))
        totals = ReportTotals(
            members=len(lines),
            payments=sum(x.payments for x in lines),
            fees_paid=sum(x.fees_paid for x in lines),
            receipts=sum(x.receipts for x in lines),
            discount=sum(x.discount for x in lines),
            points=sum(x.points for x in lines),
            points_value=sum(x.points_value for x in lines),
            saved=sum(x.saved for x in lines),
            net=sum(x.net for x in lines),
        )
        return ClubReport(
            club=code,
            name=club.names,
            currency=tenant.currency,
            since=since,
            until=until,
            method="club_rules",
            members=lines,
            totals=totals,
        )

    def _report_chunk(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        club: ClubDef,
        rows: list[dict[str, Any]],
        since: datetime | None,
        until: datetime | None,
        shares: dict[tuple[str, int], ProgramShare],
        now: datetime,
    ) -> list[ReportLine]:
        store = ClubStore(uow)
        ids = [r["member_id"] for r in rows]
        joined = {r["member_id"]: r["joined_at"] for r in rows}
        fees = store.fees(tenant.id, club.code, ids, since, until)
        receipts = [
            r
            for r in store.confirmed_receipts(tenant.id, ids, since, until)
            if r["occurred_at"] >= joined[r["member_id"]]
        ]
        kept = _kept_shares(store.refunded_lines(tenant.id, [r["id"] for r in receipts]))
        savings: dict[uuid.UUID, Savings] = {member: Savings() for member in ids}
        for receipt in receipts:
            mine = {
                program: self._share(uow, tenant.id, club.code, program, int(version), shares)
                for program, version in (receipt["programs"] or {}).items()
            }
            relevant = {program: share for program, share in mine.items() if share.relevant}
            if relevant:
                savings[receipt["member_id"]].add(
                    receipt_savings(
                        (receipt["result"] or {}).get("applied") or [],
                        relevant,
                        kept.get(receipt["id"], (1, 1)),
                    )
                )
        report = []
        for row in rows:
            member = row["member_id"]
            got = savings[member]
            payments, paid = fees.get(member, (0, 0))
            report.append(
                ReportLine(
                    member_id=member,
                    status=effective_status(Membership.of(row), club.settings, now),
                    joined_at=row["joined_at"],
                    paid_until=row["paid_until"],
                    payments=payments,
                    fees_paid=paid,
                    receipts=got.receipts,
                    discount=got.discount,
                    points=got.points,
                    points_value=got.points_value,
                    saved=got.saved,
                    net=got.saved - paid,
                )
            )
        return report

    def _share(
        self,
        uow: UnitOfWork,
        tenant_id: uuid.UUID,
        club: str,
        program: str,
        version: int,
        cache: dict[tuple[str, int], ProgramShare],
    ) -> ProgramShare:
        key = (program, version)
        if key not in cache:
            settings = self.programs.compiled(uow, tenant_id, program, version).settings
            cache[key] = ProgramShare(
                whole=settings.members_of_club == club,
                rules=club_rule_ids(settings.rules, club),
                point_value=settings.redemption.point_value,
            )
        return cache[key]

    # ---- member merge ------------------------------------------------------------------
    def merge(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        """Fold the duplicate's memberships, fees and welcome rewards into the survivor's: a
        club only the duplicate is in changes hands; a club both are in keeps the better
        standing, the earliest join and any paid time still running."""
        store = ClubStore(uow)
        gone = {r["club"]: r for r in store.memberships_of(tenant.id, duplicate_id)}
        if gone:
            keep = {r["club"]: r for r in store.memberships_of(tenant.id, survivor_id)}
            clubs = self.clubs_in_force(uow, tenant.id, now)
            store.move_memberships(
                tenant.id, duplicate_id, survivor_id, [c for c in gone if c not in keep]
            )
            for code, other in sorted(gone.items()):
                club = clubs.get(code)
                kept = keep.get(code)
                if kept is not None:
                    kept = self._combine(store, tenant.id, club, kept, other, now)
                names = club.names if club is not None else {"ru": code, "en": code}
                self._audit(
                    uow,
                    tenant,
                    actor,
                    survivor_id,
                    "club.merge",
                    code,
                    {
                        "ru": f"Членство в клубе «{names['ru']}» перенесено с объединённого "
                        "профиля.",
                        "en": f"Membership of the club “{names['en']}” moved over from a "
                        "merged profile.",
                    },
                    now,
                    duplicate=str(duplicate_id),
                    status=(kept or other)["status"],
                )
        # Fees and the once-only welcome points follow the person even without a stored
        # membership (a condition club's payment, a membership since deleted).
        store.move_payments(tenant.id, duplicate_id, survivor_id)
        store.move_awards(tenant.id, MECHANIC, duplicate_id, survivor_id)

    @staticmethod
    def _combine(
        store: ClubStore,
        tenant_id: uuid.UUID,
        club: ClubDef | None,
        kept: dict[str, Any],
        other: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """One membership of both profiles: the better standing wins; the first join date
        and a paid period still giving benefits on either side are kept."""
        settings = club.settings if club is not None else None

        def standing(row: dict[str, Any]) -> tuple[bool, int, datetime]:
            state = Membership.of(row)
            status = effective_status(state, settings, now)
            return (
                has_benefits(state, settings, now),
                MERGE_RANK.get(status, -1),
                row["paid_until"] or row["joined_at"],
            )

        best, worse = (kept, other) if standing(kept) >= standing(other) else (other, kept)
        values: dict[str, Any] = {
            field: best[field]
            for field in (
                "status",
                "status_changed_at",
                "invitation_code",
                "paid_until",
                "grace_until",
                "cancelled_at",
                "reason",
            )
        }
        values["joined_at"] = min(kept["joined_at"], other["joined_at"])
        values["invitation_code"] = best["invitation_code"] or worse["invitation_code"]
        if (
            best["paid_until"] is not None
            and worse["paid_until"] is not None
            and worse["paid_until"] > best["paid_until"]
            and has_benefits(Membership.of(worse), settings, now)
        ):
            # Paid time still running on the other profile is the person's: keep the later
            # end (overlapping periods are not added up; a double payment is the merchant's).
            values["paid_until"] = worse["paid_until"]
            values["grace_until"] = worse["grace_until"]
        store.delete_membership(tenant_id, other["id"])
        store.update_membership(tenant_id, kept["id"], values)
        return {**kept, **values}

    # ---- the clock's work --------------------------------------------------------------
    def lapse_due(self, now: datetime, tenant_id: uuid.UUID | None = None) -> int:
        """The ``clubs_lapsed`` job step: paid periods that ended go to grace, graces that
        ended to lapsed, each noted in the member's audit trail. Set-based: a second run at
        the same or a later moment finds nothing more to do."""
        with self.uow_factory(write=True) as uow:
            changed = ClubStore(uow).lapse(now, tenant_id)
            tenants: dict[uuid.UUID, tuple[Tenant, dict[str, ClubDef]]] = {}
            for row in changed:
                if row["tenant_id"] not in tenants:
                    tenant = load_tenant(uow, row["tenant_id"])
                    tenants[tenant.id] = (tenant, self.clubs_in_force(uow, tenant.id, now))
                tenant, clubs = tenants[row["tenant_id"]]
                found = clubs.get(row["club"])
                names = found.names if found else {"ru": row["club"], "en": row["club"]}
                if row["status"] == "grace":
                    explanation = texts.in_grace(
                        names, row["paid_until"], row["grace_until"], tenant.timezone
                    )
                else:
                    explanation = texts.lapsed(names, row["grace_until"], tenant.timezone)
                self._audit(
                    uow,
                    tenant,
                    JOB_ACTOR,
                    row["member_id"],
                    f"club.{row['status']}",
                    row["club"],
                    explanation,
                    now,
                )
            uow.commit()
        return len(changed)


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def _kept_shares(lines: list[dict[str, Any]]) -> dict[uuid.UUID, tuple[int, int]]:
    """(money kept, money bought) of each receipt with refunds, from its lines."""
    found: dict[uuid.UUID, tuple[int, int]] = {}
    for line in lines:
        bought = int(line["amount"]) - int(line["discount"])
        qty = Decimal(line["qty"])
        left = qty - Decimal(line["refunded_qty"])
        kept = int(bought * left // qty) if qty else 0
        before = found.get(line["receipt_id"], (0, 0))
        found[line["receipt_id"]] = (before[0] + kept, before[1] + bought)
    return found


class ClubMemberHook(MemberHook):
    """Member merges: the person keeps the duplicate profile's clubs, fees and rewards."""

    def __init__(self, service: ClubService) -> None:
        self.service = service

    def on_merged(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        survivor_id: uuid.UUID,
        duplicate_id: uuid.UUID,
        now: datetime,
    ) -> None:
        self.service.merge(uow, tenant, actor, survivor_id, duplicate_id, now)


class ClubsHook(PurchaseHook):
    """At the till: the member's facts carry the clubs whose benefits they have now."""

    def __init__(self, service: ClubService) -> None:
        self.service = service

    def member_facts(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        member: dict[str, Any],
        facts: MemberFacts,
        now: datetime,
    ) -> MemberFacts:
        mine = self.service.member_clubs(uow, tenant, member["id"], facts, now)
        if mine <= facts.clubs:
            return facts
        # The legacy ``attributes.clubs`` stay: they are the merchant's own say.
        return replace(facts, clubs=facts.clubs | mine)
