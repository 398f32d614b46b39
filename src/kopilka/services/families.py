"""Families (pooled balances), transfers of points between members, donations to charity.

A family's pool is its owner's own ledger account: the family id is the owner's member id.
While a member's ``family_members`` row is active, every ledger book opened for them
(:class:`~kopilka.services.ledger_book.MemberBook`) books on the owner's accounts, so
purchases, rewards and manual operations follow the pool without knowing about families.

Joining moves the member's points into the pool lot by lot, keeping each lot's dates, and
closes every lot the member had (spent ones too): a later refund of an old purchase then
gives its points to the pool, never to a lot of an account no longer in use. Leaving takes
the member's share out of the pool by the program's split rule (domain/families/rules.py).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import Field

from kopilka.adapters.db.mechanics.families import (
    FamilyStore,
    Pool,
    known_pool,
    pool_of,
    wallet_holder,
)
from kopilka.adapters.db.tables import lots as lots_table
from kopilka.clock import Clock
from kopilka.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    FieldError,
    NotFound,
    ValidationFailed,
)
from kopilka.domain.families.rules import (
    TEXTS,
    contributions,
    leave_share,
    month_start,
    payout_takes,
)
from kopilka.domain.families.settings import (
    DonationSettings,
    FamilySettings,
    LeaveSplit,
    TransferSettings,
)
from kopilka.domain.ledger.lots import Lot, LotStatus
from kopilka.domain.ledger.model import AccountKind, Posting, TxnKind
from kopilka.domain.ledger.plan import AccountState, LedgerPlan, NewTransaction
from kopilka.domain.rules.document import CompiledProgram
from kopilka.ids import new_id
from kopilka.services.context import Actor, Tenant, load_tenant
from kopilka.services.idempotency import remember, replay_or_claim, request_hash
from kopilka.services.ledger import balance_view, lapsed_hold_points
from kopilka.services.ledger_book import MemberBook
from kopilka.services.members import points_holder_profile
from kopilka.services.ports import UnitOfWork, UnitOfWorkFactory
from kopilka.services.programs import ProgramService
from kopilka.services.views import BalanceView, View

V = TypeVar("V", bound=View)
MAX_NAME = 200
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a till
CODE_LENGTH = 8
ACTIVE_STATUSES = ("active",)


# ---- views -------------------------------------------------------------------------------
class FamilyMemberView(View):
    member_id: uuid.UUID
    role: str
    can_spend: bool
    joined_at: datetime


class FamilyView(View):
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    status: str
    created_at: datetime
    max_members: int
    leave_split: str
    members: list[FamilyMemberView]
    balance: BalanceView | None = None


class InvitationView(View):
    code: str
    family_id: uuid.UUID
    invitee_id: uuid.UUID | None
    status: str
    created_at: datetime
    expires_at: datetime


class MembershipChange(View):
    """A member joined or left: the points moved (by currency) and the ledger entries."""

    family_id: uuid.UUID
    member_id: uuid.UUID
    status: str  # active (joined) or left
    role: str
    can_spend: bool
    split: str | None = None  # the rule a leaving member's share was taken by
    points: dict[str, int]
    transactions: list[uuid.UUID]
    dissolved: bool = False
    # The other members, when the owner's leaving dissolved the family.
    members_left: list[uuid.UUID] = Field(default_factory=list)


class TransferView(View):
    id: uuid.UUID
    from_member_id: uuid.UUID
    to_member_id: uuid.UUID
    currency: str
    points: int
    out_transaction_id: uuid.UUID
    in_transaction_id: uuid.UUID
    created_at: datetime
    balance: BalanceView | None = None  # the sender's, after the transfer


class DonationView(View):
    id: uuid.UUID
    member_id: uuid.UUID
    charity: str
    charity_name: dict[str, str]
    currency: str
    points: int
    transaction_id: uuid.UUID
    created_at: datetime
    balance: BalanceView | None = None


class CharityTotal(View):
    currency: str
    points: int
    donations: int
    donors: int


class CharityView(View):
    code: str
    name: dict[str, str]
    listed: bool  # in the donations section of a program in force now
    totals: list[CharityTotal]


# ---- what the till and the ledger ask ----------------------------------------------------
@dataclass(frozen=True)
class SpendGate:
    """Where a member's points live at the till and whether they may pay with them."""

    holder: uuid.UUID
    family_id: uuid.UUID | None
    can_spend: bool

    def known(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID
    ) -> AbstractContextManager[None]:
        """A block in which the member's ledger books open on this pool without looking it
        up again (see ``known_pool``)."""
        return known_pool(
            uow, tenant_id, member_id, Pool(self.holder, self.can_spend, self.family_id)
        )

    def answer(self) -> dict[str, Any]:
        """The ``family`` key of the till's answer."""
        found: dict[str, Any] = {"family_id": str(self.family_id), "can_spend": self.can_spend}
        if not self.can_spend:
            found["reason"] = dict(TEXTS["spend_not_allowed"])
        return found


def spend_gate(
    uow: UnitOfWork, tenant_id: uuid.UUID, member_id: uuid.UUID, redeem: int | str | None
) -> SpendGate:
    """The member's pool; refuses a payment with points the family's owner did not allow
    (asking for ``max`` is not refused: it comes to 0 points)."""
    pool = pool_of(uow, tenant_id, member_id)
    if not pool.can_spend and isinstance(redeem, int) and redeem > 0:
        raise spend_not_allowed()
    return SpendGate(pool.holder, pool.family_id, pool.can_spend)


def spend_not_allowed() -> BusinessRuleViolation:
    return BusinessRuleViolation(
        "The family's owner has not allowed this member to pay with points.",
        code="family_spend_not_allowed",
        extra={"reason": dict(TEXTS["spend_not_allowed"])},
    )


def refund_holder(uow: UnitOfWork, receipt: dict[str, Any], original: Any) -> uuid.UUID:
    """Whom to open the book for when a receipt's ledger entry is given back: the receipt's
    member while their points still live where the entry was booked (their name stays on
    the refund), else the holder the entry was booked on (a family the member has left)."""
    person: uuid.UUID = receipt["member_id"]
    booked: uuid.UUID | None = original.member_id
    tenant_id = receipt["tenant_id"]
    if booked is None or booked == person:
        # A profile merged since: its points live with the profile it was merged into.
        return points_holder_profile(uow, tenant_id, person)
    if wallet_holder(uow, tenant_id, person) == wallet_holder(uow, tenant_id, booked):
        return person
    return booked


# ---- the service -------------------------------------------------------------------------
class FamilyService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, programs: ProgramService
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.programs = programs

    # ---- plumbing ----------------------------------------------------------------------
    def _write(
        self,
        actor: Actor,
        scope: str,
        body: Any,
        idempotency_key: str | None,
        view: type[V],
        work: Callable[[UnitOfWork, Tenant, datetime], V],
    ) -> V:
        digest = request_hash(scope, body)
        with self.uow_factory(write=True) as uow:
            stored = replay_or_claim(uow, actor.tenant_id, idempotency_key, digest)
            if stored is not None:
                return view.model_validate(stored)
            now = self.clock.now()
            tenant = load_tenant(uow, actor.tenant_id)
            result = work(uow, tenant, now)
            remember(uow, actor.tenant_id, idempotency_key, digest, result.to_json(), now)
            uow.commit()
            return result

    def _programs(self, uow: UnitOfWork, tenant: Tenant, now: datetime) -> list[CompiledProgram]:
        return self.programs.in_force(uow, tenant.id, now)

    def family_settings(self, uow: UnitOfWork, tenant: Tenant, now: datetime) -> FamilySettings:
        """The first program in force (by code) with a ``family`` section; else defaults."""
        for program in self._programs(uow, tenant, now):
            if program.settings.family is not None:
                return program.settings.family
        return FamilySettings()

    def _section(
        self, uow: UnitOfWork, tenant: Tenant, now: datetime, name: str
    ) -> tuple[CompiledProgram, Any] | None:
        for program in self._programs(uow, tenant, now):
            section = getattr(program.settings, name)
            if section is not None and section.enabled:
                return program, section
        return None

    def _enabled_families(self, uow: UnitOfWork, tenant: Tenant, now: datetime) -> FamilySettings:
        settings = self.family_settings(uow, tenant, now)
        if not settings.enabled:
            raise BusinessRuleViolation(
                "The program does not offer family accounts.", code="families_not_enabled"
            )
        return settings

    @staticmethod
    def _member(
        uow: UnitOfWork,
        tenant_id: uuid.UUID,
        member_id: uuid.UUID,
        *,
        lock: bool = False,
        active: bool = True,
    ) -> dict[str, Any]:
        row = uow.directory.member(tenant_id, member_id, lock=lock)
        if row is None:
            raise NotFound("Member not found.", code="member_not_found")
        if active and row["status"] not in ACTIVE_STATUSES:
            raise BusinessRuleViolation(
                f"The member is {row['status']}.", code=f"member_{row['status']}"
            )
        return row

    @staticmethod
    def _membership(
        store: FamilyStore, tenant_id: uuid.UUID, member_id: uuid.UUID
    ) -> dict[str, Any]:
        row = store.membership(tenant_id, member_id, lock=True)
        if row is None or row["status"] != "active":
            raise NotFound("The member is not in a family.", code="family_not_found")
        return row

    def _family_view(
        self, uow: UnitOfWork, tenant: Tenant, family_id: uuid.UUID, now: datetime
    ) -> FamilyView:
        store = FamilyStore(uow)
        family = store.family(tenant.id, family_id)
        if family is None:
            raise NotFound("Family not found.", code="family_not_found")
        settings = self.family_settings(uow, tenant, now)
        members = store.active_members(tenant.id, family_id) if family["status"] == "active" else []
        cur = tenant.points_currency
        accounts = uow.ledger.lock_member_accounts(tenant.id, family_id, cur, lock=False)
        balance = balance_view(
            tenant,
            family_id,
            cur,
            accounts,
            uow.ledger.open_lots(tenant.id, family_id, cur),
            now,
            lapsed_hold_points(uow, tenant.id, family_id, cur, accounts, now),
        )
        return FamilyView(
            id=family["id"],
            name=family["name"],
            owner_id=family["id"],
            status=family["status"],
            created_at=family["created_at"],
            max_members=settings.max_members,
            leave_split=settings.leave_split,
            members=[
                FamilyMemberView(
                    member_id=m["member_id"],
                    role=m["role"],
                    can_spend=m["can_spend"],
                    joined_at=m["joined_at"],
                )
                for m in members
            ],
            balance=balance,
        )

    # ---- families ----------------------------------------------------------------------
    def create(
        self,
        actor: Actor,
        owner_id: uuid.UUID,
        name: str,
        *,
        idempotency_key: str | None = None,
    ) -> FamilyView:
        """The member founds a family and owns it; their own account becomes the pool."""
        clean = name.strip()
        if not clean or len(clean) > MAX_NAME:
            raise ValidationFailed(
                "The family needs a name.",
                errors=[FieldError(("name",), f"1 to {MAX_NAME} characters.", "invalid_name")],
            )

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> FamilyView:
            self._member(uow, tenant.id, owner_id, lock=True)
            self._enabled_families(uow, tenant, now)
            store = FamilyStore(uow)
            current = store.membership(tenant.id, owner_id, lock=True)
            if current is not None and current["status"] == "active":
                raise Conflict("The member is already in a family.", code="member_in_family")
            brought: dict[str, int] = {}
            for currency in store.currencies_of(tenant.id, owner_id):
                accounts = uow.ledger.lock_member_accounts(tenant.id, owner_id, currency)
                points = _pool_points(accounts)
                if points:
                    brought[currency] = points
            values = {"name": clean, "status": "active", "created_at": now, "dissolved_at": None}
            if store.family(tenant.id, owner_id, lock=True) is None:
                store.insert_family({"tenant_id": tenant.id, "id": owner_id, **values})
            else:  # founded again after dissolving an earlier one
                store.update_family(tenant.id, owner_id, values)
            store.put_membership(
                {
                    "tenant_id": tenant.id,
                    "member_id": owner_id,
                    "family_id": owner_id,
                    "status": "active",
                    "joined_at": now,
                    "role": "owner",
                    "can_spend": True,
                    "brought": brought,
                    "since_txn": new_id(),
                    "left_at": None,
                },
                exists=current is not None,
            )
            uow.directory.audit(
                tenant.id, actor.name, "family.create", "member", owner_id, {"name": clean}, now
            )
            return self._family_view(uow, tenant, owner_id, now)

        return self._write(
            actor,
            "family.create",
            {"owner": owner_id, "name": clean},
            idempotency_key,
            FamilyView,
            work,
        )

    def get(self, actor: Actor, member_id: uuid.UUID) -> FamilyView:
        """The family the member is in."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            self._member(uow, tenant.id, member_id, active=False)
            row = FamilyStore(uow).membership(tenant.id, member_id)
            if row is None or row["status"] != "active":
                raise NotFound("The member is not in a family.", code="family_not_found")
            return self._family_view(uow, tenant, row["family_id"], self.clock.now())

    def invite(
        self,
        actor: Actor,
        owner_id: uuid.UUID,
        invitee_id: uuid.UUID | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> InvitationView:
        """A one-time code the owner hands to a new member (only to ``invitee_id`` if given)."""

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> InvitationView:
            self._member(uow, tenant.id, owner_id)
            settings = self._enabled_families(uow, tenant, now)
            store = FamilyStore(uow)
            membership = self._membership(store, tenant.id, owner_id)
            if membership["role"] != "owner":
                raise BusinessRuleViolation(
                    "Only the family's owner invites.", code="family_owner_only"
                )
            family_id = membership["family_id"]
            if invitee_id is not None:
                self._member(uow, tenant.id, invitee_id)
                other = store.membership(tenant.id, invitee_id)
                if other is not None and other["status"] == "active":
                    raise Conflict("The member is already in a family.", code="member_in_family")
            if len(store.active_members(tenant.id, family_id)) >= settings.max_members:
                raise BusinessRuleViolation(
                    f"A family has at most {settings.max_members} members.",
                    code="family_full",
                    extra={"max_members": settings.max_members},
                )
            for _ in range(20):
                code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
                if store.invitation(tenant.id, code) is None:
                    break
            else:  # pragma: no cover - 32^8 codes: twenty collisions in a row do not happen
                raise Conflict("Could not find a free invitation code.", code="code_space_full")
            row = {
                "tenant_id": tenant.id,
                "code": code,
                "family_id": family_id,
                "invitee_id": invitee_id,
                "status": "open",
                "created_at": now,
                "expires_at": now + timedelta(days=settings.invitation_days),
                "used_by": None,
                "used_at": None,
            }
            store.insert_invitation(row)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "family.invite",
                "member",
                owner_id,
                {"invitee": str(invitee_id) if invitee_id else None},
                now,
            )
            return _invitation_view(row)

        return self._write(
            actor,
            f"family.invite:{owner_id}",
            {"invitee": invitee_id},
            idempotency_key,
            InvitationView,
            work,
        )

    def join(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        code: str,
        *,
        idempotency_key: str | None = None,
    ) -> MembershipChange:
        """Join the family of the invitation ``code``; the member's points move into the
        pool, lot by lot, keeping their dates. Joining again with the same code answers
        the membership as it is."""
        wanted = code.strip().upper()

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> MembershipChange:
            store = FamilyStore(uow)
            invitation = store.invitation(tenant.id, wanted, lock=True)
            self._member(uow, tenant.id, member_id, lock=True)
            settings = self._enabled_families(uow, tenant, now)
            if invitation is None:
                raise NotFound("No such invitation.", code="invitation_not_found")
            family_id = invitation["family_id"]
            family = store.family(tenant.id, family_id, lock=True)
            current = store.membership(tenant.id, member_id, lock=True)
            if invitation["status"] != "open":
                if (
                    invitation["used_by"] == member_id
                    and current is not None
                    and current["status"] == "active"
                    and current["family_id"] == family_id
                ):
                    return _membership_change(current, current["brought"], [])
                raise Conflict("The invitation was already used.", code="invitation_used")
            if invitation["expires_at"] <= now:
                raise BusinessRuleViolation(
                    "The invitation has expired; ask for a new one.", code="invitation_expired"
                )
            if invitation["invitee_id"] is not None and invitation["invitee_id"] != member_id:
                raise BusinessRuleViolation(
                    "The invitation is for another member.", code="invitation_for_another_member"
                )
            if family is None or family["status"] != "active":
                raise NotFound("Family not found.", code="family_not_found")
            if current is not None and current["status"] == "active":
                raise Conflict("The member is already in a family.", code="member_in_family")
            if len(store.active_members(tenant.id, family_id)) >= settings.max_members:
                raise BusinessRuleViolation(
                    f"A family has at most {settings.max_members} members.",
                    code="family_full",
                    extra={"max_members": settings.max_members},
                )
            if store.open_holds_by(tenant.id, member_id, now):
                raise Conflict(
                    "The member has points on hold; capture or release them first.",
                    code="member_has_active_holds",
                )
            brought: dict[str, int] = {}
            made: list[uuid.UUID] = []
            for currency in store.currencies_of(tenant.id, member_id):
                moved, txns = self._move_in(uow, tenant, actor, member_id, family_id, currency, now)
                if moved:
                    brought[currency] = moved
                made.extend(txns)
            row = {
                "tenant_id": tenant.id,
                "member_id": member_id,
                "family_id": family_id,
                "status": "active",
                "joined_at": now,
                "role": "member",
                "can_spend": settings.new_members_can_spend,
                "brought": brought,
                "since_txn": new_id(),
                "left_at": None,
            }
            store.put_membership(row, exists=current is not None)
            store.use_invitation(tenant.id, wanted, member_id, now)
            details = {"family": str(family_id), "points": brought}
            for subject in (member_id, family_id):
                uow.directory.audit(
                    tenant.id, actor.name, "family.join", "member", subject, details, now
                )
            return _membership_change(row, brought, made)

        return self._write(
            actor,
            f"family.join:{member_id}",
            {"code": wanted},
            idempotency_key,
            MembershipChange,
            work,
        )

    def _move_in(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        member_id: uuid.UUID,
        family_id: uuid.UUID,
        currency: str,
        now: datetime,
    ) -> tuple[int, list[uuid.UUID]]:
        """Move the member's points of one currency into the pool; close all their lots."""
        own, pool = _pair(uow, tenant, actor, member_id, family_id, currency, now)
        pool.person_id = member_id  # the member's name on the moves (see MemberBook.new_txn)
        own.settle()  # due expiries and activations first: only live points move
        if own.wallet.balance < 0:
            raise BusinessRuleViolation(
                "The member owes points; settle the debt before joining a family.",
                code="member_in_debt",
                extra={"debt": -own.wallet.balance},
            )
        made: list[uuid.UUID] = []
        moved = 0
        live = [
            lot
            for lot in own.plan.lots.values()
            if lot.remaining > 0 and lot.status in (LotStatus.ACTIVE, LotStatus.PENDING)
        ]
        for lot in sorted(live, key=lambda item: (item.available_at, item.id)):
            txn = pool.new_txn(
                TxnKind.TRANSFER,
                lot.remaining,
                source_type="family",
                source_id=str(family_id),
                counterparty=member_id,
                params={
                    "family": str(family_id),
                    "family_member": str(member_id),
                    "family_move": "join",
                },
            )
            moved += lot.remaining
            _move_lot(own, pool, lot, lot.remaining, txn)
            made.append(txn.id)
        uow.ledger.apply(tenant.id, own.plan, now)
        # Spent lots too: a refund of an old purchase must not refill a lot of an account
        # that no longer holds the member's points (it gets a new lot in the pool instead).
        uow.execute(
            sa.update(lots_table)
            .where(
                lots_table.c.tenant_id == tenant.id,
                lots_table.c.member_id == member_id,
                lots_table.c.currency == currency,
                lots_table.c.is_open == sa.false(),  # through the member index
                lots_table.c.status == LotStatus.ACTIVE.value,
                lots_table.c.remaining == 0,
            )
            .values(status=LotStatus.CLOSED.value)
        )
        return moved, made

    def set_can_spend(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        can_spend: bool,
        *,
        idempotency_key: str | None = None,
    ) -> FamilyView:
        """The owner allows or forbids a member to pay with the pool's points."""

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> FamilyView:
            self._member(uow, tenant.id, member_id, active=False)
            store = FamilyStore(uow)
            membership = self._membership(store, tenant.id, member_id)
            if membership["role"] == "owner" and not can_spend:
                raise BusinessRuleViolation(
                    "The owner always may spend the family's points.",
                    code="family_owner_always_spends",
                )
            if membership["can_spend"] != can_spend:
                store.update_membership(tenant.id, member_id, {"can_spend": can_spend})
                uow.directory.audit(
                    tenant.id,
                    actor.name,
                    "family.permission",
                    "member",
                    member_id,
                    {"family": str(membership["family_id"]), "can_spend": can_spend},
                    now,
                )
            return self._family_view(uow, tenant, membership["family_id"], now)

        return self._write(
            actor,
            f"family.permission:{member_id}",
            {"can_spend": can_spend},
            idempotency_key,
            FamilyView,
            work,
        )

    def leave(
        self, actor: Actor, member_id: uuid.UUID, *, idempotency_key: str | None = None
    ) -> MembershipChange:
        """The member leaves with their share of the pool (the program's ``leave_split``).
        The owner leaving dissolves the family: the others leave first, each with a share,
        and what is left stays in the owner's account."""

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> MembershipChange:
            self._member(uow, tenant.id, member_id, active=False)
            store = FamilyStore(uow)
            membership = store.membership(tenant.id, member_id)
            if membership is None or membership["status"] != "active":
                raise NotFound("The member is not in a family.", code="family_not_found")
            family_id = membership["family_id"]
            store.family(tenant.id, family_id, lock=True)  # one membership change at a time
            membership = self._membership(store, tenant.id, member_id)
            settings = self.family_settings(uow, tenant, now)
            members = store.active_members(tenant.id, family_id)
            held_by = store.open_holds_by(tenant.id, family_id, now)
            owner_leaves = membership["role"] == "owner"
            if (owner_leaves and held_by) or (member_id in held_by):
                raise Conflict(
                    "Points the member reserved are on hold; capture or release them first.",
                    code="member_has_active_holds",
                )
            leaving = [m for m in members if m["role"] != "owner"] if owner_leaves else []
            if not owner_leaves:
                leaving = [membership]
            points: dict[str, int] = {}
            made: list[uuid.UUID] = []
            for row in leaving:
                moved, txns = self._pay_out(
                    uow, tenant, actor, store, family_id, row, settings.leave_split, now
                )
                if row["member_id"] == member_id:
                    points = moved
                made.extend(txns)
                store.update_membership(
                    tenant.id, row["member_id"], {"status": "left", "left_at": now}
                )
                uow.directory.audit(
                    tenant.id,
                    actor.name,
                    "family.leave",
                    "member",
                    row["member_id"],
                    {"family": str(family_id), "split": settings.leave_split, "points": moved},
                    now,
                )
            if owner_leaves:
                store.update_membership(tenant.id, member_id, {"status": "left", "left_at": now})
                store.update_family(
                    tenant.id, family_id, {"status": "dissolved", "dissolved_at": now}
                )
                store.revoke_invitations(tenant.id, family_id)
                uow.directory.audit(
                    tenant.id,
                    actor.name,
                    "family.dissolve",
                    "member",
                    member_id,
                    {"members_left": [str(m["member_id"]) for m in leaving]},
                    now,
                )
            change = _membership_change(
                {**membership, "status": "left"}, points, made, split=settings.leave_split
            )
            if owner_leaves:
                change = change.model_copy(
                    update={"dissolved": True, "members_left": [m["member_id"] for m in leaving]}
                )
            return change

        return self._write(
            actor, f"family.leave:{member_id}", {}, idempotency_key, MembershipChange, work
        )

    def _pay_out(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        actor: Actor,
        store: FamilyStore,
        family_id: uuid.UUID,
        leaver: dict[str, Any],
        rule: LeaveSplit,
        now: datetime,
    ) -> tuple[dict[str, int], list[uuid.UUID]]:
        """Move a leaving member's share of each currency's pool to their own account."""
        member_id: uuid.UUID = leaver["member_id"]
        paid: dict[str, int] = {}
        made: list[uuid.UUID] = []
        for currency in store.currencies_of(tenant.id, family_id):
            members = store.active_members(tenant.id, family_id)
            own, pool = _pair(
                uow, tenant, actor, member_id, family_id, currency, now, pool_lots=True
            )
            pool.settle()
            pool.person_id = member_id  # the leaver's name on the moves
            total = max(0, pool.wallet.balance + pool.pending.balance)
            since = {m["member_id"]: m["since_txn"] for m in members}
            brought = {m["member_id"]: int((m["brought"] or {}).get(currency, 0)) for m in members}
            entries = store.pool_entries(tenant.id, family_id, currency, min(since.values()))
            stakes = contributions(entries, family_id, since, brought)
            share = leave_share(
                rule, stakes.get(member_id, 0), sum(stakes.values()), total, len(members)
            )
            takes, _short = payout_takes(pool.plan.lots.values(), share, now)
            moved = 0
            for take in takes:
                lot = pool.plan.lot(take.lot_id)
                txn = pool.new_txn(
                    TxnKind.TRANSFER,
                    take.amount,
                    source_type="family",
                    source_id=str(family_id),
                    counterparty=member_id,
                    params={
                        "family": str(family_id),
                        "family_member": str(member_id),
                        "family_move": "leave",
                        "split": rule,
                    },
                )
                _move_lot(pool, own, lot, take.amount, txn)
                moved += take.amount
                made.append(txn.id)
            if pool.plan.transactions or pool.plan.changed_lots:
                uow.ledger.apply(tenant.id, pool.plan, now)
            if moved:
                paid[currency] = moved
        return paid, made

    # ---- transfers ---------------------------------------------------------------------
    def transfer(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        to_member_id: uuid.UUID,
        points: int,
        *,
        idempotency_key: str | None = None,
    ) -> TransferView:
        """Give points to another member, if the program allows it and within its limits.
        The points keep their dates: a transfer cannot make points younger."""
        if to_member_id == member_id:
            raise BusinessRuleViolation(
                "A member cannot transfer points to themselves.",
                code="transfer_to_self",
                errors=[FieldError(("to_member_id",), "Another member.", "transfer_to_self")],
            )

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> TransferView:
            self._member(uow, tenant.id, member_id)
            self._member(uow, tenant.id, to_member_id)
            found = self._section(uow, tenant, now, "transfers")
            if found is None:
                raise BusinessRuleViolation(
                    "The program does not allow transferring points.",
                    code="transfers_not_enabled",
                )
            program, settings = found
            _check_transfer_size(settings, points)
            sender, recipient = (
                pool_of(uow, tenant.id, member_id),
                pool_of(uow, tenant.id, to_member_id),
            )
            if not sender.can_spend:
                raise spend_not_allowed()
            if sender.holder == recipient.holder:
                raise BusinessRuleViolation(
                    "Both members share one family account.", code="transfer_within_family"
                )
            currency = program.currency
            out_book, in_book = _locked_books(
                uow, tenant, actor, [sender.holder, recipient.holder], currency, now
            )
            store = FamilyStore(uow)
            since = month_start(now, tenant.timezone)
            count, sent = store.transfers_since(tenant.id, member_id, currency, since)
            _check_month(settings, count, sent, points)
            out_book.settle()
            out_book.person_id, in_book.person_id = member_id, to_member_id  # names the sides
            transfer_id = new_id()
            out_txn = out_book.new_txn(
                TxnKind.TRANSFER,
                points,
                source_type="transfer",
                source_id=str(transfer_id),
                counterparty=to_member_id,
                params={"direction": "out", "to_member": str(to_member_id)},
            )
            takes = out_book.take(out_txn, points, out_book.system[AccountKind.ISSUED])
            in_txn = in_book.new_txn(
                TxnKind.TRANSFER,
                points,
                source_type="transfer",
                source_id=str(transfer_id),
                counterparty=member_id,
                params={"direction": "in", "from_member": str(member_id)},
            )
            before = in_book.wallet.balance
            in_book.plan.add_transaction(
                in_txn,
                [
                    Posting(in_book.system[AccountKind.ISSUED], -points),
                    Posting(in_book.wallet.id, points),
                ],
            )
            debt = max(0, -before)
            for take in takes:
                lot = out_book.plan.lot(take.lot_id)
                debt -= _new_lot(in_book, lot, take.amount, in_txn.id, debt)
            row = {
                "id": transfer_id,
                "tenant_id": tenant.id,
                "from_member_id": member_id,
                "to_member_id": to_member_id,
                "currency": currency,
                "points": points,
                "out_transaction_id": out_txn.id,
                "in_transaction_id": in_txn.id,
                "actor": actor.name,
                "created_at": now,
            }
            store.insert_transfer(row)
            details = {
                "transfer": str(transfer_id),
                "from": str(member_id),
                "to": str(to_member_id),
                "points": points,
                "currency": currency,
            }
            for subject in (member_id, to_member_id):
                uow.directory.audit(
                    tenant.id, actor.name, "points.transfer", "member", subject, details, now
                )
            uow.ledger.apply(tenant.id, out_book.plan, now)
            return TransferView(
                **{k: v for k, v in row.items() if k not in ("tenant_id", "actor")},
                balance=_balance_of(out_book, member_id),
            )

        return self._write(
            actor,
            "transfer",
            {"from": member_id, "to": to_member_id, "points": points},
            idempotency_key,
            TransferView,
            work,
        )

    def transfers(
        self, actor: Actor, member_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> list[TransferView]:
        """The member's transfers, sent and received, newest first."""
        with self.uow_factory(write=False) as uow:
            self._member(uow, actor.tenant_id, member_id, active=False)
            rows = FamilyStore(uow).transfers_of(actor.tenant_id, member_id, before, limit)
        return [
            TransferView(**{k: v for k, v in r.items() if k not in ("tenant_id", "actor")})
            for r in rows
        ]

    # ---- donations ---------------------------------------------------------------------
    def donate(
        self,
        actor: Actor,
        member_id: uuid.UUID,
        charity: str,
        points: int,
        *,
        idempotency_key: str | None = None,
    ) -> DonationView:
        """Give points to one of the tenant's charities: they leave the member's account
        (for the ``redeemed`` account, named by the charity) and count in its total."""

        def work(uow: UnitOfWork, tenant: Tenant, now: datetime) -> DonationView:
            self._member(uow, tenant.id, member_id)
            found = self._section(uow, tenant, now, "donations")
            if found is None:
                raise BusinessRuleViolation(
                    "The program has no charities to donate to.", code="donations_not_enabled"
                )
            program, settings = found
            assert isinstance(settings, DonationSettings)
            chosen = settings.charity(charity)
            if chosen is None:
                raise ValidationFailed(
                    f"Unknown charity {charity!r}.",
                    code="unknown_charity",
                    errors=[
                        FieldError(
                            ("charity",),
                            "One of: " + ", ".join(c.code for c in settings.charities) + ".",
                            "unknown_charity",
                        )
                    ],
                )
            if points < settings.min_points:
                raise BusinessRuleViolation(
                    f"At least {settings.min_points} points per donation.",
                    code="donation_below_minimum",
                    extra={"min_points": settings.min_points},
                )
            if not pool_of(uow, tenant.id, member_id).can_spend:
                raise spend_not_allowed()
            book = MemberBook(uow, tenant, member_id, actor, now, currency=program.currency)
            book.settle()
            donation_id = new_id()
            txn = book.new_txn(
                TxnKind.DONATION,
                points,
                source_type="donation",
                source_id=str(donation_id),
                params={"charity": chosen.code},
            )
            book.take(txn, points, book.system[AccountKind.REDEEMED])
            row = {
                "id": donation_id,
                "tenant_id": tenant.id,
                "member_id": member_id,
                "charity": chosen.code,
                "currency": book.currency,
                "points": points,
                "transaction_id": txn.id,
                "created_at": now,
            }
            FamilyStore(uow).insert_donation(row)
            uow.directory.audit(
                tenant.id,
                actor.name,
                "points.donate",
                "member",
                member_id,
                {"charity": chosen.code, "points": points, "transaction_id": str(txn.id)},
                now,
            )
            uow.ledger.apply(tenant.id, book.plan, now)
            return DonationView(
                **{k: v for k, v in row.items() if k != "tenant_id"},
                charity_name=chosen.names,
                balance=_balance_of(book, member_id),
            )

        return self._write(
            actor,
            "donate",
            {"member": member_id, "charity": charity, "points": points},
            idempotency_key,
            DonationView,
            work,
        )

    def charities(self, actor: Actor) -> list[CharityView]:
        """The charities of the programs in force, and what every charity ever listed has
        been given, by currency."""
        with self.uow_factory(write=False) as uow:
            tenant = load_tenant(uow, actor.tenant_id)
            found = self._section(uow, tenant, self.clock.now(), "donations")
            totals = FamilyStore(uow).donation_totals(tenant.id)
        listed = list(found[1].charities) if found is not None else []
        views: list[CharityView] = []
        for charity in listed:
            views.append(
                CharityView(
                    code=charity.code,
                    name=charity.names,
                    listed=True,
                    totals=_totals_of(totals, charity.code),
                )
            )
        for code in sorted({code for code, _ in totals} - {c.code for c in listed}):
            views.append(
                CharityView(
                    code=code,
                    name={"ru": code, "en": code},
                    listed=False,
                    totals=_totals_of(totals, code),
                )
            )
        return views


# ---- helpers -----------------------------------------------------------------------------
def _pool_points(accounts: dict[AccountKind, AccountState]) -> int:
    wallet = accounts.get(AccountKind.WALLET)
    pending = accounts.get(AccountKind.PENDING)
    return max(0, (wallet.balance if wallet else 0) + (pending.balance if pending else 0))


def _locked_books(
    uow: UnitOfWork,
    tenant: Tenant,
    actor: Actor,
    holders: Sequence[uuid.UUID],
    currency: str,
    now: datetime,
) -> tuple[MemberBook, MemberBook]:
    """Books on two holders sharing one plan, their accounts locked in one ascending pass;
    lots are loaded for the first only (it gives, the second receives)."""
    locked = uow.ledger.lock_many_member_accounts(tenant.id, holders, currency)
    if not all(locked[h] for h in holders):  # a currency one of them never used
        for holder in holders:
            uow.ledger.create_member_accounts(tenant.id, holder, currency, now, tenant.allow_debt)
        locked = uow.ledger.lock_many_member_accounts(tenant.id, holders, currency)
    plan = LedgerPlan()
    first = MemberBook(
        uow,
        tenant,
        holders[0],
        actor,
        now,
        currency=currency,
        plan=plan,
        accounts=locked[holders[0]],
    )
    second = MemberBook(
        uow,
        tenant,
        holders[1],
        actor,
        now,
        currency=currency,
        plan=plan,
        accounts=locked[holders[1]],
        load_lots=False,
    )
    return first, second


def _pair(
    uow: UnitOfWork,
    tenant: Tenant,
    actor: Actor,
    member_id: uuid.UUID,
    family_id: uuid.UUID,
    currency: str,
    now: datetime,
    *,
    pool_lots: bool = False,
) -> tuple[MemberBook, MemberBook]:
    """(the member's own book, the pool's book) on one plan; the lots of the member's own
    account are loaded, or the pool's with ``pool_lots``."""
    if pool_lots:
        pool, own = _locked_books(uow, tenant, actor, [family_id, member_id], currency, now)
    else:
        own, pool = _locked_books(uow, tenant, actor, [member_id, family_id], currency, now)
    return own, pool


def _move_lot(
    source: MemberBook, target: MemberBook, lot: Lot, amount: int, txn: NewTransaction
) -> None:
    """Move ``amount`` of one lot from ``source``'s accounts to ``target``'s as a new lot with
    the same dates and status; a lot left empty is closed (its points live elsewhere now)."""
    spendable = lot.status is LotStatus.ACTIVE
    out_of = source.wallet if spendable else source.pending
    into = target.wallet if spendable else target.pending
    before = into.balance
    source.plan.add_transaction(txn, [Posting(out_of.id, -amount), Posting(into.id, amount)])
    emptied = lot.remaining == amount
    source.plan.change_lot(
        lot.id,
        -amount,
        txn_id=txn.id,
        origin_id=txn.id,
        status=LotStatus.CLOSED if emptied else None,
    )
    _new_lot(target, lot, amount, txn.id, max(0, -before) if spendable else 0)


def _new_lot(book: MemberBook, like: Lot, amount: int, txn_id: uuid.UUID, debt: int) -> int:
    """A lot of ``amount`` in ``book``'s account with the dates of ``like``; points credited
    to a wallet in debt pay the debt first. Returns the debt paid."""
    lot_id = book.plan.create_lot(
        member_id=book.member_id,
        currency=book.currency,
        amount=amount,
        remaining=amount,
        status=like.status,
        available_at=like.available_at,
        expires_at=like.expires_at,
        source_txn_id=txn_id,
    )
    paid = min(debt, amount)
    if paid:
        book.plan.change_lot(lot_id, -paid, txn_id=txn_id, origin_id=txn_id)
    return paid


def _balance_of(book: MemberBook, member_id: uuid.UUID) -> BalanceView:
    """The balance of ``book``'s holder after its plan (a plan may carry another holder's
    new lots: a transfer's recipient)."""
    new = book.plan.new_lots
    live = [
        lot
        for lot in book.plan.lots.values()
        if (lot.status is LotStatus.PENDING or (lot.status is LotStatus.ACTIVE and lot.remaining))
        and (lot.id not in new or new[lot.id].member_id == book.member_id)
    ]
    return balance_view(book.tenant, member_id, book.currency, book.accounts, live, book.now)


def _check_transfer_size(settings: TransferSettings, points: int) -> None:
    if points < settings.min_points:
        raise BusinessRuleViolation(
            f"At least {settings.min_points} points per transfer.",
            code="transfer_below_minimum",
            extra={"min_points": settings.min_points},
        )
    if settings.max_points_per_transfer is not None and points > settings.max_points_per_transfer:
        raise BusinessRuleViolation(
            f"At most {settings.max_points_per_transfer} points per transfer.",
            code="transfer_above_maximum",
            extra={"max_points_per_transfer": settings.max_points_per_transfer},
        )


def _check_month(settings: TransferSettings, count: int, sent: int, points: int) -> None:
    if settings.max_transfers_per_month is not None and count >= settings.max_transfers_per_month:
        raise BusinessRuleViolation(
            f"At most {settings.max_transfers_per_month} transfers a month.",
            code="transfer_monthly_limit",
            extra={"max_transfers_per_month": settings.max_transfers_per_month, "made": count},
        )
    cap = settings.max_points_per_month
    if cap is not None and sent + points > cap:
        raise BusinessRuleViolation(
            f"At most {cap} points a month; {max(0, cap - sent)} left this month.",
            code="transfer_monthly_limit",
            extra={"max_points_per_month": cap, "left": max(0, cap - sent)},
        )


def _invitation_view(row: dict[str, Any]) -> InvitationView:
    return InvitationView(
        code=row["code"],
        family_id=row["family_id"],
        invitee_id=row["invitee_id"],
        status=row["status"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


def _membership_change(
    row: dict[str, Any],
    points: dict[str, int],
    made: list[uuid.UUID],
    *,
    split: str | None = None,
) -> MembershipChange:
    return MembershipChange(
        family_id=row["family_id"],
        member_id=row["member_id"],
        status=row["status"],
        role=row["role"],
        can_spend=row["can_spend"],
        split=split,
        points={k: int(v) for k, v in points.items()},
        transactions=made,
    )


def _totals_of(
    totals: dict[tuple[str, str], tuple[int, int, int]], code: str
) -> list[CharityTotal]:
    return [
        CharityTotal(currency=currency, points=p, donations=n, donors=d)
        for (charity, currency), (p, n, d) in sorted(totals.items())
        if charity == code
    ]
